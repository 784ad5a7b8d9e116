"""Gradient attacks on the reference MNIST CNN: FGSM, the normalised step, BIM and a noise control.

python run_fgsm.py                        # the eps sweep into out/fgsm/
python run_fgsm.py --fgsm_methods=fgsm,bim --fgsm_eps=0.1,0.3 --fgsm_num_images=200
python run_fgsm.py --fgsm_mode=project --fgsm_project_targets=envelope   # VGG16 projection
python run_fgsm.py --fgsm_mode=survey     # ImageNet classifiers on random noise
python run_fgsm.py --fgsm_mode=attribute  # attributions of test and FGSM images
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
from absl import app, flags, logging

from flags import common as common_flags
from flags import distribution as distribution_flags
from flags import fgsm as fgsm_flags
from flags import imagenet as imagenet_flags
from flags import model as model_flags
from tfool import (
    attacks,
    attribution,
    data,
    distribute,
    imagenet,
    io,
    models,
    plots,
    projection,
    survey,
)

FLAGS = flags.FLAGS
#: Goodfellow et al. (2015), MNIST error rates under FGSM at eps 0.25.
GOODFELLOW_ERRORS = {"shallow softmax": 0.999, "maxout network": 0.894}


def _mnist_model(common: common_flags.CommonConfig, flag_values: flags.FlagValues, strategy):
    """Loads the data and the cached reference CNN (training and caching it when missing)."""
    dataset = data.load_dataset(common.dataset, common.data_source, common.data_dir)
    logging.info(
        "data: %s from %s, %d test images", dataset.name, dataset.source, len(dataset.x_test)
    )
    model, trained = models.get_or_train(
        flag_values.model_path, dataset, model_flags.train_config(flag_values), strategy
    )
    if trained is not None:
        logging.info("trained the CNN in %.0f s", trained.train_seconds)
    return dataset, model


def _attack_options(cfg: fgsm_flags.FgsmConfig, labels: np.ndarray) -> dict:
    """Untargeted runs attack the true labels; targeted ones a class or the least likely."""
    least_likely = cfg.targeted and cfg.target_class is None
    y = None if least_likely else (cfg.target_class if cfg.targeted else labels)
    return dict(y=y, targeted=cfg.targeted and not least_likely, least_likely=least_likely)


def _answer(probs: np.ndarray, names) -> list[str]:
    return [f"{names[p.argmax()]} ({100 * p.max():.0f}%)" for p in probs]


def _examples(model, x, y, cfg, options, names, seed, strategy):
    """The figure of the first correctly classified images under every method."""
    clean = attacks.probabilities(model, x, strategy=strategy)
    keep = np.flatnonzero(clean.argmax(-1) == y)[: cfg.num_examples]
    xe = x[keep]
    if isinstance(options["y"], np.ndarray):
        options = dict(options, y=options["y"][keep])
    advs, titles = {}, {}
    for method in cfg.methods:
        adv = attacks.attack(
            method,
            model,
            xe,
            cfg.example_eps,
            steps=cfg.steps,
            step_size=cfg.step_size,
            seed=seed,
            strategy=strategy,
            **options,
        )
        on_delta = _answer(attacks.probabilities(model, adv - xe, strategy=strategy), names)
        on_adv = _answer(attacks.probabilities(model, adv, strategy=strategy), names)
        advs[method], titles[method] = adv, list(zip(on_delta, on_adv, strict=True))
    originals = [
        f"{names[t]}: {a}" for t, a in zip(y[keep], _answer(clean[keep], names), strict=True)
    ]
    return plots.attack_examples(
        xe,
        advs,
        titles,
        originals,
        cfg.example_eps,
        suptitle=f"eps = {cfg.example_eps:g}: original, perturbation (x 1/eps), adversarial",
    )


def _gradient_sign_image(model, x, eps, options, strategy) -> dict:
    """The model's answers on the post's gradient-sign image ``eps * sign(grad)`` itself."""
    grad = attacks.loss_gradient(
        model, x, options["y"], least_likely=options["least_likely"], strategy=strategy
    )
    probs = attacks.probabilities(model, eps * np.sign(grad), strategy=strategy)
    conf = probs.max(-1)
    return dict(
        eps=eps,
        mean_confidence=float(conf.mean()),
        fraction_confident_over_90=float(np.mean(conf > 0.9)),
        predicted_class_counts=np.bincount(probs.argmax(-1), minlength=probs.shape[-1]),
    )


def _summary(report: dict) -> str:
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


def sweep_mode(common, cfg: fgsm_flags.FgsmConfig, flag_values, strategy=None) -> str:
    """The eps sweep: robustness.json/.csv, accuracy_vs_eps.png, examples.png; a summary."""
    dataset, model = _mnist_model(common, flag_values, strategy)
    n = cfg.num_images or len(dataset.x_test)
    x, y = dataset.x_test[:n], dataset.y_test[:n]
    options = _attack_options(cfg, y)
    cells = len(cfg.methods) * len(cfg.eps_values)
    done = []

    def progress(row):
        done.append(row)
        logging.info(
            "[%2d/%d] %-19s eps=%-5g accuracy %5.1f%%  changed %5.1f%%  (%.1f s)",
            len(done),
            cells,
            row.method,
            row.eps,
            100 * row.accuracy,
            100 * row.changed,
            row.seconds,
        )

    result = attacks.sweep(
        model,
        x,
        y,
        cfg.eps_values,
        cfg.methods,
        steps=cfg.steps,
        step_size=cfg.step_size,
        seed=common.seed,
        batch_size=cfg.batch_size,
        strategy=strategy,
        callback=progress,
        **options,
    )
    out = common.output_dir
    report = dict(
        result.as_dict(),
        dataset=dataset.name,
        data_source=dataset.source,
        model_path=flag_values.model_path,
        target_class=cfg.target_class,
        step_size=cfg.step_size or ("2.5 * eps / steps" if cfg.steps else "1/255 (Kurakin et al.)"),
        gradient_sign_image=_gradient_sign_image(model, x, cfg.example_eps, options, strategy),
        goodfellow_fgsm_error_at_0_25=GOODFELLOW_ERRORS,
    )
    io.write_json(os.path.join(out, "robustness.json"), report)
    header, rows = result.table()
    rows = [["" if v is None else v for v in row] for row in rows]
    io.write_csv(os.path.join(out, "robustness.csv"), header, rows)
    curves = plots.accuracy_vs_eps(
        result.eps_values,
        result.curves(),
        result.clean_accuracy,
        title=f"{dataset.name}: accuracy under attack ({n} test images)",
    )
    examples = _examples(model, x, y, cfg, options, dataset.class_names, common.seed, strategy)
    for name, fig in (("accuracy_vs_eps.png", curves), ("examples.png", examples)):
        io.save_figure(fig, os.path.join(out, name))
        plots.close(fig)
    return _summary(report)


def _top5(predictions) -> list[dict]:
    return [p._asdict() for p in predictions]


def project_mode(common, cfg, flag_values, strategy=None) -> str:
    """Gradient projection on an ImageNet model: projection.png/.json/.npz; a summary."""
    icfg = imagenet_flags.imagenet_config(flag_values)
    if icfg.image is not None:
        imagenet.load_image(icfg.image, 8)  # a missing or unreadable file fails before the model
    model = imagenet.load_imagenet_model(icfg.model, icfg.weights, icfg.input_size, strategy)
    result = projection.project(
        model,
        icfg.image,
        icfg.targets,
        **dataclasses.asdict(icfg.projection),
        strategy=strategy,
        verbose=int(common.verbosity > 0),
    )
    rows = [
        dict(
            index=target,
            name=result.target_names[k],
            reached=bool(result.reached[k]),
            steps=int(result.steps_taken[k]),
            final_probability=float(result.final_probs[k]),
            max_abs_change=float(result.linf[k]),
            top5_after=_top5(result.top5_after[k]),
            target_probs=result.target_probs[:, k],
        )
        for k, target in enumerate(result.targets)
    ]
    report = dict(
        model=model.name,
        weights=model.weights,
        input_size=model.input_size,
        image=icfg.image or imagenet_flags.GREY,
        config=dataclasses.asdict(result.config),
        top5_before=_top5(result.top5_before),
        targets=rows,
    )
    out = common.output_dir
    io.write_json(os.path.join(out, "projection.json"), report)
    arrays = ("original", "images", "perturbations", "target_probs", "targets")
    io.write_npz(
        os.path.join(out, "projection.npz"), **{k: np.asarray(getattr(result, k)) for k in arrays}
    )
    fig = plots.projection_grid(result)
    io.save_figure(fig, os.path.join(out, "projection.png"))
    plots.close(fig)
    top = result.top5_before[0]
    lines = [
        f"{model.name} ({model.weights} weights), start: {report['image']}, "
        f"top-1 {top.name} ({top.probability:.3g})"
    ]
    for row in rows:
        state = "reached" if row["reached"] else "below"
        lines.append(
            f"-> {row['name'][:24]:<24} p = {row['final_probability']:.4f} after "
            f"{row['steps']:4d} steps ({state} {result.config.threshold:g}), "
            f"max |change| {row['max_abs_change']:.2f} of 255"
        )
    return "\n".join(lines)


def survey_mode(common, cfg, flag_values, strategy=None) -> str:
    """The noise survey: survey.json, survey.csv and survey_<model>.png per model; a summary."""
    icfg = imagenet_flags.imagenet_config(flag_values)
    surveyed = [
        imagenet.load_imagenet_model(name, weights, icfg.input_size, strategy)
        for name, weights in icfg.survey_models
    ]
    result = survey.noise_survey(
        surveyed,
        seed=common.seed,
        strategy=strategy,
        verbose=int(common.verbosity > 0),
        **dataclasses.asdict(icfg.survey),
    )
    report = dict(
        result.to_dict(),
        weights={m.name: m.weights for m in surveyed},
        input_sizes={m.name: m.input_size for m in surveyed},
    )
    out = common.output_dir
    io.write_json(os.path.join(out, "survey.json"), report)
    header, rows = result.table()
    io.write_csv(os.path.join(out, "survey.csv"), header, rows)
    for model_survey in result.models:
        fig = plots.survey_histogram(model_survey)
        io.save_figure(fig, os.path.join(out, f"survey_{model_survey.name}.png"))
        plots.close(fig)
    lines = [
        f"top-1 confidence on {result.config.num_images} {result.config.noise} noise images:",
        f"{'':<10}" + "".join(f"{name[:15]:>16}" for name in header[1:]),
    ]
    lines += [f"{row[0]:<10}" + "".join(f"{v:>16.4g}" for v in row[1:]) for row in rows]
    lines.append(
        f"{'top label':<10}" + "".join(f"{s.histogram[0][1][:15]:>16}" for s in result.models)
    )
    return "\n".join(lines)


def attribute_mode(common, cfg, flag_values, strategy=None) -> str:
    """Every attribution method on test images and their FGSM images: attribution.png/.json."""
    dataset, model = _mnist_model(common, flag_values, strategy)
    n = cfg.num_images or len(dataset.x_test)
    x, y = dataset.x_test[:n], dataset.y_test[:n]
    correct = np.flatnonzero(attacks.probabilities(model, x, strategy=strategy).argmax(-1) == y)
    if len(correct) == 0:
        raise ValueError(f"the model classifies none of the first {n} test images correctly")
    keep = correct[: cfg.attribute_num_images]
    options = _attack_options(cfg, y[keep])
    adv = attacks.fgsm(model, x[keep], cfg.example_eps, strategy=strategy, **options)
    images = np.stack([x[keep], adv], axis=1).reshape(-1, *x.shape[1:])  # test, FGSM, test, ...
    probs = attacks.probabilities(model, images, strategy=strategy)
    predicted = probs.argmax(-1)
    attrs = attribution.attribute_all(
        model, images, predicted, methods=cfg.attribute_methods, strategy=strategy
    )
    names, answers = dataset.class_names, _answer(probs, dataset.class_names)
    titles = [
        f"test #{keep[i // 2]}, label {names[y[keep[i // 2]]]}\nanswer {answer}"
        if i % 2 == 0
        else f"FGSM, eps {cfg.example_eps:g}\nanswer {answer}"
        for i, answer in enumerate(answers)
    ]
    fig = plots.attribution_comparison_figure(
        images,
        attrs,
        titles,
        suptitle=f"what the CNN's answer rests on: {dataset.name} test images and their FGSM "
        f"images\n(eps {cfg.example_eps:g}); attributions of the predicted class",
    )
    out = common.output_dir
    io.save_figure(fig, os.path.join(out, "attribution.png"))
    plots.close(fig)
    rows = [
        dict(
            test_index=keep[i // 2],
            image="test" if i % 2 == 0 else "fgsm",
            label=y[keep[i // 2]],
            predicted=predicted[i],
            confidence=probs[i, predicted[i]],
        )
        for i in range(len(images))
    ]
    changed = int(np.sum(predicted[1::2] != predicted[0::2]))
    report = dict(
        dataset=dataset.name,
        model_path=flag_values.model_path,
        eps=cfg.example_eps,
        attack=dict(method="fgsm", targeted=cfg.targeted, target_class=cfg.target_class),
        methods=list(attrs),
        attribution_target="predicted class",
        fgsm_changed_answer=changed,
        rows=rows,
    )
    io.write_json(os.path.join(out, "attribution.json"), report)
    return (
        f"attribution.png: {len(keep)} test images and their FGSM images (eps "
        f"{cfg.example_eps:g}; the answer changed on {changed}), methods: {', '.join(attrs)}"
    )


#: run_fgsm.py's modes: ``--fgsm_mode`` -> function(common, config, flag_values, strategy)
#: that writes its outputs and returns a console summary.
MODES = {
    "sweep": sweep_mode,
    "project": project_mode,
    "survey": survey_mode,
    "attribute": attribute_mode,
}


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines every flag of run_fgsm.py on ``flag_values``."""
    common_flags.define_common_flags(flag_values, output_dir="out/fgsm")
    model_flags.define_model_flags(flag_values)
    distribution_flags.define_distribution_flags(flag_values)
    fgsm_flags.define_fgsm_flags(flag_values)
    imagenet_flags.define_imagenet_flags(flag_values)


def main(argv: list[str], flag_values: flags.FlagValues = FLAGS) -> None:
    """Runs the mode chosen by ``--fgsm_mode`` with the parsed ``flag_values``."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    start = time.perf_counter()
    common = common_flags.common_config(flag_values)
    cfg = fgsm_flags.fgsm_config(flag_values)
    dist = distribution_flags.distribution_config(flag_values)
    logging.set_verbosity(logging.INFO if common.verbosity else logging.WARNING)
    strategy = distribute.get_strategy(dist.name, dist.num_gpus, dist.tpu_address)  # first
    logging.info("distribution: %s", distribute.describe(strategy))
    os.makedirs(common.output_dir, exist_ok=True)
    common_flags.write_flags_file(flag_values, common.output_dir)
    summary = MODES[cfg.mode](common, cfg, flag_values, strategy=strategy)
    if common.verbosity:
        print(summary)
    logging.info(
        "%s finished in %.0f s; outputs in %s",
        cfg.mode,
        time.perf_counter() - start,
        common.output_dir,
    )


def _main_with_clear_errors(argv: list[str], flag_values: flags.FlagValues = FLAGS) -> int:
    """``main``, with bad input (files, class names, weights) reported in one line, exit code 2."""
    try:
        main(argv, flag_values)
    except (ValueError, FileNotFoundError, ConnectionError, RuntimeError) as err:
        logging.error("error: %s", err)
        return 2
    return 0


def run() -> None:
    """Console entry point: defines the flags and runs ``main``."""
    define_flags(FLAGS)
    app.run(_main_with_clear_errors)


if __name__ == "__main__":
    run()
