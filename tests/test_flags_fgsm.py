"""Tests of flags/fgsm.py: defaults, parsing into AttackExperimentConfig, and the validators."""

import dataclasses

import pytest
from absl import flags
from tiny_runs import parse_flags

from flags import fgsm as fgsm_flags
from tfool import attacks
from tfool.experiments import AttackExperimentConfig


def _parse(*args):
    """Fresh fgsm flags parsed from ``args``."""
    return parse_flags(fgsm_flags.define_fgsm_flags, *args)


def test_defaults_give_the_default_config():
    config = fgsm_flags.fgsm_config(_parse())
    assert config == AttackExperimentConfig()
    assert config.eps_values == (0.0, 0.01, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
    assert config.methods == ("fgsm", "normalized_gradient", "bim", "random")
    assert config.num_images is None and config.target_class is None
    assert _parse().fgsm_mode == "sweep"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.num_images = 3


def test_custom_values_reach_the_config():
    fv = _parse(
        "--fgsm_methods=bim,pgd,fgm_l2",
        "--fgsm_eps=0.3,0.1",
        "--fgsm_targeted",
        "--fgsm_target_class=7",
        "--fgsm_steps=12",
        "--fgsm_step_size=0.02",
        "--fgsm_num_images=100",
        "--fgsm_batch_size=64",
        "--fgsm_example_eps=0.05",
        "--fgsm_num_examples=3",
        "--fgsm_mode=attribute",
        "--fgsm_attribute_num_images=2",
        "--fgsm_attribute_methods=occlusion,saliency",
    )
    config = fgsm_flags.fgsm_config(fv)
    assert config.methods == ("bim", "pgd", "fgm_l2")
    assert config.eps_values == (0.3, 0.1)
    assert config.targeted and config.target_class == 7
    assert (config.steps, config.step_size) == (12, 0.02)
    assert (config.num_images, config.batch_size) == (100, 64)
    assert (config.example_eps, config.num_examples) == (0.05, 3)
    assert fv.fgsm_mode == "attribute" and config.attribute_num_images == 2
    assert config.attribute_methods == ("occlusion", "saliency")


def test_zero_steps_and_step_size_mean_automatic():
    config = fgsm_flags.fgsm_config(_parse("--fgsm_steps=0", "--fgsm_step_size=0"))
    assert config.steps is None and config.step_size is None


@pytest.mark.parametrize(
    "args",
    [
        ["--fgsm_mode=deepfool"],
        ["--fgsm_methods=fgsm,magic"],
        ["--fgsm_methods=fgsm,fgsm"],
        ["--fgsm_methods="],
        ["--fgsm_eps=0.1,abc"],
        ["--fgsm_eps=0.1,-0.2"],
        ["--fgsm_eps=nan"],
        ["--fgsm_eps="],
        ["--fgsm_target_class=3"],
        ["--fgsm_targeted", "--fgsm_target_class=-1"],
        ["--fgsm_steps=-1"],
        ["--fgsm_step_size=-0.1"],
        ["--fgsm_num_images=0"],
        ["--fgsm_batch_size=0"],
        ["--fgsm_example_eps=-1"],
        ["--fgsm_num_examples=0"],
        ["--fgsm_num_examples=51"],
        ["--fgsm_attribute_num_images=0"],
        ["--fgsm_attribute_methods=saliency,lime"],
        ["--fgsm_attribute_methods=saliency,saliency"],
        ["--fgsm_attribute_methods="],
    ],
)
def test_bad_values_are_rejected(args):
    with pytest.raises(flags.IllegalFlagValueError):
        _parse(*args)


def test_every_flag_is_prefixed_and_documented():
    fv = flags.FlagValues()
    fgsm_flags.define_fgsm_flags(fv)
    names = set(fv)
    assert names and all(name.startswith("fgsm_") for name in names)
    assert all(fv[name].help.endswith(".") for name in names)
    assert set(fgsm_flags.MODES) == set(fv["fgsm_mode"].parser.enum_values)
    assert set(AttackExperimentConfig().methods) <= set(attacks.METHODS)


@pytest.mark.parametrize(
    "arg, message",
    [
        ("--fgsm_example_eps=inf", "--fgsm_example_eps=inf"),
        ("--fgsm_step_size=nan", "--fgsm_step_size=nan"),
        ("--fgsm_num_examples=51", "--fgsm_num_examples=51 must be an integer in 1..50"),
        ("--fgsm_attribute_num_images=21", "--fgsm_attribute_num_images=21 must be"),
        ("--fgsm_methods=fgsm,magic", "--fgsm_methods=fgsm,magic must list distinct names"),
        ("--fgsm_target_class=3", "--fgsm_target_class=3 needs targeted=True"),
    ],
)
def test_values_the_config_refuses_are_refused_at_parse_time_naming_the_flag(arg, message):
    with pytest.raises(flags.IllegalFlagValueError, match=message):
        _parse(arg)


def test_the_seed_is_the_common_seed():
    fv = flags.FlagValues()
    flags.DEFINE_integer("seed", 0, "The seed.", flag_values=fv)
    fgsm_flags.define_fgsm_flags(fv)
    fv(["prog", "--seed=7"])
    assert fgsm_flags.fgsm_config(fv).seed == 7
    assert "fgsm_seed" not in fv


def test_check_data_errors_name_the_flag():
    fv = _parse("--fgsm_num_images=5000")
    err = ValueError("num_images=5000 is more than the 1000 test images of mnist")
    message = str(fgsm_flags.flag_error(err, fv))
    assert message == "--fgsm_num_images=5000 is more than the 1000 test images of mnist"
