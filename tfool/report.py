"""Run outputs of backworking: arrays, summary, figures and the console table."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from tfool import io
from tfool.analysis import BackworkAnalysis
from tfool.backwork import BackworkConfig, BackworkResult, result_arrays


def _save(fig, path: str) -> None:
    """Saves a figure atomically and frees it."""
    from tfool import plots

    io.save_figure(fig, path)
    plots.close(fig)


def write_backwork_files(
    output_dir: str | os.PathLike,
    result: BackworkResult,
    found: BackworkAnalysis,
    config: BackworkConfig,
    extra: Mapping | None = None,
) -> dict:
    """Writes ``images.npz``, ``summary.json``, ``backworked.png``, ``worst_train.png``,
    ``salient.png`` and ``attribution.png`` of ``result`` and its analysis ``found``
    (``tfool.analysis.analyse_backwork``) into ``output_dir``, each atomically
    (``worst_train.png`` and ``attribution.png`` only when ``found`` holds them), with
    ``extra`` summary entries (model accuracy, paths, ...); returns the summary written."""
    from tfool import plots  # matplotlib only when figures are drawn

    out = os.fspath(output_dir)
    io.write_npz(os.path.join(out, "images.npz"), **result_arrays(result))
    summary = dict(found.summary)
    summary.update(dict(extra or {}))
    summary["config"] = {k: v for k, v in vars(config).items()}
    io.write_json(os.path.join(out, "summary.json"), summary)
    names = found.row_names
    kind = "rubbish" if _is_rubbish(config, len(result.layer_names)) else "backworked"
    fig = plots.probability_grid(
        result.images,
        result.target_probs,
        names,
        suptitle=f"{kind} images: probability of the row's label ({result.steps} steps)",
        vmin=config.input_min,
        vmax=config.input_max,
    )
    _save(fig, os.path.join(out, "backworked.png"))
    if found.worst is not None:
        fig = plots.probability_grid(
            *found.worst, names, suptitle="training images the model classifies worst"
        )
        _save(fig, os.path.join(out, "worst_train.png"))
    fig = plots.image_grid(
        found.salient,
        row_labels=names,
        suptitle=_salient_title(found.salient_keep, result.images.shape[2:]),
    )
    _save(fig, os.path.join(out, "salient.png"))
    if found.attributions is not None:
        _write_attribution(out, result, found)
    return summary


def _write_attribution(out: str, result: BackworkResult, found: BackworkAnalysis) -> None:
    """``attribution.png``: every method on the first image of the first labels."""
    from tfool import plots

    picks = result.images[: len(next(iter(found.attributions.values()))), 0]
    p = result.target_probs[: len(picks), 0]
    titles = [f"{found.row_names[i]}: p={p[i]:.4f}" for i in range(len(picks))]
    fig = plots.attribution_comparison_figure(
        picks,
        found.attributions,
        titles,
        suptitle="what the CNN's decision rests on, backworked images",
    )
    _save(fig, os.path.join(out, "attribution.png"))


def _salient_title(keep: int, image_shape) -> str:
    """What ``salient.png`` shows: pixels of grey images, pixel values of colour ones."""
    what = "d p[label] / d input (positive part)"
    channels = image_shape[-1] if len(image_shape) == 3 else 1
    if channels == 1:
        return f"salient features: top {keep} pixels of {what}"
    size = int(np.prod(image_shape))
    drawn = (
        "a pixel's colour: its channels kept"
        if channels == 3
        else "grey: the share of a pixel's channels kept"
    )
    return f"salient features: top {keep} of the {size} pixel values\nof {what}; {drawn}"


def _is_rubbish(config: BackworkConfig, num_layers: int) -> bool:
    coeffs = config.coeffs_for(num_layers)
    return all(c == 0 for c in coeffs[:-1])


def format_backwork_table(summary: Mapping) -> str:
    """A one-screen table of a backworking summary."""
    head = (
        f"{'label':>8} {'conv':>5} {'steps':>6} {'reinit':>6} {'min p':>9} {'mean p':>9} "
        f"{'d(train)':>9} {'d(batch)':>9}"
    )
    lines = [head, "-" * len(head)]
    for row in summary["labels"]:
        lines.append(
            f"{row['name'][:8]:>8} {'yes' if row['converged'] else 'no':>5} {row['steps']:6d} "
            f"{row['reinits']:6d} {row['min_target_prob']:9.5f} {row['mean_target_prob']:9.5f} "
            f"{_num(row['mean_nearest_train_distance'])} {_num(row['mean_pairwise_distance'])}"
        )
    lines.append("-" * len(head))
    conv = sum(r["converged"] for r in summary["labels"])
    lines.append(
        f"{conv}/{len(summary['labels'])} labels converged in {summary['steps']} steps, "
        f"{summary['wall_time_s']:.1f} s; pixels in [{summary['pixels_in_range'][0]:.3f}, "
        f"{summary['pixels_in_range'][1]:.3f}]; mean distance to the nearest training image "
        f"{_num(summary['mean_nearest_train_distance'], 0)}, within the batch "
        f"{_num(summary['mean_pairwise_distance'], 0)} (pixel-space L2)"
    )
    if summary.get("layer_distances"):
        lines.append(
            "activation distances (mean squared), to the nearest training image of "
            "the label / within the batch:"
        )
        lines.append(
            "  "
            + "   ".join(
                f"{name} {d['nearest_train']:.4g} / {d['within_batch']:.4g}"
                for name, d in summary["layer_distances"].items()
            )
        )
    if summary.get("model_accuracy") is not None:
        lines.append(
            f"model test accuracy {100 * summary['model_accuracy']:.2f}% "
            f"({summary.get('data_source')} data)"
        )
    if summary.get("interrupted"):
        lines.append("INTERRUPTED: these are the images found so far")
    return "\n".join(lines)


def _num(value, width: int = 9) -> str:
    """A distance for the table; ``-`` when there is none."""
    if value is None or not np.isfinite(value):
        return f"{'-':>{width}}"
    return f"{value:{width}.3f}"


def write_retrain_outputs(
    output_dir: str | os.PathLike,
    result,
    class_names: Sequence[str],
    extra: Mapping | None = None,
) -> dict:
    """Writes one mode's ``retrain.json``, ``retrain.png`` and every round's ``backworked.png``.

    The rounds' models, images and records are already in ``output_dir`` (``round_<r>/``)
    when ``retrain_rounds`` was given that folder; the grids go beside them.

    Args:
        output_dir: The mode's retraining folder.
        result: A ``tfool.retrain.RetrainResult``.
        class_names: Names of the data's classes (row labels of the grids).
        extra: More summary entries.

    Returns:
        The summary written to ``retrain.json``.
    """
    from tfool import plots, retrain

    out = os.fspath(output_dir)
    summary = result.summary()
    summary.update(dict(extra or {}))
    io.write_json(os.path.join(out, "retrain.json"), summary)
    if not result.records:
        return summary
    fig = plots.retrain_comparison(
        retrain.compare_modes([result]), title=f"retraining, {result.mode} mode"
    )
    _save(fig, os.path.join(out, "retrain.png"))
    for record, fresh in zip(result.records, result.backworked):
        names = [str(class_names[int(lbl)]) for lbl in fresh.labels]
        fig = plots.probability_grid(
            fresh.images,
            fresh.target_probs,
            names,
            suptitle=f"{result.mode} round {record.round}: backworked against the round's "
            f"model ({fresh.steps} steps)",
        )
        _save(fig, os.path.join(out, f"round_{record.round}", "backworked.png"))
    return summary


def write_retrain_comparison(
    output_dir: str | os.PathLike, results: Sequence, class_names: Sequence[str] | None = None
) -> dict:
    """Writes ``retrain_modes.json`` (``tfool.retrain.compare_modes``),
    ``retrain_modes.png`` (``plots.retrain_comparison``) and ``retrain_images.png`` (the
    images backworked against each mode's round-1 and last model) for one or more modes.

    Returns:
        The table written.
    """
    from tfool import plots, retrain

    out = os.fspath(output_dir)
    table = retrain.compare_modes(results)
    io.write_json(os.path.join(out, "retrain_modes.json"), table)
    if not all(r.records for r in results):
        return table
    fig = plots.retrain_comparison(table, title="retraining with backworked negatives")
    _save(fig, os.path.join(out, "retrain_modes.png"))
    rows, probs, names = [], [], []
    for result in results:
        last = result.records[-1].round
        for r in sorted({min(1, last), last}):
            fresh = result.backworked[r]
            rows.append(fresh.images[:, 0])
            probs.append(fresh.target_probs[:, 0])
            names.append(f"{result.mode}, round {r}")
    labels = results[0].backworked[0].labels
    fig = plots.probability_grid(
        np.stack(rows),
        np.stack(probs),
        names,
        suptitle="backworked against the retrained models: one image per label ("
        + ", ".join(str(class_names[int(k)]) if class_names else str(int(k)) for k in labels)
        + "), its target probability above it",
    )
    _save(fig, os.path.join(out, "retrain_images.png"))
    return table


def format_retrain_table(summary: Mapping) -> str:
    """A one-screen table of a retraining summary (``retrain.json``), one line per round."""
    records = summary["records"]
    eps = records[0]["fgsm_eps"] if records else ()
    fgsm_head = " ".join(f"{'fgsm ' + format(e, 'g'):>9}" for e in eps)
    head = (
        f"{'round':>5} {'test acc':>8} {fgsm_head} {'negs':>5} {'old mean p':>10} "
        f"{'fooled':>7} {'med steps':>9} {'mean p':>7} {'noise p':>7} {'zeros p':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in records:
        fool = r["fooling"]
        fgsm = " ".join(f"{100 * a:8.2f}%" for a in r["fgsm_accuracy"])
        lines.append(
            f"{r['round']:5d} {100 * r['test_accuracy']:7.2f}% {fgsm} "
            f"{r['num_negatives']:5d} "
            f"{_opt(r['old_mean_target_prob'], 10, '.5f')} "
            f"{100 * fool['rate']:6.1f}% {_opt(fool['median_steps'], 9, '.0f')} "
            f"{fool['mean_target_prob']:7.4f} {r['confidence_on_noise']:7.4f} "
            f"{r['confidence_on_zeros']:7.4f}"
        )
    lines.append("-" * len(head))
    if records:
        fool = records[0]["fooling"]
        lines.append(
            f"mode {summary['mode']}{', from scratch' if summary['from_scratch'] else ''}; "
            f"fooled = rows of fresh noise (fixed seed, {fool['rows']} rows) whose target "
            f"reached p >= {fool['threshold']} within {fool['budget']} steps; old = every "
            "earlier round's negatives under this round's model; noise/zeros p = top class "
            "probability (the data's classes) of uniform noise / an all-zero image"
        )
    if summary.get("interrupted"):
        lines.append(
            f"INTERRUPTED with {len(summary['records'])} finished round(s) (round 0 "
            "included); resuming continues them"
        )
    return "\n".join(lines)


def write_stress_outputs(output_dir: str | os.PathLike, found: Mapping, results=()) -> dict:
    """Writes ``stress.json`` (per model: ``clean_accuracy``, ``pgd_accuracy`` {eps: value},
    ``targeted_pgd_success``, ``fooling`` {start: {budget: {"rate", "median_steps"}}},
    ``rubbish`` {budget: ...}, ``seconds`` per part; and the ``settings``, the retraining
    arms' among them) and ``stress.png`` (``plots.stress_figure``).

    Args:
        output_dir: The folder (``<output_dir>/retrain`` for run_backwork.py).
        found: ``tfool.stress.stress_models``' result.
        results: The ``RetrainResult`` of every mode, whose settings are recorded.

    Returns:
        The table written.
    """
    from tfool import plots

    table = {
        name: {**row, "seconds": found["seconds"].get(name, {})}
        for name, row in found["models"].items()
    }
    arms = {
        r.mode: {"rounds": r.rounds, **{k: v for k, v in r.settings.items() if k != "backwork"}}
        for r in results
    }
    table["settings"] = {**found["settings"], "complete": found["complete"], "arms": arms}
    io.write_json(os.path.join(output_dir, "stress.json"), table)
    if found["models"]:
        fig = plots.stress_figure(table, title="how hard each model is to fool")
        _save(fig, os.path.join(output_dir, "stress.png"))
    return table


def format_stress_table(found: Mapping) -> str:
    """One line per model of a stress test: clean and PGD accuracy, targeted PGD success,
    and the share of rows fooled at every budget per start."""
    settings = found["settings"]["stress"]
    budgets = [str(b) for b in settings["budgets"]]
    kinds = [f"fooling/{s}" for s in settings["starts"]] + ["rubbish"]
    lines = []
    for name, row in found["models"].items():
        pgd = " ".join(f"{e}: {100 * v:.1f}%" for e, v in row.get("pgd_accuracy", {}).items())
        clean = row.get("clean_accuracy")
        target = row.get("targeted_pgd_success")
        lines.append(
            f"{name}: clean {_opt(clean and 100 * clean, 6, '.2f')}%  PGD {pgd}  targeted "
            f"{_opt(target and 100 * target, 5, '.1f')}%"
        )
        for kind in kinds:
            part = row.get(kind.split("/")[0], {})
            part = part.get(kind.split("/")[1], {}) if "/" in kind else part
            if part:
                rates = "  ".join(
                    f"{b} steps {100 * part[b]['rate']:5.1f}%" for b in budgets if b in part
                )
                lines.append(f"    {kind:<18} {rates}")
    lines.append(
        f"fooled = rows whose target reached p >= {settings['threshold']} within the budget "
        f"({settings['examples']} rows per label and start, never re-initialised)"
    )
    return "\n".join(lines)


def _opt(value, width: int, spec: str) -> str:
    """A number for the table, ``-`` when there is none."""
    if value is None:
        return f"{'-':>{width}}"
    return f"{value:{width}{spec}}"


# ----------------------------------------------------------------------------------------
# Gradient attacks, projection, the noise survey and attributions (run_fgsm.py's modes)
# ----------------------------------------------------------------------------------------


def write_sweep_outputs(output_dir: str | os.PathLike, sweep) -> str:
    """Writes ``robustness.json``/``.csv``, ``accuracy_vs_eps.png`` and ``examples.png``
    of a ``tfool.experiments.SweepReport``; returns the console summary.

    ``examples.png`` shows correctly classified test images: a model that classifies none
    of them correctly gets none, and the summary says so."""
    from tfool import plots

    out = os.fspath(output_dir)
    result, report = sweep.result, sweep.report
    io.write_json(os.path.join(out, "robustness.json"), report)
    header, rows = result.table()
    rows = [["" if v is None else v for v in row] for row in rows]
    io.write_csv(os.path.join(out, "robustness.csv"), header, rows)
    curves = plots.accuracy_vs_eps(
        result.eps_values,
        result.curves(),
        result.clean_accuracy,
        title=f"{sweep.dataset_name}: accuracy under attack ({sweep.num_images} test images)",
    )
    _save(curves, os.path.join(out, "accuracy_vs_eps.png"))
    ex = sweep.examples
    if not len(ex.images):
        return (
            f"{format_sweep_summary(report)}\nno examples.png: the model classifies none of "
            f"the {sweep.num_images} test images correctly"
        )
    examples = plots.attack_examples(
        ex.images,
        ex.adversarial,
        ex.titles,
        ex.originals,
        ex.eps,
        suptitle=f"eps = {ex.eps:g}: original, perturbation (x 1/eps), adversarial",
    )
    _save(examples, os.path.join(out, "examples.png"))
    return format_sweep_summary(report)


def format_sweep_summary(report: Mapping) -> str:
    """The accuracy table of a sweep report (``robustness.json``)."""
    methods, eps = report["methods"], report["eps_values"]
    acc = {(r["method"], r["eps"]): r["accuracy"] for r in report["rows"]}
    lines = [
        f"clean accuracy {100 * report['clean_accuracy']:.2f}% on "
        f"{report['num_images']} images; accuracy (%) under attack:",
        "eps    " + "".join(f"{m[:19]:>20}" for m in methods),
    ]
    for e in eps:
        lines.append(f"{e:<7g}" + "".join(f"{100 * acc[m, e]:>20.1f}" for m in methods))
    return "\n".join(lines)


def _top5(predictions) -> list[dict]:
    return [p._asdict() for p in predictions]


def write_projection_outputs(output_dir: str | os.PathLike, result, model, image_name: str) -> str:
    """Writes ``projection.json``/``.npz``/``.png`` of a ``tfool.projection.ProjectionResult``
    on ``model`` (an ``ImagenetModel``) from ``image_name``; returns the console summary."""
    import dataclasses

    from tfool import plots

    rows = [
        dict(
            index=target,
            name=result.target_names[k],
            reached=bool(result.reached[k]),
            steps=int(result.steps_taken[k]),
            final_probability=float(result.final_probs[k]),
            max_abs_change=float(result.linf[k]),
            l2_change=float(result.l2[k]),
            top5_after=_top5(result.top5_after[k]),
            target_probs=result.target_probs[:, k],
        )
        for k, target in enumerate(result.targets)
    ]
    report = dict(
        model=model.name,
        weights=model.weights,
        input_size=model.input_size,
        image=image_name,
        config=dataclasses.asdict(result.config),
        top5_before=_top5(result.top5_before),
        targets=rows,
    )
    out = os.fspath(output_dir)
    io.write_json(os.path.join(out, "projection.json"), report)
    arrays = ("original", "images", "perturbations", "target_probs", "targets")
    io.write_npz(
        os.path.join(out, "projection.npz"), **{k: np.asarray(getattr(result, k)) for k in arrays}
    )
    fig = plots.projection_grid(result)
    _save(fig, os.path.join(out, "projection.png"))
    top = result.top5_before[0]
    lines = [
        f"{model.name} ({model.weights} weights), start: {image_name}, "
        f"top-1 {top.name} ({top.probability:.3g})"
    ]
    for row in rows:
        state = "reached" if row["reached"] else "below"
        lines.append(
            f"-> {row['name'][:24]:<24} p = {row['final_probability']:.4f} after "
            f"{row['steps']:4d} steps ({state} {result.config.threshold:g}), "
            f"max |change| {row['max_abs_change']:.2f} of 255, L2 {row['l2_change']:.1f}"
        )
    return "\n".join(lines)


def write_survey_outputs(output_dir: str | os.PathLike, result, models: Sequence) -> str:
    """Writes ``survey.json``, ``survey.csv`` and ``survey_<model>.png`` of a
    ``tfool.survey.SurveyResult`` over ``models``; returns the console summary."""
    from tfool import plots

    report = dict(
        result.to_dict(),
        weights={m.name: m.weights for m in models},
        input_sizes={m.name: m.input_size for m in models},
    )
    out = os.fspath(output_dir)
    io.write_json(os.path.join(out, "survey.json"), report)
    header, rows = result.table()
    io.write_csv(os.path.join(out, "survey.csv"), header, rows)
    for model_survey in result.models:
        fig = plots.survey_histogram(model_survey)
        _save(fig, os.path.join(out, f"survey_{model_survey.name}.png"))
    lines = [
        f"top-1 confidence on {result.config.num_images} {result.config.noise} noise images:",
        f"{'':<10}" + "".join(f"{name[:15]:>16}" for name in header[1:]),
    ]
    lines += [f"{row[0]:<10}" + "".join(f"{v:>16.4g}" for v in row[1:]) for row in rows]
    lines.append(
        f"{'top label':<10}" + "".join(f"{s.histogram[0][1][:15]:>16}" for s in result.models)
    )
    return "\n".join(lines)


def write_attribution_outputs(output_dir: str | os.PathLike, found) -> str:
    """Writes ``attribution.png`` and ``attribution.json`` of a
    ``tfool.experiments.AttributionReport``; returns the console summary."""
    from tfool import plots

    out = os.fspath(output_dir)
    _save(
        plots.attribution_comparison_figure(
            found.images,
            found.attributions,
            found.titles,
            suptitle=f"what the CNN's answer rests on: {found.dataset_name} test images and "
            f"their FGSM images\n(eps {found.eps:g}); attributions of the predicted class",
        ),
        os.path.join(out, "attribution.png"),
    )
    io.write_json(os.path.join(out, "attribution.json"), found.report)
    return (
        f"attribution.png: {found.num_test_images} test images and their FGSM images (eps "
        f"{found.eps:g}; the answer changed on {found.changed}), methods: "
        f"{', '.join(found.attributions)}"
    )


def write_photo_outputs(output_dir: str | os.PathLike, found) -> str:
    """Writes ``photo_fgsm.png``, ``photo_attribution.png``, ``photos.json`` and
    ``photos.npz`` of a ``tfool.experiments.PhotoReport``; returns the console summary."""
    from tfool import plots

    out = os.fspath(output_dir)
    fig = plots.photo_fgsm_grid(found)
    _save(fig, os.path.join(out, "photo_fgsm.png"))
    top = max(found.adversarial)
    _save(
        plots.attribution_comparison_figure(
            found.attribution_images,
            found.attributions,
            found.titles,
            suptitle=f"what {found.model_name}'s answer rests on: photos and their FGSM "
            f"images (eps {top:g}/255); attributions of each image's top class",
            cell_size=2.0,
        ),
        os.path.join(out, "photo_attribution.png"),
    )
    io.write_json(os.path.join(out, "photos.json"), found.report)
    io.write_npz(
        os.path.join(out, "photos.npz"),
        names=np.asarray(found.names),
        photos=found.pixels,
        eps_pixels=np.asarray(list(found.adversarial), np.float32),
        adversarial=np.stack(list(found.adversarial.values()), axis=1),
        **{f"attribution_{k}": v for k, v in found.attributions.items()},
    )
    lines = [
        f"{'photo':22s} {'clean top-1':28s} " + "  ".join(f"eps {e:g}" for e in found.adversarial)
    ]
    for row in found.report["photos"]:
        head = row["top5"][0]
        cells = [
            f"{a['top1'][:18]} {a['top1_probability']:.2f}{'*' if a['changed'] else ''}"
            for a in row["fgsm"]
        ]
        lines.append(
            f"{row['photo'][:22]:22s} {head['name'][:20]:20s} {head['probability']:.3f}   "
            + "  ".join(cells)
        )
    lines.append("(* the answer changed)  photo_fgsm.png, photo_attribution.png, photos.json/.npz")
    return "\n".join(lines)
