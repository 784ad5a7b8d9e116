"""Tests of run_fgsm.py: a small sweep end to end, its outputs, and argument handling."""

import csv
import json

import matplotlib.image
import numpy as np
import pytest
from absl import app, flags

import run_fgsm
from flags import fgsm as fgsm_flags


def _flags(out, model_path, *args):
    fv = flags.FlagValues()
    run_fgsm.define_flags(fv)
    fv(
        [
            "run_fgsm",
            f"--output_dir={out}",
            f"--model_path={model_path}",
            "--data_source=sample",
            "--fgsm_num_images=60",
            "--fgsm_eps=0,0.1,0.3",
            "--fgsm_steps=2",
            "--fgsm_num_examples=2",
            "--verbose=0",
            *args,
        ]
    )
    return fv


def test_sweep_writes_every_output(tmp_path, model_path):
    out = tmp_path / "fgsm"
    fv = _flags(out, model_path, "--fgsm_methods=fgsm,bim,random")
    run_fgsm.main(["run_fgsm"], fv)

    report = json.loads((out / "robustness.json").read_text())
    assert report["num_images"] == 60 and report["methods"] == ["fgsm", "bim", "random"]
    assert report["eps_values"] == [0.0, 0.1, 0.3]
    rows = {(r["method"], r["eps"]): r for r in report["rows"]}
    assert len(rows) == 9
    for method in report["methods"]:
        assert rows[method, 0.0]["accuracy"] == report["clean_accuracy"]
        assert rows[method, 0.3]["accuracy"] <= rows[method, 0.0]["accuracy"]
    assert rows["bim", 0.3]["accuracy"] < rows["random", 0.3]["accuracy"]
    sign = report["gradient_sign_image"]
    assert sign["eps"] == 0.25 and sum(sign["predicted_class_counts"]) == 60
    assert 0.1 <= sign["mean_confidence"] <= 1.0

    with open(out / "robustness.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 9
    for line in table:
        assert float(line["accuracy"]) == pytest.approx(
            rows[line["method"], float(line["eps"])]["accuracy"], abs=1e-6
        )

    for name in ("accuracy_vs_eps.png", "examples.png"):
        image = matplotlib.image.imread(out / name)
        assert image.ndim == 3 and min(image.shape[:2]) > 100 and np.ptp(image) > 0

    replay = flags.FlagValues()
    run_fgsm.define_flags(replay)
    replay(["run_fgsm", f"--flagfile={out / 'fgsm_flags.cfg'}"])
    assert fgsm_flags.fgsm_config(replay) == fgsm_flags.fgsm_config(fv)
    assert replay.model_path == str(model_path)


def test_targeted_sweep_reports_target_rate(tmp_path, model_path):
    out = tmp_path / "targeted"
    fv = _flags(out, model_path, "--fgsm_methods=fgsm", "--fgsm_targeted", "--fgsm_target_class=3")
    run_fgsm.main(["run_fgsm"], fv)
    report = json.loads((out / "robustness.json").read_text())
    assert report["targeted"] and report["target_class"] == 3
    rates = [r["target_rate"] for r in report["rows"]]
    assert rates[-1] > rates[0]


def test_stray_arguments_are_rejected(tmp_path, model_path):
    fv = _flags(tmp_path, model_path)
    with pytest.raises(app.UsageError, match="unexpected arguments: extra"):
        run_fgsm.main(["run_fgsm", "extra"], fv)
    assert not (tmp_path / "fgsm_flags.cfg").exists()


def test_every_mode_flag_value_has_a_function():
    assert set(run_fgsm.MODES) == set(fgsm_flags.MODES)
    assert all(callable(fn) for fn in run_fgsm.MODES.values())
