"""tfool.backwork: the optimisation loop, its bookkeeping and its errors."""

import dataclasses

import keras
import numpy as np
import pytest

from tfool import analysis
from tfool import backwork as bw
from tfool.backwork import _engine, _loop, _prepared

FAST = dict(num_examples=3, reference_size=40, jit_compile=False, max_num_steps=12, min_num_steps=0)


def cfg(**kw):
    return bw.BackworkConfig(**{**FAST, **kw})


@pytest.fixture(scope="module")
def dense_model():
    """A small non-CNN classifier with its own layer names."""
    keras.utils.set_random_seed(1)
    inp = keras.Input((28, 28, 1), name="pixels")
    x = keras.layers.Flatten(name="flat")(inp)
    h = keras.layers.Dense(16, activation="tanh", name="hidden")(x)
    out = keras.layers.Dense(10, name="logits")(h)
    return keras.Model(inp, out)


def test_config_defaults_are_the_posts():
    c = bw.BackworkConfig()
    assert c.labels == tuple(range(10)) and c.num_examples == 8
    assert c.reference_cost_coeff == 0.5 and c.batch_cost_coeff == 0.5
    assert c.learning_rate == 0.01 and c.prob_cap_min == 0.999
    assert c.num_mono_dec_saves == 5 and c.save_freq == 1 and c.clip_inputs
    np.testing.assert_allclose(c.coeffs_for(5), [1e-5, 1e-4, 1e-3, 1e-2, 10])
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.num_examples = 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_examples=0), "num_examples=0"),
        (dict(prob_cap_min=0.0), r"prob_cap_min=0.0 must lie in \(0, 1\]"),
        (dict(prob_cap_mean=1.5), "prob_cap_mean=1.5"),
        (dict(layer_cost_coeffs=(1.0, float("nan"))), "non-finite"),
        (dict(reference_cost_coeff=float("inf")), "reference_cost_coeff=inf"),
        (dict(labels=()), "labels is empty"),
        (dict(labels=(1, 1)), "duplicates"),
        (dict(init="zeros"), "init='zeros'"),
        (dict(learning_rate=0.0), "learning_rate=0.0"),
        (dict(softmax_cost="hinge"), "softmax_cost='hinge'"),
        (dict(labels=(1.5,)), r"holds 1.5, not an integer class index"),
        (dict(labels=(2.0,)), r"holds 2.0, not an integer class index"),
        (dict(labels=(True,)), r"holds True, not an integer class index"),
        (dict(labels=3), r"labels=3 must be a sequence of integer class indices"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bw.BackworkConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(labels=(3, 10)), r"labels \[10\] are outside the model's classes 0..9"),
        (dict(num_examples=1), "num_examples=1 but the batch cost needs >= 2"),
        (dict(layer_cost_coeffs=(1.0, 1.0, 1.0, 1.0)), "4 entries but the model exposes 5"),
    ],
)
def test_backwork_rejects_bad_input_before_work(small_cnn, small_data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        bw.backwork(small_cnn, small_data, cfg(**kwargs))


def test_label_without_training_images(small_cnn, small_data):
    no_sevens = dataclasses.replace(
        small_data,
        x_train=small_data.x_train[small_data.y_train != 7],
        y_train=small_data.y_train[small_data.y_train != 7],
    )
    with pytest.raises(ValueError, match=r"labels \[7\] have no training images"):
        bw.backwork(small_cnn, no_sevens, cfg(labels=(1, 7)))


def test_single_example_allowed_without_batch_cost(small_cnn, small_data):
    res = bw.backwork(
        small_cnn,
        small_data,
        cfg(labels=(2,), num_examples=1, batch_cost_coeff=0.0, max_num_steps=3),
    )
    assert res.images.shape == (1, 1, 28, 28, 1)


def test_reaches_the_cap_within_range(small_cnn, small_data):
    res = bw.backwork(small_cnn, small_data, cfg(labels=(0, 6), max_num_steps=400, min_num_steps=5))
    assert res.converged.all()
    assert (res.target_probs > 0.999).all()
    assert res.images.min() >= 0.0 and res.images.max() <= 1.0
    assert res.images.shape == (2, 3, 28, 28, 1) and res.probabilities.shape == (2, 3, 10)
    # every label stopped when it converged, and the run when the last one did
    assert res.label_steps.max() == res.steps
    assert set(res.cost_terms) == {"reference", "batch", "softmax"}
    assert res.cost_terms["reference"].shape == (4, 2)


@pytest.mark.parametrize("preset", [bw.BackworkConfig, bw.BackworkConfig.original])
def test_all_labels_at_once_equals_one_by_one(small_cnn, small_data, preset):
    c = preset(**{**FAST, "labels": (3, 8), "prob_cap_min": 0.99, "max_num_steps": 60, "seed": 5})
    joint = bw.backwork(small_cnn, small_data, c)
    for i, lbl in enumerate(c.labels):
        alone = bw.backwork(small_cnn, small_data, dataclasses.replace(c, labels=(lbl,)))
        np.testing.assert_allclose(joint.images[i], alone.images[0], atol=2e-4)
        assert joint.label_steps[i] == alone.label_steps[0]
        assert joint.reinits[i] == alone.reinits[0]
        assert joint.converged[i] == alone.converged[0]


def test_same_seed_same_result_other_seed_differs(small_cnn, small_data):
    a = bw.backwork(small_cnn, small_data, cfg(labels=(4,), seed=1))
    b = bw.backwork(small_cnn, small_data, cfg(labels=(4,), seed=1))
    c = bw.backwork(small_cnn, small_data, cfg(labels=(4,), seed=2))
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.allclose(a.images, c.images)


def test_xla_step_matches_plain_step(small_cnn, small_data):
    a = bw.backwork(small_cnn, small_data, cfg(labels=(5,), max_num_steps=5))
    b = bw.backwork(small_cnn, small_data, cfg(labels=(5,), max_num_steps=5, jit_compile=True))
    # Adam's first steps move a pixel by about +-lr whatever its gradient's size, so a
    # rounding difference in a near-zero gradient shows up as a fraction of lr (0.01)
    np.testing.assert_allclose(a.images, b.images, atol=2e-3)
    assert np.abs(a.images - b.images).mean() < 1e-4


def test_stuck_rows_are_reinitialised(small_cnn, small_data):
    # With a vanishing learning rate the images never change, so the target probability
    # never rises: every row is re-initialised once its window is full.
    c = cfg(
        labels=(1,),
        learning_rate=1e-30,
        num_mono_dec_saves=2,
        reinit_below=1.0,
        prob_cap_min=1.0,
        prob_cap_mean=1.0,
        max_num_steps=4,
    )
    res = bw.backwork(small_cnn, small_data, c)
    assert res.reinits[0] >= 3
    first, last = res.history_images[0], res.history_images[-1]
    assert not np.allclose(first, last)


def test_tracker_needs_a_full_window_that_never_rises():
    tr = _loop._Tracker(rows=3, window=3)
    every = np.ones(3, bool)
    for p in ([0.5, 0.5, 0.5], [0.4, 0.6, 0.5]):
        tr.push(np.array(p, np.float32), every)
        assert not tr.declining(0.99).any()  # window not full yet
    tr.push(np.array([0.3, 0.55, 0.995], np.float32), every)
    np.testing.assert_array_equal(tr.declining(0.99), [True, False, False])
    tr.clear(np.array([True, False, False]))
    assert not tr.declining(0.99)[0]


def test_reinit_resets_only_those_rows_moments():
    import tensorflow as tf

    x = tf.Variable(np.full((4, 2, 2, 1), 0.5, np.float32))
    m = tf.Variable(np.ones((4, 2, 2, 1), np.float32))
    v = tf.Variable(np.ones((4, 2, 2, 1), np.float32))
    t = tf.Variable(np.full(4, 7.0, np.float32))
    rows = np.array([False, True, False, False])
    rngs = [np.random.default_rng(0), np.random.default_rng(1)]
    _engine._reinitialise(
        x, m, v, t, rows, np.array([0, 0, 1, 1]), rngs, (2, 2, 1), bw.BackworkConfig()
    )
    assert np.all(m.numpy()[1] == 0) and np.all(v.numpy()[1] == 0) and t.numpy()[1] == 0
    assert np.all(m.numpy()[[0, 2, 3]] == 1) and np.all(t.numpy()[[0, 2, 3]] == 7)
    assert not np.allclose(x.numpy()[1], 0.5) and np.allclose(x.numpy()[[0, 2, 3]], 0.5)


def test_history_is_thinned_and_bounded(small_cnn, small_data):
    res = bw.backwork(
        small_cnn, small_data, cfg(labels=(2,), max_num_steps=20, prob_cap_min=1.0, max_history=4)
    )
    assert 1 <= len(res.history_steps) <= 4
    assert np.all(np.diff(res.history_steps) > 0)
    assert res.history_images.shape[1:] == (1, 3, 28, 28, 1)
    every2 = bw.backwork(
        small_cnn, small_data, cfg(labels=(2,), max_num_steps=10, prob_cap_min=1.0, history_every=2)
    )
    np.testing.assert_array_equal(every2.history_steps, [0, 2, 4, 6, 8, 10])


class _StopAt(bw.BackworkCallback):
    def __init__(self, step):
        self.step = step
        self.ended = None

    def on_save(self, event):
        if event.step == self.step:
            raise KeyboardInterrupt

    def on_end(self, result):
        self.ended = result


def test_ctrl_c_keeps_what_was_found(small_cnn, small_data):
    cb = _StopAt(3)
    res = bw.backwork(
        small_cnn,
        small_data,
        cfg(labels=(0, 1), max_num_steps=1000, prob_cap_min=1.0),
        callbacks=[cb],
    )
    assert res.interrupted and res.steps == 3 and cb.ended is res
    assert res.images.shape == (2, 3, 28, 28, 1) and np.isfinite(res.images).all()


def test_any_keras_classifier_with_named_layers(dense_model, small_data):
    c = cfg(labels=(0, 9), layer_names=("pixels", "hidden", "logits"), max_num_steps=30)
    res = bw.backwork(dense_model, small_data, c)
    assert res.layer_names == ("pixels", "hidden", "logits")
    assert res.cost_terms["reference"].shape == (2, 2)
    start = res.history_probs[0]
    assert (
        bw.target_probabilities(res.probabilities, res.labels).mean()
        > bw.target_probabilities(start, res.labels).mean()
    )
    with pytest.raises(ValueError, match="5 entries but the model exposes 3"):
        bw.backwork(
            dense_model, small_data, dataclasses.replace(c, layer_cost_coeffs=(1, 1, 1, 1, 1))
        )


def test_train_mean_init_averages_groups(small_data):
    c = cfg(init="train_mean", num_examples=4)
    rng = np.random.default_rng(0)
    imgs = _prepared._initial_images(small_data, c, 3, (4, 28, 28, 1), rng)
    threes = small_data.train_of_class(3)
    assert imgs.shape == (4, 28, 28, 1)
    # each image is a mean of about a quarter of the threes: their overall mean is kept
    np.testing.assert_allclose(imgs.mean(0), threes.mean(0), atol=0.02)
    assert not np.allclose(imgs[0], imgs[1])


def test_result_round_trip(tmp_path, small_cnn, small_data):
    from tfool import io

    res = bw.backwork(small_cnn, small_data, cfg(labels=(2, 5), max_num_steps=5))
    io.write_npz(tmp_path / "images.npz", **bw.result_arrays(res))
    back = bw.load_result(tmp_path / "images.npz")
    np.testing.assert_array_equal(back.images, res.images)
    np.testing.assert_array_equal(back.history_probs, res.history_probs)
    assert back.layer_names == res.layer_names and back.steps == res.steps
    np.testing.assert_array_equal(back.cost_terms["batch"], res.cost_terms["batch"])
    io.write_npz(tmp_path / "bad.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="not a backworking result"):
        bw.load_result(tmp_path / "bad.npz")


def test_initial_images_are_the_start(small_cnn, small_data):
    c = cfg(labels=(2, 6), learning_rate=1e-9, max_num_steps=2, prob_cap_min=1.0)
    rng = np.random.default_rng(3)
    start = rng.uniform(0.2, 0.8, size=(2, c.num_examples, 28, 28, 1)).astype(np.float32)
    res = bw.backwork(small_cnn, small_data, c, initial_images=start)
    np.testing.assert_allclose(res.history_images[0], start, atol=1e-6)
    np.testing.assert_allclose(res.images, start, atol=1e-5)  # a vanishing step
    fresh = bw.backwork(small_cnn, small_data, c)
    assert not np.allclose(fresh.images, start, atol=0.1)


def test_resuming_from_a_result_goes_on_from_its_images(small_cnn, small_data):
    c = cfg(labels=(3,), max_num_steps=4, prob_cap_min=1.0)
    first = bw.backwork(small_cnn, small_data, c)
    more = bw.backwork(small_cnn, small_data, c, initial_images=first.images)
    np.testing.assert_allclose(more.history_images[0], first.images, atol=1e-6)
    assert more.target_probs.mean() >= first.target_probs.mean() - 1e-3


@pytest.mark.parametrize(
    "shape, values, message",
    [
        ((1, 2, 28, 28, 1), 0.5, r"shape \(1, 2, 28, 28, 1\), expected \(2, 2, 28, 28, 1\)"),
        ((2, 2, 28, 28), 0.5, "expected"),
        ((2, 2, 28, 28, 1), 1.5, r"spans \[1.5, 1.5\], expected values inside \[0, 1\]"),
        ((2, 2, 28, 28, 1), np.nan, "NaN or infinite"),
    ],
)
def test_initial_images_are_checked(small_cnn, small_data, shape, values, message):
    c = cfg(labels=(0, 1), num_examples=2)
    with pytest.raises(ValueError, match=message):
        bw.backwork(small_cnn, small_data, c, initial_images=np.full(shape, values))


def test_given_references_are_reused_and_checked(small_cnn, small_data):
    c = cfg(labels=(4, 8), max_num_steps=6)
    refs = bw.reference_set(small_cnn, small_data, dataclasses.replace(c, labels=(8, 4, 1)))
    got = bw.backwork(small_cnn, small_data, c, references=refs)
    want = bw.backwork(small_cnn, small_data, c)
    np.testing.assert_allclose(got.images, want.images, atol=1e-6)
    np.testing.assert_allclose(got.cost, want.cost, rtol=1e-5)
    with pytest.raises(ValueError, match=r"labels \[4, 8\] are not in the reference set"):
        bw.backwork(small_cnn, small_data, c, references=refs.for_labels((1,)))
    other = bw.reference_set(
        small_cnn, small_data, dataclasses.replace(c, layer_names=("conv0", "fc", "softmax"))
    )
    with pytest.raises(ValueError, match="references hold layers"):
        bw.backwork(small_cnn, small_data, c, references=other)
    d_given = analysis.layer_distances(small_cnn, small_data, got, references=refs)
    d_built = analysis.layer_distances(small_cnn, small_data, got, reference_size=c.reference_size)
    for name in d_built:
        assert d_given[name] == pytest.approx(d_built[name], rel=1e-5)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_narrow_references_stay_close_to_float32(small_cnn, small_data, dtype):
    c = cfg(labels=(5,), max_num_steps=3, prob_cap_min=1.0)
    full = bw.backwork(small_cnn, small_data, c)
    narrow = bw.backwork(small_cnn, small_data, dataclasses.replace(c, reference_dtype=dtype))
    np.testing.assert_allclose(
        narrow.cost_terms["reference"], full.cost_terms["reference"], rtol=0.05
    )
    assert np.abs(narrow.images - full.images).max() < 0.05
    with pytest.raises(ValueError, match="reference_dtype='float64' is not one of"):
        bw.BackworkConfig(reference_dtype="float64")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not an archive", "is not a readable backworking result: not an npz archive"),
        (b"PK\x03\x04 truncated zip", "is not a readable backworking result"),
    ],
)
def test_load_result_names_a_damaged_file(tmp_path, content, message):
    path = tmp_path / "images.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as err:
        bw.load_result(path)
    assert str(path) in str(err.value) and "allow_pickle" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="no backworking result at"):
        bw.load_result(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="is a folder"):
        bw.load_result(tmp_path)


def test_load_result_rejects_images_of_the_wrong_shape(tmp_path, small_cnn, small_data):
    res = bw.backwork(small_cnn, small_data, cfg(labels=(1,), max_num_steps=1))
    arrays = bw.result_arrays(res)
    arrays["images"] = arrays["images"][0]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=r"images of shape \(3, 28, 28, 1\)"):
        bw.load_result(tmp_path / "bad.npz")


def test_memory_estimate_counts_the_reference_set_and_the_history(small_cnn, small_data):
    config = bw.BackworkConfig(labels=(0, 1), num_examples=3, reference_size=50, jit_compile=False)
    est = bw.estimate_memory(small_cnn, small_data, config)
    refs = bw.reference_set(small_cnn, small_data, config)
    assert est.references == refs.nbytes  # exact for the references
    bigger = bw.estimate_memory(small_cnn, small_data, dataclasses.replace(config, num_examples=30))
    assert bigger.batch == 10 * est.batch and bigger.history == 10 * est.history
    narrow = dataclasses.replace(config, reference_dtype="float16")
    half = bw.estimate_memory(small_cnn, small_data, narrow)
    assert half.references == bw.reference_set(small_cnn, small_data, narrow).nbytes
    assert half.references < 0.51 * est.references
    assert est.total == est.references + est.batch + est.distances + est.history
    assert "GB (references" in est.describe()


def test_a_step_computes_only_the_running_labels(small_cnn, small_data):
    c = cfg(labels=(0, 1, 2, 3, 4), num_examples=3)
    engine = _engine.engine_for(small_cnn, small_data, c)
    everything = engine.compute()
    assert tuple(everything[0].shape) == (15, 28, 28, 1)
    before = engine.images()
    running = np.array([False, False, True, False, False])
    grad, cost, terms, probs = engine.compute(running)
    assert tuple(grad.shape) == (3, 28, 28, 1)  # label 2's rows only went through the model
    # the running label's values are its own, the others' those of the last full compute
    np.testing.assert_allclose(cost, everything[1], rtol=1e-5)
    np.testing.assert_allclose(probs, everything[3], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grad, np.asarray(everything[0])[6:9], rtol=1e-4, atol=1e-7)
    engine.apply(grad, np.repeat(running, 3))
    after = engine.images()
    moved = np.abs(after - before).reshape(5, 3, -1).max(axis=(1, 2)) > 0
    assert moved.tolist() == running.tolist()  # Adam touched the running rows only
    # one compiled step per bucket of running labels (5 labels: 5, then 1), not per set
    for mask in ([0, 1, 0, 0, 0], [0, 0, 0, 1, 0], [1, 1, 0, 1, 1], [1, 0, 1, 1, 1]):
        engine.compute(np.array(mask, bool))
    assert engine.traces == 3  # buckets 5, 1 and 4


def test_labels_converging_apart_give_the_same_images_as_one_by_one(small_cnn, small_data):
    c = cfg(labels=(1, 6, 7), num_examples=3, prob_cap_min=0.99, max_num_steps=60, seed=3)
    joint = bw.backwork(small_cnn, small_data, c)
    assert len(set(joint.label_steps.tolist())) > 1  # they did stop at different steps
    for i, lbl in enumerate(c.labels):
        alone = bw.backwork(small_cnn, small_data, dataclasses.replace(c, labels=(lbl,)))
        np.testing.assert_allclose(joint.images[i], alone.images[0], atol=2e-4)
        np.testing.assert_allclose(joint.probabilities[i], alone.probabilities[0], atol=1e-4)
        assert joint.label_steps[i] == alone.label_steps[0]


def test_one_preparation_serves_the_estimate_the_run_and_the_analysis(small_cnn, small_data):
    c = bw.BackworkConfig(labels=(2, 5), **FAST)
    prepared = bw.prepare(small_cnn, small_data, c)
    assert prepared.references is None and prepared.layer_names[-1] == "softmax"
    need = bw.estimate_memory(small_cnn, small_data, c, prepared=prepared)
    assert need == bw.estimate_memory(small_cnn, small_data, c)
    prepared = prepared.with_references()
    assert prepared.with_references() is prepared  # built once
    got = bw.backwork(small_cnn, small_data, c, prepared=prepared)
    want = bw.backwork(small_cnn, small_data, c)
    np.testing.assert_array_equal(got.images, want.images)
    found = analysis.analyse_backwork(
        got, small_cnn, small_data, c, attribution_images=0, prepared=prepared
    )
    assert set(found.summary["layer_distances"]) == set(prepared.layer_names[:-1])
    assert found.attributions is None and found.worst is not None
    with pytest.raises(ValueError, match="prepared was made for another"):
        bw.backwork(small_cnn, small_data, dataclasses.replace(c, seed=1), prepared=prepared)
