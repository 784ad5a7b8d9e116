"""The core mechanics of backworking, against formulas written here, in both semantics.

Nothing here compares tfool with itself: the Adam update, the costs (per-example and
per-unit minima, batch costs with and without self-pairs) and the loop's order and stopping
rules are checked against NumPy formulas and hand-counted schedules.
"""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tfool import backwork as bw
from tfool import classifier
from tfool.backwork import _engine

FAST = dict(num_examples=3, reference_size=30, min_num_steps=0)


def tfool_cfg(**kw):
    return bw.BackworkConfig(**{**FAST, "max_num_steps": 8, **kw})


def original_cfg(**kw):
    return bw.BackworkConfig.original(**{**FAST, "max_num_steps": 8, **kw})


# --------------------------------------------------------------------------- Adam


def _tf1_adam(x, grads, lr, b1=0.9, b2=0.999, eps=1e-8):
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        x = x - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
    return x, m, v


def test_adam_step_is_tf1_adam_on_hand_made_gradients():
    rng = np.random.default_rng(0)
    x0 = rng.uniform(size=(2, 5)).astype(np.float64)
    grads = [rng.normal(scale=s, size=x0.shape) for s in (1.0, 1e-3, 10.0, 1e-6)]
    x, m, v = tf.constant(x0), tf.zeros_like(x0), tf.zeros_like(x0)
    for t, g in enumerate(grads, start=1):
        x, m, v = bw.adam_step(x, m, v, tf.constant(float(t), tf.float64), g, 0.01)
    want_x, want_m, want_v = _tf1_adam(x0, grads, 0.01)
    np.testing.assert_allclose(x.numpy(), want_x, rtol=1e-12)
    np.testing.assert_allclose(m.numpy(), want_m, rtol=1e-12)
    np.testing.assert_allclose(v.numpy(), want_v, rtol=1e-12)
    # epsilon sits outside the square root, sqrt(v) + eps, as in TF1
    tiny = np.full((1, 1), 1e-6)
    x1, _, _ = bw.adam_step(
        tf.constant([[0.5]], tf.float64),
        0.0 * tiny,
        0.0 * tiny,
        tf.constant(1.0, tf.float64),
        tiny,
        0.01,
    )
    outside = 0.01 * np.sqrt(1 - 0.999) / (1 - 0.9) * 1e-7 / (np.sqrt(1e-15) + 1e-8)
    inside = 0.01 * np.sqrt(1 - 0.999) / (1 - 0.9) * 1e-7 / np.sqrt(1e-15 + 1e-8)
    assert 0.5 - x1.numpy()[0, 0] == pytest.approx(outside, rel=1e-6)
    assert outside > 100 * inside  # the other placement would barely move it


# --------------------------------------------------------------------------- costs


def _acts(model, images):
    act = classifier.activation_model(model)
    out = act(images.reshape(-1, 28, 28, 1), training=False)
    return act.layer_names, {k: np.asarray(v, np.float64) for k, v in out.items()}


def _formula_cost(model, data, labels, images, config):
    """Each label's cost on its own reference set, by the broadcast formulas."""
    names, gen = _acts(model, images)
    num_labels, per = images.shape[:2]
    coeffs = config.coeffs_for(len(names))
    original = config.semantics == "original"
    costs = []
    for li, lbl in enumerate(labels):
        x = data.train_of_class(lbl)[: config.reference_size]
        _, ref = _acts(model, x[None])
        total = 0.0
        for k, name in enumerate(names[:-1]):
            g = gen[name][li * per : (li + 1) * per].reshape(per, -1)
            r = ref[name].reshape(len(x), -1)
            sq = (g[None, :, :] - r[:, None, :]) ** 2  # [N, B, D], as the original built it
            if original and name == "fc":
                near = sq.min(axis=0).mean()  # per unit, then the mean
            else:
                near = sq.mean(axis=2).min(axis=0).mean()  # per example
            pairs = ((g[:, None, :] - g[None, :, :]) ** 2).mean(axis=2)
            spread = pairs.mean() if original else pairs[~np.eye(per, dtype=bool)].mean()
            total += coeffs[k] * (
                config.reference_cost_coeff / near + config.batch_cost_coeff / spread
            )
        p = gen[names[-1]][li * per : (li + 1) * per, lbl]
        total += coeffs[-1] * np.mean(1 - p)
        costs.append(total)
    return np.asarray(costs)


@pytest.mark.parametrize("make", [tfool_cfg, original_cfg])
def test_joint_cost_is_each_labels_own_formula(small_cnn, small_data, make):
    labels = (2, 5, 9)
    config = make(labels=labels, max_num_steps=1, prob_cap_min=1.0, learning_rate=1e-12)
    rng = np.random.default_rng(4)
    start = rng.uniform(size=(3, 3, 28, 28, 1)).astype(np.float32)
    res = bw.backwork(small_cnn, small_data, config, initial_images=start)
    want = _formula_cost(small_cnn, small_data, labels, res.images, config)
    np.testing.assert_allclose(res.cost, want, rtol=2e-3)


def test_the_variants_change_the_cost_as_documented(small_cnn, small_data):
    rng = np.random.default_rng(5)
    start = rng.uniform(size=(1, 3, 28, 28, 1)).astype(np.float32)
    kw = dict(labels=(3,), max_num_steps=1, prob_cap_min=1.0, learning_rate=1e-12)
    a = bw.backwork(small_cnn, small_data, tfool_cfg(**kw), initial_images=start)
    b = bw.backwork(small_cnn, small_data, original_cfg(**kw), initial_images=start)
    # self-pairs: exactly B / (B - 1) on every batch term
    np.testing.assert_allclose(b.cost_terms["batch"], a.cost_terms["batch"] * 3 / 2, rtol=1e-4)
    # per-example layers agree; the fc term (per-unit minimum) is larger: nearer per unit
    np.testing.assert_allclose(
        b.cost_terms["reference"][:3], a.cost_terms["reference"][:3], rtol=1e-4
    )
    assert b.cost_terms["reference"][3, 0] > 1.5 * a.cost_terms["reference"][3, 0]


# --------------------------------------------------------------------------- the loop


def test_original_steps_first_and_takes_exactly_max_steps(small_cnn, small_data):
    rng = np.random.default_rng(6)
    start = rng.uniform(size=(2, 3, 28, 28, 1)).astype(np.float32)
    c = original_cfg(labels=(0, 4), max_num_steps=7, prob_cap_min=1.0, reinit_below=1e-9)
    res = bw.backwork(small_cnn, small_data, c, initial_images=start)
    assert res.steps == 7 and list(res.label_steps) == [7, 7]
    assert list(res.history_steps) == [1, 2, 3, 4, 5, 6, 7]  # the noise itself is never saved
    assert not np.allclose(res.history_images[0], start)
    t = dataclasses.replace(c, semantics="tfool")
    res_t = bw.backwork(small_cnn, small_data, t, initial_images=start)
    assert list(res_t.history_steps) == list(range(8))  # tfool saves the noise at step 0
    np.testing.assert_allclose(res_t.history_images[0], start)
    # the first save follows one Adam step from the noise: every pixel moved by about lr
    moved = np.abs(res.history_images[0] - start)
    assert moved.max() <= 0.0101 and np.median(moved) > 0.009


@pytest.mark.parametrize("make", [tfool_cfg, original_cfg])
def test_save_freq_sets_the_saves(small_cnn, small_data, make):
    c = make(labels=(6,), max_num_steps=10, save_freq=3, prob_cap_min=1.0)
    res = bw.backwork(small_cnn, small_data, c)
    if c.semantics == "original":  # after steps i+1 with i % 3 == 0, and after the last
        assert list(res.history_steps) == [1, 4, 7, 10]
    else:  # at steps 0, 3, 6, 9 (before stepping)
        assert list(res.history_steps) == [0, 3, 6, 9]
    assert res.steps == 10


@pytest.mark.parametrize("make", [tfool_cfg, original_cfg])
def test_min_num_steps_holds_off_convergence(small_cnn, small_data, make):
    c = make(labels=(8,), prob_cap_min=1e-6, min_num_steps=4, max_num_steps=50)
    res = bw.backwork(small_cnn, small_data, c)
    assert res.converged.all()
    # tfool tests at step 4 (before its 5th step); the original after its 5th step (i=4)
    assert res.label_steps[0] == (5 if c.semantics == "original" else 4)


@pytest.mark.parametrize("make", [tfool_cfg, original_cfg])
def test_prob_cap_mean_stops_at_the_first_mean_above_it(small_cnn, small_data, make):
    c = make(labels=(0,), prob_cap_min=1.0, prob_cap_mean=0.6, max_num_steps=200)
    res = bw.backwork(small_cnn, small_data, c)
    means = res.history_probs[:, 0, :, 0].mean(axis=1)
    assert res.converged.all() and means[-1] > 0.6 and np.all(means[:-1] <= 0.6)


@pytest.mark.parametrize("make", [tfool_cfg, original_cfg])
def test_tolerance_stops_a_flat_label(small_cnn, small_data, make):
    c = make(labels=(2,), prob_cap_min=1.0, tolerance=1e9, min_num_steps=3, max_num_steps=50)
    res = bw.backwork(small_cnn, small_data, c)
    assert not res.converged.any()
    # the first test after min_num_steps stops it: tfool at a save, the original every step
    assert res.label_steps[0] == (4 if c.semantics == "original" else 3)
    no_tol = bw.backwork(small_cnn, small_data, dataclasses.replace(c, tolerance=0.0))
    assert no_tol.label_steps[0] == 50


def test_clipping_off_lets_pixels_leave_the_range(small_cnn, small_data):
    start = np.full((1, 3, 28, 28, 1), 0.995, np.float32)
    start[:, 1] = 0.005
    kw = dict(labels=(1,), max_num_steps=5, prob_cap_min=1.0, learning_rate=0.05)
    off = bw.backwork(small_cnn, small_data, original_cfg(**kw), initial_images=start)
    assert off.images.max() > 1.0 or off.images.min() < 0.0
    on = bw.backwork(
        small_cnn, small_data, original_cfg(**kw, clip_inputs=True), initial_images=start
    )
    assert on.images.min() >= 0.0 and on.images.max() <= 1.0


def test_original_reinitialisation_keeps_adam_state():
    x = tf.Variable(np.ones((4, 2, 2, 1), np.float32))
    m = tf.Variable(np.full((4, 2, 2, 1), 0.3, np.float32))
    v = tf.Variable(np.full((4, 2, 2, 1), 0.2, np.float32))
    t = tf.Variable(np.full(4, 7.0, np.float32))
    rows = np.array([False, True, False, False])
    config = bw.BackworkConfig()
    rngs = [np.random.default_rng(0)]
    _engine._reinitialise(x, m, v, t, rows, np.zeros(4, int), rngs, (2, 2, 1), config, False)
    assert np.all(m.numpy() == np.float32(0.3)) and np.all(t.numpy() == 7.0)
    assert not np.allclose(x.numpy()[1], 1.0) and np.allclose(x.numpy()[[0, 2, 3]], 1.0)
    _engine._reinitialise(x, m, v, t, rows, np.zeros(4, int), rngs, (2, 2, 1), config, True)
    assert np.all(m.numpy()[1] == 0) and t.numpy()[1] == 0 and t.numpy()[0] == 7.0


def test_original_preset_and_flagfile():
    c = bw.BackworkConfig.original()
    assert (c.semantics, c.min_num_steps, c.max_num_steps, c.num_mono_dec_saves) == (
        "original",
        0,
        60,
        3,
    )
    assert c.save_freq == 1 and not c.clip_inputs and c.max_history >= 61
    assert bw.BackworkConfig.original(max_num_steps=500).max_history >= 501
    assert bw.BackworkConfig().semantics == "tfool"
    with pytest.raises(ValueError, match="semantics='paper' is not one of"):
        bw.BackworkConfig(semantics="paper")
