"""Tests of flags/distribution.py and of the distribution flags in both run scripts."""

import dataclasses

import pytest
import tensorflow as tf
from absl import flags
from tiny_runs import parse_flags

import run_backwork
import run_fgsm
from flags import distribution as distribution_flags
from tfool import distribute, experiments


def _parse(*args):
    """Fresh distribution flags parsed from ``args``."""
    return parse_flags(distribution_flags.define_distribution_flags, *args)


def test_defaults_give_the_default_config():
    config = distribution_flags.distribution_config(_parse())
    assert config == distribute.DistributionConfig()
    assert (config.name, config.num_gpus, config.tpu_address) == ("auto", None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.name = "tpu"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--distribution_strategy=mirrored", "--num_gpus=2"], ("mirrored", 2, None)),
        (["--distribution_strategy=one_device", "--num_gpus=0"], ("one_device", 0, None)),
        (
            ["--distribution_strategy=tpu", "--tpu=grpc://10.0.0.2:8470"],
            ("tpu", None, "grpc://10.0.0.2:8470"),
        ),
        (["--tpu=my-tpu"], ("auto", None, "my-tpu")),
        (["--distribution_strategy=multi_worker_mirrored"], ("multi_worker_mirrored", None, None)),
        (["--distribution_strategy=off"], ("off", None, None)),
    ],
)
def test_values_reach_the_config(args, expected):
    config = distribution_flags.distribution_config(_parse(*args))
    assert (config.name, config.num_gpus, config.tpu_address) == expected


@pytest.mark.parametrize(
    "args",
    [
        ["--distribution_strategy=gpu"],
        ["--num_gpus=-1"],
        ["--distribution_strategy=off", "--num_gpus=1"],
        ["--distribution_strategy=tpu", "--num_gpus=2"],
        ["--distribution_strategy=one_device", "--num_gpus=2"],
        ["--distribution_strategy=mirrored", "--tpu=my-tpu"],
    ],
)
def test_bad_values_are_rejected_at_parse_time(args):
    with pytest.raises(flags.IllegalFlagValueError):
        _parse(*args)


def test_the_enum_lists_every_strategy_name():
    fv = _parse()
    assert fv["distribution_strategy"].parser.enum_values == list(distribute.STRATEGY_NAMES)


def _run_backwork_flags(monkeypatch) -> flags.FlagValues:
    """The flags run_backwork.run() defines, on a fresh FlagValues (run() itself not run)."""
    fv = flags.FlagValues()
    for module in (
        run_backwork.common_flags,
        run_backwork.model_flags,
        run_backwork.distribution_flags,
        run_backwork.backwork_flags,
    ):
        name = next(n for n in vars(module) if n.startswith("define_") and n.endswith("_flags"))
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _o=original, **k: _o(fv, **k))
    monkeypatch.setattr(run_backwork.app, "run", lambda main: None)
    run_backwork.run()
    return fv


@pytest.mark.parametrize("script", ["run_fgsm", "run_backwork"])
def test_both_run_scripts_define_the_distribution_flags(script, monkeypatch):
    if script == "run_fgsm":
        fv = flags.FlagValues()
        run_fgsm.define_flags(fv)
    else:
        fv = _run_backwork_flags(monkeypatch)
    fv(["prog", "--distribution_strategy=mirrored", "--num_gpus=0"])
    config = distribution_flags.distribution_config(fv)
    assert (config.name, config.num_gpus) == ("mirrored", 0)
    names = {f.name for f in fv.flags_by_module_dict()["flags.distribution"]}
    assert names == {"distribution_strategy", "num_gpus", "tpu"}


def test_run_fgsm_passes_the_strategy_to_training_and_attacks(tmp_path, monkeypatch):
    seen = {}
    real_train, real_sweep = run_fgsm.models.get_or_train, experiments.attacks.sweep

    def get_or_train(path, data, config, strategy=None, **kwargs):
        seen["train"] = strategy
        tiny = dict(conv_filters=(4,), fc_units=8)
        return real_train(path, data, config, strategy, build_kwargs=tiny)

    def sweep(*args, strategy=None, **kwargs):
        seen["sweep"] = strategy
        return real_sweep(*args, strategy=strategy, **kwargs)

    monkeypatch.setattr(run_fgsm.models, "get_or_train", get_or_train)
    monkeypatch.setattr(experiments.attacks, "sweep", sweep)
    out = tmp_path / "fgsm"
    fv = flags.FlagValues()
    run_fgsm.define_flags(fv)
    fv(
        [
            "run_fgsm",
            f"--output_dir={out}",
            f"--model_path={tmp_path / 'cnn.keras'}",
            "--data_source=sample",
            "--train_epochs=1",
            "--fgsm_methods=fgsm",
            "--fgsm_num_images=20",
            "--fgsm_eps=0,0.2",
            "--fgsm_num_examples=1",
            "--verbose=0",
            "--distribution_strategy=one_device",
            "--num_gpus=0",
        ]
    )
    run_fgsm.main(["run_fgsm"], fv)
    assert isinstance(seen["train"], tf.distribute.OneDeviceStrategy)
    assert seen["sweep"] is seen["train"]
    assert (out / "robustness.json").exists()
    assert "--distribution_strategy=one_device" in (out / "fgsm_flags.cfg").read_text()
