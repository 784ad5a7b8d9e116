"""What a backworking run reports: the save events its callbacks see and its result."""

from __future__ import annotations

import dataclasses

import numpy as np

from tfool.backwork._config import BackworkConfig


@dataclasses.dataclass(frozen=True, eq=False)
class SaveEvent:
    """What a callback sees at every save.

    Attributes:
        step: Optimisation steps done so far.
        labels: The target labels ``[L]``.
        target_probs: ``[L, E]`` probability of each row's target label.
        cost: ``[L]`` total cost per label.
        terms: Cost terms (``reference``/``batch`` ``[layers-1, L]``, ``softmax`` ``[L]``).
        reinits: ``[L]`` re-initialisations so far.
        active: ``[L]`` whether each label is still being optimised.
        images: ``[L, E, H, W, C]`` current images.
    """

    step: int
    labels: np.ndarray
    target_probs: np.ndarray
    cost: np.ndarray
    terms: dict
    reinits: np.ndarray
    active: np.ndarray
    images: np.ndarray


class BackworkCallback:
    """Hooks called by ``backwork``; override what you need."""

    def on_start(self, config: BackworkConfig, num_rows: int) -> None:
        """Called once before the first step."""

    def on_save(self, event: SaveEvent) -> None:
        """Called at every save."""

    def on_end(self, result: BackworkResult) -> None:
        """Called once with the result (also after Ctrl-C)."""


@dataclasses.dataclass(frozen=True, eq=False)
class BackworkResult:
    """What a backworking run found.

    Attributes:
        labels: ``[L]`` target labels.
        images: ``[L, E, H, W, C]`` final images.
        probabilities: ``[L, E, C]`` their class probabilities.
        history_steps: ``[S]`` step of each kept snapshot.
        history_images: ``[S, L, E, H, W, C]`` snapshot images.
        history_probs: ``[S, L, E, C]`` snapshot probabilities.
        steps: Steps taken in all.
        label_steps: ``[L]`` steps taken by each label (until it stopped).
        reinits: ``[L]`` re-initialisations per label.
        converged: ``[L]`` whether the label reached its probability cap.
        cost: ``[L]`` final total cost per label.
        cost_terms: Final ``reference`` and ``batch`` ``[layers-1, L]`` and ``softmax`` ``[L]``.
        layer_names: Exposed layers, softmax last.
        wall_time: Seconds.
        interrupted: Whether the run was stopped by Ctrl-C.
    """

    labels: np.ndarray
    images: np.ndarray
    probabilities: np.ndarray
    history_steps: np.ndarray
    history_images: np.ndarray
    history_probs: np.ndarray
    steps: int
    label_steps: np.ndarray
    reinits: np.ndarray
    converged: np.ndarray
    cost: np.ndarray
    cost_terms: dict
    layer_names: tuple[str, ...]
    wall_time: float
    interrupted: bool = False

    @property
    def target_probs(self) -> np.ndarray:
        """``[L, E]`` probability of each image's target label."""
        return target_probabilities(self.probabilities, self.labels)


def target_probabilities(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[L, E]`` probability of each row's label, from ``probs [L, E, C]`` and ``labels [L]``."""
    idx = np.broadcast_to(np.asarray(labels)[:, None, None], (*probs.shape[:2], 1))
    return np.take_along_axis(probs, idx, axis=-1)[..., 0]
