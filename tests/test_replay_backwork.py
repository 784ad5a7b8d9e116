"""Every flags file run_backwork.py wrote before the config spine replays the same run.

tests/data/flags_replay/bw_<kind>.cfg is a ``flags.cfg`` that version wrote (default,
original, paper small, rubbish, ImageNet, retrain), bw_<kind>.json the configs its
conversion functions made of it (keys common, train, distribution, backwork, retrain,
stress). Each test parses a file with today's ``run_backwork.define_flags`` on a fresh
``FlagValues``, converts it with today's functions and compares field by field.
"""

from __future__ import annotations

import glob
import json
import os

import pytest
from absl import flags

import run_backwork
from flags import backwork as backwork_flags
from flags import common as common_flags
from flags import distribution as distribution_flags
from flags import model as model_flags
from flags import retrain as retrain_flags
from tfool.config import fields_to_dict

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "flags_replay")
KINDS = sorted(os.path.basename(p)[: -len(".cfg")] for p in glob.glob(f"{DATA}/bw_*.cfg"))


def _replay(kind: str) -> tuple[flags.FlagValues, dict]:
    """The flags file ``kind`` parsed with ``run_backwork.define_flags``, and what the
    earlier version made of it."""
    fv = flags.FlagValues()
    run_backwork.define_flags(fv)
    fv(["run_backwork", f"--flagfile={os.path.join(DATA, kind + '.cfg')}"])
    with open(os.path.join(DATA, kind + ".json"), encoding="utf-8") as fh:
        return fv, json.load(fh)


def test_every_kind_is_here():
    assert KINDS == [
        "bw_default",
        "bw_imagenet",
        "bw_original",
        "bw_paper_small",
        "bw_retrain",
        "bw_rubbish",
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_shared_groups_replay(kind):
    fv, old = _replay(kind)
    assert fields_to_dict(common_flags.common_config(fv)) == old["common"]
    assert fields_to_dict(model_flags.train_config(fv)) == old["train"]
    assert fields_to_dict(distribution_flags.distribution_config(fv)) == old["distribution"]


@pytest.mark.parametrize("kind", KINDS)
def test_backwork_config_replays(kind):
    fv, old = _replay(kind)
    assert fields_to_dict(backwork_flags.backwork_config(fv)) == old["backwork"]


def test_an_old_imagenet_file_takes_the_imagenet_preset():
    """Its empty lists (``--backwork_layer_names=``) are unset: the preset's values."""
    fv, old = _replay("bw_imagenet")
    assert fv.backwork_preset is None and fv.backwork_layer_names == []
    config = backwork_flags.backwork_config(fv)
    assert config.layer_names == ("probabilities",) and config.learning_rate == 0.1
    assert backwork_flags.model_spec(fv).image_size == 32


@pytest.mark.parametrize("kind", KINDS)
def test_retrain_configs_replay(kind):
    """One ``RetrainConfig`` per mode, as recorded; ``--retrain_stress`` only in retrain."""
    fv, old = _replay(kind)
    assert [fields_to_dict(c) for c in retrain_flags.retrain_configs(fv)] == old["retrain"]
    assert fv.retrain_stress == (kind == "bw_retrain")


@pytest.mark.parametrize("kind", KINDS)
def test_stress_config_replays(kind):
    fv, old = _replay(kind)
    assert fields_to_dict(retrain_flags.stress_config(fv)) == old["stress"]
