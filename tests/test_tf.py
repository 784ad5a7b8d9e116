"""tfool._tf: the compiled-function cache held weakly per model, and class counts."""

import gc
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfool import _tf, models


def _tiny():
    inp = keras.Input((4,))
    return keras.Model(inp, keras.layers.Dense(3)(inp))


def test_cached_builds_once_per_owner_and_key():
    model, other = _tiny(), _tiny()
    calls = []

    def build():
        calls.append(1)
        return object()

    first = _tf.cached(model, ("k",), build)
    assert _tf.cached(model, ("k",), build) is first and len(calls) == 1
    assert _tf.cached(model, ("other",), build) is not first
    assert _tf.cached(other, ("k",), build) is not first and len(calls) == 3
    # an owner that cannot be weakly referenced is built for afresh every time
    assert _tf.cached(42, ("k",), build) is not _tf.cached(42, ("k",), build)


def test_the_cache_never_keeps_a_model_alive():
    model = _tiny()
    x = np.ones((2, 4), np.float32)
    models.predict_logits(model, x)  # caches a compiled forward pass for this model
    assert model in _tf._CACHE
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None  # the cache held it, and did not keep it alive


def test_weak_call_follows_the_model():
    model = _tiny()
    call = _tf.weak_call(model)
    x = tf.ones((1, 4))
    np.testing.assert_allclose(call(x).numpy(), model(x).numpy())

    class Slotted:  # no __weakref__: kept as it is
        __slots__ = ()

        def __call__(self, t):
            return t

    plain = Slotted()
    assert _tf.weak_call(plain) is plain


def test_num_classes_from_the_graph_or_one_forward_pass():
    model = _tiny()
    assert _tf.num_classes(model) == 3
    assert _tf.num_classes(lambda t: tf.zeros([tf.shape(t)[0], 7]), np.zeros((2, 4))) == 7
    with pytest.raises(ValueError, match="pass images to probe it"):
        _tf.num_classes(lambda t: t)
    with pytest.raises(ValueError, match=r"returned shape \(1, 2, 2\)"):
        _tf.num_classes(lambda t: tf.zeros([1, 2, 2]), np.zeros((1, 4)))


@pytest.mark.parametrize("rows, size", [(10, 3), (9, 3), (1, 5), (0, 4), (7, 7)])
def test_batch_slices_cover_every_row_once_in_order(rows, size):
    slices = list(_tf.batch_slices(rows, size))
    covered = np.concatenate([np.arange(rows)[s] for s in slices]) if slices else np.zeros(0)
    np.testing.assert_array_equal(covered, np.arange(rows))
    assert all(0 < s.stop - s.start <= size for s in slices)


def test_fold_batches_threads_the_state_through_every_batch_in_order():
    seen = _tf.fold_batches(lambda state, rows: [*state, (rows.start, rows.stop)], 7, 3, [])
    assert seen == [(0, 3), (3, 6), (6, 7)]
    total = _tf.fold_batches(lambda s, rows: s + int(np.arange(7)[rows].sum()), 7, 2, 0)
    assert total == 21
    assert _tf.fold_batches(lambda s, rows: s + 1, 0, 3, "untouched") == "untouched"
    with pytest.raises(ValueError, match="batch_size=0"):
        _tf.fold_batches(lambda s, rows: s, 4, 0)


def test_fold_batches_stops_at_an_interrupt_between_batches():
    import os
    import signal

    from tfool import interrupts

    seen = []

    def step(state, rows):
        seen.append(rows.start)
        if rows.start == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # delivered at the next batch's check
        return state

    # a background job may ignore the signal, and safe_points keeps an ignored signal ignored
    before = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with interrupts.safe_points(), pytest.raises(KeyboardInterrupt):
            _tf.fold_batches(step, 8, 2, None)
    finally:
        signal.signal(signal.SIGTERM, before)
    assert seen == [0, 2]


def test_input_gradient_matches_the_formula_and_returns_the_score():
    x = tf.constant(np.arange(6, dtype=np.float32).reshape(2, 3))
    grad, score = _tf.input_gradient(lambda p: tf.reduce_sum(p**2, axis=1), x)
    np.testing.assert_allclose(grad.numpy(), 2 * x.numpy())
    np.testing.assert_allclose(score.numpy(), (x.numpy() ** 2).sum(1))
    grad, (first, extra) = _tf.input_gradient(lambda p: (3.0 * p[:, 0], p * 0 + 7), x)
    np.testing.assert_allclose(grad.numpy(), [[3, 0, 0], [3, 0, 0]])  # the first output only
    assert float(extra.numpy().max()) == 7


def test_batch_memory_adds_every_layer_output():
    model = keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)], name="tiny"
    )
    per_image = (16 + 3) * 4  # the flattened input and the logits, float32
    assert _tf.batch_memory(model, 10, gradients=False) == 10 * per_image
    assert _tf.batch_memory(model, 10) == 2 * 10 * per_image


def test_check_memory_refuses_what_does_not_fit(monkeypatch):
    monkeypatch.setattr(_tf, "available_memory", lambda: 2_000_000_000)
    _tf.check_memory(1_000_000_000, "--x=1", "lower --x")
    with pytest.raises(
        ValueError, match=r"--x=9 needs about 9.0 GB but .* 2.0 GB available; lower"
    ):
        _tf.check_memory(9_000_000_000, "--x=9", "lower --x")
    monkeypatch.setattr(_tf, "available_memory", lambda: None)  # unknown: no refusal
    _tf.check_memory(9_000_000_000, "--x=9", "lower --x")
