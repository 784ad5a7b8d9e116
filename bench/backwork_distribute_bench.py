"""Backworking throughput on one device versus a mirrored strategy over two logical CPUs.

Run from the repository root::

    python bench/backwork_distribute_bench.py [--steps=30] [--model_path=out/models/mnist_cnn.keras]

Runs the same seeded backworking (10 labels x 8 images, the sample's reference sets, a
fixed number of steps) first on the default strategy, then under a MirroredStrategy over
two logical CPU devices, in one process, and prints seconds per step, image-steps per
second and the largest difference of the probabilities at the first save.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import benchlib  # noqa: E402, F401  (puts the repository on the path)
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS


def define_flags(fv: flags.FlagValues = FLAGS) -> None:
    """Defines the benchmark's flags on ``fv``."""
    flags.DEFINE_integer("steps", 30, "Optimisation steps timed.", flag_values=fv)
    flags.DEFINE_string(
        "model_path",
        "out/models/mnist_cnn.keras",
        "A cached reference CNN (random weights when missing).",
        flag_values=fv,
    )


def main(argv) -> None:
    del argv
    args = FLAGS

    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfool import backwork, data, models

    ds = data.load_mnist("sample")
    if os.path.exists(args.model_path):
        model = models.load_model(args.model_path)
    else:
        model = models.build_mnist_cnn(seed=0)
    config = backwork.BackworkConfig(
        prob_cap_min=1.0,
        prob_cap_mean=1.0,
        min_num_steps=0,
        max_num_steps=args.steps,
        jit_compile=False,
    )
    strategies = {
        "one device": None,
        "mirrored, 2 logical CPUs": tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
    }
    results = {}
    for name, strategy in strategies.items():
        short = backwork.backwork(
            model,
            ds,
            backwork.BackworkConfig(**{**vars(config), "max_num_steps": 1}),
            strategy=strategy,
        )  # set-up and tracing
        start = time.perf_counter()
        res = backwork.backwork(model, ds, config, strategy=strategy)
        wall = time.perf_counter() - start
        per_step = (wall - short.wall_time) / max(res.steps - 1, 1)
        results[name] = res
        rows = res.images.shape[0] * res.images.shape[1]
        print(
            f"{name:26s} {per_step:7.3f} s/step  {rows / per_step:7.1f} image-steps/s  "
            f"({res.steps} steps, {wall:.1f} s with set-up)"
        )
    a, b = results.values()
    print(
        f"max |p difference| at the first save: {np.abs(a.history_probs[0] - b.history_probs[0]).max():.2e}; "
        f"final images: {np.abs(a.images - b.images).max():.2e}"
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
