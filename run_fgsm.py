"""Gradient attacks on a classifier and its data (the reference CNN on MNIST by default):
FGSM, the normalised step, BIM and a noise control; projection, noise survey, attributions.

python run_fgsm.py                        # the eps sweep into out/fgsm/
python run_fgsm.py --dataset=arrays --data_dir=mine.npz --model_path=mine.keras  # your own
python run_fgsm.py --fgsm_methods=fgsm,bim --fgsm_eps=0.1,0.3 --fgsm_num_images=200
python run_fgsm.py --fgsm_mode=project --fgsm_project_targets=envelope   # VGG16 projection
python run_fgsm.py --fgsm_mode=survey     # ImageNet classifiers on random noise
python run_fgsm.py --fgsm_mode=attribute  # attributions of test and FGSM images
python run_fgsm.py --fgsm_mode=photos --fgsm_imagenet_model=efficientnet_lite0  # photos
"""

from __future__ import annotations

import logging
import os
import time

from absl import app, flags

from flags import common as common_flags
from flags import distribution as distribution_flags
from flags import fgsm as fgsm_flags
from flags import imagenet as imagenet_flags
from flags import model as model_flags
from tfool import (
    _tf,
    data,
    distribute,
    experiments,
    imagenet,
    interrupts,
    models,
    projection,
    report,
    survey,
)
from tfool.config import CommonConfig

FLAGS = flags.FLAGS
log = logging.getLogger("tfool")


#: The name of run_fgsm.py's flags file: its own, so that it never replaces the
#: ``flags.cfg`` of a run_backwork.py run.
FLAGS_FILE = "fgsm_flags.cfg"

#: The files each mode writes into --output_dir (tfool.report's ``write_*_outputs``) besides
#: the flags file and the manifest; ``survey`` also writes ``survey_<model>.png`` per model.
#: Their names are checked before any work.
OUTPUT_NAMES = {
    "sweep": ("robustness.json", "robustness.csv", "accuracy_vs_eps.png", "examples.png"),
    "project": ("projection.json", "projection.npz", "projection.png"),
    "survey": ("survey.json", "survey.csv"),
    "attribute": ("attribution.json", "attribution.png"),
    "photos": ("photos.json", "photos.npz", "photo_fgsm.png", "photo_attribution.png"),
}


def _start_outputs(
    outputs: common_flags.OutputFolder | None,
    common: CommonConfig,
    flag_values: flags.FlagValues,
    dataset: data.Dataset | None = None,
) -> None:
    """Starts writing into the output folder ``main`` holds: removes the earlier run's
    files and writes ``fgsm_flags.cfg`` (with the data source ``dataset`` came from). Every
    mode calls it once its data and models are loaded and checked, so a refused run leaves
    nothing behind. Without ``outputs`` (a mode called on its own) it only makes the folder
    and writes the flags file."""
    source = dataset.source if dataset is not None else None
    if outputs is None:
        os.makedirs(common.output_dir, exist_ok=True)
        common_flags.write_flags_file(
            flag_values, common.output_dir, name=FLAGS_FILE, data_source=source
        )
        return
    keep = []
    if dataset is not None:  # the cached model it uses
        path = model_flags.model_path(flag_values, dataset.name)
        keep = [path, str(models.record_path(path)), os.path.dirname(path)]
    outputs.start(data_source=source, keep=keep)


def _data_model(common: CommonConfig, cfg, flag_values: flags.FlagValues, strategy):
    """Loads the data and the classifier at ``--model_path`` (the reference CNN is trained
    on the data and cached there when the file is missing)."""
    dataset = data.load_dataset(
        common.dataset, common.data_source, common.data_dir, image_size=common.image_size
    )
    try:
        cfg.check_data(dataset)  # before any training
    except ValueError as err:
        raise fgsm_flags.flag_error(err, flag_values) from err
    log.info("data: %s from %s, %d test images", dataset.name, dataset.source, len(dataset.x_test))
    path = model_flags.model_path(flag_values, dataset.name)
    model, trained = models.get_or_train(
        path, dataset, model_flags.train_config(flag_values), strategy
    )
    if trained is not None:
        log.info("trained the CNN in %.0f s", trained.train_seconds)
    else:
        accuracy = models.evaluate(model, dataset.x_test, dataset.y_test)
        log.info("model: %s, test accuracy %.2f%% on %s", path, 100 * accuracy, dataset.name)
        models.warn_if_chance(accuracy, dataset, path)
    return dataset, model


def sweep_mode(common, cfg, flag_values, strategy=None, outputs=None) -> str:
    """The eps sweep: robustness.json/.csv, accuracy_vs_eps.png, examples.png; a summary."""
    dataset, model = _data_model(common, cfg, flag_values, strategy)
    cells = len(cfg.methods) * len(cfg.eps_values)
    done = []

    def progress(row):
        done.append(row)
        log.info(
            "[%2d/%d] %-19s eps=%-5g accuracy %5.1f%%  changed %5.1f%%  (%.1f s)",
            len(done),
            cells,
            row.method,
            row.eps,
            100 * row.accuracy,
            100 * row.changed,
            row.seconds,
        )

    _tf.check_memory(
        _tf.batch_memory(model, cfg.batch_size),
        f"--fgsm_batch_size={cfg.batch_size}",
        "lower --fgsm_batch_size",
    )
    _start_outputs(outputs, common, flag_values, dataset)
    found = experiments.attack_sweep(
        model,
        dataset,
        cfg,
        strategy=strategy,
        callback=progress,
        model_path=model_flags.model_path(flag_values, dataset.name),
    )
    with interrupts.protected():
        return report.write_sweep_outputs(common.output_dir, found)


def project_mode(common, cfg, flag_values, strategy=None, outputs=None) -> str:
    """Gradient projection on an ImageNet model (``cfg``: a ``ProjectionExperiment``):
    projection.png/.json/.npz; a summary."""
    image, targets = cfg.image_path(), cfg.target_indices()
    model = cfg.model.load(strategy)
    _start_outputs(outputs, common, flag_values)
    result = projection.project(
        model,
        image,
        targets,
        cfg.projection,
        strategy=strategy,
        verbose=int(common.verbosity > 0),
    )
    image_name = image or projection.GREY
    with interrupts.protected():
        return report.write_projection_outputs(common.output_dir, result, model, image_name)


def survey_mode(common, cfg, flag_values, strategy=None, outputs=None) -> str:
    """The noise survey (``cfg``: a ``SurveyExperiment``): survey.json, survey.csv and
    survey_<model>.png per model; a summary."""
    surveyed = [spec.load(strategy) for spec in cfg.model_specs()]
    batch_size = cfg.survey.batch_size
    need = max(_tf.batch_memory(m.model, batch_size, False) for m in surveyed)
    _tf.check_memory(
        need + 4 * batch_size * 3 * max(max(m.input_size) for m in surveyed) ** 2,
        f"--fgsm_survey_batch_size={batch_size}",
        "lower --fgsm_survey_batch_size",
    )
    _start_outputs(outputs, common, flag_values)
    result = survey.noise_survey(
        surveyed, cfg.survey, strategy=strategy, verbose=int(common.verbosity > 0)
    )
    with interrupts.protected():
        return report.write_survey_outputs(common.output_dir, result, surveyed)


def attribute_mode(common, cfg, flag_values, strategy=None, outputs=None) -> str:
    """Every attribution method on test images and their FGSM images: attribution.png/.json."""
    dataset, model = _data_model(common, cfg, flag_values, strategy)
    _start_outputs(outputs, common, flag_values, dataset)
    found = experiments.attribute_test_and_fgsm(
        model,
        dataset,
        cfg,
        strategy=strategy,
        model_path=model_flags.model_path(flag_values, dataset.name),
    )
    with interrupts.protected():
        return report.write_attribution_outputs(common.output_dir, found)


def photos_mode(common, cfg, flag_values, strategy=None, outputs=None) -> str:
    """FGSM and attributions on ImageNet photos (``cfg``: a ``PhotoExperiment``):
    photo_fgsm.png, photo_attribution.png, photos.json/.npz; a summary."""
    paths = cfg.photo_paths()
    model = cfg.model.load(strategy)
    names = [os.path.basename(path) for path in paths]
    photos = {
        name if names.count(name) == 1 else path: imagenet.load_image(path, model.input_size)
        for name, path in zip(names, paths)
    }
    _start_outputs(outputs, common, flag_values)
    found = experiments.photo_attacks(model, photos, cfg.photo, strategy=strategy)
    with interrupts.protected():
        return report.write_photo_outputs(common.output_dir, found)


def _check_images(mode: str, cfg) -> None:
    """Unknown classes and missing or unreadable images of the ImageNet modes fail here,
    before any folder is made or model loaded."""
    if mode == "project":
        cfg.target_indices()
        paths = [cfg.image_path()] if cfg.image is not None else []
    else:
        paths = cfg.photo_paths() if mode == "photos" else []
    for path in paths:
        imagenet.load_image(path, 8)


#: The config of each mode, from the parsed flags: the library's config the mode takes.
CONFIGS = {
    "sweep": fgsm_flags.fgsm_config,
    "project": imagenet_flags.projection_experiment,
    "survey": imagenet_flags.survey_experiment,
    "attribute": fgsm_flags.fgsm_config,
    "photos": imagenet_flags.photo_experiment,
}

#: run_fgsm.py's modes: ``--fgsm_mode`` -> function(common, config, flag_values, strategy,
#: outputs) that loads its models, starts the outputs (``_start_outputs``), writes them and
#: returns a console summary; ``config`` is the mode's (``CONFIGS``).
MODES = {
    "sweep": sweep_mode,
    "project": project_mode,
    "survey": survey_mode,
    "attribute": attribute_mode,
    "photos": photos_mode,
}


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines every flag of run_fgsm.py on ``flag_values``."""
    common_flags.define_script_flags(
        flag_values, "out/fgsm", fgsm_flags.define_fgsm_flags, imagenet_flags.define_imagenet_flags
    )
    for module in (common_flags, model_flags, distribution_flags, fgsm_flags, imagenet_flags):
        flags.adopt_module_key_flags(module, flag_values)  # --help lists every group


def _output_names(mode: str, cfg) -> tuple[str, ...]:
    """The names of the files ``mode`` writes into --output_dir (``cfg``: its config)."""
    names = (*OUTPUT_NAMES[mode], FLAGS_FILE)
    if mode == "survey":
        names += tuple(f"survey_{spec.model}.png" for spec in cfg.model_specs())
    return names


def main(argv: list[str], flag_values: flags.FlagValues = FLAGS) -> int:
    """Runs the mode chosen by ``--fgsm_mode`` with the parsed ``flag_values``, in the
    output folder it takes for itself."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    start = time.perf_counter()
    common = common_flags.common_config(flag_values)
    common_flags.setup_logging(common.verbosity)
    mode = flag_values.fgsm_mode
    cfg = CONFIGS[mode](flag_values)
    dist = distribution_flags.distribution_config(flag_values)
    common_flags.check_folders(flag_values, _output_names(mode, cfg))  # before any work
    _check_images(mode, cfg)  # before the output folder is taken
    with common_flags.claim_output_dir(flag_values, "run_fgsm.py", FLAGS_FILE) as outputs:
        strategy = distribute.get_strategy(dist.name, dist.num_gpus, dist.tpu_address)  # first
        summary = MODES[mode](common, cfg, flag_values, strategy=strategy, outputs=outputs)
        if common.verbosity:
            print(summary)
        log.info(
            "%s finished in %.0f s; outputs in %s",
            mode,
            time.perf_counter() - start,
            common.output_dir,
        )
        return outputs.done(0)


#: The flags that set the library arguments its errors name (regular expressions, matched
#: as words: ``common_flags.run_with_clear_errors``).
FLAG_HINTS = {
    "weights=": "--fgsm_imagenet_weights",
    "source=": "--data_source",
    "data_dir": "--data_dir",
    "input_size": "--fgsm_imagenet_image_size",
    "image_size": "--data_image_size",
    "class (name|index|label)": "--fgsm_project_targets",
}

#: What differs in a mode: the survey's models and noise have their own flags.
MODE_FLAG_HINTS = {
    "survey": {"weights=": "--fgsm_survey_weights", "image_size": "--fgsm_survey_image_size"},
}


def _main_with_clear_errors(argv: list[str], flag_values: flags.FlagValues = FLAGS) -> int:
    """``main``, with bad input (files, class names, weights, disks) in one line, exit code 2."""
    hints = {**FLAG_HINTS, **MODE_FLAG_HINTS.get(flag_values.fgsm_mode, {})}
    return common_flags.run_with_clear_errors(lambda: main(argv, flag_values), hints)


def run() -> None:
    """Console entry point: defines the flags and runs ``main``."""
    define_flags(FLAGS)
    app.run(_main_with_clear_errors)


if __name__ == "__main__":
    run()
