"""The attribution table ``ATTRIBUTIONS`` (every method, its default options, which
arguments are fixed), ``AttributionConfig`` and ``attribute_all``, which runs several
methods on one batch."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfool.attribution._checks import ModelFn, _check_choice, _check_x
from tfool.attribution._compiled import SCORES
from tfool.attribution._gradients import gradient_x_input, saliency, salient_features
from tfool.attribution._integrated import integrated_gradients
from tfool.attribution._noise_tunnel import noise_tunnel
from tfool.attribution._occlusion import occlusion

# Arguments attribute_all sets itself, never taken from the per-method options.
_FIXED = ("model_fn", "x", "target", "from_logits", "score", "strategy")


@dataclasses.dataclass(frozen=True, eq=False)
class AttributionSpec:
    """One attribution method of the registry.

    Attributes:
        name: Its name in ``ALL_METHODS``, flags, reports and figure columns.
        fn: The method: ``fn(model_fn=, x=, target=, **options)`` returning a float32 array
            of ``x``'s shape; a method that wraps another (``wraps``) is called as
            ``fn(attribution_fn, x, **options)``.
        defaults: The options ``attribute_all`` passes unless they are overridden.
        shaped_defaults: Further default options that depend on the input shape:
            ``shaped_defaults(input_shape) -> {option: value}`` (``None``: none).
        fixed: The arguments ``attribute_all`` sets itself, never options.
        default: Whether ``attribute_all`` computes it by default (``DEFAULT_METHODS``).
        takes_score: Whether it takes ``score`` (``salient_features`` always attributes
            the probability); the methods that do can be wrapped by the noise tunnel.
        wraps: Whether it wraps another method (the noise tunnel): its option
            ``attribution`` names that method, and the options it does not take itself go
            to that method.
        seeded: Whether it draws random numbers; its ``seed`` option is then
            ``AttributionConfig.seed``.
    """

    name: str
    fn: Callable[..., np.ndarray]
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    shaped_defaults: Callable[[tuple[int, ...]], dict[str, Any]] | None = None
    fixed: tuple[str, ...] = _FIXED
    default: bool = True
    takes_score: bool = True
    wraps: bool = False
    seeded: bool = False

    def default_options(self, input_shape: tuple[int, ...]) -> dict[str, Any]:
        """The options it runs with on inputs of ``input_shape`` unless overridden."""
        shaped = {} if self.shaped_defaults is None else self.shaped_defaults(input_shape)
        return {**shaped, **self.defaults}

    def allowed_options(self, wrapped: AttributionSpec | None = None) -> set[str]:
        """The option names it takes (with those of the method it wraps)."""
        allowed = set(inspect.signature(self.fn).parameters) - set(self.fixed)
        if wrapped is not None:
            allowed |= {"attribution", *wrapped.allowed_options()}
        return allowed


def _occlusion_window(shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """A 5 x 5 window with stride 2 over the spatial dims (channels whole for H x W x C)."""
    spatial = shape[:-1] if len(shape) == 3 else shape
    window = tuple(min(5, d) for d in spatial)
    strides = tuple(min(2, d) for d in spatial)
    if len(shape) == 3:
        window, strides = window + (shape[-1],), strides + (shape[-1],)
    return {"sliding_window_shapes": window, "strides": strides}


#: Every attribution method, by name and in column order: the one place a method is
#: registered. The defaults are the post's choices: integrated gradients with 200
#: Gauss-Legendre steps in internal batches of 50; the noise tunnel as smoothgrad_sq of
#: integrated gradients (50 steps) over 10 samples, with noise of standard deviation 0.15
#: (15% of a [0, 1] pixel range, within Smilkov et al.'s 10-20%); occlusion with a baseline
#: of 0 and, instead of the post's 15 x 15 / stride 8 windows meant for 224-pixel images,
#: 5 x 5 windows with stride 2 (whole channels), a comparable share of a 28-pixel digit;
#: salient features keep the post's 200 elements (all of them for inputs with fewer).
ATTRIBUTIONS = {
    spec.name: spec
    for spec in (
        AttributionSpec("saliency", saliency, {"absolute": True}),
        AttributionSpec(
            "gradient_x_input",
            gradient_x_input,
            {"absolute_gradient": True, "normalize": True},
        ),
        AttributionSpec(
            "integrated_gradients",
            integrated_gradients,
            {"n_steps": 200, "method": "gausslegendre", "internal_batch_size": 50},
            fixed=(*_FIXED, "return_convergence_delta"),
        ),
        AttributionSpec(
            "noise_tunnel",
            noise_tunnel,
            {
                "attribution": "integrated_gradients",
                "nt_type": "smoothgrad_sq",
                "nt_samples": 10,
                "stdevs": 0.15,
                "seed": 0,
                "n_steps": 50,
                "internal_batch_size": 50,
            },
            wraps=True,
            seeded=True,
        ),
        AttributionSpec(
            "occlusion",
            occlusion,
            {"baselines": 0.0, "perturbations_per_eval": 16},
            shaped_defaults=_occlusion_window,
        ),
        AttributionSpec(
            "salient_features",
            salient_features,
            shaped_defaults=lambda shape: {"num_keep": min(200, int(np.prod(shape)))},
            default=False,
            takes_score=False,
        ),
    )
}
#: The methods ``attribute_all`` computes by default, in column order.
DEFAULT_METHODS = tuple(name for name, spec in ATTRIBUTIONS.items() if spec.default)
#: Every method ``attribute_all`` knows.
ALL_METHODS = tuple(ATTRIBUTIONS)
# The methods a wrapping method (the noise tunnel) can wrap.
_WRAPPABLE = tuple(
    name for name, spec in ATTRIBUTIONS.items() if spec.takes_score and not spec.wraps
)


def default_options(input_shape: Sequence[int]) -> dict[str, dict[str, Any]]:
    """The settings ``attribute_all`` uses for each method on inputs of ``input_shape``
    (``AttributionSpec.default_options`` of every method of ``ATTRIBUTIONS``; the reasons
    for the choices are given there)."""
    shape = tuple(int(d) for d in input_shape)
    return {name: spec.default_options(shape) for name, spec in ATTRIBUTIONS.items()}


@dataclasses.dataclass(frozen=True)
class AttributionConfig:
    """Which attribution methods ``attribute_all`` computes, and how.

    Attributes:
        methods: Names from ``ALL_METHODS``, in the order wanted (the columns of the
            attribution figures).
        options: Per-method keyword overrides of the method's default options,
            ``{method: {option: value}}`` (see ``default_options``); for
            ``noise_tunnel``, ``"attribution"`` names the wrapped method and the other keys
            go to the noise tunnel or the wrapped method. The seed of a random method is
            ``seed``, not an option.
        score: What is attributed: ``"output"`` (the model's output for the target),
            ``"probability"`` or ``"loss"`` (see ``saliency``; ``salient_features``
            always uses the probability).
        from_logits: Whether the model returns logits (``False``: probabilities; ``None``:
            read from a Keras model's graph, whose final softmax is stripped).
        seed: Seed of the random methods (the noise tunnel's noise), an integer >= 0.
    """

    methods: tuple[str, ...] = DEFAULT_METHODS
    options: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    score: str = "output"
    from_logits: bool | None = None
    seed: int = 0

    def __post_init__(self):
        methods = tuple(self.methods)
        if not methods:
            raise ValueError("methods is empty; expected names from " + str(list(ALL_METHODS)))
        for name in methods:
            _check_choice("methods", name, ALL_METHODS)
        options = {name: dict(opts) for name, opts in dict(self.options or {}).items()}
        for name in options:
            _check_choice("options", name, ALL_METHODS)
        object.__setattr__(self, "methods", methods)
        object.__setattr__(self, "options", options)
        wrapped = {name: self._wrapped(name) for name in ATTRIBUTIONS}  # checked if unused too
        for name in methods:  # the defaults too: a wrapped method may not take them
            opts = {**ATTRIBUTIONS[name].defaults, **options.get(name, {})}
            _check_options(name, wrapped[name], opts)
        for name, opts in options.items():
            if ATTRIBUTIONS[name].seeded and "seed" in opts:
                raise ValueError(
                    f"options for {name!r} set seed={opts['seed']!r}; its seed is "
                    "AttributionConfig.seed"
                )
        _check_choice("score", self.score, SCORES)
        if self.from_logits is not None and not isinstance(self.from_logits, bool | np.bool_):
            raise ValueError(f"from_logits={self.from_logits!r} must be True, False or None")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer):
            raise ValueError(f"seed={self.seed!r} must be an integer >= 0")
        if self.seed < 0:
            raise ValueError(f"seed={self.seed!r} must be an integer >= 0")

    @classmethod
    def from_options(
        cls,
        methods: Sequence[str] = DEFAULT_METHODS,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        score: str = "output",
        from_logits: bool | None = None,
    ) -> AttributionConfig:
        """The config of ``attribute_all``'s keyword arguments: a ``seed`` among a random
        method's options becomes the config's ``seed``.

        Raises:
            ValueError: as the config.
        """
        methods = list(methods)
        if not methods:  # refused first, as the config would
            raise ValueError("methods is empty; expected names from " + str(list(ALL_METHODS)))
        options = {name: dict(opts) for name, opts in dict(options or {}).items()}
        seed = 0
        for name, opts in options.items():
            if name in ATTRIBUTIONS and ATTRIBUTIONS[name].seeded and "seed" in opts:
                seed = opts.pop("seed")
        return cls(tuple(methods), options, score, from_logits, seed)

    def _wrapped(self, name: str) -> AttributionSpec | None:
        """The method that ``name`` wraps (``None`` for a method that wraps none).

        Raises:
            ValueError: the wrapped method is not one a wrapper can take.
        """
        spec = ATTRIBUTIONS[name]
        if not spec.wraps:
            return None
        merged = {**spec.defaults, **self.options.get(name, {})}
        wrapped = _check_choice(f"{name} attribution", merged["attribution"], _WRAPPABLE)
        return ATTRIBUTIONS[wrapped]

    def settings(self, input_shape: Sequence[int]) -> dict[str, dict[str, Any]]:
        """Every chosen method's options on inputs of ``input_shape``: its defaults, the
        overrides of ``options`` and, for a random method, ``seed``."""
        defaults = default_options(input_shape)
        settings = {}
        for name in self.methods:
            settings[name] = {**defaults[name], **self.options.get(name, {})}
            if ATTRIBUTIONS[name].seeded:
                settings[name]["seed"] = self.seed
        return settings


def _check_options(name: str, wrapped: AttributionSpec | None, opts: Mapping[str, Any]) -> None:
    allowed = ATTRIBUTIONS[name].allowed_options(wrapped)
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise ValueError(
            f"options for {name!r} have unknown keys {unknown}; allowed: {sorted(allowed)}"
        )


def attribute_all(
    model_fn: ModelFn,
    x: np.ndarray,
    target: int | Sequence[int] | np.ndarray,
    methods: Sequence[str] = DEFAULT_METHODS,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    from_logits: bool | None = None,
    score: str = "output",
    strategy: tf.distribute.Strategy | None = None,
    config: AttributionConfig | None = None,
) -> dict[str, np.ndarray]:
    """Computes several attribution methods for one batch, in one call.

    The settings come either from ``config`` or from ``methods``, ``options``,
    ``from_logits`` and ``score`` (``AttributionConfig.from_options``), not both.

    Args:
        model_fn: The classifier (see ``saliency``).
        x: Inputs ``[N, ...]``.
        target: One class for all images or one per image.
        methods: Names from ``ALL_METHODS``, in the order wanted.
        options: Per-method keyword overrides of ``default_options(x.shape[1:])``; for
            ``noise_tunnel``, ``"attribution"`` names the wrapped method and the other
            keys go to the noise tunnel or the wrapped method.
        from_logits: Whether ``model_fn`` returns logits (``False``: probabilities;
            ``None``: read from a Keras model's graph, whose final softmax is stripped).
        score: ``"output"``, ``"probability"`` or ``"loss"`` (see ``saliency``;
            ``salient_features`` always uses the probability).
        strategy: Optional ``tf.distribute`` strategy.
        config: All the settings at once, instead of ``methods``, ``options``,
            ``from_logits`` and ``score``.

    Returns:
        ``{method: float32 array of x's shape}`` in the order of ``methods``.

    Raises:
        ValueError: an unknown method or option, settings given both in ``config`` and as
            keyword arguments, or any argument error of the methods.
    """
    x = _check_x(x)
    if config is None:
        config = AttributionConfig.from_options(methods, options, score, from_logits)
    elif (methods, options, from_logits, score) != (DEFAULT_METHODS, None, None, "output"):
        raise ValueError("pass the settings in config or as keyword arguments, not both")
    common = {"model_fn": model_fn, "target": target, "strategy": strategy}
    return {
        name: _attribute(config, name, x, opts, common)
        for name, opts in config.settings(x.shape[1:]).items()
    }


def _attribute(config: AttributionConfig, name: str, x: np.ndarray, opts: dict, common: dict):
    """One method of ``config`` on ``x`` with its settings ``opts``."""
    spec = ATTRIBUTIONS[name]
    if spec.wraps:
        opts = {k: v for k, v in opts.items() if k != "attribution"}
        own = set(inspect.signature(spec.fn).parameters) - {"attribution_fn", "x", "kwargs"}
        outer = {k: opts.pop(k) for k in list(opts) if k in own}
        return spec.fn(
            config._wrapped(name).fn,
            x,
            **outer,
            from_logits=config.from_logits,
            score=config.score,
            **common,
            **opts,
        )
    scored = {"score": config.score} if spec.takes_score else {}
    return spec.fn(x=x, from_logits=config.from_logits, **scored, **common, **opts)
