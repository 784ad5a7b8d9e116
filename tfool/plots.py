"""Figures: image grids, curves and heat maps (the only tfool module that touches matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _as_2d(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    return image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image


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

    Args:
        images: ``[rows, cols, H, W]`` or ``[rows, cols, H, W, C]`` (C = 1 or 3).
        titles: Optional ``[rows][cols]`` titles (e.g. target probabilities).
        row_labels: Optional label written left of each row.
        suptitle: Optional figure title.
        cmap: Colour map for single-channel images.
        vmin: Lower end of the colour scale (``None``: per image).
        vmax: Upper end of the colour scale.
        cell_size: Inches per image.

    Returns:
        The matplotlib figure (the caller saves it with ``tfool.io.save_figure``).
    """
    images = np.asarray(images)
    if images.ndim < 4:
        raise ValueError(f"images have shape {images.shape}, expected [rows, cols, H, W(, C)]")
    rows, cols = images.shape[:2]
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * cell_size + 0.6, rows * (cell_size + 0.25) + 0.4), squeeze=False
    )
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.imshow(
                _as_2d(images[r, c]), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest"
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if titles is not None:
                ax.set_title(titles[r][c], fontsize=8)
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=10)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def close(fig: plt.Figure) -> None:
    """Frees a figure's memory."""
    plt.close(fig)


# ----------------------------------------------------------------------------------------
# Backworking (issue 3)
# ----------------------------------------------------------------------------------------


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
        vmin: Lower end of the grey scale.
        vmax: Upper end of the grey scale.
    """
    titles = [[_format_prob(p) for p in row] for row in np.asarray(target_probs)]
    return image_grid(images, titles, row_labels, suptitle, vmin=vmin, vmax=vmax)


def _format_prob(p: float) -> str:
    """Enough digits to tell 0.999 from 0.9999: ``p=0.99994``."""
    if p >= 0.999:
        return f"p={p:.5f}"
    return f"p={p:.3f}"


# ----------------------------------------------------------------------------------------
# Gradient attacks (issue 4)
# ----------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------
# ImageNet projection and noise survey (issue 5)
# ----------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------
# Retraining (issue 6)
# ----------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------
# Attribution heat maps (issue 7)
# ----------------------------------------------------------------------------------------
