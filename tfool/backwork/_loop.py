"""The backworking loop: ``backwork``, its two loop orders (tfool's and the original
program's), the decline windows, the history and re-initialisation."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfool import classifier, interrupts
from tfool.backwork._config import BackworkConfig
from tfool.backwork._engine import engine_of
from tfool.backwork._events import (
    BackworkCallback,
    BackworkResult,
    SaveEvent,
    target_probabilities,
)
from tfool.backwork._prepared import Prepared, check_initial_images, initial_batch, prepare
from tfool.data import Dataset
from tfool.references import ReferenceSet

logger = logging.getLogger("tfool.backwork")


class _Tracker:
    """The monotonic-decline windows of every row."""

    def __init__(self, rows: int, window: int):
        self.window = window
        self.values = np.full((rows, window), np.nan, np.float32)
        self.count = np.zeros(rows, np.int64)

    def push(self, probs: np.ndarray, rows_mask: np.ndarray) -> None:
        self.values[rows_mask] = np.roll(self.values[rows_mask], -1, axis=1)
        self.values[rows_mask, -1] = probs[rows_mask]
        self.count[rows_mask] = np.minimum(self.count[rows_mask] + 1, self.window)

    def declining(self, below: float) -> np.ndarray:
        full = self.count >= self.window
        diffs = np.diff(self.values, axis=1)
        never_up = np.all(diffs <= 0, axis=1)
        return full & never_up & (self.values[:, -1] < below)

    def clear(self, rows_mask: np.ndarray) -> None:
        self.values[rows_mask] = np.nan
        self.count[rows_mask] = 0


class _History:
    """Snapshots thinned so that at most ``max_len`` are kept."""

    def __init__(self, every: int, max_len: int):
        self.every, self.max_len, self.seen = every, max_len, 0
        self.steps, self.images, self.probs = [], [], []

    def add(self, step: int, images: np.ndarray, probs: np.ndarray) -> None:
        keep = self.seen % self.every == 0
        self.seen += 1
        if not keep:
            return
        self.steps.append(step)
        self.images.append(images.copy())
        self.probs.append(probs.copy())
        if len(self.steps) > self.max_len:
            self.steps, self.images, self.probs = self.steps[::2], self.images[::2], self.probs[::2]
            self.every *= 2

    def arrays(self, image_shape, probs_shape):
        if not self.steps:
            return (
                np.zeros(0, np.int64),
                np.zeros((0, *image_shape), np.float32),
                np.zeros((0, *probs_shape), np.float32),
            )
        return np.asarray(self.steps), np.stack(self.images), np.stack(self.probs)


def backwork(
    model: keras.Model,
    data: Dataset | None,
    config: BackworkConfig = BackworkConfig(),
    strategy: tf.distribute.Strategy | None = None,
    callbacks: Sequence[BackworkCallback] | None = None,
    initial_images: np.ndarray | None = None,
    references: ReferenceSet | None = None,
    prepared: Prepared | None = None,
) -> BackworkResult:
    """Backworks ``config.num_examples`` images for every label of ``config.labels``.

    All labels share one trainable batch; each row is scored against its own label's
    reference set and the batch cost pairs rows of the same label only, so the result
    equals running the labels one by one with the same seed. A converged label is frozen
    (its rows and Adam moments stop changing) while the others go on.

    Args:
        model: A Keras classifier (logits unless ``config.from_logits`` is False); frozen.
        data: Its training data; the images of each target label form its reference set.
            ``None`` is allowed when only the probabilities are exposed (rubbish images).
        config: The run's settings.
        strategy: A ``tf.distribute`` strategy; variables are created in its scope.
        callbacks: ``BackworkCallback`` objects (progress, TensorBoard, ...).
        initial_images: Start from these images ``[L, E, H, W, C]`` (one row per label of
            ``config.labels``, ``config.num_examples`` each, inside ``[input_min,
            input_max]``: a previous result, real digits, ...) instead of ``config.init``.
            Re-initialisations still draw fresh noise.
        references: The reference set to use, from ``reference_set`` (built here when
            ``None``); pass the same one to ``layer_distances`` to hold it once.
        prepared: The run's ``prepare(model, data, config)`` (made here when ``None``),
            its reference set reused when it holds one.

    Returns:
        A ``BackworkResult``; after Ctrl-C, what was found so far (``interrupted=True``).

    Raises:
        ValueError: labels outside the model's classes, too few examples for the batch
            cost, coefficients that do not match the exposed layers, a label with no
            training images, training images of another shape than the model's input,
            ``initial_images`` of the wrong shape or range, a reference set of other
            layers or labels, ``prepared`` for another model, data or config.
    """
    callbacks = list(callbacks or [])
    strategy = strategy or tf.distribute.get_strategy()
    if prepared is None:
        prepared = prepare(model, data, config)
    else:
        prepared.check(model, data, config)
    logger.info(
        "exposed layers of %s: %s (the last: the class probabilities)",
        model.name,
        ", ".join(prepared.layer_names),
    )
    if initial_images is not None:
        initial_images = check_initial_images(initial_images, config, prepared.image_shape)
    start_time = time.perf_counter()
    prepared = prepared.with_references(references)
    init, rngs = initial_batch(data, config, prepared.image_shape)
    if initial_images is not None:  # the seeded draws above keep the noise streams aligned
        init = initial_images.reshape(len(init), *prepared.image_shape)
    classifier.probe(model, init, config.from_logits)

    engine = engine_of(prepared, init, strategy)
    for cb in callbacks:
        cb.on_start(config, len(init))
    labels = np.asarray(config.labels, np.int64)
    state = _LoopState(
        config,
        labels,
        config.num_examples,
        prepared.image_shape,
        init,
        prepared.num_classes,
        callbacks,
    )
    loop = _original_loop if config.semantics == "original" else _tfool_loop
    try:
        loop(engine, state, config, rngs)
    except KeyboardInterrupt:
        state.interrupted = True
        logger.warning("backwork interrupted at step %d; keeping what was found", state.step)
    result = state.result(prepared.layer_names, time.perf_counter() - start_time)
    for cb in callbacks:
        cb.on_end(result)
    return result


class _LoopState:
    """What the host keeps between steps: the latest values, the per-label flags and counts,
    the decline windows and the history."""

    def __init__(self, config, labels, per, image_shape, init, num_classes, callbacks):
        num_labels = len(labels)
        self.config, self.labels, self.per = config, labels, per
        self.shape = (num_labels, per, *image_shape)
        self.callbacks = callbacks
        self.label_of_row = np.repeat(np.arange(num_labels), per)
        self.active = np.ones(num_labels, bool)
        self.converged = np.zeros(num_labels, bool)
        self.label_steps = np.zeros(num_labels, np.int64)
        self.reinits = np.zeros(num_labels, np.int64)
        self.prev_cost = np.full(num_labels, np.nan)
        self.tracker = _Tracker(num_labels * per, config.num_mono_dec_saves)
        self.history = _History(config.history_every, config.max_history)
        self.images = init.reshape(self.shape)
        self.probs = np.zeros((num_labels, per, num_classes), np.float32)
        self.cost = np.zeros(num_labels, np.float32)
        self.terms: dict = {}
        self.step = 0
        self.interrupted = False

    @property
    def active_rows(self) -> np.ndarray:
        """``[rows]`` whether each row's label is still being optimised."""
        return self.active[self.label_of_row]

    def observe(self, engine):
        """Computes the cost, probabilities and gradient of the current images."""
        grad, self.cost, self.terms, self.probs = engine.compute(self.active)
        self.images = engine.images().reshape(self.shape)
        return grad

    def save(self, test_caps: bool, test_tolerance: bool) -> np.ndarray:
        """A save: history, convergence tests, decline windows, callbacks.

        Returns:
            ``[rows]`` the rows to re-initialise.
        """
        c = self.config
        target = target_probabilities(self.probs, self.labels)
        self.history.add(self.step, self.images, self.probs)
        if test_caps:
            reached = (target.min(axis=1) > c.prob_cap_min) | (
                target.mean(axis=1) > c.prob_cap_mean
            )
            self.converged |= self.active & reached
            self.active &= ~reached
        self.test_tolerance(test_tolerance)
        rows = self.active_rows
        self.tracker.push(target.reshape(-1), rows)
        reinit = self.tracker.declining(c.reinit_below) & rows
        event = SaveEvent(
            self.step,
            self.labels,
            target,
            self.cost,
            self.terms,
            self.reinits.copy(),
            self.active.copy(),
            self.images,
        )
        for cb in self.callbacks:
            cb.on_save(event)
        return reinit

    def test_tolerance(self, test: bool = True) -> None:
        """Stops the labels whose cost changed by less than ``tolerance`` since the last
        call (when ``test``), then remembers the active labels' costs."""
        if test and self.config.tolerance > 0:
            flat = np.abs(self.cost - self.prev_cost) < self.config.tolerance
            self.active &= ~flat
        self.prev_cost = np.where(self.active, self.cost, self.prev_cost)

    def reinitialised(self, rows: np.ndarray) -> None:
        """Clears the windows of re-initialised rows and counts them."""
        self.tracker.clear(rows)
        np.add.at(self.reinits, self.label_of_row[rows], 1)

    def stepped(self) -> None:
        """Counts one optimisation step of the active labels."""
        self.label_steps += self.active
        self.step += 1

    def result(self, names, wall_time: float) -> BackworkResult:
        h_steps, h_images, h_probs = self.history.arrays(self.shape, self.probs.shape)
        return BackworkResult(
            labels=self.labels,
            images=self.images,
            probabilities=self.probs,
            history_steps=h_steps,
            history_images=h_images,
            history_probs=h_probs,
            steps=self.step,
            label_steps=self.label_steps,
            reinits=self.reinits,
            converged=self.converged,
            cost=self.cost,
            cost_terms=self.terms,
            layer_names=tuple(names),
            wall_time=wall_time,
            interrupted=self.interrupted,
        )


def _tfool_loop(engine, state: _LoopState, config: BackworkConfig, rngs) -> None:
    """Save (the initial noise included), test, then step; Adam restarts on re-initialised
    rows, which skip that step."""
    while True:
        interrupts.check()  # Ctrl-C / SIGTERM land here, between steps
        grad = state.observe(engine)
        reinit = np.zeros_like(state.active_rows)
        if state.step % config.save_freq == 0:
            late = state.step >= config.min_num_steps
            reinit = state.save(test_caps=late, test_tolerance=late)
        if not state.active.any() or state.step >= config.max_num_steps:
            return
        engine.apply(grad, state.active_rows & ~reinit)
        if reinit.any():
            engine.reinitialise(reinit, state.label_of_row, rngs, reset_adam=True)
            state.reinitialised(reinit)
        state.stepped()


def _original_loop(engine, state: _LoopState, config: BackworkConfig, rngs) -> None:
    """The original program's order, per label: an Adam step, then evaluate; every
    ``save_freq`` steps (and after the last) a save with its tests and re-initialisations
    (Adam's moments and step count kept); the tolerance tested after every step. The
    initial noise is never saved."""
    grad = state.observe(engine)
    state.prev_cost = np.full(len(state.labels), np.inf)
    while state.active.any() and state.step < config.max_num_steps:
        interrupts.check()
        engine.apply(grad, state.active_rows)
        state.stepped()
        done = state.step - 1  # the original's loop counter
        grad = state.observe(engine)
        reinit = np.zeros_like(state.active_rows)
        if done % config.save_freq == 0 or state.step == config.max_num_steps:
            reinit = state.save(test_caps=done >= config.min_num_steps, test_tolerance=False)
        if reinit.any():
            engine.reinitialise(reinit, state.label_of_row, rngs, reset_adam=False)
            state.reinitialised(reinit)
        state.test_tolerance(done >= config.min_num_steps)
        if reinit.any():  # the next step starts from the new noise
            grad = state.observe(engine)
