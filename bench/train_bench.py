"""Benchmark: tfool's training loop against keras' own ``fit``, and the default recipe.

Part 1 (always): the same reference CNN (same initial weights), batch 50 and Adam, trained
for ``--steps`` steps by ``tfool.models.train`` and by ``keras.Model.fit``, in this one
process, alternating ``--rounds`` times; reports milliseconds per step (compilation
excluded: each timed run follows an untimed one) and the ratio.

Part 2 (``--recipe``): the default recipe (``TrainConfig()``) trained in full on the
data, with its test accuracy and time.

Run from the repository root::

    python bench/train_bench.py                      # full MNIST from the shared folder
    python bench/train_bench.py --recipe             # also the full default recipe
    python bench/train_bench.py --data_source=sample --recipe
"""

from __future__ import annotations

import dataclasses
import os
import time

import benchlib  # noqa: E402  (puts the repository on the path)
import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from tfool import data as tfool_data  # noqa: E402
from tfool import models  # noqa: E402

FLAGS = flags.FLAGS


def define_flags(fv: flags.FlagValues = FLAGS) -> None:
    """Defines the benchmark's flags on ``fv``."""
    benchlib.define_data_flags(fv, model=False)
    flags.DEFINE_integer("steps", 300, "Timed steps per run.", lower_bound=10, flag_values=fv)
    flags.DEFINE_integer(
        "rounds", 4, "Alternations of the two loops.", lower_bound=1, flag_values=fv
    )
    flags.DEFINE_integer(
        "batch_size", 50, "Batch size of both loops.", lower_bound=1, flag_values=fv
    )
    flags.DEFINE_bool("recipe", False, "Also train the default recipe in full.", flag_values=fv)
    flags.DEFINE_string(
        "output", "out/bench/train_bench.json", "JSON with every figure.", flag_values=fv
    )


def _subset(ds: tfool_data.Dataset, rows: int) -> tfool_data.Dataset:
    return dataclasses.replace(
        ds,
        x_train=ds.x_train[:rows],
        y_train=ds.y_train[:rows],
        x_test=ds.x_test[:100],
        y_test=ds.y_test[:100],
    )


def tfool_ms_per_step(ds, steps: int, batch: int) -> float:
    """Milliseconds per step of ``tfool.models.train`` (a warm second run)."""
    config = models.TrainConfig(epochs=1, batch_size=batch, verbose=0, schedule="constant")
    keras.utils.set_random_seed(0)
    model = models.build_mnist_cnn(seed=0)
    models.train(model, _subset(ds, 2 * batch), config)  # tracing
    sub = _subset(ds, steps * batch)
    start = time.perf_counter()
    models.train(model, sub, config)
    seconds = time.perf_counter() - start
    return 1e3 * (seconds - _eval_seconds(model, sub)) / steps


def _eval_seconds(model, sub) -> float:
    start = time.perf_counter()
    models.evaluate(model, sub.x_test, sub.y_test)
    return time.perf_counter() - start


def fit_ms_per_step(ds, steps: int, batch: int) -> float:
    """Milliseconds per step of ``keras.Model.fit`` on the same model (a warm second call)."""
    keras.utils.set_random_seed(0)
    model = models.build_mnist_cnn(seed=0)
    models.compile_classifier(model, 1e-3)
    model.fit(ds.x_train[: 2 * batch], ds.y_train[: 2 * batch], batch_size=batch, verbose=0)
    x, y = ds.x_train[: steps * batch], ds.y_train[: steps * batch]
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=True)
    return 1e3 * (time.perf_counter() - start) / steps


def main(argv):
    del argv
    ds = benchlib.load_data(FLAGS)
    steps = min(FLAGS.steps, len(ds.x_train) // FLAGS.batch_size)
    load = os.getloadavg()[0]
    print(f"data: {ds.source}, {len(ds.x_train)} train images; load average {load:.2f}")
    rows = []
    for r in range(FLAGS.rounds):
        t = tfool_ms_per_step(ds, steps, FLAGS.batch_size)
        f = fit_ms_per_step(ds, steps, FLAGS.batch_size)
        rows.append({"tfool_ms": t, "fit_ms": f, "ratio": t / f})
        print(
            f"round {r + 1}: tfool {t:.1f} ms/step, keras fit {f:.1f} ms/step, "
            f"tfool/fit {t / f:.2f}"
        )
    t = float(np.median([r["tfool_ms"] for r in rows]))
    f = float(np.median([r["fit_ms"] for r in rows]))
    print(
        f"median over rounds: tfool {t:.1f} ms/step, fit {f:.1f} ms/step, ratio {t / f:.2f} "
        f"(batch {FLAGS.batch_size}, {steps} steps)"
    )
    results = {
        "data": ds.source,
        "batch_size": FLAGS.batch_size,
        "steps": steps,
        "rounds": rows,
        "tfool_ms": t,
        "fit_ms": f,
        "ratio": t / f,
        "load_average_start": load,
    }
    if FLAGS.recipe:
        config = models.TrainConfig(verbose=0)
        keras.utils.set_random_seed(config.seed)
        model = models.build_mnist_cnn(seed=config.seed)
        res = models.train(model, ds, config)
        print(
            f"default recipe ({config.describe(len(ds.x_train))}): "
            f"{100 * res.test_accuracy:.2f}% test accuracy, {res.train_seconds:.0f} s"
        )
        results["recipe"] = {
            "config": dataclasses.asdict(config),
            "epochs": res.epochs,
            "test_accuracy": res.test_accuracy,
            "train_seconds": res.train_seconds,
        }
    results["load_average_end"] = os.getloadavg()[0]
    benchlib.write_results(FLAGS.output, results)


if __name__ == "__main__":
    define_flags()
    app.run(main)
