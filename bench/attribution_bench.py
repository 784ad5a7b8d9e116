"""Integrated gradients on the MNIST CNN: completeness error per rule and steps, and speed.

Prints, for every integrated-gradients rule and 20, 50 and 200 steps, the completeness
error ``|sum(attributions) - (F(x) - F(0))| / |F(x) - F(0)|`` (mean and max over the test
images, F the logit of the predicted class), then the seconds per image of integrated
gradients at 200 steps (compiled, after a warm-up call; and the first call, with tracing).

    python bench/attribution_bench.py                 # the reference CNN (cached, else trained)
    python bench/attribution_bench.py --model=small   # the tests' small CNN (8/16 filters)
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import benchlib  # noqa: E402, F401  (puts the repository on the path)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from tfool import attribution, data, models  # noqa: E402

FLAGS = flags.FLAGS


def define_flags(fv: flags.FlagValues = FLAGS) -> None:
    """Defines the benchmark's flags on ``fv``."""
    flags.DEFINE_enum(
        "model", "reference", ["reference", "small"], "The CNN measured.", flag_values=fv
    )
    flags.DEFINE_string(
        "model_path", "out/models/mnist_cnn.keras", "The reference CNN.", flag_values=fv
    )
    flags.DEFINE_integer("num_images", 16, "Test images attributed.", flag_values=fv)
    flags.DEFINE_integer("internal_batch_size", 50, "Integrated-gradients batch.", flag_values=fv)
    flags.DEFINE_integer("repeats", 3, "Timed calls after the first.", flag_values=fv)


def _model(kind: str, dataset: data.Dataset, model_path: str) -> keras.Model:
    if kind == "reference":
        model, _ = models.get_or_train(model_path, dataset, models.TrainConfig(verbose=0))
        return model
    keras.utils.set_random_seed(0)
    model = models.build_mnist_cnn(conv_filters=(8, 16), fc_units=64, seed=0)
    small = dataset.head(1000, 300)
    config = models.TrainConfig(epochs=3, batch_size=50, learning_rate=3e-3, verbose=0)
    models.train(model, small, config)
    return model


def main(argv) -> None:
    del argv
    args = FLAGS
    dataset = data.load_mnist(source="sample")
    model = _model(args.model, dataset, args.model_path)
    x = dataset.x_test[: args.num_images]
    target = models.predict_classes(model, x)
    accuracy = models.evaluate(model, dataset.x_test, dataset.y_test)
    print(
        f"model: {args.model} ({model.count_params():,} parameters, {accuracy:.1%} test "
        f"accuracy), {len(x)} test images, CPU threads: {os.cpu_count()}"
    )

    print("\ncompleteness error |delta| / |F(x) - F(0)|, mean / max over the images")
    print(f"{'method':<20}" + "".join(f"{n:>22}" for n in (20, 50, 200)))
    for method in attribution.IG_METHODS:
        cells = []
        for n_steps in (20, 50, 200):
            attr, delta = attribution.integrated_gradients(
                model,
                x,
                target,
                n_steps=n_steps,
                method=method,
                internal_batch_size=args.internal_batch_size,
                return_convergence_delta=True,
            )
            gap = attr.reshape(len(x), -1).sum(axis=1, dtype=np.float64) - delta
            rel = np.abs(delta) / np.abs(gap)
            cells.append(f"{rel.mean():10.2e} / {rel.max():8.2e}")
        print(f"{method:<20}" + "".join(f"{c:>22}" for c in cells))

    print("\nintegrated gradients, gausslegendre, 200 steps: seconds per image")
    for ibs in (args.internal_batch_size, None):
        fresh = keras.models.clone_model(model)
        fresh.set_weights(model.get_weights())
        times = []
        for _ in range(1 + args.repeats):
            start = time.perf_counter()
            attribution.integrated_gradients(fresh, x, target, n_steps=200, internal_batch_size=ibs)
            times.append((time.perf_counter() - start) / len(x))
        print(
            f"internal_batch_size={ibs}: {min(times[1:]):.4f} s/image compiled (best of "
            f"{args.repeats}; median {np.median(times[1:]):.4f}), {times[0]:.4f} on the "
            "first call (tracing included)"
        )

    floor = _raw_gradient_seconds(model, x, target, 200, args.internal_batch_size, args.repeats)
    print(
        f"floor: {floor:.4f} s/image for the bare compiled forward + backward passes over the "
        f"same points in batches of {args.internal_batch_size}"
    )


def _raw_gradient_seconds(model, x, target, n_steps, batch, repeats) -> float:
    """Best time per image of the plain gradient passes integrated gradients needs."""
    points = tf.constant(np.repeat(x, n_steps, axis=0))
    labels = tf.constant(np.repeat(target, n_steps).astype(np.int32))

    @tf.function
    def step(p, t):
        with tf.GradientTape() as tape:
            tape.watch(p)
            total = tf.reduce_sum(tf.gather(model(p), t, axis=1, batch_dims=1))
        return tape.gradient(total, p)

    times = []
    for _ in range(1 + repeats):
        start = time.perf_counter()
        for i in range(0, len(points), batch):
            step(points[i : i + batch], labels[i : i + batch]).numpy()
        times.append((time.perf_counter() - start) / len(x))
    return min(times[1:])


if __name__ == "__main__":
    define_flags()
    app.run(main)
