"""Runtime plumbing every method shares: batches (split across the replicas of a strategy),
the input gradient of a score, compiled functions cached per model, class counts, freed
memory handed back."""

from __future__ import annotations

import ctypes
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfool import interrupts

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cached(owner: Any, key: tuple, build: Callable[[], Any]) -> Any:
    """``build()``'s result, made once per ``owner`` (a model, a strategy) and ``key``.

    The cache holds ``owner`` weakly, so it never keeps a model alive (what ``build`` makes
    must reach the model through ``weak_call``); an owner that cannot be weakly referenced
    gets a fresh ``build()`` on every call.
    """
    try:
        per_owner = _CACHE.setdefault(owner, {})
    except TypeError:
        return build()
    if key not in per_owner:
        per_owner[key] = build()
    return per_owner[key]


def weak_call(fn: Callable) -> Callable:
    """``fn``, called through a weak reference when it can be weakly referenced."""
    try:
        ref = weakref.ref(fn)
    except TypeError:
        return fn
    return lambda *args, **kwargs: ref()(*args, **kwargs)


def num_classes(model_fn: Callable, x: np.ndarray | None = None) -> int:
    """The number of outputs of a classifier, from its Keras graph when known, else from one
    forward pass on ``x[:1]``.

    Raises:
        ValueError: the model does not return ``[batch, classes]``, or the count is not in
            its graph and no ``x`` is given.
    """
    outputs = getattr(model_fn, "outputs", None)
    if outputs and len(outputs) == 1 and len(outputs[0].shape) == 2 and outputs[0].shape[-1]:
        return int(outputs[0].shape[-1])
    if x is None:
        raise ValueError("the model's class count is not in its graph; pass images to probe it")
    out = model_fn(tf.constant(np.asarray(x)[:1]))
    if len(out.shape) != 2:
        raise ValueError(
            f"model_fn returned shape {tuple(out.shape)} for one image; expected [batch, classes]"
        )
    return int(out.shape[-1])


def available_memory() -> int | None:
    """Bytes of memory the system can still give (``MemAvailable`` of ``/proc/meminfo``),
    ``None`` where that is not known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _output_elements(model) -> int:
    """Float elements per image of every layer output of ``model``, nested models' inner
    layers included (their shapes as built; unknown dimensions are skipped)."""
    elements = 0
    for layer in getattr(model, "layers", []):
        if hasattr(layer, "layers") and layer.layers:  # a nested model: its inner layers
            elements += _output_elements(layer)
            continue
        try:
            outputs = tf.nest.flatten(layer.output)
        except (AttributeError, ValueError):  # a layer never called, or called twice
            continue
        for out in outputs:
            shape = getattr(out, "shape", None)
            if shape is not None and all(d is not None for d in shape[1:]):
                elements += int(np.prod(shape[1:]))
    return elements


def batch_memory(model, batch_size: int, gradients: bool = True) -> int:
    """Bytes one batch through ``model`` holds at its peak, roughly: every layer's float32
    output (the layers of nested models too) for ``batch_size`` images, twice when input
    gradients flow back through them (an upper estimate: TensorFlow frees what the
    backward pass does not need; measured on EfficientNet-Lite0 the peak was 0.3x to 0.8x
    of it).

    Args:
        model: A Keras model (its layers' output shapes are read, nothing is computed).
        batch_size: Images per batch.
        gradients: Whether the batch also takes a gradient (an attack, an attribution).
    """
    return int(batch_size) * _output_elements(model) * 4 * (2 if gradients else 1)


def check_memory(need: int, what: str, advice: str, detail: str = "") -> None:
    """Refuses work that needs more memory than the system has available.

    Raises:
        ValueError: ``need`` bytes exceed ``available_memory()``; the message names
            ``what``, the need (with ``detail``, e.g. its parts) and gives ``advice``.
    """
    have = available_memory()
    if have is not None and need > have:
        raise ValueError(
            f"{what} needs about {need / 1e9:.1f} GB{detail} but the machine has "
            f"{have / 1e9:.1f} GB available; {advice}"
        )


def release_free_memory() -> bool:
    """Hands memory freed by the process back to the system (glibc's ``malloc_trim``).

    Large transient buffers (a reference set built label by label) are freed in pieces
    that glibc may keep resident; trimming returns them, so the peak resident memory of a
    run is what it holds rather than what it once held. Does nothing elsewhere.

    Returns:
        Whether memory was trimmed.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False


def is_finite_number(value) -> bool:
    """Whether ``value`` is a finite int or float (NumPy scalars too; not a bool, a string
    or ``None``): the check behind every numeric argument of the configs and attacks."""
    return (
        isinstance(value, (int, float, np.number))
        and not isinstance(value, bool)
        and bool(np.isfinite(value))
    )


def batch_slices(num_rows: int, batch_size: int) -> Iterator[slice]:
    """The consecutive ``slice`` s of ``batch_size`` rows (the last may be shorter) that
    cover ``num_rows`` rows: every host-side batching loop of tfool walks these."""
    for start in range(0, int(num_rows), int(batch_size)):
        yield slice(start, min(start + int(batch_size), int(num_rows)))


def fold_batches(
    step: Callable[[Any, slice], Any], num_rows: int, batch_size: int, state: Any = None
) -> Any:
    """The one streaming fold of tfool's host loops: ``state = step(state, rows)`` for every
    ``rows`` slice of ``batch_slices(num_rows, batch_size)``, in order, with a Ctrl-C /
    SIGTERM check (``tfool.interrupts.check``) before each batch.

    Only one batch's values are alive at a time beside ``state``, so a pass over data that
    does not fit in memory at once streams through it.

    Args:
        step: ``(state, rows) -> state``.
        num_rows: Rows to cover, >= 0.
        batch_size: Rows per batch, >= 1.
        state: The initial state.

    Returns:
        The final state (``state`` itself when there are no rows).
    """
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ValueError(f"batch_size={batch_size!r} must be an int >= 1")
    for rows in batch_slices(num_rows, batch_size):
        interrupts.check()
        state = step(state, rows)
    return state


def input_gradient(score_fn: Callable, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``d sum(score) / d x`` and the per-row score, where ``score_fn(x)`` returns one score
    per row (any further outputs it returns are ignored for the gradient).

    Every input gradient of tfool (attacks, attributions, projection) goes through here;
    call it inside a ``tf.function``.
    """
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = score_fn(x)
        total = tf.reduce_sum(score[0] if isinstance(score, tuple) else score)
    return tape.gradient(total, x), score


# ----------------------------------------------------------------------------------------
# Compiled steps on a batch split across replicas, results gathered in order
# ----------------------------------------------------------------------------------------


class SplitBatch:
    """One batch of ``num_rows`` rows cut into contiguous, equal slices, one per replica.

    Replica ``i`` holds rows ``[i * per, (i + 1) * per)``; a batch that does not divide by
    the replica count is padded by repeating its last row, and ``gather`` drops the padding,
    so the rows come back in input order on any strategy. Every worker of a multi-worker
    strategy must feed the same batch: the slicing uses global replica ids, so no dataset
    auto-sharding is involved. Split values stay on their replicas between steps, so an
    iterative attack splits once, runs many steps and gathers once.

    Without a strategy every method is a plain pass-through.

    Args:
        strategy: A ``tf.distribute`` strategy, or ``None``.
        num_rows: Rows of the batch, >= 1.
    """

    def __init__(self, strategy: tf.distribute.Strategy | None, num_rows: int):
        if int(num_rows) < 1:
            raise ValueError(f"num_rows={num_rows} must be >= 1 (an empty batch cannot be split)")
        self.strategy = strategy
        self.num_rows = int(num_rows)
        self.replicas = 1 if strategy is None else int(strategy.num_replicas_in_sync)
        self.per_replica = -(-self.num_rows // self.replicas)
        self.padding = self.per_replica * self.replicas - self.num_rows

    def split(self, *values: Any) -> tuple:
        """Each value (``[num_rows, ...]`` array or tensor) as per-replica slices."""
        tensors = tuple(tf.convert_to_tensor(v) for v in values)
        for t in tensors:
            if t.shape.rank == 0 or t.shape[0] != self.num_rows:
                raise ValueError(
                    f"a split value has shape {t.shape}; expected {self.num_rows} rows first"
                )
        if self.strategy is None:
            return tensors
        out = []
        for t in tensors:
            if self.padding:
                t = tf.concat([t, tf.repeat(t[-1:], self.padding, axis=0)], axis=0)
            out.append(self._slices(t))
        return tuple(out)

    def row_mask(self, dtype: tf.DType = tf.float32) -> Any:
        """Per-replica ``[per_replica]`` weights: 1 for the batch's rows, 0 for padding
        (for sums that padding must not enter, such as a training loss)."""
        mask = tf.concat([tf.ones([self.num_rows], dtype), tf.zeros([self.padding], dtype)], axis=0)
        return mask if self.strategy is None else self._slices(mask)

    def _slices(self, padded: tf.Tensor) -> Any:
        per = self.per_replica
        return self.strategy.experimental_distribute_values_from_function(
            lambda ctx: padded[ctx.replica_id_in_sync_group * per :][:per]
        )

    def run(self, fn: Callable, *args: Any) -> Any:
        """``fn(*args)`` on every replica (``tf.function`` steps; plain tensors replicate)."""
        if self.strategy is None:
            return fn(*args)
        return self.strategy.run(fn, args=args)

    def gather(self, value: Any) -> Any:
        """A per-replica output (or a nest of them, rows first) as NumPy, in row order."""
        if self.strategy is None:
            return tf.nest.map_structure(lambda t: t.numpy(), value)

        if not self._all_local(value):  # several workers: one compiled all-gather
            gathered = self.strategy.run(_collectives(self.strategy)[0], args=(value,))
            first = self.strategy.experimental_local_results(gathered)[0]
            return tf.nest.map_structure(lambda t: t.numpy()[: self.num_rows], first)

        def one(t):  # one worker: its replicas in replica-id order
            parts = [part.numpy() for part in self.strategy.experimental_local_results(t)]
            return np.concatenate(parts)[: self.num_rows]

        return tf.nest.map_structure(one, value)

    def total(self, value: Any) -> float:
        """The sum over the replicas of a per-replica scalar, as a Python float."""
        if self.strategy is None:
            return float(value)
        if not self._all_local(value):
            every = self.strategy.run(_collectives(self.strategy)[1], args=(value,))
            return float(np.sum(self.strategy.experimental_local_results(every)[0]))
        return float(sum(float(v) for v in self.strategy.experimental_local_results(value)))

    def _all_local(self, value: Any) -> bool:
        first = tf.nest.flatten(value)[0]
        return len(self.strategy.experimental_local_results(first)) == self.replicas


def _collectives(strategy: tf.distribute.Strategy) -> tuple[Callable, Callable]:
    """Compiled all-gather replica functions of ``strategy``: of rows, and of scalars.

    Compiled once per strategy: an eager ``strategy.gather`` traces a new function on every
    call, which costs more than the step it gathers.
    """

    def build():
        @tf.function(reduce_retracing=True)
        def gather(value):
            ctx = tf.distribute.get_replica_context()
            # tf.identity: an all-gather of a bare function input finds no device
            return tf.nest.map_structure(lambda t: ctx.all_gather(tf.identity(t), 0), value)

        @tf.function(reduce_retracing=True)
        def every(value):  # a scalar per replica -> all of them, summed on the host
            return tf.distribute.get_replica_context().all_gather(tf.reshape(value, [1]), 0)

        return gather, every

    return cached(strategy, ("collectives",), build)


def run_batch(
    fn: Callable,
    args: Sequence[Any],
    strategy: tf.distribute.Strategy | None = None,
    replicated: Iterable[int] = (),
) -> Any:
    """``fn(*args)`` on one batch, its rows split across the replicas of ``strategy``.

    Args:
        fn: A ``tf.function`` of batch tensors returning a tensor or a nest (tuple, dict)
            of tensors, every one with the batch's rows first. No ``input_signature``:
            ``MirroredStrategy.run`` re-binds it to per-replica values (use
            ``reduce_retracing=True`` instead).
        args: The arguments; each is split by rows unless its position is in
            ``replicated``.
        strategy: Optional ``tf.distribute`` strategy; ``None`` calls ``fn`` directly.
        replicated: Positions of arguments passed whole to every replica (shared inputs
            such as the full image batch that row indices point into).

    Returns:
        ``fn``'s outputs as NumPy arrays, in the structure ``fn`` returns, rows in order.

    Raises:
        ValueError: no split argument, or split arguments with different row counts.
    """
    keep = set(replicated)
    split_at = [i for i in range(len(args)) if i not in keep]
    if not split_at:
        raise ValueError("run_batch needs at least one argument split by rows")
    tensors = [tf.convert_to_tensor(a) for a in args]
    rows = {int(tensors[i].shape[0]) if tensors[i].shape.rank else 0 for i in split_at}
    if len(rows) != 1:
        raise ValueError(f"the split arguments have different row counts {sorted(rows)}")
    batch = SplitBatch(strategy, rows.pop())
    for i, t in zip(split_at, batch.split(*(tensors[i] for i in split_at)), strict=True):
        tensors[i] = t
    return batch.gather(batch.run(fn, *tensors))


def map_batches(
    fn: Callable,
    arrays: Sequence[Any],
    batch_size: int,
    strategy: tf.distribute.Strategy | None = None,
    replicated: Iterable[int] = (),
) -> Any:
    """``run_batch`` over consecutive batches of ``batch_size`` rows, outputs concatenated.

    Args:
        fn: As in ``run_batch``.
        arrays: As ``args`` of ``run_batch``; the split ones hold every row.
        batch_size: Rows per step (the global batch, split across the replicas), >= 1.
        strategy: Optional ``tf.distribute`` strategy.
        replicated: Positions of arguments passed whole to every step and replica.

    Returns:
        ``fn``'s outputs over all rows, in order, in the structure ``fn`` returns.
    """
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ValueError(f"batch_size={batch_size!r} must be an int >= 1")
    keep = set(replicated)
    split_at = [i for i in range(len(arrays)) if i not in keep]
    if not split_at:
        raise ValueError("map_batches needs at least one argument split by rows")
    num_rows = len(arrays[split_at[0]])
    if num_rows == 0:
        raise ValueError("map_batches got no rows; expected at least one")
    shared = {i: tf.convert_to_tensor(arrays[i]) for i in keep}

    def step(parts: list, rows: slice) -> list:
        args = [shared[i] if i in keep else arrays[i][rows] for i in range(len(arrays))]
        return [*parts, run_batch(fn, args, strategy, keep)]

    parts = fold_batches(step, num_rows, batch_size, [])
    return tf.nest.map_structure(lambda *p: np.concatenate(p), *parts)
