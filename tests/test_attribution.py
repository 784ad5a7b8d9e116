"""Tests of tfool.attribution: completeness, closed forms on a linear model, batching, errors."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfool import attribution, models

SHAPE = (4, 4, 1)
NUM_CLASSES = 3


@pytest.fixture(scope="module")
def linear():
    """A linear logits model ``F(x) = W^T flatten(x) + b`` with its weights."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=(int(np.prod(SHAPE)), NUM_CLASSES)).astype(np.float32)
    b = rng.normal(size=NUM_CLASSES).astype(np.float32)
    model = keras.Sequential(
        [keras.Input(SHAPE), keras.layers.Flatten(), keras.layers.Dense(NUM_CLASSES)]
    )
    model.set_weights([w, b])
    return model, w, b


@pytest.fixture(scope="module")
def linear_batch():
    """Five inputs of the linear model and one target each."""
    rng = np.random.default_rng(2)
    return rng.random((5, *SHAPE)).astype(np.float32), np.array([0, 1, 2, 0, 1])


def _weights_of(w, target):
    """The gradient of the target logit of every example, in input shape."""
    return w[:, target].T.reshape(len(target), *SHAPE)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def digits(small_cnn, small_data):
    """Six test digits and the trained CNN's predicted class for each."""
    x = small_data.x_test[:6]
    return x, models.predict_classes(small_cnn, x)


def _target_scores(model, x, target):
    return model(x).numpy()[np.arange(len(x)), target].astype(np.float64)


# ----------------------------------------------------------------------------------------
# Completeness on the trained CNN
# ----------------------------------------------------------------------------------------


def test_integrated_gradients_completeness_on_trained_cnn(small_cnn, digits):
    x, target = digits
    attr, delta = attribution.integrated_gradients(
        small_cnn, x, target, n_steps=200, method="gausslegendre", return_convergence_delta=True
    )
    gap = _target_scores(small_cnn, x, target) - _target_scores(small_cnn, np.zeros_like(x), target)
    sums = attr.reshape(len(x), -1).sum(axis=1, dtype=np.float64)
    assert np.all(np.abs(sums - gap) <= 0.01 * np.abs(gap))
    np.testing.assert_allclose(delta, sums - gap, rtol=0, atol=1e-4 * np.abs(gap).max())


def test_integrated_gradients_error_shrinks_with_steps(small_cnn, digits):
    x, target = digits
    errors = [
        np.abs(
            attribution.integrated_gradients(
                small_cnn,
                x,
                target,
                n_steps=n,
                method="riemann_right",
                return_convergence_delta=True,
            )[1]
        ).mean()
        for n in (5, 200)
    ]
    assert errors[1] < errors[0]


# ----------------------------------------------------------------------------------------
# Closed forms on a linear model
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("absolute", [True, False])
def test_saliency_is_the_weight(linear, linear_batch, absolute):
    model, w, _ = linear
    x, target = linear_batch
    expected = _weights_of(w, target)
    got = attribution.saliency(model, x, target, absolute=absolute)
    np.testing.assert_allclose(got, np.abs(expected) if absolute else expected, atol=1e-6)


@pytest.mark.parametrize("absolute_gradient,normalize", itertools.product([True, False], repeat=2))
def test_gradient_x_input_closed_form(linear, linear_batch, absolute_gradient, normalize):
    model, w, _ = linear
    x, target = linear_batch
    g = _weights_of(w, target)
    expected = (np.abs(g) if absolute_gradient else g) * x
    if normalize:
        expected = expected / np.abs(expected).reshape(len(x), -1).max(axis=1)[:, None, None, None]
    got = attribution.gradient_x_input(
        model, x, target, absolute_gradient=absolute_gradient, normalize=normalize
    )
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    if normalize:
        np.testing.assert_allclose(np.abs(got).reshape(len(x), -1).max(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("method", attribution.IG_METHODS)
@pytest.mark.parametrize("baseline_kind", ["none", "scalar", "image", "per_example"])
def test_integrated_gradients_closed_form(linear, linear_batch, method, baseline_kind):
    model, w, b = linear
    x, target = linear_batch
    rng = np.random.default_rng(3)
    baselines = {
        "none": None,
        "scalar": 0.25,
        "image": rng.random(SHAPE).astype(np.float32),
        "per_example": rng.random(x.shape).astype(np.float32),
    }[baseline_kind]
    base = np.broadcast_to(0.0 if baselines is None else baselines, x.shape)
    attr, delta = attribution.integrated_gradients(
        model,
        x,
        target,
        baselines=baselines,
        n_steps=7,
        method=method,
        return_convergence_delta=True,
    )
    np.testing.assert_allclose(attr, (x - base) * _weights_of(w, target), atol=1e-5)
    np.testing.assert_allclose(delta, 0.0, atol=1e-5)


@pytest.mark.parametrize("method", attribution.IG_METHODS)
def test_ig_steps_are_a_quadrature_rule(method):
    alphas, weights = attribution.ig_steps(method, 9)
    assert len(alphas) == len(weights) == 9
    assert np.all((alphas >= 0) & (alphas <= 1))
    np.testing.assert_allclose(weights.sum(), 1.0)
    # The integral of 2a + 1 over [0, 1] is 2: exact for the symmetric rules, 2 -+ 1/n
    # for the left and right Riemann sums.
    error = {"riemann_left": -1 / 9, "riemann_right": 1 / 9}.get(method, 0.0)
    np.testing.assert_allclose(np.sum(weights * (2 * alphas + 1)), 2.0 + error)


def test_occlusion_one_pixel_window_is_weight_times_difference(linear, linear_batch):
    model, w, _ = linear
    x, target = linear_batch
    baselines = np.random.default_rng(4).random(x.shape).astype(np.float32)
    got = attribution.occlusion(
        model, x, target, (1, 1, 1), baselines=baselines, perturbations_per_eval=5
    )
    np.testing.assert_allclose(got, _weights_of(w, target) * (x - baselines), atol=1e-5)


def test_occlusion_window_mean_on_linear_model(linear, linear_batch):
    """Each element gets the mean, over the windows covering it, of the window's score drop."""
    model, w, _ = linear
    x, target = linear_batch
    contrib = _weights_of(w, target) * (x - 0.5)  # F(x) - F(occluded) sums this over a window
    expected = np.zeros_like(contrib, dtype=np.float64)
    cover = np.zeros(SHAPE)
    for r0, c0 in itertools.product((0, 2), (0, 2)):  # 3x3 windows, stride 2: overlapping
        rows, cols = slice(r0, r0 + 3), slice(c0, c0 + 3)
        drop = contrib[:, rows, cols].reshape(len(x), -1).sum(axis=1)
        expected[:, rows, cols] += drop[:, None, None, None]
        cover[rows, cols] += 1
    expected /= cover
    got = attribution.occlusion(model, x, target, (3, 3, 1), strides=2, baselines=0.5)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # A stride longer than the window leaves column 2 uncovered (0); column 3 gets a cut
    # window, so each of its elements carries its own contribution.
    gaps = attribution.occlusion(model, x, target, (4, 2, 1), strides=(1, 3, 1), baselines=0.5)
    assert not np.any(gaps[:, :, 2])
    np.testing.assert_allclose(
        gaps[:, :, 3], contrib[:, :, 3].sum(axis=1, keepdims=True).repeat(4, axis=1), atol=1e-5
    )


def test_occlusion_windows_follow_captum():
    windows = attribution.occlusion_windows((28, 28, 1), (15, 15, 1), (8, 8, 1))
    # ceil((28 - 15) / 8) + 1 = 3 positions per axis, the last cut at the edge.
    assert len(windows) == 9
    assert {w[0].start for w in windows} == {0, 8, 16}
    assert max(w[0].stop for w in windows) == 28


@pytest.mark.parametrize("nt_type", attribution.NT_TYPES)
def test_noise_tunnel_on_linear_saliency(linear, linear_batch, nt_type):
    model, w, _ = linear
    x, target = linear_batch
    g = _weights_of(w, target)  # the gradient does not depend on the noise
    got = attribution.noise_tunnel(
        attribution.saliency,
        x,
        nt_type=nt_type,
        nt_samples=4,
        stdevs=0.3,
        model_fn=model,
        target=target,
        absolute=False,
    )
    expected = {"smoothgrad": g, "smoothgrad_sq": g * g, "vargrad": np.zeros_like(g)}[nt_type]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_probability_and_loss_scores_on_linear_model(linear, linear_batch):
    model, w, b = linear
    x, target = linear_batch
    p = _softmax(x.reshape(len(x), -1) @ w + b)
    mixed = (p @ w.T).reshape(x.shape)  # sum_k p_k w_k
    g = _weights_of(w, target)
    p_t = p[np.arange(len(x)), target].reshape(-1, 1, 1, 1)
    prob = attribution.saliency(model, x, target, absolute=False, score="probability")
    np.testing.assert_allclose(prob, p_t * (g - mixed), atol=1e-5)
    loss = attribution.saliency(model, x, target, absolute=False, score="loss")
    np.testing.assert_allclose(loss, -(g - mixed), atol=1e-5)


def test_salient_features_keep_the_top_positive_probability_gradients(linear, linear_batch):
    model, w, b = linear
    x, target = linear_batch
    p = _softmax(x.reshape(len(x), -1) @ w + b)
    grad = p[np.arange(len(x)), target][:, None] * (w[:, target].T - p @ w.T)
    mask = attribution.salient_features(model, x, target, num_keep=4).reshape(len(x), -1)
    assert set(np.unique(mask)) <= {0.0, 1.0}
    for row_mask, row_grad in zip(mask, grad, strict=True):
        positive = np.sort(row_grad[row_grad > 0])[::-1]
        assert row_mask.sum() == min(4, len(positive))
        kept = row_grad[row_mask == 1]
        assert np.all(kept > 0)
        np.testing.assert_allclose(np.sort(kept)[::-1], positive[:4], rtol=1e-4)


def test_probability_model_with_from_logits_false(linear, linear_batch):
    model, _, _ = linear
    x, target = linear_batch
    probs = keras.Sequential([model, keras.layers.Softmax()])
    for fn in (attribution.saliency, attribution.salient_features):
        kwargs = {"score": "probability"} if fn is attribution.saliency else {"num_keep": 5}
        np.testing.assert_allclose(
            fn(probs, x, target, from_logits=False, **kwargs),
            fn(model, x, target, **kwargs),
            atol=1e-6,
        )
    # "output" attributes what the model returns: here the probability itself.
    np.testing.assert_allclose(
        attribution.integrated_gradients(probs, x, target, from_logits=False),
        attribution.integrated_gradients(model, x, target, score="probability"),
        atol=1e-6,
    )


# ----------------------------------------------------------------------------------------
# Noise tunnel at zero noise, batching, shapes and strategies
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn,kwargs",
    [
        (attribution.saliency, {}),
        (attribution.integrated_gradients, {"n_steps": 16}),
    ],
)
def test_noise_tunnel_without_noise_equals_the_plain_method(small_cnn, digits, fn, kwargs):
    x, target = digits
    plain = fn(small_cnn, x, target, **kwargs)
    tunnel = {
        nt: attribution.noise_tunnel(
            fn,
            x,
            nt_type=nt,
            nt_samples=3,
            stdevs=0.0,
            model_fn=small_cnn,
            target=target,
            **kwargs,
        )
        for nt in attribution.NT_TYPES
    }
    np.testing.assert_allclose(tunnel["smoothgrad"], plain, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(tunnel["smoothgrad_sq"], plain.astype(np.float64) ** 2, rtol=1e-5)
    np.testing.assert_allclose(tunnel["vargrad"], 0.0, atol=1e-9)


def test_noise_tunnel_is_seeded(small_cnn, digits):
    x, target = digits
    run = lambda seed: attribution.noise_tunnel(  # noqa: E731
        attribution.saliency,
        x,
        nt_samples=2,
        stdevs=0.2,
        seed=seed,
        model_fn=small_cnn,
        target=target,
    )
    np.testing.assert_array_equal(run(5), run(5))
    assert not np.allclose(run(5), run(6))


def test_internal_batch_size_does_not_change_integrated_gradients(small_cnn, digits):
    x, target = digits
    runs = [
        attribution.integrated_gradients(small_cnn, x, target, n_steps=20, internal_batch_size=ibs)
        for ibs in (None, 1, 7, 64)
    ]
    scale = np.abs(runs[0]).max()
    for other in runs[1:]:
        np.testing.assert_allclose(other, runs[0], rtol=0, atol=1e-6 * scale)


def test_perturbations_per_eval_does_not_change_occlusion(small_cnn, digits):
    x, target = digits
    runs = [
        attribution.occlusion(
            small_cnn, x, target, (7, 7, 1), strides=(5, 5, 1), perturbations_per_eval=ppe
        )
        for ppe in (1, 4, 100)
    ]
    scale = np.abs(runs[0]).max()
    for other in runs[1:]:
        np.testing.assert_allclose(other, runs[0], rtol=0, atol=1e-6 * scale)


def test_batch_equals_one_image_at_a_time(small_cnn, digits):
    x, target = digits
    batch = attribution.integrated_gradients(small_cnn, x, target, n_steps=10)
    single = np.concatenate(
        [
            attribution.integrated_gradients(small_cnn, x[i : i + 1], int(target[i]), n_steps=10)
            for i in range(len(x))
        ]
    )
    np.testing.assert_allclose(batch, single, rtol=0, atol=1e-6 * np.abs(batch).max())
    one_target = attribution.saliency(small_cnn, x, 3)
    np.testing.assert_array_equal(one_target, attribution.saliency(small_cnn, x, [3] * len(x)))


def test_flat_and_rgb_inputs():
    rng = np.random.default_rng(5)
    flat = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)])
    w, b = rng.normal(size=(6, 2)).astype(np.float32), np.zeros(2, np.float32)
    flat.set_weights([w, b])
    x = rng.random((3, 6)).astype(np.float32)
    np.testing.assert_allclose(
        attribution.integrated_gradients(flat, x, 1, n_steps=3), x * w[:, 1], atol=1e-6
    )
    np.testing.assert_allclose(attribution.occlusion(flat, x, 1, (1,)), x * w[:, 1], atol=1e-6)
    rgb = keras.Sequential(
        [
            keras.Input((5, 5, 3)),
            keras.layers.Conv2D(2, 3),
            keras.layers.Flatten(),
            keras.layers.Dense(4),
        ]
    )
    images = rng.random((2, 5, 5, 3)).astype(np.float32)
    options = {
        "integrated_gradients": {"n_steps": 8},
        "noise_tunnel": {"nt_samples": 2, "n_steps": 4},
    }
    out = attribution.attribute_all(
        rgb, images, [0, 3], methods=attribution.ALL_METHODS, options=options
    )
    assert list(out) == list(attribution.ALL_METHODS)
    assert all(v.shape == images.shape and np.all(np.isfinite(v)) for v in out.values())


@pytest.mark.parametrize(
    "strategy_fn",
    [lambda: tf.distribute.get_strategy(), lambda: tf.distribute.OneDeviceStrategy("/cpu:0")],
)
def test_strategy_gives_the_same_result(small_cnn, digits, strategy_fn):
    x, target = digits
    strategy = strategy_fn()
    for fn, kwargs in (
        (attribution.integrated_gradients, {"n_steps": 8}),
        (attribution.occlusion, {"sliding_window_shapes": (14, 14, 1), "strides": (14, 14, 1)}),
        (attribution.saliency, {}),
    ):
        np.testing.assert_allclose(
            fn(small_cnn, x, target, strategy=strategy, **kwargs),
            fn(small_cnn, x, target, **kwargs),
            rtol=1e-6,
            atol=1e-7,
        )


# ----------------------------------------------------------------------------------------
# attribute_all
# ----------------------------------------------------------------------------------------


def test_attribute_all_matches_the_single_methods(small_cnn, digits):
    x, target = digits[0][:2], digits[1][:2]
    options = {
        "integrated_gradients": {"n_steps": 16, "internal_batch_size": None},
        "noise_tunnel": {"nt_samples": 2, "n_steps": 8, "stdevs": 0.1},
        "occlusion": {"sliding_window_shapes": (7, 7, 1), "strides": (7, 7, 1)},
    }
    methods = (*attribution.DEFAULT_METHODS, "salient_features")
    out = attribution.attribute_all(small_cnn, x, target, methods=methods, options=options)
    assert list(out) == list(methods)
    np.testing.assert_allclose(
        out["integrated_gradients"],
        attribution.integrated_gradients(small_cnn, x, target, n_steps=16),
        rtol=1e-6,
        atol=1e-8,
    )
    np.testing.assert_allclose(
        out["noise_tunnel"],
        attribution.noise_tunnel(
            attribution.integrated_gradients,
            x,
            nt_type="smoothgrad_sq",
            nt_samples=2,
            stdevs=0.1,
            model_fn=small_cnn,
            target=target,
            n_steps=8,
            internal_batch_size=50,
        ),
        rtol=1e-6,
        atol=1e-12,
    )
    np.testing.assert_array_equal(
        out["occlusion"],
        attribution.occlusion(small_cnn, x, target, (7, 7, 1), (7, 7, 1), 0.0, 16),
    )
    assert out["salient_features"].reshape(2, -1).sum(axis=1).max() <= 200


# ----------------------------------------------------------------------------------------
# Training attribution
# ----------------------------------------------------------------------------------------


def test_training_attribution_records_and_integrates(small_data, tmp_path):
    keras.utils.set_random_seed(0)
    model = models.build_mnist_cnn(conv_filters=(4,), fc_units=8, seed=0)
    x, y = small_data.x_test[:3], small_data.y_test[:3]
    recorder = attribution.TrainingAttribution(x, y, every="batch", score="loss")
    per_epoch = attribution.TrainingAttribution(x, y, every="epoch", score="loss")
    sum_only = attribution.TrainingAttribution(x, y, every="batch", score="loss", keep_frames=False)
    subset = type(small_data)(
        small_data.x_train[:200],
        small_data.y_train[:200],
        x,
        y,
        small_data.class_names,
        small_data.source,
        small_data.name,
    )
    models.train(
        model,
        subset,
        models.TrainConfig(epochs=1, batch_size=50, verbose=0),
        callbacks=[recorder, per_epoch, sum_only],
    )
    assert per_epoch.labels == ["start", "epoch 1"]
    np.testing.assert_array_equal(per_epoch.frames[-1], recorder.frames[-1])
    assert sum_only.count == 5 and not sum_only.frames
    np.testing.assert_allclose(sum_only.integrated, recorder.integrated, rtol=1e-6)
    with pytest.raises(ValueError, match="no frames recorded"):
        sum_only.running_sums()
    assert recorder.count == len(recorder.frames) == 5  # start + 4 batches
    assert recorder.labels[0] == "start" and recorder.labels[-1] == "epoch 1 batch 4"
    np.testing.assert_allclose(recorder.integrated, np.sum(recorder.frames, axis=0), atol=1e-6)
    assert not np.allclose(recorder.frames[0], recorder.frames[-1])
    np.testing.assert_allclose(
        recorder.frames[-1],
        attribution.saliency(model, x, y, absolute=False, score="loss"),
        rtol=1e-5,
        atol=1e-7,
    )
    np.testing.assert_allclose(recorder.running_sums()[-1], recorder.integrated, atol=1e-5)
    path = recorder.write_gif(tmp_path / "training.gif", times_input=True)
    with Image.open(path) as gif:
        assert gif.n_frames == 5


# ----------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------

_X = np.zeros((2, *SHAPE), np.float32)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m: attribution.saliency(m, _X, 3), "target 3 is outside"),
        (lambda m: attribution.saliency(m, _X, -1), "target -1 is outside"),
        (lambda m: attribution.saliency(m, _X, [0, 1, 2]), "target has shape"),
        (lambda m: attribution.saliency(m, _X, 0.5), "target=0.5"),
        (lambda m: attribution.saliency(m, _X[0, 0, 0, 0], 0), "x has shape"),
        (lambda m: attribution.saliency(m, _X[:0], 0), "empty batch"),
        (lambda m: attribution.saliency(m, _X * np.nan, 0), "NaN"),
        (lambda m: attribution.saliency(m, _X, 0, score="logit"), "score='logit'"),
        (lambda m: attribution.integrated_gradients(m, _X, 0, n_steps=0), "n_steps=0"),
        (lambda m: attribution.integrated_gradients(m, _X, 0, method="simpson"), "method="),
        (
            lambda m: attribution.integrated_gradients(
                m, _X, 0, n_steps=1, method="riemann_trapezoid"
            ),
            "riemann_trapezoid",
        ),
        (
            lambda m: attribution.integrated_gradients(m, _X, 0, baselines=np.zeros((3, 4))),
            "baselines has shape",
        ),
        (
            lambda m: attribution.integrated_gradients(m, _X, 0, internal_batch_size=0),
            "internal_batch_size=0",
        ),
        (lambda m: attribution.occlusion(m, _X, 0, (5, 1, 1)), "larger than the input"),
        (lambda m: attribution.occlusion(m, _X, 0, (2, 2)), "has 2 entries; expected 3"),
        (lambda m: attribution.occlusion(m, _X, 0, (2, 2, 1), strides=0), "strides=0"),
        (
            lambda m: attribution.occlusion(m, _X, 0, (1, 1, 1), perturbations_per_eval=0),
            "perturbations_per_eval=0",
        ),
        (
            lambda m: attribution.occlusion(m, _X, 0, (1, 1, 1), baselines=np.zeros(5)),
            "baselines has shape",
        ),
        (
            lambda m: attribution.noise_tunnel(
                attribution.saliency, _X, nt_type="smooth", model_fn=m, target=0
            ),
            "nt_type='smooth'",
        ),
        (
            lambda m: attribution.noise_tunnel(
                attribution.saliency, _X, nt_samples=0, model_fn=m, target=0
            ),
            "nt_samples=0",
        ),
        (
            lambda m: attribution.noise_tunnel(
                attribution.saliency, _X, stdevs=-1.0, model_fn=m, target=0
            ),
            "stdevs=-1.0",
        ),
        (lambda m: attribution.salient_features(m, _X, 0, num_keep=17), "num_keep=17"),
        (lambda m: attribution.salient_features(m, _X, 0, num_keep=0), "num_keep=0"),
        (lambda m: attribution.attribute_all(m, _X, 0, methods=["lime"]), "methods='lime'"),
        (
            lambda m: attribution.attribute_all(m, _X, 0, options={"occlusion": {"size": 2}}),
            "unknown keys",
        ),
        (
            lambda m: attribution.attribute_all(
                m, _X, 0, options={"integrated_gradients": {"return_convergence_delta": True}}
            ),
            "unknown keys",
        ),
        (lambda m: attribution.TrainingAttribution(_X, 0, every="step"), "every='step'"),
        (lambda m: attribution.AttributionConfig(methods=()), "methods is empty"),
        (lambda m: attribution.AttributionConfig(options={"lime": {}}), "options='lime'"),
        (
            lambda m: attribution.AttributionConfig(options={"noise_tunnel": {"seed": 1}}),
            "AttributionConfig.seed",
        ),
        (
            lambda m: attribution.AttributionConfig(
                options={"noise_tunnel": {"attribution": "noise_tunnel"}}
            ),
            "attribution='noise",
        ),
        (lambda m: attribution.AttributionConfig(score="logit"), "score='logit'"),
        (lambda m: attribution.AttributionConfig(from_logits=1), "from_logits=1"),
        (lambda m: attribution.AttributionConfig(seed=-1), "seed=-1"),
        (lambda m: attribution.AttributionConfig(seed=0.5), "seed=0.5"),
    ],
)
def test_bad_arguments_raise_value_error(linear, call, match):
    with pytest.raises(ValueError, match=match):
        call(linear[0])


def test_the_registry_gives_the_method_lists_and_defaults():
    assert attribution.ALL_METHODS == tuple(attribution.ATTRIBUTIONS)
    assert attribution.DEFAULT_METHODS == tuple(
        name for name, spec in attribution.ATTRIBUTIONS.items() if spec.default
    )
    assert "salient_features" not in attribution.DEFAULT_METHODS
    options = attribution.default_options((28, 28, 1))
    assert options["occlusion"]["sliding_window_shapes"] == (5, 5, 1)
    assert options["salient_features"] == {"num_keep": 200}
    assert attribution.default_options((3, 3))["salient_features"] == {"num_keep": 9}
    assert options["noise_tunnel"]["seed"] == 0


def test_attribute_all_takes_a_config(linear, linear_batch):
    model = linear[0]
    x, target = linear_batch
    nt = {"nt_samples": 2, "n_steps": 4, "attribution": "integrated_gradients"}
    config = attribution.AttributionConfig(
        methods=("saliency", "noise_tunnel"), options={"noise_tunnel": nt}, seed=3
    )
    out = attribution.attribute_all(model, x, target, config=config)
    same = attribution.attribute_all(
        model, x, target, ("saliency", "noise_tunnel"), {"noise_tunnel": {**nt, "seed": 3}}
    )
    assert list(out) == ["saliency", "noise_tunnel"]
    for name in out:
        np.testing.assert_array_equal(out[name], same[name])
    other = attribution.attribute_all(
        model,
        x,
        target,
        config=attribution.AttributionConfig(
            methods=("noise_tunnel",), options={"noise_tunnel": nt}, seed=4
        ),
    )
    assert not np.array_equal(other["noise_tunnel"], out["noise_tunnel"])
    with pytest.raises(ValueError, match="not both"):
        attribution.attribute_all(model, x, target, score="loss", config=config)


def test_trapezoid_weights_and_captums():
    n = 32
    alphas, weights = attribution.ig_steps("riemann_trapezoid", n)
    np.testing.assert_allclose(alphas, np.linspace(0, 1, n))
    assert weights.sum() == pytest.approx(1.0)  # the exact trapezoid rule
    captum = np.array([0.5 / n] + [1.0 / n] * (n - 2) + [0.5 / n])  # Captum's, summing to (n-1)/n
    np.testing.assert_allclose(weights * (n - 1) / n, captum)  # the documented conversion
