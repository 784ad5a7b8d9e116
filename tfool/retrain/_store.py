"""The round store: a retraining folder's round folders and ``state.json``, the settings
and fingerprints a resumed run must match, and the check that refuses any other folder."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfool import io, models
from tfool.backwork import BackworkConfig, load_result, result_arrays
from tfool.data import Dataset
from tfool.retrain._config import DEFAULT_TRAIN_CONFIG, RetrainConfig
from tfool.retrain._measure import RoundRecord

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"
#: The version of ``state.json`` this code writes: 2 holds the fingerprints of the model's
#: weights and of the data (a folder of version 1 has neither and is never resumed).
STATE_VERSION = 2
#: Settings that name things but do not decide them (the fingerprints do): not compared.
_NAMES_ONLY = (("model", "name"), ("data", "name"), ("data", "source"))
#: The ``RetrainConfig`` fields that are no settings of the rounds (or that are, through
#: the backworking and training settings they change).
_NOT_SETTINGS = ("rounds", "mode", "from_scratch", "resume", "epochs", "max_num_steps")


def _is_setting(field: str, mode: str) -> bool:
    """Whether a ``RetrainConfig`` field decides the rounds of ``mode`` (``adversarial_*``
    only those of ``adversarial`` mode)."""
    if field == "adversarial_epochs":  # decides train.epochs, which is compared
        return False
    if field.startswith("adversarial_"):
        return mode == "adversarial"
    return field not in _NOT_SETTINGS


def weights_fingerprint(model: keras.Model) -> str:
    """A SHA-256 (hex) of every weight array of ``model``: its dtype, shape and bytes, in the
    model's order. The same weights under another model or file name have the same
    fingerprint; one changed weight gives another."""
    import hashlib

    digest = hashlib.sha256()
    for w in model.get_weights():
        w = np.ascontiguousarray(w)
        digest.update(f"{w.dtype.str}{w.shape};".encode())
        digest.update(w.tobytes())
    return digest.hexdigest()


def round_settings(model, data, backwork_config, train_config, config) -> dict:
    """The JSON form of everything a resumed run must share with the interrupted one (the
    model's and the data's parts left out when they are ``None``). The configs are the
    rounds' own (``RetrainConfig.round_configs``)."""
    train = dataclasses.asdict(train_config)
    train.pop("verbose")
    settings = {
        "mode": config.mode,
        "from_scratch": bool(config.from_scratch),
        **{k: v for k, v in dataclasses.asdict(config).items() if _is_setting(k, config.mode)},
        "backwork": dataclasses.asdict(backwork_config),
        "train": train,
    }
    if data is not None:
        settings["data"] = {
            "name": data.name,
            "source": data.source,
            "num_train": len(data.x_train),
            "num_test": len(data.x_test),
            "class_names": list(data.class_names),
            "image_shape": list(data.image_shape),
            "fingerprint": models.data_fingerprint(data),
        }
    if model is not None:
        settings["model"] = {
            "name": model.name,
            "params": int(model.count_params()),
            "weights": weights_fingerprint(model),
        }
    return json.loads(json.dumps(settings))


def rounds_phrase(n: int) -> str:
    """``round 0`` or ``rounds 0 to <n - 1>``: the first ``n`` rounds, round 0 counted."""
    return "round 0" if n == 1 else f"rounds 0 to {n - 1}"


def _short(fingerprint) -> str:
    return f"{fingerprint[:12]}..." if isinstance(fingerprint, str) else str(fingerprint)


def _difference(group: str | None, key: str, saved, wanted) -> str:
    """One field that differs, as the rest of "the finished rounds were made with ..."."""
    if (group, key) == ("model", "weights"):
        return f"another model: weights fingerprint {_short(saved)} vs {_short(wanted)}"
    if (group, key) == ("model", "params"):
        return f"another model: {saved} parameters vs {wanted}"
    if (group, key) == ("data", "fingerprint"):
        return f"other data: fingerprint {_short(saved)} vs {_short(wanted)}"
    if group == "data":
        return f"data {key} {saved} but this run has {wanted}"
    what = {None: "retraining", "backwork": "backwork", "train": "training"}.get(group, group)
    return f"{what} {key} {saved} but this run asks for {wanted}"


def settings_differences(saved: dict, wanted: dict, unchecked=()) -> list[str]:
    """Every field of ``wanted`` (one level into its groups) that ``saved`` holds otherwise;
    ``unchecked`` names fields (``"backwork.labels"``) left out."""
    out = []
    for key, value in wanted.items():
        if isinstance(value, dict):
            old = saved.get(key) if isinstance(saved.get(key), dict) else {}
            for field, new in value.items():
                if (key, field) in _NAMES_ONLY or f"{key}.{field}" in unchecked:
                    continue
                if old.get(field, "(none)") != new:
                    out.append(_difference(key, field, old.get(field, "(none)"), new))
        elif key not in unchecked and saved.get(key, "(none)") != value:
            out.append(_difference(None, key, saved.get(key, "(none)"), value))
    if any(d.startswith("another model: weights") for d in out):  # one line says it
        out = [d for d in out if not d.startswith("another model: ") or "weights" in d]
    return out


class FolderConflict(ValueError):
    """A retraining folder that a run would reset or mix with: refused before any work.

    Attributes:
        output_dir: The folder.
        kind: ``finished`` (finished rounds, and the run does not resume them),
            ``differ`` (the run resumes them with other settings, model or data),
            ``unversioned`` (finished rounds saved without fingerprints, which cannot be
            checked) or ``unlisted`` (round folders but no ``state.json`` listing them).
        finished: The finished rounds (``unlisted``: the round folders found).
        differences: What differs, one phrase per field (``differ`` only).
    """

    def __init__(self, output_dir, kind: str, finished=(), differences=()):
        self.output_dir = str(output_dir)
        self.kind = kind
        self.finished = tuple(finished)
        self.differences = tuple(differences)
        super().__init__(self.describe())

    def describe(self, resume: str = "resume=True", output_dir: str = "output_dir") -> str:
        """The message, naming the resume switch and the output folder as ``resume`` and
        ``output_dir`` say (a run script passes its flags)."""
        where, n = self.output_dir, len(self.finished)
        elsewhere = f"write to another {output_dir}"
        if self.kind == "finished":
            return (
                f"{where} holds {n} finished round(s) ({rounds_phrase(n)}), which a run that does not "
                f"resume them would start afresh over; continue them with {resume}, or "
                f"{elsewhere}"
            )
        if self.kind == "differ":
            return (
                f"{resume}: the finished rounds in {where} were made with "
                + "; with ".join(self.differences)
                + f"; resume with the settings, model and data they were made with, or "
                f"{elsewhere}"
            )
        if self.kind == "unversioned":
            return (
                f"{resume}: the {n} finished round(s) in {where} were saved without "
                "fingerprints of their model's weights and data (an older state.json), so "
                f"whether this run continues them with the same model and data cannot be "
                f"checked; {elsewhere}, or remove {where} to start the rounds afresh"
            )
        folders = ", ".join(f"round_{r}" for r in self.finished)
        return (
            f"{where} holds round folders ({folders}) but no {STATE_FILE} listing them; "
            f"remove them, or {elsewhere}"
        )


def _round_folders(output_dir) -> list[int]:
    """The rounds ``r`` of the non-empty ``round_<r>/`` folders of ``output_dir``."""
    found = []
    for path in Path(output_dir).glob("round_*"):
        suffix = path.name[len("round_") :]
        if path.is_dir() and suffix.isdigit() and any(path.iterdir()):
            found.append(int(suffix))
    return sorted(found)


def check_folder(
    output_dir: str | os.PathLike,
    model: keras.Model | None,
    data: Dataset | None,
    backwork_config: BackworkConfig,
    config: RetrainConfig,
    train_config: models.TrainConfig = DEFAULT_TRAIN_CONFIG,
    *,
    unchecked: Sequence[str] = (),
) -> dict | None:
    """Refuses a retraining folder that ``retrain_rounds`` would reset or mix with; reads
    and writes nothing else, so it can run before any work.

    Finished rounds (listed in ``state.json``) are refused unless ``config.resume``; when
    resumed, they must have been made with the same settings (``config``, the backworking
    and training settings of the rounds), the same weights (``weights_fingerprint``) and
    the same data (``tfool.models.data_fingerprint``). A folder without finished rounds is
    free. Pass ``model`` or ``data`` as ``None`` to check everything else before they are
    loaded (and check again once they are).

    Args:
        output_dir: The mode's retraining folder.
        model: The starting model (round 0), or ``None``: not checked.
        data: Its data, or ``None``: not checked.
        backwork_config: The backworking settings, as given to ``retrain_rounds``.
        config: The retraining settings; ``config.resume`` says whether to continue.
        train_config: The training settings, as given to ``retrain_rounds``.
        unchecked: Settings left out of the check, as ``"backwork.labels"`` (what the
            caller cannot know yet).

    Returns:
        The folder's state (``read_state``) or ``None`` when it has none.

    Raises:
        FolderConflict: a ``ValueError`` whose message names the folder, the finished
            rounds and every field that differs, with what to do.
        ValueError: a damaged ``state.json``, or a finished round whose files are missing.
    """
    state = read_state(output_dir)
    if state is None:
        stray = _round_folders(output_dir)
        if stray:
            raise FolderConflict(output_dir, "unlisted", stray)
        return None
    finished = [r.round for r in state["records"]]
    if not finished:
        return state
    if not config.resume:
        raise FolderConflict(output_dir, "finished", finished)
    saved = state["settings"]
    if state["version"] < STATE_VERSION or "weights" not in saved.get("model", {}):
        raise FolderConflict(output_dir, "unversioned", finished)
    backwork_config, train_config = config.round_configs(backwork_config, train_config)
    wanted = round_settings(model, data, backwork_config, train_config, config)
    differences = settings_differences(saved, wanted, unchecked)
    if differences:
        raise FolderConflict(output_dir, "differ", finished, differences)
    for r in finished:
        names = ("backwork.npz", "model.keras") if r > 0 else ("backwork.npz",)
        for name in names:
            if not (round_dir(output_dir, r) / name).is_file():
                raise ValueError(
                    f"{round_dir(output_dir, r) / name} is missing, but {STATE_FILE} lists "
                    f"round {r} as finished; restore it, or remove {output_dir} to start the "
                    "rounds afresh"
                )
    return state


def round_dir(output_dir, r: int) -> Path:
    return Path(output_dir) / f"round_{r}"


def write_state(output_dir, settings, records) -> None:
    state = {
        "version": STATE_VERSION,
        "settings": settings,
        "records": [r.to_dict() for r in records],
    }
    io.write_json(Path(output_dir) / STATE_FILE, state)


def save_round(output_dir, record, model, fresh, settings, records) -> None:
    """Writes a round's model, backworked images and record, then marks it finished."""
    where = round_dir(output_dir, record.round)
    if record.round > 0:
        models.save_model(model, where / "model.keras")
    io.write_npz(where / "backwork.npz", **result_arrays(fresh))
    io.write_json(where / "record.json", record.to_dict())
    write_state(output_dir, settings, records)  # the round counts from here on


def read_state(output_dir: str | os.PathLike) -> dict | None:
    """The ``state.json`` of a retraining folder (``None`` when it has none): what a resumed
    run continues, checked so that a damaged file is refused before any work.

    Returns:
        ``{"version": int, "settings": dict, "records": [RoundRecord, ...]}``; a file
        written before versions were recorded is version 1.

    Raises:
        ValueError: the file is not JSON, lacks its ``settings`` and ``records``, or lists
            rounds other than 0, 1, 2, ...; the message names the file.
    """
    path = Path(output_dir) / STATE_FILE
    if not path.exists():
        return None
    try:
        state = io.read_json(path)
        records = [RoundRecord.from_dict(r) for r in state["records"]]
        if not isinstance(state["settings"], dict):
            raise TypeError("settings is not a mapping")
        version = state.get("version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise TypeError(f"version {version!r} is not an integer >= 1")
        rounds = [r.round for r in records]
        if rounds != list(range(len(rounds))):
            raise ValueError(f"it lists rounds {rounds}, expected 0, 1, 2, ...")
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(
            f"{path} is damaged ({type(err).__name__}: {err}); remove it (or its folder) to "
            "start the rounds afresh, or resume elsewhere"
        ) from err
    if version > STATE_VERSION:
        raise ValueError(
            f"{path} has version {version}, newer than this code's {STATE_VERSION}; resume "
            "with the code that wrote it, or write elsewhere"
        )
    return {"version": version, "settings": state["settings"], "records": records}


def load_rounds(output_dir, state, model, strategy) -> tuple[list, list, list]:
    """The records, models (``model`` first) and backwork runs of the finished rounds of
    ``state`` (``check_folder``'s), saved in ``output_dir`` (just ``model`` when none)."""
    records = state["records"] if state is not None else []
    if not records:
        logger.info("retrain: nothing to resume in %s; starting at round 0", output_dir)
        return [], [model], []
    fresh, loaded = [], [model]
    strategy = strategy or tf.distribute.get_strategy()
    for record in records:
        where = round_dir(output_dir, record.round)
        fresh.append(load_result(where / "backwork.npz"))
        if record.round > 0:
            with strategy.scope():
                loaded.append(models.load_model(where / "model.keras"))
    logger.info("retrain: resumed %d finished round(s) from %s", len(records), output_dir)
    return records, loaded, fresh
