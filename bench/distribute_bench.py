"""Throughput of training (and of FGSM) on one device against two replicas on this machine.

Run from the repository root::

    python bench/distribute_bench.py [--configs=one,mirrored,workers] [--train_images=2000]
                                     [--batch_size=100] [--epochs=1] [--small]

Each configuration runs in fresh processes (logical devices and multi-worker collectives
must be set up before TensorFlow starts):

    one       1 CPU device, no strategy
    mirrored  MirroredStrategy over 2 logical CPU devices of one process
    workers   MultiWorkerMirroredStrategy, 2 processes on loopback ports (TF_CONFIG)

Training is the reference CNN (``--small``: 8/16 filters, 64 units) on the embedded MNIST
sample with the same seed everywhere; images/s counts the steps after the first three
(tracing excluded). The last column is the largest difference of the final weights from
the ``one`` run: the runs take the same steps, so it stays at float rounding. FGSM
images/s is the second of two passes over the test images (the first traces).
Two logical CPUs share the same cores, so expect no speed-up: the point is correctness.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import benchlib  # noqa: E402  (puts the repository on the path)
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS

CONFIGS = {
    "one": ("off", 1, 1),
    "mirrored": ("mirrored", 2, 1),
    "workers": ("multi_worker_mirrored", 1, 2),
}
WARMUP_STEPS = 3


def define_flags(fv: flags.FlagValues = FLAGS) -> None:
    """Defines the benchmark's flags on ``fv``."""
    flags.DEFINE_list("configs", list(CONFIGS), "Configurations to run, in order.", flag_values=fv)
    flags.DEFINE_integer("train_images", 2000, "Training images of the sample.", flag_values=fv)
    flags.DEFINE_integer("batch_size", 100, "Global batch.", flag_values=fv)
    flags.DEFINE_integer("epochs", 1, "Training epochs.", flag_values=fv)
    flags.DEFINE_bool("small", False, "A small CNN instead.", flag_values=fv)
    flags.DEFINE_enum(
        "child",
        None,
        list(CONFIGS),
        "Internal: run one process of one configuration.",
        flag_values=fv,
    )
    flags.DEFINE_string("out", "", "Internal: the folder of the weights.", flag_values=fv)


def child(args: flags.FlagValues) -> None:
    """One process of one configuration: trains, attacks, prints ``RESULT {json}``."""
    import tensorflow as tf

    name, logical, _ = CONFIGS[args.child]
    if logical > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * logical
        )
    import keras

    from tfool import attacks, data, distribute, io, models

    strategy = distribute.get_strategy(name)
    ds = data.load_mnist(source="sample").head(args.train_images)
    build = dict(conv_filters=(8, 16), fc_units=64) if args.small else {}
    config = models.TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=0, verbose=0)

    class StepTimes(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.times = []

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter())

    times = StepTimes()
    cpu = time.process_time()
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = models.build_mnist_cnn(seed=0, **build)
    result = models.train(model, ds, config, strategy, callbacks=[times])
    cpu = time.process_time() - cpu
    timed_steps = len(times.times) - WARMUP_STEPS
    images_per_s = timed_steps * args.batch_size / (times.times[-1] - times.times[WARMUP_STEPS - 1])

    x, y = ds.x_test, ds.y_test
    attacks.fgsm(model, x, 0.1, y=y, batch_size=500, strategy=strategy)
    start = time.perf_counter()
    attacks.fgsm(model, x, 0.1, y=y, batch_size=500, strategy=strategy)
    fgsm_per_s = len(x) / (time.perf_counter() - start)

    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index", 0)
    weights = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    path = Path(args.out) / f"{args.child}{task}.npz"
    io.write_npz(path, **weights)
    report = dict(
        config=args.child,
        strategy=distribute.describe(strategy),
        replicas=strategy.num_replicas_in_sync,
        train_images_per_s=images_per_s,
        timed_steps=timed_steps,
        train_seconds=result.train_seconds,
        train_cpu_seconds=cpu,
        test_accuracy=result.test_accuracy,
        fgsm_images_per_s=fgsm_per_s,
        weights=str(path),
        load1=benchlib.load_average(),
    )
    print("RESULT " + json.dumps(report), flush=True)


def main(argv) -> None:
    del argv
    args = FLAGS
    if args.child:
        child(args)
        return

    import numpy as np

    from tfool.local_cluster import Workers

    configs = [c for c in args.configs if c]
    out = tempfile.mkdtemp(prefix="distribute_bench_")
    passed = [
        f"--train_images={args.train_images}",
        f"--batch_size={args.batch_size}",
        f"--epochs={args.epochs}",
        f"--out={out}",
        *(["--small"] if args.small else []),
    ]
    print(
        f"reference CNN{' (small)' if args.small else ''}, {args.train_images} images, "
        f"global batch {args.batch_size}, {args.epochs} epoch(s); {os.cpu_count()} CPU cores"
    )
    print("config    replicas train_img/s train_s cpu_s  test_acc fgsm_img/s load1  max|w - w_one|")
    reference = None
    for name in configs:
        workers = CONFIGS[name][2]
        script = str(Path(__file__).resolve())
        reports = Workers(script, [f"--child={name}", *passed], workers).reports(timeout=1800)
        for report in reports:
            with np.load(report["weights"]) as npz:
                weights = [npz[k] for k in sorted(npz, key=lambda k: int(k[1:]))]
            if reference is None:
                reference = weights
            diff = max(float(np.max(np.abs(a - b))) for a, b in zip(weights, reference))
            print(
                f"{name:9s} {report['replicas']:8d} {report['train_images_per_s']:11.0f} "
                f"{report['train_seconds']:7.1f} {report['train_cpu_seconds']:5.1f} "
                f"{100 * report['test_accuracy']:7.2f}% {report['fgsm_images_per_s']:10.0f} "
                f"{report['load1']:5.2f}  {diff:.1e}",
                flush=True,
            )


if __name__ == "__main__":
    define_flags()
    app.run(main)
