"""tfool's main job: backwork confident, unlike-the-data images for every MNIST digit."""

from __future__ import annotations

import logging
import sys

from absl import app, flags

from flags import backwork as backwork_flags
from flags import common as common_flags
from flags import model as model_flags

FLAGS = flags.FLAGS
log = logging.getLogger("tfool")


def main(argv: list[str]) -> int:
    """Loads data and the CNN, backworks, writes every output and prints a summary."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    common = common_flags.common_config(FLAGS)
    config = backwork_flags.backwork_config(FLAGS)
    logging.basicConfig(
        level=logging.INFO if common.verbosity else logging.WARNING,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    from tfool import callbacks, data, models, report  # deferred: TensorFlow loads slowly

    common_flags.write_flags_file(FLAGS, common.output_dir)
    dataset = data.load_dataset(common.dataset, common.data_source, common.data_dir)
    log.info(
        "data: %s (%s), %d train / %d test",
        dataset.name,
        dataset.source,
        len(dataset.x_train),
        len(dataset.x_test),
    )
    model, trained = models.get_or_train(FLAGS.model_path, dataset, model_flags.train_config(FLAGS))
    accuracy = (
        trained.test_accuracy if trained else models.evaluate(model, dataset.x_test, dataset.y_test)
    )
    log.info("model: %s, test accuracy %.2f%%", FLAGS.model_path, 100 * accuracy)
    cbs = [callbacks.ProgressLogger(every=25 if common.verbosity else 10**9)]
    if FLAGS.tensorboard_dir:
        cbs.append(
            callbacks.TensorBoardLogger(FLAGS.tensorboard_dir, layer_names=config.layer_names)
        )
    from tfool.backwork import backwork

    result = backwork(model, dataset, config, callbacks=cbs)
    summary = report.write_backwork_outputs(
        common.output_dir,
        result,
        model,
        dataset,
        config,
        extra={"model_accuracy": accuracy, "model_path": FLAGS.model_path},
    )
    print(report.format_backwork_table(summary))
    print(f"outputs in {common.output_dir}/")
    return 130 if result.interrupted else 0


def run() -> None:
    """Console entry point (``tfool-backwork``): defines the flags and runs ``main``."""
    common_flags.define_common_flags(output_dir="out/backwork")
    model_flags.define_model_flags()
    backwork_flags.define_backwork_flags()
    app.run(main)


if __name__ == "__main__":
    sys.exit(run())
