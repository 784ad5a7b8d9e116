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
        r"pixels range over .*expected 0\.\.255",
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
