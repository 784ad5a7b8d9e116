"""flags/backwork.py and run_backwork.py end to end (subprocesses, a small cached model)."""

import dataclasses
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from absl import flags
from tiny_runs import BACKWORK_ARGV, run_backwork_process

import run_backwork
from flags import backwork as backwork_flags
from tfool import backwork as bw
from tfool import config as tfool_config
from tfool import io, models

ROOT = Path(__file__).resolve().parents[1]


def fresh_flags(argv):
    fv = flags.FlagValues()
    run_backwork.define_flags(fv)
    fv(["prog", *argv])
    return fv


def test_defaults_give_the_posts_config():
    c = backwork_flags.backwork_config(fresh_flags([]))
    assert c == bw.BackworkConfig()


def test_flags_convert_to_config():
    c = backwork_flags.backwork_config(
        fresh_flags(
            [
                "--backwork_labels=3,5",
                "--backwork_num_examples=4",
                "--seed=9",
                "--backwork_layer_cost_coeffs=1,2,3",
                "--backwork_layer_names=a,b,c",
                "--nobackwork_clip_inputs",
                "--backwork_init=train_mean",
            ]
        )
    )
    assert c.labels == (3, 5) and c.num_examples == 4 and c.seed == 9
    assert c.layer_cost_coeffs == (1.0, 2.0, 3.0) and c.layer_names == ("a", "b", "c")
    assert not c.clip_inputs and c.init == "train_mean"
    assert backwork_flags.backwork_config(fresh_flags(["--backwork_seed=4", "--seed=9"])).seed == 4


def test_rubbish_zeroes_all_but_softmax():
    c = backwork_flags.backwork_config(fresh_flags(["--backwork_rubbish"]))
    assert c.coeffs_for(5) == (0.0, 0.0, 0.0, 0.0, 10.0) and c.batch_cost_coeff == 0.0
    c1 = backwork_flags.backwork_config(
        fresh_flags(["--backwork_rubbish", "--backwork_num_examples=1"])
    )
    assert c1.num_examples == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--backwork_labels=1,1"], "backwork_labels"),
        (["--backwork_num_examples=0"], "backwork_num_examples"),
        (["--backwork_num_examples=1"], "batch cost"),
        (["--backwork_prob_cap_min=0"], "backwork_prob_cap_min"),
        (["--backwork_prob_cap_min=1.5"], "backwork_prob_cap_min"),
        (["--backwork_init=zeros"], "backwork_init"),
        (["--backwork_layer_cost_coeffs=1,inf"], "finite"),
        (["--backwork_max_num_steps=0"], "backwork_max_num_steps"),
    ],
)
def test_bad_flags_are_rejected(argv, message):
    with pytest.raises(flags.IllegalFlagValueError, match=message):
        fresh_flags(argv)


def test_label_names_need_a_resolver():
    with pytest.raises(ValueError, match="--backwork_labels: 'x' is not a class index"):
        backwork_flags.resolve_labels(["1", "x"])
    assert backwork_flags.resolve_labels(["1", "seven"], {"seven": 7}.__getitem__) == (1, 7)


def test_paper_flagfile_is_the_post():
    fv = fresh_flags([f"--flagfile={ROOT / 'flags' / 'paper.cfg'}"])
    c = backwork_flags.backwork_config(fv)
    assert c.layer_cost_coeffs == (1e-5, 1e-4, 1e-3, 1e-2, 10.0)
    assert c.prob_cap_min == 0.999 and c.num_examples == 8 and c.learning_rate == 0.01


SMALL = BACKWORK_ARGV


@pytest.mark.slow
def test_run_writes_every_output(tmp_path, model_path):
    out = tmp_path / "out"
    proc = run_backwork_process(
        [
            f"--output_dir={out}",
            f"--model_path={model_path}",
            f"--tensorboard_dir={tmp_path / 'tb'}",
            *SMALL,
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in (
        "images.npz",
        "summary.json",
        "backworked.png",
        "worst_train.png",
        "salient.png",
        "flags.cfg",
    ):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert [r["label"] for r in summary["labels"]] == [0, 7]
    assert summary["data_source"] == "sample" and 0 < summary["model_accuracy"] <= 1
    res = bw.load_result(out / "images.npz")
    assert res.images.shape == (2, 3, 28, 28, 1)
    assert res.images.min() >= 0 and res.images.max() <= 1
    assert "converged" in proc.stdout and "label" in proc.stdout
    assert any(p.name.startswith("events") for p in (tmp_path / "tb").iterdir())
    assert not [p for p in out.iterdir() if ".tmp" in p.name]
    # the manifest lists every file the run wrote, with its size; the lock is gone
    manifest = json.loads((out / io.MANIFEST_NAME).read_text())
    assert manifest["script"] == "run_backwork.py" and manifest["status"] == "finished"
    assert manifest["flags_file"] == "flags.cfg"
    listed = {f["path"]: f["bytes"] for f in manifest["files"]}
    assert listed == {p.name: p.stat().st_size for p in out.iterdir() if p.name != "manifest.json"}
    # flags.cfg replays the same configuration
    replay = fresh_flags([f"--flagfile={out / 'flags.cfg'}"])
    assert backwork_flags.backwork_config(replay).labels == (0, 7)
    assert replay.output_dir == "out/backwork"  # never this run's folder unless told
    assert f"# --output_dir={out}" in (out / "flags.cfg").read_text()


def test_stray_arguments_and_bad_model_file(tmp_path, monkeypatch, caplog):
    proc = run_backwork_process(["extra_arg", f"--output_dir={tmp_path}"])
    assert proc.returncode != 0 and "unexpected arguments: extra_arg" in proc.stderr
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a model at all")
    with caplog.at_level(logging.ERROR):
        status = _in_process(
            monkeypatch, [f"--output_dir={tmp_path / 'o'}", f"--model_path={bad}", *SMALL]
        )
    assert status == 2 and str(bad) in _one_error(caplog)
    assert bad.read_bytes() == b"not a model at all"


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_interrupt_writes_what_was_found(tmp_path, model_path, signum):
    """Ctrl-C and SIGTERM (timeout, container stops, schedulers) keep the results alike."""
    out = tmp_path / "out"
    env = {**os.environ, "TFOOL_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    args = [
        *SMALL[:-2],
        "--backwork_max_num_steps=100000",
        "--backwork_prob_cap_min=1.0",
        f"--output_dir={out}",
        f"--model_path={model_path}",
        "--nobackwork_jit_compile",
    ]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run_backwork.py"), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # a shell's background job inherits SIGINT ignored, and so would the run: give it
        # the default disposition, as in a terminal, so that it installs Python's handler
        preexec_fn=_default_sigint,
    )
    deadline = time.time() + 240
    for line in proc.stdout:
        if "labels running" in line or time.time() > deadline:
            break
    time.sleep(1.0)
    proc.send_signal(signum)
    try:
        rest, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()  # never leave the run behind when the test fails
    assert proc.returncode == 130, rest[-2000:]
    res = bw.load_result(out / "images.npz")
    assert res.interrupted and res.steps > 0
    assert np.isfinite(res.images).all()
    assert "INTERRUPTED" in rest and "stopping at the next safe point" in rest
    for name in ("summary.json", "backworked.png", "flags.cfg"):
        assert (out / name).stat().st_size > 0, name
    assert not (out / io.LOCK_NAME).exists()  # the folder is free again
    manifest = json.loads((out / io.MANIFEST_NAME).read_text())
    assert manifest["status"] == "interrupted" and manifest["ended"]
    assert {"images.npz", "summary.json", "flags.cfg"} <= {f["path"] for f in manifest["files"]}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mobilenet_v2", "efficientnet_lite0"])
def test_imagenet_rubbish_images_by_class_name(tmp_path, monkeypatch, model):
    out = tmp_path / "rubbish"
    argv = [
        f"--output_dir={out}",
        f"--backwork_model={model}",
        "--backwork_weights=none",
        "--backwork_image_size=32",
        "--backwork_rubbish",
        "--backwork_num_examples=2",
        "--backwork_labels=envelope,1",
        "--backwork_max_num_steps=3",
        "--nobackwork_jit_compile",
    ]
    assert _in_process(monkeypatch, argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["name"] for r in summary["labels"]] == ["envelope", "goldfish"]
    assert summary["config"]["softmax_cost"] == "cross_entropy"
    assert summary["config"]["learning_rate"] == 0.1
    res = bw.load_result(out / "images.npz")
    assert res.images.shape == (2, 2, 32, 32, 3) and res.layer_names == ("probabilities",)
    assert (out / "backworked.png").exists() and not (out / "worst_train.png").exists()


def test_imagenet_bad_input_is_a_clear_error(tmp_path, monkeypatch, caplog):
    from tfool.imagenet import _weights as imagenet_weights

    with pytest.raises(flags.IllegalFlagValueError, match="needs --backwork_rubbish"):
        fresh_flags([f"--output_dir={tmp_path / 'a'}", "--backwork_model=mobilenet_v2"])
    argv = [
        f"--output_dir={tmp_path / 'b'}",
        "--backwork_model=mobilenet_v2",
        "--backwork_weights=none",
        "--backwork_image_size=32",
        "--backwork_rubbish",
        "--backwork_labels=envelop",
    ]
    with caplog.at_level(logging.ERROR):
        assert _in_process(monkeypatch, argv) == 2
    assert "envelop" in _one_error(caplog) and "envelope" in _one_error(caplog)
    caplog.clear()
    monkeypatch.setenv("TFOOL_OFFLINE", "1")
    monkeypatch.setattr(imagenet_weights, "cached_weights", lambda name: None)  # never downloaded
    argv = [
        f"--output_dir={tmp_path / 'c'}",
        "--backwork_model=inception_v3",
        "--backwork_rubbish",
        "--backwork_labels=envelope",
    ]
    with caplog.at_level(logging.ERROR):
        assert _in_process(monkeypatch, argv) == 2
    message = _one_error(caplog)
    assert "weights=FILE" in message
    assert "(flags: --backwork_weights)" in message  # the library's argument, as a flag
    assert not (tmp_path / "c").exists()


def test_new_flags_convert_to_config():
    c = backwork_flags.backwork_config(fresh_flags(["--backwork_reference_dtype=bfloat16"]))
    assert c.reference_dtype == "bfloat16"
    with pytest.raises(flags.IllegalFlagValueError, match="backwork_reference_dtype"):
        fresh_flags(["--backwork_reference_dtype=float64"])
    assert fresh_flags(["--backwork_init_from=x.npz"]).backwork_init_from == "x.npz"


@pytest.mark.slow
def test_init_from_resumes_a_saved_result(tmp_path, model_path, monkeypatch):
    first = tmp_path / "first"
    assert (
        _in_process(monkeypatch, [f"--output_dir={first}", f"--model_path={model_path}", *SMALL])
        == 0
    )
    saved = bw.load_result(first / "images.npz")
    second = tmp_path / "second"
    argv = [
        f"--output_dir={second}",
        f"--model_path={model_path}",
        f"--backwork_init_from={first / 'images.npz'}",
        *SMALL,
    ]
    assert _in_process(monkeypatch, argv) == 0
    resumed = bw.load_result(second / "images.npz")
    np.testing.assert_allclose(resumed.history_images[0], saved.images, atol=1e-6)


def test_init_from_is_checked_before_training(tmp_path, monkeypatch, caplog):
    untrained = tmp_path / "never.keras"  # would be trained (minutes) if the check came late
    bad = tmp_path / "images.npz"
    bad.write_bytes(b"garbage")
    res = bw.backwork(*_tiny_run())
    saved = tmp_path / "saved.npz"
    io.write_npz(saved, **bw.result_arrays(res))
    for init_from, message in [
        (tmp_path / "missing.npz", "no such file"),
        (bad, "is not a readable backworking result"),
        (saved, "holds labels [4], but --backwork_labels asks for [0, 7]"),
    ]:
        caplog.clear()
        argv = [f"--output_dir={tmp_path / 'o'}", f"--model_path={untrained}", *SMALL]
        with caplog.at_level(logging.ERROR):
            status = _in_process(monkeypatch, [*argv, f"--backwork_init_from={init_from}"])
        assert status == 2 and message in _one_error(caplog)
        assert not untrained.exists() and not (tmp_path / "o").exists()


def _tiny_run():
    keras_model = models.build_mnist_cnn(conv_filters=(2, 2), fc_units=4, seed=0)
    from tfool import data

    ds = data.load_mnist("sample")
    config = bw.BackworkConfig(labels=(4,), num_examples=3, max_num_steps=1, reference_size=5)
    return keras_model, ds, config


def test_original_flagfile_is_the_original_preset():
    c = backwork_flags.backwork_config(
        fresh_flags([f"--flagfile={ROOT / 'flags' / 'original.cfg'}"])
    )
    assert c == bw.BackworkConfig.original(layer_cost_coeffs=(1e-5, 1e-4, 1e-3, 1e-2, 10.0))
    assert (
        backwork_flags.backwork_config(fresh_flags(["--backwork_semantics=original"])).semantics
        == "original"
    )


def test_the_flag_files_of_flags_are_the_presets():
    from flags import spine

    files = spine.preset_files()
    for name in ("paper", "original"):
        path = f"flags/{name}.cfg"
        assert (ROOT / path).read_text(encoding="utf-8") == files[path]
        c = backwork_flags.backwork_config(fresh_flags([f"--flagfile={ROOT / path}"]))
        assert c == tfool_config.preset(bw.BackworkConfig, name)


def test_a_preset_fills_what_the_flags_leave_unset():
    c = backwork_flags.backwork_config(
        fresh_flags(["--backwork_preset=original", "--backwork_max_num_steps=7"])
    )
    original = tfool_config.preset(bw.BackworkConfig, "original")
    assert c == dataclasses.replace(original, max_num_steps=7)
    # an ImageNet model takes imagenet_rubbish unless a preset is named
    imagenet = ["--backwork_model=vgg16", "--backwork_rubbish", "--backwork_weights=none"]
    c = backwork_flags.backwork_config(fresh_flags(imagenet))
    assert c == bw.BackworkConfig.imagenet_rubbish()
    c = backwork_flags.backwork_config(fresh_flags([*imagenet, "--backwork_preset=paper"]))
    assert (c.learning_rate, c.softmax_cost, c.layer_names) == (0.01, "one_minus_p", None)
    assert c.layer_cost_coeffs == (0.0, 0.0, 0.0, 0.0, 10.0)  # rubbish: the softmax weight
    with pytest.raises(flags.IllegalFlagValueError, match="backwork_preset"):
        fresh_flags(["--backwork_preset=fast"])


def test_derived_flags_are_unset_and_their_help_names_the_presets():
    fv = fresh_flags([])
    assert fv.backwork_num_examples is None and fv.backwork_preset is None
    text = fv["backwork_learning_rate"].help
    assert "Adam learning rate" in text and "imagenet_rubbish: 0.1" in text
    assert "no preset: 0.01" in text
    assert "--backwork_reinit_below" in fv["backwork_num_mono_dec_saves"].help
    assert fv["backwork_from_logits"].value == "auto"


def test_an_empty_list_is_unset():
    argv = ["--backwork_preset=paper", "--backwork_layer_cost_coeffs=", "--backwork_layer_names="]
    c = backwork_flags.backwork_config(fresh_flags(argv))
    assert c == tfool_config.preset(bw.BackworkConfig, "paper")


def test_flags_file_holds_what_was_set_and_the_preset(tmp_path):
    from flags import common as common_flags

    fv = fresh_flags(["--backwork_preset=original", "--backwork_labels=1,7"])
    text = open(common_flags.write_flags_file(fv, str(tmp_path)), encoding="utf-8").read()
    assert "--backwork_preset=original" in text and "--backwork_labels=1,7" in text
    assert "--backwork_max_num_steps" not in text and "--backwork_seed" not in text
    replay = backwork_flags.backwork_config(fresh_flags([f"--flagfile={tmp_path / 'flags.cfg'}"]))
    assert replay == backwork_flags.backwork_config(fv)


@pytest.mark.parametrize(
    "extra", [[], ["--backwork_learning_rate=0.05"], ["--backwork_softmax_cost=one_minus_p"]]
)
def test_replayed_flags_give_the_same_imagenet_rubbish_run(tmp_path, extra):
    from flags import common as common_flags

    argv = [
        f"--output_dir={tmp_path}",
        "--backwork_model=mobilenet_v2",
        "--backwork_weights=none",
        "--backwork_rubbish",
        "--backwork_labels=3,7",
        *extra,
    ]
    first = backwork_flags.backwork_config(fresh_flags(argv))
    path = common_flags.write_flags_file(fresh_flags(argv), str(tmp_path))
    replay = backwork_flags.backwork_config(fresh_flags([f"--flagfile={path}"]))
    assert replay == first
    want = bw.BackworkConfig.imagenet_rubbish(labels=(3, 7))
    if extra:
        name, value = extra[0][len("--backwork_") :].split("=")
        want = dataclasses.replace(want, **{name: type(getattr(want, name))(value)})
    assert first == want


def test_presets():
    assert bw.BackworkConfig.paper() == bw.BackworkConfig()
    rubbish = bw.BackworkConfig.imagenet_rubbish(labels=(1,))
    assert (rubbish.learning_rate, rubbish.softmax_cost, rubbish.layer_names) == (
        0.1,
        "cross_entropy",
        ("probabilities",),
    )
    assert rubbish.batch_cost_coeff == 0.0 and rubbish.coeffs_for(1) == (10.0,)


def _blocker(tmp_path):
    """A file where a folder is expected."""
    path = tmp_path / "a_file"
    path.write_text("not a folder")
    return path


def _in_process(monkeypatch, argv):
    """run_backwork.py's main on ``argv`` in this process (its module flags replaced)."""
    monkeypatch.setattr(run_backwork, "FLAGS", fresh_flags(argv))
    return run_backwork._main_with_clear_errors(["run_backwork"])


def _one_error(caplog) -> str:
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.exc_info is None
    return record.getMessage()


@pytest.mark.parametrize(
    "make_args, message",
    [
        (
            lambda t, m: [f"--output_dir={_blocker(t)}"],
            "--output_dir='.*a_file' is an existing file",
        ),
        (
            lambda t, m: [f"--output_dir={t / 'o'}", f"--model_path={_blocker(t)}/cnn.keras"],
            "--model_path's folder='.*a_file' is an existing file",
        ),
        (
            lambda t, m: [
                f"--output_dir={t / 'o'}",
                f"--model_path={m}",
                "--backwork_num_examples=100000",
            ],
            "this run needs about .* GB .* but the machine has .* GB available",
        ),
        (
            lambda t, m: [
                f"--output_dir={t / 'o'}",
                f"--model_path={m}",
                f"--tensorboard_dir={_blocker(t)}",
            ],
            "--tensorboard_dir=.*existing file",
        ),
    ],
    ids=[
        "output_dir_is_a_file",
        "model_folder_is_a_file",
        "too_much_memory",
        "tensorboard_is_a_file",
    ],
)
def test_unusable_settings_fail_before_any_work(
    tmp_path, model_path, monkeypatch, caplog, make_args, message
):
    with caplog.at_level(logging.INFO):
        status = _in_process(
            monkeypatch, ["--data_source=sample", *make_args(tmp_path, model_path)]
        )
    assert status == 2
    assert re.search(message, _one_error(caplog))
    assert not any("trained" in r.getMessage() for r in caplog.records)  # nothing trained
    assert not (tmp_path / "o").exists()  # nothing written, not even flags.cfg


def test_damaged_resume_state_fails_before_any_work(tmp_path, model_path, monkeypatch, caplog):
    out = tmp_path / "o"
    (out / "retrain" / "uniform").mkdir(parents=True)
    (out / "retrain" / "uniform" / "state.json").write_text("{not json")
    argv = [f"--output_dir={out}", f"--model_path={model_path}", *SMALL]
    with caplog.at_level(logging.INFO):
        status = _in_process(monkeypatch, [*argv, "--retrain_rounds=1", "--retrain_resume"])
    assert status == 2
    message = _one_error(caplog)
    assert "--retrain_resume:" in message and "state.json is damaged" in message
    assert not any("backworking" in r.getMessage() for r in caplog.records)
    assert not (out / "images.npz").exists()


def test_help_lists_every_flag_group():
    proc = run_backwork_process(["--help"])
    for flag in (
        "--output_dir",
        "--model_path",
        "--distribution_strategy",
        "--backwork_labels",
        "--retrain_mode",
    ):
        assert flag in proc.stdout, flag
