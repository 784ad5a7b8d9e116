"""Attribution heat maps (Captum's views and scaling), their comparison figure, and
the frames and GIF of attributions during training."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from tfool.plots._grid import _as_2d, _finish, _grid_axes, close

#: Views of ``visualize_image_attr``.
ATTR_VIEWS = ("original_image", "heat_map", "blended_heat_map")
#: Which part of an attribution a heat map shows.
ATTR_SIGNS = ("all", "positive", "negative", "absolute_value")


def _attr_cmap(sign: str):
    """Captum's default colour maps and ranges for each sign."""
    from matplotlib.colors import LinearSegmentedColormap

    if sign == "all":
        return LinearSegmentedColormap.from_list("RdWhGn", ["red", "white", "green"]), -1.0, 1.0
    return {"positive": "Greens", "negative": "Reds", "absolute_value": "Blues"}[sign], 0.0, 1.0


def _check_attr_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is unknown; expected one of {list(allowed)}")


def _cumulative_sum_threshold(values: np.ndarray, percentile: float) -> float:
    """The value below which ``percentile`` percent of the total mass of ``values`` lies."""
    ordered = np.sort(values.ravel())
    sums = np.cumsum(ordered)
    index = np.searchsorted(sums, sums[-1] * (percentile / 100.0))  # first sum >= the share
    return float(ordered[min(index, len(ordered) - 1)])


def normalize_attribution(
    attr: np.ndarray, sign: str = "absolute_value", outlier_perc: float = 2.0
) -> np.ndarray:
    """Captum's heat-map scaling: channels summed, one sign kept, outliers clipped.

    The scale is the value below which ``100 - outlier_perc`` percent of the attribution
    mass lies (Captum's cumulative-sum threshold); the result is divided by it and clipped
    to [-1, 1], so the top ``outlier_perc`` percent of the mass saturates.

    Args:
        attr: ``[H, W]`` or ``[H, W, C]`` attribution.
        sign: ``"all"`` (signed, in [-1, 1]), ``"positive"``, ``"negative"`` (shown as
            magnitudes in [0, 1]) or ``"absolute_value"``.
        outlier_perc: Percent of the mass treated as outliers, in [0, 100).

    Returns:
        float ``[H, W]`` array; all zeros when the kept part is zero.

    Raises:
        ValueError: an unknown ``sign``, ``outlier_perc`` outside [0, 100) or a bad shape.
    """
    _check_attr_choice("sign", sign, ATTR_SIGNS)
    if not 0 <= outlier_perc < 100:
        raise ValueError(f"outlier_perc={outlier_perc} must be in [0, 100)")
    attr = np.asarray(attr, np.float64)
    if attr.ndim == 3:
        attr = attr.sum(axis=2)
    if attr.ndim != 2:
        raise ValueError(f"attr has shape {attr.shape}; expected [H, W] or [H, W, C]")
    if sign == "positive":
        attr = np.maximum(attr, 0.0)
    elif sign == "negative":
        attr = np.maximum(-attr, 0.0)
    elif sign == "absolute_value":
        attr = np.abs(attr)
    if not np.any(attr):
        return np.zeros_like(attr)
    scale = _cumulative_sum_threshold(np.abs(attr), 100.0 - outlier_perc)
    return np.clip(attr / scale, -1.0, 1.0)


def _show_original(ax, image: np.ndarray, gray: bool = False, **kwargs):
    image = np.asarray(image, np.float64)
    if gray and image.ndim == 3:
        image = image.mean(axis=2)
    image = _as_2d(image)
    if image.ndim == 2:
        return ax.imshow(image, cmap="gray", vmin=0.0, vmax=max(1.0, image.max()), **kwargs)
    return ax.imshow(np.clip(image, 0.0, 1.0), **kwargs)


def visualize_image_attr(
    attr: np.ndarray,
    original_image: np.ndarray | None = None,
    method: str = "heat_map",
    sign: str = "absolute_value",
    ax: plt.Axes | None = None,
    outlier_perc: float = 2.0,
    cmap=None,
    alpha_overlay: float = 0.5,
    show_colorbar: bool = False,
    title: str | None = None,
    fig_size: tuple[float, float] = (6.0, 6.0),
) -> plt.Figure:
    """One Captum-style attribution view of one image (``captum.attr.visualization``).

    Args:
        attr: ``[H, W]`` or ``[H, W, C]`` attribution.
        original_image: The image, ``[H, W]`` or ``[H, W, C]`` in [0, 1]; needed by the
            ``original_image`` and ``blended_heat_map`` views.
        method: ``"original_image"``, ``"heat_map"`` or ``"blended_heat_map"`` (the heat
            map over a grey copy of the image).
        sign: ``"all"``, ``"positive"``, ``"negative"`` or ``"absolute_value"``.
        ax: Axes to draw into (``None``: a new figure).
        outlier_perc: Percent of the attribution mass clipped (see ``normalize_attribution``).
        cmap: Colour map (``None``: Captum's for the sign).
        alpha_overlay: Opacity of the heat map in the blended view.
        show_colorbar: Add a horizontal colour bar under the image.
        title: Optional title.
        fig_size: Size of a new figure, inches.

    Returns:
        The figure drawn into.

    Raises:
        ValueError: an unknown method or sign, a missing original image, or shapes that
            do not match.
    """
    _check_attr_choice("method", method, ATTR_VIEWS)
    _check_attr_choice("sign", sign, ATTR_SIGNS)
    attr = np.asarray(attr)
    if method != "heat_map" and original_image is None:
        raise ValueError(f"method={method!r} needs original_image")
    if original_image is not None and np.shape(original_image)[:2] != attr.shape[:2]:
        raise ValueError(
            f"original_image has shape {np.shape(original_image)} but attr has {attr.shape}; "
            "expected the same height and width"
        )
    if ax is None:
        fig, ax = plt.subplots(figsize=fig_size)
    else:
        fig = ax.figure
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    if method == "original_image":
        _show_original(ax, original_image)
        return fig
    default_cmap, vmin, vmax = _attr_cmap(sign)
    norm = normalize_attribution(attr, sign, outlier_perc)
    alpha = None
    if method == "blended_heat_map":
        _show_original(ax, original_image, gray=True)
        alpha = alpha_overlay
    image = ax.imshow(
        norm, cmap=cmap or default_cmap, vmin=vmin, vmax=vmax, alpha=alpha, interpolation="nearest"
    )
    if show_colorbar:
        fig.colorbar(image, ax=ax, orientation="horizontal", fraction=0.046, pad=0.04)
    return fig


def _comparison_signs(
    images: np.ndarray,
    attributions: dict[str, np.ndarray],
    titles: Sequence[str] | None,
    method: str,
    sign: str | dict[str, str],
) -> dict[str, str]:
    """Checks the arguments of ``attribution_comparison_figure``; the sign of each method."""
    if images.ndim not in (3, 4) or len(images) == 0:
        raise ValueError(f"images have shape {images.shape}, expected [N, H, W(, C)], N >= 1")
    if not attributions:
        raise ValueError("attributions is empty; expected {method name: array}")
    _check_attr_choice("method", method, ("heat_map", "blended_heat_map"))
    for name, attr in attributions.items():
        if np.shape(attr)[: images.ndim - 1] != images.shape[: images.ndim - 1]:
            raise ValueError(
                f"attributions[{name!r}] has shape {np.shape(attr)}, expected {images.shape}"
            )
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"titles has {len(titles)} entries for {len(images)} images")
    signs = {
        n: sign if isinstance(sign, str) else sign.get(n, "absolute_value") for n in attributions
    }
    for s in signs.values():
        _check_attr_choice("sign", s, ATTR_SIGNS)
    return signs


def attribution_comparison_figure(
    images: np.ndarray,
    attributions: dict[str, np.ndarray],
    titles: Sequence[str] | None = None,
    method: str = "blended_heat_map",
    sign: str | dict[str, str] = "absolute_value",
    outlier_perc: float = 2.0,
    show_colorbar: bool = False,
    suptitle: str | None = None,
    cell_size: float = 1.6,
) -> plt.Figure:
    """Several images x several attribution methods, side by side.

    Row ``i`` shows image ``i`` (labelled with ``titles[i]``, e.g. its prediction and
    confidence) followed by one heat map per method, columns in the order of
    ``attributions``.

    Args:
        images: ``[N, H, W]`` or ``[N, H, W, C]`` in [0, 1].
        attributions: ``{method name: [N, ...] attributions}`` of the images' shape.
        titles: Optional label of each row.
        method: ``"heat_map"`` or ``"blended_heat_map"``.
        sign: One sign for every method, or ``{method name: sign}`` (missing names:
            ``"absolute_value"``).
        outlier_perc: Percent of each map's mass clipped.
        show_colorbar: A colour bar under every heat map.
        suptitle: Optional figure title.
        cell_size: Inches per image.

    Returns:
        The figure (save it with ``tfool.io.save_figure``).

    Raises:
        ValueError: no attributions, shapes that differ from ``images``, a wrong number of
            titles, an unknown method or sign.
    """
    images = np.asarray(images)
    signs = _comparison_signs(images, attributions, titles, method, sign)
    rows, cols = len(images), len(attributions) + 1
    extra = 0.45 if show_colorbar else 0.25
    width, height = cols * cell_size + 0.8, rows * (cell_size + extra) + 0.5
    fig, axes = _grid_axes(rows, cols, width, height)
    for r in range(rows):
        visualize_image_attr(
            images[r],
            images[r],
            method="original_image",
            ax=axes[r, 0],
            title="input" if r == 0 else None,
        )
        if titles is not None:
            axes[r, 0].set_ylabel(titles[r], rotation=0, ha="right", va="center", fontsize=8)
        for c, (name, attr) in enumerate(attributions.items(), start=1):
            visualize_image_attr(
                np.asarray(attr[r]),
                images[r],
                method=method,
                sign=signs[name],
                ax=axes[r, c],
                outlier_perc=outlier_perc,
                show_colorbar=show_colorbar,
                title=f"{name}\n({signs[name]})" if r == 0 else None,
            )
    return _finish(fig, suptitle)


def training_attribution_frames(
    images: np.ndarray,
    gradients: np.ndarray,
    integrated: np.ndarray,
    labels: Sequence[str],
    sign: str = "absolute_value",
    outlier_perc: float = 1.0,
    cell_size: float = 1.2,
) -> list[np.ndarray]:
    """Renders the frames of a training-attribution animation as RGB arrays.

    Each frame: the images (top row), the gradients recorded at that point (middle) and
    the integrated gradients so far (bottom), titled with the frame's label.

    Args:
        images: ``[N, H, W(, C)]`` in [0, 1].
        gradients: ``[T, N, ...]`` recorded gradients (or gradient x input).
        integrated: ``[T, N, ...]`` running sums.
        labels: ``T`` frame labels.
        sign: Sign shown (see ``normalize_attribution``).
        outlier_perc: Percent of each map's mass clipped.
        cell_size: Inches per image.

    Returns:
        ``T`` uint8 arrays ``[height, width, 3]``.

    Raises:
        ValueError: shapes or label counts that do not match, an unknown sign.
    """
    _check_attr_choice("sign", sign, ATTR_SIGNS)
    images, gradients, integrated = map(np.asarray, (images, gradients, integrated))
    if gradients.shape != integrated.shape or gradients.shape[0] != len(labels):
        raise ValueError(
            f"gradients {gradients.shape}, integrated {integrated.shape} and {len(labels)} "
            "labels do not match; expected [T, N, ...] twice and T labels"
        )
    if gradients.shape[1] != len(images):
        raise ValueError(f"gradients are for {gradients.shape[1]} images, not {len(images)}")
    cmap, vmin, vmax = _attr_cmap(sign)
    n = len(images)
    fig, axes = plt.subplots(
        3, n, figsize=(n * cell_size + 1.0, 3 * cell_size + 0.6), squeeze=False
    )
    maps = []
    for i in range(n):
        _show_original(axes[0, i], images[i])
        for row in (1, 2):
            maps.append(
                axes[row, i].imshow(
                    np.zeros(images.shape[1:3]),
                    cmap=cmap,
                    vmin=vmin,
                    vmax=vmax,
                    interpolation="nearest",
                )
            )
        for row in range(3):
            axes[row, i].set_xticks([])
            axes[row, i].set_yticks([])
    for row, name in enumerate(("input", "gradient", "integrated")):
        axes[row, 0].set_ylabel(name, fontsize=8)
    heading = fig.suptitle("")
    fig.tight_layout()
    frames = []
    try:
        for t, label in enumerate(labels):
            for i in range(n):
                maps[2 * i].set_data(normalize_attribution(gradients[t, i], sign, outlier_perc))
                maps[2 * i + 1].set_data(
                    normalize_attribution(integrated[t, i], sign, outlier_perc)
                )
            heading.set_text(label)
            fig.canvas.draw()
            frames.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    finally:
        close(fig)
    return frames


def save_gif(frames: Sequence[np.ndarray], path, duration_ms: int = 200):
    """Writes RGB frames as a looping animated GIF, atomically (Pillow, via ``tfool.io``).

    Args:
        frames: uint8 ``[H, W, 3]`` arrays of one size.
        path: Destination ``.gif``.
        duration_ms: Display time of each frame.

    Returns:
        The written path.

    Raises:
        ValueError: no frames or a non-positive duration.
    """
    from PIL import Image

    from tfool import io

    if not frames:
        raise ValueError("frames is empty; expected at least one frame")
    if duration_ms <= 0:
        raise ValueError(f"duration_ms={duration_ms} must be > 0")
    pictures = [Image.fromarray(np.asarray(f, np.uint8)) for f in frames]

    def _write(tmp):
        pictures[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=pictures[1:],
            duration=int(duration_ms),
            loop=0,
        )

    return io.write_with(path, _write)
