"""The settings of a backworking run: ``BackworkConfig``, its presets and its checks."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from tfool import costs
from tfool.config import register_preset, setting
from tfool.references import REFERENCE_DTYPES

INITS = ("uniform", "train_mean")
#: ``tfool``: this port's choices (the default); ``original``: the original program's.
SEMANTICS = ("tfool", "original")


@dataclasses.dataclass(frozen=True)
class BackworkConfig:
    """Settings of a backworking run; the defaults are the MNIST post's.

    Presets (``tfool.config.preset(BackworkConfig, name)``, the flag ``--backwork_preset``):
    ``paper`` (the post's exact settings, its five layer weights written out),
    ``original`` (the original program's semantics and settings) and ``imagenet_rubbish``
    (rubbish images of an ImageNet classifier).

    Attributes:
        labels: Target labels, all backworked together in one batch.
        num_examples: Images per label; >= 1 (>= 2 when the batch cost is on).
        layer_cost_coeffs: One weight per exposed layer, softmax last (``None``: the post's
            ``logspace(-L, -1, L)`` with the last times 100: 1e-5,1e-4,1e-3,1e-2,10 for the
            reference CNN).
        reference_cost_coeff: Weight (>= 0) of the distance-to-training-data terms.
        batch_cost_coeff: Weight (>= 0) of the distance-within-batch terms.
        learning_rate: Adam learning rate on the input images, > 0.
        prob_cap_min: A label converges when its minimum target probability exceeds this,
            in (0, 1]...
        prob_cap_mean: ...or when its mean target probability exceeds this, in (0, 1]
            (1 = never).
        num_mono_dec_saves: Saves in the window: a row whose target probability never rises
            over this many saves (and ends below ``reinit_below``) is re-initialised; >= 2.
        reinit_below: Only rows whose target probability is below this are
            re-initialised, in (0, 1].
        save_freq: Steps between saves (history snapshot, convergence and re-init tests);
            >= 1.
        min_num_steps: No convergence test before this many steps; >= 0.
        max_num_steps: Hard limit on optimisation steps; >= 1.
        tolerance: A label also stops when its cost changes by less than this between
            saves (after ``min_num_steps``); 0 disables the test.
        init: Initial images: ``uniform`` noise in the input range, or ``train_mean``
            (averages of the label's shuffled training images split into
            ``num_examples`` groups).
        clip_inputs: Project the images onto ``[input_min, input_max]`` after every step
            (the original only clipped the initial values).
        seed: Seed of the initial and re-initialisation noise (one stream per label).
        softmax_cost: Softmax term: ``one_minus_p`` (mean 1 - p, the MNIST post) or
            ``cross_entropy``.
        layer_names: Exposed layers of the model, the class probabilities last
            ('probabilities' or the output layer's name; ``None``: the rule of
            ``tfool.classifier.default_layer_names``: the input, every convolution and
            hidden dense layer after its activation, then the probabilities; the reference
            CNN: inputs,conv0,conv1,fc,softmax).
        from_logits: What the model returns: auto (``None``) reads its graph (a final
            softmax is stripped, so the model's own probabilities are reported), true
            (``True``) logits (refused for a model ending in a softmax), false (``False``)
            probabilities (see ``tfool.classifier.logits_model``).
        input_min: Lower end of the input range.
        input_max: Upper end of the input range.
        reference_size: At most this many training images per label form its reference set
            (``None``: all).
        reference_dtype: Storage type of the reference activations: ``float32``, or
            ``float16``/``bfloat16`` to halve their memory (the costs are computed in
            float32 either way).
        chunk_size: Reference images per distance chunk, to bound memory (``None``: all at
            once).
        history_every: Keep every k-th save in the history (1: all); >= 1.
        max_history: At most this many snapshots are kept; past it every other one is
            dropped and ``history_every`` doubles, so memory stays bounded; >= 1.
        jit_compile: Compile the optimisation step with XLA (off by default: slower on CPU
            here).
        semantics: ``tfool`` (this port's choices, the default) or ``original``: the
            original program's cost variants (per-unit minimum on dense layers such as
            ``fc``, self-pairs in the batch cost), its loop order (Adam step, then save and
            test; tolerance tested every step) and its Adam (one step count per label,
            moments kept when a row is re-initialised). The preset ``original``
            (``BackworkConfig.original()``, flags/original.cfg) also sets its step limits,
            window and clipping.
    """

    labels: tuple[int, ...] = tuple(range(10))
    num_examples: int = 8
    layer_cost_coeffs: tuple[float, ...] | None = None
    reference_cost_coeff: float = 0.5
    batch_cost_coeff: float = 0.5
    learning_rate: float = 0.01
    prob_cap_min: float = 0.999
    prob_cap_mean: float = 1.0
    num_mono_dec_saves: int = 5
    reinit_below: float = 0.99
    save_freq: int = 1
    min_num_steps: int = 10
    max_num_steps: int = 3000
    tolerance: float = 0.0
    init: str = setting("uniform", choices=INITS)
    clip_inputs: bool = True
    seed: int = 0
    softmax_cost: str = setting("one_minus_p", choices=costs.SOFTMAX_COSTS)
    layer_names: tuple[str, ...] | None = None
    from_logits: bool | None = setting(None, words={"auto": None, "true": True, "false": False})
    input_min: float = 0.0
    input_max: float = 1.0
    reference_size: int | None = None
    reference_dtype: str = setting("float32", choices=REFERENCE_DTYPES)
    chunk_size: int | None = None
    history_every: int = 1
    max_history: int = 400
    jit_compile: bool = False
    semantics: str = setting("tfool", choices=SEMANTICS)

    @classmethod
    def paper(cls, **overrides) -> BackworkConfig:
        """The MNIST post's settings (the defaults), with ``overrides``."""
        return cls(**overrides)

    @classmethod
    def imagenet_rubbish(cls, **overrides) -> BackworkConfig:
        """The rubbish-image post's settings for an ImageNet classifier.

        Only the class probabilities exposed (no reference sets, no batch cost),
        cross-entropy softmax cost, Adam learning rate 0.1; any field can be overridden.
        """
        settings = {
            "layer_names": ("probabilities",),
            "batch_cost_coeff": 0.0,
            "learning_rate": 0.1,
            "softmax_cost": "cross_entropy",
            **overrides,
        }
        return cls(**settings)

    @classmethod
    def original(cls, **overrides) -> BackworkConfig:
        """The original program's settings and semantics (``cnn_backwork.py``).

        ``semantics="original"``, ``min_num_steps=0``, ``max_num_steps=60``,
        ``num_mono_dec_saves=3``, ``save_freq=1``, no clipping after the initial values,
        and room in the history for every save; any field can be overridden.
        """
        settings = {
            "semantics": "original",
            "min_num_steps": 0,
            "max_num_steps": 60,
            "num_mono_dec_saves": 3,
            "save_freq": 1,
            "clip_inputs": False,
            **overrides,
        }
        settings.setdefault("max_history", max(400, settings["max_num_steps"] + 1))
        return cls(**settings)

    def __post_init__(self):
        try:
            labels = tuple(self.labels)
        except TypeError:
            raise ValueError(
                f"labels={self.labels!r} must be a sequence of integer class indices"
            ) from None
        bad = [
            lbl
            for lbl in labels
            if isinstance(lbl, (bool, np.bool_)) or not isinstance(lbl, (int, np.integer))
        ]
        if bad:
            raise ValueError(
                f"labels={list(labels)} holds {bad[0]!r}, not an integer class index; "
                "expected integers such as (0, 3)"
            )
        object.__setattr__(self, "labels", tuple(int(lbl) for lbl in labels))
        if self.layer_cost_coeffs is not None:
            object.__setattr__(
                self, "layer_cost_coeffs", tuple(float(c) for c in self.layer_cost_coeffs)
            )
        if self.layer_names is not None:
            object.__setattr__(self, "layer_names", tuple(self.layer_names))
        _validate_config(self)

    def coeffs_for(self, num_layers: int) -> tuple[float, ...]:
        """The layer cost weights for a model exposing ``num_layers`` layers."""
        if self.layer_cost_coeffs is None:
            return costs.default_layer_cost_coeffs(num_layers)
        return self.layer_cost_coeffs


#: The MNIST post's layer weights for the reference CNN's five exposed layers (inputs,
#: conv0, conv1, fc, softmax), written out by the presets ``paper`` and ``original``.
_POST_LAYER_COST_COEFFS = (1e-5, 1e-4, 1e-3, 1e-2, 10.0)


def _paper() -> BackworkConfig:
    """The MNIST backworking post's exact settings, its five layer weights written out."""
    return BackworkConfig.paper(layer_cost_coeffs=_POST_LAYER_COST_COEFFS)


def _original() -> BackworkConfig:
    """The original program's exact semantics and settings (cnn_backwork.py).

    The post's costs with its fc per-unit minimum and self-pairs, an Adam step before every
    save, one Adam per label kept across re-initialisations, no clipping after the initial
    values, 60 steps, a window of 3; the post's five layer weights written out.
    """
    return BackworkConfig.original(layer_cost_coeffs=_POST_LAYER_COST_COEFFS)


register_preset(BackworkConfig, "paper", _paper)
register_preset(BackworkConfig, "original", _original)
register_preset(BackworkConfig, "imagenet_rubbish", BackworkConfig.imagenet_rubbish)


def _validate_config(c: BackworkConfig) -> None:
    if not c.labels:
        raise ValueError("labels is empty; expected at least one target label")
    if len(set(c.labels)) != len(c.labels):
        raise ValueError(f"labels={list(c.labels)} has duplicates")
    if min(c.labels) < 0:
        raise ValueError(f"labels={list(c.labels)} has a negative label")
    if c.num_examples < 1:
        raise ValueError(f"num_examples={c.num_examples} must be >= 1")
    for name in (*costs.coefficient_names(), "learning_rate", "tolerance"):
        value = getattr(c, name)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name}={value} must be a finite number >= 0")
    if c.learning_rate <= 0:
        raise ValueError(f"learning_rate={c.learning_rate} must be > 0")
    if c.layer_cost_coeffs is not None:
        if not c.layer_cost_coeffs:
            raise ValueError("layer_cost_coeffs is empty; expected one weight per exposed layer")
        bad = [v for v in c.layer_cost_coeffs if not math.isfinite(v)]
        if bad:
            raise ValueError(
                f"layer_cost_coeffs={list(c.layer_cost_coeffs)} has non-finite entries"
            )
    for name in ("prob_cap_min", "prob_cap_mean"):
        value = getattr(c, name)
        if not (0.0 < value <= 1.0):
            raise ValueError(f"{name}={value} must lie in (0, 1]")
    if not (0.0 < c.reinit_below <= 1.0):
        raise ValueError(f"reinit_below={c.reinit_below} must lie in (0, 1]")
    if c.num_mono_dec_saves < 2:
        raise ValueError(f"num_mono_dec_saves={c.num_mono_dec_saves} must be >= 2")
    for name in ("save_freq", "max_num_steps", "history_every", "max_history"):
        if getattr(c, name) < 1:
            raise ValueError(f"{name}={getattr(c, name)} must be >= 1")
    if c.min_num_steps < 0:
        raise ValueError(f"min_num_steps={c.min_num_steps} must be >= 0")
    if c.semantics not in SEMANTICS:
        raise ValueError(f"semantics={c.semantics!r} is not one of {SEMANTICS}")
    if c.init not in INITS:
        raise ValueError(f"init={c.init!r} is not one of {INITS}")
    if c.softmax_cost not in costs.SOFTMAX_COSTS:
        raise ValueError(f"softmax_cost={c.softmax_cost!r} is not one of {costs.SOFTMAX_COSTS}")
    if not c.input_min < c.input_max:
        raise ValueError(f"input_min={c.input_min} must be below input_max={c.input_max}")
    if c.reference_size is not None and c.reference_size < 1:
        raise ValueError(f"reference_size={c.reference_size} must be >= 1 or None")
    if c.reference_dtype not in REFERENCE_DTYPES:
        raise ValueError(f"reference_dtype={c.reference_dtype!r} is not one of {REFERENCE_DTYPES}")
    if c.chunk_size is not None and c.chunk_size < 1:
        raise ValueError(f"chunk_size={c.chunk_size} must be >= 1 or None")
    if c.layer_names is not None and not c.layer_names:
        raise ValueError("layer_names is empty; expected at least the probabilities layer")
