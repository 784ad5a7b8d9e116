"""Runs tfool paths without and with a tf.distribute strategy and reports how far apart they are.

A subprocess driver for tests/test_distribute.py and bench/distribute_bench.py: logical
CPU devices and multi-worker collectives must be set up before TensorFlow initialises,
which a pytest process has long done. Each case is ``fn(strategy) -> {name: array}``; the
driver runs every requested case with ``strategy=None`` (the reference) and with the
strategy, and prints one line ``RESULT {json}`` holding, per case and output, the largest
absolute difference and the largest absolute reference value. ``--out=DIR`` also saves
``<case>.reference.npz`` and ``<case>.worker<i>.npz``; ``--no_reference`` skips the
reference runs (the workers of a cluster are compared with another run's reference).

    python tests/distributed_worker.py --strategy=mirrored --logical_cpus=2 --cases=fgsm,train
    TF_CONFIG=... python tests/distributed_worker.py --strategy=multi_worker_mirrored

``tfool.local_cluster.Workers(this file, args, num_workers)`` starts it in several
processes with a loopback ``TF_CONFIG`` cluster. To add a case (backworking, say), write
``case_<name>(strategy)`` below, build its model in ``_scope(strategy)`` and add it to
``CASES``: tests/test_distribute.py runs every case under ``mirrored``, and the ones in
its ``MULTI_WORKER_CASES`` on two workers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["TFOOL_OFFLINE"] = "1"
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

#: Global batch of the attack and attribution cases: odd, so the last batch is padded.
BATCH = 7


def _scope(strategy):
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def _data(train: int = 128, test: int = 32):
    from tfool import data

    return data.load_mnist(source="sample").head(train, test)


def _tiny_cnn(strategy, seed: int = 0):
    """A small untrained reference-topology CNN, built in the strategy's scope."""
    from tfool import models

    with _scope(strategy):
        return models.build_mnist_cnn(conv_filters=(4, 8), fc_units=32, seed=seed)


def case_train(strategy, epochs: int = 2, batch_size: int = 32, train: int = 128):
    """``models.get_or_train``: same seed, same data order; the weights after training."""
    from tfool import models

    config = models.TrainConfig(epochs=epochs, batch_size=batch_size, seed=3, verbose=0)
    model, result = models.get_or_train(
        None,
        _data(train),
        config,
        strategy,
        build_kwargs=dict(conv_filters=(4, 8), fc_units=32),
    )
    out = {f"weight{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}
    initial = _tiny_cnn(None, seed=3).get_weights()  # the same seeded initialisers
    out["moved"] = np.asarray(max(np.abs(w - w0).max() for w, w0 in zip(out.values(), initial)))
    out["loss"] = np.asarray(result.history["loss"])
    out["logits"] = models.predict_logits(model, _data(train).x_test[:16], 16, strategy)
    out["test_accuracy"] = np.asarray(result.test_accuracy)
    return out


def case_fgsm(strategy):
    """FGSM, PGD, the loss gradient and the probabilities on 11 images, global batch 7."""
    from tfool import attacks

    model = _tiny_cnn(strategy)
    ds = _data()
    x, y = ds.x_test[:11], ds.y_test[:11]
    return {
        "fgsm": attacks.fgsm(model, x, 0.1, y=y, strategy=strategy, batch_size=BATCH),
        "pgd": attacks.pgd(model, x, 0.1, steps=2, y=y, strategy=strategy, batch_size=BATCH),
        "gradient": attacks.loss_gradient(model, x, y, strategy=strategy, batch_size=BATCH),
        "probabilities": attacks.probabilities(model, x, strategy=strategy, batch_size=BATCH),
    }


def case_attribution(strategy):
    """Saliency, integrated gradients (odd chunks) and occlusion on 5 images."""
    from tfool import attribution

    model = _tiny_cnn(strategy)
    ds = _data()
    x, target = ds.x_test[:5], ds.y_test[:5]
    ig, delta = attribution.integrated_gradients(
        model,
        x,
        target,
        n_steps=8,
        internal_batch_size=BATCH,
        return_convergence_delta=True,
        strategy=strategy,
    )
    window = dict(sliding_window_shapes=(7, 7, 1), strides=(7, 7, 1), perturbations_per_eval=5)
    return {
        "saliency": attribution.saliency(model, x, target, strategy=strategy),
        "integrated_gradients": ig,
        "ig_delta": delta,
        "occlusion": attribution.occlusion(model, x, target, strategy=strategy, **window),
    }


def case_projection(strategy):
    """Gradient projection of three targets (an odd batch) on a tiny 1,000-class CNN."""
    from tiny_imagenet import tiny_imagenet_model

    from tfool import projection

    with _scope(strategy):
        model = tiny_imagenet_model()
    start = np.random.default_rng(0).uniform(40, 215, (16, 16, 3)).astype(np.float32)
    result = projection.project(
        model, start, [1, 2, 3], projection.ProjectionConfig(steps=4), strategy=strategy
    )
    return {"images": result.images, "target_probs": result.target_probs}


def case_survey(strategy):
    """The noise survey of two tiny models, 9 images in batches of 4."""
    from tiny_imagenet import tiny_imagenet_model

    from tfool import survey

    with _scope(strategy):
        models = [
            tiny_imagenet_model(16, 0, "small", preprocess="resnet50", filters=6),
            tiny_imagenet_model(20, 1, "large", preprocess="resnet50", filters=6),
        ]
    result = survey.noise_survey(
        models, survey.SurveyConfig(num_images=9, batch_size=4, seed=4), strategy=strategy
    )
    out = {}
    for part in result.models:
        out[f"{part.name}_labels"] = part.labels.astype(np.float64)
        out[f"{part.name}_confidences"] = part.confidences
    return out


def case_backwork(strategy):
    """Backworking 3 labels (an odd count: one padding group) x 3 rows for 3 steps."""
    from tfool import backwork

    model = _tiny_cnn(None, seed=2)  # the model's weights are read, never trained
    config = backwork.BackworkConfig(
        labels=(1, 4, 7),
        num_examples=3,
        reference_size=30,
        max_num_steps=3,
        min_num_steps=0,
        jit_compile=False,
        seed=5,
    )
    result = backwork.backwork(model, _data(), config, strategy=strategy)
    return {
        "start_probs": result.history_probs[0],
        "probabilities": result.probabilities,
        "cost": result.cost,
        "reference_terms": result.cost_terms["reference"],
        "batch_terms": result.cost_terms["batch"],
        "images": result.images,
        "reinits": result.reinits.astype(np.float64),
        "label_steps": result.label_steps.astype(np.float64),
    }


#: Case name -> ``fn(strategy) -> {output name: array}``.
CASES = {
    "train": case_train,
    "fgsm": case_fgsm,
    "attribution": case_attribution,
    "projection": case_projection,
    "survey": case_survey,
    "backwork": case_backwork,
}


def compare(reference: dict, distributed: dict) -> dict:
    """Per output: the largest absolute difference and the largest absolute reference value."""
    if reference.keys() != distributed.keys():
        raise ValueError(f"outputs differ: {sorted(reference)} vs {sorted(distributed)}")
    out = {}
    for name, ref in reference.items():
        ref, dist = np.asarray(ref, np.float64), np.asarray(distributed[name], np.float64)
        if ref.shape != dist.shape:
            out[name] = {"shape": [list(ref.shape), list(dist.shape)], "max_abs_diff": None}
            continue
        out[name] = {
            "max_abs_diff": float(np.max(np.abs(ref - dist))) if ref.size else 0.0,
            "max_abs": float(np.max(np.abs(ref))) if ref.size else 0.0,
        }
    return out


def load_outputs(out_dir: str | os.PathLike, case: str, tag: str) -> dict[str, np.ndarray]:
    """The arrays a run saved with ``--out`` (``tag``: ``reference`` or ``worker<i>``)."""
    with np.load(Path(out_dir) / f"{case}.{tag}.npz") as npz:
        return dict(npz)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="mirrored", help="a get_strategy name")
    parser.add_argument("--logical_cpus", type=int, default=0, help="split the CPU first")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated CASES")
    parser.add_argument(
        "--repeats", type=int, default=1, help="timing runs of the distributed side (bench)"
    )
    parser.add_argument("--no_reference", action="store_true", help="skip strategy=None runs")
    parser.add_argument("--out", default="", help="save <case>.<reference|worker<i>>.npz here")
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; expected some of {list(CASES)}")
    if args.logical_cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus
        )

    from tfool import distribute

    strategy = distribute.get_strategy(args.strategy)  # before any other TensorFlow work
    report = {
        "strategy": distribute.describe(strategy),
        "replicas": strategy.num_replicas_in_sync,
        "chief": distribute.is_chief(strategy),
        "task": json.loads(os.environ.get("TF_CONFIG", "{}")).get("task"),
        "cases": {},
        "seconds": {},
        "reference_seconds": {},
        "startup_seconds": time.perf_counter() - STARTED,
    }
    for case in cases:
        fn = CASES[case]
        reference = None
        if not args.no_reference:
            start = time.perf_counter()
            reference = fn(None)
            report["reference_seconds"][case] = time.perf_counter() - start
        times = []
        for _ in range(max(args.repeats, 1)):
            start = time.perf_counter()
            distributed = fn(strategy)
            times.append(time.perf_counter() - start)
        report["seconds"][case] = times
        if reference is not None:
            report["cases"][case] = compare(reference, distributed)
        if args.out:
            from tfool import io

            task = report["task"]["index"] if report["task"] else 0
            io.write_npz(Path(args.out) / f"{case}.worker{task}.npz", **distributed)
            if reference is not None:
                io.write_npz(Path(args.out) / f"{case}.reference.npz", **reference)
    report["total_seconds"] = time.perf_counter() - STARTED
    print("RESULT " + json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
