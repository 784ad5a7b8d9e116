"""Retraining folders: finished rounds are never reset, nor continued with other settings,
weights or data, and a refused run changes nothing in the folder."""

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

# the tiny settings of tests/test_retrain.py, shared
from test_retrain import EXTRA, TINY_BACKWORK, TINY_TRAIN, rc  # noqa: E402, F401
from tiny_runs import BACKWORK_ARGV, ROUNDS_ARGV

import run_backwork
from flags import backwork as backwork_flags
from flags import common as common_flags
from flags import model as model_flags
from flags import retrain as retrain_flags
from tfool import data, models, retrain
from tfool.retrain import _store as retrain_store


def snapshot(root) -> dict:
    """Every file (its bytes) and folder under ``root``."""
    root = Path(root)
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else "folder"
        for p in sorted(root.rglob("*"))
    }


class StopAfter(retrain.RetrainCallback):
    """Ctrl-C right after a round is finished."""

    def __init__(self, round_index):
        self.round_index = round_index

    def on_round_end(self, record, model, backworked):
        if record.round == self.round_index:
            raise KeyboardInterrupt


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def cut_run(small_cnn, tiny_data, tmp_path_factory):
    """Two of three rounds (0 and 1) finished, then Ctrl-C: the folder to protect."""
    out = tmp_path_factory.mktemp("folders") / "uniform"
    collect = Collect()
    logging.getLogger("tfool.retrain").addHandler(collect)
    try:
        result = retrain.retrain_rounds(
            small_cnn,
            tiny_data,
            TINY_BACKWORK,
            rc(2),
            TINY_TRAIN,
            output_dir=out,
            callbacks=[StopAfter(1)],
        )
    finally:
        logging.getLogger("tfool.retrain").removeHandler(collect)
    return result, out, collect.messages


@pytest.fixture()
def folder(cut_run, tmp_path):
    """A copy of the finished rounds, to damage."""
    where = tmp_path / "uniform"
    shutil.copytree(cut_run[1], where)
    return where


def check(out, model, data_, backwork_config=TINY_BACKWORK, config=None, **kw):
    config = config or rc(2, resume=True)
    return retrain.check_folder(out, model, data_, backwork_config, config, TINY_TRAIN, **kw)


def test_the_interrupt_counts_round_0(cut_run):
    result, out, messages = cut_run
    assert result.interrupted and [r.round for r in result.records] == [0, 1]
    assert any(
        m.startswith("retraining interrupted with 2 finished round(s) (rounds 0 to 1)")
        and str(out) in m
        for m in messages
    ), messages
    state = json.loads((out / retrain.STATE_FILE).read_text())
    assert state["version"] == retrain.STATE_VERSION and len(state["records"]) == 2


def test_the_same_model_and_settings_resume(cut_run, small_cnn, tiny_data):
    _, out, _ = cut_run
    state = check(out, retrain.copy_model(small_cnn), tiny_data)  # same weights, new object
    assert [r.round for r in state["records"]] == [0, 1]
    saved = state["settings"]
    assert saved["model"]["weights"] == retrain.weights_fingerprint(small_cnn)
    assert saved["data"]["fingerprint"] == models.data_fingerprint(tiny_data)


def test_a_run_without_resume_is_refused_and_changes_nothing(cut_run, small_cnn, tiny_data):
    _, out, _ = cut_run
    before = snapshot(out)
    with pytest.raises(retrain.FolderConflict) as err:
        retrain.retrain_rounds(
            small_cnn, tiny_data, TINY_BACKWORK, rc(3), TINY_TRAIN, output_dir=out
        )
    assert err.value.kind == "finished" and err.value.finished == (0, 1)
    assert str(err.value) == (
        f"{out} holds 2 finished round(s) (rounds 0 to 1), which a run that does not resume "
        "them would start afresh over; continue them with resume=True, or write to another "
        "output_dir"
    )
    assert snapshot(out) == before


def test_other_weights_of_the_same_architecture_are_refused(cut_run, small_cnn, tiny_data):
    _, out, _ = cut_run
    other = retrain.copy_model(small_cnn)
    weights = other.get_weights()
    weights[0] = weights[0] + np.float32(1e-4)
    other.set_weights(weights)
    assert other.count_params() == small_cnn.count_params()
    before = snapshot(out)
    with pytest.raises(retrain.FolderConflict) as err:
        retrain.retrain_rounds(
            other,
            tiny_data,
            TINY_BACKWORK,
            rc(2, resume=True),
            TINY_TRAIN,
            output_dir=out,
        )
    old, new = retrain.weights_fingerprint(small_cnn), retrain.weights_fingerprint(other)
    assert err.value.differences == (
        f"another model: weights fingerprint {old[:12]}... vs {new[:12]}...",
    )
    assert str(err.value).startswith(
        f"resume=True: the finished rounds in {out} were made with another model: weights "
        f"fingerprint {old[:12]}... vs {new[:12]}...; resume with the settings, model and data "
        "they were made with, or write to another output_dir"
    )
    assert snapshot(out) == before


def test_other_labels_are_named(cut_run, small_cnn, tiny_data):
    _, out, _ = cut_run
    before = snapshot(out)
    three = dataclasses.replace(TINY_BACKWORK, labels=(0, 1, 2))
    with pytest.raises(retrain.FolderConflict) as err:
        retrain.retrain_rounds(
            small_cnn, tiny_data, three, rc(2, resume=True), TINY_TRAIN, output_dir=out
        )
    assert err.value.differences == ("backwork labels [0, 1] but this run asks for [0, 1, 2]",)
    assert snapshot(out) == before


def test_other_data_is_refused(cut_run, small_cnn, tiny_data):
    _, out, _ = cut_run
    x = tiny_data.x_train.copy()
    x[5, 3, 3, 0] = 1.0 - x[5, 3, 3, 0]
    changed = dataclasses.replace(tiny_data, x_train=x)
    with pytest.raises(retrain.FolderConflict) as err:
        check(out, small_cnn, changed)
    (difference,) = err.value.differences
    assert difference.startswith("other data: fingerprint ")
    fewer = tiny_data.head(150, 100)
    with pytest.raises(retrain.FolderConflict) as err:
        check(out, small_cnn, fewer)
    assert "data num_train 200 but this run has 150" in err.value.differences


def test_every_differing_field_is_named(cut_run, small_cnn, tiny_data):
    _, out, _ = cut_run
    config = rc(2, resume=True, num_zero=11, fgsm_eps=(0.2,), from_scratch=True)
    train = dataclasses.replace(TINY_TRAIN, learning_rate=2e-3)
    backwork_config = dataclasses.replace(TINY_BACKWORK, reference_cost_coeff=0.25)
    with pytest.raises(retrain.FolderConflict) as err:
        retrain.check_folder(out, small_cnn, tiny_data, backwork_config, config, train)
    assert set(err.value.differences) == {
        "retraining from_scratch False but this run asks for True",
        "retraining num_zero 10 but this run asks for 11",
        "retraining fgsm_eps [0.1, 0.25] but this run asks for [0.2]",
        "backwork reference_cost_coeff 0.5 but this run asks for 0.25",
        "training learning_rate 0.001 but this run asks for 0.002",
    }
    assert "; with training learning_rate 0.001 but this run asks for 0.002" in str(err.value)


def test_model_and_data_can_be_checked_later(cut_run):
    """Before the model and data are loaded, everything else is checked."""
    _, out, _ = cut_run
    assert check(out, None, None)["records"]
    three = dataclasses.replace(TINY_BACKWORK, labels=(0, 1, 2))
    assert check(out, None, None, three, unchecked=["backwork.labels"])["records"]
    with pytest.raises(retrain.FolderConflict, match=r"backwork labels \[0, 1\] but"):
        check(out, None, None, three)
    with pytest.raises(retrain.FolderConflict, match="finished round"):
        check(out, None, None, config=rc(2))


def test_an_older_state_without_fingerprints_is_refused(folder, small_cnn, tiny_data):
    state = json.loads((folder / retrain.STATE_FILE).read_text())
    del state["version"], state["settings"]["model"]["weights"]
    del state["settings"]["data"]["fingerprint"]
    (folder / retrain.STATE_FILE).write_text(json.dumps(state))
    before = snapshot(folder)
    with pytest.raises(retrain.FolderConflict) as err:
        check(folder, small_cnn, tiny_data)
    assert err.value.kind == "unversioned"
    assert str(err.value) == (
        f"resume=True: the 2 finished round(s) in {folder} were saved without fingerprints of "
        "their model's weights and data (an older state.json), so whether this run continues "
        "them with the same model and data cannot be checked; write to another output_dir, or "
        f"remove {folder} to start the rounds afresh"
    )
    with pytest.raises(retrain.FolderConflict, match="holds 2 finished round"):
        check(folder, small_cnn, tiny_data, config=rc(2))
    assert snapshot(folder) == before


def test_an_older_state_without_finished_rounds_is_started_afresh(folder, small_cnn, tiny_data):
    for r in (0, 1):
        shutil.rmtree(folder / f"round_{r}")
    (folder / retrain.STATE_FILE).write_text(json.dumps({"settings": {}, "records": []}))
    for resume in (False, True):
        state = check(folder, small_cnn, tiny_data, config=rc(1, resume=resume))
        assert state == {"version": 1, "settings": {}, "records": []}


def test_round_folders_without_a_state_are_refused(folder, small_cnn, tiny_data):
    (folder / retrain.STATE_FILE).unlink()
    before = snapshot(folder)
    for resume in (False, True):
        with pytest.raises(retrain.FolderConflict) as err:
            check(folder, small_cnn, tiny_data, config=rc(2, resume=resume))
        assert str(err.value) == (
            f"{folder} holds round folders (round_0, round_1) but no state.json listing them; "
            "remove them, or write to another output_dir"
        )
    assert snapshot(folder) == before


def test_a_missing_round_file_is_refused(folder, small_cnn, tiny_data):
    (folder / "round_1" / "model.keras").unlink()
    with pytest.raises(ValueError, match=r"round_1/model.keras is missing, but state.json"):
        check(folder, small_cnn, tiny_data)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s["records"].reverse(), r"lists rounds \[1, 0\]"),
        (lambda s: s.update(version="2"), "version '2'"),
    ],
)
def test_a_damaged_state_is_refused(folder, change, message):
    state = json.loads((folder / retrain.STATE_FILE).read_text())
    change(state)
    (folder / retrain.STATE_FILE).write_text(json.dumps(state))
    with pytest.raises(ValueError, match=f"state.json is damaged .*{message}"):
        retrain.read_state(folder)


def test_a_newer_state_is_refused(folder):
    state = json.loads((folder / retrain.STATE_FILE).read_text())
    state["version"] = retrain.STATE_VERSION + 1
    (folder / retrain.STATE_FILE).write_text(json.dumps(state))
    with pytest.raises(ValueError, match="newer than this code's"):
        retrain.read_state(folder)


def test_weights_fingerprint_follows_the_values_not_the_names():
    a = models.build_mnist_cnn(conv_filters=(4,), fc_units=8, seed=0)
    b = models.build_mnist_cnn(conv_filters=(4,), fc_units=8, seed=0)
    assert a.name != b.name or a is not b
    assert retrain.weights_fingerprint(a) == retrain.weights_fingerprint(b)
    weights = b.get_weights()
    weights[-1] = np.nextafter(weights[-1], np.float32(1))  # one ulp
    b.set_weights(weights)
    assert retrain.weights_fingerprint(a) != retrain.weights_fingerprint(b)
    assert len(retrain.weights_fingerprint(a)) == 64


# ---------------------------------------------------------------- run_backwork.py

SMALL = [*BACKWORK_ARGV, "--retrain_rounds=2", *ROUNDS_ARGV]


@pytest.fixture(scope="module")
def sample_data():
    return data.load_dataset("mnist", "sample")


@pytest.fixture()
def script_folder(tmp_path, model_path, small_cnn, sample_data, cut_run, parse_backwork_flags):
    """An output folder whose uniform rounds 0 and 1 were made with the flags of ``SMALL``
    and the model at ``model_path`` (the records and files of ``cut_run``), beside the
    outputs of its backwork run."""
    out = tmp_path / "out"
    fv = parse_backwork_flags([f"--output_dir={out}", f"--model_path={model_path}", *SMALL])
    assert common_flags.common_config(fv).data_source == "sample"
    (config,) = retrain_flags.retrain_configs(fv)
    backwork_config, train_config = config.round_configs(
        backwork_flags.backwork_config(fv), model_flags.train_config(fv)
    )
    settings = retrain_store.round_settings(
        small_cnn, sample_data, backwork_config, train_config, config
    )
    where = out / "retrain" / "uniform"
    shutil.copytree(cut_run[1], where)
    state = json.loads((where / retrain.STATE_FILE).read_text())
    state["settings"] = settings
    (where / retrain.STATE_FILE).write_text(json.dumps(state))
    for name in ("images.npz", "flags.cfg", "backworked.png"):
        (out / name).write_bytes(b"the earlier run's " + name.encode())
    return out


@pytest.fixture()
def other_model_path(tmp_path, small_cnn):
    """Another model of ``small_cnn``'s architecture (its weights times 1.01), saved."""
    other = retrain.copy_model(small_cnn)
    other.set_weights([w * np.float32(1.01) for w in other.get_weights()])
    path = tmp_path / "other.keras"
    models.save_model(other, path)
    return path


def _one_error(caplog) -> str:
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    return record.getMessage()


def _worked(caplog) -> bool:
    return any(w in r.getMessage() for r in caplog.records for w in ("backworking", "trained"))


def test_script_refuses_finished_rounds_without_resume(
    script_folder, model_path, backwork_main, caplog
):
    out, before = script_folder, snapshot(script_folder)
    argv = [f"--output_dir={out}", f"--model_path={model_path}", *SMALL]
    with caplog.at_level(logging.INFO):
        status = backwork_main([*argv, "--retrain_mode=control,uniform"])
    assert status == 2
    assert _one_error(caplog) == (
        f"error: {out}/retrain/uniform holds 2 finished round(s) (rounds 0 to 1), which a run "
        "that does not resume them would start afresh over; continue them with "
        "--retrain_resume, or write to another --output_dir"
    )
    assert snapshot(out) == before and not _worked(caplog)  # control/ not even made


def test_script_names_other_labels_before_any_work(
    script_folder, model_path, backwork_main, caplog
):
    out, before = script_folder, snapshot(script_folder)
    argv = [f"--output_dir={out}", f"--model_path={model_path}", *SMALL, "--retrain_resume"]
    with caplog.at_level(logging.INFO):
        status = backwork_main([*argv, "--backwork_labels=0,1"])
    assert status == 2
    assert _one_error(caplog).startswith(
        f"error: --retrain_resume: the finished rounds in {out}/retrain/uniform were made with "
        "backwork labels [0, 7] but this run asks for [0, 1]; "
    )
    assert snapshot(out) == before and not _worked(caplog)


def test_script_refuses_a_model_it_would_train(script_folder, tmp_path, backwork_main, caplog):
    out, before = script_folder, snapshot(script_folder)
    missing = tmp_path / "models" / "new.keras"
    argv = [f"--output_dir={out}", f"--model_path={missing}", *SMALL, "--retrain_resume"]
    with caplog.at_level(logging.INFO):
        assert backwork_main(argv) == 2
    assert f"--model_path={missing} does not exist (this run would train" in _one_error(caplog)
    assert snapshot(out) == before and not _worked(caplog) and not missing.exists()


def test_script_checks_weights_and_data_once_loaded(
    script_folder, model_path, small_cnn, sample_data, parse_backwork_flags
):
    out = script_folder
    fv = parse_backwork_flags(
        [f"--output_dir={out}", f"--model_path={model_path}", *SMALL, "--retrain_resume"]
    )
    config = backwork_flags.backwork_config(fv)
    run_backwork._check_resume_state(str(out))  # what the flags decide: the same
    run_backwork._check_resume_state(str(out), small_cnn, sample_data, config)
    other = retrain.copy_model(small_cnn)
    other.set_weights([w * np.float32(1.01) for w in other.get_weights()])
    with pytest.raises(ValueError) as err:
        run_backwork._check_resume_state(str(out), other, sample_data, config)
    old, new = retrain.weights_fingerprint(small_cnn), retrain.weights_fingerprint(other)
    assert str(err.value).startswith(
        f"--retrain_resume: the finished rounds in {out}/retrain/uniform were made with "
        f"another model: weights fingerprint {old[:12]}... vs {new[:12]}...; "
    )
    with pytest.raises(ValueError, match="with other data: fingerprint"):
        run_backwork._check_resume_state(str(out), small_cnn, sample_data.head(3000), config)


def test_script_refuses_another_model_before_the_rounds_write(
    script_folder, other_model_path, backwork_main, caplog
):
    """Another model of the same architecture: refused, the rounds' folder untouched."""
    out, before = script_folder, snapshot(script_folder / "retrain")
    argv = [f"--output_dir={out}", f"--model_path={other_model_path}", *SMALL, "--retrain_resume"]
    with caplog.at_level(logging.INFO):
        assert backwork_main(argv) == 2
    assert "were made with another model: weights fingerprint" in _one_error(caplog)
    assert snapshot(out / "retrain") == before
    assert not any("retrain uniform round" in r.getMessage() for r in caplog.records)


def test_script_refuses_another_model_before_any_backwork(
    script_folder, other_model_path, backwork_main, caplog
):
    """Another model: refused before the backwork run rewrites the folder's images.npz,
    figures and flags.cfg (main checks once the model and data are loaded)."""
    out, before = script_folder, snapshot(script_folder)
    argv = [f"--output_dir={out}", f"--model_path={other_model_path}", *SMALL, "--retrain_resume"]
    with caplog.at_level(logging.INFO):
        assert backwork_main(argv) == 2
    assert "were made with another model: weights fingerprint" in _one_error(caplog)
    assert not any("backworking" in r.getMessage() for r in caplog.records)
    assert snapshot(out) == before
