"""Image grids, the base of most figures: ``image_grid``, the backworking grid and
``close``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np


def _as_2d(image: np.ndarray) -> np.ndarray:
    """An image as matplotlib can draw it: ``[H, W]`` for one channel, ``[H, W, 3]`` for
    RGB; any other channel count (2, 4, ...: never taken for alpha) as the mean of its
    channels, drawn in grey."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] != 3:
        return image[..., 0] if image.shape[-1] == 1 else image.mean(axis=-1)
    return image


def _rgb_unit(image: np.ndarray, vmin: float | None, vmax: float | None) -> np.ndarray:
    """An RGB image mapped from ``[vmin, vmax]`` (``None``: its own min / max) to [0, 1],
    the only range matplotlib draws RGB floats in; values outside are clipped."""
    image = np.asarray(image, np.float64)
    lo = float(image.min()) if vmin is None else float(vmin)
    hi = float(image.max()) if vmax is None else float(vmax)
    if hi <= lo:
        return np.zeros_like(image)
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0)


def _title_lines(titles) -> int:
    """The most lines of any title of a grid (0 without titles)."""
    if titles is None:
        return 0
    return max((str(t).count("\n") + 1 for row in titles for t in row), default=0)


def image_grid(
    images: np.ndarray,
    titles: Sequence[Sequence[str]] | None = None,
    row_labels: Sequence[str] | None = None,
    suptitle: str | None = None,
    cmap: str = "gray",
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    cell_size: float = 1.25,
) -> plt.Figure:
    """A grid of images, one row per entry of the first axis.

    Single-channel images are drawn with ``cmap``, RGB images (C = 3) in colour, images of
    any other channel count as the grey mean of their channels.

    Args:
        images: ``[rows, cols, H, W]`` or ``[rows, cols, H, W, C]``.
        titles: Optional ``[rows][cols]`` titles (e.g. target probabilities); the rows
            are spaced for the longest one, however many lines it has.
        row_labels: Optional label written left of each row.
        suptitle: Optional figure title.
        cmap: Colour map for single-channel images.
        vmin: Lower end of the colour scale, for RGB images too (``None``: per image).
        vmax: Upper end of the colour scale (``None``: per image).
        cell_size: Inches per image.

    Returns:
        The matplotlib figure (the caller saves it with ``tfool.io.save_figure``).
    """
    images = np.asarray(images)
    if images.ndim < 4:
        raise ValueError(f"images have shape {images.shape}, expected [rows, cols, H, W(, C)]")
    rows, cols = images.shape[:2]
    title_height = max(0.25, 0.11 + 0.14 * _title_lines(titles))  # inches above each image
    width, height = cols * cell_size + 0.6, rows * (cell_size + title_height) + 0.4
    fig, axes = _grid_axes(rows, cols, width, height)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            image = _as_2d(images[r, c])
            if image.ndim == 3:  # RGB: matplotlib ignores vmin / vmax, so map them here
                ax.imshow(_rgb_unit(image, vmin, vmax), interpolation="nearest")
            else:
                ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if titles is not None:
                ax.set_title(titles[r][c], fontsize=8)
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=10)
    return _finish(fig, suptitle)


def close(fig: plt.Figure) -> None:
    """Frees a figure's memory."""
    plt.close(fig)


def _grid_axes(rows: int, cols: int, width: float, height: float):
    """A figure of ``width x height`` inches and its ``[rows, cols]`` array of axes."""
    return plt.subplots(rows, cols, figsize=(width, height), squeeze=False)


def _finish(fig: plt.Figure, suptitle: str | None = None) -> plt.Figure:
    """Titles ``fig`` with ``suptitle`` (when given), tightens its layout and returns it."""
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def probability_grid(
    images: np.ndarray,
    target_probs: np.ndarray,
    row_labels: Sequence[str],
    suptitle: str | None = None,
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
) -> plt.Figure:
    """The post's grid: one row per label, each image titled with its target probability.

    Args:
        images: ``[L, E, H, W(, C)]``.
        target_probs: ``[L, E]``.
        row_labels: One label per row.
        suptitle: Optional figure title.
        vmin: Lower end of the pixel range drawn (grey scale, or each RGB channel).
        vmax: Upper end of the pixel range drawn.
    """
    titles = [[_format_prob(p) for p in row] for row in np.asarray(target_probs)]
    return image_grid(images, titles, row_labels, suptitle, vmin=vmin, vmax=vmax)


def _format_prob(p: float) -> str:
    """Enough digits to tell 0.999 from 0.9999: ``p=0.99994``; below 0.999 three digits,
    rounded down, so a value under the usual 0.999 cap never reads as reaching it."""
    if p >= 0.999:
        return f"p={p:.5f}"
    return f"p={math.floor(p * 1000) / 1000:.3f}"
