"""Tests of the config spine: tfool/config.py (field docs, choices, flag names, presets) and
flags/spine.py (flags derived from config dataclasses and converted back)."""

from __future__ import annotations

import dataclasses
import os

import pytest
from absl import flags

import run_fgsm
from flags import common as common_flags
from flags import distribution as distribution_flags
from flags import fgsm as fgsm_flags
from flags import imagenet as imagenet_flags
from flags import model as model_flags
from flags import spine
from tfool import config, distribute, experiments, models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Toy:
    """A config of every kind of field.

    Attributes:
        steps: Steps to take, an integer >= 1.
        rate: Step size, > 0.
        clip: Whether to clip to ``bounds``.
        init: How to start: ``uniform`` or ``zeros``.
        bounds: Lower and upper bound (``None``: unbounded).
        coeffs: One coefficient per layer,
            any number of them.
        budget: Most seconds to spend; ``None``: no limit.
        note: A free text; ``None``: none.
        verbosity: How much to say (0..2).
    """

    steps: int = 10
    rate: float = 0.5
    clip: bool = True
    init: str = config.setting("uniform", choices=("uniform", "zeros"))
    bounds: tuple[float, float] | None = None
    coeffs: tuple[float, ...] = (1.0, 2.0)
    budget: int | None = None
    note: str | None = None
    verbosity: int = config.setting(1, flag="talk")

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps={self.steps} must be >= 1")
        if not self.rate > 0:
            raise ValueError(f"rate={self.rate!r} must be > 0")
        if self.bounds is not None and len(self.bounds) != 2:
            raise ValueError(f"bounds={self.bounds!r} is not (lower, upper)")
        if self.init not in ("uniform", "zeros"):
            raise ValueError(f"init={self.init!r} is unknown")
        if self.clip and self.bounds is None and self.init == "zeros":
            raise ValueError("clipping zeros needs bounds")


@dataclasses.dataclass(frozen=True)
class Preset:
    """A config with presets.

    Attributes:
        lr: Learning rate, > 0.
        steps: Steps to take, >= 1.
        labels: The labels to run.
    """

    lr: float = 0.1
    steps: int = 5
    labels: tuple[int, ...] = (0, 1)

    def __post_init__(self):
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr} must be > 0")


def _slow() -> Preset:
    """Small steps, many of them."""
    return Preset(lr=0.01, steps=50)


def _fast() -> Preset:
    """Large steps, few of them."""
    return Preset(lr=1.0, steps=2, labels=(3,))


config.register_preset(Preset, "slow", _slow)
config.register_preset(Preset, "fast", _fast)


def _parse(cls, prefix, argv=(), **kwargs):
    fv = flags.FlagValues()
    spine.define_config_flags(cls, prefix, fv, **kwargs)
    fv(["prog", *argv])
    return fv


# ----------------------------------------------------------------------------------------
# tfool/config.py
# ----------------------------------------------------------------------------------------


def test_field_docs_join_lines_and_need_every_field():
    docs = config.field_docs(Toy)
    assert list(docs) == [f.name for f in dataclasses.fields(Toy)]
    assert docs["coeffs"] == "One coefficient per layer, any number of them."

    @dataclasses.dataclass(frozen=True)
    class Undocumented:
        """Two fields, one documented.

        Attributes:
            a: Documented.
        """

        a: int = 0
        b: int = 1

    with pytest.raises(ValueError, match="Undocumented does not document b"):
        config.field_docs(Undocumented)


def test_setting_metadata():
    fields = {f.name: f for f in dataclasses.fields(Toy)}
    assert config.choices(fields["init"]) == ("uniform", "zeros")
    assert config.choices(fields["steps"]) is None
    assert config.flag_name(fields["steps"], "toy") == "toy_steps"
    assert config.flag_name(fields["steps"], "") == "steps"
    assert config.flag_name(fields["verbosity"], "toy") == "talk"
    assert Toy.init == "uniform"  # a setting is a plain default on the class


def test_presets_registry():
    assert config.preset_names(Preset) == ("slow", "fast")
    assert config.preset(Preset, "fast") == Preset(lr=1.0, steps=2, labels=(3,))
    assert config.preset_doc(Preset, "slow") == "Small steps, many of them."
    assert config.preset_names(Toy) == ()
    with pytest.raises(ValueError, match="preset='quick' is not one of"):
        config.preset(Preset, "quick")


def test_fields_to_dict_is_plain_json():
    assert config.fields_to_dict(Toy(bounds=(0.0, 1.0)))["bounds"] == [0.0, 1.0]
    assert config.fields_to_dict(models.TrainConfig())["schedule"] == "cosine"


# ----------------------------------------------------------------------------------------
# Flags derived from a config
# ----------------------------------------------------------------------------------------


def test_flags_take_names_types_defaults_and_help_from_the_fields():
    fv = _parse(Toy, "toy")
    assert fv.toy_steps == 10 and fv.toy_rate == 0.5 and fv.toy_clip is True
    assert fv.toy_init == "uniform" and fv["toy_init"].parser.enum_values == ["uniform", "zeros"]
    assert fv.toy_bounds is None and fv.toy_coeffs == ["1", "2"]
    assert fv.toy_budget is None and fv.toy_note is None and fv.talk == 1
    assert fv["toy_steps"].help == "Steps to take, an integer >= 1."
    assert fv["toy_clip"].help == "Whether to clip to --toy_bounds."  # fields become flags
    assert fv["toy_budget"].help == "Most seconds to spend; unset: no limit."
    assert "toy_preset" not in fv  # no presets, no preset flag
    assert {f.name for f in fv.flags_by_module_dict()[__name__]} >= {"toy_steps", "talk"}


def test_flags_convert_back_to_the_config():
    argv = [
        "--toy_steps=3",
        "--toy_rate=0.25",
        "--notoy_clip",
        "--toy_init=zeros",
        "--toy_bounds=-1,1",
        "--toy_coeffs=1e-5,10",
        "--toy_budget=7",
        "--toy_note=hi",
        "--talk=2",
    ]
    got = spine.config_from_flags(Toy, "toy", _parse(Toy, "toy", argv))
    assert got == Toy(3, 0.25, False, "zeros", (-1.0, 1.0), (1e-5, 10.0), 7, "hi", 2)
    assert spine.config_from_flags(Toy, "toy", _parse(Toy, "toy")) == Toy()


def test_unset_is_none():
    fv = _parse(Toy, "toy", ["--toy_bounds=", "--toy_note="])
    got = spine.config_from_flags(Toy, "toy", fv)
    assert (got.bounds, got.note, got.budget) == (None, None, None)


def test_given_fields_and_excluded_flags():
    fv = _parse(Toy, "toy", ["--toy_steps=4"], exclude=("verbosity",))
    assert "talk" not in fv
    got = spine.config_from_flags(Toy, "toy", fv, verbosity=0, rate=2.0)
    assert (got.steps, got.verbosity, got.rate) == (4, 0, 2.0)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--toy_steps=0"], r"flag --toy_steps=0: --toy_steps=0 must be >= 1"),
        (["--toy_rate=-0.5"], r"--toy_rate=-0.5 must be > 0"),
        (["--toy_bounds=1,2,3"], r"--toy_bounds=1.0,2.0,3.0 is not \(lower, upper\)"),
        (["--toy_init=zeros"], r"flag --toy_steps=10: clipping zeros needs bounds"),
        (["--toy_coeffs=1,x"], r"--toy_coeffs=1.0,x is not a list of tuple\[float, ...\]"),
        (["--toy_init=ones"], r"uniform\|zeros"),  # the enum's own check
    ],
)
def test_post_init_refuses_at_parse_time_naming_the_flag(argv, message):
    with pytest.raises(flags.IllegalFlagValueError, match=message):
        _parse(Toy, "toy", argv)


def test_conversion_errors_name_the_flag():
    fv = _parse(Toy, "toy")
    fv.unparse_flags()
    fv(["prog"])
    fv["toy_steps"].value = 0  # set behind the validators' back
    with pytest.raises(ValueError, match=r"^--toy_steps=0 must be >= 1$"):
        spine.config_from_flags(Toy, "toy", fv)
    with pytest.raises(ValueError, match=r"^steps=0 must be >= 1$"):  # a given field: no flag
        spine.config_from_flags(Toy, "toy", _parse(Toy, "toy"), steps=0)


def test_a_config_field_is_added_in_one_place():
    fields = [(f.name, f.type, f) for f in dataclasses.fields(Toy)]
    grown = dataclasses.make_dataclass(
        "Grown",
        [*fields, ("momentum", float, dataclasses.field(default=0.9))],
        frozen=True,
        namespace={"__post_init__": Toy.__post_init__},
    )
    grown.__doc__ = Toy.__doc__ + "    momentum: Adam's beta 1, in [0, 1).\n"
    fv = _parse(grown, "toy", ["--toy_momentum=0.5"])
    assert fv["toy_momentum"].help == "Adam's beta 1, in [0, 1)."
    assert spine.config_from_flags(grown, "toy", fv).momentum == 0.5
    assert spine.config_from_flags(grown, "toy", _parse(grown, "toy")).momentum == 0.9


# ----------------------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------------------


def test_a_preset_supplies_what_is_left_unset():
    fv = _parse(Preset, "p", ["--p_preset=slow", "--p_steps=7"])
    assert fv.p_lr is None and fv.p_steps == 7  # derived flags are unset by default
    assert spine.config_from_flags(Preset, "p", fv) == Preset(lr=0.01, steps=7)
    assert spine.config_from_flags(Preset, "p", _parse(Preset, "p")) == Preset()
    default = _parse(Preset, "p", preset="fast")
    assert spine.config_from_flags(Preset, "p", default) == _fast()
    assert "slow: 0.01" in fv["p_lr"].help and "fast: 1.0" in fv["p_lr"].help
    assert "no preset: 0.1" in fv["p_lr"].help
    assert "slow: Small steps, many of them; fast:" in fv["p_preset"].help


def test_a_script_may_pick_the_preset_the_flag_leaves_unset():
    fv = _parse(Preset, "p", ["--p_steps=4"])
    assert spine.config_from_flags(Preset, "p", fv, preset="fast") == Preset(1.0, 4, (3,))
    chosen = _parse(Preset, "p", ["--p_preset=slow"])
    assert spine.config_from_flags(Preset, "p", chosen, preset="fast") == _slow()


@dataclasses.dataclass(frozen=True)
class Worded:
    """A field whose flag takes words.

    Attributes:
        from_logits: Whether the model returns logits; ``None``: read from its graph.
    """

    from_logits: bool | None = config.setting(
        None, words={"auto": None, "true": True, "false": False}
    )


def test_flag_words_stand_for_values(tmp_path):
    fv = _parse(Worded, "w")
    assert fv.w_from_logits == "auto" and fv["w_from_logits"].parser.enum_values == [
        "auto",
        "true",
        "false",
    ]
    assert spine.config_from_flags(Worded, "w", fv) == Worded(None)
    fv = _parse(Worded, "w", ["--w_from_logits=false"])
    assert spine.config_from_flags(Worded, "w", fv) == Worded(False)
    config.register_preset(Worded, "logits", lambda: Worded(True))
    assert "--w_from_logits=true" in spine.preset_flags_text(Worded, "w", "logits", "x.cfg")


def test_preset_values_are_checked_at_parse_time():
    with pytest.raises(flags.IllegalFlagValueError, match="--p_lr=-1.0 must be > 0"):
        _parse(Preset, "p", ["--p_preset=fast", "--p_lr=-1"])


def test_a_flags_file_holds_what_was_set_and_the_preset(tmp_path):
    fv = _parse(Preset, "p", ["--p_preset=fast", "--p_steps=9"])
    path = common_flags.write_flags_file(fv, str(tmp_path), modules=[__name__])
    text = (tmp_path / "flags.cfg").read_text(encoding="utf-8")
    assert text.splitlines() == ["--p_preset=fast", "--p_steps=9"]
    again = _parse(Preset, "p", [f"--flagfile={path}"])
    assert spine.config_from_flags(Preset, "p", again) == Preset(lr=1.0, steps=9, labels=(3,))


def test_a_preset_file_replays_its_preset(tmp_path):
    text = spine.preset_flags_text(Preset, "p", "fast", "flags/fast.cfg")
    assert text.splitlines()[0] == "# Large steps, few of them."
    assert [ln for ln in text.splitlines() if not ln.startswith("#")] == [
        "--p_preset=fast",
        "--p_lr=1.0",
        "--p_steps=2",
        "--p_labels=3",
    ]
    (tmp_path / "fast.cfg").write_text(text, encoding="utf-8")
    fv = _parse(Preset, "p", [f"--flagfile={tmp_path / 'fast.cfg'}"])
    assert spine.config_from_flags(Preset, "p", fv) == _fast()


def test_every_preset_file_in_flags_is_its_preset():
    for path, text in spine.preset_files().items():
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            assert f.read() == text, f"{path}: run python -m flags.spine presets"
    assert spine.main(["spine", "presets", "--check"]) == 0
    assert spine.main(["spine", "presetz"]) == 2


@dataclasses.dataclass(frozen=True)
class Legacy:
    """A config whose flags take 0 for ``None``, and a list of choices.

    Attributes:
        steps: Steps to take, >= 1; 0 or None: automatic.
        size: A side in pixels; ``None``: the image's own.
        eps: Sizes, each >= 0.
        methods: Methods to run.
    """

    steps: int | None = config.setting(5, none=0)
    size: int | None = config.setting(None, none=0)
    eps: tuple[float, ...] = (0.0, 0.25, 1e-5, 0.1 + 0.2)
    methods: tuple[str, ...] = config.setting(("a",), choices=("a", "b"))

    def __post_init__(self):
        if self.size is not None and self.size < 1:
            raise ValueError(f"size={self.size} must be None or >= 1")


def test_a_flag_value_may_stand_for_none():
    assert _parse(Legacy, "x")["x_size"].default is None
    assert spine.config_from_flags(Legacy, "x", _parse(Legacy, "x")) == Legacy()
    zeros = _parse(Legacy, "x", ["--x_steps=0", "--x_size=0"])
    assert spine.config_from_flags(Legacy, "x", zeros) == Legacy(steps=None, size=None)
    with pytest.raises(flags.IllegalFlagValueError, match="--x_size=-1 must be unset or >= 1"):
        _parse(Legacy, "x", ["--x_size=-1"])
    text = spine.preset_flags_text
    config.register_preset(Legacy, "auto", lambda: Legacy(steps=None))
    try:
        assert "--x_steps=0\n" in text(Legacy, "x", "auto", "legacy.cfg")
    finally:
        del config._PRESETS[Legacy]


def test_list_defaults_are_written_exactly_and_shortest():
    fv = _parse(Legacy, "x")
    assert fv["x_eps"].default == ["0", "0.25", "1e-05", "0.30000000000000004"]
    assert spine.config_from_flags(Legacy, "x", fv).eps == Legacy().eps
    assert fv["x_methods"].help.endswith(" From: a, b.")


def test_a_method_error_names_the_flag():
    fv = _parse(Legacy, "x", ["--x_size=3"])
    err = spine.flag_error(ValueError("size=3 is too small for the data"), Legacy, "x", fv)
    assert str(err) == "--x_size=3 is too small for the data"


# ----------------------------------------------------------------------------------------
# The converted configs
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, prefix, exclude",
    [
        (config.CommonConfig, "", ()),
        (models.TrainConfig, "train", model_flags.FROM_COMMON),
        (distribute.DistributionConfig, "", ()),
        (experiments.AttackExperimentConfig, "fgsm", fgsm_flags.FROM_COMMON),
        *imagenet_flags.GROUPS,
    ],
)
def test_every_field_of_the_converted_configs_has_its_flag(cls, prefix, exclude):
    fv = flags.FlagValues()
    run_fgsm.define_flags(fv)
    fv(["prog"])
    docs = config.field_docs(cls)
    for field, name in spine.flag_names(cls, prefix, exclude=exclude).items():
        assert name in fv, name
        assert docs[field].split()[1] in fv[name].help, name  # help from the field's doc
    assert set(spine.flag_names(cls, prefix, exclude=exclude)) == {
        f.name for f in dataclasses.fields(cls) if f.name not in exclude
    }


def test_the_converted_configs_from_default_flags():
    fv = flags.FlagValues()
    common_flags.define_script_flags(fv, "out/x")
    fv(["prog"])
    assert common_flags.common_config(fv) == config.CommonConfig(output_dir="out/x")
    assert model_flags.train_config(fv) == models.TrainConfig()
    assert distribution_flags.distribution_config(fv) == distribute.DistributionConfig()
