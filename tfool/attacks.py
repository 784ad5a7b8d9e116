"""Gradient attacks on the input: FGSM, FGM-L2, the max-normalised step, BIM/PGD, noise control."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfool import _tf, classifier
from tfool._tf import SplitBatch, batch_slices, input_gradient, is_finite_number, map_batches

#: The methods ``sweep`` runs by default (the post's two single steps, BIM and the control).
DEFAULT_METHODS = ("fgsm", "normalized_gradient", "bim", "random")
NORMS = ("inf", "2")
DEFAULT_BATCH_SIZE = 500

_NORM_ALIASES = {"inf": "inf", "linf": "inf", "2": "2", "l2": "2"}
_TINY = 1e-12
_RANGE_SLACK = 1e-6
ModelFn = Callable[[tf.Tensor], tf.Tensor]


# ----------------------------------------------------------------------------------------
# Argument checks (all run before any work)
# ----------------------------------------------------------------------------------------


def _check_eps(eps: float, name: str = "eps") -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.number)):
        raise ValueError(f"{name}={eps!r} is a {type(eps).__name__}; expected a number >= 0")
    eps = float(eps)
    if not (is_finite_number(eps) and eps >= 0):
        raise ValueError(f"{name}={eps} must be a finite number >= 0")
    return eps


def _check_input_shape(model_fn, x: np.ndarray) -> None:
    """Images of another shape than a Keras model's input are refused by name."""
    inputs = getattr(model_fn, "inputs", None)
    if not inputs or len(inputs) != 1:
        return
    expected = tuple(inputs[0].shape[1:])
    if len(expected) != x.ndim - 1 or any(
        e is not None and e != got for e, got in zip(expected, x.shape[1:])
    ):
        shown = ", ".join("?" if e is None else str(e) for e in expected)
        raise ValueError(
            f"x has shape {x.shape}; the model {getattr(model_fn, 'name', '')!r} expects "
            f"[N, {shown}] (add the channel axis with x[..., None] if it is missing)"
        )


def _check_images(x: Any, clip_min: float, clip_max: float) -> np.ndarray:
    clip_min, clip_max = float(clip_min), float(clip_max)
    if not (math.isfinite(clip_min) and math.isfinite(clip_max)):
        raise ValueError(f"clip_min={clip_min}, clip_max={clip_max} must be finite")
    if clip_min > clip_max:
        raise ValueError(f"clip_min={clip_min} is greater than clip_max={clip_max}")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"x has shape {x.shape}, expected a non-empty batch [N, ...] of images")
    lo, hi = float(np.min(x)), float(np.max(x))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError("x contains NaN or infinite values")
    slack = _RANGE_SLACK * max(1.0, clip_max - clip_min)  # float rounding of scaled images
    if lo < clip_min - slack or hi > clip_max + slack:
        raise ValueError(
            f"x has values in [{lo:g}, {hi:g}], outside the clip range "
            f"[clip_min={clip_min:g}, clip_max={clip_max:g}]"
        )
    return np.clip(x, clip_min, clip_max) if lo < clip_min or hi > clip_max else x


def _check_norm(norm: Any) -> str:
    key = "inf" if norm == np.inf else str(norm).lower()
    if key not in _NORM_ALIASES:
        raise ValueError(f"norm={norm!r} is not supported; expected one of np.inf, 'inf', 2, 'l2'")
    return _NORM_ALIASES[key]


def _check_batch_size(batch_size: int) -> int:
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be an integer >= 1")
    return int(batch_size)


_LABELS_EXPECTED = "integer class indices of shape ({n},), or one integer for every image"


def _contains_bool(y: Any) -> bool:
    """Whether ``y`` is a bool or a (nested) list or tuple holding one: NumPy would read
    ``[True, 2]`` as the integers ``[1, 2]``."""
    if isinstance(y, (bool, np.bool_)):
        return True
    return isinstance(y, (list, tuple)) and any(_contains_bool(v) for v in y)


def _label_array(y: Any, n: int, name: str = "y") -> np.ndarray:
    """``y`` as int64 class indices ``[n]``; a scalar is broadcast to every image.

    Only the type and shape are checked here (no model call); ``_check_label_range`` checks
    the values against the model's classes.
    """
    expected = _LABELS_EXPECTED.format(n=n)
    try:
        arr = np.asarray(y)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={y!r} is not an array; expected {expected}") from None
    if _contains_bool(y) or arr.dtype == bool:
        shown = f"{name}={arr.item()!r}" if arr.ndim == 0 else f"{name} holds bools"
        raise ValueError(f"{shown}; expected {expected} (a bool is not a class index)")
    if not np.issubdtype(arr.dtype, np.integer):
        shown = f"{name}={arr.item()!r}" if arr.ndim == 0 else name
        first = "" if arr.ndim == 0 or arr.size == 0 else f" (first entry {arr.flat[0].item()!r})"
        cast = (
            f" (cast with {name}.astype(int) if the values are whole numbers)"
            if np.issubdtype(arr.dtype, np.floating)
            else ""
        )
        raise ValueError(f"{shown} has dtype {arr.dtype}{first}; expected {expected}{cast}")
    if arr.ndim == 0:
        arr = np.full(n, arr.item(), dtype=np.int64)
    if arr.shape != (n,):
        hint = f" (one-hot labels: pass {name}.argmax(-1))" if arr.ndim == 2 else ""
        raise ValueError(
            f"{name} has shape {arr.shape}, expected ({n},) (one class index per image) "
            f"or a scalar{hint}"
        )
    return arr.astype(np.int64)


def _check_label_range(y: np.ndarray, num_classes: int, name: str = "y") -> np.ndarray:
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(
            f"{name} has class indices in [{y.min()}, {y.max()}], expected 0..{num_classes - 1}"
        )
    return y


def _check_labels(y: Any, n: int, num_classes: int, name: str = "y") -> np.ndarray:
    return _check_label_range(_label_array(y, n, name), num_classes, name)


def _label_mode(y: Any, targeted: bool, least_likely: bool) -> str:
    """How the attack's labels are chosen: ``given``, ``predicted`` or ``least_likely``."""
    if least_likely:
        if y is not None:
            raise ValueError("least_likely=True picks the target itself; pass y=None")
        return "least_likely"
    if targeted and y is None:
        raise ValueError("targeted=True needs the target classes y (or least_likely=True)")
    return "predicted" if y is None else "given"


@dataclasses.dataclass(frozen=True)
class _Checked:
    x: np.ndarray
    y: np.ndarray | None
    mode: str
    targeted: bool
    batch_size: int


def _check_attack(model_fn, x, eps, y, targeted, least_likely, clip_min, clip_max, batch_size):
    if not callable(model_fn):
        raise ValueError(f"model_fn={model_fn!r} is not callable; expected a Keras classifier")
    _check_eps(eps)
    x = _check_images(x, clip_min, clip_max)
    _check_input_shape(model_fn, x)
    batch_size = _check_batch_size(batch_size)
    mode = _label_mode(y, targeted, least_likely)
    if y is not None:  # type and shape first: a bad y is refused before the model runs
        y = _check_label_range(_label_array(y, len(x)), _tf.num_classes(model_fn, x))
    return _Checked(x, y, mode, bool(targeted or least_likely), batch_size)


# ----------------------------------------------------------------------------------------
# Graph pieces: loss gradient, step directions, projection
# ----------------------------------------------------------------------------------------


def _resolve(model_fn, from_logits, x: np.ndarray) -> tuple[Any, bool]:
    """The model to attack and whether it returns logits: a Keras model's final softmax is
    stripped (``tfool.classifier.logits_model``); outputs are checked once per model
    against what they are taken for (``tfool.classifier.probe``)."""
    fn, is_logits = classifier.logits_model(model_fn, from_logits)
    if len(x):
        _tf.cached(
            model_fn,
            ("probed", from_logits),
            lambda: classifier.probe(model_fn, x, from_logits) or True,
        )
    return fn, is_logits


def _log_probs(outputs: tf.Tensor, from_logits: bool) -> tf.Tensor:
    """Logits, or the log of probabilities (the same cross-entropy either way)."""
    if from_logits:
        return outputs
    return tf.math.log(tf.maximum(outputs, _TINY))


def _pick_labels(outputs: tf.Tensor, mode: str) -> tf.Tensor:
    if mode == "least_likely":
        return tf.argmin(outputs, axis=-1, output_type=tf.int64)
    return tf.argmax(outputs, axis=-1, output_type=tf.int64)


def _loss_grad(model_fn, x, y, mode: str, from_logits: bool):
    """Gradient of the per-example cross-entropy w.r.t. ``x``, and the model's outputs at ``x``."""

    def loss_and_outputs(points):
        outputs = model_fn(points)
        labels = y if mode == "given" else tf.stop_gradient(_pick_labels(outputs, mode))
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=_log_probs(outputs, from_logits)
        )
        return loss, outputs

    grad, (_, outputs) = input_gradient(loss_and_outputs, x)
    return grad, outputs


def _reduce_axes(t: tf.Tensor) -> list[int]:
    return list(range(1, len(t.shape)))


def _direction(g: tf.Tensor, kind: str) -> tf.Tensor:
    """The step direction: ``sign(g)``, ``g / |g|_2`` or ``g / max|g|``, per example."""
    if kind == "sign":
        return tf.sign(g)
    if kind == "l2":
        scale = tf.sqrt(tf.reduce_sum(tf.square(g), axis=_reduce_axes(g), keepdims=True))
    else:  # "max"
        scale = tf.reduce_max(tf.abs(g), axis=_reduce_axes(g), keepdims=True)
    return g / tf.maximum(scale, _TINY)


def _apply_step(x, g, size, kind: str, targeted: bool, clip_min, clip_max):
    """``x +- size * direction(g)``, clipped to the range (minus when targeted)."""
    step = size * _direction(g, kind)
    return tf.clip_by_value(x - step if targeted else x + step, clip_min, clip_max)


def _project(x_adv, x0, eps, norm: str, clip_min, clip_max):
    """Projects ``x_adv`` onto the eps-ball around ``x0`` and then the clip range."""
    delta = x_adv - x0
    if norm == "inf":
        delta = tf.clip_by_value(delta, -eps, eps)
    else:
        length = tf.sqrt(tf.reduce_sum(tf.square(delta), axis=_reduce_axes(delta), keepdims=True))
        delta = delta * tf.minimum(1.0, eps / tf.maximum(length, _TINY))
    return tf.clip_by_value(x0 + delta, clip_min, clip_max)


# ----------------------------------------------------------------------------------------
# Compiled steps, cached per model so that sweeps and benchmarks trace once
# ----------------------------------------------------------------------------------------


def _compiled(model_fn, key: tuple, build: Callable[[ModelFn], Callable]) -> Callable:
    """A ``tf.function`` built by ``build(model)``, cached per model and ``key``; it reaches
    the model through a weak reference, so the cache never keeps a model alive."""
    return _tf.cached(
        model_fn,
        ("attacks", *key),
        lambda: tf.function(build(_tf.weak_call(model_fn)), reduce_retracing=True),
    )


def _fgm_fn(model_fn, kind, mode, targeted, from_logits):
    def build(model):
        def step(x, y, eps, clip_min, clip_max):
            g, _ = _loss_grad(model, x, y, mode, from_logits)
            return _apply_step(x, g, eps, kind, targeted, clip_min, clip_max)

        return step

    return _compiled(model_fn, ("fgm", kind, mode, targeted, from_logits), build)


def _grad_fn(model_fn, mode, from_logits):
    def build(model):
        def step(x, y):
            return _loss_grad(model, x, y, mode, from_logits)

        return step

    return _compiled(model_fn, ("grad", mode, from_logits), build)


def _iter_fn(model_fn, norm, targeted, from_logits):
    kind = "sign" if norm == "inf" else "l2"

    def build(model):
        def step(x_adv, x0, y, eps, step_size, clip_min, clip_max):
            g, _ = _loss_grad(model, x_adv, y, "given", from_logits)
            moved = _apply_step(x_adv, g, step_size, kind, targeted, clip_min, clip_max)
            return _project(moved, x0, eps, norm, clip_min, clip_max)

        return step

    return _compiled(model_fn, ("iter", norm, targeted, from_logits), build)


def _labels_fn(model_fn, mode):
    def build(model):
        def labels(x):
            return _pick_labels(model(x), mode)

        return labels

    return _compiled(model_fn, ("labels", mode), build)


def _probs_fn(model_fn, from_logits):
    def build(model):
        def probs(x):
            out = model(x)
            return tf.nn.softmax(out, axis=-1) if from_logits else out

        return probs

    return _compiled(model_fn, ("probs", from_logits), build)


def _dummy_labels(y: np.ndarray | None, n: int) -> np.ndarray:
    return np.zeros(n, np.int64) if y is None else y


# ----------------------------------------------------------------------------------------
# Public attacks
# ----------------------------------------------------------------------------------------


_SINGLE_STEP_DOC = """{summary}

    {details}

    ``y`` is the only optional argument that may be given by position (the fourth, as in
    every attack of this module); everything after it is keyword-only.

    Args:
        model_fn: A callable from a batch of images to logits (or probabilities, see
            ``from_logits``), e.g. a Keras classifier.
        x: Images ``[N, ...]`` inside ``[clip_min, clip_max]`` (excursions of float rounding,
            up to 1e-6 of the range, are clipped).
        eps: {eps}
        y: Integer class indices ``[N]`` in ``0..num_classes - 1``, or one integer used for
            every image: the labels to move away from, or the targets when ``targeted``.
            Floats and bools are refused, not truncated. ``None``: the model's own
            predictions on ``x``, which avoids label leaking.
        targeted: Move toward ``y`` instead of away from it (keyword-only).
        clip_min: Lowest allowed pixel value (keyword-only).
        clip_max: Highest allowed pixel value (keyword-only).
        least_likely: Target each image's least likely class (Kurakin et al.'s "step l.l.");
            implies ``targeted`` and needs ``y=None``.
        from_logits: Whether ``model_fn`` returns logits (``False``: probabilities;
            ``None``: read from a Keras model's graph, whose final softmax is stripped).
        batch_size: Images per compiled step (the global batch under a strategy).
        strategy: Optional ``tf.distribute`` strategy; every batch is split over its replicas.

    Returns:
        The adversarial images, float32, the shape of ``x``.

    Raises:
        ValueError: ``eps < 0``, ``clip_min > clip_max``, ``x`` outside the clip range,
            ``y`` not integer, of the wrong shape or outside the model's classes,
            ``targeted`` without ``y``.
        TypeError: more than four positional arguments.
    """


def _single_step(
    kind: str, name: str, summary: str, details: str, eps_doc: str
) -> Callable[..., np.ndarray]:
    """A public single-step attack in direction ``kind`` (``_direction``): one signature,
    one implementation, one docstring template, three names."""

    def attack_fn(
        model_fn: ModelFn,
        x: np.ndarray,
        eps: float,
        y: np.ndarray | int | None = None,
        *,
        targeted: bool = False,
        clip_min: float = 0.0,
        clip_max: float = 1.0,
        least_likely: bool = False,
        from_logits: bool | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        strategy: tf.distribute.Strategy | None = None,
    ) -> np.ndarray:
        c = _check_attack(
            model_fn, x, eps, y, targeted, least_likely, clip_min, clip_max, batch_size
        )
        if eps == 0:
            return c.x.copy()
        model_fn, from_logits = _resolve(model_fn, from_logits, c.x)
        fn = _fgm_fn(model_fn, kind, c.mode, c.targeted, bool(from_logits))
        scalars = [tf.constant(v, tf.float32) for v in (eps, clip_min, clip_max)]
        arrays = [c.x, _dummy_labels(c.y, len(c.x)), *scalars]
        return map_batches(fn, arrays, c.batch_size, strategy, replicated=(2, 3, 4))

    attack_fn.__name__ = attack_fn.__qualname__ = name
    attack_fn.__doc__ = _SINGLE_STEP_DOC.format(summary=summary, details=details, eps=eps_doc)
    return attack_fn


fgsm = _single_step(
    "sign",
    "fgsm",
    "The fast gradient sign method (Goodfellow et al. 2015): ``x + eps * sign(grad)``.",
    """``grad`` is the gradient of the cross-entropy loss with respect to the input. Untargeted,
    the step increases the loss of ``y``; targeted, it decreases the loss of the target ``y``
    (``x - eps * sign(grad)``). The result is clipped to ``[clip_min, clip_max]``.""",
    "Size of the step (L-infinity), >= 0.",
)
fgm_l2 = _single_step(
    "l2",
    "fgm_l2",
    "The fast gradient method under the L2 norm: ``x + eps * grad / |grad|_2``, clipped.",
    """``grad`` is the gradient of the cross-entropy loss with respect to the input; the step
    is taken against it when ``targeted``, as in ``fgsm``.""",
    "The L2 length of the step per image, >= 0.",
)
normalized_gradient = _single_step(
    "max",
    "normalized_gradient",
    "The post's max-normalised gradient step: ``x + eps * grad / max|grad|``, clipped.",
    """The maximum is taken per image, so the largest pixel change is exactly ``eps`` (before
    clipping) and the rest move in proportion to their gradient; the step is taken against
    the gradient when ``targeted``, as in ``fgsm``.""",
    "The largest pixel change per image (before clipping), >= 0.",
)


def fgm(
    model_fn: ModelFn,
    x: np.ndarray,
    eps: float,
    y: np.ndarray | int | None = None,
    *,
    norm: Any = "inf",
    targeted: bool = False,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    **kwargs: Any,
) -> np.ndarray:
    """The fast gradient method under a chosen norm: ``fgsm`` (``inf``) or ``fgm_l2`` (``2``).

    Args:
        model_fn: A callable from images to logits (or probabilities, see ``from_logits``).
        x: Images ``[N, ...]`` inside ``[clip_min, clip_max]``.
        eps: Size of the step under ``norm``, >= 0.
        y: Integer class indices ``[N]``, or one integer for every image, as in ``fgsm``;
            ``None``: the model's predictions. The last argument that may be positional.
        norm: ``'inf'`` (or ``np.inf``) or ``2`` (or ``'l2'``); keyword-only, like the rest.
        targeted: Move toward ``y``.
        clip_min: Lowest allowed pixel value.
        clip_max: Highest allowed pixel value.
        **kwargs: ``least_likely``, ``from_logits``, ``batch_size``, ``strategy`` as in
            ``fgsm``.

    Returns:
        The adversarial images, float32, the shape of ``x``.

    Raises:
        ValueError: an unknown ``norm``, or as ``fgsm``.
        TypeError: more than four positional arguments.
    """
    fn = fgsm if _check_norm(norm) == "inf" else fgm_l2
    return fn(
        model_fn, x, eps, y, targeted=targeted, clip_min=clip_min, clip_max=clip_max, **kwargs
    )


def kurakin_steps(eps: float, clip_min: float = 0.0, clip_max: float = 1.0) -> int:
    """Kurakin et al.'s BIM step count ``min(eps + 4, 1.25 eps)``, eps in 0..255 pixel units.

    Args:
        eps: The L-infinity budget in the units of ``[clip_min, clip_max]``.
        clip_min: Lowest pixel value.
        clip_max: Highest pixel value (the range is mapped to 0..255).

    Returns:
        The number of steps, rounded up (0 when ``eps`` is 0).
    """
    eps = _check_eps(eps)
    if not clip_max > clip_min:
        raise ValueError(f"clip_min={clip_min} must be less than clip_max={clip_max}")
    e = eps * 255.0 / (clip_max - clip_min)
    return int(math.ceil(min(e + 4.0, 1.25 * e) - 1e-9))


def _random_start(x, eps, norm, seed, clip_min, clip_max) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if norm == "inf":
        delta = rng.uniform(-eps, eps, size=x.shape)
    else:
        flat = rng.standard_normal(size=(len(x), x[0].size))
        flat /= np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), _TINY)
        radius = eps * rng.uniform(size=(len(x), 1)) ** (1.0 / x[0].size)
        delta = (flat * radius).reshape(x.shape)
    return np.clip(x + delta, clip_min, clip_max).astype(np.float32)


def bim(
    model_fn: ModelFn,
    x: np.ndarray,
    eps: float,
    y: np.ndarray | int | None = None,
    *,
    step_size: float | None = None,
    steps: int | None = None,
    targeted: bool = False,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    least_likely: bool = False,
    norm: Any = "inf",
    random_start: bool = False,
    seed: int = 0,
    from_logits: bool | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    strategy: tf.distribute.Strategy | None = None,
) -> np.ndarray:
    """The basic iterative method (Kurakin et al. 2016): repeated small steps, projected.

    Each step moves by ``step_size`` along the sign of the gradient (``norm='inf'``) or the
    L2-normalised gradient (``norm=2``), then projects onto the ``eps``-ball around ``x`` and
    the clip range. The labels (``y=None``: the model's predictions on ``x``, or the least
    likely classes) are fixed once at the start.

    ``y`` is the only optional argument that may be given by position (the fourth, as in
    ``fgsm``); ``step_size``, ``steps`` and everything else are keyword-only.

    Args:
        model_fn: A callable from images to logits (or probabilities, see ``from_logits``).
        x: Images ``[N, ...]`` inside ``[clip_min, clip_max]``.
        eps: Radius of the ball (L-infinity or L2), >= 0.
        y: Integer class indices ``[N]`` in ``0..num_classes - 1``, or one integer used for
            every image (labels, or targets when ``targeted``). Floats and bools are
            refused, not truncated. ``None``: the model's predictions on ``x``.
        step_size: Size of one step (keyword-only). ``None``: Kurakin's 1/255 of the range
            when ``steps`` is ``None``, else ``2.5 * eps / steps`` (Madry et al.'s rule).
        steps: Number of steps, >= 0 (keyword-only). ``None``: ``kurakin_steps(eps)``.
        targeted: Move toward ``y``.
        clip_min: Lowest allowed pixel value.
        clip_max: Highest allowed pixel value.
        least_likely: Target each image's least likely class (Kurakin's "iter. l.l.");
            implies ``targeted`` and needs ``y=None``.
        norm: ``'inf'`` (or ``np.inf``) or ``2`` (or ``'l2'``).
        random_start: Start from a uniform random point in the ball (``pgd``).
        seed: Seed of the random start.
        from_logits: Whether ``model_fn`` returns logits (``False``: probabilities;
            ``None``: read from a Keras model's graph, whose final softmax is stripped).
        batch_size: Images per compiled step (the global batch under a strategy).
        strategy: Optional ``tf.distribute`` strategy; every batch is split over its replicas.

    Returns:
        The adversarial images, float32, the shape of ``x``.

    Raises:
        ValueError: bad ``eps``, ``step_size``, ``steps``, ``norm``, clip range, ``x`` or
            ``y``, as in ``fgsm``.
        TypeError: more than four positional arguments.
    """
    norm = _check_norm(norm)
    if steps is not None and (int(steps) != steps or steps < 0):
        raise ValueError(f"steps={steps} must be an integer >= 0 (or None for Kurakin's rule)")
    if step_size is not None and not (math.isfinite(step_size) and step_size > 0):
        raise ValueError(f"step_size={step_size} must be a finite number > 0 (or None)")
    c = _check_attack(model_fn, x, eps, y, targeted, least_likely, clip_min, clip_max, batch_size)
    if steps is None:
        steps = kurakin_steps(eps, clip_min, clip_max) if clip_max > clip_min else 0
        default_size = (clip_max - clip_min) / 255.0
    else:
        default_size = 2.5 * eps / max(int(steps), 1)
    steps = int(steps)
    step_size = default_size if step_size is None else float(step_size)
    x0 = c.x
    start = _random_start(x0, eps, norm, seed, clip_min, clip_max) if random_start else x0
    if eps == 0 or steps == 0:
        return start.copy()
    model_fn, from_logits = _resolve(model_fn, from_logits, x0)
    step = _iter_fn(model_fn, norm, c.targeted, bool(from_logits))
    pick = _labels_fn(model_fn, c.mode) if c.y is None else None
    scalars = [tf.constant(v, tf.float32) for v in (eps, step_size, clip_min, clip_max)]
    out = []
    for rows in batch_slices(len(x0), c.batch_size):
        batch = SplitBatch(strategy, len(x0[rows]))
        (xb,) = batch.split(x0[rows])
        adv = batch.split(start[rows])[0] if random_start else xb
        yb = batch.run(pick, xb) if c.y is None else batch.split(c.y[rows])[0]
        for _ in range(steps):  # the batch stays split across the replicas between steps
            adv = batch.run(step, adv, xb, yb, *scalars)
        out.append(batch.gather(adv))
    return np.concatenate(out)


def pgd(
    model_fn: ModelFn,
    x: np.ndarray,
    eps: float,
    y: np.ndarray | int | None = None,
    *,
    step_size: float | None = None,
    steps: int | None = None,
    targeted: bool = False,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    seed: int = 0,
    **kwargs: Any,
) -> np.ndarray:
    """Projected gradient descent (Madry et al. 2018): ``bim`` from a random point in the ball.

    Args:
        model_fn: A callable from images to logits (or probabilities, see ``from_logits``).
        x: Images ``[N, ...]`` inside ``[clip_min, clip_max]``.
        eps: Radius of the ball (L-infinity or L2), >= 0.
        y: Integer class indices ``[N]``, or one integer for every image, as in ``bim``;
            ``None``: the model's predictions. The last argument that may be positional.
        step_size: Size of one step, as in ``bim`` (keyword-only, like all that follow).
        steps: Number of steps, as in ``bim``.
        targeted: Move toward ``y``.
        clip_min: Lowest allowed pixel value.
        clip_max: Highest allowed pixel value.
        seed: Seed of the random start.
        **kwargs: ``least_likely``, ``norm``, ``from_logits``, ``batch_size``, ``strategy``
            as in ``bim``.

    Returns:
        The adversarial images, float32, the shape of ``x``.

    Raises:
        ValueError: as ``bim``.
        TypeError: more than four positional arguments.
    """
    return bim(
        model_fn,
        x,
        eps,
        y,
        step_size=step_size,
        steps=steps,
        targeted=targeted,
        clip_min=clip_min,
        clip_max=clip_max,
        random_start=True,
        seed=seed,
        **kwargs,
    )


def random_sign_noise(
    x: np.ndarray, eps: float, *, seed: int = 0, clip_min: float = 0.0, clip_max: float = 1.0
) -> np.ndarray:
    """The control: ``x + eps * s`` with random signs ``s`` in {-1, +1}, clipped.

    The same L-infinity size as an FGSM step, but in a direction that ignores the model (so
    it takes neither ``model_fn`` nor ``y``); everything after ``eps`` is keyword-only.

    Args:
        x: Images ``[N, ...]`` inside ``[clip_min, clip_max]``.
        eps: Size of the perturbation, >= 0.
        seed: Seed of the signs (the same seed gives the same noise).
        clip_min: Lowest allowed pixel value.
        clip_max: Highest allowed pixel value.

    Returns:
        The perturbed images, float32, the shape of ``x``.

    Raises:
        ValueError: ``eps < 0``, ``clip_min > clip_max`` or ``x`` outside the clip range.
    """
    eps = _check_eps(eps)
    x = _check_images(x, clip_min, clip_max)
    signs = np.random.default_rng(seed).integers(0, 2, size=x.shape).astype(np.float32) * 2 - 1
    return np.clip(x + np.float32(eps) * signs, clip_min, clip_max).astype(np.float32)


def loss_gradient(
    model_fn: ModelFn,
    x: np.ndarray,
    y: np.ndarray | int | None = None,
    *,
    least_likely: bool = False,
    from_logits: bool | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    strategy: tf.distribute.Strategy | None = None,
) -> np.ndarray:
    """The gradient of the cross-entropy loss of ``y`` with respect to the input.

    It takes no ``eps``, so ``y`` is its third and last positional argument; the rest are
    keyword-only.

    Args:
        model_fn: A callable from images to logits (or probabilities, see ``from_logits``).
        x: Images ``[N, ...]``.
        y: Integer class indices ``[N]``, or one integer for every image, as in ``fgsm``
            (floats and bools are refused); ``None``: the model's predictions.
        least_likely: Use each image's least likely class as ``y``.
        from_logits: Whether ``model_fn`` returns logits (``False``: probabilities;
            ``None``: read from a Keras model's graph, whose final softmax is stripped).
        batch_size: Images per compiled step.
        strategy: Optional ``tf.distribute`` strategy.

    Returns:
        float32 gradients, the shape of ``x``.

    Raises:
        ValueError: bad ``x``, ``y`` or ``batch_size``.
    """
    x = np.asarray(x, np.float32)
    lo, hi = (float(np.min(x)), float(np.max(x))) if x.size else (0.0, 0.0)
    c = _check_attack(model_fn, x, 0.0, y, False, least_likely, lo, hi, batch_size)
    model_fn, from_logits = _resolve(model_fn, from_logits, c.x)
    return _gradients(model_fn, c, from_logits, strategy)[0]


def _gradients(model_fn, c: _Checked, from_logits, strategy) -> tuple[np.ndarray, np.ndarray]:
    """Loss gradients and the model's class probabilities at ``c.x``, in one pass."""
    fn = _grad_fn(model_fn, c.mode, bool(from_logits))
    grads, outputs = map_batches(fn, [c.x, _dummy_labels(c.y, len(c.x))], c.batch_size, strategy)
    probs = tf.nn.softmax(outputs, axis=-1).numpy() if from_logits else outputs
    return grads, probs


def probabilities(
    model_fn: ModelFn,
    x: np.ndarray,
    *,
    from_logits: bool | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    strategy: tf.distribute.Strategy | None = None,
) -> np.ndarray:
    """The model's class probabilities for every image, in batches.

    Args:
        model_fn: A callable from images to logits (or probabilities).
        x: Images ``[N, ...]`` (any range: the model's answer on a perturbation itself is
            a valid question).
        from_logits: Whether ``model_fn`` returns logits (``False``: probabilities;
            ``None``: read from a Keras model's graph, whose final softmax is stripped).
        batch_size: Images per compiled step.
        strategy: Optional ``tf.distribute`` strategy.

    Returns:
        float32 probabilities ``[N, num_classes]``.
    """
    x = np.asarray(x, np.float32)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"x has shape {x.shape}, expected a non-empty batch [N, ...] of images")
    model_fn, from_logits = _resolve(model_fn, from_logits, x)
    fn = _probs_fn(model_fn, bool(from_logits))
    return map_batches(fn, [x], _check_batch_size(batch_size), strategy)


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """One attack of the registry.

    Attributes:
        name: Its name in ``METHODS``, flags and reports.
        fn: The attack: ``fn(model_fn, x, eps, y, **options)`` (``y`` the only optional
            positional argument, the options keyword-only), or ``fn(x, eps, **options)``
            when it does not use the model.
        hyperparameters: Which of the shared options ``steps``, ``step_size``, ``seed`` and
            ``norm`` it takes; ``attack`` drops the shared options it does not take.
        direction: For a single gradient step, its direction (``sign``, ``l2``, ``max``):
            ``sweep`` then reuses one gradient pass for every eps.
        uses_model: False for a control that ignores the model (it takes only its
            hyperparameters and the clip range).
        short_name: Its name in figure titles.
    """

    name: str
    fn: Callable
    hyperparameters: tuple[str, ...] = ()
    direction: str | None = None
    uses_model: bool = True
    short_name: str = ""

    @property
    def label(self) -> str:
        """The name figures show."""
        return self.short_name or self.name


#: Every attack, by name: the one place a new attack is registered.
ATTACKS = {
    spec.name: spec
    for spec in (
        AttackSpec("fgsm", fgsm, direction="sign"),
        AttackSpec("fgm_l2", fgm_l2, direction="l2", short_name="fgm L2"),
        AttackSpec(
            "normalized_gradient", normalized_gradient, direction="max", short_name="g/max|g|"
        ),
        AttackSpec("bim", bim, hyperparameters=("steps", "step_size", "norm")),
        AttackSpec("pgd", pgd, hyperparameters=("steps", "step_size", "seed", "norm")),
        AttackSpec("random", random_sign_noise, hyperparameters=("seed",), uses_model=False),
    )
}
#: Attack names accepted by ``attack`` and ``sweep``.
METHODS = tuple(ATTACKS)
_SHARED_OPTIONS = ("steps", "step_size", "seed")


def attack_spec(method: str) -> AttackSpec:
    """The registry entry of ``method``.

    Raises:
        ValueError: an unknown ``method``.
    """
    if method not in ATTACKS:
        raise ValueError(f"method={method!r} is not one of {list(METHODS)}")
    return ATTACKS[method]


def attack(
    method: str,
    model_fn: ModelFn,
    x: np.ndarray,
    eps: float,
    y: np.ndarray | int | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """Runs the attack named ``method`` (one of ``METHODS``) with keyword options.

    The shared options ``steps``, ``step_size`` and ``seed`` are dropped for the methods
    that do not take them (``AttackSpec.hyperparameters``); a control that ignores the model
    (``random``) gets only its hyperparameters and ``clip_min``/``clip_max``, not ``y``.

    Args:
        method: A name from ``METHODS``.
        model_fn: A callable from images to logits (or probabilities).
        x: Images ``[N, ...]`` inside the clip range.
        eps: The attack's size, >= 0.
        y: Integer class indices ``[N]``, or one integer for every image, as in ``fgsm``;
            ``None``: the model's predictions. The last argument that may be positional.
        **kwargs: The attack's keyword options (``targeted``, ``clip_min``, ``clip_max``,
            ``steps``, ``step_size``, ``seed``, ``norm``, ...).

    Returns:
        The adversarial images, float32, the shape of ``x``.

    Raises:
        ValueError: an unknown ``method``, or what the attack raises.
    """
    spec = attack_spec(method)
    if not spec.uses_model:
        names = (*spec.hyperparameters, "clip_min", "clip_max")
        return spec.fn(x, eps, **{k: kwargs[k] for k in names if k in kwargs})
    kwargs = {
        k: v for k, v in kwargs.items() if k not in _SHARED_OPTIONS or k in spec.hyperparameters
    }
    return spec.fn(model_fn, x, eps, y, **kwargs)


# ----------------------------------------------------------------------------------------
# Robustness sweep: accuracy under every method at every eps
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SweepRow:
    """One cell of the robustness table.

    Attributes:
        method: The attack.
        eps: Its size.
        accuracy: Fraction of adversarial images classified as their true label.
        changed: Fraction whose predicted class differs from the clean prediction.
        mean_wrong_confidence: Mean top-1 probability of the wrong answers (``None`` if
            there are none).
        target_rate: Fraction classified as the attack's target (targeted sweeps only).
        seconds: Wall time of the attack and its evaluation (single-step methods: applying
            the shared gradient and evaluating).
    """

    method: str
    eps: float
    accuracy: float
    changed: float
    mean_wrong_confidence: float | None
    target_rate: float | None
    seconds: float


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """The robustness table of ``sweep``.

    Attributes:
        rows: One ``SweepRow`` per method and eps, methods outermost.
        clean_accuracy: Accuracy on the unperturbed images.
        num_images: Images attacked.
        targeted: Whether the attacks were targeted.
        least_likely: Whether the targets were the least likely classes.
        steps: Iterations of ``bim``/``pgd`` (``None``: Kurakin's rule per eps).
        gradient_seconds: Wall time of the clean pass (predictions and the gradient that
            every single-step method shares; not counted in their rows' ``seconds``).
    """

    rows: tuple[SweepRow, ...]
    clean_accuracy: float
    num_images: int
    targeted: bool
    least_likely: bool
    steps: int | None
    gradient_seconds: float

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods, in order."""
        return tuple(dict.fromkeys(r.method for r in self.rows))

    @property
    def eps_values(self) -> tuple[float, ...]:
        """The eps values, in order."""
        return tuple(dict.fromkeys(r.eps for r in self.rows))

    def accuracy(self, method: str, eps: float) -> float:
        """The accuracy under ``method`` at ``eps``."""
        for row in self.rows:
            if row.method == method and math.isclose(row.eps, eps):
                return row.accuracy
        raise KeyError(f"no row for method={method!r}, eps={eps}")

    def curves(self) -> dict[str, list[float]]:
        """``{method: [accuracy at each eps]}``."""
        return {m: [r.accuracy for r in self.rows if r.method == m] for m in self.methods}

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """A header and rows for CSV output."""
        header = [f.name for f in dataclasses.fields(SweepRow)]
        return header, [[getattr(r, h) for h in header] for r in self.rows]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        out = dataclasses.asdict(self)
        out["rows"] = [dataclasses.asdict(r) for r in self.rows]
        out.update(methods=list(self.methods), eps_values=list(self.eps_values))
        return out


def _row(method, eps, probs, labels, clean_pred, target, seconds) -> SweepRow:
    pred = probs.argmax(-1)
    wrong = pred != labels
    conf = probs.max(-1)
    return SweepRow(
        method=method,
        eps=float(eps),
        accuracy=float(np.mean(~wrong)),
        changed=float(np.mean(pred != clean_pred)),
        mean_wrong_confidence=float(conf[wrong].mean()) if wrong.any() else None,
        target_rate=None if target is None else float(np.mean(pred == target)),
        seconds=float(seconds),
    )


def sweep(
    model_fn: ModelFn,
    x: np.ndarray,
    labels: np.ndarray,
    eps_values: Sequence[float],
    methods: Sequence[str] = DEFAULT_METHODS,
    *,
    y: np.ndarray | int | None = None,
    targeted: bool = False,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    least_likely: bool = False,
    steps: int | None = None,
    step_size: float | None = None,
    seed: int = 0,
    from_logits: bool | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    strategy: tf.distribute.Strategy | None = None,
    callback: Callable[[SweepRow], None] | None = None,
) -> SweepResult:
    """Accuracy of the model under every method at every eps (the robustness table).

    The single-step methods share one gradient pass over ``x`` (their gradient does not
    depend on eps); ``bim`` and ``pgd`` run once per eps; eps 0 is the clean result.
    Everything after ``methods`` is keyword-only (``labels`` and ``y`` are easy to confuse).

    Args:
        model_fn: A callable from images to logits (or probabilities).
        x: Images ``[N, ...]`` inside ``[clip_min, clip_max]``.
        labels: True class indices ``[N]`` (accuracy is measured against them).
        eps_values: The attack sizes, each >= 0.
        methods: Names from ``METHODS``.
        y: The attack's labels or targets: integer class indices ``[N]`` or one integer
            for every image, as in ``fgsm`` (``None``: the model's predictions).
        targeted: Move toward ``y``.
        clip_min: Lowest allowed pixel value.
        clip_max: Highest allowed pixel value.
        least_likely: Target each image's least likely class.
        steps: ``bim``/``pgd`` iterations (``None``: Kurakin's rule).
        step_size: ``bim``/``pgd`` step (``None``: see ``bim``).
        seed: Seed of the random control and of the PGD start.
        from_logits: Whether ``model_fn`` returns logits (``False``: probabilities;
            ``None``: read from a Keras model's graph, whose final softmax is stripped).
        batch_size: Images per compiled step.
        strategy: Optional ``tf.distribute`` strategy.
        callback: Called with every finished ``SweepRow`` (progress reports).

    Returns:
        A ``SweepResult``.

    Raises:
        ValueError: an unknown or repeated method, an empty or negative eps list, bad
            labels, or what the attacks raise.
    """
    methods = tuple(methods)
    bad = [m for m in methods if m not in METHODS]
    if not methods or bad or len(set(methods)) != len(methods):
        raise ValueError(f"methods={list(methods)} must be distinct names from {list(METHODS)}")
    eps_values = tuple(_check_eps(e, "eps_values entry") for e in eps_values)
    if not eps_values:
        raise ValueError("eps_values is empty; expected at least one eps >= 0")
    c = _check_attack(model_fn, x, 0.0, y, targeted, least_likely, clip_min, clip_max, batch_size)
    num_classes = _tf.num_classes(model_fn, c.x)
    labels = _check_labels(labels, len(c.x), num_classes, name="labels")
    if steps is not None and (int(steps) != steps or steps < 0):
        raise ValueError(f"steps={steps} must be an integer >= 0 (or None)")

    start = time.perf_counter()
    model_fn, from_logits = _resolve(model_fn, from_logits, c.x)
    grad, clean = _gradients(model_fn, c, from_logits, strategy)
    clean_pred = clean.argmax(-1)
    target = None
    if c.targeted:
        target = c.y if c.y is not None else clean.argmin(-1)
    grad_seconds = time.perf_counter() - start
    options = dict(
        y=c.y,
        targeted=targeted,
        clip_min=clip_min,
        clip_max=clip_max,
        least_likely=least_likely,
        from_logits=from_logits,
        batch_size=c.batch_size,
        strategy=strategy,
    )
    rows = []
    for method in methods:
        spec = ATTACKS[method]
        for eps in eps_values:
            t0 = time.perf_counter()
            if eps == 0:
                probs = clean
            else:
                if spec.direction is not None:  # the shared gradient, one step
                    x_adv = _apply_step(
                        c.x, grad, eps, spec.direction, c.targeted, clip_min, clip_max
                    ).numpy()
                else:
                    x_adv = attack(
                        method,
                        model_fn,
                        c.x,
                        eps,
                        steps=steps,
                        step_size=step_size,
                        seed=seed,
                        **options,
                    )
                probs = probabilities(
                    model_fn,
                    x_adv,
                    from_logits=from_logits,
                    batch_size=c.batch_size,
                    strategy=strategy,
                )
            row = _row(method, eps, probs, labels, clean_pred, target, time.perf_counter() - t0)
            rows.append(row)
            if callback is not None:
                callback(row)
    return SweepResult(
        rows=tuple(rows),
        clean_accuracy=float(np.mean(clean_pred == labels)),
        num_images=len(c.x),
        targeted=c.targeted,
        least_likely=bool(least_likely),
        steps=None if steps is None else int(steps),
        gradient_seconds=grad_seconds,
    )
