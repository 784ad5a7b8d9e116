"""Benchmark: the reference CNN trained on the embedded MNIST sample (accuracy and time).

Usage: python bench/train_sample.py [epochs batch_size learning_rate] ...
Each triple is one recipe; with no arguments the default TrainConfig is measured.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402

from tfool import data, models  # noqa: E402


def measure(config: models.TrainConfig) -> tuple[float, float, float, float, float]:
    """Trains the default CNN on the sample.

    Returns:
        (test accuracy, fit seconds, fit+eval seconds, fit+eval CPU seconds, 1-min load).
    """
    ds = data.load_mnist(source="sample")
    keras.utils.set_random_seed(config.seed)
    model = models.build_mnist_cnn(seed=config.seed)
    start, cpu = time.perf_counter(), time.process_time()
    result = models.train(model, ds, config)
    total, cpu = time.perf_counter() - start, time.process_time() - cpu
    return result.test_accuracy, result.train_seconds, total, cpu, os.getloadavg()[0]


def main(argv: list[str]) -> None:
    if len(argv) % 3:
        raise SystemExit(__doc__)
    recipes = [models.TrainConfig(verbose=0)]
    if argv:
        recipes = [
            models.TrainConfig(int(e), int(b), float(lr), verbose=0)
            for e, b, lr in zip(argv[::3], argv[1::3], argv[2::3], strict=True)
        ]
    print("epochs batch lr       test_acc fit_s  train+eval_s cpu_s  load1")
    for cfg in recipes:
        acc, fit_s, total, cpu, load = measure(cfg)
        print(
            f"{cfg.epochs:6d} {cfg.batch_size:5d} {cfg.learning_rate:<8g} "
            f"{100 * acc:7.2f}% {fit_s:6.1f} {total:12.1f} {cpu:6.1f} {load:5.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
