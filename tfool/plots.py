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
            ax.imshow(_as_2d(images[r, c]), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
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


# ----------------------------------------------------------------------------------------
# Gradient attacks (issue 4)
# ----------------------------------------------------------------------------------------


def accuracy_vs_eps(
    eps_values: Sequence[float],
    curves: dict[str, Sequence[float]],
    clean_accuracy: float | None = None,
    title: str | None = None,
) -> plt.Figure:
    """Accuracy against attack size, one curve per method.

    Args:
        eps_values: The attack sizes (x axis).
        curves: ``{method: [accuracy at each eps]}``, accuracies in [0, 1].
        clean_accuracy: Optional dashed line at the unperturbed accuracy.
        title: Optional figure title.

    Returns:
        The matplotlib figure.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, acc in curves.items():
        if len(acc) != len(eps_values):
            raise ValueError(
                f"curve {method!r} has {len(acc)} points but there are {len(eps_values)} eps values"
            )
        ax.plot(eps_values, 100 * np.asarray(acc, float), marker="o", label=method)
    if clean_accuracy is not None:
        ax.axhline(100 * clean_accuracy, color="gray", linestyle="--", linewidth=1, label="clean")
    ax.set_xlabel("eps (L-infinity, pixel range [0, 1])")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


_SHORT_NAMES = {"normalized_gradient": "g/max|g|", "fgm_l2": "fgm L2"}


def attack_examples(
    originals: np.ndarray,
    adversarials: dict[str, np.ndarray],
    titles: dict[str, Sequence[Sequence[str]]],
    original_titles: Sequence[str],
    eps: float,
    suptitle: str | None = None,
) -> plt.Figure:
    """Original, magnified perturbation and adversarial image, per method, one row per image.

    The perturbation ``adv - x`` is drawn scaled by ``1 / eps`` around mid-grey (black
    ``-eps``, white ``+eps``), as the post magnifies its gradient-sign images.

    Args:
        originals: Images ``[N, H, W(, C)]`` in [0, 1].
        adversarials: ``{method: images [N, H, W(, C)]}``.
        titles: ``{method: [[perturbation title, adversarial title] per image]}``: the
            model's answers on the perturbation itself and on the adversarial image.
        original_titles: One title per original (e.g. label and confidence).
        eps: The attack size (the perturbation's scale).
        suptitle: Optional figure title.

    Returns:
        The matplotlib figure.
    """
    originals = np.asarray(originals, np.float32)
    scale = eps if eps > 0 else 1.0
    columns, grid_titles = [originals], [[f"original\n{t}" for t in original_titles]]
    for method, adv in adversarials.items():
        delta = np.asarray(adv, np.float32) - originals
        name = _SHORT_NAMES.get(method, method)
        columns += [np.clip(0.5 + 0.5 * delta / scale, 0, 1), adv]
        grid_titles += [
            [f"{name} δ\n{t[0]}" for t in titles[method]],
            [f"{name}\n{t[1]}" for t in titles[method]],
        ]
    images = np.stack(columns, axis=1)
    grid = [[grid_titles[c][r] for c in range(len(columns))] for r in range(len(originals))]
    return image_grid(images, titles=grid, suptitle=suptitle, cell_size=1.6)


# ----------------------------------------------------------------------------------------
# ImageNet projection and noise survey (issue 5)
# ----------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------
# Retraining (issue 6)
# ----------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------
# Attribution heat maps (issue 7)
# ----------------------------------------------------------------------------------------
