"""Figures of retraining and the stress test, and of the backworker's scaling."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

#: The colour of each retraining mode in every figure.
MODE_COLOURS = {"uniform": "C0", "extra_class": "C3", "control": "C7", "adversarial": "C2"}
#: The stress test's starts (``tfool.stress.STARTS``; plots imports nothing of tfool).
STRESS_STARTS = ("uniform", "gaussian", "zeros", "digits")


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
