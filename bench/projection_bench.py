"""Times one gradient-projection step of VGG16 (random weights) at 224x224 on this machine.

Run from the repository root::

    python bench/projection_bench.py [--model=vgg16] [--size=224] [--targets=1] [--steps=5]

One step is a forward and backward pass through the model for every target plus the
normalised update; the figure printed is the median over ``--steps`` steps after one
warm-up step (which includes tracing). Random weights cost the same as ImageNet weights.
"""

from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import benchlib  # noqa: E402  (puts the repository on the path)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from tfool import imagenet, projection  # noqa: E402

FLAGS = flags.FLAGS


def define_flags(fv: flags.FlagValues = FLAGS) -> None:
    """Defines the benchmark's flags on ``fv``."""
    flags.DEFINE_enum("model", "vgg16", list(imagenet.MODEL_NAMES), "The network.", flag_values=fv)
    flags.DEFINE_integer("size", 224, "Input side in pixels.", flag_values=fv)
    flags.DEFINE_integer("targets", 1, "Targets (batch rows) per step.", flag_values=fv)
    flags.DEFINE_integer("steps", 5, "Timed steps.", flag_values=fv)


def main(argv) -> None:
    del argv
    args = FLAGS
    start = time.perf_counter()
    model = imagenet.load_imagenet_model(args.model, weights=None, input_size=args.size)
    build_s = time.perf_counter() - start
    config = projection.ProjectionConfig(steps=args.steps, step_size=1.0, eps=8.0)
    step = projection._make_step(model, config, 0.0, 255.0)
    image = np.random.default_rng(0).uniform(0, 255, (args.targets, *model.image_shape))
    x0 = tf.constant(image, tf.float32)
    targets = tf.constant(np.arange(args.targets) % 1000, tf.int32)

    start = time.perf_counter()
    x, probs, _ = step(x0, x0, targets)
    _ = x.numpy()
    first_s = time.perf_counter() - start
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        x, probs, _ = step(x, x0, targets)
        _ = x.numpy()
        times.append(time.perf_counter() - start)
    load = benchlib.load_average()
    print(
        f"{args.model} {args.size}x{args.size}, {args.targets} target(s), "
        f"{os.cpu_count()} CPU cores, load average {load:.2f}"
    )
    print(f"build {build_s:.2f} s; first step (with tracing) {first_s:.2f} s")
    print(
        f"one projection step: median {statistics.median(times):.3f} s, "
        f"min {min(times):.3f} s, max {max(times):.3f} s over {len(times)} steps"
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
