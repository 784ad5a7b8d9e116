"""flags/retrain.py and run_backwork.py --retrain_rounds end to end."""

import dataclasses
import json

import pytest
from absl import flags
from tiny_runs import ROUNDS_ARGV, run_backwork_process

from flags import backwork as backwork_flags
from flags import common as common_flags
from flags import model as model_flags
from flags import retrain as retrain_flags
from tfool import config as tfool_config
from tfool import models
from tfool.retrain import RetrainConfig
from tfool.stress import StressConfig


def fresh_flags(argv, with_backwork=True):
    fv = flags.FlagValues()
    if with_backwork:
        common_flags.define_common_flags(fv)
        model_flags.define_model_flags(fv)
        backwork_flags.define_backwork_flags(fv)
    retrain_flags.define_retrain_flags(fv)
    fv(["prog", *argv])
    return fv


def test_defaults_retrain_nothing():
    (config,) = retrain_flags.retrain_configs(fresh_flags([]))
    assert config == RetrainConfig() and config.rounds == 0
    assert retrain_flags.retrain_configs(fresh_flags([], with_backwork=False))[0].rounds == 0


def test_flags_convert_to_config():
    configs = retrain_flags.retrain_configs(
        fresh_flags(
            [
                "--retrain_rounds=3",
                "--retrain_mode=extra_class,control",
                "--retrain_from_scratch",
                "--retrain_resume",
                "--retrain_epochs=6",
                "--retrain_num_zero=5",
                "--retrain_num_noise=0",
                "--retrain_max_num_steps=40",
                "--retrain_fgsm_eps=0.2,0.3",
                "--retrain_fooling_budget=50",
                "--retrain_fooling_examples=4",
                "--retrain_fooling_seed=9",
            ]
        )
    )
    assert [c.mode for c in configs] == ["extra_class", "control"]
    assert configs[1] == dataclasses.replace(configs[0], mode="control")
    assert configs[0] == RetrainConfig(
        rounds=3,
        mode="extra_class",
        from_scratch=True,
        resume=True,
        epochs=6,
        num_zero=5,
        num_noise=0,
        max_num_steps=40,
        fgsm_eps=(0.2, 0.3),
        fooling_budget=50,
        fooling_examples=4,
        fooling_seed=9,
    )


def test_adversarial_and_stress_flags_convert_to_configs():
    fv = fresh_flags(
        [
            "--retrain_rounds=2",
            "--retrain_mode=adversarial",
            "--retrain_adversarial_eps=0.2",
            "--retrain_adversarial_step=0.05",
            "--retrain_adversarial_steps=7",
            "--retrain_adversarial_epochs=4",
            "--retrain_stress",
            "--stress_budgets=10,30",
            "--stress_starts=zeros,digits",
            "--stress_examples=3",
            "--stress_pgd_eps=0.05",
            "--stress_attack_examples=77",
            "--stress_seed=5",
            "--stress_reference_size=100",
        ]
    )
    (config,) = retrain_flags.retrain_configs(fv)
    assert config == RetrainConfig(
        rounds=2,
        mode="adversarial",
        adversarial_eps=0.2,
        adversarial_step=0.05,
        adversarial_steps=7,
        adversarial_epochs=4,
    )
    assert fv.retrain_stress
    assert retrain_flags.stress_config(fv) == StressConfig(
        budgets=(10, 30),
        starts=("zeros", "digits"),
        examples=3,
        pgd_eps=(0.05,),
        attack_examples=77,
        seed=5,
        reference_size=100,
    )
    assert retrain_flags.stress_config(fresh_flags([])) == StressConfig()
    assert fresh_flags(["--retrain_stress", "--retrain_resume"]).retrain_resume  # continues it


def test_every_setting_has_its_flag_from_the_configs():
    """RetrainConfig's and StressConfig's fields are the flags (the modes in one list)."""
    fv = fresh_flags([])
    for cls, prefix in ((RetrainConfig, "retrain"), (StressConfig, "stress")):
        docs = tfool_config.field_docs(cls)
        for field in dataclasses.fields(cls):
            name = f"{prefix}_{field.name}"
            assert name in fv, name
            if field.name != "mode":  # --retrain_mode: a list, its help written by hand
                assert docs[field.name].split()[-1].replace("`", "") in fv[name].help, name
    fv = fresh_flags(
        [
            "--retrain_fooling_threshold=0.9",
            "--retrain_num_noise_probe=10",
            "--stress_threshold=0.95",
            "--stress_targeted_eps=0",
            "--nostress_rubbish",
            "--stress_pgd_steps=5",
            "--stress_pgd_step_size=0.02",
            "--stress_gaussian_mean=0.4",
            "--stress_gaussian_std=0.1",
        ]
    )
    (config,) = retrain_flags.retrain_configs(fv)
    assert config == RetrainConfig(fooling_threshold=0.9, num_noise_probe=10)
    assert retrain_flags.stress_config(fv) == StressConfig(
        threshold=0.95,
        targeted_eps=None,  # 0 on the command line: no targeted attack
        rubbish=False,
        pgd_steps=5,
        pgd_step_size=0.02,
        gaussian_mean=0.4,
        gaussian_std=0.1,
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--retrain_rounds=-1"], "retrain_rounds"),
        (["--retrain_adversarial_steps=0"], "retrain_adversarial_steps"),
        (["--retrain_adversarial_eps=1.5"], "retrain_adversarial_eps"),
        (
            ["--retrain_adversarial_eps=0"],
            r"--retrain_adversarial_eps=0(\.0)? must be a number > 0",
        ),
        (
            ["--retrain_adversarial_step=0"],
            r"--retrain_adversarial_step=0(\.0)? must be a number > 0",
        ),
        (["--stress_pgd_eps=0.1,0.10"], "stress_pgd_eps"),
        (["--stress_budgets=10,10"], "stress_budgets"),
        (["--stress_budgets=0"], "stress_budgets"),
        (["--stress_budgets=ten"], "stress_budgets"),
        (["--stress_starts=uniform,sky"], "stress_starts"),
        (["--stress_pgd_eps=2"], "stress_pgd_eps"),
        (["--stress_examples=0"], "stress_examples"),
        (
            ["--retrain_stress", "--backwork_model=vgg16", "--backwork_rubbish"],
            "--retrain_stress needs --backwork_model=mnist_cnn",
        ),
        (["--retrain_mode=soft"], "retrain_mode"),
        (["--retrain_epochs=0"], "retrain_epochs"),
        (["--retrain_num_zero=-1"], "retrain_num_zero"),
        (["--retrain_max_num_steps=0"], "retrain_max_num_steps"),
        (["--retrain_mode=uniform,uniform"], "each once"),
        (["--retrain_mode="], "retrain_mode"),
        (["--retrain_fgsm_eps=1.5"], "retrain_fgsm_eps"),
        (["--retrain_fgsm_eps=0.1,abc"], "retrain_fgsm_eps"),
        (["--retrain_fgsm_eps=nan"], "retrain_fgsm_eps"),
        (["--retrain_fooling_budget=0"], "retrain_fooling_budget"),
        (["--retrain_fooling_threshold=1"], "retrain_fooling_threshold"),
        (["--stress_starts="], "--stress_starts= must be one or more"),
        (["--stress_pgd_eps="], "--stress_pgd_eps= must be one or more"),
        (["--stress_targeted_eps=1.5"], "stress_targeted_eps"),
        # a list of modes hides no other error
        (["--retrain_mode=uniform,control", "--retrain_epochs=0"], "--retrain_epochs=0 must"),
        (["--retrain_resume"], "needs --retrain_rounds"),
        (
            ["--retrain_rounds=1", "--backwork_model=vgg16", "--backwork_rubbish"],
            "needs --backwork_model=mnist_cnn",
        ),
    ],
)
def test_bad_flags_are_rejected(argv, message):
    with pytest.raises(flags.IllegalFlagValueError, match=message):
        fresh_flags(argv)


@pytest.mark.slow
def test_run_backwork_retrains_and_writes_every_round(tmp_path, small_cnn):
    model_path = tmp_path / "cnn.keras"
    models.save_model(small_cnn, model_path)
    out = tmp_path / "out"
    args = [
        f"--output_dir={out}",
        f"--model_path={model_path}",
        "--data_source=sample",
        "--backwork_labels=0,7",
        "--backwork_num_examples=3",
        "--backwork_reference_size=20",
        "--backwork_max_num_steps=10",
        "--nobackwork_jit_compile",
        "--retrain_rounds=1",
        "--retrain_mode=extra_class,control,adversarial",
        "--retrain_adversarial_eps=0.1",
        "--retrain_stress",
        "--stress_budgets=2,4",
        "--stress_starts=digits",
        "--stress_examples=2",
        "--stress_pgd_eps=0.1",
        "--stress_attack_examples=10",
        *ROUNDS_ARGV,
    ]
    proc = run_backwork_process(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "retrain" / "extra_class" / "retrain.json").read_text())
    assert summary["mode"] == "extra_class" and summary["rounds"] == 1
    assert [r["round"] for r in summary["records"]] == [0, 1]
    assert summary["records"][1]["backwork_max_num_steps"] == 5
    assert summary["records"][1]["num_negatives"] == 6
    for name in (
        "backworked.png",
        "flags.cfg",
        "retrain/retrain_modes.png",
        "retrain/retrain_images.png",
    ):
        assert (out / name).stat().st_size > 0, name
    for mode in ("extra_class", "control", "adversarial"):
        assert (out / "retrain" / mode / "retrain.png").stat().st_size > 0
        for r in (0, 1):
            assert (out / "retrain" / mode / f"round_{r}" / "backworked.png").stat().st_size > 0
    grown = models.load_model(out / "retrain" / "extra_class" / "round_1" / "model.keras")
    assert grown.outputs[0].shape[-1] == 11
    adversarial = models.load_model(out / "retrain" / "adversarial" / "round_1" / "model.keras")
    assert adversarial.outputs[0].shape[-1] == 10
    table = json.loads((out / "retrain" / "retrain_modes.json").read_text())
    assert [len(table[m]) for m in ("extra_class", "control", "adversarial")] == [2, 2, 2]
    for mode in ("control", "adversarial"):  # nothing added
        assert table[mode][1]["train_size"] == table[mode][0]["train_size"]
    assert "--retrain_rounds=1" in (out / "flags.cfg").read_text()
    assert "test acc" in proc.stdout and "fooled" in proc.stdout
    # the stress test: round 0 and each mode's last model, every part, the figure
    stress = json.loads((out / "retrain" / "stress.json").read_text())
    names = ["round_0", "extra_class", "control", "adversarial"]
    assert [k for k in stress if k != "settings"] == names
    assert stress["settings"]["complete"] is True
    assert stress["settings"]["arms"]["adversarial"]["adversarial_eps"] == 0.1
    for name in names:
        row = stress[name]
        assert set(row["fooling"]) == {"digits"}
        assert set(row["fooling"]["digits"]) == set(row["rubbish"]) == {"2", "4"}
        assert list(row["pgd_accuracy"]) == ["0.1"]
        assert 0 <= row["targeted_pgd_success"] <= 1 and 0 <= row["clean_accuracy"] <= 1
        assert (out / "retrain" / "stress" / f"{name}.json").is_file()
    assert (out / "retrain" / "stress.png").stat().st_size > 0
    assert "round_0: clean" in proc.stdout and "fooling/digits" in proc.stdout
    # the stress test alone (no rounds) of the same model: continued from its kept parts
    again = [a for a in args if not a.startswith(("--retrain_rounds", "--retrain_mode"))]
    proc = run_backwork_process([*again, "--retrain_resume"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    alone = json.loads((out / "retrain" / "stress.json").read_text())
    assert [k for k in alone if k != "settings"] == ["round_0"]
    assert alone["round_0"] == stress["round_0"]  # nothing measured again
    assert "stress clean_accuracy" not in proc.stderr
