"""Figures: image grids, curves and heat maps (the only tfool module that touches matplotlib)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

#: The colour of each retraining mode in every figure.
MODE_COLOURS = {"uniform": "C0", "extra_class": "C3", "control": "C7", "adversarial": "C2"}
#: The stress test's starts (``tfool.stress.STARTS``; plots imports nothing of tfool).
STRESS_STARTS = ("uniform", "gaussian", "zeros", "digits")


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
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(cols * cell_size + 0.6, rows * (cell_size + title_height) + 0.4),
        squeeze=False,
    )
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
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def close(fig: plt.Figure) -> None:
    """Frees a figure's memory."""
    plt.close(fig)


# ----------------------------------------------------------------------------------------
# Backworking
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


# ----------------------------------------------------------------------------------------
# Gradient attacks
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
    from tfool.attacks import ATTACKS  # the attacks' names in figures

    originals = np.asarray(originals, np.float32)
    scale = eps if eps > 0 else 1.0
    columns, grid_titles = [originals], [[f"original\n{t}" for t in original_titles]]
    for method, adv in adversarials.items():
        delta = np.asarray(adv, np.float32) - originals
        name = ATTACKS[method].label if method in ATTACKS else method
        columns += [np.clip(0.5 + 0.5 * delta / scale, 0, 1), adv]
        grid_titles += [
            [f"{name} δ\n{t[0]}" for t in titles[method]],
            [f"{name}\n{t[1]}" for t in titles[method]],
        ]
    images = np.stack(columns, axis=1)
    grid = [[grid_titles[c][r] for c in range(len(columns))] for r in range(len(originals))]
    return image_grid(images, titles=grid, suptitle=suptitle, cell_size=1.6)


# ----------------------------------------------------------------------------------------
# ImageNet projection and noise survey
# ----------------------------------------------------------------------------------------


def _top5_text(predictions, width: int = 22) -> str:
    lines = []
    for pred in predictions:
        name = pred.name if len(pred.name) <= width else pred.name[: width - 1] + "~"
        lines.append(f"{name} {pred.probability:.3g}")
    return "\n".join(lines)


def projection_grid(result, magnify: float | None = None, cell_size: float = 2.4) -> plt.Figure:
    """Original, magnified perturbation and result for every target of a projection.

    One row per target: the start image with its top-5, the perturbation shown as
    ``128 + magnify * delta`` (clipped to 0-255), and the projected image with its top-5.

    Args:
        result: A ``tfool.projection.ProjectionResult``.
        magnify: Perturbation gain; ``None`` scales the largest change to 127 grey levels.
        cell_size: Inches per image.

    Returns:
        The figure.
    """
    rows = len(result.targets)
    largest = float(np.abs(result.perturbations).max())
    if magnify is None:
        magnify = 127.0 / largest if largest > 0 else 1.0
    fig, axes = plt.subplots(
        rows, 3, figsize=(3 * cell_size + 0.6, rows * (cell_size + 1.3) + 0.5), squeeze=False
    )
    before = _top5_text(result.top5_before)
    for r in range(rows):
        delta = np.clip(128.0 + magnify * result.perturbations[r], 0, 255)
        panels = (
            (result.original, "original", before),
            (
                delta,
                f"perturbation x{magnify:.3g}\nL-inf {result.linf[r]:.2f}, L2 {result.l2[r]:.1f}",
                "",
            ),
            (
                result.images[r],
                f"-> {result.target_names[r]}\np = {result.final_probs[r]:.3g}",
                _top5_text(result.top5_after[r]),
            ),
        )
        for c, (image, title, text) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(np.clip(image, 0, 255).astype(np.uint8), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=8)
            ax.set_xlabel(text, fontsize=7, family="monospace", ha="center")
    fig.suptitle(f"{result.model_name}: gradient projection")
    fig.tight_layout()
    return fig


def survey_histogram(survey, top: int = 20, bins: int = 30) -> plt.Figure:
    """One model's noise survey: the labels it gives (top ``top``) and its confidences.

    Args:
        survey: A ``tfool.survey.ModelSurvey``.
        top: How many labels to show; the rest are summed into one bar.
        bins: Bins of the confidence histogram.

    Returns:
        The figure.
    """
    shown = list(survey.histogram[:top])
    rest = sum(count for _, _, count in survey.histogram[top:])
    names = [f"{name} ({index})" for index, name, _ in shown]
    counts = [count for _, _, count in shown]
    if rest:
        names.append(f"{len(survey.histogram) - top} other labels")
        counts.append(rest)
    height = max(3.0, 0.28 * len(names) + 1.2)
    fig, (ax_labels, ax_conf) = plt.subplots(
        1, 2, figsize=(11, height), gridspec_kw={"width_ratios": [3, 2]}
    )
    y = np.arange(len(names))
    ax_labels.barh(y, counts, color="tab:blue")
    ax_labels.set_yticks(y)
    ax_labels.set_yticklabels(names, fontsize=8)
    ax_labels.invert_yaxis()
    ax_labels.set_xlabel("noise images given this top-1 label")
    ax_labels.set_title(f"{survey.name}: {len(survey.histogram)} distinct top-1 label(s)")
    ax_conf.hist(survey.confidences, bins=bins, color="tab:orange")
    ax_conf.set_xlabel("top-1 confidence")
    ax_conf.set_ylabel("images")
    s = survey.stats
    ax_conf.set_title(f"mean {s['mean']:.3f}, std {s['std']:.3f}, max {s['max']:.3f}", fontsize=9)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------
# Retraining
# ----------------------------------------------------------------------------------------


def backwork_scaling(by_refs: Sequence[dict], by_examples: Sequence[dict]) -> plt.Figure:
    """Step time of the backworker against reference images and images per label.

    Args:
        by_refs: Rows with ``ref_per_label``, ``step_s`` and ``floor_s`` (the time to read
            the reference set once).
        by_examples: Rows with ``examples_per_label`` and ``step_s``.

    Returns:
        A two-panel figure: milliseconds per step (and the floor) against the reference
        count, and against the images per label.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    n = [r["ref_per_label"] for r in by_refs]
    left.plot(n, [1e3 * r["step_s"] for r in by_refs], "o-", label="one backworking step")
    left.plot(n, [1e3 * r["floor_s"] for r in by_refs], "s--", label="reading the references once")
    for r in by_refs:
        left.annotate(
            f"{r['step_s'] / r['floor_s']:.1f}x",
            (r["ref_per_label"], 1e3 * r["step_s"]),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=8,
        )
    left.set_xlabel("reference images per label (10 labels)")
    left.set_ylabel("ms")
    left.set_title("step time vs reference set (8 images per label)")
    left.legend()
    left.grid(alpha=0.3)
    e = [r["examples_per_label"] for r in by_examples]
    right.plot(e, [1e3 * r["step_s"] for r in by_examples], "o-", label="one step")
    right.plot(
        e,
        [1e3 * r["step_s"] / (10 * r["examples_per_label"]) for r in by_examples],
        "^:",
        label="per image-step",
    )
    right.set_xscale("log", base=2)
    right.set_yscale("log")
    right.set_xlabel("images per label (10 labels, every reference)")
    right.set_ylabel("ms")
    right.set_title("step time vs batch")
    right.legend()
    right.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def retrain_comparison(table: Mapping, title: str | None = None) -> plt.Figure:
    """Fooling, accuracy and confidence against the retraining round, one line per mode.

    Args:
        table: ``tfool.retrain.compare_modes`` output (or its reloaded JSON): ``{mode:
            [round dicts], ..., "settings": {...}}``.
        title: Optional figure title.

    Returns:
        The matplotlib figure: four panels sharing the round axis.
    """
    from matplotlib.ticker import MaxNLocator

    modes = [m for m in table if m != "settings"]
    if not modes or not all(table[m] for m in modes):
        raise ValueError("table has no rounds; expected at least round 0 of one mode")
    settings = table.get("settings", {})
    fig, axes = plt.subplots(2, 2, figsize=(11.5, 8))
    (ax_fool, ax_steps), (ax_acc, ax_conf) = axes
    colours = MODE_COLOURS
    for k, mode in enumerate(modes):
        rows = table[mode]
        c = colours.get(mode, f"C{k + 4}")
        x = [r["round"] for r in rows]
        ax_fool.plot(x, [100 * r["fooling_rate"] for r in rows], "o-", color=c, label=mode)
        steps = [np.nan if r["median_steps"] is None else r["median_steps"] for r in rows]
        ax_steps.plot(x, steps, "o-", color=c, label=mode)
        ax_acc.plot(x, [100 * r["test_accuracy"] for r in rows], "o-", color=c, label=mode)
        for eps, style in zip(rows[0]["fgsm_accuracy"], ("s--", "^:", "v-.")):
            acc = [100 * r["fgsm_accuracy"][eps] for r in rows]
            ax_acc.plot(x, acc, style, color=c, markersize=4, label=f"{mode}, FGSM {eps}")
        old = [(r["round"], r["confidence_on_old_negatives"]) for r in rows]
        old = [(i, v) for i, v in old if v is not None]
        if old:
            ax_conf.plot(*zip(*old), "o-", color=c, label=f"{mode}: old negatives")
        noise = [r["confidence_on_noise"] for r in rows]
        ax_conf.plot(x, noise, "s--", color=c, markersize=4, label=f"{mode}: noise")
    budget = settings.get("fooling_budget")
    thr = settings.get("fooling_threshold", 0.999)
    ax_fool.set_title(
        f"rows reaching p >= {thr} from fresh noise" + (f" in {budget} steps" if budget else "")
    )
    ax_fool.set_ylabel("fooled rows (%)")
    ax_fool.set_ylim(-3, 103)
    ax_steps.set_title("median steps of the fooled rows")
    ax_steps.set_ylabel("steps")
    ax_acc.set_title("test accuracy: clean (solid) and after FGSM")
    ax_acc.set_ylabel("%")
    ax_conf.set_title("mean top class probability (the data's classes)")
    ax_conf.set_ylabel("probability")
    ax_conf.set_ylim(-0.02, 1.02)
    for ax in axes.flat:
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole numbers
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def stress_figure(table: Mapping, title: str | None = None):
    """The stress test of several models (``tfool.stress``; ``retrain/stress.json``).

    Five panels of the share of rows past the threshold against the step budget, one per
    start (and the rubbish runs), one line per model; a sixth of accuracy under PGD
    against eps (clean accuracy at eps 0) with the targeted PGD success marked.

    Args:
        table: ``{name: summary, ..., "settings": ...}`` as ``stress.json`` holds it.
        title: Optional figure title.

    Returns:
        The matplotlib figure.
    """
    names = [n for n in table if n != "settings"]
    if not names:
        raise ValueError("table holds no model; expected at least one")
    settings = table.get("settings", {}).get("stress", {})
    thr = settings.get("threshold", 0.999)
    panels = [("fooling", s) for s in settings.get("starts", STRESS_STARTS)] + [("rubbish", None)]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    flat = list(axes.flat)
    width = 0.8 / len(names)
    for ax, (kind, start) in zip(flat, panels):
        budgets = []
        for k, name in enumerate(names):
            rates = table[name].get(kind, {})
            rates = rates.get(start, {}) if start else rates
            if not rates:
                continue
            budgets = sorted(rates, key=int)
            y = [100 * rates[b]["rate"] for b in budgets]
            x = np.arange(len(budgets)) + (k - (len(names) - 1) / 2) * width
            bars = ax.bar(x, y, width, color=_model_colour(name, k), label=name)
            ax.bar_label(bars, [f"{v:.0f}" for v in y], fontsize=6, padding=1)
        what = f"from {start}" if start else "rubbish (softmax cost only), from uniform"
        ax.set_title(f"backworked {what}", fontsize=10)
        ax.set_xticks(np.arange(len(budgets)), [f"{b} steps" for b in budgets])
        ax.set_ylabel(f"rows past p >= {thr} (%)")
        ax.set_ylim(0, 110)
    ax = flat[len(panels)] if len(panels) < len(flat) else None
    if ax is not None:
        for k, name in enumerate(names):
            row, colour = table[name], _model_colour(name, k)
            pgd = row.get("pgd_accuracy", {})
            eps = sorted(pgd, key=float)
            x = ([0.0] if "clean_accuracy" in row else []) + [float(e) for e in eps]
            y = ([100 * row["clean_accuracy"]] if "clean_accuracy" in row else []) + [
                100 * pgd[e] for e in eps
            ]
            ax.plot(x, y, "o-", color=colour, label=name)
            if row.get("targeted_pgd_success") is not None:
                t_eps = settings.get("targeted_eps", 0.3)
                ax.plot([t_eps], [100 * row["targeted_pgd_success"]], "x", color=colour, ms=9)
        ax.set_title("clean (eps 0) and PGD accuracy; x: targeted", fontsize=10)
        ax.set_xlabel("eps (L-infinity)")
        ax.set_ylabel("%")
        ax.set_ylim(-3, 103)
    for ax in flat[len(panels) + 1 :]:
        ax.axis("off")
    for ax in flat:
        if ax.has_data():
            ax.grid(alpha=0.3)
    flat[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _model_colour(name: str, k: int) -> str:
    return "C1" if name == "round_0" else MODE_COLOURS.get(name, f"C{k + 4}")


# ----------------------------------------------------------------------------------------
# Attribution heat maps
# ----------------------------------------------------------------------------------------

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
    rows, cols = len(images), len(attributions) + 1
    extra = 0.45 if show_colorbar else 0.25
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(cols * cell_size + 0.8, rows * (cell_size + extra) + 0.5),
        squeeze=False,
    )
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
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


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


def photo_fgsm_grid(found, magnify: float | None = None, cell_size: float = 2.0) -> plt.Figure:
    """FGSM on photos: each photo, its FGSM image at every eps and the largest perturbation.

    Args:
        found: A ``tfool.experiments.PhotoReport``.
        magnify: Gain of the perturbation column (default ``127 / eps``: +-eps to the
            full range around mid-grey).
        cell_size: Inches per image.

    Returns:
        The matplotlib figure.
    """
    eps_values = list(found.adversarial)
    top = max(eps_values)
    gain = magnify if magnify is not None else 127.0 / top
    rows, titles = [], []
    for k, photo in enumerate(found.names):
        row = [found.pixels[k] / 255.0]
        head = found.report["photos"][k]["top5"][0]
        row_titles = [f"{photo}\n{head['name']} ({100 * head['probability']:.0f}%)"]
        for eps, attacked in zip(eps_values, found.report["photos"][k]["fgsm"]):
            row.append(found.adversarial[eps][k] / 255.0)
            row_titles.append(
                f"eps {eps:g}/255\n{attacked['top1']} ({100 * attacked['top1_probability']:.0f}%)"
            )
        delta = found.adversarial[top][k] - found.pixels[k]
        row.append(np.clip((128.0 + gain * delta) / 255.0, 0, 1))
        row_titles.append(f"perturbation at {top:g}/255\nx{gain:.0f}")
        rows.append(row)
        titles.append(row_titles)
    return image_grid(
        np.asarray(rows, np.float32),
        titles=titles,
        suptitle=f"FGSM on {found.model_name}: away from each photo's own top-1 class",
        cell_size=cell_size,
    )
