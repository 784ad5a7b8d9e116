"""tfool.costs against direct broadcast formulas."""

import numpy as np
import pytest
import tensorflow as tf

from tfool import costs


def _ref_nearest(g, r):
    d = ((g[:, None, :].astype(np.float64) - r[None, :, :]) ** 2).mean(-1)
    return d.min(axis=1)


def _ref_batch(g):
    d = ((g[:, None, :].astype(np.float64) - g[None, :, :]) ** 2).mean(-1)
    off = ~np.eye(len(g), dtype=bool)
    return 1.0 / d[off].mean()


@pytest.mark.parametrize("chunk_size", [None, 7, 1000])
def test_reference_cost_matches_broadcast(rng, chunk_size):
    g = rng.normal(size=(5, 37)).astype(np.float32)
    r = rng.normal(size=(23, 37)).astype(np.float32)
    got = costs.reference_cost(g, r, costs.squared_norms(r), chunk_size=chunk_size).numpy()
    want = 1.0 / _ref_nearest(g, r).mean()
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_nearest_distance_grouped_with_padding(rng):
    g = rng.normal(size=(3, 4, 11)).astype(np.float32)
    sizes = [9, 5, 7]
    r = np.zeros((3, 9, 11), np.float32)
    norms = np.full((3, 9), costs.PAD_NORM, np.float32)
    for i, n in enumerate(sizes):
        r[i, :n] = rng.normal(size=(n, 11))
        norms[i, :n] = (r[i, :n] ** 2).sum(-1)
    got = costs.nearest_distance(g, r, norms, chunk_size=4).numpy()
    for i, n in enumerate(sizes):
        np.testing.assert_allclose(got[i], _ref_nearest(g[i], r[i, :n]), rtol=1e-5)


def test_distance_is_floored_for_identical_rows(rng):
    g = rng.normal(size=(2, 8)).astype(np.float32)
    d = costs.nearest_distance(g, g).numpy()
    assert np.all(d >= costs.DISTANCE_FLOOR) and np.all(np.isfinite(1.0 / d))
    assert np.isfinite(costs.reference_cost(g, g).numpy())


def test_batch_cost_matches_broadcast_without_self_pairs(rng):
    g = rng.normal(size=(6, 19)).astype(np.float32)
    np.testing.assert_allclose(costs.batch_cost(g).numpy(), _ref_batch(g), rtol=1e-5)
    # including the zero self-pairs would give a larger cost: they are excluded
    with_self = 1.0 / ((g[:, None] - g[None]) ** 2).mean(-1).mean()
    assert costs.batch_cost(g).numpy() < with_self


def test_batch_cost_grouped(rng):
    g = rng.normal(size=(3, 4, 10)).astype(np.float32)
    got = costs.batch_cost(g).numpy()
    np.testing.assert_allclose(got, [_ref_batch(x) for x in g], rtol=1e-5)


def test_batch_cost_needs_two_rows():
    with pytest.raises(ValueError, match="at least 2"):
        costs.batch_cost(np.ones((1, 3), np.float32))


def test_misclassification_cost(rng):
    logits = rng.normal(size=(5, 10))
    p = tf.nn.softmax(logits).numpy().astype(np.float32)
    labels = np.array([0, 3, 3, 9, 1])
    got = costs.misclassification_cost(p, labels).numpy()
    np.testing.assert_allclose(got, np.mean(1 - p[np.arange(5), labels]), rtol=1e-5)
    ce = costs.misclassification_cost(p, labels, kind="cross_entropy").numpy()
    np.testing.assert_allclose(ce, np.mean(-np.log(p[np.arange(5), labels])), rtol=1e-5)
    grouped = costs.misclassification_cost(p[None, :4], np.array([3])).numpy()
    np.testing.assert_allclose(grouped, [np.mean(1 - p[:4, 3])], rtol=1e-5)
    with pytest.raises(ValueError, match="kind='hinge'"):
        costs.misclassification_cost(p, labels, kind="hinge")


def test_default_layer_cost_coeffs():
    np.testing.assert_allclose(costs.default_layer_cost_coeffs(5), [1e-5, 1e-4, 1e-3, 1e-2, 10])
    np.testing.assert_allclose(costs.default_layer_cost_coeffs(1), [10.0])
    with pytest.raises(ValueError, match="num_layers=0"):
        costs.default_layer_cost_coeffs(0)


def test_total_cost_is_the_weighted_sum(rng):
    num_labels, b = 2, 3
    a0 = rng.normal(size=(num_labels, b, 4, 4, 1)).astype(np.float32)
    a1 = rng.normal(size=(num_labels, b, 6)).astype(np.float32)
    probs = tf.nn.softmax(rng.normal(size=(num_labels, b, 10))).numpy().astype(np.float32)
    refs = [
        rng.normal(size=(num_labels, 5, 16)).astype(np.float32),
        rng.normal(size=(num_labels, 5, 6)).astype(np.float32),
    ]
    norms = [(r**2).sum(-1) for r in refs]
    labels = np.array([2, 7])
    coeffs = (0.1, 0.2, 3.0)
    cost, terms = costs.total_cost([a0, a1, probs], refs, norms, labels, coeffs, 0.3, 0.7)
    for li in range(num_labels):
        want = 0.0
        for i, a in enumerate([a0, a1]):
            g = a[li].reshape(b, -1)
            rc = 1.0 / _ref_nearest(g, refs[i][li]).mean()
            bc = _ref_batch(g)
            want += coeffs[i] * (0.3 * rc + 0.7 * bc)
            np.testing.assert_allclose(terms["reference"][i, li], rc, rtol=1e-5)
            np.testing.assert_allclose(terms["batch"][i, li], bc, rtol=1e-5)
        want += coeffs[-1] * np.mean(1 - probs[li, :, labels[li]])
        np.testing.assert_allclose(cost.numpy()[li], want, rtol=1e-5)
    with pytest.raises(ValueError, match="layer_cost_coeffs has 2 entries but there are 3"):
        costs.total_cost([a0, a1, probs], refs, norms, labels, (1.0, 1.0))


def test_reference_cost_gradient_is_finite(rng):
    g = tf.Variable(rng.normal(size=(2, 4, 50)).astype(np.float32))
    r = rng.normal(size=(2, 300, 50)).astype(np.float32)
    with tf.GradientTape() as tape:
        c = tf.reduce_sum(costs.reference_cost(g, r, costs.squared_norms(r), chunk_size=64))
    grad = tape.gradient(c, g).numpy()
    assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0


def _nearest_grad(g, r):
    """The exact gradient of sum_b min_n mean_d (g_b - r_n)^2, from the nearest rows."""
    d = ((g[:, None, :].astype(np.float64) - r[None, :, :]) ** 2).mean(-1)
    near = r[d.argmin(axis=1)]
    return 2.0 * (g - near) / g.shape[-1]


@pytest.mark.parametrize("chunk_size", [None, 6])
def test_nearest_distance_gradient_is_the_nearest_rows(rng, chunk_size):
    g = rng.normal(size=(4, 13)).astype(np.float32)
    r = rng.normal(size=(17, 13)).astype(np.float32)
    gv = tf.Variable(g)
    with tf.GradientTape() as tape:
        d = tf.reduce_sum(costs.nearest_distance(gv, r, chunk_size=chunk_size))
    np.testing.assert_allclose(tape.gradient(d, gv).numpy(), _nearest_grad(g, r), rtol=1e-4)
    # the same as autodiff through the broadcast formula
    with tf.GradientTape() as tape:
        diff = tf.reduce_mean(tf.square(gv[:, None, :] - r[None]), axis=-1)
        brute = tf.reduce_sum(tf.reduce_min(diff, axis=1))
    np.testing.assert_allclose(tape.gradient(brute, gv).numpy(), _nearest_grad(g, r), rtol=1e-4)


def test_nearest_distance_per_group_sets_and_transposed_layout(rng):
    g = rng.normal(size=(3, 4, 9)).astype(np.float32)
    sets = [rng.normal(size=(n, 9)).astype(np.float32) for n in (5, 11, 2)]
    want = np.stack([_ref_nearest(g[i], r) for i, r in enumerate(sets)])
    got = costs.nearest_distance(g, sets).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    cols = [np.ascontiguousarray(r.T) for r in sets]
    norms = [costs.squared_norms(r) for r in sets]
    got_t = costs.nearest_distance(g, cols, norms, chunk_size=3, transposed=True).numpy()
    np.testing.assert_allclose(got_t, want, rtol=1e-5)
    gv = tf.Variable(g)
    with tf.GradientTape() as tape:
        d = tf.reduce_sum(costs.nearest_distance(gv, cols, norms, transposed=True))
    grad = tape.gradient(d, gv).numpy()
    for i, r in enumerate(sets):
        np.testing.assert_allclose(grad[i], _nearest_grad(g[i], r), rtol=1e-4)
    with pytest.raises(ValueError, match="2 reference sets for 3 groups"):
        costs.nearest_distance(g, sets[:2])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_narrow_reference_storage_is_computed_in_float32(rng, dtype):
    g = rng.uniform(size=(5, 40)).astype(np.float32)
    r = rng.uniform(size=(30, 40)).astype(np.float32)
    narrow = tf.cast(r, dtype)
    rounded = tf.cast(narrow, tf.float32).numpy()
    got = costs.nearest_distance(g, narrow, costs.squared_norms(narrow))
    assert got.dtype == tf.float32
    # exact on the rounded references, close to the float32 ones
    np.testing.assert_allclose(got.numpy(), _ref_nearest(g, rounded), rtol=1e-4)
    np.testing.assert_allclose(got.numpy(), _ref_nearest(g, r), rtol=2e-2)


def test_cost_terms_are_one_table(rng):
    names = [t.name for t in costs.COST_TERMS]
    assert names == ["reference", "batch", "softmax"]
    assert costs.coefficient_names() == ("reference_cost_coeff", "batch_cost_coeff")
    acts = [rng.normal(size=(2, 3, 5)).astype(np.float32), np.full((2, 3, 4), 0.25, np.float32)]
    refs = [[tf.constant(rng.normal(size=(6, 5)), tf.float32)] * 2]
    norms = [[costs.squared_norms(refs[0][0])] * 2]
    labels = tf.constant([0, 1], tf.int64)
    cost, terms = costs.total_cost(acts, refs, norms, labels, (1.0, 1.0))
    assert list(terms) == names
    weighted, _ = costs.total_cost(
        acts, refs, norms, labels, (1.0, 1.0), weights={"batch_cost_coeff": 0.0}
    )
    np.testing.assert_array_equal(terms["batch"].numpy().shape, (1, 2))
    assert not np.allclose(cost.numpy(), weighted.numpy())
