"""Tests for tfool.models: the reference CNN, activation_model, training, saving, the cache."""

import dataclasses
import math
import re
import zipfile

import keras
import numpy as np
import pytest

from tfool import classifier, data, models

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def reference_cnn():
    """The default (untrained, seeded) reference CNN."""
    return models.build_mnist_cnn(seed=0)


@pytest.fixture(scope="module")
def tiny_data(mnist_sample):
    """500 training and 200 test images of the sample."""
    ds = mnist_sample
    return dataclasses.replace(
        ds, x_train=ds.x_train[:500], y_train=ds.y_train[:500], x_test=ds.x_test[:200],
        y_test=ds.y_test[:200],
    )  # fmt: skip


TINY_BUILD = {"conv_filters": (4, 8), "fc_units": 16}
ONE_EPOCH = models.TrainConfig(epochs=1, batch_size=50, learning_rate=3e-3, verbose=0)


def _dense_net(from_logits=True):
    """A small non-MNIST classifier: 6 features -> 'hidden' (tanh) -> 'scores' (3 classes)."""
    inputs = keras.Input((6,), name="features")
    hidden = keras.layers.Dense(5, activation="tanh", name="hidden")(inputs)
    scores = keras.layers.Dense(3, activation=None if from_logits else "softmax", name="scores")(
        hidden
    )
    return keras.Model(inputs, scores, name="dense_net")


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _weights(model):
    return [np.array(w) for w in model.get_weights()]


# --------------------------------------------------------------------------- build_mnist_cnn


def test_reference_cnn_layer_shapes(reference_cnn, mnist_sample):
    act = classifier.activation_model(reference_cnn)
    assert act.layer_names == models.MNIST_LAYERS
    out = act(mnist_sample.x_test[:4])
    assert list(out) == list(models.MNIST_LAYERS)
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    assert shapes == {
        "inputs": (4, 28, 28, 1),
        "conv0": (4, 14, 14, 32),
        "conv1": (4, 7, 7, 64),
        "fc": (4, 1024),
        "softmax": (4, 10),
    }
    np.testing.assert_allclose(np.asarray(out["inputs"]), mnist_sample.x_test[:4])


def test_reference_cnn_topology_and_initialisation(reference_cnn):
    kernels = {
        layer.name: tuple(layer.kernel.shape)
        for layer in reference_cnn.layers
        if hasattr(layer, "kernel")
    }
    assert kernels == {
        "conv0_conv": (5, 5, 1, 32),
        "conv1_conv": (5, 5, 32, 64),
        "fc": (7 * 7 * 64, 1024),
        "logits": (1024, 10),
    }
    for name in kernels:
        layer = reference_cnn.get_layer(name)
        k, b = np.asarray(layer.kernel), np.asarray(layer.bias)
        assert np.all(np.abs(k) <= 0.2 + 1e-6)  # truncated normal, stddev 0.1
        assert 0.05 < k.std() < 0.1
        np.testing.assert_allclose(b, 0.1)
    assert reference_cnn.count_params() == (
        (25 * 32 + 32) + (25 * 32 * 64 + 64) + (3136 * 1024 + 1024) + (1024 * 10 + 10)
    )


def test_reference_cnn_seed_is_deterministic():
    a = models.build_mnist_cnn(**TINY_BUILD, seed=3)
    b = models.build_mnist_cnn(**TINY_BUILD, seed=3)
    c = models.build_mnist_cnn(**TINY_BUILD, seed=4)
    for wa, wb in zip(_weights(a), _weights(b), strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(_weights(a)[0], _weights(c)[0])


def test_fc_is_before_relu_and_feeds_the_logits(small_cnn, mnist_sample):
    x = mnist_sample.x_test[:16]
    out = classifier.activation_model(small_cnn)(x)
    fc = np.asarray(out["fc"])
    assert fc.min() < 0 < fc.max()
    logits_layer = small_cnn.get_layer("logits")
    logits = np.maximum(fc, 0) @ np.asarray(logits_layer.kernel) + np.asarray(logits_layer.bias)
    np.testing.assert_allclose(logits, small_cnn.predict(x, verbose=0), rtol=1e-4, atol=1e-4)
    probs = np.asarray(out["softmax"])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert probs.min() >= 0
    np.testing.assert_allclose(probs, _softmax(logits), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, bad",
    [
        ({"conv_filters": ()}, "conv_filters"),
        ({"conv_filters": (8, 0)}, "conv_filters"),
        ({"kernel_size": 0}, "kernel_size=0"),
        ({"fc_units": 0}, "fc_units=0"),
        ({"num_classes": 1}, "num_classes=1"),
    ],
)
def test_build_mnist_cnn_rejects_bad_arguments(kwargs, bad):
    with pytest.raises(ValueError, match=re.escape(bad)):
        models.build_mnist_cnn(**kwargs)


def test_build_mnist_cnn_other_shapes():
    model = models.build_mnist_cnn(conv_filters=(4, 4, 4), fc_units=8, num_classes=5,
                                   input_shape=(32, 32, 3))  # fmt: skip
    act = classifier.activation_model(model)
    assert act.layer_names == ("inputs", "conv0", "conv1", "conv2", "fc", "softmax")
    out = act(np.zeros((1, 32, 32, 3), np.float32))
    assert tuple(out["conv2"].shape) == (1, 4, 4, 4)
    assert tuple(out["softmax"].shape) == (1, 5)


# --------------------------------------------------------------------------- activation_model


def test_activation_model_on_a_small_dense_net_from_logits():
    net = _dense_net(from_logits=True)
    x = np.random.default_rng(0).normal(size=(7, 6)).astype(np.float32)
    act = classifier.activation_model(net, ["features", "hidden", "scores"], from_logits=True)
    out = act(x)
    assert list(out) == ["features", "hidden", "scores"]
    assert tuple(out["hidden"].shape) == (7, 5)
    np.testing.assert_allclose(np.asarray(out["features"]), x)
    hidden = np.asarray(out["hidden"])
    assert np.all(np.abs(hidden) < 1)  # tanh
    probs = np.asarray(out["scores"])
    np.testing.assert_allclose(probs, _softmax(net.predict(x, verbose=0)), rtol=1e-5, atol=1e-6)


def test_activation_model_on_a_net_that_outputs_probabilities():
    net = _dense_net(from_logits=False)
    x = np.random.default_rng(1).normal(size=(5, 6)).astype(np.float32)
    # The last name need not be a layer: then it is the model's output.
    act = classifier.activation_model(net, ["hidden", "probabilities"], from_logits=False)
    out = act(x)
    assert list(out) == ["hidden", "probabilities"]
    np.testing.assert_allclose(np.asarray(out["probabilities"]), net.predict(x, verbose=0),
                               rtol=1e-6)  # fmt: skip
    np.testing.assert_allclose(np.asarray(out["probabilities"]).sum(axis=1), 1.0, rtol=1e-5)


def test_activation_model_on_a_sequential_net():
    net = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, name="d0"), keras.layers.Dense(2, name="d1")],
        name="seq",
    )
    x = np.ones((2, 4), np.float32)
    out = classifier.activation_model(net, ["d0", "d1"])(x)
    assert tuple(out["d0"].shape) == (2, 3)
    np.testing.assert_allclose(np.asarray(out["d1"]), _softmax(net.predict(x, verbose=0)),
                               rtol=1e-5)  # fmt: skip


def test_activation_model_never_mutates_the_model(small_cnn, mnist_sample):
    net = _dense_net()
    net.get_layer("hidden").trainable = False
    x = mnist_sample.x_test[:8]
    for model, names in ((small_cnn, None), (net, ["hidden", "scores"])):
        before_w = _weights(model)
        before_flags = [(layer.name, layer.trainable) for layer in model.layers]
        before_trainable = len(model.trainable_weights)
        before_outputs = [tuple(t.shape) for t in model.outputs]
        act = classifier.activation_model(model, names)
        if model is small_cnn:
            before_pred = model.predict(x, verbose=0)
            act.predict(x, verbose=0)
            np.testing.assert_array_equal(model.predict(x, verbose=0), before_pred)
        for a, b in zip(_weights(model), before_w, strict=True):
            np.testing.assert_array_equal(a, b)
        assert [(layer.name, layer.trainable) for layer in model.layers] == before_flags
        assert len(model.trainable_weights) == before_trainable
        assert [tuple(t.shape) for t in model.outputs] == before_outputs
        # The activation model shares (does not copy) the weights.
        shared = {id(v) for v in model.weights}
        assert {id(v) for v in act.weights} <= shared


@pytest.mark.parametrize(
    "names, message",
    [
        (["nope", "scores"], "layer 'nope' is not in model 'dense_net'"),
        ([], "layer_names is empty"),
        (["hidden", "hidden", "scores"], "duplicates"),
    ],
)
def test_activation_model_bad_layer_names(names, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        classifier.activation_model(_dense_net(), names)


def test_activation_model_default_names_follow_the_rule_for_any_model():
    act = classifier.activation_model(_dense_net())
    assert act.layer_names == ("features", "hidden", "probabilities")


# --------------------------------------------------------------------------- train / evaluate


def test_train_result_and_accuracy(small_cnn, small_data):
    acc = models.evaluate(small_cnn, small_data.x_test, small_data.y_test)
    assert acc == pytest.approx(small_cnn.test_accuracy)
    assert acc > 0.5  # learned something (chance is 0.1)
    preds = models.predict_classes(small_cnn, small_data.x_test[:10])
    assert preds.shape == (10,) and preds.dtype.kind == "i"


def test_evaluate_rejects_bad_input(small_cnn):
    with pytest.raises(ValueError, match="3 images but y has 2"):
        models.evaluate(small_cnn, np.zeros((3, 28, 28, 1)), np.zeros(2))
    with pytest.raises(ValueError, match="empty"):
        models.evaluate(small_cnn, np.zeros((0, 28, 28, 1)), np.zeros(0))


@pytest.mark.parametrize(
    "kwargs, bad",
    [
        ({"epochs": 0}, "epochs=0"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"learning_rate": 0.0}, "learning_rate=0.0"),
        ({"learning_rate": -1e-3}, "learning_rate=-0.001"),
        ({"learning_rate": math.nan}, "learning_rate=nan"),
        ({"learning_rate": math.inf}, "learning_rate=inf"),
    ],
)
def test_train_config_validation(kwargs, bad):
    with pytest.raises(ValueError, match=re.escape(bad)):
        models.TrainConfig(**kwargs)


def test_train_config_is_frozen():
    config = models.TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3
    assert config.epochs_for(60000) >= 1 and config.batch_size >= 1 and config.learning_rate > 0


# --------------------------------------------------------------------------- save / load


def test_save_load_round_trip(small_cnn, small_data, tmp_path):
    path = tmp_path / "models" / "cnn.keras"
    assert models.save_model(small_cnn, path) == path
    assert [p.name for p in path.parent.iterdir()] == ["cnn.keras"]  # no temp file left
    loaded = models.load_model(path)
    x = small_data.x_test[:50]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), small_cnn.predict(x, verbose=0))
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in small_cnn.layers]
    act = classifier.activation_model(loaded)  # the names survive saving
    assert act.layer_names == models.MNIST_LAYERS


def test_save_to_a_non_keras_path_is_an_error(small_cnn, tmp_path):
    for name in ("cnn.h5", "cnn", "cnn.keras.tmp"):
        with pytest.raises(ValueError, match="must end in .keras"):
            models.save_model(small_cnn, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def _truncated_zip(good: bytes) -> bytes:
    return good[: len(good) // 2]


def _not_a_model(good: bytes) -> bytes:
    import io as stdio

    buf = stdio.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", "not a keras model")
    return buf.getvalue()


def _bad_weights(good: bytes) -> bytes:
    import io as stdio

    buf = stdio.BytesIO()
    with zipfile.ZipFile(stdio.BytesIO(good)) as zin, zipfile.ZipFile(buf, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, b"junk" if name.endswith(".h5") else zin.read(name))
    return buf.getvalue()


CORRUPTIONS = {
    "random_bytes": lambda good: np.random.default_rng(0).bytes(4096),
    "empty": lambda good: b"",
    "truncated_zip": _truncated_zip,
    "zip_not_a_model": _not_a_model,
    "bad_weights": _bad_weights,
}


@pytest.fixture(scope="module")
def saved_tiny_bytes(tmp_path_factory):
    """The bytes of a saved tiny CNN (to corrupt)."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.keras"
    models.save_model(models.build_mnist_cnn(**TINY_BUILD, seed=0), path)
    return path.read_bytes()


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_load_of_a_corrupt_file_is_value_error_naming_it(tmp_path, saved_tiny_bytes, corruption):
    path = tmp_path / "cnn.keras"
    path.write_bytes(CORRUPTIONS[corruption](saved_tiny_bytes))
    with pytest.raises(ValueError, match=re.escape(str(path))):
        models.load_model(path)


def test_load_of_a_missing_or_misnamed_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        models.load_model(tmp_path / "missing.keras")
    (tmp_path / "model.h5").write_bytes(b"x")
    with pytest.raises(ValueError, match="not an HDF5 model file"):
        models.load_model(tmp_path / "model.h5")
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"must end in .keras \(the native Keras format\) or .h5"):
        models.load_model(tmp_path / "model.bin")
    saved = tmp_path / "exported"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ValueError, match=r"a TensorFlow SavedModel, .*model.save\('model.keras'\)"):
        models.load_model(saved)


def test_a_legacy_h5_model_is_loaded(small_cnn, tmp_path):
    path = tmp_path / "old.h5"
    small_cnn.save(path)  # Keras' legacy HDF5 writer
    loaded = models.load_model(path)
    x = np.random.default_rng(0).uniform(size=(2, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), small_cnn.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)  # fmt: skip


# --------------------------------------------------------------------------- get_or_train


def _no_training(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("get_or_train trained although a file was there")

    monkeypatch.setattr(models, "train", fail)


def test_get_or_train_trains_saves_then_loads(tmp_path, tiny_data, monkeypatch):
    path = tmp_path / "cache" / "mnist_cnn.keras"
    model, result = models.get_or_train(path, tiny_data, ONE_EPOCH, build_kwargs=TINY_BUILD)
    assert path.is_file()
    assert result is not None and result.epochs == 1 and 0 <= result.test_accuracy <= 1
    assert len(result.history["loss"]) == 1
    assert model.get_layer("conv0_conv").filters == 4
    _no_training(monkeypatch)
    again, again_result = models.get_or_train(path, tiny_data, ONE_EPOCH)
    assert again_result is None
    x = tiny_data.x_test[:20]
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("corruption", ["random_bytes", "zip_not_a_model", "truncated_zip"])
def test_get_or_train_refuses_a_corrupt_file(
    tmp_path, tiny_data, saved_tiny_bytes, monkeypatch, corruption
):
    path = tmp_path / "mnist_cnn.keras"
    content = CORRUPTIONS[corruption](saved_tiny_bytes)
    path.write_bytes(content)
    _no_training(monkeypatch)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        models.get_or_train(path, tiny_data, ONE_EPOCH, build_kwargs=TINY_BUILD)
    assert path.read_bytes() == content
    assert [p.name for p in tmp_path.iterdir()] == ["mnist_cnn.keras"]


@pytest.mark.parametrize(
    "build, message",
    [
        ({"num_classes": 5}, "has 5 outputs, expected 10"),
        (
            {"input_shape": (32, 32, 1)},
            "images have shape (28, 28, 1) but model 'mnist_cnn' takes (32, 32, 1)",
        ),
    ],
)
def test_get_or_train_refuses_an_incompatible_model(
    tmp_path, tiny_data, monkeypatch, build, message
):
    path = tmp_path / "mnist_cnn.keras"
    models.save_model(models.build_mnist_cnn(**TINY_BUILD, **build, seed=0), path)
    content = path.read_bytes()
    _no_training(monkeypatch)
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        models.get_or_train(path, tiny_data, ONE_EPOCH)
    assert str(path) in str(err.value)
    assert path.read_bytes() == content


def test_get_or_train_rejects_a_non_keras_path(tmp_path, tiny_data, monkeypatch):
    _no_training(monkeypatch)
    with pytest.raises(ValueError, match="must end in .keras"):
        models.get_or_train(tmp_path / "model.h5", tiny_data, ONE_EPOCH)
    existing = tmp_path / "model.bin"
    existing.write_bytes(b"something else")
    with pytest.raises(ValueError, match="must end in .keras"):
        models.get_or_train(existing, tiny_data, ONE_EPOCH)
    assert existing.read_bytes() == b"something else"


def test_get_or_train_without_a_path_trains_for_the_data(tmp_path, tiny_data, monkeypatch):
    # Five classes only: the trained model has five logits, and nothing is written.
    monkeypatch.chdir(tmp_path)
    keep = tiny_data.y_train < 5
    ds = data.Dataset(
        tiny_data.x_train[keep], tiny_data.y_train[keep], tiny_data.x_test[:10],
        tiny_data.y_test[:10] % 5, tuple("abcde"), "sample", "five",
    )  # fmt: skip
    model, result = models.get_or_train(None, ds, ONE_EPOCH, build_kwargs=TINY_BUILD)
    assert result is not None and model.outputs[0].shape[-1] == 5
    assert list(tmp_path.iterdir()) == []


def test_get_or_train_refuses_a_folder(tmp_path, tiny_data, monkeypatch):
    folder = tmp_path / "mnist_cnn.keras"
    folder.mkdir()
    _no_training(monkeypatch)
    with pytest.raises(ValueError, match="is a folder"):
        models.get_or_train(folder, tiny_data, ONE_EPOCH)
    assert folder.is_dir()


def test_auto_epochs_follow_the_data_size():
    config = models.TrainConfig()
    assert config.epochs is None and config.schedule == "cosine"
    assert config.epochs_for(60000) == models.AUTO_EPOCHS[0]  # full MNIST: 1,200 steps an epoch
    assert config.epochs_for(4000) == models.AUTO_EPOCHS[1]  # the sample: 80 steps an epoch
    assert config.epochs_for(4000) * config.steps_per_epoch(4000) >= models.AUTO_STEPS
    assert models.TrainConfig(epochs=3).epochs_for(60000) == 3
    assert "4 epochs of batch 50" in config.describe(60000)
    with pytest.raises(ValueError, match="schedule='step' is not one of"):
        models.TrainConfig(schedule="step")


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_schedule_sets_the_learning_rate_over_the_run(small_data, schedule):
    keras.utils.set_random_seed(0)
    model = models.build_mnist_cnn(conv_filters=(4, 8), fc_units=16, seed=0)
    config = models.TrainConfig(epochs=2, learning_rate=2e-3, verbose=0, schedule=schedule)
    result = models.train(model, small_data, config)
    opt = model.optimizer
    steps = 2 * config.steps_per_epoch(len(small_data.x_train))
    assert int(opt.iterations.numpy()) == steps and result.epochs == 2
    last = float(np.asarray(opt.learning_rate))  # the rate at the end of the run
    if schedule == "cosine":
        assert last < 1e-6  # decayed to 0 over the run
    else:
        assert last == pytest.approx(2e-3)


# --------------------------------------------------------------------------- the data record


def _write_recorded(path, ds):
    """A tiny model saved with the record of ``ds``, as get_or_train leaves it."""
    from tfool import io

    models.save_model(models.build_mnist_cnn(**TINY_BUILD, seed=0), path)
    io.write_json(models.record_path(path), models.data_record(ds))


def test_a_trained_model_is_saved_with_the_record_of_its_data(tmp_path, tiny_data):
    path = tmp_path / "cnn.keras"
    _, result = models.get_or_train(path, tiny_data, ONE_EPOCH, build_kwargs=TINY_BUILD)
    from tfool import io

    record = io.read_json(models.record_path(path))
    assert record["dataset"] == "mnist" and record["image_shape"] == [28, 28, 1]
    assert record["class_names"] == list(tiny_data.class_names)
    assert record["test_accuracy"] == pytest.approx(result.test_accuracy)
    assert record["fingerprint"] == models.data_fingerprint(tiny_data)


def test_a_model_recorded_for_other_data_is_refused(tmp_path, tiny_data, monkeypatch):
    path = tmp_path / "cnn.keras"
    _write_recorded(path, tiny_data)
    clothes = dataclasses.replace(
        tiny_data, name="fashion_mnist", class_names=data.FASHION_CLASS_NAMES,
        x_train=1.0 - tiny_data.x_train,
    )  # fmt: skip
    _no_training(monkeypatch)
    with pytest.raises(ValueError, match=r"trained on other data: dataset 'mnist' \(the data: "):
        models.get_or_train(path, clothes, ONE_EPOCH)
    five = dataclasses.replace(tiny_data, class_names=tuple("abcdefghij"))
    with pytest.raises(ValueError, match="class_names"):
        models.get_or_train(path, five, ONE_EPOCH)
    # the same data under another name (a renamed .npz) is the same data
    renamed = dataclasses.replace(tiny_data, name="my_digits", source="arrays")
    model, trained = models.get_or_train(path, renamed, ONE_EPOCH)
    assert trained is None and model.name == "mnist_cnn"


def test_a_model_without_record_is_used_with_a_warning(tmp_path, tiny_data, caplog):
    path = tmp_path / "mine.keras"
    models.save_model(models.build_mnist_cnn(**TINY_BUILD, seed=0), path)
    with caplog.at_level("WARNING", logger="tfool.models"):
        model, trained = models.get_or_train(path, tiny_data, ONE_EPOCH)
    assert trained is None
    assert "comes without a record of its data" in caplog.text
    assert models.warn_if_chance(0.09, tiny_data, path)  # 10 classes: chance is 10%
    assert "near chance" in caplog.text
    assert not models.warn_if_chance(0.5, tiny_data, path)
