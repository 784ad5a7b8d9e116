"""tfool's main job: backwork confident, unlike-the-data images for every class of a
classifier (the reference CNN on MNIST by default, or any data and Keras model)."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import sys

from absl import app, flags

from flags import backwork as backwork_flags
from flags import common as common_flags
from flags import distribution as distribution_flags
from flags import model as model_flags
from flags import retrain as retrain_flags

FLAGS = flags.FLAGS
log = logging.getLogger("tfool")


def _classifier(common, strategy, start):
    """The model to fool, its data (None for ImageNet), accuracy, class names, name lookup;
    the labels (and ``start``, the result to go on from) are checked before any training."""
    from tfool import data, imagenet, models

    if FLAGS.backwork_model != "mnist_cnn":
        spec = backwork_flags.model_spec(FLAGS)
        with strategy.scope():
            im = spec.load()
        log.info("model: %s (%s weights), input %s", im.name, im.weights, im.image_shape)
        return imagenet.unit_pixel_model(im), None, None, im.class_names, im.class_index
    ds = data.load_dataset(
        common.dataset, common.data_source, common.data_dir, image_size=common.image_size
    )
    log.info(
        "data: %s (%s), %d train / %d test, images %s, %d classes",
        ds.name,
        ds.source,
        len(ds.x_train),
        len(ds.x_test),
        "x".join(str(d) for d in ds.image_shape),
        ds.num_classes,
    )
    lookup = functools.partial(_named, ds.class_names)
    labels = _labels(ds.class_names, lookup)  # checked before any training
    if start is not None:  # and the saved result's labels and examples
        flags_config = backwork_flags.backwork_config(FLAGS, resolve_label=lookup)
        _initial_images(start, labels, flags_config.num_examples)
    path = model_flags.model_path(FLAGS, ds.name)
    model, trained = models.get_or_train(path, ds, model_flags.train_config(FLAGS), strategy)
    accuracy = trained.test_accuracy if trained else models.evaluate(model, ds.x_test, ds.y_test)
    log.info("model: %s, test accuracy %.2f%% on %s", path, 100 * accuracy, ds.name)
    models.warn_if_chance(accuracy, ds, path)
    return model, ds, accuracy, ds.class_names, lookup


def _initial_result(path: str | None):
    """The result ``--backwork_init_from`` names, loaded (``None`` without the flag); its
    labels are checked once the classes are known, before any training."""
    if not path:
        return None
    from tfool import backwork

    try:
        return backwork.load_result(path)
    except FileNotFoundError as err:
        raise ValueError(f"--backwork_init_from={path}: no such file") from err
    except ValueError as err:
        raise ValueError(f"--backwork_init_from: {err}") from err


def _labels(class_names, lookup) -> tuple[int, ...]:
    """``--backwork_labels`` as class indices of the model's classes. An entry that is the
    name of one class is that class, even when it looks like a number (image folders
    named ``3``, ``5``, ``7``); any other entry is an index or goes to ``lookup`` (names
    of several classes, synonyms). The default, the first ten classes,
    stands for every class of a model with fewer (a replayed ``flags.cfg`` holds the
    default too, and means the same).

    Raises:
        ValueError: a name that is not a class, or an index outside the classes.
    """
    num_classes = len(class_names)
    default = FLAGS["backwork_labels"].default
    if FLAGS.backwork_labels == default and num_classes < len(default):
        return tuple(range(num_classes))
    names = list(class_names)
    labels = tuple(
        names.index(v.strip())
        if names.count(v.strip()) == 1
        else backwork_flags.resolve_labels([v], lookup)[0]
        for v in FLAGS.backwork_labels
    )
    bad = [label for label in labels if not 0 <= label < num_classes]
    if bad:
        raise ValueError(
            f"--backwork_labels: {bad} {'is' if len(bad) == 1 else 'are'} not among the "
            f"model's {num_classes} classes; expected indices 0..{num_classes - 1} or names "
            f"from {list(class_names)[:12]}{' ...' if num_classes > 12 else ''}"
        )
    return labels


def _initial_images(start, labels, num_examples: int):
    """The saved result's final images, checked against the run's labels and examples."""
    if start is None:
        return None
    saved = [int(v) for v in start.labels]
    if saved != list(labels):
        raise ValueError(
            f"--backwork_init_from={FLAGS.backwork_init_from} holds labels {saved}, but "
            f"--backwork_labels asks for {list(labels)}"
        )
    if start.images.shape[1] != num_examples:
        raise ValueError(
            f"--backwork_init_from={FLAGS.backwork_init_from} holds {start.images.shape[1]} "
            f"images per label, but --backwork_num_examples={num_examples}"
        )
    return start.images


def _config(model, class_names, lookup):
    """The run's ``BackworkConfig``: the flags', with the labels as the model's classes."""
    from tfool import classifier

    config = backwork_flags.backwork_config(
        FLAGS,
        num_layers=len(classifier.default_layer_names(model)),
        resolve_label=lookup,
    )
    return dataclasses.replace(config, labels=_labels(class_names, lookup))


def _check_memory(setup) -> None:
    """Refuses a run whose estimated memory exceeds what the machine has available
    (``setup``: the run's ``tfool.backwork.prepare``)."""
    from tfool import _tf, backwork

    need = backwork.estimate_memory(setup.model, setup.data, setup.config, prepared=setup)
    log.info("memory estimate: %s", need.describe())
    _tf.check_memory(
        need.total,
        "this run",
        "lower --backwork_num_examples, --backwork_reference_size, --backwork_max_history "
        "(or raise --backwork_history_every), or store references in "
        "--backwork_reference_dtype=float16",
        detail=f" ({need.parts()})",
    )


def _check_resume_state(output_dir: str, model=None, dataset=None, config=None) -> None:
    """Refuses, before any work, a retraining folder this run would reset or mix with
    (``tfool.retrain.check_folder``): a damaged ``state.json``, finished rounds without
    ``--retrain_resume``, or finished rounds made with other settings, weights or data.

    With ``output_dir`` alone (before anything is loaded) it checks what the flags decide:
    the modes, the retraining, training and backworking settings (the labels as the saved
    classes name them), and that the model to compare is there (not one to train). With
    the model, its data and the backworking config (before the first backwork run writes
    anything) it checks everything, the fingerprints of the weights and data among them.
    """
    if not FLAGS.retrain_rounds:
        return
    import functools

    from tfool import retrain

    train_config = model_flags.train_config(FLAGS)
    entries = [v.strip() for v in FLAGS.backwork_labels]
    # class names stand in as distinct indices until the saved classes resolve them
    flags_only = backwork_flags.backwork_config(
        FLAGS, resolve_label=lambda name: 10**9 + entries.index(name)
    )
    for retrain_config in retrain_flags.retrain_configs(FLAGS):
        where = os.path.join(output_dir, "retrain", retrain_config.mode)
        try:
            if config is not None:
                retrain.check_folder(where, model, dataset, config, retrain_config, train_config)
                continue
            state = retrain.read_state(where)
            saved = state["settings"] if state is not None else {}
            names = saved.get("data", {}).get("class_names")
            flag_config, unchecked = flags_only, ["backwork.labels"]
            if names:
                try:
                    labels = _labels(names, functools.partial(_named, names))
                    flag_config = dataclasses.replace(flag_config, labels=labels)
                    unchecked = []
                except ValueError:
                    pass  # other classes: the check with the data says so
            if FLAGS.backwork_rubbish and not FLAGS.backwork_layer_cost_coeffs:
                unchecked.append("backwork.layer_cost_coeffs")  # the model's layers decide
            retrain.check_folder(
                where, None, None, flag_config, retrain_config, train_config, unchecked=unchecked
            )
            if state is not None and state["records"]:  # resumed: the model must be there
                path = model_flags.model_path(FLAGS, saved.get("data", {}).get("name", ""))
                if not os.path.exists(path):
                    raise ValueError(
                        f"the finished rounds in {where} were made with a model of weights "
                        f"fingerprint {saved['model']['weights'][:12]}..., but "
                        f"--model_path={path} does not exist (this run would train a new "
                        "one); point --model_path at the model they were made with, or write "
                        "to another --output_dir"
                    )
        except retrain.FolderConflict as err:
            raise ValueError(err.describe("--retrain_resume", "--output_dir")) from err
        except ValueError as err:
            flag = "--retrain_resume" if FLAGS.retrain_resume else "--retrain_rounds"
            raise ValueError(f"{flag}: {err}") from err


def _named(class_names, name: str) -> int:
    if name not in class_names:
        raise ValueError(
            f"--backwork_labels: {name!r} is not a class name; expected one of "
            f"{list(class_names)} or an index"
        )
    return class_names.index(name)


#: The files run_backwork.py writes into --output_dir besides retrain/ and the manifest
#: (tfool.report.write_backwork_files and the flags file); their names are checked first.
OUTPUT_NAMES = (
    "backworked.png",
    "worst_train.png",
    "salient.png",
    "attribution.png",
    "images.npz",
    "summary.json",
    "flags.cfg",
)


def main(argv: list[str]) -> int:
    """Takes the output folder; loads data and the classifier, backworks, writes every
    output and prints a summary."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    common = common_flags.common_config(FLAGS)
    common_flags.setup_logging(common.verbosity)
    common_flags.check_folders(FLAGS, OUTPUT_NAMES)  # before any work
    with common_flags.claim_output_dir(FLAGS, "run_backwork.py") as outputs:  # one run a folder
        return outputs.done(_backwork(common, outputs))


def _backwork(common, outputs) -> int:
    """The run, in the output folder it holds: checks, backworks, writes, prints."""
    _check_resume_state(common.output_dir)
    _check_stress_folder(common.output_dir)
    # deferred: TensorFlow loads slowly
    from tfool import backwork, callbacks, distribute

    dist = distribution_flags.distribution_config(FLAGS)
    strategy = distribute.get_strategy(dist.name, dist.num_gpus, dist.tpu_address)  # first
    start = _initial_result(FLAGS.backwork_init_from)  # checked before any training
    model, dataset, accuracy, class_names, lookup = _classifier(common, strategy, start)
    config = _config(model, class_names, lookup)
    initial_images = _initial_images(start, config.labels, config.num_examples)
    cbs = [
        callbacks.ProgressLogger(every=25 if common.verbosity else 10**9, class_names=class_names)
    ]
    if FLAGS.tensorboard_dir:
        cbs.append(
            callbacks.TensorBoardLogger(FLAGS.tensorboard_dir, layer_names=config.layer_names)
        )
    # the model read once (activation model, layers, checked inputs): the memory estimate,
    # the backworker and the report share it
    setup = backwork.prepare(model, dataset, config)
    _check_memory(setup)
    _check_resume_state(common.output_dir, model, dataset, config)  # weights and data too
    # every check passed: the earlier run's files go, flags.cfg records the data used
    outputs.start(
        data_source=dataset.source if dataset is not None else None,
        keep=_model_files(dataset),
    )
    setup = _with_references(setup)
    result = backwork.backwork(
        model,
        dataset,
        config,
        strategy=strategy,
        callbacks=cbs,
        initial_images=initial_images,
        prepared=setup,
    )
    status = _write_outputs(common.output_dir, result, setup, accuracy, class_names)
    if (FLAGS.retrain_rounds or FLAGS.retrain_stress) and not result.interrupted:
        status = _retrain(model, dataset, config, result, common.output_dir, cbs[:1], strategy)
    print(f"outputs in {common.output_dir}/")
    return status


def _with_references(setup):
    """``setup`` with its reference sets, built once (none without data), and logged."""
    if setup.data is None:
        return setup
    setup = setup.with_references()
    refs = setup.references
    if refs.sizes:
        log.info(
            "reference sets: %d to %d training images per label, %.2f GB (%s)",
            min(refs.sizes),
            max(refs.sizes),
            refs.nbytes / 1e9,
            refs.dtype,
        )
    return setup


def _write_outputs(output_dir, result, setup, accuracy, class_names) -> int:
    """Analyses the result and writes every file of the run; prints the summary table.

    Returns:
        The exit status: 130 when the run was interrupted, else 0.
    """
    from tfool import analysis, interrupts, report

    dataset = setup.data
    extra = {
        "model": FLAGS.backwork_model,
        "model_accuracy": accuracy,
        "model_path": (
            model_flags.model_path(FLAGS, dataset.name)
            if dataset is not None
            else FLAGS.backwork_weights
        ),
    }
    with interrupts.protected():  # every file written, whatever signal comes meanwhile
        found = analysis.analyse_backwork(
            result, setup.model, dataset, setup.config, class_names=class_names, prepared=setup
        )
        summary = report.write_backwork_files(output_dir, result, found, setup.config, extra)
    print(report.format_backwork_table(summary))
    return 130 if result.interrupted else 0


def _model_files(dataset) -> list[str]:
    """The cached model this run uses (with its record and folder): never removed as an
    earlier run's file."""
    if dataset is None:
        return []
    from tfool import models

    path = model_flags.model_path(FLAGS, dataset.name)
    return [path, str(models.record_path(path)), os.path.dirname(path)]


def _retrain(model, dataset, config, initial, output_dir, cbs, strategy) -> int:
    """``--retrain_rounds`` rounds of backwork, augment and retrain per ``--retrain_mode``;
    writes each mode's outputs and the comparison of the modes."""
    from tfool import interrupts, report, retrain

    _check_resume_state(output_dir, model, dataset, config)  # every mode, before any writes
    results = []
    folder = os.path.join(output_dir, "retrain")
    if not FLAGS.retrain_rounds:  # --retrain_stress alone: the given model, no rounds
        return _stress([("round_0", model)], dataset, config, [], folder, strategy)
    for retrain_config in retrain_flags.retrain_configs(FLAGS):
        where = os.path.join(folder, retrain_config.mode)
        result = retrain.retrain_rounds(
            model,
            dataset,
            config,
            retrain_config,
            model_flags.train_config(FLAGS),
            initial=initial,
            output_dir=where,
            backwork_callbacks=cbs,
            strategy=strategy,
        )
        with interrupts.protected():
            summary = report.write_retrain_outputs(where, result, dataset.class_names)
        print(report.format_retrain_table(summary))
        results.append(result)
        if result.interrupted:
            break
    with interrupts.protected():
        report.write_retrain_comparison(folder, results, dataset.class_names)
    if results[-1].interrupted:
        return 130
    if FLAGS.retrain_stress:
        named = [("round_0", results[0].models[0])]
        named += [(r.mode, r.models[-1]) for r in results if r.rounds > 0]
        return _stress(named, dataset, config, results, folder, strategy)
    return 0


def _check_stress_folder(output_dir) -> None:
    """Refuses, before any work, finished stress test parts without --retrain_resume."""
    stress_dir = os.path.join(output_dir, "retrain", "stress")
    if FLAGS.retrain_stress and not FLAGS.retrain_resume and os.path.isdir(stress_dir):
        if any(name.endswith(".json") for name in os.listdir(stress_dir)):
            raise ValueError(
                f"--output_dir={output_dir!r} holds finished stress test parts in {stress_dir}; "
                "--retrain_resume continues them (with the same flags), or choose another "
                "--output_dir"
            )


def _stress(named, dataset, config, results, folder, strategy) -> int:
    """``--retrain_stress``: the stress test of the ``(name, model)`` pairs (round 0 and
    every mode's last model); writes ``stress.json`` and ``stress.png`` into ``folder``."""
    from tfool import interrupts, report, stress

    out = stress.stress_models(
        named,
        dataset,
        config,
        retrain_flags.stress_config(FLAGS),
        output_dir=os.path.join(folder, "stress"),
        resume=FLAGS.retrain_resume,
        strategy=strategy,
    )
    with interrupts.protected():
        report.write_stress_outputs(folder, out, results)
    print(report.format_stress_table(out))
    return 0 if out["complete"] else 130


#: The flags that set the library arguments its errors name (regular expressions, matched
#: as words: ``common_flags.run_with_clear_errors``).
FLAG_HINTS = {
    "weights=": "--backwork_weights",
    "model=": "--backwork_model",
    "source=": "--data_source",
    "data_dir": "--data_dir",
    r"labels(=| \[| is empty)": "--backwork_labels",
    "class (name|index|label)": "--backwork_labels",
    "layer_names": "--backwork_layer_names",
    "layer '[^']*' is not in model": "--backwork_layer_names",
    "layer_cost_coeffs": "--backwork_layer_cost_coeffs",
    "input_size": "--backwork_image_size",
    "image_size": "--data_image_size",
    "num_examples": "--backwork_num_examples",
    "initial_images": "--backwork_init_from",
    "reference_size": "--backwork_reference_size",
    "chunk_size": "--backwork_chunk_size",
}


def _main_with_clear_errors(argv: list[str]) -> int:
    """``main``, with bad input (files, names, weights, disks) in one line, exit code 2."""
    return common_flags.run_with_clear_errors(lambda: main(argv), FLAG_HINTS)


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines every flag of run_backwork.py on ``flag_values``."""
    common_flags.define_script_flags(
        flag_values,
        "out/backwork",
        backwork_flags.define_backwork_flags,
        retrain_flags.define_retrain_flags,
    )
    for module in (common_flags, model_flags, distribution_flags, backwork_flags, retrain_flags):
        flags.adopt_module_key_flags(module, flag_values)  # --help lists every group


def run() -> None:
    """Console entry point (``tfool-backwork``): defines the flags and runs ``main``."""
    define_flags(FLAGS)
    app.run(_main_with_clear_errors)


if __name__ == "__main__":
    sys.exit(run())
