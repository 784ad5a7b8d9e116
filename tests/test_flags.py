"""Tests for flags/common.py and flags/model.py on fresh FlagValues."""

import dataclasses
import re

import pytest
from absl import flags

from flags import common as common_flags
from flags import model as model_flags
from tfool import config as tfool_config
from tfool import models


def _fresh(**kwargs):
    """A fresh FlagValues with the common and model flags."""
    fv = flags.FlagValues()
    common_flags.define_common_flags(fv, **kwargs)
    model_flags.define_model_flags(fv)
    return fv


def _parse(argv, **kwargs):
    fv = _fresh(**kwargs)
    rest = fv(["prog", *argv])
    assert rest == ["prog"]
    return fv


def test_defaults():
    fv = _parse([])
    assert fv.output_dir == "out"
    assert fv.seed == 0
    assert fv.dataset == "mnist"
    assert fv.data_source == "auto"
    assert fv.data_dir is None
    assert fv.verbose == 1
    assert fv.model_path == "out/models/mnist_cnn.keras"
    assert fv.train_epochs == models.TrainConfig().epochs
    assert fv.batch_size == models.TrainConfig().batch_size
    assert fv.learning_rate == models.TrainConfig().learning_rate


def test_script_default_output_dir():
    assert _parse([], output_dir="out/fgsm").output_dir == "out/fgsm"


def test_every_flag_has_a_help_sentence():
    fv = _fresh()
    for name in fv:
        text = re.sub(r"^<[^>]*>: ", "", fv[name].help)  # enums list their choices first
        assert text and text[0].isupper() and text.rstrip().endswith("."), name


def test_values_parse():
    fv = _parse(
        [
            "--output_dir=/tmp/x",
            "--seed=7",
            "--dataset=fashion_mnist",
            "--data_source=npz",
            "--data_dir=/data",
            "--verbose=2",
            "--model_path=m/cnn.keras",
            "--train_epochs=3",
            "--batch_size=128",
            "--learning_rate=0.002",
        ]
    )
    assert (fv.output_dir, fv.seed, fv.dataset, fv.data_source) == (
        "/tmp/x",
        7,
        "fashion_mnist",
        "npz",
    )
    assert (fv.data_dir, fv.verbose, fv.model_path) == ("/data", 2, "m/cnn.keras")
    assert (fv.train_epochs, fv.batch_size, fv.learning_rate) == (3, 128, 0.002)


@pytest.mark.parametrize(
    "arg",
    [
        "--seed=-1",
        "--verbose=3",
        "--verbose=-1",
        "--train_epochs=0",
        "--batch_size=0",
        "--learning_rate=-0.1",
        "--learning_rate=0",
        "--learning_rate=nan",
        "--seed=abc",
    ],
)
def test_bounds(arg):
    with pytest.raises(flags.IllegalFlagValueError):
        _parse([arg])


@pytest.mark.parametrize(
    "arg, allowed",
    [("--data_source=web", "sample"), ("--dataset=cifar10", "fashion_mnist")],
)
def test_enum_errors_list_the_choices(arg, allowed):
    with pytest.raises(flags.IllegalFlagValueError, match=allowed):
        _parse([arg])


def test_idx_needs_data_dir():
    with pytest.raises(flags.IllegalFlagValueError, match="needs --data_dir"):
        _parse(["--data_source=idx"])
    with pytest.raises(flags.IllegalFlagValueError, match="needs --data_dir"):
        _parse(["--data_source=idx", "--data_dir="])
    assert _parse(["--data_source=idx", "--data_dir=/data"]).data_dir == "/data"
    assert _parse(["--data_source=npz"]).data_dir is None


@pytest.mark.parametrize("path", ["model", "model.keras/", "model.pt", ""])
def test_model_path_must_end_in_keras(path):
    with pytest.raises(flags.IllegalFlagValueError, match=r"\.keras"):
        _parse([f"--model_path={path}"])


@pytest.mark.parametrize("path", ["model.keras", "legacy.h5", "legacy.hdf5"])
def test_model_path_takes_keras_and_legacy_h5_files(path):
    assert _parse([f"--model_path={path}"]).model_path == path


def test_validators_never_touch_disk(tmp_path):
    # A data_dir or model_path that does not exist is fine at parse time.
    fv = _parse(
        [
            "--data_source=idx",
            f"--data_dir={tmp_path / 'missing'}",
            f"--model_path={tmp_path / 'missing' / 'cnn.keras'}",
        ]
    )
    assert fv.data_dir == str(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()


def test_common_config_is_frozen():
    fv = _parse(["--seed=3", "--data_source=sample", "--data_dir=", "--verbose=0"])
    config = common_flags.common_config(fv)
    assert config == tfool_config.CommonConfig(
        output_dir="out",
        seed=3,
        dataset="mnist",
        data_source="sample",
        data_dir=None,
        verbosity=0,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 4


@pytest.mark.parametrize("verbose, keras_verbose", [(0, 0), (1, 2), (2, 1)])
def test_train_config_is_frozen(verbose, keras_verbose):
    fv = _parse(
        [
            "--seed=5",
            f"--verbose={verbose}",
            "--train_epochs=2",
            "--batch_size=64",
            "--learning_rate=0.003",
        ]
    )
    config = model_flags.train_config(fv)
    assert config == models.TrainConfig(
        epochs=2, batch_size=64, learning_rate=0.003, seed=5, verbose=keras_verbose
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 1


def test_train_config_without_common_flags():
    fv = flags.FlagValues()
    model_flags.define_model_flags(fv)
    fv(["prog", "--train_epochs=4"])
    config = model_flags.train_config(fv)
    assert (config.epochs, config.seed) == (4, 0)


def test_flagfile_round_trip(tmp_path):
    argv = [
        f"--output_dir={tmp_path / 'run one'}",
        "--seed=11",
        "--dataset=fashion_mnist",
        "--data_source=idx",
        f"--data_dir={tmp_path / 'data'}",
        "--verbose=0",
        f"--model_path={tmp_path / 'cnn.keras'}",
        "--train_epochs=9",
        "--batch_size=32",
        "--learning_rate=0.00025",
        "--lr_schedule=constant",
    ]
    fv = _parse(argv)
    path = common_flags.write_flags_file(fv, fv.output_dir)
    assert path == str(tmp_path / "run one" / "flags.cfg")
    text = (tmp_path / "run one" / "flags.cfg").read_text(encoding="utf-8")
    assert "--seed=11" in text and "--learning_rate=0.00025" in text
    assert "--logtostderr" not in text and "--flagfile" not in text  # only our flags

    assert f"# --output_dir={tmp_path / 'run one'}" in text  # recorded, not replayed

    again = _parse([f"--flagfile={path}"])
    names = [name for name in fv if name not in ("flagfile", "undefok", "output_dir")]
    assert len(names) == 11
    for name in names:
        assert again[name].value == fv[name].value, name
    assert again.output_dir == "out"  # a replay never overwrites the run it replays
    moved = _parse([f"--flagfile={path}", f"--output_dir={tmp_path / 'run one'}"])
    assert common_flags.common_config(moved) == common_flags.common_config(fv)
    assert model_flags.train_config(again) == model_flags.train_config(fv)


def test_flagfile_then_override(tmp_path):
    fv = _parse(["--seed=2", "--train_epochs=3"])
    path = common_flags.write_flags_file(fv, str(tmp_path))
    again = _parse([f"--flagfile={path}", "--seed=4"])
    assert (again.seed, again.train_epochs) == (4, 3)


def test_flags_file_of_defaults_replays_to_defaults(tmp_path):
    fv = _parse([])
    path = common_flags.write_flags_file(fv, str(tmp_path))
    again = _parse([f"--flagfile={path}"])
    assert common_flags.common_config(again) == common_flags.common_config(fv)
    assert model_flags.train_config(again) == model_flags.train_config(fv)


@pytest.mark.parametrize(
    "dataset, needed",
    [("arrays", "the path of an .npz file"), ("folder", "the folder with one subfolder")],
)
def test_own_dataset_needs_data_dir(dataset, needed):
    with pytest.raises(
        flags.IllegalFlagValueError, match=f"--dataset={dataset} needs --data_dir, {needed}"
    ):
        _parse([f"--dataset={dataset}"])
    with pytest.raises(flags.IllegalFlagValueError, match="needs --data_dir"):
        _parse([f"--dataset={dataset}", "--data_dir="])
    fv = _parse([f"--dataset={dataset}", "--data_dir=/nowhere/mine"])  # never checks the disk
    config = common_flags.common_config(fv)
    assert (config.dataset, config.data_dir, config.image_size) == (dataset, "/nowhere/mine", None)


def test_dataset_help_says_what_own_data_needs():
    text = _fresh()["dataset"].help
    assert "arrays" in text and ".npz" in text and "folder" in text and "subfolder" in text


def test_data_image_size_for_folder():
    fv = _parse(["--dataset=folder", "--data_dir=/pics", "--data_image_size=32,24"])
    assert fv.data_image_size == ["32", "24"]
    assert common_flags.common_config(fv).image_size == (32, 24)
    empty = _parse(["--dataset=folder", "--data_dir=/pics", "--data_image_size="])
    assert common_flags.common_config(empty).image_size is None


@pytest.mark.parametrize("value", ["0,5", "5,-1", "32", "1,2,3", "a,b", "1.5,2"])
def test_data_image_size_must_be_two_positive_integers(value):
    with pytest.raises(flags.IllegalFlagValueError, match="HEIGHT,WIDTH: two integers >= 1"):
        _parse(["--dataset=folder", "--data_dir=/pics", f"--data_image_size={value}"])


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist", "arrays"])
def test_data_image_size_only_for_folder(dataset):
    with pytest.raises(flags.IllegalFlagValueError, match=f"not --dataset={dataset}"):
        _parse([f"--dataset={dataset}", "--data_dir=/d", "--data_image_size=8,8"])


def test_common_config_refuses_a_bad_image_size():
    fields = dict(output_dir="o", seed=0, dataset="folder", data_source="auto", data_dir="d")
    with pytest.raises(ValueError, match=r"image_size=\(0, 3\)"):
        tfool_config.CommonConfig(**fields, verbosity=1, image_size=(0, 3))


def test_flagfile_round_trip_of_a_folder_run(tmp_path):
    fv = _parse(["--dataset=folder", f"--data_dir={tmp_path}", "--data_image_size=16,12"])
    path = common_flags.write_flags_file(fv, str(tmp_path))
    assert "--data_image_size=16,12" in (tmp_path / "flags.cfg").read_text(encoding="utf-8")
    again = _parse([f"--flagfile={path}"])
    assert common_flags.common_config(again) == common_flags.common_config(fv)
    assert common_flags.common_config(again).image_size == (16, 12)
