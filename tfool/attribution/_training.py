"""Attribution over training: the input gradients of fixed images recorded while a model
trains (the post's "integrated over training")."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from tfool.attribution._checks import _check_choice, _check_target, _check_x
from tfool.attribution._compiled import SCORES, _compiled, _input_gradients


class TrainingAttribution(keras.callbacks.Callback):
    """Records the input gradients of fixed images while a model trains.

    After every batch or epoch (and once before training) it stores
    ``d score / d x`` of the images under the current weights, and keeps their running
    sum: the post's attribution "integrated over training",
    ``sum_n grad_x J(O(x; theta_n), y)`` (with ``score="loss"``) rather than over a path.

    Attributes:
        frames: The recorded gradients, float32 ``[N, ...]`` each (empty when
            ``keep_frames=False``).
        labels: What each frame follows: ``"start"``, ``"epoch 1"``, ``"epoch 1 batch 3"``.
        integrated: The running sum of every recorded gradient (float64).
        count: Number of recorded gradients.
    """

    def __init__(
        self,
        x: np.ndarray,
        target: int | Sequence[int] | np.ndarray,
        every: str = "epoch",
        score: str = "output",
        from_logits: bool | None = None,
        record_start: bool = True,
        keep_frames: bool = True,
    ):
        """Prepares the recorder (nothing is computed until training starts).

        Args:
            x: The fixed images ``[N, ...]``.
            target: Their classes: one for all or one per image.
            every: ``"batch"`` or ``"epoch"``.
            score: What is differentiated: ``"output"``, ``"probability"`` or ``"loss"``.
            from_logits: Whether the trained model returns logits (``None``: read its graph).
            record_start: Also record the gradients before the first update.
            keep_frames: Keep every frame (needed for the GIF), not only the sum.

        Raises:
            ValueError: bad ``x``, ``target`` shape, ``every`` or ``score``.
        """
        super().__init__()
        self.x = _check_x(x)
        t = np.asarray(target)
        if t.dtype == bool or not np.issubdtype(t.dtype, np.integer):
            raise ValueError(f"target={target!r} must be an integer class index or one per image")
        if t.ndim not in (0, 1) or (t.ndim == 1 and t.shape != (len(self.x),)):
            raise ValueError(f"target has shape {t.shape}; expected () or ({len(self.x)},)")
        self.target = t
        self.every = _check_choice("every", every, ("batch", "epoch"))
        self.score = _check_choice("score", score, SCORES)
        self.from_logits = from_logits
        self.record_start = bool(record_start)
        self.keep_frames = bool(keep_frames)
        self.frames: list[np.ndarray] = []
        self.labels: list[str] = []
        self.integrated = np.zeros(self.x.shape, np.float64)
        self.count = 0
        self._epoch = 0
        self._targets: np.ndarray | None = None

    def _record(self, label: str) -> None:
        compiled = _compiled(self.model, self.from_logits, self.score)
        if self._targets is None:
            self._targets = _check_target(self.target, self.x, self.model)
        grads = _input_gradients(compiled, self.x, self._targets, None)
        self.integrated += grads
        self.count += 1
        self.labels.append(label)
        if self.keep_frames:
            self.frames.append(grads)

    def on_train_begin(self, logs=None):
        if self.record_start:
            self._record("start")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        if self.every == "batch":
            self._record(f"epoch {self._epoch} batch {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        if self.every == "epoch":
            self._record(f"epoch {epoch + 1}")

    def running_sums(self) -> np.ndarray:
        """The integrated gradient after each frame, ``[frames, N, ...]`` (float32)."""
        if not self.frames:
            raise ValueError("no frames recorded (keep_frames=False, or training has not run)")
        return np.cumsum(np.stack(self.frames).astype(np.float64), axis=0).astype(np.float32)

    def write_gif(
        self,
        path: str,
        times_input: bool = False,
        sign: str = "absolute_value",
        outlier_perc: float = 1.0,
        duration_ms: int = 200,
    ):
        """Writes the recorded gradients and their running sum as an animated GIF.

        Each frame shows the images (top row), the gradient recorded then (middle) and the
        integrated gradient so far (bottom), as Captum-style heat maps.

        Args:
            path: Destination ``.gif`` (written atomically through ``tfool.io``).
            times_input: Show gradient x input (the post's view) instead of the gradient.
            sign: ``"all"``, ``"positive"``, ``"negative"`` or ``"absolute_value"``.
            outlier_perc: Percent of the attribution mass clipped as outliers.
            duration_ms: Display time of one frame.

        Returns:
            The written path.

        Raises:
            ValueError: nothing recorded, or a bad ``sign`` / ``duration_ms``.
        """
        from tfool import plots  # lazily: only plots touches matplotlib

        sums = self.running_sums()
        grads = np.stack(self.frames)
        if times_input:
            grads, sums = grads * self.x, sums * self.x
        frames = plots.training_attribution_frames(
            self.x, grads, sums, self.labels, sign=sign, outlier_perc=outlier_perc
        )
        return plots.save_gif(frames, path, duration_ms=duration_ms)
