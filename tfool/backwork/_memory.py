"""The memory a backworking run will hold, estimated before any work."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from tfool import _tf, classifier
from tfool.backwork._config import BackworkConfig
from tfool.backwork._prepared import Prepared, _image_shape
from tfool.data import Dataset


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """The memory a backworking run needs, in bytes, by part (a rough upper estimate).

    Attributes:
        references: The reference sets (every exposed layer, every label's images).
        batch: The optimised images, Adam's moments and the activations and gradients of
            one step.
        distances: The distance matrix of one step (rows by references, or a chunk).
        history: The kept snapshots of images and probabilities.
    """

    references: int
    batch: int
    distances: int
    history: int

    @property
    def total(self) -> int:
        """The sum of the parts."""
        return self.references + self.batch + self.distances + self.history

    def parts(self) -> str:
        """``"references 2.7, batch 0.1, distances 0.4, history 9.1"`` (GB)."""
        return ", ".join(
            f"{name} {getattr(self, name) / 1e9:.1f}"
            for name in ("references", "batch", "distances", "history")
        )

    def describe(self) -> str:
        """``"12.3 GB (references 2.7, batch 0.1, distances 0.4, history 9.1)"``."""
        return f"{self.total / 1e9:.1f} GB ({self.parts()})"


def estimate_memory(
    model: keras.Model,
    data: Dataset | None,
    config: BackworkConfig = BackworkConfig(),
    prepared: Prepared | None = None,
) -> MemoryEstimate:
    """What a ``backwork`` run with ``config`` will hold, from the layer sizes and the
    counts alone (nothing is computed), so a run too large for the machine can be refused
    before any work.

    Args:
        model: The classifier.
        data: Its training data.
        config: The run's settings.
        prepared: The run's ``prepare(model, data, config)``, reused (its activation
            model is not built again).

    Raises:
        ValueError: as ``reference_set`` for bad labels or layer names.
    """
    if prepared is not None:
        prepared.check(model, data, config)
        act, image_shape = prepared.act, prepared.image_shape
    else:
        act = classifier.activation_model(model, config.layer_names, from_logits=config.from_logits)
        image_shape = None
    dims = [int(np.prod(out.shape[1:])) for out in act.outputs]
    if image_shape is None:
        image_shape = _image_shape(model, data)
    image = int(np.prod(image_shape))
    rows = len(config.labels) * int(config.num_examples)
    num_refs = _reference_count(data, config, len(dims))
    width = 2 if config.reference_dtype in ("float16", "bfloat16") else 4
    references = num_refs * (sum(dims[:-1]) * width + 4 * len(dims[:-1]))  # values, norms
    # x, m, v and the gradient of every row, plus the model's activations forward and back
    batch = rows * image * 4 * 4 + max(
        _tf.batch_memory(model, rows, gradients=True), rows * sum(dims) * 4 * 2
    )
    per_label = num_refs // max(len(config.labels), 1)
    chunk = per_label if config.chunk_size is None else min(per_label, config.chunk_size)
    distances = int(config.num_examples) * chunk * 4 * 3 * len(config.labels)
    snapshots = min(config.max_num_steps // config.history_every + 2, config.max_history)
    history = snapshots * rows * (image + dims[-1]) * 4
    return MemoryEstimate(int(references), int(batch), int(distances), int(history))


def _reference_count(data: Dataset | None, config: BackworkConfig, num_layers: int) -> int:
    """Reference images over all labels (0 when only the probabilities are exposed)."""
    num_refs = 0
    if data is not None and num_layers > 1:
        counts = np.bincount(data.y_train, minlength=max(config.labels) + 1)
        for label in config.labels:
            count = int(counts[label])
            num_refs += (
                count if config.reference_size is None else min(count, config.reference_size)
            )
    return num_refs
