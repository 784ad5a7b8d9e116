"""Backworking flags (prefix ``backwork_``), converted once into a ``BackworkConfig``.

``tfool.backwork.BackworkConfig`` defines its settings: ``flags.spine`` derives one
``--backwork_<field>`` flag per field from it, and ``--backwork_preset`` (``paper``,
``original``, ``imagenet_rubbish``), whose values the flags left unset take; an ImageNet
model's ``--backwork_weights`` and ``--backwork_image_size`` are the flags of
``tfool.imagenet.ModelSpec``. Written here: ``--backwork_model`` (``mnist_cnn`` or an
ImageNet architecture), the labels (indices or class names), ``--backwork_seed`` (default
``--seed``), ``--backwork_rubbish``, ``--backwork_init_from`` and ``--tensorboard_dir``,
and the checks across flags.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from absl import flags

from flags import spine
from tfool import config as tfool_config
from tfool.backwork import BackworkConfig
from tfool.imagenet import ModelSpec

#: The prefix of ``BackworkConfig``'s flags.
PREFIX = "backwork"
#: Fields without a derived flag: the labels (``--backwork_labels`` also takes class
#: names), the seed (``--backwork_seed``, default ``--seed``) and the input range.
NOT_DERIVED = ("labels", "seed", "input_min", "input_max")
#: The preset of an ImageNet ``--backwork_model`` when ``--backwork_preset`` is unset.
IMAGENET_PRESET = "imagenet_rubbish"

spine.register_preset_file("flags/paper.cfg", BackworkConfig, PREFIX, "paper")
spine.register_preset_file("flags/original.cfg", BackworkConfig, PREFIX, "original")


def define_backwork_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines one ``--backwork_*`` flag per ``BackworkConfig`` field and
    ``--backwork_preset``, the model and label flags, ``--backwork_seed``,
    ``--backwork_rubbish``, ``--backwork_init_from`` and ``--tensorboard_dir``, with the
    checks across flags (each field's own checks are ``BackworkConfig``'s)."""
    fv = {"flag_values": flag_values}
    _define_target_flags(fv)
    spine.define_config_flags(ModelSpec, PREFIX, flag_values, exclude=("model",))
    spine.define_config_flags(BackworkConfig, PREFIX, flag_values, exclude=NOT_DERIVED)
    _define_run_flags(fv)
    _define_validators(flag_values)


def _define_target_flags(fv: dict) -> None:
    """What to fool: the model (an ImageNet one's weights and input size are the flags of
    ``tfool.imagenet.ModelSpec``) and its labels."""
    flags.DEFINE_list(
        name="backwork_labels",
        default=[str(lbl) for lbl in BackworkConfig().labels],
        help="Comma-separated target labels, all backworked in one batch: class indices or "
        "class names (e.g. envelope,goldfish for ImageNet models); the default stands for every "
        "class of a model with fewer than ten.",
        **fv,
    )
    flags.DEFINE_string(
        name="backwork_model",
        default="mnist_cnn",
        help="The classifier to fool: mnist_cnn (the reference CNN, or your own model, at "
        "--model_path, on --dataset) or an ImageNet architecture of tfool.imagenet (vgg16, "
        "resnet50, densenet121, inception_v3, mobilenet_v2, efficientnet_lite0, "
        "efficientnet_lite1, efficientnet_lite2, squeezenet1_1, ...), which needs "
        "--backwork_rubbish (there are no reference sets) and takes the "
        f"{IMAGENET_PRESET} preset unless --backwork_preset names another.",
        **fv,
    )


def _define_run_flags(fv: dict) -> None:
    """The seed, the start, rubbish-image comparison runs and TensorBoard output."""
    flags.DEFINE_integer(
        name="backwork_seed",
        default=None,
        lower_bound=0,
        help="Seed of the initial and re-initialisation noise; default: --seed.",
        **fv,
    )
    flags.DEFINE_string(
        name="backwork_init_from",
        default=None,
        help="Start from the final images of a saved result (the images.npz of an earlier "
        "run with the same labels and images per label) instead of --backwork_init.",
        **fv,
    )
    flags.DEFINE_boolean(
        name="backwork_rubbish",
        default=False,
        help="Zero every layer cost but the softmax one: plain 'rubbish image' optimisation, "
        "for comparison.",
        **fv,
    )
    flags.DEFINE_string(
        name="tensorboard_dir",
        default=None,
        help="Write TensorBoard summaries (cost terms, probabilities, re-inits, image grids) "
        "to this folder.",
        **fv,
    )


def _define_validators(flag_values: flags.FlagValues) -> None:
    """The checks of the labels and of flags together (they never touch disk)."""
    fv = {"flag_values": flag_values}

    @flags.validator(
        "backwork_labels",
        message="--backwork_labels must be a non-empty list without duplicates",
        **fv,
    )
    def _labels(value):
        return bool(value) and all(v.strip() for v in value) and len(set(value)) == len(value)

    @flags.multi_flags_validator(
        ["backwork_model", "backwork_rubbish"],
        message="an ImageNet --backwork_model needs --backwork_rubbish: tfool has no ImageNet "
        "training images to form reference sets",
        **fv,
    )
    def _imagenet_is_rubbish(values):
        return values["backwork_model"] == "mnist_cnn" or values["backwork_rubbish"]

    @flags.multi_flags_validator(
        ["backwork_num_examples", "backwork_batch_cost_coeff", "backwork_rubbish"],
        message="--backwork_num_examples must be >= 2 while the batch cost is on "
        "(or set --backwork_batch_cost_coeff=0 or --backwork_rubbish)",
        **fv,
    )
    def _batch_needs_two(_values):
        try:  # the labels do not matter here; a bad value is its own flag's error
            config = _config(flag_values, labels=(0,), num_layers=5)
        except ValueError:
            return True
        return config.num_examples >= 2 or config.batch_cost_coeff == 0


def resolve_labels(values, resolve: Callable[[str], int] | None = None) -> tuple[int, ...]:
    """Turns ``--backwork_labels`` entries into class indices.

    Args:
        values: The flag's strings.
        resolve: Maps a class name to its index (``None``: only integers are accepted).

    Raises:
        ValueError: an entry that is neither an integer nor a known name.
    """
    out = []
    for v in values:
        v = v.strip()
        if v.lstrip("-").isdigit():
            out.append(int(v))
        elif resolve is None:
            raise ValueError(f"--backwork_labels: {v!r} is not a class index (expected 0, 1, ...)")
        else:
            out.append(int(resolve(v)))
    return tuple(out)


def model_spec(flag_values: flags.FlagValues = flags.FLAGS) -> ModelSpec:
    """The ImageNet classifier of ``--backwork_model`` (an ImageNet architecture),
    ``--backwork_weights`` and ``--backwork_image_size``."""
    return spine.config_from_flags(ModelSpec, PREFIX, flag_values, model=flag_values.backwork_model)


def backwork_config(
    flag_values: flags.FlagValues = flags.FLAGS,
    num_layers: int = 5,
    resolve_label: Callable[[str], int] | None = None,
) -> BackworkConfig:
    """Converts the parsed ``--backwork_*`` flags (and ``--seed``) into a ``BackworkConfig``.

    A flag left unset takes the value of ``--backwork_preset`` (of ``imagenet_rubbish`` for
    an ImageNet ``--backwork_model`` when no preset is named), else ``BackworkConfig``'s
    default; so a replayed ``flags.cfg``, which holds only what was set, gives the same
    configuration.

    Args:
        flag_values: Parsed flags.
        num_layers: Exposed layers of the model, for ``--backwork_rubbish``'s weights.
        resolve_label: Maps class names in ``--backwork_labels`` to indices.

    Raises:
        ValueError: a value the config refuses (the message names its flag).
    """
    labels = resolve_labels(flag_values.backwork_labels, resolve_label)
    return _config(flag_values, labels, num_layers)


def _config(f: flags.FlagValues, labels: tuple[int, ...], num_layers: int) -> BackworkConfig:
    """The config of the flags ``f`` with ``labels``."""
    imagenet = f.backwork_model != "mnist_cnn"
    preset = IMAGENET_PRESET if imagenet else None
    seed = f.backwork_seed
    if seed is None:
        seed = f["seed"].value if "seed" in f else 0
    config = spine.config_from_flags(
        BackworkConfig,
        PREFIX,
        f,
        preset=preset,
        labels=labels,
        seed=seed,
        **_empty_lists(f, preset),
    )
    return _rubbish(config, num_layers, imagenet) if f.backwork_rubbish else config


def _empty_lists(f: flags.FlagValues, preset: str | None) -> dict:
    """The fields whose list flag is empty, with the value of the preset: an empty list is
    unset (the previous version wrote an unset list as ``--backwork_layer_names=``)."""
    chosen = f[spine.preset_flag(PREFIX)].value or preset
    base = tfool_config.preset(BackworkConfig, chosen) if chosen else BackworkConfig()
    names = spine.flag_names(BackworkConfig, PREFIX, f, exclude=NOT_DERIVED)
    return {field: getattr(base, field) for field, name in names.items() if f[name].value == []}


def _rubbish(config: BackworkConfig, num_layers: int, imagenet: bool) -> BackworkConfig:
    """``--backwork_rubbish``: no batch cost, and every layer weight zero but the softmax
    one, for ``num_layers`` exposed layers unless the weights or layer names say how many
    (an ImageNet model's unset weights stay unset: its preset exposes the probabilities)."""
    coeffs = config.layer_cost_coeffs
    if imagenet and coeffs is None:
        return dataclasses.replace(config, batch_cost_coeff=0.0)
    names = config.layer_names
    n = len(coeffs) if coeffs else (len(names) if names else num_layers)
    coeffs = (0.0,) * (n - 1) + (config.coeffs_for(n)[-1],)
    return dataclasses.replace(config, layer_cost_coeffs=coeffs, batch_cost_coeff=0.0)
