"""tfool.analysis: pixel and activation distances, the summary, worst-classified images."""

import numpy as np
import pytest

from tfool import analysis, classifier
from tfool import backwork as bw

FAST = dict(num_examples=3, reference_size=40, jit_compile=False, max_num_steps=12, min_num_steps=0)


def cfg(**kw):
    return bw.BackworkConfig(**{**FAST, **kw})


def test_summary_and_pixel_distances(small_cnn, small_data):
    res = bw.backwork(small_cnn, small_data, cfg(labels=(2, 5), max_num_steps=5))
    s = analysis.summarize(res, small_data)
    assert [r["label"] for r in s["labels"]] == [2, 5]
    nearest, pairwise = analysis.image_distances(res.images, small_data.x_train)
    brute = np.sqrt(((res.images[0][:, None] - small_data.x_train[None]) ** 2).sum((2, 3, 4)))
    np.testing.assert_allclose(nearest[0], brute.min(1).mean(), rtol=1e-5)
    within = np.sqrt(((res.images[1][:, None] - res.images[1][None]) ** 2).sum((2, 3, 4)))
    np.testing.assert_allclose(pairwise[1], within[~np.eye(3, dtype=bool)].mean(), rtol=1e-5)
    assert s["labels"][0]["mean_nearest_train_distance"] == pytest.approx(nearest[0])
    assert s["steps"] == res.steps and s["all_converged"] == bool(res.converged.all())


def test_worst_classified_sorted(small_cnn, small_data):
    imgs, probs = analysis.worst_classified(small_cnn, small_data, [1, 8], 4)
    assert imgs.shape == (2, 4, 28, 28, 1)
    assert np.all(np.diff(probs, axis=1) >= 0)
    logits = small_cnn.predict(small_data.x_train, verbose=0)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p = (p / p.sum(1, keepdims=True))[small_data.y_train == 1, 1]
    np.testing.assert_allclose(probs[0], np.sort(p)[:4], rtol=1e-4)


def test_layer_distances_match_brute_force(small_cnn, small_data):
    res = bw.backwork(small_cnn, small_data, cfg(labels=(2, 5), max_num_steps=3))
    dist = analysis.layer_distances(small_cnn, small_data, res)
    assert list(dist) == ["inputs", "conv0", "conv1", "fc"]
    g = res.images[1].reshape(3, -1).astype(np.float64)
    r = small_data.train_of_class(5).reshape(-1, 784).astype(np.float64)
    nearest = ((g[:, None] - r[None]) ** 2).mean(-1).min(1).mean()
    pair = ((g[:, None] - g[None]) ** 2).mean(-1)[~np.eye(3, dtype=bool)].mean()
    g0 = res.images[0].reshape(3, -1).astype(np.float64)
    r0 = small_data.train_of_class(2).reshape(-1, 784).astype(np.float64)
    nearest0 = ((g0[:, None] - r0[None]) ** 2).mean(-1).min(1).mean()
    pair0 = ((g0[:, None] - g0[None]) ** 2).mean(-1)[~np.eye(3, dtype=bool)].mean()
    assert dist["inputs"]["nearest_train"] == pytest.approx((nearest + nearest0) / 2, rel=1e-4)
    assert dist["inputs"]["within_batch"] == pytest.approx((pair + pair0) / 2, rel=1e-4)


def test_original_runs_report_the_per_unit_fc_distance(small_cnn, small_data):
    c = bw.BackworkConfig.original(**{**FAST, "labels": (4,), "max_num_steps": 2})
    refs = bw.reference_set(small_cnn, small_data, c)
    res = bw.backwork(small_cnn, small_data, c, references=refs)
    unit = analysis.layer_distances(small_cnn, small_data, res, references=refs)["fc"]
    example = analysis.layer_distances(small_cnn, small_data, res, reference_size=c.reference_size)[
        "fc"
    ]
    act = classifier.activation_model(small_cnn)
    g = act(res.images[0], training=False)["fc"].numpy().astype(np.float64)
    r = act(small_data.train_of_class(4)[:40], training=False)["fc"].numpy().astype(np.float64)
    sq = (g[None] - r[:, None]) ** 2  # [N, B, D]
    assert unit["nearest_train"] == pytest.approx(sq.min(axis=0).mean(), rel=1e-4)
    assert example["nearest_train"] == pytest.approx(sq.mean(axis=2).min(axis=0).mean(), rel=1e-4)
    assert unit["within_batch"] == pytest.approx(example["within_batch"])
