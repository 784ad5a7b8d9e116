"""Measure: how much the original program's cost variants change the cost on real data.

On the same images (uniform noise, and the final images of saved runs given with
``--results``), with the trained CNN and every training image of each label as reference:

* the ``fc`` reference distance and term per example (tfool) and per unit (the original's
  minimum over the references taken separately for every unit);
* the batch terms with and without the self-pairs (exactly ``B / (B - 1)`` apart).

Run from the repository root::

    python bench/semantics_bench.py --model_path=out/models/full_cnn.keras \\
        --results=out/full/images.npz,out/original/images.npz
"""

from __future__ import annotations

import benchlib  # noqa: E402  (puts the repository on the path)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from tfool import backwork as bw  # noqa: E402
from tfool import classifier, costs  # noqa: E402

FLAGS = flags.FLAGS


def define_flags(fv: flags.FlagValues = FLAGS) -> None:
    """Defines the measurement's flags on ``fv``."""
    benchlib.define_data_flags(fv, model=True)
    flags.DEFINE_list(
        "results", [], "images.npz files whose final images are measured too.", flag_values=fv
    )
    flags.DEFINE_string(
        "output", "out/bench/semantics_bench.json", "JSON with the figures.", flag_values=fv
    )
    flags.mark_flag_as_required("model_path", flag_values=fv)


def measure(model, ds, images: np.ndarray, labels) -> dict:
    """The fc distances and terms both ways, and the batch terms both ways, per label."""
    config = bw.BackworkConfig(labels=tuple(int(v) for v in labels), layer_names=("fc", "softmax"))
    per_example = bw.reference_set(model, ds, config)
    per_unit = bw.reference_set(
        model, ds, bw.BackworkConfig.original(labels=config.labels, layer_names=("fc", "softmax"))
    )
    act = classifier.activation_model(model, ("fc", "softmax"))
    num_labels, per = images.shape[:2]
    gen = tf.reshape(act(images.reshape(-1, *images.shape[2:]))["fc"], (num_labels, per, -1))
    d_example = (
        costs.nearest_distance(
            gen, list(per_example.activations[0]), list(per_example.sq_norms[0]), transposed=True
        )
        .numpy()
        .mean(axis=1)
    )
    d_unit = costs.nearest_unit_distance(gen, list(per_unit.activations[0])).numpy().mean(axis=1)
    without = costs.batch_cost(gen).numpy()
    with_self = costs.batch_cost(gen, self_pairs=True).numpy()
    return {
        "fc_distance_per_example": d_example.tolist(),
        "fc_distance_per_unit": d_unit.tolist(),
        "fc_term_ratio_unit_over_example": (d_example / d_unit).tolist(),
        "fc_batch_term_ratio_self_pairs": (with_self / without).tolist(),
    }


def main(argv):
    del argv
    ds = benchlib.load_data(FLAGS)
    model = benchlib.load_model(FLAGS)
    labels = tuple(range(10))
    noise = np.random.default_rng(0).uniform(size=(10, 8, 28, 28, 1)).astype(np.float32)
    sets = {"uniform noise": (noise, labels)}
    for path in FLAGS.results:
        res = bw.load_result(path)
        sets[path] = (res.images, res.labels)
    out = {}
    for name, (images, lbls) in sets.items():
        m = measure(model, ds, images, lbls)
        out[name] = m
        r = np.asarray(m["fc_term_ratio_unit_over_example"])
        print(
            f"{name}: fc distance per example {np.mean(m['fc_distance_per_example']):.4g}, "
            f"per unit {np.mean(m['fc_distance_per_unit']):.4g}; the per-unit fc term is "
            f"{r.min():.0f}x to {r.max():.0f}x (median {np.median(r):.0f}x) the per-example "
            f"one; self-pairs multiply the batch term by "
            f"{np.mean(m['fc_batch_term_ratio_self_pairs']):.4f}"
        )
    benchlib.write_results(FLAGS.output, out)


if __name__ == "__main__":
    define_flags()
    app.run(main)
