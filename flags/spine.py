"""The one bridge between tfool's config dataclasses and absl flags.

``define_config_flags`` derives a config's flags from its fields: the name
(``--<prefix>_<field>``, or the field's ``setting(flag=...)``), the type from the
annotation (``bool``, ``int``, ``float``, ``str``, ``tuple[...]`` a comma-separated list,
``X | None`` unset when ``None``), an enum from ``setting(choices=...)``, the default and
the help from the field's entry in the class docstring. ``config_from_flags`` converts them
back for every class alike; its errors, and the parse-time checks it runs as validators,
come from the config's ``__post_init__`` with the leading ``field=value`` of the message
turned into ``--flag=value``. A class with presets (``tfool.config.register_preset``) gets
``--<prefix>_preset``: its derived flags are then unset by default and take the preset's
values, so a flags file holds what was set plus the preset's name.

``python -m flags.spine presets`` writes the ``.cfg`` files registered with
``register_preset_file`` from their presets (``--check``: only compares).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import operator
import os
import pkgutil
import re
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from absl import flags

from tfool import config as tfool_config
from tfool import io

# The flags this module defines belong to the module that asks for them.
flags.disclaim_key_flags()

#: The ``.cfg`` files of ``flags/`` that are presets: path from the repository root ->
#: (config class, flag prefix, preset name); filled by ``register_preset_file``.
PRESET_FILES: dict[str, tuple[type, str, str]] = {}


def preset_flag(prefix: str) -> str:
    """The name of the flag that picks a preset of the config with flag prefix ``prefix``."""
    return f"{prefix}_preset" if prefix else "preset"


def flag_names(
    cls: type, prefix: str, flag_values: flags.FlagValues | None = None, exclude: Iterable = ()
) -> dict[str, str]:
    """Field name -> flag name for ``cls``'s fields (only the flags defined on
    ``flag_values`` when given; never the fields in ``exclude``)."""
    names = {}
    for field in dataclasses.fields(cls):
        name = tfool_config.flag_name(field, prefix)
        if field.name not in exclude and (flag_values is None or name in flag_values):
            names[field.name] = name
    return names


def define_config_flags(
    cls: type,
    prefix: str,
    flag_values: flags.FlagValues = flags.FLAGS,
    *,
    exclude: Iterable[str] = (),
    defaults: Mapping[str, Any] | None = None,
    preset: str | None = None,
) -> dict[str, str]:
    """Defines one flag per field of the config dataclass ``cls``, and the validators that
    check them at parse time with ``cls.__post_init__``.

    Args:
        cls: A frozen config dataclass whose docstring documents every field.
        prefix: The flags' prefix (``backwork``: ``--backwork_<field>``); empty: bare names.
        flag_values: Where to define them.
        exclude: Fields without a flag (set by ``config_from_flags(**given)``).
        defaults: Flag defaults other than the fields' defaults (a script's output folder).
        preset: The default of ``--<prefix>_preset`` when ``cls`` has presets; ``None``:
            the class's own defaults.

    Returns:
        Field name -> flag name of the flags defined.
    """
    names = flag_names(cls, prefix, exclude=exclude)
    presets = tfool_config.preset_names(cls)
    docs, hints = tfool_config.field_docs(cls), tfool_config.field_types(cls)
    all_names = flag_names(cls, prefix)
    for field in dataclasses.fields(cls):
        if field.name not in names:
            continue
        default = None if presets else tfool_config.field_default(field)
        default = (defaults or {}).get(field.name, default)
        text = _help(docs[field.name], all_names)
        if presets:
            text += _preset_help(cls, prefix, field, preset)
        _define(names[field.name], hints[field.name], field, default, text, flag_values)
    if presets:
        flags.DEFINE_enum(
            preset_flag(prefix),
            preset,
            list(presets),
            f"Named settings of {cls.__name__} that its unset flags take: "
            + "; ".join(f"{n}: {tfool_config.preset_doc(cls, n).rstrip('.')}" for n in presets)
            + "."
            + (" Unset: its fields' defaults." if preset is None else ""),
            flag_values=flag_values,
        )
    first = next(iter(names), None)
    last: dict = {}  # the class's validators share one build per set of flag values
    for field, name in names.items():
        flags.register_validator(
            name,
            _checker(cls, prefix, flag_values, field, field == first, tuple(names), last),
            flag_values=flag_values,
        )
    return names


def _unflagged(cls, prefix, flag_values, names) -> dict[str, Any]:
    """The defaults of the fields without a derived flag whose flag name another flag of
    ``flag_values`` has (``--retrain_mode`` lists modes; ``--backwork_labels`` takes class
    names): the validators give them, never read that flag as the field's."""
    taken = {f: n for f, n in flag_names(cls, prefix).items() if f not in names}
    return {
        f.name: tfool_config.field_default(f)
        for f in dataclasses.fields(cls)
        if f.name in taken
        and taken[f.name] in flag_values
        and tfool_config.field_default(f) is not dataclasses.MISSING
    }


def config_from_flags(
    cls: type,
    prefix: str,
    flag_values: flags.FlagValues = flags.FLAGS,
    *,
    preset: str | None = None,
    **given: Any,
) -> Any:
    """The config ``cls`` from its parsed flags (those ``define_config_flags`` defined with
    ``prefix``): a flag left unset takes the preset's value (``--<prefix>_preset``, else
    ``preset``), else the field's default; ``given`` sets fields outright (so no config
    field may be called ``preset``).

    Raises:
        ValueError: the config refused a value; the message names the flag.
    """
    config, message, _ = _convert(cls, prefix, flag_values, given, preset)
    if message is not None:
        raise ValueError(message)
    return config


def flag_error(
    err: ValueError, cls: type, prefix: str, flag_values: flags.FlagValues = flags.FLAGS
) -> ValueError:
    """The error of a ``cls`` method (``AttackExperimentConfig.check_data``) whose message
    starts with ``field=value``, naming the flag that set the field instead."""
    names = flag_names(cls, prefix, flag_values)
    values = {f: flag_values[n].value for f, n in names.items()}
    values = {f: v for f, v in values.items() if v is not None}
    return ValueError(_flag_message(str(err), cls, names, values)[0])


def preset_flags_text(cls: type, prefix: str, name: str, path: str, exclude: Iterable = ()) -> str:
    """The flags file of ``cls``'s preset ``name``: its description, the preset flag, and
    (for the reader) every field whose value differs from the class's defaults."""
    config = tfool_config.preset(cls, name)
    try:
        plain = cls()
    except TypeError:  # fields without defaults: list them all
        plain = None
    lines = [
        f"# {tfool_config.preset_doc(cls, name)}",
        f"# {cls.__name__} preset {name!r}: use with --flagfile={path}. Written by",
        "# `python -m flags.spine presets`; edit the preset, not this file.",
        f"--{preset_flag(prefix)}={name}",
    ]
    field_meta = {f.name: f for f in dataclasses.fields(cls)}
    words = {name: f.metadata.get(tfool_config.WORDS) for name, f in field_meta.items()}
    for field, flag in flag_names(cls, prefix, exclude=exclude).items():
        value = getattr(config, field)
        if plain is not None and value == getattr(plain, field):
            continue
        if words[field]:
            lines.append(f"--{flag}={next(w for w, v in words[field].items() if v == value)}")
        elif value is None:
            none = field_meta[field].metadata.get(tfool_config.NONE)
            if none is not None:
                lines.append(f"--{flag}={_text(none)}")
        elif isinstance(value, bool):
            lines.append(f"--{'' if value else 'no'}{flag}")
        elif isinstance(value, tuple):
            lines.append(f"--{flag}={','.join(_default_item(v) for v in value)}")
        else:
            lines.append(f"--{flag}={_text(value)}")
    return "\n".join(lines) + "\n"


def register_preset_file(path: str, cls: type, prefix: str, name: str) -> None:
    """Declares ``path`` (from the repository root) the flags file of ``cls``'s preset
    ``name`` under the flag prefix ``prefix``."""
    PRESET_FILES[path] = (cls, prefix, name)


def preset_files() -> dict[str, str]:
    """Path -> the text of every registered preset file (after importing every module of
    the ``flags`` package, which register them)."""
    package = importlib.import_module("flags")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"flags.{module.name}")
    return {
        path: preset_flags_text(cls, prefix, name, path)
        for path, (cls, prefix, name) in sorted(PRESET_FILES.items())
    }


# ----------------------------------------------------------------------------------------
# Types, values and messages
# ----------------------------------------------------------------------------------------


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """``(type, optional)``: ``X | None`` is ``(X, True)``."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return functools.reduce(operator.or_, rest), True
    return hint, False


def _define(name: str, hint: Any, field, default: Any, text: str, flag_values) -> None:
    base, _ = _unwrap(hint)
    choices = tfool_config.choices(field)
    kwargs = dict(name=name, help=text, flag_values=flag_values)
    words = field.metadata.get(tfool_config.WORDS)
    if words is not None:
        shown = next((w for w, v in words.items() if v is default or v == default), None)
        flags.DEFINE_enum(default=shown, enum_values=list(words), **kwargs)
    elif typing.get_origin(base) is tuple:
        listed = None if default is None else [_default_item(v) for v in default]
        if choices is not None:
            kwargs["help"] = f"{text} From: {', '.join(map(str, choices))}."
        flags.DEFINE_list(default=listed, **kwargs)
    elif choices is not None:
        shown = None if default is None else str(default)
        flags.DEFINE_enum(default=shown, enum_values=[str(c) for c in choices], **kwargs)
    elif base in (bool, int, float, str):
        define = {
            bool: flags.DEFINE_boolean,
            int: flags.DEFINE_integer,
            float: flags.DEFINE_float,
            str: flags.DEFINE_string,
        }[base]
        define(default=default, **kwargs)
    else:
        raise TypeError(f"field {name!r} of type {hint} has no flag type; exclude it")


def _text(value: Any) -> str:
    """A value as a flag writes it."""
    if isinstance(value, (tuple, list)):
        return ",".join(_text(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def _default_item(value: Any) -> str:
    """An item of a list flag's default as the flag shows and writes it: a float in its
    shortest exact form (0 and 0.25, as the flags were written before they were derived)."""
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return _text(value)


def _item(hint: Any, text: str) -> Any:
    """``text`` as ``hint`` (a type or a union of types); left as given when it does not
    parse, for ``__post_init__`` to refuse."""
    for kind in typing.get_args(hint) or (hint,):
        try:
            if kind is bool:
                return {"true": True, "false": False}[text.lower()]
            return kind(text)
        except (ValueError, KeyError, TypeError):
            continue
    return text


def _from_flag(raw: Any, hint: Any) -> Any:
    """A parsed flag's value as the field's type: lists become tuples of their items'
    types; an empty string or list is ``None`` for an ``X | None`` field."""
    base, optional = _unwrap(hint)
    if optional and raw in ("", []):
        return None
    if typing.get_origin(base) is tuple:
        args = typing.get_args(base)
        kinds = args[:1] * len(raw) if args[-1:] == (Ellipsis,) else args
        return tuple(_item(kinds[min(i, len(kinds) - 1)], t) for i, t in enumerate(raw))
    if base in (int, float) and isinstance(raw, str):  # an enum of numbers
        return _item(base, raw)
    return raw


def _value(field: dataclasses.Field, raw: Any, hint: Any) -> Any:
    """A set flag's value as the field's: a word's value (``setting(words=...)``), ``None``
    for the value that stands for it (``setting(none=...)``), else ``_from_flag``."""
    words = field.metadata.get(tfool_config.WORDS)
    if words:
        return words[raw]
    none = field.metadata.get(tfool_config.NONE)
    if none is not None and raw == none:
        return None
    return _from_flag(raw, hint)


def _unparsed(value: Any, hint: Any) -> bool:
    """Whether a list item of ``value`` stayed a string where ``hint`` wants another type."""
    base, _ = _unwrap(hint)
    args = [a for a in typing.get_args(base) if a is not Ellipsis]
    want_text = any(str in (typing.get_args(a) or (a,)) for a in args)
    return isinstance(value, tuple) and not want_text and any(isinstance(v, str) for v in value)


def _convert(cls, prefix, flag_values, given, preset=None) -> tuple[Any, str | None, str | None]:
    """``(config, None, None)``, or ``(None, message, field)`` when the config refused a
    value: the message names the flag, ``field`` the field it blames (``None``: none)."""
    names = {f: n for f, n in flag_names(cls, prefix, flag_values).items() if f not in given}
    hints = tfool_config.field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {
        field: _value(fields[field], raw, hints[field])
        for field, name in names.items()
        if (raw := flag_values[name].value) is not None
    }
    chosen = None  # another class with this prefix may own a preset flag of the name
    if tfool_config.preset_names(cls) and preset_flag(prefix) in flag_values:
        chosen = flag_values[preset_flag(prefix)].value
    chosen = preset if chosen is None else chosen
    unparsed = [f for f, v in values.items() if _unparsed(v, hints[f])]
    try:
        if chosen is not None:
            config = dataclasses.replace(tfool_config.preset(cls, chosen), **values, **given)
        else:
            config = cls(**values, **given)
    except ValueError as err:
        return (None, *_flag_message(str(err), cls, names, values))
    except TypeError:
        if not unparsed:
            raise
    if unparsed:
        field = unparsed[0]
        message = f"--{names[field]}={_text(values[field])} is not a list of {hints[field]}"
        return None, message, field
    return config, None, None


def _flag_message(message: str, cls, names: dict, values: dict) -> tuple[str, str | None]:
    """``message`` with a leading ``field=value`` written as ``--flag=value``, and the
    field it names (``None`` when it names no field with a flag)."""
    for field in dataclasses.fields(cls):
        if field.name not in names or not message.startswith(f"{field.name}="):
            continue
        value = values.get(field.name, tfool_config.field_default(field))
        rest = message[len(field.name) + 1 :]
        for shown in (repr(value), str(value)):
            if rest.startswith(shown):
                rest = _text(value) + rest[len(shown) :]
                break
        rest = re.sub(r"\bNone\b", "unset", rest)  # on the command line None is unset
        return f"--{names[field.name]}={rest}", field.name
    return message, None


def _checker(cls, prefix, flag_values, field: str, first: bool, derived: tuple = (), last=None):
    """A validator of ``field``'s flag: builds the config (the fields without a derived
    flag, ``derived`` names those with one, at their defaults: ``_unflagged``), refuses
    what it blames on ``field`` (the first field's validator also what it blames on none).
    The validators of one class share ``last``, the outcome for the latest flag values, so
    a parse builds the config once, not once per flag."""
    last = {} if last is None else last

    def outcome() -> tuple[str | None, str | None]:
        key = repr([flag_values[n].value for n in _class_flags(cls, prefix, flag_values)])
        if last.get("key") != key:
            given = _unflagged(cls, prefix, flag_values, derived) if derived else {}
            try:
                _, message, blamed = _convert(cls, prefix, flag_values, given)
            except TypeError:  # fields the flags do not set and that have no default
                message = blamed = None
            last.update(key=key, found=(message, blamed))
        return last["found"]

    def check(_value) -> bool:
        message, blamed = outcome()
        if message is not None and (blamed == field or (blamed is None and first)):
            raise flags.ValidationError(message)
        return True

    return check


def _class_flags(cls, prefix, flag_values) -> list[str]:
    """Every flag of ``flag_values`` whose value can change ``cls``'s config: its fields'
    flags and its preset flag."""
    names = [n for n in _all_flag_names(cls, prefix) if n in flag_values]
    return [*names, preset_flag(prefix)] if preset_flag(prefix) in flag_values else names


@functools.cache
def _all_flag_names(cls, prefix) -> tuple[str, ...]:
    return tuple(flag_names(cls, prefix).values())


def _help(doc: str, names: Mapping[str, str]) -> str:
    """A field's doc as flag help: ````field```` and ````field=value```` become
    ``--flag`` and ``--flag=value``, ````None```` becomes unset."""

    def replace(match: re.Match) -> str:
        word, value = match.group(1), (match.group(2) or "").replace('"', "").replace("'", "")
        if word in names:
            return f"--{names[word]}{value}"
        return "unset" if word == "None" and not value else word + value

    text = re.sub(r"``(\w+)(=[^`]*)?``", replace, doc).replace("``", "")
    text = re.sub(r"(^|[.:] )unset\b", lambda m: m.group(1) + "Unset", text)
    return text[:1].upper() + text[1:]


def _preset_help(cls, prefix: str, field, default_preset: str | None) -> str:
    """What an unset flag of a config with presets means."""
    shown = []
    for name in tfool_config.preset_names(cls):
        value = getattr(tfool_config.preset(cls, name), field.name)
        shown.append(f"{name}: {_text(value) or 'unset'}")
    default = tfool_config.field_default(field)
    if default_preset is None and default is not dataclasses.MISSING:
        shown.append(f"no preset: {_text(default) or 'unset'}")
    return f" Unset: the value of --{preset_flag(prefix)} ({'; '.join(shown)})."


def main(argv: list[str]) -> int:
    """``presets`` writes the preset files; ``presets --check`` only compares them."""
    if argv[1:2] != ["presets"] or argv[2:] not in ([], ["--check"]):
        print("usage: python -m flags.spine presets [--check]", file=sys.stderr)
        return 2
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    stale = []
    for path, text in preset_files().items():
        full = os.path.join(root, path)
        if os.path.exists(full) and open(full, encoding="utf-8").read() == text:
            continue
        stale.append(path)
        if argv[2:] != ["--check"]:
            io.write_text(full, text)
    verb = "differ from their presets" if argv[2:] else "written"
    print(f"{len(stale)} preset file(s) {verb}: {' '.join(stale) or '-'}")
    return 1 if stale and argv[2:] else 0


if __name__ == "__main__":  # the registry lives in the imported module, not in __main__
    sys.exit(importlib.import_module("flags.spine").main(sys.argv))
