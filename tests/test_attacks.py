"""Tests of tfool.attacks: the defining properties of each attack and its argument checks."""

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfool import attacks

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-6


@pytest.fixture(scope="module")
def linear():
    """A tiny linear classifier on 2x2x1 inputs with known weights: logits = x W + b."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    b = rng.normal(size=3).astype(np.float32)
    model = keras.Sequential(
        [keras.Input((2, 2, 1)), keras.layers.Flatten(), keras.layers.Dense(3)], name="linear"
    )
    model.layers[-1].set_weights([w, b])
    return model, w, b


@pytest.fixture(scope="module")
def linear_x():
    x = np.random.default_rng(2).uniform(0, 1, size=(16, 2, 2, 1)).astype(np.float32)
    x[0, 0, 0, 0], x[1, 1, 1, 0] = 0.0, 1.0  # on the clip boundary
    return x


@pytest.fixture(scope="module")
def images(small_data):
    return small_data.x_test[:128], small_data.y_test[:128]


def _numpy_gradient(x, w, b, y):
    """d CE(softmax(x W + b), y) / dx for the linear model, per example."""
    flat = x.reshape(len(x), -1)
    logits = flat @ w + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(x)), y] -= 1.0
    return (p @ w.T).reshape(x.shape)


def _predict(model, x):
    return np.argmax(model(x).numpy(), axis=-1)


class _Forbidden:
    """A model_fn that fails when called: proves that a check ran before any work."""

    def __call__(self, x):
        raise AssertionError("model_fn was called before the arguments were checked")


# ---------------------------------------------------------------------------------------
# Exact values on a linear model
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_equals_hand_computed_sign_step_on_linear_model(linear, linear_x, targeted):
    model, w, b = linear
    y = np.arange(len(linear_x)) % 3
    g = _numpy_gradient(linear_x, w, b, y)
    step = -0.1 * np.sign(g) if targeted else 0.1 * np.sign(g)
    expected = np.clip(linear_x + step, 0.0, 1.0)
    got = attacks.fgsm(model, linear_x, 0.1, y=y, targeted=targeted)
    np.testing.assert_allclose(got, expected, atol=TOL)
    assert np.any(got != linear_x)


def test_fgm_l2_and_normalized_gradient_match_closed_form(linear, linear_x):
    model, w, b = linear
    y = _predict(model, linear_x)  # y=None must use the model's own predictions
    g = _numpy_gradient(linear_x, w, b, y)
    axes = (1, 2, 3)
    l2 = np.clip(linear_x + 0.3 * g / np.sqrt((g**2).sum(axes, keepdims=True)), 0, 1)
    mx = np.clip(linear_x + 0.3 * g / np.abs(g).max(axes, keepdims=True), 0, 1)
    np.testing.assert_allclose(attacks.fgm_l2(model, linear_x, 0.3), l2, atol=TOL)
    np.testing.assert_allclose(attacks.normalized_gradient(model, linear_x, 0.3), mx, atol=TOL)
    np.testing.assert_allclose(attacks.fgm(model, linear_x, 0.3, norm=2), l2, atol=TOL)
    np.testing.assert_allclose(attacks.loss_gradient(model, linear_x), g, rtol=1e-4, atol=1e-6)


def test_probabilities_flag_gives_the_same_step(linear, linear_x):
    model, *_ = linear
    probs_model = keras.Sequential([model, keras.layers.Softmax()])
    from_logits = attacks.normalized_gradient(model, linear_x, 0.2)
    from_probs = attacks.normalized_gradient(probs_model, linear_x, 0.2, from_logits=False)
    np.testing.assert_allclose(from_probs, from_logits, atol=1e-5)
    np.testing.assert_allclose(
        attacks.probabilities(probs_model, linear_x, from_logits=False),
        attacks.probabilities(model, linear_x),
        atol=1e-6,
    )


def test_y_none_uses_predictions_and_batching_changes_nothing(linear, linear_x):
    model, *_ = linear
    own = attacks.fgsm(model, linear_x, 0.2, batch_size=5)
    np.testing.assert_array_equal(
        own, attacks.fgsm(model, linear_x, 0.2, y=_predict(model, linear_x))
    )
    np.testing.assert_array_equal(
        attacks.bim(model, linear_x, 0.2, steps=3, batch_size=3),
        attacks.bim(model, linear_x, 0.2, steps=3, batch_size=100),
    )


def test_eps_zero_and_zero_steps_return_the_input(linear, linear_x):
    model, *_ = linear
    for method in ("fgsm", "normalized_gradient", "bim", "random"):
        np.testing.assert_array_equal(attacks.attack(method, model, linear_x, 0.0), linear_x)
    np.testing.assert_array_equal(attacks.bim(model, linear_x, 0.1, steps=0), linear_x)


# ---------------------------------------------------------------------------------------
# Defining properties on a trained CNN
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, kwargs, norm",
    [
        ("fgsm", {}, "inf"),
        ("normalized_gradient", {}, "inf"),
        ("fgm_l2", {}, "2"),
        ("bim", {"steps": 4}, "inf"),
        ("bim", {"steps": 4, "norm": 2, "least_likely": True}, "2"),
        ("pgd", {"steps": 3, "seed": 3}, "inf"),
        ("pgd", {"steps": 3, "norm": "l2"}, "2"),
        ("random", {"seed": 5}, "inf"),
    ],
)
def test_perturbation_stays_in_eps_ball_and_clip_range(small_cnn, images, method, kwargs, norm):
    x, _ = images
    eps = 0.15 if norm == "inf" else 1.5
    adv = attacks.attack(method, small_cnn, x, eps, **kwargs)
    delta = (adv.astype(np.float64) - x).reshape(len(x), -1)
    size = np.abs(delta).max(1) if norm == "inf" else np.linalg.norm(delta, axis=1)
    assert adv.shape == x.shape and adv.dtype == np.float32
    assert size.max() <= eps + 1e-5
    assert size.max() > 0.5 * eps  # it did move
    assert adv.min() >= 0.0 and adv.max() <= 1.0


def test_custom_clip_range_is_respected(small_cnn, images):
    x = 0.2 + 0.6 * images[0][:32]
    for method in ("fgsm", "bim", "pgd"):
        adv = attacks.attack(method, small_cnn, x, 0.3, steps=3, clip_min=0.2, clip_max=0.8)
        assert adv.min() >= 0.2 and adv.max() <= 0.8
        assert np.abs(adv - x).max() <= 0.3 + TOL


def test_accuracy_falls_monotonically_with_eps(small_cnn, small_data):
    x, y = small_data.x_test, small_data.y_test
    eps = [0.0, 0.02, 0.05, 0.1, 0.2, 0.3]
    result = attacks.sweep(small_cnn, x, y, eps, methods=("fgsm", "bim"), y=y, steps=3)
    for method, acc in result.curves().items():
        assert acc[0] == pytest.approx(small_cnn.test_accuracy, abs=1e-6)
        assert np.all(np.diff(acc) <= 0), (method, acc)
        assert acc[-1] < 0.5 * acc[0], (method, acc)
    assert result.accuracy("bim", 0.1) <= result.accuracy("fgsm", 0.1)


def test_random_noise_changes_far_fewer_answers_than_fgsm(small_cnn, small_data):
    x, y = small_data.x_test, small_data.y_test
    result = attacks.sweep(small_cnn, x, y, [0.1, 0.2], methods=("fgsm", "random"), seed=1)
    rows = {(r.method, r.eps): r for r in result.rows}
    for eps in (0.1, 0.2):
        fgsm, noise = rows["fgsm", eps], rows["random", eps]
        assert noise.changed < 0.25 * fgsm.changed, (eps, noise.changed, fgsm.changed)
        assert noise.accuracy > fgsm.accuracy
    assert rows["fgsm", 0.2].mean_wrong_confidence > 0.3


@pytest.mark.parametrize("method", ["fgsm", "bim"])
def test_targeted_attack_raises_target_probability(small_cnn, images, method):
    x, y = images
    target = (y + 1) % 10
    before = attacks.probabilities(small_cnn, x)[np.arange(len(x)), target]
    adv = attacks.attack(method, small_cnn, x, 0.2, y=target, targeted=True, steps=5)
    after = attacks.probabilities(small_cnn, adv)[np.arange(len(x)), target]
    assert after.mean() > before.mean() + 0.05
    assert np.mean(after > before) > 0.9


def test_least_likely_target_gains_probability(small_cnn, images):
    x, _ = images
    probs = attacks.probabilities(small_cnn, x)
    ll = probs.argmin(-1)
    adv = attacks.bim(small_cnn, x, 0.2, steps=5, least_likely=True)
    after = attacks.probabilities(small_cnn, adv)[np.arange(len(x)), ll]
    assert after.mean() > probs[np.arange(len(x)), ll].mean() + 0.05


def test_pgd_is_seeded_and_starts_away_from_bim(small_cnn, images):
    x = images[0][:16]
    a = attacks.pgd(small_cnn, x, 0.1, steps=2, seed=4)
    np.testing.assert_array_equal(a, attacks.pgd(small_cnn, x, 0.1, steps=2, seed=4))
    assert not np.array_equal(a, attacks.pgd(small_cnn, x, 0.1, steps=2, seed=5))
    assert not np.array_equal(a, attacks.bim(small_cnn, x, 0.1, steps=2))
    noise = attacks.random_sign_noise(x, 0.1, seed=4)
    np.testing.assert_array_equal(noise, attacks.random_sign_noise(x, 0.1, seed=4))
    inside = (noise - x)[(x > 0.1) & (x < 0.9)]  # pixels the clipping cannot touch
    np.testing.assert_allclose(np.abs(inside), 0.1, atol=TOL)
    assert 0.3 < np.mean(inside > 0) < 0.7


def test_kurakin_step_count():
    assert attacks.kurakin_steps(16 / 255) == 20  # min(16 + 4, 20)
    assert attacks.kurakin_steps(4 / 255) == 5  # min(8, 5)
    assert attacks.kurakin_steps(64 / 255) == 68  # min(68, 80)
    assert attacks.kurakin_steps(0.0) == 0
    assert attacks.kurakin_steps(8.0, 0.0, 255.0) == 10


def test_sweep_result_table_and_clean_rows(small_cnn, images):
    x, y = images
    seen = []
    result = attacks.sweep(
        small_cnn, x, y, [0.0, 0.1], methods=("fgsm", "random"), callback=seen.append
    )
    assert [(r.method, r.eps) for r in seen] == [(r.method, r.eps) for r in result.rows]
    assert result.methods == ("fgsm", "random") and result.eps_values == (0.0, 0.1)
    for method in result.methods:
        assert result.accuracy(method, 0.0) == result.clean_accuracy
    header, rows = result.table()
    assert header[:3] == ["method", "eps", "accuracy"] and len(rows) == 4
    assert result.as_dict()["rows"][1]["accuracy"] == result.accuracy("fgsm", 0.1)
    fgsm = attacks.fgsm(small_cnn, x, 0.1)
    direct = np.mean(attacks.probabilities(small_cnn, fgsm).argmax(-1) == y)
    assert result.accuracy("fgsm", 0.1) == pytest.approx(direct)
    targeted = attacks.sweep(small_cnn, x, y, [0.2], methods=("fgsm",), y=3, targeted=True)
    assert targeted.rows[0].target_rate is not None and targeted.targeted
    with pytest.raises(KeyError):
        result.accuracy("bim", 0.1)


def test_one_replica_strategies_give_the_same_result(small_cnn, images):
    x, y = images[0][:21], images[1][:21]
    for strategy in (
        tf.distribute.OneDeviceStrategy("/cpu:0"),
        tf.distribute.MirroredStrategy(["/cpu:0"]),
    ):
        np.testing.assert_array_equal(
            attacks.fgsm(small_cnn, x, 0.1, strategy=strategy, batch_size=8),
            attacks.fgsm(small_cnn, x, 0.1),
        )
        np.testing.assert_allclose(
            attacks.bim(small_cnn, x, 0.1, steps=2, y=y, strategy=strategy, batch_size=8),
            attacks.bim(small_cnn, x, 0.1, steps=2, y=y),
            atol=TOL,
        )


@pytest.mark.slow
def test_two_replica_mirrored_strategy_matches_single_device(run_on_two_cpus):
    """Two logical CPUs (needs a fresh process): odd batches are padded and split in order."""
    proc = run_on_two_cpus(
        """
        from tfool import attacks
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3),
                                  keras.layers.Flatten(), keras.layers.Dense(5)])
        x = np.random.default_rng(0).uniform(size=(23, 6, 6, 1)).astype("float32")
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert strategy.num_replicas_in_sync == 2
        for name in ("fgsm", "pgd"):
            one = attacks.attack(name, model, x, 0.1, steps=2)
            two = attacks.attack(name, model, x, 0.1, steps=2, strategy=strategy, batch_size=7)
            assert np.abs(one - two).max() <= 1e-6, name
        p = attacks.probabilities(model, x, strategy=strategy, batch_size=5)
        assert np.allclose(p, attacks.probabilities(model, x), atol=1e-6)
        print("OK")
        """
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stderr[-3000:]


# ---------------------------------------------------------------------------------------
# Argument checks: ValueError naming the argument, before any work
# ---------------------------------------------------------------------------------------

X = np.full((4, 2, 2, 1), 0.5, np.float32)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: attacks.fgsm(m, X, -0.1), "eps=-0.1"),
        (lambda m: attacks.fgsm(m, X, float("nan")), "eps=nan"),
        (lambda m: attacks.fgsm(m, X, 0.1, clip_min=1.0, clip_max=0.0), "clip_min=1.0"),
        (lambda m: attacks.fgsm(m, X + 1.0, 0.1), "outside the clip range"),
        (lambda m: attacks.fgsm(m, X * np.nan, 0.1), "NaN"),
        (lambda m: attacks.fgsm(m, X[:0], 0.1), "x has shape"),
        (lambda m: attacks.fgsm(m, X, 0.1, targeted=True), "targeted=True needs"),
        (lambda m: attacks.fgsm(m, X, 0.1, batch_size=0), "batch_size=0"),
        (lambda m: attacks.bim(m, X, 0.1, y=np.zeros(4, int), least_likely=True), "least_likely"),
        (lambda m: attacks.bim(m, X, 0.1, steps=-1), "steps=-1"),
        (lambda m: attacks.bim(m, X, 0.1, step_size=0.0), "step_size=0.0"),
        (lambda m: attacks.bim(m, X, 0.1, norm=1), "norm=1"),
        (lambda m: attacks.fgm(m, X, 0.1, norm="l1"), "norm='l1'"),
        (lambda m: attacks.pgd(m, X, 0.1, norm="fro"), "norm='fro'"),
        (lambda m: attacks.random_sign_noise(X, -1.0), "eps=-1.0"),
        (lambda m: attacks.random_sign_noise(X - 1.0, 0.1), "outside the clip range"),
        (lambda m: attacks.attack("deepfool", m, X, 0.1), "method='deepfool'"),
        (lambda m: attacks.fgsm(None, X, 0.1), "model_fn=None"),
        (lambda m: attacks.kurakin_steps(0.1, 1.0, 1.0), "clip_min=1.0"),
        (lambda m: attacks.sweep(m, X, [0] * 4, [0.1], methods=("fgsm", "fgsm")), "methods="),
        (lambda m: attacks.sweep(m, X, [0] * 4, [0.1], methods=("magic",)), "methods="),
        (lambda m: attacks.sweep(m, X, [0] * 4, [0.1], methods=()), "methods="),
        (lambda m: attacks.sweep(m, X, [0] * 4, []), "eps_values is empty"),
        (lambda m: attacks.sweep(m, X, [0] * 4, [0.1, -0.2]), "eps_values entry=-0.2"),
        (lambda m: attacks.probabilities(m, X[0, 0, 0]), "x has shape"),
    ],
)
def test_bad_arguments_raise_before_any_work(call, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace("|", r"\|")):
        call(_Forbidden())


@pytest.mark.parametrize(
    "y, match",
    [
        (np.zeros((4, 1), int), r"y has shape \(4, 1\)"),
        (np.zeros(3, int), r"y has shape \(3,\)"),
        (np.array([0, 1, 2, 3]), r"class indices in \[0, 3\], expected 0..2"),
        (np.array([0, -1, 0, 0]), r"class indices in \[-1, 0\]"),
        (np.zeros(4, np.float32), "y has dtype float32"),
        (7, r"class indices in \[7, 7\]"),
    ],
)
def test_bad_labels_raise(linear, y, match):
    model, *_ = linear
    with pytest.raises(ValueError, match=match):
        attacks.fgsm(model, X, 0.1, y=y)
    with pytest.raises(ValueError, match=match.replace("y has", "labels has")):
        attacks.sweep(model, X, y, [0.1])


def test_the_registry_is_the_one_list_of_attacks(small_cnn):
    assert attacks.METHODS == tuple(attacks.ATTACKS)
    steps = {n for n, spec in attacks.ATTACKS.items() if spec.direction is not None}
    assert steps == {"fgsm", "fgm_l2", "normalized_gradient"}
    assert attacks.attack_spec("normalized_gradient").label == "g/max|g|"
    assert attacks.attack_spec("bim").label == "bim"
    with pytest.raises(ValueError, match="method='cw' is not one of"):
        attacks.attack_spec("cw")
    x = np.full((2, 28, 28, 1), 0.5, np.float32)
    # shared options a method does not take are dropped, not passed on
    got = attacks.attack("fgsm", small_cnn, x, 0.1, steps=3, step_size=0.2, seed=4)
    np.testing.assert_array_equal(got, attacks.fgsm(small_cnn, x, 0.1))
    noise = attacks.attack("random", small_cnn, x, 0.1, seed=4, y=np.array([1, 2]))
    np.testing.assert_array_equal(noise, attacks.random_sign_noise(x, 0.1, seed=4))
    # every sweep hyperparameter is one some attack takes, and only those are dropped
    taken = {h for spec in attacks.ATTACKS.values() for h in spec.hyperparameters}
    assert set(attacks.SWEEP_HYPERPARAMETERS) <= taken
    with pytest.raises(TypeError, match="norm"):
        attacks.attack("fgsm", small_cnn, x, 0.1, norm=2)


@pytest.mark.parametrize(
    "x_shape, eps, message",
    [
        ((4, 2, 2), 0.1, r"x has shape \(4, 2, 2\); the model 'linear' expects \[N, 2, 2, 1\]"),
        ((4, 3, 3, 1), 0.1, r"expects \[N, 2, 2, 1\]"),
        ((4, 2, 2, 1), "0.1", "eps='0.1' is a str; expected a number"),
        ((4, 2, 2, 1), None, "eps=None is a NoneType"),
    ],
)
def test_misshapen_images_and_non_numeric_eps_are_named(linear, x_shape, eps, message):
    model = linear[0]
    with pytest.raises(ValueError, match=message):
        attacks.fgsm(model, np.zeros(x_shape, np.float32), eps, y=np.zeros(4, np.int64))


# ---------------------------------------------------------------------------------------
# One signature: (model_fn, x, eps, y=None, *, ...) for every attack
# ---------------------------------------------------------------------------------------

MODEL_ATTACKS = {
    "fgsm": {},
    "fgm_l2": {},
    "normalized_gradient": {},
    "bim": {"steps": 2},
    "pgd": {"steps": 2, "seed": 3},
}


@pytest.mark.parametrize("method", sorted(MODEL_ATTACKS))
def test_y_is_the_fourth_positional_argument_of_every_attack(linear, linear_x, method):
    model, *_ = linear
    fn, options = getattr(attacks, method), MODEL_ATTACKS[method]
    y = (_predict(model, linear_x) + 1) % 3  # not the predictions, so y=None differs
    by_position = fn(model, linear_x, 0.2, y, **options)
    np.testing.assert_array_equal(by_position, fn(model, linear_x, 0.2, y=y, **options))
    by_registry = attacks.attack(method, model, linear_x, 0.2, y, **options)
    np.testing.assert_array_equal(by_position, by_registry)
    assert not np.array_equal(by_position, fn(model, linear_x, 0.2, **options))
    # one integer is broadcast to every image, the same for every attack
    np.testing.assert_array_equal(
        fn(model, linear_x, 0.2, 2, **options),
        fn(model, linear_x, 0.2, np.full(len(linear_x), 2), **options),
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda m, y: attacks.fgsm(m, X, 0.1, y, True),  # targeted
        lambda m, y: attacks.fgm_l2(m, X, 0.1, y, False),
        lambda m, y: attacks.normalized_gradient(m, X, 0.1, y, False),
        lambda m, y: attacks.fgm(m, X, 0.1, y, 2),  # norm
        lambda m, y: attacks.bim(m, X, 0.1, y, 0.01),  # step_size
        lambda m, y: attacks.bim(m, X, 0.1, 0.01, 5, y),  # the old order
        lambda m, y: attacks.pgd(m, X, 0.1, y, 0.01, 5),
        lambda m, y: attacks.random_sign_noise(X, 0.1, 4),  # seed
        lambda m, y: attacks.loss_gradient(m, X, y, True),  # least_likely
        lambda m, y: attacks.sweep(m, X, y, [0.1], ("fgsm",), y),
    ],
)
def test_arguments_after_y_are_keyword_only(call):
    with pytest.raises(TypeError, match="positional argument"):
        call(_Forbidden(), np.zeros(4, np.int64))


@pytest.mark.parametrize("method", sorted(MODEL_ATTACKS))
@pytest.mark.parametrize(
    "y, match",
    [
        (3.0, r"y=3\.0 has dtype float64; expected integer class indices of shape \(4,\)"),
        (1.5, r"y=1\.5 has dtype float64"),
        (np.float32(2), r"y=2\.0 has dtype float32"),
        (np.array([0.0, 1.0, 2.0, 1.5]), r"y has dtype float64 \(first entry 0\.0\)"),
        ([0.0, 1, 2, 0], "y has dtype float64"),
        (True, r"y=True; expected integer class indices .*a bool is not a class index"),
        (np.bool_(False), "y=False; expected"),
        ([True, 1, 0, 2], "y holds bools; expected"),
        (np.ones(4, bool), "y holds bools"),
        ("1", "y='1' has dtype <U1"),
        (np.zeros(3, np.int64), r"y has shape \(3,\), expected \(4,\)"),
        ([0, 1, 2, 0, 1], r"y has shape \(5,\), expected \(4,\)"),
        (np.eye(4, 3, dtype=np.int64), r"y has shape \(4, 3\).*one-hot labels"),
    ],
)
def test_non_integer_or_misshapen_y_is_refused_by_name_before_any_work(method, y, match):
    fn = getattr(attacks, method)
    with pytest.raises(ValueError, match=match):
        fn(_Forbidden(), X, 0.1, y, **MODEL_ATTACKS[method])


def test_y_outside_the_models_classes_is_refused_by_every_attack(linear):
    model, *_ = linear
    for method, options in MODEL_ATTACKS.items():
        with pytest.raises(ValueError, match=r"y has class indices in \[0, 3\], expected 0..2"):
            getattr(attacks, method)(model, X, 0.1, np.array([0, 1, 2, 3]), **options)
    with pytest.raises(ValueError, match=r"y=2\.0 has dtype float64"):
        attacks.loss_gradient(model, X, 2.0)
    with pytest.raises(ValueError, match=r"labels has dtype float64"):
        attacks.sweep(model, X, [0.0, 1.0, 2.0, 0.0], [0.1])
