"""One folder, one run: the output folder's lock, the manifest, the removal of an earlier
run's files, file names the file system cannot hold, the flags file's data source and the
flags named in the scripts' errors."""

import collections
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import run_backwork
import run_fgsm
from flags import common as common_flags
from tfool import data, experiments, interrupts, io, models
from tfool.io import _folders, _lock

ROOT = Path(__file__).resolve().parents[1]
HOST = socket.gethostname()


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture()
def sleeper():
    """A live process that is not a tfool run (it sleeps), reaped at the end."""
    proc = subprocess.Popen(["sleep", "120"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture()
def dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _write_lock(folder, pid, command="python3 run_backwork.py --backwork_labels=0,1,2,3"):
    folder.mkdir(parents=True, exist_ok=True)
    lock = {"pid": pid, "host": HOST, "command": command, "started": "2030-01-01T12:00:00+00:00"}
    (folder / io.LOCK_NAME).write_text(json.dumps(lock))
    return folder / io.LOCK_NAME


def _name_max(folder):
    return _folders._pathconf(Path(folder), "PC_NAME_MAX", 255)


BACKWORK = [
    "--data_source=sample",
    "--backwork_labels=0,7",
    "--backwork_num_examples=2",
    "--backwork_reference_size=20",
    "--backwork_max_num_steps=3",
    "--nobackwork_jit_compile",
    "--verbose=0",
]
SWEEP = [
    "--data_source=sample",
    "--fgsm_methods=fgsm",
    "--fgsm_num_images=20",
    "--fgsm_eps=0,0.2",
    "--fgsm_num_examples=1",
    "--verbose=0",
]


def _errors(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def _files(folder):
    """Every file under ``folder``, relative, ``/``-separated."""
    return {p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.is_file()}


def _manifest(folder):
    return json.loads((Path(folder) / io.MANIFEST_NAME).read_text())


def _listed(folder):
    return {f["path"] for f in _manifest(folder)["files"]}


# --- names too long -----------------------------------------------------------------------


def _too_long(tmp_path, kind, model_path):
    limit = _name_max(tmp_path)
    long_model = tmp_path / ("m" * (limit - len(".keras.json") + 1) + ".keras")
    return {
        "output_dir": ([f"--output_dir={tmp_path / ('o' * (limit + 1))}"], "--output_dir"),
        "model_record": (
            [f"--output_dir={tmp_path / 'o'}", f"--model_path={long_model}"],
            rf"--model_path's record file: the name .* is {limit + 1} bytes long",
        ),
        "tensorboard_dir": (
            [
                f"--output_dir={tmp_path / 'o'}",
                f"--model_path={model_path}",
                f"--tensorboard_dir={tmp_path / ('t' * (limit + 1))}",
            ],
            rf"--tensorboard_dir: the name 'ttt.*' is {limit + 1} bytes long",
        ),
    }[kind]


@pytest.mark.parametrize("kind", ["output_dir", "model_record", "tensorboard_dir"])
def test_names_too_long_are_refused_before_any_training(
    tmp_path, caplog, backwork_main, model_path, kind
):
    argv, message = _too_long(tmp_path, kind, model_path)
    with caplog.at_level(logging.INFO):
        assert backwork_main([*argv, *BACKWORK]) == 2
    (error,) = _errors(caplog)
    assert re.search(message, error), error
    assert not any("data:" in r.getMessage() for r in caplog.records)  # nothing loaded
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


def test_the_longest_model_name_whose_record_fits_is_taken(tmp_path, parse_fgsm_flags):
    fv = parse_fgsm_flags(
        [
            f"--output_dir={tmp_path / 'o'}",
            f"--model_path={tmp_path / ('m' * (_name_max(tmp_path) - 11) + '.keras')}",
        ]
    )
    common_flags.check_folders(fv, run_fgsm._output_names("sweep", fv))  # no error


# --- the lock ---------------------------------------------------------------------------------


def test_a_lock_of_a_live_process_refuses_the_folder(tmp_path, sleeper):
    lock = _write_lock(tmp_path, sleeper.pid)
    before = lock.read_bytes()
    with pytest.raises(ValueError) as err:
        io.lock_folder(tmp_path, what="--output_dir")
    message = str(err.value)
    assert f"--output_dir={str(tmp_path)!r} is in use by another run" in message
    assert (
        f"pid {sleeper.pid}" in message and "run_backwork.py --backwork_labels=0,1,2,3" in message
    )
    assert str(lock) in message and "\n" not in message
    assert lock.read_bytes() == before  # the other run's lock untouched


def test_a_lock_of_a_process_gone_is_taken_over(tmp_path, dead_pid):
    lock_file = _write_lock(tmp_path, dead_pid)
    lock = io.lock_folder(tmp_path, command="me")
    assert lock.took_over.pid == dead_pid and lock.holder.pid == os.getpid()
    assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    with pytest.raises(ValueError, match=f"pid {os.getpid()} \\(me\\)"):
        io.lock_folder(tmp_path)  # held: even this process cannot take it twice
    lock.release()
    assert not lock_file.exists()
    io.lock_folder(tmp_path).release()  # free again


def test_a_pid_used_again_by_another_process_is_not_the_run(tmp_path, sleeper):
    state, start = _lock._process_state(sleeper.pid)
    if start is None:
        pytest.skip("no /proc here")
    lock = _write_lock(tmp_path, sleeper.pid)
    raw = json.loads(lock.read_text())
    lock.write_text(json.dumps({**raw, "process_start": start + 1}))
    io.lock_folder(tmp_path).release()


@pytest.mark.skipif(_lock.fcntl is None, reason="no flock here")
def test_a_lock_held_by_a_live_process_is_refused_even_with_a_dead_pid(tmp_path, dead_pid):
    """Two runs never take the same stale lock: the one that took it holds a flock."""
    lock = _write_lock(tmp_path, dead_pid)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ValueError, match="is in use by another run"):
            io.lock_folder(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    io.lock_folder(tmp_path).release()  # its flock went with it


def test_a_damaged_lock_is_young_in_use_and_old_stale(tmp_path):
    lock = tmp_path / io.LOCK_NAME
    lock.write_text("")  # a run between creating and writing it
    with pytest.raises(ValueError, match="cannot be read yet"):
        io.lock_folder(tmp_path)
    old = time.time() - 60
    os.utime(lock, (old, old))
    taken = io.lock_folder(tmp_path)
    assert taken.took_over.pid == 0
    taken.release()


def test_the_folder_is_released_after_errors_and_interruptions(tmp_path):
    for exc in (ValueError("bad"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with io.RunFolder(tmp_path / "run", "test.py") as run:
                run.start()
                io.write_text(tmp_path / "run" / "a.txt", "a")
                raise exc
        assert not (tmp_path / "run" / io.LOCK_NAME).exists()
        manifest = _manifest(tmp_path / "run")
        assert manifest["status"] == ("failed" if isinstance(exc, ValueError) else "interrupted")
        assert manifest["files"] == [{"path": "a.txt", "bytes": 1}] and manifest["ended"]


def test_a_refused_run_leaves_nothing_behind(tmp_path):
    with pytest.raises(ValueError, match="refused"):
        with io.RunFolder(tmp_path / "a" / "b", "test.py"):
            raise ValueError("refused by a check")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "task, holds",
    [
        ({"type": "worker", "index": 0}, True),
        ({"type": "worker", "index": 1}, False),
        ({"type": "chief", "index": 0}, True),
    ],
)
def test_only_the_chief_of_a_multi_worker_run_holds_the_folder(
    tmp_path, monkeypatch, task, holds, parse_fgsm_flags
):
    """The workers of one multi-worker run write the same files: one lock for them all."""
    cluster = {
        "worker": ["host1:1", "host2:1"],
        **({"chief": ["c:1"]} if task["type"] == "chief" else {}),
    }
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    fv = parse_fgsm_flags(
        [f"--output_dir={tmp_path}", "--distribution_strategy=multi_worker_mirrored"]
    )
    with common_flags.claim_output_dir(fv, "run_fgsm.py", "fgsm_flags.cfg") as outputs:
        assert (tmp_path / io.LOCK_NAME).exists() == holds
        outputs.start(data_source="sample")
        assert outputs.done(0) == 0
    assert (tmp_path / io.MANIFEST_NAME).exists() == holds
    assert (tmp_path / "fgsm_flags.cfg").exists() and not (tmp_path / io.LOCK_NAME).exists()


# --- the manifest and what an earlier run left --------------------------------------------------


def test_the_manifest_lists_every_file_with_its_size_as_it_is_written(tmp_path):
    folder = tmp_path / "run"
    with io.RunFolder(folder, "test.py", command="test.py --x=1") as run:
        assert run.start(flags_file="flags.cfg") == []
        io.write_text(folder / "flags.cfg", "--x=1\n")
        io.write_npz(folder / "sub" / "a.npz", a=np.arange(5))
        during = _manifest(folder)
        assert during["status"] == "running" and during["ended"] is None
        assert [f["path"] for f in during["files"]] == ["flags.cfg", "sub/a.npz"]
        assert (folder / io.LOCK_NAME).exists()
        run.done(0)
    manifest = _manifest(folder)
    assert manifest["script"] == "test.py" and manifest["command"] == "test.py --x=1"
    assert manifest["flags_file"] == "flags.cfg" and manifest["status"] == "finished"
    assert manifest["tfool_version"] and manifest["started"] <= manifest["ended"]
    assert manifest["files"] == [
        {"path": rel, "bytes": (folder / rel).stat().st_size} for rel in ("flags.cfg", "sub/a.npz")
    ]
    assert _files(folder) == {"flags.cfg", "sub/a.npz", io.MANIFEST_NAME}


def test_only_the_files_an_earlier_manifest_lists_are_removed(tmp_path):
    folder = tmp_path / "run"
    outside = tmp_path / "outside.txt"
    outside.write_text("not in the folder")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.txt").write_text("through a link")
    with io.RunFolder(folder, "first.py") as run:
        run.start()
        for rel in ("old.png", "sub/old.json", "retrain/uniform/state.json", "model.keras"):
            io.write_text(folder / rel, rel)
    (folder / "notes.txt").write_text("the user's own")
    os.symlink(elsewhere, folder / "link")
    manifest = _manifest(folder)
    for rel in ("../outside.txt", str(outside), "link/x.txt", io.LOCK_NAME, "sub"):
        manifest["files"].append({"path": rel, "bytes": 1})
    (folder / io.MANIFEST_NAME).write_text(json.dumps(manifest))
    with io.RunFolder(folder, "second.py") as run:
        removed = run.start(keep=[folder / "model.keras"])
        io.write_text(folder / "new.png", "new")
    assert sorted(removed) == ["old.png", "sub/old.json"]
    assert not (folder / "sub").exists()  # emptied by the removals
    assert _files(folder) == {
        "new.png",
        "notes.txt",
        "model.keras",
        "retrain/uniform/state.json",
        io.MANIFEST_NAME,
    }
    assert outside.exists() and (folder / "link" / "x.txt").exists()
    assert _listed(folder) == {"new.png"}


def test_a_damaged_manifest_removes_nothing(tmp_path, caplog):
    (tmp_path / io.MANIFEST_NAME).write_text("{not json")
    (tmp_path / "old.png").write_text("x")
    with caplog.at_level(logging.WARNING), io.RunFolder(tmp_path, "t.py") as run:
        assert run.start() == []
    assert (tmp_path / "old.png").exists()
    assert any("no file of an earlier run removed" in r.getMessage() for r in caplog.records)


# --- the run scripts --------------------------------------------------------------------------


def test_a_folder_in_use_is_refused_before_any_work(
    tmp_path, caplog, backwork_main, sleeper, fgsm_main
):
    out = tmp_path / "out"
    lock = _write_lock(out, sleeper.pid)
    (out / "images.npz").write_text("the other run's")
    untrained = tmp_path / "never.keras"  # trained (minutes) if the refusal came late
    with caplog.at_level(logging.INFO):
        assert backwork_main([f"--output_dir={out}", f"--model_path={untrained}"]) == 2
    (message,) = _errors(caplog)
    assert f"--output_dir={str(out)!r} is in use by another run: pid {sleeper.pid}" in message
    assert "run_backwork.py --backwork_labels=0,1,2,3" in message
    assert not any("data:" in r.getMessage() for r in caplog.records)
    assert not untrained.exists() and _files(out) == {io.LOCK_NAME, "images.npz"}
    assert json.loads(lock.read_text())["pid"] == sleeper.pid
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert fgsm_main([f"--output_dir={out}", f"--model_path={untrained}", *SWEEP]) == 2
    assert f"pid {sleeper.pid}" in _errors(caplog)[0] and not untrained.exists()


def test_a_stale_lock_is_taken_over_and_said(tmp_path, caplog, model_path, dead_pid, fgsm_main):
    out = tmp_path / "out"
    _write_lock(out, dead_pid)
    with caplog.at_level(logging.WARNING):
        assert fgsm_main([f"--output_dir={out}", f"--model_path={model_path}", *SWEEP]) == 0
    warnings = [r.getMessage() for r in caplog.records if "stale lock" in r.getMessage()]
    assert len(warnings) == 1 and f"pid {dead_pid}" in warnings[0]
    assert not (out / io.LOCK_NAME).exists() and _manifest(out)["status"] == "finished"


@pytest.fixture()
def terminal_sigint():
    """Python's own SIGINT handler, as in a terminal."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "error"])
def test_the_lock_goes_after_signals_and_errors(
    tmp_path, monkeypatch, model_path, terminal_sigint, how, fgsm_main
):
    def attack_sweep(*args, **kwargs):
        if how == "error":
            raise ValueError("a library error in the middle of the run")
        os.kill(os.getpid(), getattr(signal, how))  # as Ctrl-C, timeout or docker stop
        interrupts.check()  # the next safe point

    monkeypatch.setattr(experiments, "attack_sweep", attack_sweep)
    out = tmp_path / "out"
    status = fgsm_main([f"--output_dir={out}", f"--model_path={model_path}", *SWEEP])
    assert status == (2 if how == "error" else 130)
    assert not (out / io.LOCK_NAME).exists()
    manifest = _manifest(out)
    assert manifest["status"] == ("failed" if how == "error" else "interrupted")
    assert _listed(out) == {"fgsm_flags.cfg"} and manifest["flags_file"] == "fgsm_flags.cfg"


@pytest.mark.slow
def test_both_scripts_and_two_models_into_one_folder_leave_only_the_last_run(
    tmp_path, backwork_main, model_path, fgsm_main, parse_fgsm_flags
):
    out = tmp_path / "out"
    (out / "retrain" / "uniform").mkdir(parents=True)
    (out / "notes.txt").write_text("the user's own")
    mnist = [f"--output_dir={out}", f"--model_path={model_path}", *BACKWORK]
    assert backwork_main(mnist) == 0
    first = _listed(out)
    assert {"worst_train.png", "images.npz", "flags.cfg"} <= first
    assert first <= set(run_backwork.OUTPUT_NAMES)  # the names checked before the run
    # a file of a finished retraining round, listed as the run's: never removed
    io.write_text(out / "retrain" / "uniform" / "state.json", "{}")
    manifest = _manifest(out)
    manifest["files"].append({"path": "retrain/uniform/state.json", "bytes": 3})
    (out / io.MANIFEST_NAME).write_text(json.dumps(manifest))

    rubbish = [
        f"--output_dir={out}",
        "--backwork_model=mobilenet_v2",
        "--backwork_weights=none",
        "--backwork_image_size=32",
        "--backwork_rubbish",
        "--backwork_num_examples=1",
        "--backwork_labels=1",
        "--backwork_max_num_steps=1",
        "--nobackwork_jit_compile",
        "--verbose=0",
    ]
    assert backwork_main(rubbish) == 0
    second = _listed(out)
    assert "worst_train.png" not in second and not (out / "worst_train.png").exists()
    assert _files(out) == second | {"notes.txt", "retrain/uniform/state.json", io.MANIFEST_NAME}

    assert fgsm_main([f"--output_dir={out}", f"--model_path={model_path}", *SWEEP]) == 0
    third = _listed(out)
    assert third == {*run_fgsm.OUTPUT_NAMES["sweep"], "fgsm_flags.cfg"}
    assert _files(out) == third | {"notes.txt", "retrain/uniform/state.json", io.MANIFEST_NAME}
    assert _manifest(out)["script"] == "run_fgsm.py"
    replay = parse_fgsm_flags([f"--flagfile={out / 'fgsm_flags.cfg'}"])  # its own flags file
    assert replay.fgsm_methods == ["fgsm"]


def test_a_run_fgsm_folder_keeps_its_model_and_a_backwork_flags_cfg_is_never_replaced(
    tmp_path, small_cnn, fgsm_main
):
    """A cached model inside the folder is what the next run reads: kept. A flags.cfg no
    manifest lists (an older run's) stays as it is, beside run_fgsm's own file."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "flags.cfg").write_text("--backwork_labels=3\n")
    inside = out / "models" / "cnn.keras"
    with io.RunFolder(out, "earlier.py") as run:  # an earlier run that wrote the model
        run.start()
        models.save_model(small_cnn, inside)
        io.write_json(models.record_path(inside), models.data_record(data.load_mnist("sample")))
        io.write_text(out / "old.png", "x")
    assert _listed(out) == {"models/cnn.keras", "models/cnn.keras.json", "old.png"}
    assert fgsm_main([f"--output_dir={out}", f"--model_path={inside}", *SWEEP]) == 0
    assert (out / "flags.cfg").read_text() == "--backwork_labels=3\n"
    assert inside.exists() and (out / "models" / "cnn.keras.json").exists()
    assert not (out / "old.png").exists() and (out / "fgsm_flags.cfg").exists()


# --- the flags file, the log, the errors ----------------------------------------------------------


def test_the_flags_file_records_the_data_source_used(tmp_path, parse_fgsm_flags):
    fv = parse_fgsm_flags([f"--output_dir={tmp_path}"])
    assert fv.data_source == "auto"
    path = common_flags.write_flags_file(fv, str(tmp_path), name="x.cfg", data_source="sample")
    lines = [ln for ln in Path(path).read_text().splitlines() if not ln.startswith("#")]
    assert "--data_source=sample" in lines and "--data_source=auto" not in lines
    assert parse_fgsm_flags([f"--flagfile={path}"]).data_source == "sample"
    for given, source, recorded in [("npz", "npz", "npz"), ("auto", "arrays", "auto")]:
        fv = parse_fgsm_flags([f"--data_source={given}"])
        path = common_flags.write_flags_file(fv, str(tmp_path), name="y.cfg", data_source=source)
        assert parse_fgsm_flags([f"--flagfile={path}"]).data_source == recorded


def test_a_run_that_fell_back_records_that_source(
    tmp_path, model_path, fgsm_main, parse_fgsm_flags
):
    used = data.load_dataset("mnist", "auto").source  # offline: a local copy or the sample
    assert used in data.SOURCES and used != "auto"
    out = tmp_path / "out"
    argv = [f"--output_dir={out}", f"--model_path={model_path}", *SWEEP[1:]]
    assert fgsm_main(argv) == 0
    assert parse_fgsm_flags([f"--flagfile={out / 'fgsm_flags.cfg'}"]).data_source == used
    assert f"# --data_source=auto found {used}" in (out / "fgsm_flags.cfg").read_text()


def test_no_log_line_comes_twice(tmp_path, model_path, caplog, fgsm_main):
    with caplog.at_level(logging.INFO):
        argv = [f"--output_dir={tmp_path}", f"--model_path={model_path}", *SWEEP]
        assert fgsm_main([*argv, "--verbose=1"]) == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any("fgsm" in m and "accuracy" in m for m in messages)  # the progress is there
    assert len([m for m in messages if "distribution" in m]) == 1
    doubled = [m for m, n in collections.Counter(messages).items() if n > 1]
    assert doubled == []


@pytest.mark.parametrize(
    "message, flag",
    [
        ("labels [12] are outside the model's classes 0..9", "--backwork_labels"),
        ("labels=[1, 1] has duplicates", "--backwork_labels"),
        ("class name 'envelop' is not an ImageNet class", "--backwork_labels"),
        ("layer 'nope' is not in model 'mnist_cnn'; its layers: [...]", "--backwork_layer_names"),
        ("the last of layer_names must be the class probabilities", "--backwork_layer_names"),
        ("layer_cost_coeffs has 2 entries but the model exposes 5", "--backwork_layer_cost_coeffs"),
        ("input_size=(8, 8) is below mobilenet_v2's minimum side 32", "--backwork_image_size"),
        ("images of 3 sizes; pass image_size=(H, W) to resize them all", "--data_image_size"),
    ],
)
def test_library_errors_name_the_backwork_flag(message, flag, caplog):
    def fail():
        raise ValueError(message)

    with caplog.at_level(logging.ERROR):
        assert common_flags.run_with_clear_errors(fail, run_backwork.FLAG_HINTS) == 2
    (line,) = _errors(caplog)
    assert line.endswith(f"(flags: {flag})")


@pytest.mark.parametrize(
    "message",
    [
        "--backwork_labels: [12] is not among the model's 10 classes",  # named already
        "data.npz: train labels have shape (3, 2), expected [N]",  # the data's, not a flag's
        "x has 4 images but y has 3 labels",
    ],
)
def test_no_flag_is_named_twice_or_wrongly(message, caplog):
    def fail():
        raise ValueError(message)

    with caplog.at_level(logging.ERROR):
        common_flags.run_with_clear_errors(fail, run_backwork.FLAG_HINTS)
    assert "(flags:" not in _errors(caplog)[0]


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--backwork_layer_names=nope"], "--backwork_layer_names"),
        (["--backwork_layer_cost_coeffs=1,2"], "--backwork_layer_cost_coeffs"),
    ],
)
def test_backwork_runs_name_the_flag(tmp_path, caplog, backwork_main, model_path, argv, flag):
    with caplog.at_level(logging.ERROR):
        status = backwork_main(
            [f"--output_dir={tmp_path / 'o'}", f"--model_path={model_path}", *BACKWORK, *argv],
        )
    assert status == 2 and f"(flags: {flag})" in _errors(caplog)[0]
    assert not (tmp_path / "o" / io.LOCK_NAME).exists()


@pytest.mark.parametrize(
    "argv, flag",
    [
        (
            ["--backwork_model=mobilenet_v2", "--backwork_image_size=8"],
            "--backwork_image_size",
        ),
        (
            [
                "--backwork_model=mobilenet_v2",
                "--backwork_image_size=32",
                "--backwork_labels=envelop",
            ],
            "--backwork_labels",
        ),
    ],
)
def test_imagenet_backwork_runs_name_the_flag(tmp_path, caplog, backwork_main, argv, flag):
    base = [f"--output_dir={tmp_path / 'o'}", "--backwork_weights=none", "--backwork_rubbish"]
    with caplog.at_level(logging.ERROR):
        assert backwork_main([*base, *argv]) == 2
    assert f"(flags: {flag})" in _errors(caplog)[0]


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--fgsm_mode=project", "--fgsm_imagenet_image_size=8"], "--fgsm_imagenet_image_size"),
        (
            ["--fgsm_mode=project", "--fgsm_imagenet_image_size=32", "--fgsm_project_targets=1000"],
            "--fgsm_project_targets",
        ),
        (
            [
                "--fgsm_mode=survey",
                "--fgsm_survey_models=mobilenet_v2",
                "--fgsm_imagenet_image_size=32",
                "--fgsm_survey_image_size=8",
            ],
            "--fgsm_survey_image_size",
        ),
    ],
)
def test_fgsm_runs_name_the_flag(tmp_path, caplog, argv, flag, fgsm_main):
    base = [f"--output_dir={tmp_path / 'o'}", "--fgsm_imagenet_weights=none"]
    base.append("--fgsm_survey_weights=none")
    with caplog.at_level(logging.ERROR):
        assert fgsm_main([*base, *argv]) == 2
    assert f"(flags: {flag})" in _errors(caplog)[0]
    assert not (tmp_path / "o" / io.LOCK_NAME).exists()
