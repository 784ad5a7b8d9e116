"""The driver of the retraining rounds: a round is a function from the finished rounds to
the finished rounds and the new round's record; ``retrain_rounds`` loops over it."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfool import classifier, interrupts, models
from tfool.backwork import BackworkCallback, BackworkConfig, BackworkResult
from tfool.data import Dataset
from tfool.retrain._augment import augment_with_negatives, check_dataset, flat_negatives
from tfool.retrain._config import DEFAULT_TRAIN_CONFIG, RetrainConfig
from tfool.retrain._measure import RoundRecord, measure_round
from tfool.retrain._store import (
    check_folder,
    load_rounds,
    round_settings,
    rounds_phrase,
    save_round,
    write_state,
)
from tfool.retrain._surgery import next_model, num_outputs

logger = logging.getLogger(__name__)


class RetrainCallback:
    """Hooks called by ``retrain_rounds``; override what you need."""

    def on_round_end(
        self, record: RoundRecord, model: keras.Model, backworked: BackworkResult
    ) -> None:
        """Called after every finished (and saved) round, round 0 included."""


@dataclasses.dataclass(frozen=True, eq=False)
class RetrainResult:
    """The rounds of a retraining experiment.

    Attributes:
        records: One ``RoundRecord`` per finished round, round 0 first.
        models: The model of every finished round (round 0: the input model).
        backworked: The fresh backwork run against every round's model; its images are
            the next round's new negatives.
        mode: ``uniform`` or ``extra_class``.
        from_scratch: Whether every round trained a freshly initialised model.
        interrupted: Whether Ctrl-C stopped the run (finished rounds are kept).
        resumed_rounds: Rounds loaded from ``output_dir`` instead of computed.
        settings: What a resumed run must match.
    """

    records: tuple[RoundRecord, ...]
    models: tuple[keras.Model, ...]
    backworked: tuple[BackworkResult, ...]
    mode: str
    from_scratch: bool
    interrupted: bool
    resumed_rounds: int
    settings: dict

    @property
    def rounds(self) -> int:
        """Retraining rounds finished (round 0 not counted)."""
        return len(self.records) - 1

    def summary(self) -> dict:
        """A JSON-ready summary (``retrain.json``)."""
        return {
            "mode": self.mode,
            "from_scratch": self.from_scratch,
            "rounds": self.rounds,
            "interrupted": self.interrupted,
            "resumed_rounds": self.resumed_rounds,
            "records": [r.to_dict() for r in self.records],
            "settings": self.settings,
        }


@dataclasses.dataclass(frozen=True, eq=False)
class RoundState:
    """The finished rounds: what the next round builds on.

    Attributes:
        records: One ``RoundRecord`` per finished round, round 0 first.
        models: The model of round 0 (the input model) and of every finished round after it.
        backworked: The fresh backwork run against every finished round's model.
    """

    records: tuple[RoundRecord, ...]
    models: tuple[keras.Model, ...]
    backworked: tuple[BackworkResult, ...]

    def then(self, record: RoundRecord, model: keras.Model, fresh: BackworkResult) -> RoundState:
        """The state after ``record``'s round, whose model is ``model``."""
        kept = self.models + (model,) if record.round > 0 else self.models
        return RoundState(self.records + (record,), kept, self.backworked + (fresh,))


@dataclasses.dataclass(frozen=True, eq=False)
class _Plan:
    """What every round of one ``retrain_rounds`` call shares (its configs the rounds' own,
    ``RetrainConfig.round_configs``)."""

    model: keras.Model
    data: Dataset
    backwork_config: BackworkConfig
    train_config: models.TrainConfig
    config: RetrainConfig
    initial: BackworkResult | None
    strategy: tf.distribute.Strategy
    output_dir: str | os.PathLike | None
    settings: dict
    callbacks: tuple[RetrainCallback, ...]
    backwork_callbacks: Sequence[BackworkCallback] | None


def _train_round(plan: _Plan, state: RoundState, r: int) -> tuple[keras.Model, int, float]:
    """Round ``r``'s model, trained on the data plus every earlier round's negatives, the
    size of its training set and the training's wall time."""
    config, train_config = plan.config, plan.train_config
    negatives = np.concatenate([flat_negatives(f)[0] for f in state.backworked])
    augmented = augment_with_negatives(
        plan.data,
        negatives,
        config.mode,
        config.num_zero,
        config.num_noise,
        seed=train_config.seed + r,
    )
    keras.utils.set_random_seed(train_config.seed + r)
    model = next_model(
        state.models[-1], plan.data.num_classes, config.mode, config.from_scratch, plan.strategy
    )
    round_train = dataclasses.replace(train_config, seed=train_config.seed + r)
    trained = models.train(
        model, augmented, round_train, plan.strategy, adversary=config.adversary()
    )
    interrupts.check()
    return model, len(augmented.x_train), float(trained.train_seconds)


def run_round(plan: _Plan, state: RoundState) -> tuple[RoundState, RoundRecord | None]:
    """Trains (after round 0), measures and keeps (saves, when ``plan.output_dir`` is set)
    the next round: the new state and the round's record, or ``state`` and ``None`` when it
    was interrupted."""
    r = len(state.records)
    start = time.perf_counter()
    model, backwork_config = plan.model, plan.backwork_config
    fresh = plan.initial if r == 0 else None
    train_size, train_seconds = len(plan.data.x_train), None
    if r > 0:
        model, train_size, train_seconds = _train_round(plan, state, r)
        backwork_config = dataclasses.replace(backwork_config, seed=backwork_config.seed + r)
    fresh, fields = measure_round(
        r,
        model,
        plan.data,
        backwork_config,
        plan.config,
        fresh=fresh,
        earlier=state.backworked,
        strategy=plan.strategy,
        backwork_callbacks=plan.backwork_callbacks,
        given=r == 0 and plan.initial is not None,
    )
    if not fields:
        return state, None
    record = RoundRecord(
        **fields,
        train_size=train_size,
        train_seconds=train_seconds,
        seconds=time.perf_counter() - start,
    )
    state = state.then(record, model, fresh)
    if plan.output_dir is not None:
        save_round(plan.output_dir, record, model, fresh, plan.settings, state.records)
    _log_round(plan.config, record)
    return state, record


def _log_round(config: RetrainConfig, record: RoundRecord) -> None:
    logger.info(
        "retrain %s round %d/%d: test accuracy %.2f%%, fooled %.0f%% of %d rows within "
        "%d steps (median %s), %.0f s",
        config.mode,
        record.round,
        config.rounds,
        100 * record.test_accuracy,
        100 * record.fooling.rate,
        record.fooling.rows,
        record.fooling.budget,
        "-" if record.fooling.median_steps is None else f"{record.fooling.median_steps:.0f}",
        record.seconds,
    )


def retrain_rounds(
    model: keras.Model,
    data: Dataset,
    backwork_config: BackworkConfig,
    config: RetrainConfig,
    train_config: models.TrainConfig = DEFAULT_TRAIN_CONFIG,
    *,
    initial: BackworkResult | None = None,
    strategy: tf.distribute.Strategy | None = None,
    output_dir: str | os.PathLike | None = None,
    callbacks: Sequence[RetrainCallback] | None = None,
    backwork_callbacks: Sequence[BackworkCallback] | None = None,
) -> RetrainResult:
    """Rounds of backwork, augment and retrain, measuring what each round changes.

    Round 0 measures ``model`` and backworks a batch of negatives against it (or takes
    ``initial``). Round ``r >= 1`` adds the negatives of every earlier round (plus
    ``config.num_zero`` zero and ``config.num_noise`` noise images) to the training data with
    ``augment_with_negatives``, trains a copy of the previous round's model (or a freshly
    initialised one) on it, and then measures the new model: test accuracy, FGSM accuracy,
    its probabilities on every earlier round's negatives, and a fresh backwork run against
    it (seed ``backwork_config.seed + r``) whose images are the next round's negatives.

    With ``output_dir`` every finished round's model (``round_<r>/model.keras``), backworked
    images (``backwork.npz``) and record (``record.json``) are written, and ``state.json``
    lists the finished rounds; ``config.resume`` loads them and continues. Training and
    backworking are seeded per round, so a resumed run repeats an uninterrupted one. The
    folder is checked first (``check_folder``): finished rounds are never started afresh
    over, nor continued with other settings, weights or data.

    Args:
        model: The classifier (logits) to start from; it is not modified.
        data: Its training and test data; the reference sets of every backwork run.
        backwork_config: Settings of every round's backwork run (its step limit capped by
            ``config.max_num_steps``).
        config: The rounds, mode, counts and limits (``RetrainConfig``).
        train_config: How each round trains (its epochs replaced by ``config.epochs``; seed
            ``train_config.seed + r`` in round ``r``).
        initial: A backworking result against ``model`` to use as round 0's negatives.
        strategy: Optional ``tf.distribute`` strategy for training, backworking and FGSM.
        output_dir: Where to keep every finished round (``None``: nothing is written).
        callbacks: ``RetrainCallback`` objects, called after every finished round.
        backwork_callbacks: ``BackworkCallback`` objects for every backwork run.

    Returns:
        A ``RetrainResult``; after Ctrl-C, the rounds finished so far (``interrupted``).

    Raises:
        ValueError: a model whose outputs do not match the data's classes, ``resume``
            without ``output_dir``, an interrupted ``initial``, or a folder that
            ``check_folder`` refuses (a ``FolderConflict``: finished rounds without
            ``resume``, or made with other settings, weights or data).
    """
    plan, state = _prepare(
        model,
        data,
        backwork_config,
        config,
        train_config,
        initial=initial,
        strategy=strategy,
        output_dir=output_dir,
        callbacks=callbacks,
        backwork_callbacks=backwork_callbacks,
    )
    resumed, interrupted = len(state.records), False
    try:
        while len(state.records) <= int(config.rounds):
            state, record = run_round(plan, state)
            if record is None:
                interrupted = True
                break
            for cb in plan.callbacks:  # the round is kept: a Ctrl-C here keeps it
                cb.on_round_end(record, state.models[-1], state.backworked[-1])
    except KeyboardInterrupt:  # Ctrl-C outside a backwork run (training, measuring)
        interrupted = True
    if interrupted:
        kept = f"kept in {output_dir}" if output_dir is not None else "kept"
        logger.warning(
            "retraining interrupted with %d finished round(s)%s",
            len(state.records),
            f" ({rounds_phrase(len(state.records))}); they are {kept}" if state.records else "",
        )
    return RetrainResult(
        records=state.records,
        models=state.models[: len(state.records)] or state.models[:1],
        backworked=state.backworked,
        mode=config.mode,
        from_scratch=bool(config.from_scratch),
        interrupted=interrupted,
        resumed_rounds=resumed,
        settings=plan.settings,
    )


def _prepare(
    model,
    data,
    backwork_config,
    config,
    train_config,
    *,
    initial,
    strategy,
    output_dir,
    callbacks,
    backwork_callbacks,
) -> tuple[_Plan, RoundState]:
    """``retrain_rounds``' checks, in its order, then its plan and the finished rounds it
    starts from (resumed from ``output_dir``, whose ``state.json`` is started when none)."""
    check_dataset(data)
    given_backwork, given_train = backwork_config, train_config
    backwork_config, train_config = config.round_configs(backwork_config, train_config)
    if num_outputs(model) != data.num_classes:
        raise ValueError(
            f"model {model.name!r} has {num_outputs(model)} outputs but the data has "
            f"{data.num_classes} classes; start from a model of the data's classes"
        )
    if config.resume and output_dir is None:
        raise ValueError("resume=True needs output_dir, the folder of the finished rounds")
    if classifier.has_graph(model) and classifier.final_softmax(model) is not None:
        model = classifier.logits_copy(model)  # every round trains logits
    if initial is not None and initial.interrupted:
        raise ValueError("initial is an interrupted backworking run; pass a finished one")
    strategy = strategy or tf.distribute.get_strategy()
    settings = round_settings(model, data, backwork_config, train_config, config)
    state = RoundState((), (model,), ())
    if output_dir is not None:  # before anything is trained or written
        saved = check_folder(output_dir, model, data, given_backwork, config, given_train)
        if config.resume:
            records, loaded, fresh = load_rounds(output_dir, saved, model, strategy)
            keep = int(config.rounds) + 1
            state = RoundState(tuple(records[:keep]), tuple(loaded[:keep]), tuple(fresh[:keep]))
        if not state.records:
            write_state(output_dir, settings, [])
    plan = _Plan(
        model,
        data,
        backwork_config,
        train_config,
        config,
        initial,
        strategy,
        output_dir,
        settings,
        tuple(callbacks or ()),
        backwork_callbacks,
    )
    return plan, state
