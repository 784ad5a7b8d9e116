"""Every flags file written by the version before the config spine replays the same run.

tests/data/flags_replay/<kind>.cfg is a flags file that version wrote (run_fgsm.py:
fgsm_*.cfg; run_backwork.py: bw_*.cfg), <kind>.json the configs its conversion functions
made of it (keys common, train, distribution and the script's own). Each test parses a
file with today's ``define_flags`` on a fresh ``FlagValues``, converts it with today's
functions and compares field by field; a field that moved is mapped explicitly.
"""

from __future__ import annotations

import glob
import json
import os

import pytest
from absl import flags

import run_fgsm
from flags import common as common_flags
from flags import distribution as distribution_flags
from flags import fgsm as fgsm_flags
from flags import imagenet as imagenet_flags
from flags import model as model_flags
from tfool.config import fields_to_dict

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "flags_replay")


def _cases(prefix: str) -> list[str]:
    """The kinds of the flags files named ``<prefix>*.cfg``."""
    paths = sorted(glob.glob(os.path.join(DATA, f"{prefix}*.cfg")))
    return [os.path.basename(path)[: -len(".cfg")] for path in paths]


def _replay(script, kind: str) -> tuple[flags.FlagValues, dict]:
    """The flags file ``kind`` parsed with ``script.define_flags``, and what the earlier
    version made of it."""
    fv = flags.FlagValues()
    script.define_flags(fv)
    fv([script.__name__, f"--flagfile={os.path.join(DATA, kind + '.cfg')}"])
    with open(os.path.join(DATA, kind + ".json"), encoding="utf-8") as fh:
        return fv, json.load(fh)


def _without(config, *names: str) -> dict:
    """``config``'s fields as JSON values, without ``names`` (fields added since)."""
    found = fields_to_dict(config)
    for name in names:
        del found[name]
    return found


def _check_shared(fv: flags.FlagValues, old: dict) -> None:
    """The groups both scripts share: common, train, distribution."""
    assert fields_to_dict(common_flags.common_config(fv)) == old["common"]
    assert fields_to_dict(model_flags.train_config(fv)) == old["train"]
    assert fields_to_dict(distribution_flags.distribution_config(fv)) == old["distribution"]


def _same_paths(new: tuple[str, ...], old: list[str]) -> None:
    """Resolved photo paths: equal where the recorded file exists here (the sample photos
    of scikit-image live elsewhere on another machine), else the same file names."""
    assert len(new) == len(old)
    for path, recorded in zip(new, old, strict=True):
        assert (
            path == recorded
            if os.path.exists(recorded)
            else path.endswith(os.path.basename(recorded))
        )


def _check_imagenet(fv: flags.FlagValues, old: dict, seed: int) -> None:
    """The old ``ImagenetConfig`` against the three experiment configs its fields moved to."""
    project = imagenet_flags.projection_experiment(fv)
    survey = imagenet_flags.survey_experiment(fv)
    photos = imagenet_flags.photo_experiment(fv)
    for spec in (project.model, photos.model):
        assert (spec.model, spec.weights, spec.image_size) == (
            old["model"],
            old["weights"],
            old["input_size"],
        )
    assert project.image_path() == old["image"]
    assert list(project.target_indices()) == old["targets"]
    assert fields_to_dict(project.projection) == old["projection"]
    assert survey.input_size == old["input_size"]
    assert [[s.model, s.weights] for s in survey.model_specs()] == old["survey_models"]
    assert _without(survey.survey, "seed") == old["survey"]
    assert survey.survey.seed == seed  # the old run passed noise_survey(seed=--seed)
    _same_paths(photos.photo_paths(), old["photos"])
    assert fields_to_dict(photos.photo) == old["photo"]


@pytest.mark.parametrize("kind", _cases("fgsm_"))
def test_a_run_fgsm_flags_file_replays_the_same_configs(kind):
    fv, old = _replay(run_fgsm, kind)
    _check_shared(fv, old)
    seed = old["common"]["seed"]
    attack = fgsm_flags.fgsm_config(fv)
    assert _without(attack, "seed") == old["fgsm"]
    assert attack.seed == seed  # the old run passed attack_sweep(seed=--seed)
    _check_imagenet(fv, old["imagenet"], seed)
    assert run_fgsm.CONFIGS[fv.fgsm_mode](fv) is not None


def test_every_kind_of_run_fgsm_flags_file_is_replayed():
    modes = set()
    for kind in _cases("fgsm_"):
        fv, _ = _replay(run_fgsm, kind)
        modes.add(fv.fgsm_mode)
    assert modes == set(fgsm_flags.MODES) and len(_cases("fgsm_")) == 6
