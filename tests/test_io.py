"""Tests for tfool.io: atomic writes and their temporary names, JSON with NumPy values, CSV
quoting, permissions, names too long, the record of what is written (the output folder's
lock and manifest: tests/test_folders.py)."""

import csv
import json
import os
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tfool import io, models
from tfool.io import _folders


def _leftovers(folder):
    """Files in ``folder`` other than the expected outputs (temp files would show up here)."""
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def test_write_text_creates_parent_folders(tmp_path):
    path = tmp_path / "a" / "b" / "note.txt"
    assert io.write_text(path, "héllo\n") == path
    assert path.read_text(encoding="utf-8") == "héllo\n"
    assert _leftovers(path.parent) == []


def test_failing_writer_keeps_old_content_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "result.json"
    io.write_json(path, {"old": 1})
    before = path.read_bytes()

    def writer(tmp):
        tmp.write_text("half written", encoding="utf-8")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        io.write_with(path, writer)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_failing_writer_creates_nothing_when_no_old_file(tmp_path):
    path = tmp_path / "new.npz"
    with pytest.raises(KeyboardInterrupt):
        with io.atomic_path(path) as tmp:
            tmp.write_bytes(b"partial")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_temp_keeps_suffix_and_folder(tmp_path):
    path = tmp_path / "model.keras"
    with io.atomic_path(path) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.suffix == ".keras"
        assert tmp != path
        tmp.write_bytes(b"x")
        assert not path.exists()
    assert path.read_bytes() == b"x"


def test_write_json_numpy_values_round_trip(tmp_path):
    obj = {
        "int": np.int64(3),
        "float32": np.float32(0.25),
        "float64": np.float64(1.5),
        "bool": np.bool_(True),
        "array": np.arange(4, dtype=np.int32).reshape(2, 2),
        "path": tmp_path / "x.png",
        "nested": [{"acc": np.float32(0.5)}],
        np.int64(7): "numpy key",
    }
    path = io.write_json(tmp_path / "r.json", obj)
    back = io.read_json(path)
    assert back["int"] == 3 and isinstance(back["int"], int)
    assert back["float32"] == 0.25
    assert back["float64"] == 1.5
    assert back["bool"] is True
    assert back["array"] == [[0, 1], [2, 3]]
    assert back["path"] == str(tmp_path / "x.png")
    assert back["nested"] == [{"acc": 0.5}]
    assert back["7"] == "numpy key"


def test_write_json_rejects_unknown_objects_without_writing(tmp_path):
    path = tmp_path / "bad.json"
    with pytest.raises(TypeError, match="object"):
        io.write_json(path, {"x": object()})
    assert list(tmp_path.iterdir()) == []


def test_read_json_invalid_names_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="broken.json"):
        io.read_json(path)


def test_write_npz_round_trip(tmp_path):
    x = np.random.default_rng(0).random((3, 4)).astype(np.float32)
    path = io.write_npz(tmp_path / "arrays.npz", x=x, y=np.arange(3))
    with np.load(path) as f:
        np.testing.assert_array_equal(f["x"], x)
        np.testing.assert_array_equal(f["y"], np.arange(3))
    assert _leftovers(tmp_path) == []


def test_write_csv_quotes_awkward_cells(tmp_path):
    rows = [
        ["plain", 1, 0.123456789],
        ["a, b", np.float32(0.5), np.int64(2)],
        ['say "hi"', 2.0, True],
        ["two\nlines", -1e-9, None],
    ]
    path = io.write_csv(tmp_path / "t.csv", ["name", "value, units", "other"], rows)
    with open(path, newline="", encoding="utf-8") as fh:
        back = list(csv.reader(fh))
    assert back[0] == ["name", "value, units", "other"]
    assert [r[0] for r in back[1:]] == ["plain", "a, b", 'say "hi"', "two\nlines"]
    assert back[1][1:] == ["1", "0.123457"]
    assert back[2][1:] == ["0.5", "2"]
    assert back[3][1:] == ["2", "True"]
    assert float(back[4][1]) == pytest.approx(-1e-9)
    assert len(back) == 5


def test_save_figure_writes_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [1, 0])
    path = io.save_figure(fig, tmp_path / "fig.png")
    plt.close(fig)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "write",
    [
        lambda p: io.write_text(p / "a.txt", "x"),
        lambda p: io.write_json(p / "a.json", {"a": 1}),
        lambda p: io.write_npz(p / "a.npz", a=np.zeros(2)),
        lambda p: io.write_csv(p / "a.csv", ["a"], [[1]]),
    ],
)
def test_written_files_follow_the_umask_not_0600(tmp_path, write):
    old = os.umask(0o022)
    try:
        path = write(tmp_path)
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o644, oct(mode)


def test_json_file_is_plain_json(tmp_path):
    path = io.write_json(tmp_path / "r.json", {"a": [1, 2]})
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": [1, 2]}
    assert path.read_text(encoding="utf-8").endswith("\n")


def test_check_writable_folder_probes_without_creating(tmp_path):
    folder = io.check_writable_folder(tmp_path / "a" / "b", "out")
    assert folder == tmp_path / "a" / "b" and not folder.exists()  # nothing created
    assert list(tmp_path.iterdir()) == []  # the probe is gone
    io.check_writable_folder(tmp_path, "out")


@pytest.mark.parametrize("kind", ["empty", "file", "under_a_file"])
def test_check_writable_folder_names_what_is_wrong(tmp_path, kind):
    blocker = tmp_path / "f"
    blocker.write_text("x")
    path = {"empty": " ", "file": blocker, "under_a_file": blocker / "sub"}[kind]
    message = {
        "empty": "out is empty",
        "file": "existing file",
        "under_a_file": "is under",
    }
    with pytest.raises(ValueError, match=message[kind]):
        io.check_writable_folder(path, "out")


def _name_max(folder):
    return _folders._pathconf(Path(folder), "PC_NAME_MAX", 255)


@pytest.mark.parametrize(
    "make_name",
    [
        lambda limit: "m.keras",
        lambda limit: "a" * 20 + ".keras",
        lambda limit: "n" * (limit - 6) + ".keras",  # the longest legal name
        lambda limit: "x." + "s" * (limit - 2),  # the longest legal suffix
    ],
    ids=["short", "medium", "longest", "longest_suffix"],
)
def test_temporary_names_are_never_longer_than_the_final_name(tmp_path, monkeypatch, make_name):
    limit = _name_max(tmp_path)
    name = make_name(limit)
    seen = []
    real = tempfile.mkstemp

    def mkstemp(**kwargs):
        fd, tmp = real(**kwargs)
        seen.append(Path(tmp).name)
        return fd, tmp

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    path = io.write_text(tmp_path / name, "x")
    assert path.read_text() == "x" and len(path.name.encode()) <= limit
    (tmp,) = seen
    assert len(tmp.encode()) <= max(len(name.encode()), 32) and tmp.startswith(".tmp")
    if name.endswith(".keras"):
        assert Path(tmp).suffix == ".keras"  # writers that pick a format by extension
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_a_model_with_the_longest_legal_name_is_saved(tmp_path, small_cnn):
    name = "m" * (_name_max(tmp_path) - len(".keras")) + ".keras"
    path = models.save_model(small_cnn, tmp_path / name)
    assert models.load_model(path).count_params() == small_cnn.count_params()


def test_check_names_says_which_name_and_how_long(tmp_path):
    limit = _name_max(tmp_path)
    io.check_names(tmp_path / "new" / ("a" * limit), ["b" * limit], "--x")
    with pytest.raises(ValueError, match=rf"--x: the name 'aaa.*' is {limit + 1} bytes long"):
        io.check_names(tmp_path / ("a" * (limit + 1)) / "sub", [], "--x")
    with pytest.raises(ValueError, match=rf"more than the {limit} bytes"):
        io.check_names(tmp_path, ["b" * (limit + 1)], "--x")
    deep = tmp_path.joinpath(*["d" * 200] * 25)
    with pytest.raises(ValueError, match="--x=.*its paths would be .* bytes long"):
        io.check_names(deep, ["a.png"], "--x")
    assert list(tmp_path.iterdir()) == []  # nothing made


def test_recording_lists_every_file_written_through_io(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = tmp_path / "run"
    seen = []
    with io.recording(folder, on_write=lambda rec: seen.append(len(rec.files))) as rec:
        io.write_text(folder / "a.txt", "abc")
        io.write_json(folder / "sub" / "b.json", {"b": 1})
        io.write_npz(folder / "c.npz", c=np.zeros(3))
        io.write_csv(folder / "d.csv", ["d"], [[1]])
        fig = plt.figure()
        io.save_figure(fig, folder / "e.png")
        plt.close(fig)
        io.write_with(folder / "f.bin", lambda p: p.write_bytes(b"12345"))
        io.write_text(folder / "a.txt", "abcdef")  # again: keeps its place, new size
        io.write_text(tmp_path / "outside.txt", "not this folder's")
    io.write_text(folder / "later.txt", "after the block")
    assert list(rec.files) == ["a.txt", "sub/b.json", "c.npz", "d.csv", "e.png", "f.bin"]
    for rel, size in rec.files.items():
        assert size == (folder / rel).stat().st_size > 0
    assert rec.files["a.txt"] == 6 and seen == [1, 2, 3, 4, 5, 6, 6]
