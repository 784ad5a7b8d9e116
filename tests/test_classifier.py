"""Tests for tfool.classifier: any Keras classifier read right, or refused in one line."""

import re

import keras
import numpy as np
import pytest

from tfool import backwork as bw
from tfool import classifier, data, models


def _rgb_net(final_activation=None, num_classes=10, seed=0):
    """A functional RGB 32x32 classifier that is not tfool's."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3), name="pixels")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="edges")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="parts")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(64, activation="relu", name="hidden")(x)
    out = keras.layers.Dense(num_classes, activation=final_activation, name="scores")(x)
    return keras.Model(inputs, out, name="rgb_net")


def _rgb_data(num_classes=10, per_class=6, seed=0):
    rng = np.random.default_rng(seed)
    n = num_classes * per_class
    x = rng.uniform(0, 1, (n, 32, 32, 3)).astype(np.float32)
    y = np.repeat(np.arange(num_classes), per_class).astype(np.int64)
    names = tuple(f"c{i}" for i in range(num_classes))
    return data.Dataset(x, y, x[:10], y[:10], names, "arrays", "rgb")


def _softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _quick(**kw):
    base = dict(labels=(1, 2), num_examples=2, max_num_steps=3, min_num_steps=0)
    return bw.BackworkConfig(**{**base, **kw})


# --------------------------------------------------------------------------- the layer rule


def test_reference_cnn_keeps_the_posts_layers():
    model = models.build_mnist_cnn(seed=0)
    assert classifier.default_layer_names(model) == ("inputs", "conv0", "conv1", "fc", "softmax")


def test_functional_rule_exposes_input_convs_hidden_dense_and_probabilities():
    assert classifier.default_layer_names(_rgb_net()) == (
        "pixels",
        "edges",
        "parts",
        "hidden",
        "probabilities",
    )


def test_rule_takes_the_activation_after_batch_norm_and_skips_the_class_layer():
    model = keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            keras.layers.Conv2D(3, 3, name="c"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.ReLU(name="act"),
            keras.layers.Conv2D(3, 3, name="plain"),  # no activation follows: itself
            keras.layers.Flatten(),
            keras.layers.Dense(5, name="d"),
            keras.layers.Activation("tanh", name="d_tanh"),
            keras.layers.Dense(4, name="cls"),
            keras.layers.Softmax(name="sm"),
        ],
        name="seq",
    )
    names = classifier.default_layer_names(model)
    assert names[1:] == ("act", "plain", "d_tanh", "probabilities")
    act = classifier.activation_model(model)
    x = np.random.default_rng(0).uniform(size=(3, 12, 12, 1)).astype(np.float32)
    out = act(x)
    assert list(out) == list(names)
    np.testing.assert_allclose(out[names[0]], x)
    np.testing.assert_allclose(out["probabilities"], model.predict(x, verbose=0), rtol=1e-5)


# --------------------------------------------------------------------------- softmax stripping


@pytest.mark.parametrize("ending", ["activation", "layer", "activation_layer", "dropout_after"])
def test_a_final_softmax_is_stripped_never_applied_twice(ending):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((6,), name="features")
    h = keras.layers.Dense(8, activation="relu", name="h")(inputs)
    if ending == "activation":
        out = keras.layers.Dense(3, activation="softmax", name="out")(h)
    else:
        out = keras.layers.Dense(3, name="out")(h)
        if ending == "layer":
            out = keras.layers.Softmax(name="sm")(out)
        else:
            out = keras.layers.Activation("softmax", name="sm")(out)
        if ending == "dropout_after":
            out = keras.layers.Dropout(0.5, name="drop")(out)
    model = keras.Model(inputs, out, name="probs_net")
    x = np.random.default_rng(2).normal(size=(9, 6)).astype(np.float32)
    want = model.predict(x, verbose=0)
    logits, is_logits = classifier.logits_model(model)
    assert is_logits and logits is not model
    np.testing.assert_allclose(_softmax(logits.predict(x, verbose=0)), want, rtol=1e-4, atol=1e-6)
    act = classifier.activation_model(model)  # the model's own probabilities, not softmax(p)
    np.testing.assert_allclose(act(x)["probabilities"], want, rtol=1e-4, atol=1e-6)
    assert model.predict(x, verbose=0).max() == pytest.approx(want.max())  # not mutated


def test_the_stripped_model_shares_the_weights():
    model = _rgb_net("softmax")
    logits, _ = classifier.logits_model(model)
    assert classifier.logits_model(model)[0] is logits  # made once per model
    x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype(np.float32)
    kernel, bias = model.get_layer("scores").get_weights()
    model.get_layer("scores").set_weights([kernel * 3, bias + 1])
    np.testing.assert_allclose(
        _softmax(logits(x)), model.predict(x, verbose=0), rtol=1e-4, atol=1e-6
    )


def test_a_nested_model_ending_in_softmax_is_looked_into():
    inner = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(4), keras.layers.Softmax()], name="inner"
    )
    inputs = keras.Input((6,))
    model = keras.Model(inputs, inner(inputs), name="outer")
    assert classifier.final_softmax(model) is not None
    x = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    act = classifier.activation_model(model, ["probabilities"])
    np.testing.assert_allclose(act(x)["probabilities"], model.predict(x, verbose=0), rtol=1e-5)


def test_from_logits_true_on_a_softmax_model_is_refused():
    with pytest.raises(ValueError, match="from_logits=True but model 'rgb_net' ends in a softmax"):
        classifier.logits_model(_rgb_net("softmax"), from_logits=True)


def test_a_sigmoid_output_is_refused():
    with pytest.raises(ValueError, match="ends in a sigmoid"):
        classifier.logits_model(_rgb_net("sigmoid"))


def test_probabilities_without_a_softmax_layer_are_not_guessed():
    inputs = keras.Input((6,))
    out = keras.layers.Lambda(lambda t: keras.ops.softmax(t), name="hidden_softmax")(
        keras.layers.Dense(3)(inputs)
    )
    model = keras.Model(inputs, out, name="lambda_net")
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    with pytest.raises(ValueError, match="probabilities by the look of them"):
        classifier.probe(model, x)
    classifier.probe(model, x, from_logits=False)  # stated: accepted
    act = classifier.activation_model(model, ["probabilities"], from_logits=False)
    np.testing.assert_allclose(act(x)["probabilities"], model.predict(x, verbose=0), rtol=1e-6)


def test_from_logits_false_on_logits_is_refused():
    model = _rgb_net()
    x = np.random.default_rng(0).uniform(size=(4, 32, 32, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="from_logits=False but model 'rgb_net' does not return"):
        classifier.probe(model, x, from_logits=False)


# --------------------------------------------------------------------------- refusals


def test_multi_output_and_subclassed_models_get_one_clear_line():
    inputs = keras.Input((6,))
    two = keras.Model(inputs, [keras.layers.Dense(3)(inputs), keras.layers.Dense(2)(inputs)])
    with pytest.raises(ValueError, match=r"has 2 outputs; .*model\.outputs\[i\]"):
        classifier.activation_model(two)

    class Sub(keras.Model):
        def __init__(self):
            super().__init__(name="sub")
            self.d = keras.layers.Dense(3)

        def call(self, x):
            return self.d(x)

    sub = Sub()
    sub(np.zeros((1, 6), np.float32))
    with pytest.raises(ValueError, match=r"subclassed keras.Model .*keras.Model\(inputs"):
        bw.backwork(sub, None, bw.BackworkConfig(labels=(0,), layer_names=("probabilities",)))


def test_the_last_exposed_layer_must_be_the_class_probabilities():
    with pytest.raises(
        ValueError, match="'hidden' is a hidden layer with 64 units and the model has 10 classes"
    ):
        classifier.activation_model(_rgb_net(), ["pixels", "edges", "hidden"])
    with pytest.raises(ValueError, match=r"'edges' is a layer of 3-D activations"):
        classifier.activation_model(_rgb_net(), ["pixels", "edges"])
    with pytest.raises(ValueError, match=re.escape("'fc' is a hidden layer with 1024 units")):
        classifier.activation_model(models.build_mnist_cnn(seed=0), ["inputs", "conv0", "fc"])
    with pytest.raises(ValueError, match=r"layer 'nope' is not in model 'rgb_net'; its layers: "):
        classifier.activation_model(_rgb_net(), ["nope", "probabilities"])
    # the output layer itself is the class probabilities
    act = classifier.activation_model(_rgb_net(), ["pixels", "scores"])
    assert act.layer_names == ("pixels", "scores")


def test_data_of_another_class_count_is_refused():
    with pytest.raises(ValueError, match="has 10 class outputs; the data 'rgb' has 7 classes"):
        bw.backwork(_rgb_net(), _rgb_data(num_classes=7), _quick())


# --------------------------------------------------------------------------- backworking


def test_backwork_runs_on_a_users_rgb_classifier_and_reports_its_probabilities():
    model, ds = _rgb_net("softmax"), _rgb_data()
    result = bw.backwork(model, ds, _quick())
    assert result.layer_names == ("pixels", "edges", "parts", "hidden", "probabilities")
    assert result.images.shape == (2, 2, 32, 32, 3)
    assert result.probabilities.shape == (2, 2, 10)
    want = model.predict(result.images.reshape(-1, 32, 32, 3), verbose=0).reshape(2, 2, 10)
    np.testing.assert_allclose(result.probabilities, want, rtol=1e-3, atol=1e-5)


def test_flexible_input_dimensions_are_fixed_by_the_data():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 1), name="img")
    x = keras.layers.Conv2D(3, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="cls")(x), name="fcn")
    ds = data.Dataset(
        np.random.default_rng(0).uniform(size=(40, 28, 28, 1)).astype(np.float32),
        np.repeat(np.arange(10), 4),
        np.zeros((2, 28, 28, 1), np.float32),
        np.zeros(2, np.int64),
        tuple(str(i) for i in range(10)),
        "arrays",
        "grey",
    )
    result = bw.backwork(model, ds, _quick())
    assert result.images.shape[2:] == (28, 28, 1)
    with pytest.raises(ValueError, match=r"unknown dimensions; give training images"):
        bw.backwork(model, None, _quick(layer_names=("probabilities",), batch_cost_coeff=0.0))
    bad = data.Dataset(ds.x_train[..., :1].repeat(3, -1), ds.y_train, ds.x_test.repeat(3, -1),
                       ds.y_test, ds.class_names, "arrays", "rgb")  # fmt: skip
    with pytest.raises(ValueError, match=r"the images have shape \(28, 28, 3\) but model 'fcn'"):
        bw.backwork(model, bad, _quick())


def test_a_rebuilt_or_reloaded_sequential_keeps_its_layers(tmp_path):
    model = keras.Sequential()
    model.add(keras.Input((12, 12, 1), name="image"))
    model.add(keras.layers.Conv2D(3, 3, name="c"))
    model.add(keras.layers.ReLU(name="r"))
    model.add(keras.layers.Flatten())
    model.add(keras.layers.Dense(4, activation="softmax", name="out"))
    assert classifier.default_layer_names(model) == ("image", "r", "probabilities")
    model.save(tmp_path / "seq.keras")
    loaded = keras.saving.load_model(tmp_path / "seq.keras")  # extra call nodes in Keras
    assert classifier.default_layer_names(loaded) == ("image", "r", "probabilities")
    x = np.random.default_rng(0).uniform(size=(3, 12, 12, 1)).astype(np.float32)
    out = classifier.activation_model(loaded, ["image", "c", "probabilities"])(x)
    np.testing.assert_allclose(out["probabilities"], loaded.predict(x, verbose=0), rtol=1e-5)
    assert tuple(out["c"].shape) == (3, 10, 10, 3)


# --------------------------------------------------------------------------- every consumer


def test_attacks_and_attributions_read_a_softmax_model_once():
    from tfool import attacks, attribution

    model = _rgb_net("softmax", num_classes=4)
    logits_net, _ = classifier.logits_model(model)
    x = np.random.default_rng(3).uniform(size=(6, 32, 32, 3)).astype(np.float32)
    y = np.arange(6) % 4
    want = model.predict(x, verbose=0)
    np.testing.assert_allclose(attacks.probabilities(model, x), want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(models.predict_probabilities(model, x), want, rtol=1e-4, atol=1e-6)
    # the attack on the softmax model is the attack on its logits
    np.testing.assert_allclose(
        attacks.fgsm(model, x, 0.05, y), attacks.fgsm(logits_net, x, 0.05, y), atol=1e-6
    )
    with pytest.raises(ValueError, match="from_logits=True but model 'rgb_net' ends in a softmax"):
        attacks.fgsm(model, x, 0.05, y, from_logits=True)
    got = attribution.saliency(model, x[:2], y[:2], score="probability")
    ref = attribution.saliency(logits_net, x[:2], y[:2], score="probability")
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-7)
    inputs = keras.Input((6,))
    two = keras.Model(inputs, [keras.layers.Dense(3)(inputs), keras.layers.Dense(2)(inputs)])
    with pytest.raises(ValueError, match="has 2 outputs"):
        attacks.fgsm(two, np.zeros((2, 6), np.float32), 0.1)


def test_training_needs_logits_and_logits_copy_gives_them():
    model = _rgb_net("softmax", num_classes=4)
    ds = _rgb_data(num_classes=4, per_class=3)
    with pytest.raises(ValueError, match="ends in a softmax .* train tfool.classifier.logits_copy"):
        models.train(model, ds, models.TrainConfig(epochs=1, verbose=0))
    copy = classifier.logits_copy(model)
    assert classifier.final_softmax(copy) is None
    x = ds.x_train[:4]
    np.testing.assert_allclose(_softmax(copy.predict(x, verbose=0)), model.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-6)  # fmt: skip
    assert not any(a is b for a, b in zip(copy.weights, model.weights))  # independent


def test_the_from_logits_flag():
    from absl import flags as absl_flags

    from flags import backwork as backwork_flags

    for value, want in (("auto", None), ("true", True), ("false", False)):
        fv = absl_flags.FlagValues()
        backwork_flags.define_backwork_flags(fv)
        fv([__file__, f"--backwork_from_logits={value}"])
        assert backwork_flags.backwork_config(fv).from_logits is want
