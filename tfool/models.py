"""Classifiers: the reference MNIST CNN, its exposed activations, training, saving and loading."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfool import _tf, classifier, distribute, io
from tfool._train_loop import EpochRun, check_logits, train_step
from tfool.config import setting
from tfool.data import Dataset

logger = logging.getLogger(__name__)

#: The exposed activations of the reference CNN, in order; the last is the probabilities.
MNIST_LAYERS = ("inputs", "conv0", "conv1", "fc", "softmax")
#: Learning-rate schedules of ``TrainConfig``.
SCHEDULES = ("cosine", "constant")
#: ``TrainConfig(epochs=None)`` trains for at least this many steps...
AUTO_STEPS = 480
#: ...and within these bounds on the epoch count.
AUTO_EPOCHS = (4, 6)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train a classifier; the defaults are tfool's recipe for the reference CNN.

    The recipe: Adam at ``learning_rate`` decayed to 0 along a cosine over the whole run,
    batch 50, for a number of epochs chosen from the data size (``epochs=None``): enough
    for ``AUTO_STEPS`` steps, at least ``AUTO_EPOCHS[0]`` and at most ``AUTO_EPOCHS[1]``
    epochs (4 on full MNIST, 6 on the 4,000-image sample).

    Attributes:
        epochs: Training epochs (passes over the training set) when the model has to be
            trained; an integer >= 1. ``None``: chosen from the data size (4 on full MNIST,
            6 on the embedded sample).
        batch_size: Global training batch size (images per step, over all replicas); >= 1.
        learning_rate: Adam's initial learning rate for training, > 0.
        seed: Seed of the weight initialisation and the shuffling.
        verbose: Keras progress output (0 silent, 1 progress bar, 2 one line per epoch).
        schedule: Learning-rate schedule of training: cosine (decay to 0 over the run) or
            constant.
    """

    epochs: int | None = None
    batch_size: int = setting(50, flag="batch_size")
    learning_rate: float = setting(1e-3, flag="learning_rate")
    seed: int = 0
    verbose: int = 2
    schedule: str = setting("cosine", choices=SCHEDULES, flag="lr_schedule")

    def __post_init__(self):
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs={self.epochs} must be >= 1 or None")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r} is not one of {SCHEDULES}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1")
        if not (self.learning_rate > 0 and np.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate={self.learning_rate} must be a positive number")

    def steps_per_epoch(self, num_train: int) -> int:
        """Steps of one pass over ``num_train`` images."""
        return -(-int(num_train) // self.batch_size)

    def epochs_for(self, num_train: int) -> int:
        """The epochs a run on ``num_train`` images takes."""
        if self.epochs is not None:
            return self.epochs
        want = -(-AUTO_STEPS // self.steps_per_epoch(num_train))
        return int(min(max(want, AUTO_EPOCHS[0]), AUTO_EPOCHS[1]))

    def describe(self, num_train: int) -> str:
        """One line: epochs, batch, learning rate and schedule for ``num_train`` images."""
        return (
            f"{self.epochs_for(num_train)} epochs of batch {self.batch_size}, Adam lr "
            f"{self.learning_rate:g} ({self.schedule})"
        )


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What training produced.

    Attributes:
        test_accuracy: Accuracy on the test split.
        train_seconds: Wall time of ``fit``.
        epochs: Epochs run.
        history: Per-epoch metrics from Keras.
    """

    test_accuracy: float
    train_seconds: float
    epochs: int
    history: dict


def build_mnist_cnn(
    conv_filters: Sequence[int] = (32, 64),
    kernel_size: int = 5,
    fc_units: int = 1024,
    num_classes: int = 10,
    input_shape: Sequence[int] = (28, 28, 1),
    seed: int | None = None,
) -> keras.Model:
    """Builds the reference CNN of the MNIST backworking post; it returns logits.

    Layers ``conv<i>`` (5x5 SAME conv + bias + ReLU + 2x2 max-pool), ``fc`` (dense, before
    its ReLU) and ``logits``. Weights are truncated-normal (stddev 0.1), biases 0.1.

    Args:
        conv_filters: Filters of each conv block (the post: 32, 64).
        kernel_size: Square kernel size.
        fc_units: Units of the fully connected layer.
        num_classes: Number of output logits.
        input_shape: Shape of one image.
        seed: Seed of the weight initialisers (``None``: Keras' global seed).

    Returns:
        An uncompiled functional ``keras.Model`` named ``mnist_cnn``.
    """
    if not conv_filters or any(int(f) < 1 for f in conv_filters):
        raise ValueError(f"conv_filters={tuple(conv_filters)} must be non-empty positive ints")
    if kernel_size < 1 or fc_units < 1 or num_classes < 2:
        raise ValueError(
            f"kernel_size={kernel_size}, fc_units={fc_units}, num_classes={num_classes}: "
            "expected kernel_size >= 1, fc_units >= 1, num_classes >= 2"
        )
    counter = iter(range(1000))

    def init():
        s = None if seed is None else seed * 1000 + next(counter)
        return keras.initializers.TruncatedNormal(stddev=0.1, seed=s)

    bias = keras.initializers.Constant(0.1)
    inputs = keras.Input(shape=tuple(input_shape), name="inputs")
    x = inputs
    for i, filters in enumerate(conv_filters):
        x = keras.layers.Conv2D(
            int(filters),
            kernel_size,
            padding="same",
            activation="relu",
            kernel_initializer=init(),
            bias_initializer=bias,
            name=f"conv{i}_conv",
        )(x)
        x = keras.layers.MaxPooling2D(2, strides=2, padding="same", name=f"conv{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(fc_units, kernel_initializer=init(), bias_initializer=bias, name="fc")(x)
    x = keras.layers.ReLU(name="fc_relu")(x)
    logits = keras.layers.Dense(
        num_classes, kernel_initializer=init(), bias_initializer=bias, name="logits"
    )(x)
    return keras.Model(inputs, logits, name="mnist_cnn")


def compile_classifier(
    model: keras.Model,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 1e-3,
    soft_targets: bool = False,
) -> keras.Model:
    """Compiles a logits classifier with Adam and cross-entropy from logits.

    Args:
        model: The classifier (logits).
        learning_rate: Adam learning rate, or a Keras learning-rate schedule.
        soft_targets: Train on ``[N, C]`` target distributions (categorical cross-entropy)
            instead of ``[N]`` class indices (sparse cross-entropy).
    """
    loss = (
        keras.losses.CategoricalCrossentropy(from_logits=True)
        if soft_targets
        else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=["accuracy"])
    return model


def evaluate(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int = 500,
    strategy: tf.distribute.Strategy | None = None,
) -> float:
    """The accuracy of a logits (or probabilities) classifier on ``x, y``."""
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} images but y has {len(y)} labels")
    if len(x) == 0:
        raise ValueError("x is empty; expected at least one image")
    preds = predict_classes(model, x, batch_size, strategy)
    return float(np.mean(preds == np.asarray(y)))


def predict_logits(
    model: keras.Model,
    x: np.ndarray,
    batch_size: int = 500,
    strategy: tf.distribute.Strategy | None = None,
) -> np.ndarray:
    """The model's outputs on every image, by a compiled forward pass (cached per model).

    Args:
        model: A Keras classifier.
        x: Images ``[N, ...]``.
        batch_size: Images per step (the global batch under a strategy).
        strategy: Optional ``tf.distribute`` strategy; each batch is split across its
            replicas.

    Returns:
        float32 ``[N, num_outputs]``.
    """
    call = _tf.weak_call(model)
    forward = _tf.cached(
        model,
        ("forward",),
        lambda: tf.function(lambda t: call(t, training=False), reduce_retracing=True),
    )
    x = np.asarray(x, np.float32)
    return _tf.map_batches(forward, [x], batch_size, strategy)


def predict_probabilities(
    model: keras.Model,
    x: np.ndarray,
    from_logits: bool | None = None,
    batch_size: int = 500,
    strategy: tf.distribute.Strategy | None = None,
) -> np.ndarray:
    """The model's own class probabilities on every image: a final softmax is read before,
    never applied twice (``tfool.classifier.logits_model``).

    Returns:
        float32 ``[N, num_classes]``.
    """
    scores, is_logits = classifier.logits_model(model, from_logits)
    out = predict_logits(scores, x, batch_size, strategy)
    if not is_logits:
        return out
    return tf.nn.softmax(out, axis=-1).numpy()


def predict_classes(
    model: keras.Model,
    x: np.ndarray,
    batch_size: int = 500,
    strategy: tf.distribute.Strategy | None = None,
) -> np.ndarray:
    """The argmax class of every image."""
    return np.argmax(predict_logits(model, x, batch_size, strategy), axis=-1)


def train(
    model: keras.Model,
    data: Dataset,
    config: TrainConfig = TrainConfig(),
    strategy: tf.distribute.Strategy | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    adversary=None,
) -> TrainResult:
    """Trains a logits classifier with Adam and cross-entropy, then measures test accuracy.

    A compiled step under a Python loop over epochs and batches, Adam's learning rate
    following ``config.schedule`` over the whole run. Each epoch visits the
    training set in its own seeded order (a ``tf.data`` shuffle with ``seed``), in global
    batches of ``batch_size`` (the last one may be short). Under a ``strategy`` every
    global batch is cut into contiguous slices, one per replica (``tfool.distribute``), so
    a run on any number of replicas or workers takes the same steps as a single-device
    run, to float tolerance. Keras' ``fit`` is not used: its order depends on how many
    iterators it makes, and in Keras 3 it fails under a multi-worker strategy.

    Under a ``strategy`` the model must have been built inside ``strategy.scope()``; the
    optimiser is created there too. Keras callbacks get the usual calls (train, epoch and
    batch begin/end, with ``loss`` and ``accuracy`` logs) and may set
    ``model.stop_training``.

    Args:
        model: The classifier (logits).
        data: Training and test data: a ``Dataset``, or an object with the same
            ``x_train, y_train, x_test, y_test`` whose ``y_train`` holds ``[N, C]`` target
            distributions (``tfool.retrain.AugmentedData``): then the loss is categorical
            cross-entropy on those soft targets.
        config: Epochs, global batch size, learning rate, seed, verbosity.
        strategy: Optional ``tf.distribute`` strategy.
        callbacks: Extra Keras callbacks.
        adversary: A ``tfool.adversarial.AdversarialTraining``: every batch is replaced by
            the images its attack finds against the current weights (seeded by
            ``config.seed`` and the step), the reported loss and accuracy are on those.
            Under several replicas each slice draws its own random start, so the run
            matches a single-device one in distribution, not step by step. ``None``: the
            clean batches.

    Returns:
        A ``TrainResult``; ``history`` holds the per-epoch mean ``loss`` and ``accuracy``.

    Raises:
        ValueError: the model ends in a softmax (train ``classifier.logits_copy(model)``).
    """
    check_logits(model)
    n = len(data.x_train)
    steps = config.steps_per_epoch(n)
    epochs = config.epochs_for(n)
    soft = _compile_for_training(model, data, config, strategy, epochs * steps)
    step = train_step(model, soft, adversary)
    if adversary is not None:
        logger.info("adversarial training: %s", adversary.describe())
    hooks = keras.callbacks.CallbackList(
        list(callbacks),
        add_history=False,
        add_progbar=config.verbose != 0,
        verbose=config.verbose,
        epochs=epochs,
        steps=steps,
        model=model,
    )
    # The epoch orders: a seeded tf.data shuffle of the row indices, a new order on every
    # pass. The passes are made here, the same whatever the strategy, so every run with a
    # seed sees the same batches. Two passes per epoch, the first used: the orders (and so
    # the models) of the earlier model.fit version, which drew two per epoch.
    orders = (
        tf.data.Dataset.range(n)
        .shuffle(n, seed=config.seed, reshuffle_each_iteration=True)
        .batch(n)  # one element: the whole order
    )
    history = {"loss": [], "accuracy": []}
    model.stop_training = False
    start = time.perf_counter()
    hooks.on_train_begin()
    run = EpochRun(model, data, config.batch_size, config.seed, strategy, step, hooks, adversary)
    logs = {}
    for epoch in range(epochs):
        hooks.on_epoch_begin(epoch)
        order = next(iter(orders)).numpy()
        next(iter(orders))  # the unused second pass
        logs = run.epoch(epoch, order, steps)
        for key in history:
            history[key].append(logs[key])
        hooks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    hooks.on_train_end(logs)
    seconds = time.perf_counter() - start
    acc = evaluate(model, data.x_test, data.y_test, strategy=strategy)
    logger.info("trained %s: %.2f%% test accuracy in %.1f s", model.name, 100 * acc, seconds)
    return TrainResult(acc, seconds, len(history["loss"]), history)


def _compile_for_training(model, data, config: TrainConfig, strategy, total_steps: int) -> bool:
    """Compiles ``model`` with Adam at ``config``'s learning rate (a cosine over
    ``total_steps`` steps when so scheduled) and builds the optimiser under ``strategy``;
    returns whether the targets are soft (``[N, C]`` distributions)."""
    lr = config.learning_rate
    if config.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=total_steps, alpha=0.0)
    with (strategy or tf.distribute.get_strategy()).scope():
        soft = np.ndim(data.y_train) == 2
        compile_classifier(model, lr, soft_targets=soft)
        model.optimizer.build(model.trainable_variables)
    return soft


def save_model(model: keras.Model, path: str | os.PathLike) -> Path:
    """Saves a model in the native ``.keras`` format, atomically.

    Raises:
        ValueError: ``path`` does not end in ``.keras``.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"model path {str(path)!r} must end in .keras (the native Keras format)")
    return io.write_with(path, lambda tmp: model.save(tmp))


MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


def load_model(path: str | os.PathLike, compile: bool = False) -> keras.Model:
    """Loads a Keras model: the native ``.keras`` format, or the legacy HDF5 format
    (``.h5``, ``.hdf5``) that Keras 2 wrote.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is corrupt, not a Keras model, a TensorFlow SavedModel folder
            (the message says how to convert it), or a folder (the message names it).
    """
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            raise ValueError(
                f"model path {path} is a TensorFlow SavedModel, which Keras 3 cannot load "
                "as a model with layers: load it where it was made and save it with "
                "model.save('model.keras') (or keras.saving.save_model), then pass that file"
            )
        raise ValueError(f"model path {path} is a folder, expected a .keras file")
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    if path.suffix not in MODEL_SUFFIXES:
        raise ValueError(
            f"model path {str(path)!r} must end in .keras (the native Keras format) or "
            ".h5 (the legacy HDF5 format)"
        )
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a .keras model file (not a zip archive): corrupt?")
    if path.suffix != ".keras" and path.read_bytes()[:8] != b"\x89HDF\r\n\x1a\n":
        raise ValueError(f"{path} is not an HDF5 model file (no HDF5 signature): corrupt?")
    try:
        return keras.saving.load_model(path, compile=compile)
    except Exception as err:  # keras raises many types for damaged archives
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path} could not be loaded as a Keras model: {first[:200]}") from err


def check_compatible(model: keras.Model, image_shape: Sequence[int], num_classes: int, path=None):
    """Raises ``ValueError`` unless ``model`` is a classifier tfool can read that takes
    ``image_shape`` (unknown input dimensions fit any size) and outputs ``num_classes``."""
    where = f"model at {path}" if path else f"model {model.name!r}"
    try:
        classifier.check_graph(model, where)
        classifier.image_shape(model, image_shape)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err
    got_out = model.outputs[0].shape[-1]
    if got_out != num_classes:
        raise ValueError(f"{where} has {got_out} outputs, expected {num_classes} classes")


def record_path(path: str | os.PathLike) -> Path:
    """Where the record of the data a cached model was trained on is kept: beside the
    model, ``<path>.json``."""
    return Path(str(path) + ".json")


def data_record(data: Dataset, result: TrainResult | None = None) -> dict:
    """What identifies the data a model was trained on: dataset name, source, image shape,
    class names, split sizes (and the test accuracy when ``result`` is given)."""
    record = {
        "dataset": data.name,
        "source": data.source,
        "image_shape": list(data.image_shape),
        "class_names": list(data.class_names),
        "num_train": len(data.x_train),
        "num_test": len(data.x_test),
        "fingerprint": data_fingerprint(data),
    }
    if result is not None:
        record["test_accuracy"] = float(result.test_accuracy)
    return record


def data_fingerprint(data: Dataset) -> str:
    """A SHA-256 of the training labels and of up to 1,000 evenly spaced training images:
    the same data under another name (a renamed ``.npz``) has the same fingerprint."""
    import hashlib

    digest = hashlib.sha256(np.ascontiguousarray(data.y_train, np.int64).tobytes())
    step = max(1, len(data.x_train) // 1000)
    digest.update(np.ascontiguousarray(data.x_train[::step], np.float32).tobytes())
    return digest.hexdigest()


def check_record(path: str | os.PathLike, data: Dataset) -> dict | None:
    """Refuses a cached model trained on other data than ``data``.

    The record beside the model (``record_path``) must name the same dataset (or hold the
    same ``data_fingerprint``: the same data under another name), image shape and class
    names; another source or size of the same dataset (the embedded sample against full
    MNIST) is allowed and logged. A model without a record (one of your own)
    is accepted: its accuracy on the data is what the caller reports.

    Returns:
        The record, or ``None`` when there is none.

    Raises:
        ValueError: the record names other data (the message says what differs and what
            to do), or the record is damaged.
    """
    where = record_path(path)
    if not where.is_file():
        logger.warning(
            "model at %s comes without a record of its data (%s): used as given on %s",
            path,
            where.name,
            data.name,
        )
        return None
    record = io.read_json(where)
    if not isinstance(record, dict):
        raise ValueError(f"{where} is not a model record (a JSON object expected)")
    want = data_record(data)
    keys = ["image_shape", "class_names"]
    if record.get("fingerprint") != want["fingerprint"]:
        keys.insert(0, "dataset")
    differ = [
        f"{key} {record.get(key)!r} (the data: {want[key]!r})"
        for key in keys
        if record.get(key) != want[key]
    ]
    if differ:
        raise ValueError(
            f"the cached model at {path} was trained on other data: {'; '.join(differ)}. "
            "It is not used: pass another model path (--model_path) to train the reference "
            "CNN on this data, or remove the file to retrain it there"
        )
    if (record.get("source"), record.get("num_train")) != (want["source"], want["num_train"]):
        logger.info(
            "the cached model at %s was trained on %s %s (%s training images); the data now "
            "is %s (%s)",
            path,
            record.get("dataset"),
            record.get("source"),
            record.get("num_train"),
            want["source"],
            want["num_train"],
        )
    return record


def warn_if_chance(accuracy: float, data: Dataset, path=None) -> bool:
    """Logs a warning when a model's test accuracy is within twice chance (1 / classes):
    it was very likely trained on other data. Returns whether it warned."""
    chance = 1.0 / max(data.num_classes, 1)
    if accuracy >= 2 * chance:
        return False
    logger.warning(
        "the model%s classifies the test images of %s at %.2f%%, near chance (%.2f%%): was it "
        "trained on this data?",
        f" at {path}" if path else "",
        data.name,
        100 * accuracy,
        100 * chance,
    )
    return True


def get_or_train(
    path: str | os.PathLike | None,
    data: Dataset,
    config: TrainConfig = TrainConfig(),
    strategy: tf.distribute.Strategy | None = None,
    build_kwargs: dict | None = None,
) -> tuple[keras.Model, TrainResult | None]:
    """Loads the model cached at ``path``, or trains the reference CNN on ``data`` (its
    image shape and classes) and saves it there, with the record of the data beside it.

    A file at ``path`` that is corrupt, does not fit the data, or whose record names other
    data (``check_record``) is an error: it is never silently used or overwritten.

    Returns:
        ``(model, train_result)``; ``train_result`` is ``None`` when the model was loaded.
    """
    strategy = strategy or tf.distribute.get_strategy()
    if path is not None and Path(path).exists():
        check_record(path, data)  # before loading: a wrong model costs nothing
        with strategy.scope():
            model = load_model(path)
        check_compatible(model, data.image_shape, data.num_classes, path)
        logger.info("loaded the cached model %s", path)
        return model, None
    if path is not None and Path(path).suffix != ".keras":
        raise ValueError(f"model_path={str(path)!r} must end in .keras")
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = build_mnist_cnn(
            num_classes=data.num_classes,
            input_shape=data.image_shape,
            seed=config.seed,
            **(build_kwargs or {}),
        )
    result = train(model, data, config, strategy)
    if path is not None and distribute.is_chief(strategy):  # one writer per cluster
        save_model(model, path)
        io.write_json(record_path(path), data_record(data, result))
        logger.info("saved the model to %s (trained on %s)", path, data.name)
    return model, result
