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

import benchlib  # noqa: E402  (puts the repository on the path)
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from tfool import backwork as bw  # noqa: E402

FLAGS = flags.FLAGS


def define_flags(fv: flags.FlagValues = FLAGS) -> None:
    """Defines the benchmark's flags on ``fv``."""
    benchlib.define_data_flags(fv, model=True)
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
    ds = benchlib.load_data(FLAGS)
    model = benchlib.load_model(FLAGS)
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
    benchlib.write_results(FLAGS.output, results)


if __name__ == "__main__":
    define_flags()
    app.run(main)
