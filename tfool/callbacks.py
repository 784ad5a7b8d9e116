"""Backworking callbacks: console progress and TensorBoard summaries."""

from __future__ import annotations

import logging
import time

import numpy as np
import tensorflow as tf

from tfool import costs
from tfool.backwork import BackworkCallback, BackworkConfig, BackworkResult, SaveEvent

logger = logging.getLogger(__name__)


class ProgressLogger(BackworkCallback):
    """Logs one line every ``every`` saves: step, labels still running, worst probability."""

    def __init__(self, every: int = 25, log=logger.info, class_names=None):
        self.every = every
        self.log = log
        self.class_names = None if class_names is None else [str(n) for n in class_names]
        self._start = 0.0
        self._saves = 0

    def on_start(self, config: BackworkConfig, num_rows: int) -> None:
        self._start = time.perf_counter()
        self._saves = 0
        self.log(
            f"backworking {num_rows} images ({len(config.labels)} labels x "
            f"{config.num_examples}), at most {config.max_num_steps} steps"
        )

    def on_save(self, event: SaveEvent) -> None:
        self._saves += 1
        if (self._saves - 1) % self.every:
            return
        low = event.target_probs.min(axis=1)
        mins = " ".join(f"{p:.3f}" for p in low)
        running = int(event.active.sum())
        self.log(
            f"step {event.step:5d}  {running}/{len(event.active)} labels running  "
            f"reinits {int(event.reinits.sum()):3d}  min p per label [{mins}]  "
            f"{time.perf_counter() - self._start:6.1f} s{self._lagging(event, low)}"
        )

    def _lagging(self, event: SaveEvent, low) -> str:
        """``"  lagging: 4 (1389 reinits, min p 0.012)"``: the running label furthest from
        its cap, when some labels have finished and some still run."""
        active = np.flatnonzero(event.active)
        if not len(active) or len(active) == len(event.active):
            return ""
        i = active[np.argmin(low[active])]
        label = int(event.labels[i])
        name = self.class_names[label] if self.class_names else str(label)
        return f"  lagging: {name} ({int(event.reinits[i])} reinits, min p {low[i]:.3f})"

    def on_end(self, result: BackworkResult) -> None:
        state = "interrupted" if result.interrupted else "done"
        self.log(
            f"backworking {state} after {result.steps} steps: {int(result.converged.sum())}/"
            f"{len(result.converged)} labels converged in {result.wall_time:.1f} s"
        )


class TensorBoardLogger(BackworkCallback):
    """Writes every cost term, per-label probabilities, re-initialisations and image grids."""

    def __init__(self, logdir: str, image_every: int = 20, layer_names=None):
        self.logdir = logdir
        self.image_every = image_every
        self.layer_names = layer_names
        self._writer = None
        self._saves = 0

    def on_start(self, config: BackworkConfig, num_rows: int) -> None:
        self._writer = tf.summary.create_file_writer(self.logdir)
        self._saves = 0

    def on_save(self, event: SaveEvent) -> None:
        writer, step = self._writer, event.step
        with writer.as_default(step=step):
            for i, lbl in enumerate(event.labels):
                tf.summary.scalar(f"cost/total/label_{lbl}", float(event.cost[i]))
                self._terms(event, i, lbl)
                tf.summary.scalar(f"prob/min/label_{lbl}", float(event.target_probs[i].min()))
                tf.summary.scalar(f"prob/mean/label_{lbl}", float(event.target_probs[i].mean()))
                tf.summary.scalar(f"reinits/label_{lbl}", int(event.reinits[i]))
            if self._saves % self.image_every == 0:
                tf.summary.image("images", _grid(event.images), max_outputs=1)
        self._saves += 1

    def _terms(self, event: SaveEvent, i: int, lbl) -> None:
        """Every cost term of label ``i`` (``costs.COST_TERMS``): the probabilities' terms,
        then the per-layer ones, layer by layer."""
        for term in sorted(costs.COST_TERMS, key=lambda t: t.per_layer):
            values = event.terms[term.name]
            if not term.per_layer:
                tf.summary.scalar(f"cost/{term.name}/label_{lbl}", float(values[i]))
                continue
            for j, layer_cost in enumerate(values):
                name = self.layer_names[j] if self.layer_names else f"layer{j}"
                tf.summary.scalar(f"cost/{term.name}/{name}/label_{lbl}", float(layer_cost[i]))

    def on_end(self, result: BackworkResult) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()


def _grid(images: np.ndarray) -> np.ndarray:
    """``[L, E, H, W, C]`` -> one ``[1, L*H, E*W, C]`` mosaic scaled to [0, 1]."""
    rows, cols, h, w, c = images.shape
    mosaic = images.transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)
    lo, hi = float(mosaic.min()), float(mosaic.max())
    return ((mosaic - lo) / max(hi - lo, 1e-12))[None].astype(np.float32)
