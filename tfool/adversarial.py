"""Adversarial training: every training batch replaced by its worst case in an L-infinity ball.

``models.train(..., adversary=AdversarialTraining())`` trains on the images an attack
found against the current weights instead of the clean ones (Madry et al. 2018). The
attack is FGSM from a random start (Wong, Rice and Kolter 2020, "Fast is better than
free"): a uniform start in the ``eps`` ball, one signed-gradient step of ``step_size``,
projected back into the ball and the pixel range. With ``steps > 1`` it is PGD from a
random start (Madry et al.), each step of ``step_size``.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfool import _tf


@dataclasses.dataclass(frozen=True)
class AdversarialTraining:
    """How ``models.train`` perturbs each training batch.

    Attributes:
        eps: Radius of the L-infinity ball (pixel range [``clip_min``, ``clip_max``]).
        step_size: Size of each signed-gradient step (Wong et al.: ``1.25 * eps`` for one
            step).
        steps: Attack steps per batch: 1 is FGSM from a random start, more is PGD.
        clip_min: Lowest pixel value.
        clip_max: Highest pixel value.
    """

    eps: float = 0.3
    step_size: float = 0.375
    steps: int = 1
    clip_min: float = 0.0
    clip_max: float = 1.0

    def __post_init__(self):
        for name in ("eps", "step_size"):
            value = getattr(self, name)
            if not (_tf.is_finite_number(value) and value > 0):
                raise ValueError(f"{name}={value} must be a positive number")
        if int(self.steps) != self.steps or self.steps < 1:
            raise ValueError(f"steps={self.steps} must be an integer >= 1")
        if not self.clip_min < self.clip_max:
            raise ValueError(f"clip_min={self.clip_min} must be below clip_max={self.clip_max}")

    def describe(self) -> str:
        """One line: the attack the training runs on every batch."""
        kind = "FGSM" if self.steps == 1 else f"PGD-{self.steps}"
        return f"{kind} from a random start, eps {self.eps:g}, step {self.step_size:g}"

    def perturb(self, model, loss_fn, x: tf.Tensor, y: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """The attacked batch (inside a compiled training step).

        Args:
            model: The classifier being trained (logits); its inference mode is attacked.
            loss_fn: The training loss, ``loss_fn(y, logits)`` per row.
            x: The clean batch.
            y: Its targets (as the loss takes them).
            seed: ``[2]`` int seed of the random start (``tf.random.stateless_uniform``).
                Under a ``tf.distribute`` strategy replica ``k > 0`` draws from ``seed +
                [k * REPLICA_SEED_STRIDE, 0]``, so the slices of a batch get independent
                starts (replica 0, and a single device, draw from ``seed`` itself). The
                starts are then not those of a single-device run: adversarial training
                under several replicas matches one device in distribution, not step by
                step.

        Returns:
            Images within ``eps`` of ``x`` and inside the pixel range, no gradient through.
        """
        lo, hi = float(self.clip_min), float(self.clip_max)
        seed = _replica_seed(seed)
        delta = tf.random.stateless_uniform(tf.shape(x), seed, -self.eps, self.eps, x.dtype)
        x_adv = tf.clip_by_value(x + delta, lo, hi)
        for _ in range(int(self.steps)):
            with tf.GradientTape() as tape:
                tape.watch(x_adv)
                loss = tf.reduce_sum(loss_fn(y, model(x_adv, training=False)))
            x_adv = x_adv + self.step_size * tf.sign(tape.gradient(loss, x_adv))
            x_adv = tf.clip_by_value(x + tf.clip_by_value(x_adv - x, -self.eps, self.eps), lo, hi)
        return tf.stop_gradient(x_adv)


#: How far apart the seeds of two replicas' random starts are (``perturb``).
REPLICA_SEED_STRIDE = 1_000_003


def _replica_seed(seed: tf.Tensor) -> tf.Tensor:
    """``seed`` moved by the replica's index in its sync group (0 outside a strategy)."""
    ctx = tf.distribute.get_replica_context()
    replica = 0 if ctx is None else ctx.replica_id_in_sync_group
    if isinstance(replica, int) and replica == 0:
        return seed
    step = tf.cast(replica, seed.dtype) * REPLICA_SEED_STRIDE
    return seed + tf.stack([step, tf.zeros_like(step)])
