"""A backworking result as arrays (``images.npz``) and back."""

from __future__ import annotations

import os
import zipfile

import numpy as np

from tfool.backwork._events import BackworkResult

_ARRAY_FIELDS = (
    "labels",
    "images",
    "probabilities",
    "history_steps",
    "history_images",
    "history_probs",
    "label_steps",
    "reinits",
    "converged",
    "cost",
)


def result_arrays(result: BackworkResult) -> dict[str, np.ndarray]:
    """The arrays of a result, for ``tfool.io.write_npz`` (``images.npz``)."""
    arrays = {name: np.asarray(getattr(result, name)) for name in _ARRAY_FIELDS}
    for key, value in result.cost_terms.items():
        arrays[f"cost_{key}"] = np.asarray(value)
    arrays["layer_names"] = np.asarray(result.layer_names)
    arrays["meta"] = np.asarray([result.steps, result.wall_time, float(result.interrupted)])
    return arrays


def load_result(path) -> BackworkResult:
    """Reloads a result written as ``images.npz``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is damaged, not an npz archive, lacks arrays of a backworking
            result or holds arrays of inconsistent shapes (the message names the file).
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"no backworking result at {path}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder, expected an images.npz file")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        missing = [k for k in (*_ARRAY_FIELDS, "meta", "layer_names") if k not in arrays]
        if not missing:
            steps, wall, interrupted = arrays["meta"]
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as err:
        reason = "not an npz archive of arrays" if "pickle" in str(err) else str(err)
        raise ValueError(f"{path} is not a readable backworking result: {reason}") from err
    if missing:
        raise ValueError(f"{path} is not a backworking result: missing arrays {missing}")
    images, labels = arrays["images"], arrays["labels"]
    if images.ndim != 5 or labels.shape != (images.shape[0],):
        raise ValueError(
            f"{path} is not a backworking result: images of shape {images.shape} for "
            f"labels of shape {labels.shape} (expected [L, E, H, W, C] and [L])"
        )
    terms = {k[5:]: arrays[k] for k in arrays if k.startswith("cost_")}
    return BackworkResult(
        **{k: arrays[k] for k in _ARRAY_FIELDS if k != "steps"},
        steps=int(steps),
        cost_terms=terms,
        layer_names=tuple(str(n) for n in arrays["layer_names"]),
        wall_time=float(wall),
        interrupted=bool(interrupted),
    )
