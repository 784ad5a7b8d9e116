"""Tests of tfool.imagenet: class names, images and keras.applications loading (never downloads)."""

import hashlib
import json
import time

import keras
import numpy as np
import pytest
from PIL import Image

from tfool import imagenet
from tfool.imagenet import _weights as imagenet_weights


@pytest.fixture(scope="module")
def mobilenet():
    keras.utils.set_random_seed(0)
    return imagenet.load_imagenet_model("mobilenet_v2", weights=None, input_size=32)


@pytest.fixture(scope="module")
def mobilenet_weights(mobilenet, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "mobilenet.weights.h5"
    mobilenet.model.save_weights(path)
    return path


@pytest.fixture()
def empty_keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(imagenet_weights, "cached_weights", lambda name: None)  # ignore /tmp/.keras
    return tmp_path / "keras_home"


# -- class names ------------------------------------------------------------------------


def test_class_index_file_is_keras_own():
    digest = hashlib.md5(imagenet.CLASS_INDEX_PATH.read_bytes()).hexdigest()
    assert digest == imagenet.KERAS_CLASS_INDEX_MD5
    names = imagenet.class_names()
    assert len(names) == 1000 and len(imagenet.class_wnids()) == 1000
    assert names[0] == "tench" and names[549] == "envelope" and names[999] == "toilet_tissue"
    assert len(set(imagenet.class_wnids())) == 1000


@pytest.mark.parametrize(
    "label, index",
    [
        (549, 549),
        (np.int64(7), 7),
        ("12", 12),
        ("envelope", 549),
        ("great_white_shark", 2),
        ("great white shark", 2),
        ("Great White Shark", 2),
        ("white shark", 2),  # a WordNet synonym
        ("n01484850", 2),  # a WordNet id
        ("Cardigan", 264),  # the dog, keras' exact spelling first ...
        ("cardigan", 474),  # ... the jacket
        ("Indian elephant", 385),
    ],
)
def test_class_index_lookup(label, index):
    assert imagenet.class_index(label) == index


@pytest.mark.parametrize(
    "label, match",
    [
        ("envelop", "close matches: envelope \\(549\\)"),
        ("shark", "great_white_shark \\(2\\), tiger_shark \\(3\\)"),
        ("crane", "shared by ImageNet classes 134 .*517"),
        ("qqqqqq", "is not an ImageNet class$"),
        (1000, "outside 0..999"),
        (-1, "outside 0..999"),
        (True, "outside|must be an index"),
        (2.5, "must be an index"),
    ],
)
def test_bad_class_labels(label, match):
    with pytest.raises(ValueError, match=match):
        imagenet.class_index(label)


def test_class_indices():
    assert imagenet.class_indices(["envelope", 3]) == (549, 3)
    assert imagenet.class_indices("envelope") == (549,)
    with pytest.raises(ValueError, match="labels is empty"):
        imagenet.class_indices([])


def test_decode_predictions():
    probs = np.full((2, 1000), 1e-4)
    probs[0, [5, 7, 9]] = [0.5, 0.3, 0.1]
    probs[1, 999] = 0.9
    top = imagenet.decode_predictions(probs, k=3)
    assert [p.index for p in top[0]] == [5, 7, 9]
    assert top[0][0].name == "electric_ray" and top[0][0].probability == pytest.approx(0.5)
    assert top[1][0] == imagenet.Prediction(999, "toilet_tissue", pytest.approx(0.9))
    with pytest.raises(ValueError, match="class names"):
        imagenet.decode_predictions(probs, names=["a", "b"])


# -- images -----------------------------------------------------------------------------


def test_grey_image():
    image = imagenet.grey_image((3, 5))
    assert image.shape == (3, 5, 3) and image.dtype == np.float32 and np.all(image == 128)
    with pytest.raises(ValueError, match="size="):
        imagenet.grey_image(0)


def test_load_image_resizes_to_rgb(tmp_path, rng):
    path = tmp_path / "grey.png"
    keras.utils.save_img(path, rng.integers(0, 256, (10, 12, 1)).astype(np.uint8))
    image = imagenet.load_image(path, (8, 6))
    assert image.shape == (8, 6, 3) and image.dtype == np.float32
    assert 0 <= image.min() and image.max() <= 255
    np.testing.assert_array_equal(image[..., 0], image[..., 2])  # grey -> RGB


def test_load_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        imagenet.load_image(tmp_path / "nope.jpg", 8)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG truncated")
    with pytest.raises(ValueError, match="bad.png.*not a readable PNG/JPEG"):
        imagenet.load_image(bad, 8)


# -- tfool's own networks ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name, size, module",
    [
        ("efficientnet_lite0", 224, "efficientnet_lite"),
        ("efficientnet_lite1", 240, "efficientnet_lite"),
        ("efficientnet_lite2", 260, "efficientnet_lite"),
        ("squeezenet1_1", 227, "squeezenet"),
    ],
)
def test_own_networks_are_registered(name, size, module):
    arch = imagenet.ARCHITECTURES[name]
    assert name in imagenet.MODEL_NAMES and arch.own is not None
    assert arch.input_size == size and arch.min_size == 32 and arch.package
    assert arch.own.preprocess.__module__ == f"tfool.{module}"
    assert arch.network is arch.own
    assert imagenet.keras_cache_paths(name)[0].name == arch.weights_file


def test_an_unknown_name_lists_the_new_ones():
    with pytest.raises(ValueError, match="did you mean squeezenet1_1.*'efficientnet_lite2'"):
        imagenet.load_imagenet_model("squeezenet", None)


# -- every Pillow mode ------------------------------------------------------------------

SIXTEEN = np.array([[0, 257, 32768, 65535], [1000, 20000, 40000, 60000]])


def _saved(tmp_path, name: str, image) -> str:
    path = tmp_path / name
    image.save(path)
    return path


def _rgb_of(path, size=(2, 4)) -> np.ndarray:
    image = imagenet.load_image(path, size)
    assert image.shape == (*size, 3) and image.dtype == np.float32
    return image


@pytest.mark.parametrize(
    "name, make",
    [
        ("i16.png", lambda: Image.fromarray(SIXTEEN.astype(np.uint16))),  # opens as I;16
        ("i16b.tif", lambda: Image.frombytes("I;16B", (4, 2), SIXTEEN.astype(">u2").tobytes())),
        ("i32.tif", lambda: Image.fromarray(SIXTEEN.astype(np.int32))),  # mode I
    ],
)
def test_16_bit_images_are_scaled_by_their_full_range(tmp_path, name, make):
    path = _saved(tmp_path, name, make())
    assert Image.open(path).mode in ("I;16", "I;16B", "I")
    image = _rgb_of(path)
    expected = np.round(SIXTEEN / 257.0)  # 0..65535 -> 0..255, not clipped at 255
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], expected)
    assert image[0, 2, 0] == 128 and (image < 255).sum() == 3 * 7  # not all white


def test_i_images_beyond_16_bits_and_f_images_are_refused(tmp_path):
    wide = _saved(tmp_path, "wide.tif", Image.fromarray(np.array([[-5, 70000]], np.int32)))
    with pytest.raises(ValueError) as err:
        imagenet.load_image(wide, 2)
    assert "wide.tif" in str(err.value) and "mode I " in str(err.value)
    assert "-5..70000, outside the 16-bit range" in str(err.value) and "\n" not in str(err.value)
    floats = _saved(tmp_path, "f.tif", Image.fromarray(np.ones((2, 2), np.float32)))
    assert Image.open(floats).mode == "F"
    with pytest.raises(ValueError, match=r"f.tif' has mode F \(32-bit floating point\)"):
        imagenet.load_image(floats, 2)


def _palette(transparent: bool):
    image = Image.fromarray(np.array([[0, 1, 1, 0], [1, 0, 0, 1]], np.uint8), "P")
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    if transparent:
        image.info["transparency"] = 0
    return image


@pytest.mark.parametrize("transparent", [False, True])
def test_palette_images_take_their_colours(tmp_path, transparent):
    path = _saved(tmp_path, "p.png", _palette(transparent))
    assert Image.open(path).mode == "P"
    image = _rgb_of(path)
    np.testing.assert_array_equal(image[0, 0], [255, 0, 0])  # the transparent red stays red
    np.testing.assert_array_equal(image[0, 1], [0, 0, 255])


@pytest.mark.parametrize(
    "name, make, pixel",
    [
        ("la.png", lambda: Image.new("LA", (4, 2), (100, 50)), [100, 100, 100]),  # alpha dropped
        ("rgba.png", lambda: Image.new("RGBA", (4, 2), (10, 20, 30, 0)), [10, 20, 30]),
        ("l.png", lambda: Image.new("L", (4, 2), 77), [77, 77, 77]),
        ("one.png", lambda: Image.new("1", (4, 2), 1), [255, 255, 255]),
        ("cmyk.jpg", lambda: Image.new("CMYK", (4, 2), (0, 0, 0, 0)), [255, 255, 255]),
    ],
)
def test_other_modes_become_rgb(tmp_path, name, make, pixel):
    path = _saved(tmp_path, name, make())
    image = _rgb_of(path)
    np.testing.assert_allclose(image[0, 0], pixel, atol=2)  # JPEG rounding


# -- models -----------------------------------------------------------------------------


def test_load_random_weights_returns_logits(mobilenet, rng):
    assert mobilenet.input_size == (32, 32) and mobilenet.image_shape == (32, 32, 3)
    assert mobilenet.name == "mobilenet_v2" and mobilenet.weights == "none"
    pixels = rng.uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    before = pixels.copy()
    logits = mobilenet.logits(pixels).numpy()
    probs = mobilenet.predict(pixels, batch_size=2)
    np.testing.assert_array_equal(pixels, before)  # preprocessing never edits in place
    assert logits.shape == probs.shape == (3, 1000)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probs, keras.ops.softmax(logits).numpy(), atol=1e-6)
    # the classifier itself has no softmax: its last layer is linear
    assert mobilenet.model.layers[-1].activation.__name__ == "linear"


def test_preprocess_matches_keras(mobilenet, rng):
    pixels = rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    expected = keras.applications.mobilenet_v2.preprocess_input(pixels.copy())
    np.testing.assert_allclose(mobilenet.preprocess(pixels).numpy(), expected, rtol=1e-6)


def test_weights_file_round_trip(mobilenet, mobilenet_weights, rng):
    loaded = imagenet.load_imagenet_model("mobilenet_v2", mobilenet_weights, input_size=32)
    assert loaded.weights == str(mobilenet_weights)
    pixels = rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(pixels), mobilenet.predict(pixels), atol=1e-6)


def small_softmax_classifier(softmax_layer: bool) -> keras.Model:
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    if softmax_layer:
        outputs = keras.layers.Softmax()(keras.layers.Dense(1000)(x))
    else:
        outputs = keras.layers.Dense(1000, activation="softmax")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("softmax_layer", [False, True])
def test_keras_file_with_softmax_becomes_logits(tmp_path, rng, softmax_layer):
    keras.utils.set_random_seed(1)
    soft = small_softmax_classifier(softmax_layer)
    path = tmp_path / "soft.keras"
    soft.save(path)
    loaded = imagenet.load_imagenet_model("resnet50", path)
    assert loaded.input_size == (16, 16) and loaded.weights == str(path)
    pixels = rng.uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    expected = soft(keras.applications.resnet50.preprocess_input(pixels.copy())).numpy()
    np.testing.assert_allclose(loaded.predict(pixels), expected, atol=1e-6)
    assert not np.allclose(loaded.logits(pixels).numpy().sum(axis=1), 1.0)


def test_keras_file_errors(tmp_path):
    small = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    path = tmp_path / "ten.keras"
    small.save(path)
    with pytest.raises(ValueError, match="10 outputs, expected 1000"):
        imagenet.load_imagenet_model("vgg16", path)
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="could not be loaded"):
        imagenet.load_imagenet_model("vgg16", corrupt)


def test_mismatched_weights_file(tmp_path):
    small = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    path = tmp_path / "small.weights.h5"
    small.save_weights(path)
    with pytest.raises(ValueError, match="small.weights.h5.*could not be loaded into mobilenet_v2"):
        imagenet.load_imagenet_model("mobilenet_v2", path, input_size=32)


def test_a_foreign_weights_file_is_refused_in_one_short_line(tmp_path, recwarn):
    other = imagenet.load_imagenet_model("mobilenet_v2", None, input_size=32)
    path = tmp_path / "mobilenet.weights.h5"
    other.model.save_weights(path)
    recwarn.clear()
    with pytest.raises(ValueError) as err:
        imagenet.load_imagenet_model("efficientnet_lite0", path, input_size=32)
    message = str(err.value)
    assert "could not be loaded into efficientnet_lite0" in message
    assert "\n" not in message and len(message) <= 300, message
    assert not [w for w in recwarn if "keras" in str(w.filename)]  # Keras' warnings silenced


def test_missing_imagenet_weights_fail_fast_offline(empty_keras_home):
    start = time.perf_counter()
    with pytest.raises(ConnectionError) as err:
        imagenet.load_imagenet_model("vgg16", "imagenet")
    elapsed = time.perf_counter() - start
    message = str(err.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels.h5" in message
    assert str(empty_keras_home) in message
    assert ".weights.h5" in message and ".keras" in message
    assert elapsed < 60  # a sanity bound, not a benchmark: the point is "never hangs"


def test_cached_weights_are_found(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert imagenet.keras_cache_paths("densenet121")[0].parent == tmp_path / "models"
    target = tmp_path / "models" / imagenet.ARCHITECTURES["densenet121"].weights_file
    target.parent.mkdir()
    target.write_bytes(b"")
    assert imagenet.cached_weights("densenet121") == target


@pytest.mark.parametrize(
    "args, error, match",
    [
        (("vgg61", None), ValueError, "did you mean .*vgg16"),
        (("vgg16", "imagenet", 64), ValueError, "ImageNet weights need \\(224, 224\\)"),
        (("inception_v3", None, 40), ValueError, "minimum side 75"),
        (("vgg16", None, 0), ValueError, "input_size=0"),
        (("vgg16", "/no/such/file.h5"), FileNotFoundError, "no such file"),
    ],
)
def test_bad_model_arguments(args, error, match):
    with pytest.raises(error, match=match):
        imagenet.load_imagenet_model(*args)


def test_bad_weights_suffix(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="must end in .h5, .weights.h5 or .keras"):
        imagenet.load_imagenet_model("vgg16", path)


def test_class_index_method(mobilenet):
    assert mobilenet.class_index("envelope") == 549
    with pytest.raises(ValueError, match="close matches"):
        mobilenet.class_index("envelop")


def test_from_keras_wraps_your_own_classifier(rng):
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(5)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    wrapped = imagenet.from_keras(model, "mine")
    assert wrapped.input_size == (8, 8) and wrapped.class_names == ("0", "1", "2", "3", "4")
    pixels = rng.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(wrapped.logits(pixels).numpy(), model(pixels).numpy(), rtol=1e-6)
    assert wrapped.class_index("3") == 3
    with pytest.raises(ValueError, match="not one of mine's classes"):
        wrapped.class_index("cat")
    with pytest.raises(ValueError, match="names has 2 entries"):
        imagenet.from_keras(model, "mine", names=["a", "b"])
    with pytest.raises(ValueError, match="preprocess=3"):
        imagenet.from_keras(model, "mine", preprocess=3)


def test_build_class_resources_reproduces_the_shipped_files(tmp_path):
    label_to_names = {
        str(i): ", ".join(imagenet.class_synonyms(i)) for i in range(imagenet.NUM_CLASSES)
    }
    wnids = {str(i): w for i, w in enumerate(imagenet.class_wnids())}
    (tmp_path / "names.json").write_text(json.dumps(label_to_names))
    (tmp_path / "wnids.json").write_text(json.dumps(wnids))
    index, synonyms = imagenet.build_class_resources(
        tmp_path / "names.json", tmp_path / "wnids.json", tmp_path / "out"
    )
    assert index.read_bytes() == imagenet.CLASS_INDEX_PATH.read_bytes()
    assert synonyms.read_bytes() == imagenet.SYNONYMS_PATH.read_bytes()
    wnids["0"] = "n00000000"
    (tmp_path / "wnids.json").write_text(json.dumps(wnids))
    with pytest.raises(ValueError, match="MD5"):
        imagenet.build_class_resources(tmp_path / "names.json", tmp_path / "wnids.json", tmp_path)


def test_load_image_names_a_folder_and_a_non_path(tmp_path):
    import io as stdio

    with pytest.raises(ValueError, match="is a folder; expected a PNG/JPEG file"):
        imagenet.load_image(tmp_path, 8)
    with pytest.raises(ValueError, match="image is a BytesIO; expected the path"):
        imagenet.load_image(stdio.BytesIO(b"data"), 8)
