"""Benchmark: how far float16 / bfloat16 reference storage drifts from float32.

On the same model, data and initial images, in one process:

* the cost terms of the same images (noise, then backworked snapshots) evaluated with
  references stored in each type, as relative differences to float32;
* ``--steps`` backworking steps from the same noise with each type: the largest pixel
  difference of the images to the float32 run's, and the relative difference of the final
  cost and of the mean target probability;
* the memory of each reference set.

Run from the repository root (full MNIST from the shared folder, the cached CNN)::

    python bench/reference_dtype_drift.py --model_path=out/models/full_cnn.keras
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import the tfool next to this file
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from tfool import backwork as bw  # noqa: E402
from tfool import data as tfool_data  # noqa: E402
from tfool import io, models  # noqa: E402

FLAGS = flags.FLAGS
REPO = Path(__file__).resolve().parents[1]


def define_flags(fv: flags.FlagValues = FLAGS) -> None:
    """Defines the benchmark's flags on ``fv``."""
    flags.DEFINE_enum(
        "data_source",
        "idx",
        ["idx", "npz", "keras", "sample", "auto"],
        "MNIST source.",
        flag_values=fv,
    )
    flags.DEFINE_string(
        "data_dir",
        str(REPO.parent / "shared" / "data" / "mnist"),
        "Folder of the MNIST files for the idx/npz sources.",
        flag_values=fv,
    )
    flags.DEFINE_string(
        "model_path", None, "A trained .keras CNN (default: fresh weights).", flag_values=fv
    )
    flags.DEFINE_list(
        "dtypes", ["float16", "bfloat16"], "Types compared with float32.", flag_values=fv
    )
    flags.DEFINE_list(
        "steps", ["1", "10", "100"], "Backworking steps of the runs compared.", flag_values=fv
    )
    flags.DEFINE_string(
        "output", "out/bench/reference_dtype_drift.json", "JSON with every figure.", flag_values=fv
    )


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))


def main(argv):
    del argv
    ds = tfool_data.load_mnist(
        FLAGS.data_source, FLAGS.data_dir if FLAGS.data_source in ("idx", "npz") else None
    )
    if FLAGS.model_path:
        model = models.load_model(FLAGS.model_path)
    else:
        keras.utils.set_random_seed(0)
        model = models.build_mnist_cnn(seed=0)
    base = bw.BackworkConfig(prob_cap_min=1.0)  # every run takes all its steps
    print(f"data: {ds.source}, {len(ds.x_train)} train images; load {os.getloadavg()[0]:.2f}")
    results = {"data": ds.source, "model": FLAGS.model_path or "fresh weights", "runs": {}}
    runs = {}
    for dtype in ["float32", *FLAGS.dtypes]:
        config = dataclasses.replace(base, reference_dtype=dtype)
        refs = bw.reference_set(model, ds, config)
        runs[dtype] = {"gb": refs.nbytes / 1e9}
        for steps in sorted(int(s) for s in FLAGS.steps):
            res = bw.backwork(
                model, ds, dataclasses.replace(config, max_num_steps=steps), references=refs
            )
            runs[dtype][steps] = res
        del refs
        print(f"{dtype}: reference set {runs[dtype]['gb']:.2f} GB")
    for dtype in FLAGS.dtypes:
        rows = {"reference_gb": runs[dtype]["gb"]}
        for steps in sorted(int(s) for s in FLAGS.steps):
            a, b = runs[dtype][steps], runs["float32"][steps]
            row = {
                "max_pixel_difference": float(np.abs(a.images - b.images).max()),
                "mean_pixel_difference": float(np.abs(a.images - b.images).mean()),
                "cost_rel_difference": _rel(a.cost, b.cost),
                "reference_term_rel_difference": _rel(
                    a.cost_terms["reference"], b.cost_terms["reference"]
                ),
                "mean_target_prob": [float(a.target_probs.mean()), float(b.target_probs.mean())],
            }
            rows[steps] = row
            print(
                f"{dtype} vs float32 after {steps:4d} steps: pixels max {row['max_pixel_difference']:.2e} "
                f"mean {row['mean_pixel_difference']:.2e}; cost rel {row['cost_rel_difference']:.2e}; "
                f"reference terms rel {row['reference_term_rel_difference']:.2e}; mean p "
                f"{row['mean_target_prob'][0]:.4f} vs {row['mean_target_prob'][1]:.4f}"
            )
        results["runs"][dtype] = rows
    results["float32_reference_gb"] = runs["float32"]["gb"]
    if FLAGS.output:
        io.write_json(FLAGS.output, results)
        print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
