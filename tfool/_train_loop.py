"""The parts of ``tfool.models.train``: its check of the model, its compiled step, one epoch."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from tfool import _tf, classifier, interrupts
from tfool.data import Dataset


def check_logits(model: keras.Model) -> None:
    """Refuses a model that ends in a softmax (training takes logits)."""
    softmax = classifier.final_softmax(model) if classifier.has_graph(model) else None
    if softmax is not None:
        raise ValueError(
            f"model {model.name!r} ends in a softmax (layer {softmax!r}) but training takes "
            "logits: train tfool.classifier.logits_copy(model) instead"
        )


def train_step(model: keras.Model, soft_targets: bool = False, adversary=None) -> Callable:
    """The compiled per-replica step: one Adam update on a (slice of a) global batch.

    Each replica sums its rows' cross-entropy (padding rows weigh 0) and divides by the
    global batch size; the optimiser sums the gradients over the replicas, so the update
    is the global batch's mean gradient whatever the split. With an ``adversary``
    (``tfool.adversarial.AdversarialTraining``) the step takes a ``[2]`` seed and trains on
    the batch it attacks.
    """
    if soft_targets:  # [N, C] target distributions (retraining with negatives)
        loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True, reduction=None)
    else:
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)

    def update(x, y, weight, global_rows):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            losses = loss_fn(y, logits) * weight
            loss = tf.reduce_sum(losses) / global_rows
        grads = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        labels = tf.argmax(y, axis=-1) if soft_targets else tf.cast(y, tf.int64)
        hits = tf.cast(tf.equal(tf.argmax(logits, axis=-1), labels), tf.float32)
        return tf.reduce_sum(losses), tf.reduce_sum(hits * weight)

    if adversary is None:
        return tf.function(update)

    @tf.function
    def attacked(x, y, weight, global_rows, seed):
        x_adv = adversary.perturb(model, loss_fn, x, y, seed)
        return update(x_adv, y, weight, global_rows)

    return attacked


@dataclasses.dataclass(frozen=True, eq=False)
class EpochRun:
    """What every step of ``train`` uses: the model, the data, the compiled step, the hooks."""

    model: keras.Model
    data: Dataset
    batch_size: int
    seed: int
    strategy: tf.distribute.Strategy | None
    step: Callable
    hooks: keras.callbacks.CallbackList
    adversary: object

    def epoch(self, epoch: int, order: np.ndarray, steps: int) -> dict:
        """One pass over the training rows in ``order``: the running ``loss`` and
        ``accuracy`` logs after its last step (it stops early on ``model.stop_training``)."""
        batch, adversary = self.batch_size, self.adversary
        loss_sum = hits = seen = 0.0
        logs = {}
        for i in range(steps):
            interrupts.check()  # Ctrl-C / SIGTERM land here, between steps
            self.hooks.on_train_batch_begin(i)
            rows = order[i * batch : (i + 1) * batch]
            split = _tf.SplitBatch(self.strategy, len(rows))
            x, y = split.split(self.data.x_train[rows], self.data.y_train[rows])
            total = tf.constant(len(rows), tf.float32)
            extra = () if adversary is None else (step_seed(self.seed, epoch * steps + i),)
            losses, correct = split.run(self.step, x, y, split.row_mask(), total, *extra)
            loss_sum += split.total(losses)
            hits += split.total(correct)
            seen += len(rows)
            logs = {"loss": loss_sum / seen, "accuracy": hits / seen}
            self.hooks.on_train_batch_end(i, logs)
            if self.model.stop_training:
                break
        return logs


def step_seed(seed: int, step: int) -> tf.Tensor:
    """The ``[2]`` seed of one adversarial training step's random start."""
    return tf.constant([int(seed), int(step)], tf.int64)
