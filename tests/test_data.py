"""Tests for tfool.data: IDX and npz files (good and damaged), the sample, auto fall-back."""

import gzip
import re
import socket

import numpy as np
import pytest

from tfool import data

N_TRAIN, N_TEST = 20, 10


# --------------------------------------------------------------------------- helpers


def _arrays(n_train=N_TRAIN, n_test=N_TEST, seed=0):
    """Random uint8 MNIST-like arrays with every class present."""
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": (np.arange(n_train) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": (np.arange(n_test) % 10).astype(np.uint8),
    }


def _idx_bytes(array):
    """The IDX encoding of a uint8 array: magic 0x0000080<ndim>, big-endian dims, bytes."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def _write_idx_dir(folder, arrays, gz=False):
    """Writes the four IDX files; returns {key: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, stem in data.IDX_NAMES.items():
        raw = _idx_bytes(arrays[key])
        path = folder / (stem + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(raw) if gz else raw)
        paths[key] = path
    return paths


def _write_npz(path, **arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def _check_good(ds, arrays, source):
    assert ds.source == source
    assert ds.name == "mnist"
    assert ds.class_names == data.MNIST_CLASS_NAMES
    for split in ("train", "test"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.shape == (len(arrays[f"y_{split}"]), 28, 28, 1)
        assert 0.0 <= x.min() and x.max() <= 1.0
        np.testing.assert_allclose(x[..., 0] * 255.0, arrays[f"x_{split}"], atol=1e-3)
        np.testing.assert_array_equal(y, arrays[f"y_{split}"])


@pytest.fixture()
def empty_keras_home(tmp_path, monkeypatch):
    """An empty KERAS_HOME, so the real keras cache is never used."""
    home = tmp_path / "keras_home"
    home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setenv("TFOOL_OFFLINE", "1")
    return home


@pytest.fixture()
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"tried to open a connection: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_idx_good_files_load(tmp_path, empty_keras_home, gz):
    arrays = _arrays()
    _write_idx_dir(tmp_path / "idx", arrays, gz=gz)
    ds = data.load_mnist(source="idx", data_dir=tmp_path / "idx")
    _check_good(ds, arrays, "idx")


def test_idx_dotted_names_are_found(tmp_path, empty_keras_home):
    # Some mirrors name the files train-images.idx3-ubyte etc.
    arrays = _arrays()
    for key, path in _write_idx_dir(tmp_path, arrays).items():
        path.rename(tmp_path / data.IDX_NAMES[key].replace("-idx", ".idx"))
    _check_good(data.load_mnist(source="idx", data_dir=tmp_path), arrays, "idx")


IDX_DAMAGE = {
    # name: (which file, function of the good arrays -> raw bytes, expected message)
    "wrong_magic": (
        "x_train",
        lambda a: b"\x00\x00\x09\x03" + _idx_bytes(a["x_train"])[4:],
        "magic",
    ),
    "magic_not_zero": ("y_test", lambda a: b"\x12\x34" + _idx_bytes(a["y_test"])[2:], "magic"),
    "shorter_than_magic": ("y_train", lambda a: b"\x00\x00", "truncated IDX file"),
    "truncated_header": ("x_test", lambda a: _idx_bytes(a["x_test"])[:10], "truncated IDX header"),
    "truncated_data": ("x_train", lambda a: _idx_bytes(a["x_train"])[:-5], "truncated IDX file"),
    "too_long": ("y_train", lambda a: _idx_bytes(a["y_train"]) + b"\x00", "too long"),
}


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("damage", sorted(IDX_DAMAGE))
def test_idx_damaged_file_is_value_error_naming_it(tmp_path, empty_keras_home, damage, gz):
    arrays = _arrays()
    paths = _write_idx_dir(tmp_path, arrays, gz=gz)
    key, make, problem = IDX_DAMAGE[damage]
    raw = make(arrays)
    paths[key].write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(ValueError, match=problem) as err:
        data.load_mnist(source="idx", data_dir=tmp_path)
    assert str(paths[key]) in str(err.value)
    # read_idx itself reports the same file.
    with pytest.raises(ValueError, match=re.escape(str(paths[key]))):
        data.read_idx(paths[key])


@pytest.mark.parametrize(
    "guilty, change, problem",
    [
        ("y_train", lambda a: a.update(y_train=a["y_train"][:-1]), "20 images but 19 labels"),
        ("x_test", lambda a: a.update(x_test=a["x_test"][:-2]), "8 images but 10 labels"),
        ("y_train", lambda a: a["y_train"].__setitem__(3, 10), r"0\.\.10, expected 0\.\.9"),
        ("x_train", lambda a: a.update(x_train=a["x_train"][:, :, :27]), r"\(20, 28, 27\)"),
        (
            "x_test",
            lambda a: a.update(x_test=a["x_test"].reshape(-1)),
            "holds labels .* where images",
        ),
        (
            "y_test",
            lambda a: a.update(y_test=a["y_test"].reshape(10, 1, 1)),
            "holds images .* where lab",
        ),
    ],
    ids=["count_train", "count_test", "label_10", "image_shape", "images_1d", "labels_3d"],
)
def test_idx_inconsistent_files_name_the_files(tmp_path, empty_keras_home, guilty, change, problem):
    arrays = _arrays()
    change(arrays)
    paths = _write_idx_dir(tmp_path, arrays, gz=True)
    with pytest.raises(ValueError, match=problem) as err:
        data.load_mnist(source="idx", data_dir=tmp_path)
    assert str(paths[guilty]) in str(err.value)


@pytest.mark.parametrize("content", [b"not gzip at all, just bytes", None], ids=["not_gzip", "cut"])
def test_idx_bad_gzip_is_value_error_naming_it(tmp_path, content):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    good = gzip.compress(_idx_bytes(np.arange(10, dtype=np.uint8)))
    path.write_bytes(content if content is not None else good[: len(good) // 2])
    with pytest.raises(ValueError, match=re.escape(str(path))):
        data.read_idx(path)


def test_idx_missing_one_file(tmp_path):
    paths = _write_idx_dir(tmp_path, _arrays())
    paths["y_test"].unlink()
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte"):
        data.load_mnist(source="idx", data_dir=tmp_path)


def test_idx_needs_a_data_dir_with_files(tmp_path):
    with pytest.raises(ValueError, match="needs data_dir"):
        data.load_mnist(source="idx")
    with pytest.raises(ValueError, match="no IDX files"):
        data.load_mnist(source="idx", data_dir=tmp_path)


# --------------------------------------------------------------------------- npz


@pytest.mark.parametrize("channel", [False, True], ids=["NHW", "NHWC"])
def test_npz_good_file_loads(tmp_path, empty_keras_home, channel):
    arrays = _arrays()
    stored = dict(arrays)
    if channel:
        stored = {k: (v[..., None] if k.startswith("x") else v) for k, v in arrays.items()}
    _write_npz(tmp_path / "mnist.npz", **stored)
    _check_good(data.load_mnist(source="npz", data_dir=tmp_path), arrays, "npz")
    # The path of the file itself works as data_dir too.
    _check_good(data.load_mnist(source="npz", data_dir=tmp_path / "mnist.npz"), arrays, "npz")


def test_npz_float_images_in_unit_range_are_kept(tmp_path, empty_keras_home):
    arrays = _arrays()
    floats = {
        k: (v / 255.0 if k.startswith("x") else v.astype(np.int64)) for k, v in arrays.items()
    }
    _write_npz(tmp_path / "mnist.npz", **floats)
    _check_good(data.load_mnist(source="npz", data_dir=tmp_path), arrays, "npz")


def _drop(key):
    def change(a):
        del a[key]

    return change


NPZ_DAMAGE = {
    "missing_y_test": (_drop("y_test"), r"missing arrays \['y_test'\]"),
    "missing_two": (lambda a: (_drop("x_train")(a), _drop("x_test")(a)), "missing arrays"),
    "count": (lambda a: a.update(y_train=a["y_train"][:15]), "20 images but 15 labels"),
    "label_negative": (
        lambda a: a.update(y_test=a["y_test"].astype(np.int64) - 1),
        r"range over -1\.\.8, expected 0\.\.9",
    ),
    "label_10": (lambda a: a["y_train"].__setitem__(0, 10), r"expected 0\.\.9"),
    "label_fraction": (lambda a: a.update(y_train=a["y_train"] + 0.5), "expected integers"),
    "rgb_images": (lambda a: a.update(x_train=np.stack([a["x_train"]] * 3, -1)), "shape"),
    "wrong_size": (lambda a: a.update(x_test=np.zeros((10, 32, 32), np.uint8)), r"\(10, 32, 32\)"),
    "labels_2d": (lambda a: a.update(y_train=a["y_train"][:, None]), "labels have shape"),
    "negative_pixels": (
        lambda a: a.update(x_train=a["x_train"] / 255.0 - 0.5),
        r"train pixels range over -0\.5\.\.0\.5 \(float64\), expected uint8 0\.\.255 or floats in",
    ),
}


@pytest.mark.parametrize("damage", sorted(NPZ_DAMAGE))
def test_npz_damaged_contents_are_value_error_naming_it(tmp_path, empty_keras_home, damage):
    arrays = _arrays()
    change, problem = NPZ_DAMAGE[damage]
    change(arrays)
    path = _write_npz(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(ValueError, match=problem) as err:
        data.load_mnist(source="npz", data_dir=tmp_path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "make",
    [
        lambda good: b"this is not a zip file" * 20,
        lambda good: good[: len(good) // 2],
        lambda good: good[:30],
        lambda good: b"",
    ],
    ids=["not_zip", "truncated_half", "truncated_header", "empty"],
)
def test_npz_unreadable_file_is_value_error_naming_it(tmp_path, empty_keras_home, make):
    good = _write_npz(tmp_path / "good.npz", **_arrays()).read_bytes()
    path = tmp_path / "data" / "mnist.npz"
    path.parent.mkdir()
    path.write_bytes(make(good))
    with pytest.raises(ValueError, match="not a readable .npz") as err:
        data.load_mnist(source="npz", data_dir=path.parent)
    assert str(path) in str(err.value)


def test_npz_of_pickled_objects_is_refused(tmp_path):
    arrays = _arrays()
    arrays["y_train"] = np.array([object()] * N_TRAIN)
    path = _write_npz(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        data.read_npz(path)


def test_npz_source_without_any_file(tmp_path, empty_keras_home):
    with pytest.raises(ValueError, match="no mnist.npz found"):
        data.load_mnist(source="npz", data_dir=tmp_path)
    with pytest.raises(ValueError, match="no mnist.npz found"):
        data.load_mnist(source="npz")


# --------------------------------------------------------------------------- sample


def test_sample_sizes_classes_and_format(mnist_sample):
    ds = mnist_sample
    assert ds.source == "sample" and ds.name == "mnist"
    assert ds.x_train.shape == (4000, 28, 28, 1) and ds.x_test.shape == (1000, 28, 28, 1)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert ds.x_train.max() == 1.0  # real digits have saturated pixels
    np.testing.assert_array_equal(np.bincount(ds.y_train), [400] * 10)
    np.testing.assert_array_equal(np.bincount(ds.y_test), [100] * 10)
    assert ds.num_classes == 10 and ds.image_shape == (28, 28, 1)
    assert ds.train_of_class(3).shape == (400, 28, 28, 1)


def test_sample_is_deterministic_and_splits_are_disjoint(mnist_sample):
    again = data.load_mnist(source="sample")
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(again, key), getattr(mnist_sample, key))
    train = {x.tobytes() for x in mnist_sample.x_train}
    test = {x.tobytes() for x in mnist_sample.x_test}
    assert len(train) == 4000 and len(test) == 1000
    assert not train & test


def test_dataset_is_frozen(mnist_sample):
    with pytest.raises(AttributeError):
        mnist_sample.source = "npz"


def test_fashion_mnist_has_no_sample(tmp_path, empty_keras_home):
    with pytest.raises(ValueError, match="only embedded for mnist"):
        data.load_fashion_mnist(source="sample")
    with pytest.raises(ValueError, match="fashion_mnist"):
        data.load_fashion_mnist(source="auto")  # offline, nothing local: no silent MNIST


def test_fashion_mnist_from_local_npz(tmp_path, empty_keras_home):
    arrays = _arrays()
    _write_npz(tmp_path / "fashion_mnist.npz", **arrays)
    ds = data.load_fashion_mnist(source="auto", data_dir=tmp_path)
    assert ds.name == "fashion_mnist" and ds.source == "npz"
    assert ds.class_names == data.FASHION_CLASS_NAMES
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])


def test_load_dataset_by_name(empty_keras_home):
    assert data.load_dataset("mnist", source="sample").x_train.shape[0] == 4000
    with pytest.raises(ValueError, match="dataset='cifar10'"):
        data.load_dataset("cifar10")


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="source='web'"):
        data.load_mnist(source="web")
    with pytest.raises(ValueError, match="does not exist"):
        data.load_mnist(source="auto", data_dir=tmp_path / "nowhere")


# --------------------------------------------------------------------------- auto


def test_auto_offline_falls_back_to_sample_without_network(empty_keras_home, no_network):
    ds = data.load_mnist(source="auto")
    assert ds.source == "sample" and ds.x_train.shape[0] == 4000


def test_keras_source_offline_is_connection_error(empty_keras_home, no_network):
    with pytest.raises(ConnectionError, match="source='sample'"):
        data.load_mnist(source="keras")


def test_network_check_is_bounded_and_offline_switch(monkeypatch):
    calls = []

    def fake(address, timeout=None):
        calls.append((address, timeout))
        raise OSError("unreachable")

    monkeypatch.setattr(socket, "create_connection", fake)
    monkeypatch.setenv("TFOOL_OFFLINE", "0")
    assert data.network_available() is False
    assert calls and all(t is not None and 0 < t <= 10 for _, t in calls)
    monkeypatch.setenv("TFOOL_OFFLINE", "1")
    calls.clear()
    assert data.network_available() is False
    assert calls == []


def test_auto_when_download_fails_uses_sample(empty_keras_home, monkeypatch):
    monkeypatch.setenv("TFOOL_OFFLINE", "0")
    monkeypatch.setattr(data, "network_available", lambda *a, **k: False)
    assert data.load_mnist(source="auto").source == "sample"


def test_auto_prefers_local_npz(tmp_path, empty_keras_home, no_network):
    arrays = _arrays()
    _write_npz(tmp_path / "mnist.npz", **arrays)
    _check_good(data.load_mnist(source="auto", data_dir=tmp_path), arrays, "npz")


def test_auto_accepts_npz_file_path(tmp_path, empty_keras_home, no_network):
    arrays = _arrays()
    path = _write_npz(tmp_path / "my_copy.npz", **arrays)
    _check_good(data.load_mnist(source="auto", data_dir=path), arrays, "npz")


def test_auto_uses_idx_dir(tmp_path, empty_keras_home, no_network):
    arrays = _arrays(seed=3)
    _write_idx_dir(tmp_path, arrays, gz=True)
    _check_good(data.load_mnist(source="auto", data_dir=tmp_path), arrays, "idx")


def test_auto_uses_keras_cache(tmp_path, empty_keras_home, no_network):
    arrays = _arrays(seed=4)
    _write_npz(empty_keras_home / "datasets" / "mnist.npz", **arrays)
    _check_good(data.load_mnist(source="auto"), arrays, "npz")
    # An empty data_dir still falls through to the cache.
    _check_good(data.load_mnist(source="auto", data_dir=tmp_path / "keras_home"), arrays, "npz")


def test_auto_does_not_hide_a_damaged_local_file(tmp_path, empty_keras_home, no_network):
    path = tmp_path / "mnist.npz"
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=re.escape(str(path))):
        data.load_mnist(source="auto", data_dir=tmp_path)


# --------------------------------------------------------------------------- build_sample_npz


def _write_csv_gz(path, per_class=5, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), per_class)
    rng.shuffle(labels)
    pixels = rng.integers(0, 256, (len(labels), 784))
    rows = np.concatenate([pixels, labels[:, None]], axis=1)
    with gzip.open(path, "wt") as fh:
        np.savetxt(fh, rows, fmt="%d", delimiter=",")
    return pixels.reshape(-1, 28, 28), labels


def test_build_sample_npz_round_trip(tmp_path, empty_keras_home):
    pixels, labels = _write_csv_gz(tmp_path / "mnist_5k.csv.gz")
    out = tmp_path / "sample.npz"
    data.build_sample_npz(tmp_path / "mnist_5k.csv.gz", out, seed=0)
    ds = data.load_mnist(source="npz", data_dir=out)
    np.testing.assert_array_equal(np.bincount(ds.y_train), [4] * 10)
    np.testing.assert_array_equal(np.bincount(ds.y_test), [1] * 10)
    # Every image comes from the CSV with its own label, each row exactly once.
    by_bytes = {p.astype(np.uint8).tobytes(): int(y) for p, y in zip(pixels, labels, strict=True)}
    seen = []
    for x, y in zip(
        np.concatenate([ds.x_train, ds.x_test]),
        np.concatenate([ds.y_train, ds.y_test]),
        strict=True,
    ):
        key = np.rint(x[..., 0] * 255).astype(np.uint8).tobytes()
        assert by_bytes[key] == y
        seen.append(key)
    assert len(set(seen)) == len(pixels)
    # Deterministic for a seed, different for another.
    out2 = tmp_path / "again.npz"
    data.build_sample_npz(tmp_path / "mnist_5k.csv.gz", out2, seed=0)
    with np.load(out) as a, np.load(out2) as b:
        for key in data.IDX_NAMES:
            np.testing.assert_array_equal(a[key], b[key])
    out3 = tmp_path / "other.npz"
    data.build_sample_npz(tmp_path / "mnist_5k.csv.gz", out3, seed=1)
    with np.load(out) as a, np.load(out3) as c:
        assert not np.array_equal(a["y_train"], c["y_train"])


def test_head_takes_the_first_rows_and_keeps_the_rest():
    ds = data.load_mnist(source="sample")
    small = ds.head(10, 3)
    assert small.x_train.shape == (10, 28, 28, 1) and small.x_test.shape == (3, 28, 28, 1)
    np.testing.assert_array_equal(small.y_train, ds.y_train[:10])
    np.testing.assert_array_equal(small.x_test, ds.x_test[:3])
    assert (small.class_names, small.source, small.name) == (ds.class_names, ds.source, ds.name)
    assert len(ds.head(5).x_test) == len(ds.x_test)  # None keeps every test image


def test_idx_labels_where_images_belong_are_named(tmp_path):
    arrays = _arrays()
    paths = _write_idx_dir(tmp_path, arrays)
    paths["x_test"].write_bytes(_idx_bytes(arrays["y_test"]))  # a labels file in its place
    with pytest.raises(ValueError, match="holds labels .* where images .* belong") as err:
        data.load_mnist(source="idx", data_dir=tmp_path)
    assert str(paths["x_test"]) in str(err.value)


# --------------------------------------------------------------------------- data of your own


def _own(n_train=6, n_test=3, shape=(8, 6), classes=3, seed=0):
    """Random uint8 arrays of any image shape, every class present in both splits."""
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "y_train": (np.arange(n_train) % classes).astype(np.int64),
        "x_test": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "y_test": (np.arange(n_test) % classes).astype(np.int64),
    }


@pytest.mark.parametrize("shape, image_shape", [((8, 6), (8, 6, 1)), ((8, 6, 3), (8, 6, 3))])
def test_from_arrays_any_shape_uint8_scaled(shape, image_shape):
    arrays = _own(shape=shape)
    ds = data.from_arrays(**arrays)
    assert (ds.source, ds.name, ds.image_shape) == ("arrays", "arrays", image_shape)
    assert ds.class_names == ("0", "1", "2")  # the largest label is 2
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    expected = arrays["x_train"].reshape(ds.x_train.shape).astype(np.float32) / 255.0
    np.testing.assert_array_equal(ds.x_train, expected)
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])


def test_from_arrays_integer_pixels_are_always_divided():
    # A uint8 image of 0s and 1s is dark, not white: integers are never read as [0, 1].
    arrays = _own()
    arrays["x_train"] = (arrays["x_train"] % 2).astype(np.uint8)
    assert data.from_arrays(**arrays).x_train.max() == pytest.approx(1 / 255)


def test_from_arrays_unit_floats_kept_and_names_given():
    arrays = _own()
    arrays = {
        k: v / 255.0 if k.startswith("x") else v.astype(np.float64) for k, v in arrays.items()
    }
    names = ("cat", "dog", "bird", "fish")  # more names than labels used is fine
    ds = data.from_arrays(**arrays, class_names=names, name="pets")
    assert ds.class_names == names and ds.name == "pets" and ds.num_classes == 4
    np.testing.assert_array_equal(ds.x_test[..., 0], arrays["x_test"].astype(np.float32))
    assert ds.y_train.dtype == np.int64  # whole float labels become integers


def _set(key, value):
    return lambda a: a.update({key: value(a) if callable(value) else value})


FROM_ARRAYS_ERRORS = {
    "float_1.001": (
        _set("x_train", lambda a: np.full((6, 8, 6), 1.001, np.float32)),
        r"from_arrays: train pixels range over 1\.001\.\.1\.001 \(float32\), "
        r"expected uint8 0\.\.255 or floats in \[0, 1\]",
    ),
    "float_0_255": (
        _set("x_test", lambda a: a["x_test"].astype(np.float64)),
        r"test pixels range over \d+\.0\.\.25\d\.0 \(float64\), expected uint8 0\.\.255",
    ),
    "int_300": (
        _set("x_train", lambda a: a["x_train"].astype(np.int16) + 100),
        r"train pixels range over \d+\.\.3\d\d \(int16\)",
    ),
    "int_negative": (
        _set("x_test", lambda a: a["x_test"].astype(np.int32) - 1),
        r"test pixels range over -1\.\.",
    ),
    "bool": (_set("x_train", lambda a: a["x_train"] > 100), "train pixels are bool, expected"),
    "nan": (
        _set("x_test", lambda a: np.full((3, 8, 6), np.nan)),
        "test pixels include NaN or infinity",
    ),
    "inf": (
        _set("x_train", lambda a: np.full((6, 8, 6), np.inf, np.float32)),
        "train pixels include NaN or infinity",
    ),
    "empty_test": (
        lambda a: a.update(x_test=a["x_test"][:0], y_test=a["y_test"][:0]),
        "^from_arrays: the test split is empty$",
    ),
    "empty_train": (
        lambda a: a.update(x_train=a["x_train"][:0], y_train=a["y_train"][:0]),
        "^from_arrays: the train split is empty$",
    ),
    "count": (_set("y_train", lambda a: a["y_train"][:4]), "6 images but 4 labels"),
    "fraction_label": (
        _set("y_test", lambda a: a["y_test"] + 0.5),
        "test labels are float64, expected integers",
    ),
    "negative_label": (
        _set("y_train", lambda a: a["y_train"] - 1),
        r"train labels range over -1\.\.1, expected class indices 0 or more",
    ),
    "one_class": (
        lambda a: a.update(y_train=a["y_train"] * 0, y_test=a["y_test"] * 0),
        "every label is 0, .*at least 2 classes",
    ),
    "shapes_differ": (
        _set("x_test", lambda a: np.zeros((3, 6, 6), np.uint8)),
        r"train images have shape \(8, 6, 1\) but test images have shape \(6, 6, 1\)",
    ),
    "five_dims": (
        _set("x_train", lambda a: a["x_train"][..., None, None]),
        r"train images have shape \(6, 8, 6, 1, 1\), expected \[N, H, W\] or \[N, H, W, C\]",
    ),
    "no_channels": (
        _set("x_test", lambda a: np.zeros((3, 8, 6, 0), np.uint8)),
        r"test images have shape \(3, 8, 6, 0\)",
    ),
}


@pytest.mark.parametrize("case", sorted(FROM_ARRAYS_ERRORS))
def test_from_arrays_refuses(case):
    arrays = _own()
    change, problem = FROM_ARRAYS_ERRORS[case]
    change(arrays)
    with pytest.raises(ValueError, match=problem):
        data.from_arrays(**arrays)


@pytest.mark.parametrize(
    "names, problem",
    [
        (("a", "b", "a"), "class_names has 'a' twice"),
        (("a", "", "c"), r"class_names\[1\]='' is empty"),
        ((1, 2, 3), r"class_names\[0\]=1 is not a string"),
        ("abc", "class_names='abc' is one string"),
        (("a", "b"), r"labels go up to 2 but class_names has 2 names \(classes 0\.\.1\)"),
        (("only",), r"class_names=\['only'\] has 1 name, expected at least 2"),
        ((), r"class_names=\[\] has 0 names, expected at least 2"),
    ],
    ids=["duplicate", "empty", "not_str", "one_string", "too_few", "single", "none"],
)
def test_from_arrays_checks_class_names(names, problem):
    with pytest.raises(ValueError, match=problem):
        data.from_arrays(**_own(), class_names=names)


def test_load_arrays_keeps_class_names_and_names_the_stem(tmp_path):
    arrays = _own(shape=(5, 7, 3))
    path = _write_npz(tmp_path / "my_pets.npz", **arrays, class_names=np.array(["a", "b", "c"]))
    ds = data.load_arrays(path)
    assert (ds.name, ds.source, ds.class_names) == ("my_pets", "arrays", ("a", "b", "c"))
    assert all(type(n) is str for n in ds.class_names)
    assert ds.image_shape == (5, 7, 3)
    np.testing.assert_array_equal(ds.x_test, arrays["x_test"].astype(np.float32) / 255.0)
    # Without class_names the names are the label numbers.
    plain = data.load_arrays(_write_npz(tmp_path / "plain.npz", **arrays))
    assert plain.class_names == ("0", "1", "2")


def test_load_arrays_lists_missing_keys_with_the_file(tmp_path):
    arrays = _own()
    del arrays["y_train"], arrays["x_test"]
    path = _write_npz(tmp_path / "half.npz", **arrays)
    with pytest.raises(ValueError, match=r"missing arrays \['y_train', 'x_test'\]") as err:
        data.load_arrays(path)
    assert str(err.value).startswith(f"{path}: ")


def _write_npy(path):
    with open(path, "wb") as fh:  # np.save(path) would add ".npy" to the name
        np.save(fh, np.zeros(3))


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda p: p.write_bytes(b"plain text, no zip"), r"\(not a zip archive\)"),
        (_write_npy, r"\(a single \.npy array\)"),
        (lambda p: None, r"\(does not exist\)"),
        (lambda p: p.mkdir(), r"\(is a folder\)"),
    ],
    ids=["not_zip", "npy", "missing", "folder"],
)
def test_load_arrays_unreadable_file_is_named(tmp_path, make, problem):
    path = tmp_path / "data.npz"
    make(path)
    with pytest.raises(ValueError, match=problem) as err:
        data.load_arrays(path)
    assert str(err.value).startswith(f"{path}: not a readable .npz file")


@pytest.mark.parametrize(
    "change, problem",
    [
        (
            _set("x_train", lambda a: np.full((6, 8, 6), 1.001)),
            r"train pixels range over 1\.001\.\.1\.001 \(float64\), expected uint8 0\.\.255 "
            r"or floats in \[0, 1\]",
        ),
        (
            _set("x_test", lambda a: a["x_test"].astype(np.float32)),
            r"test pixels range over .*\(float32\), expected uint8 0\.\.255",
        ),
        (
            lambda a: a.update(x_test=a["x_test"][:0], y_test=a["y_test"][:0]),
            "the test split is empty",
        ),
        (_set("class_names", np.arange(3)), "class_names is an array of int64"),
    ],
    ids=["float_1.001", "float_0_255", "empty_test", "numeric_names"],
)
def test_load_arrays_refuses_and_names_the_file(tmp_path, change, problem):
    arrays = _own()
    change(arrays)
    path = _write_npz(tmp_path / "own.npz", **arrays)
    with pytest.raises(ValueError, match=problem) as err:
        data.load_arrays(path)
    assert str(err.value).startswith(f"{path}: ")


# --------------------------------------------------------------------------- image folders


def _save(path, array, mode=None, **kwargs):
    """Writes one image file with Pillow; returns its path."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.asarray(array))
    if mode is not None:
        image = image.convert(mode)
    image.save(path, **kwargs)
    return path


def _grey_levels(root, reduce):
    """Loads a folder of 2x2 grey images, half of them for testing, and checks they load as
    one channel; returns every image's ``reduce`` (``"mean"`` or ``"max"``) on 0..255, sorted."""
    ds = data.load_image_folder(root, test_fraction=0.5)
    assert ds.image_shape == (2, 2, 1)
    images = np.concatenate([ds.x_train, ds.x_test])
    return sorted(round(float(v) * 255) for v in getattr(images, reduce)((1, 2, 3)))


def _grey_folder(root, per_class=5, size=(4, 3)):
    """Classes b and a (written in that order) of flat grey images, each a unique value."""
    values = {}
    for c, name in enumerate(["b", "a"]):
        for i in range(per_class):
            value = 10 * c * per_class + 10 * i + 5
            _save(root / name / f"img{i}.png", np.full(size, value, np.uint8))
            values[value] = name
    return values


def _by_value(ds, split):
    """{pixel value: class name} of a split of flat images."""
    x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
    return {int(round(img.max() * 255)): ds.class_names[label] for img, label in zip(x, y)}


def test_image_folder_grey_classes_split_and_values(tmp_path):
    values = _grey_folder(tmp_path / "shapes")
    ds = data.load_image_folder(tmp_path / "shapes")
    assert (ds.name, ds.source, ds.class_names) == ("shapes", "folder", ("a", "b"))
    assert ds.image_shape == (4, 3, 1) and ds.x_train.dtype == np.float32
    assert len(ds.x_train) == 8 and len(ds.x_test) == 2  # 20% of 5 per class
    np.testing.assert_array_equal(np.bincount(ds.y_test), [1, 1])
    train, test = _by_value(ds, "train"), _by_value(ds, "test")
    assert not train.keys() & test.keys()
    assert {**train, **test} == values  # every image once, with its folder's class
    for x in (ds.x_train, ds.x_test):  # flat images stay flat, exact values
        assert np.all(x == x[:, :1, :1])
    # Seeded: the same seed gives the same split, another seed another one.
    again = data.load_image_folder(tmp_path / "shapes", seed=0)
    np.testing.assert_array_equal(again.x_test, ds.x_test)
    other = data.load_image_folder(tmp_path / "shapes", seed=3)
    assert set(_by_value(other, "test")) != set(test)


def test_image_folder_test_fraction(tmp_path):
    _grey_folder(tmp_path / "f", per_class=4)
    ds = data.load_image_folder(tmp_path / "f", test_fraction=0.5)
    np.testing.assert_array_equal(np.bincount(ds.y_test), [2, 2])
    np.testing.assert_array_equal(np.bincount(ds.y_train), [2, 2])
    tiny = data.load_image_folder(tmp_path / "f", test_fraction=0.01)  # still one each
    np.testing.assert_array_equal(np.bincount(tiny.y_test), [1, 1])


def test_image_folder_keras_conventions(tmp_path):
    root = tmp_path / "conv"
    _save(root / "cat" / "x.PNG", np.full((3, 3), 50, np.uint8))  # any case
    _save(root / "cat" / "deeper" / "y.jpeg", np.full((3, 3), 100, np.uint8))  # nested
    (root / "cat" / "notes.txt").write_text("not an image")
    _save(root / "dog" / "z.bmp", np.full((3, 3), 150, np.uint8))
    _save(root / "dog" / "w.gif", np.full((3, 3), 200, np.uint8))
    _save(root / ".hidden" / "h.png", np.full((3, 3), 250, np.uint8))  # skipped
    _save(root / "loose.png", np.full((3, 3), 250, np.uint8))  # not in a class folder
    ds = data.load_image_folder(root)
    assert ds.class_names == ("cat", "dog")
    assert len(ds.x_train) + len(ds.x_test) == 4
    # The GIF is a palette image, so every image becomes RGB.
    assert ds.image_shape == (3, 3, 3)
    seen = {round(float(v) * 255) for v in np.concatenate([ds.x_train, ds.x_test]).max((1, 2, 3))}
    assert 250 not in seen and {50, 150, 200} <= seen


def test_image_folder_all_grey_modes_give_one_channel(tmp_path):
    root = tmp_path / "grey"
    _save(root / "a" / "l.png", np.full((2, 2), 51, np.uint8))
    _save(root / "a" / "one.png", np.full((2, 2), 255, np.uint8), mode="1")
    _save(root / "b" / "la.png", np.full((2, 2, 2), [102, 0], np.uint8))  # alpha 0 dropped
    _save(root / "b" / "l.jpg", np.full((2, 2), 204, np.uint8), quality=100)
    got = _grey_levels(root, "mean")
    assert got[:2] == [51, 102] and got[3] == 255 and abs(got[2] - 204) <= 2


def test_image_folder_16_bit_scaled_not_clipped(tmp_path):
    root = tmp_path / "deep"
    for i, value in enumerate([0, 1000, 32768, 65535]):
        _save(root / "ab"[i % 2] / f"{i}.png", np.full((2, 2), value, np.uint16))
    from PIL import Image

    with Image.open(root / "b" / "1.png") as written:
        assert written.mode == "I;16"
    got = _grey_levels(root, "max")
    assert got == [0, 4, 128, 255]  # 1000 * 255 / 65535 = 3.9, not clipped to 255


def test_image_folder_32_bit_grey_mode_i(tmp_path):
    # Pillow reads some 16-bit files as mode I (32-bit integers); the content decides
    # the format, so a TIFF named .png stands in for them.
    from PIL import Image

    root = tmp_path / "mode_i"
    for i, value in enumerate([0, 1000, 65535, 65535]):
        path = root / "ab"[i % 2] / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((2, 2), value, np.int32)).save(path, format="TIFF")
    with Image.open(root / "a" / "0.png") as written:
        assert written.mode == "I"
    got = _grey_levels(root, "max")
    assert got == [0, 4, 255, 255]
    bad = root / "b" / "1.png"
    Image.fromarray(np.full((2, 2), 70000, np.int32)).save(bad, format="TIFF")
    with pytest.raises(
        ValueError, match=r"I pixels range over 70000\.\.70000, expected 16-bit"
    ) as err:
        data.load_image_folder(root)
    assert str(err.value).startswith(f"{bad}: ")


def test_image_folder_colour_converts_every_image_to_rgb(tmp_path):
    from PIL import Image

    root = tmp_path / "colour"
    _save(root / "a" / "grey.png", np.full((2, 2), 60, np.uint8))
    _save(root / "a" / "rgb.png", np.full((2, 2, 3), [10, 20, 30], np.uint8))
    _save(root / "b" / "rgba.png", np.full((2, 2, 4), [40, 50, 60, 0], np.uint8))
    palette = Image.fromarray(np.ones((2, 2), np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # index 1 is red
    palette.save(root / "b" / "palette.png")
    with Image.open(root / "b" / "palette.png") as written:
        assert written.mode == "P"
    ds = data.load_image_folder(root, test_fraction=0.5)
    assert ds.image_shape == (2, 2, 3)
    pixels = {
        tuple(int(round(c * 255)) for c in img[0, 0])
        for img in np.concatenate([ds.x_train, ds.x_test])
    }
    assert pixels == {(60, 60, 60), (10, 20, 30), (40, 50, 60), (255, 0, 0)}


def test_image_folder_rgb_jpeg(tmp_path):
    root = tmp_path / "jpg"
    for name, colour in (("a", [200, 30, 30]), ("b", [30, 30, 200])):
        for i in range(2):
            _save(root / name / f"{i}.JPG", np.full((8, 8, 3), colour, np.uint8), quality=95)
    ds = data.load_image_folder(root, test_fraction=0.5)
    assert ds.image_shape == (8, 8, 3)
    red = ds.x_train[ds.y_train == 0].mean((0, 1, 2)) * 255
    np.testing.assert_allclose(red, [200, 30, 30], atol=6)


def test_image_folder_sizes_must_match_or_be_resized(tmp_path):
    root = tmp_path / "sizes"
    _save(root / "a" / "0.png", np.full((4, 6), 90, np.uint8))
    _save(root / "a" / "1.png", np.full((4, 6), 90, np.uint8))
    _save(root / "b" / "0.png", np.full((5, 3), 90, np.uint8))
    _save(root / "b" / "1.png", np.full((4, 6), 90, np.uint8))
    with pytest.raises(ValueError, match=r"pass image_size=\(H, W\)") as err:
        data.load_image_folder(root)
    message = str(err.value)
    assert f"{root / 'a' / '0.png'} is 4x6" in message
    assert f"{root / 'b' / '0.png'} is 5x3" in message
    ds = data.load_image_folder(root, image_size=(7, 2), test_fraction=0.5)
    assert ds.image_shape == (7, 2, 1)
    np.testing.assert_allclose(ds.x_train, 90 / 255, atol=1e-6)  # bilinear keeps flat images


def _folder_case(root, case):
    root.mkdir()
    if case == "no_subfolders":
        _save(root / "x.png", np.zeros((2, 2), np.uint8))
    elif case == "one_class":
        for i in range(2):
            _save(root / "only" / f"{i}.png", np.zeros((2, 2), np.uint8))
    elif case in ("no_images", "one_image", "unreadable"):
        for i in range(2):
            _save(root / "a" / f"{i}.png", np.zeros((2, 2), np.uint8))
        (root / "b").mkdir()
        (root / "b" / "readme.txt").write_text("no images here")
        if case != "no_images":
            _save(root / "b" / "0.png", np.zeros((2, 2), np.uint8))
        if case == "unreadable":
            (root / "b" / "1.png").write_bytes(b"not a png")
    return root


@pytest.mark.parametrize(
    "case, where, problem",
    [
        ("empty", "", "the folder is empty; expected a folder with one subfolder"),
        ("no_subfolders", "", "no class subfolders, only 1 file"),
        ("one_class", "", r"one class subfolder \('only'\); expected at least 2 classes"),
        ("no_images", "b", r"class 'b' has 0 images \(\.bmp, \.gif, \.jpeg, \.jpg, \.png"),
        ("one_image", "b", "class 'b' has 1 image .*each class needs at least 2"),
        ("unreadable", "b/1.png", "not a readable image"),
    ],
)
def test_image_folder_errors_name_the_folder(tmp_path, case, where, problem):
    root = _folder_case(tmp_path / "data", case)
    with pytest.raises(ValueError, match=problem) as err:
        data.load_image_folder(root)
    assert str(err.value).startswith(f"{root / where if where else root}: ")


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"image_size": (0, 5)}, r"image_size=\(0, 5\) is not \(height, width\)"),
        ({"image_size": (5,)}, r"image_size=\(5,\)"),
        ({"image_size": (5.0, 5)}, r"image_size=\(5\.0, 5\)"),
        ({"test_fraction": 0}, r"test_fraction=0 is not a fraction in \(0, 1\)"),
        ({"test_fraction": 1.0}, r"test_fraction=1\.0"),
        ({"seed": -1}, r"seed=-1 is not an integer >= 0"),
    ],
)
def test_image_folder_bad_arguments(tmp_path, kwargs, problem):
    _grey_folder(tmp_path)
    with pytest.raises(ValueError, match=problem):
        data.load_image_folder(tmp_path, **kwargs)


def test_image_folder_missing_or_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist; expected a folder"):
        data.load_image_folder(tmp_path / "nowhere")
    path = _save(tmp_path / "x.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: is a file"):
        data.load_image_folder(path)


# --------------------------------------------------------------------------- load_dataset


@pytest.mark.parametrize(
    "name, needed",
    [
        ("arrays", "the path of an .npz file"),
        ("folder", "the folder with one subfolder of images per class"),
    ],
)
@pytest.mark.parametrize("data_dir", [None, ""])
def test_load_dataset_own_data_needs_data_dir(name, needed, data_dir):
    with pytest.raises(ValueError) as err:
        data.load_dataset(name, data_dir=data_dir)
    assert str(err.value) == f"dataset={name!r} needs data_dir, {needed} (--data_dir)"


def test_load_dataset_own_data_ignores_source(tmp_path):
    path = _write_npz(tmp_path / "mine.npz", **_own())
    ds = data.load_dataset("arrays", source="idx", data_dir=str(path))
    assert (ds.name, ds.source) == ("mine", "arrays")
    root = tmp_path / "pics"
    _grey_folder(root)
    ds = data.load_dataset("folder", source="keras", data_dir=root, image_size=(2, 2))
    assert (ds.name, ds.source, ds.image_shape) == ("pics", "folder", (2, 2, 1))


def test_load_dataset_image_size_only_for_folder():
    with pytest.raises(ValueError, match="applies only to dataset='folder', not dataset='mnist'"):
        data.load_dataset("mnist", source="sample", image_size=(32, 32))
