"""What every config dataclass of tfool shares: its fields' documentation, choices and flag
names, named presets, and the settings common to every run (``CommonConfig``).

A config is a frozen dataclass; each field is documented once, in the ``Attributes:``
section of the class docstring, and checked once, in ``__post_init__``. ``setting`` adds
what the command line needs to know about a field (its closed set of values, its flag name
when that is not ``<prefix>_<field>``); ``flags/spine.py`` derives the absl flags from
those, and this module never imports absl.

    @dataclasses.dataclass(frozen=True)
    class MyConfig:
        '''Attributes:
            init: How the images start: ``uniform`` or ``zeros``.
        '''

        init: str = setting("uniform", choices=("uniform", "zeros"))

    register_preset(MyConfig, "zeros", lambda: MyConfig(init="zeros"))
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import numbers
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tfool import data

#: Field metadata keys: the allowed values of a field, its flag's name, the words its
#: flag takes for values that are not strings (``{"auto": None, "true": True}``), and the
#: flag value that stands for ``None`` (``0``, as flags files of earlier versions wrote it).
CHOICES, FLAG, WORDS, NONE = "choices", "flag", "words", "none"

_PRESETS: dict[type, dict[str, Callable[[], Any]]] = {}


def setting(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    choices: Sequence[Any] | None = None,
    flag: str | None = None,
    words: Mapping[str, Any] | None = None,
    none: Any = None,
) -> Any:
    """A config field (``dataclasses.field``) with what its flag needs.

    Args:
        default: The field's default.
        default_factory: Or a function making it.
        choices: The values the field takes (a closed set: its flag is an enum);
            ``__post_init__`` still checks them.
        flag: The flag's full name when it is not ``<prefix>_<field>`` (a name published
            before the config existed, such as ``verbose`` or ``lr_schedule``).
        words: The words the flag takes, each standing for a value (its flag is an enum
            of them): ``{"auto": None, "true": True, "false": False}``.
        none: A value of the flag that stands for ``None`` (``0``: ``--fgsm_steps=0`` is
            ``steps=None``; flags files of earlier versions wrote 0 for unset).
    """
    metadata = {}
    if choices is not None:
        metadata[CHOICES] = tuple(choices)
    if flag is not None:
        metadata[FLAG] = flag
    if words is not None:
        metadata[WORDS] = dict(words)
    if none is not None:
        metadata[NONE] = none
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def choices(field: dataclasses.Field) -> tuple | None:
    """The values ``field`` takes (``setting(choices=...)``); ``None``: not a closed set."""
    return field.metadata.get(CHOICES)


def flag_name(field: dataclasses.Field, prefix: str) -> str:
    """The name of ``field``'s flag: ``setting(flag=...)``, else ``<prefix>_<field>`` (the
    bare field name when ``prefix`` is empty)."""
    return field.metadata.get(FLAG) or (f"{prefix}_{field.name}" if prefix else field.name)


def field_types(cls: type) -> dict[str, Any]:
    """The resolved annotation of every field of the dataclass ``cls``."""
    return dict(_field_types(cls))


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)  # slow: read once per class
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def field_default(field: dataclasses.Field) -> Any:
    """``field``'s default value; ``dataclasses.MISSING`` when it has none."""
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def field_docs(cls: type) -> dict[str, str]:
    """Each field's entry in the ``Attributes:`` section of ``cls``'s docstring, its lines
    joined by single spaces.

    Raises:
        ValueError: a field without an entry (every field is documented).
    """
    return dict(_field_docs(cls))


@functools.cache
def _field_docs(cls: type) -> dict[str, str]:
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    docs: dict[str, list[str]] = {}
    inside, current, indent = False, None, None
    for line in lines:
        if not inside:
            inside = line.strip() == "Attributes:"
            continue
        if line.strip() and not line.startswith(" "):
            break  # the next section
        stripped = line.strip()
        here = len(line) - len(line.lstrip())
        entry = re.match(r"(\w+)(?: \([^)]*\))?: (.*)", stripped)
        if entry and (indent is None or here <= indent):
            indent, current = here, entry.group(1)
            docs[current] = [entry.group(2)]
        elif current is not None and stripped:
            docs[current].append(stripped)
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in docs]
    if missing:
        raise ValueError(
            f"{cls.__name__} does not document {', '.join(missing)} in its Attributes section"
        )
    return {name: " ".join(text) for name, text in docs.items()}


def register_preset(cls: type, name: str, factory: Callable[[], Any]) -> None:
    """Registers ``factory()`` as ``cls``'s preset ``name`` (its flag ``--<prefix>_preset``
    then takes ``name``). The first line of ``factory``'s docstring describes it."""
    _PRESETS.setdefault(cls, {})[name] = factory
    _made.pop((cls, name), None)


#: Each preset as made once: configs are frozen, so one instance serves every caller.
_made: dict[tuple[type, str], Any] = {}


def preset(cls: type, name: str) -> Any:
    """``cls``'s preset ``name`` (a frozen config, made once).

    Raises:
        ValueError: an unknown name.
    """
    found = _PRESETS.get(cls, {})
    if name not in found:
        raise ValueError(f"preset={name!r} is not one of {preset_names(cls)} of {cls.__name__}")
    if (cls, name) not in _made:
        _made[cls, name] = found[name]()
    return _made[cls, name]


def preset_names(cls: type) -> tuple[str, ...]:
    """The names of ``cls``'s presets, in the order they were registered."""
    return tuple(_PRESETS.get(cls, {}))


def preset_doc(cls: type, name: str) -> str:
    """The first line of the docstring of ``cls``'s preset ``name`` (empty if none)."""
    doc = inspect.getdoc(_PRESETS[cls][name]) or ""
    return doc.splitlines()[0] if doc else ""


def fields_to_dict(config: Any) -> dict[str, Any]:
    """A config's fields as plain JSON values: tuples become lists, nested configs dicts."""

    def plain(value):
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return fields_to_dict(value)
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


@dataclasses.dataclass(frozen=True)
class CommonConfig:
    """The common settings of every run script.

    Attributes:
        output_dir: Folder that receives every output file of the run; created if missing.
        seed: Seed of every random choice (weights, shuffling, noise); an integer >= 0.
        dataset: Which dataset to load: mnist or fashion_mnist (from ``data_source``),
            arrays (the .npz file given by ``data_dir``, holding x_train, y_train, x_test,
            y_test and optionally class_names; uint8 0..255 or float [0, 1] images
            [N, H, W(, C)]) or folder (``data_dir`` holds one subfolder of
            .png/.jpg/.jpeg/.bmp/.gif images per class, named after it; 20% of each class
            becomes the test split).
        data_source: Where the data comes from: auto (a local copy, else the keras
            download, else the embedded sample), npz (mnist.npz in ``data_dir`` or the keras
            cache), idx (the four IDX files in ``data_dir``), keras (download) or sample
            (embedded 4,000/1,000 MNIST sample). Ignored by ``dataset='arrays'`` and
            ``dataset='folder'``.
        data_dir: Folder holding mnist.npz or the IDX files (optional for mnist and
            fashion_mnist); the .npz file of ``dataset='arrays'``; the image folder of
            ``dataset='folder'``; ``None``: none.
        verbosity: Console output: 0 quiet, 1 progress and summary, 2 also Keras'
            per-batch bars.
        image_size: Only for ``dataset='folder'``: (height, width) in pixels, two integers
            >= 1, every image is resized to, bilinear; ``None`` keeps the images' own size,
            which must then be the same for all.
    """

    output_dir: str = "out"
    seed: int = 0
    dataset: str = setting("mnist", choices=data.DATASETS)
    data_source: str = setting("auto", choices=data.SOURCES)
    data_dir: str | None = None
    verbosity: int = setting(1, flag="verbose")
    image_size: tuple[int, int] | None = setting(None, flag="data_image_size")

    def __post_init__(self):
        if not self.output_dir.strip():
            raise ValueError(f"output_dir={self.output_dir!r} is empty; expected a folder path")
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, numbers.Integral)
            or self.seed < 0
        ):
            raise ValueError(f"seed={self.seed!r} must be an integer >= 0")
        if self.dataset not in data.DATASETS:
            raise ValueError(f"dataset={self.dataset!r} is not one of {data.DATASETS}")
        if self.data_source not in data.SOURCES:
            raise ValueError(f"data_source={self.data_source!r} is not one of {data.SOURCES}")
        if self.verbosity not in (0, 1, 2):
            raise ValueError(f"verbosity={self.verbosity!r} must be 0, 1 or 2")
        size = self.image_size
        if size is not None and (
            len(size) != 2 or not all(isinstance(v, numbers.Integral) and v >= 1 for v in size)
        ):
            raise ValueError(
                f"image_size={size!r} must be HEIGHT,WIDTH: two integers >= 1 (e.g. 64,64), "
                "or None to keep the images' own size"
            )
