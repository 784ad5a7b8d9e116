"""The stress test: how hard a classifier is to fool, from several starts and budgets.

One model's record holds:

- ``fooling``: backworking with the run's costs (reference and batch costs kept) from
  ``uniform`` noise, ``gaussian`` noise clipped to the pixel range, an all-``zeros``
  image, and real test ``digits`` of other classes (every row a test image whose class
  is not the row's label), for at most ``max(budgets)`` steps: per start and budget, the
  share of rows whose target probability reached ``threshold`` within the budget and the
  median step at which they did. Rows are never re-initialised, so every row keeps its
  start;
- ``rubbish``: the same from uniform noise with the class probabilities as the only cost
  (no reference or batch cost: Nguyen et al.'s rubbish images);
- ``pgd_accuracy``: accuracy under untargeted PGD (Madry et al. 2018: a random start,
  ``pgd_steps`` steps of ``pgd_step_size``) per ``pgd_eps``;
- ``targeted_pgd_success``: the share of images PGD at ``targeted_eps`` pushes to a
  random other class;
- ``clean_accuracy``: accuracy on the whole test split.

A model that carries an extra ``negative`` class (``retrain`` mode ``extra_class``) is
fooled when the target digit's probability reaches the threshold, and an image it calls
``negative`` is misclassified. ``stress_models`` keeps every finished part in a folder, so
an interrupted test continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfool import _tf, attacks, interrupts, io, models
from tfool.backwork import BackworkConfig, backwork, reference_set
from tfool.config import setting
from tfool.data import Dataset
from tfool.retrain import weights_fingerprint
from tfool.retrain._measure import FirstReach, with_negative_class
from tfool.retrain._store import settings_differences

logger = logging.getLogger(__name__)

#: The starting points of the fooling measurement.
STARTS = ("uniform", "gaussian", "zeros", "digits")
#: The record's version (``stress_models`` refuses to continue another).
VERSION = 1


@dataclasses.dataclass(frozen=True)
class StressConfig:
    """What ``stress_test`` measures.

    Attributes:
        budgets: Step budgets at which the fooling and rubbish rates are read, the share
            of rows past ``threshold`` (one run of ``max(budgets)`` steps per start);
            distinct integers >= 1.
        starts: Starting points of the fooling runs: one or more distinct names of
            ``STARTS``.
        examples: Rows per label of every fooling and rubbish run; >= 1.
        threshold: Target probability at which a row counts as fooled, in (0, 1).
        gaussian_mean: Mean of the ``gaussian`` start (then clipped to the pixel range).
        gaussian_std: Its standard deviation; > 0.
        rubbish: Run the rubbish measurement (class probabilities only).
        pgd_eps: L-infinity radii (pixel range [0, 1]) of the untargeted PGD accuracy
            (``pgd_steps`` steps of ``pgd_step_size`` from a random start): one or more
            distinct numbers in [0, 1].
        pgd_steps: PGD steps (Madry et al.: 40); >= 1.
        pgd_step_size: PGD step size (Madry et al.: 0.01); > 0.
        targeted_eps: Radius of the targeted PGD attack, in (0, 1] (``None``, on the
            command line 0: none).
        attack_examples: Test images the PGD attacks run on (a seeded subset; all when
            larger); >= 1.
        seed: Seed of the starts, the attacked subset, the targets and the PGD starts;
            >= 0.
        reference_size: At most this many training images per label form the reference
            sets of the fooling runs, >= 1 (``None``: the run's ``reference_size``): the
            step time grows with the reference set, and 1,000-step runs from several
            starts on several models may need a smaller one.
    """

    budgets: tuple[int, ...] = (100, 300, 1000)
    starts: tuple[str, ...] = setting(STARTS, choices=STARTS)
    examples: int = 4
    threshold: float = 0.999
    gaussian_mean: float = 0.5
    gaussian_std: float = 0.25
    rubbish: bool = True
    pgd_eps: tuple[float, ...] = (0.1, 0.2, 0.3)
    pgd_steps: int = 40
    pgd_step_size: float = 0.01
    targeted_eps: float | None = setting(0.3, none=0)
    attack_examples: int = 1000
    seed: int = 2000
    reference_size: int | None = None

    def __post_init__(self):
        whole = all(_tf.is_finite_number(b) and int(b) == b for b in self.budgets)
        budgets = tuple(sorted({int(b) for b in self.budgets})) if whole else ()
        if not budgets or budgets[0] < 1 or len(budgets) != len(self.budgets):
            raise ValueError(f"budgets={self.budgets} must be distinct integers >= 1")
        object.__setattr__(self, "budgets", budgets)
        starts = tuple(self.starts)
        bad = [s for s in starts if s not in STARTS]
        if not starts or bad or len(set(starts)) != len(starts):
            raise ValueError(
                f"starts={self.starts} must be one or more distinct names from {STARTS}"
            )
        object.__setattr__(self, "starts", starts)
        eps = tuple(self.pgd_eps)
        if not eps or not all(_tf.is_finite_number(e) and 0 <= e <= 1 for e in eps):
            raise ValueError(f"pgd_eps={self.pgd_eps} must be one or more numbers in [0, 1]")
        eps = tuple(float(e) for e in eps)
        if len({f"{e:g}" for e in eps}) != len(eps):
            raise ValueError(f"pgd_eps={self.pgd_eps} must be distinct (as %g prints them)")
        object.__setattr__(self, "pgd_eps", eps)
        if self.targeted_eps is not None and not (
            _tf.is_finite_number(self.targeted_eps) and 0 < self.targeted_eps <= 1
        ):
            raise ValueError(f"targeted_eps={self.targeted_eps} must be in (0, 1] or None")
        if not (_tf.is_finite_number(self.threshold) and 0 < self.threshold < 1):
            raise ValueError(f"threshold={self.threshold} must be a number in (0, 1)")
        for name in ("examples", "pgd_steps", "attack_examples"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"{name}={value} must be an integer >= 1")
        if not _tf.is_finite_number(self.gaussian_mean):
            raise ValueError(f"gaussian_mean={self.gaussian_mean} must be a finite number")
        for name in ("pgd_step_size", "gaussian_std"):
            value = getattr(self, name)
            if not (_tf.is_finite_number(value) and value > 0):
                raise ValueError(f"{name}={value} must be a positive number")
        if self.reference_size is not None and (
            int(self.reference_size) != self.reference_size or self.reference_size < 1
        ):
            raise ValueError(f"reference_size={self.reference_size} must be an integer >= 1")
        if int(self.seed) != self.seed or self.seed < 0:
            raise ValueError(f"seed={self.seed} must be an integer >= 0")

    def parts(self) -> tuple[str, ...]:
        """The measurements of one model, in the order they run."""
        out = ["clean_accuracy"]
        out += [f"pgd_accuracy/{e:g}" for e in self.pgd_eps]
        out += ["targeted_pgd_success"] if self.targeted_eps is not None else []
        out += [f"fooling/{s}" for s in self.starts]
        return tuple(out + (["rubbish"] if self.rubbish else []))


def fooling_config(backwork_config: BackworkConfig, config: StressConfig) -> BackworkConfig:
    """The backworking settings of a fooling run: ``backwork_config``'s costs, labels and
    learning rate, ``config.examples`` rows per label, ``max(config.budgets)`` steps, a
    save (and so a reading) after every step, a label stopping once all its rows are past
    the threshold, and no re-initialisation (the window never fills); the reference sets
    cut to ``config.reference_size`` when set. One row per label has no batch to keep
    diverse: its batch cost is off."""
    budget = max(config.budgets)
    refs = config.reference_size or backwork_config.reference_size
    return dataclasses.replace(
        backwork_config,
        reference_size=refs,
        num_examples=config.examples,
        batch_cost_coeff=0.0 if config.examples < 2 else backwork_config.batch_cost_coeff,
        max_num_steps=budget,
        seed=config.seed,
        save_freq=1,
        prob_cap_min=config.threshold,
        prob_cap_mean=1.0,
        tolerance=0.0,
        num_mono_dec_saves=budget + 2,
        history_every=budget,
        max_history=2,
    )


def rubbish_config(backwork_config: BackworkConfig, config: StressConfig) -> BackworkConfig:
    """``fooling_config`` with the class probabilities as the only exposed layer and cost."""
    return dataclasses.replace(
        fooling_config(backwork_config, config),
        layer_names=("probabilities",),
        layer_cost_coeffs=None,
        reference_cost_coeff=0.0,
        batch_cost_coeff=0.0,
    )


def start_images(
    start: str, data: Dataset, labels: Sequence[int], config: StressConfig, lo=0.0, hi=1.0
) -> np.ndarray:
    """The initial images ``[L, E, H, W, C]`` of one start (seeded by ``config.seed`` and the
    start's place in ``STARTS``); ``digits`` rows are test images of other classes than the
    row's label."""
    rng = np.random.default_rng([config.seed, STARTS.index(start)])
    shape = (len(labels), config.examples, *data.image_shape)
    if start == "uniform":
        return rng.uniform(lo, hi, size=shape).astype(np.float32)
    if start == "gaussian":
        noise = rng.normal(config.gaussian_mean, config.gaussian_std, size=shape)
        return np.clip(noise, lo, hi).astype(np.float32)
    if start == "zeros":
        return np.zeros(shape, np.float32)
    rows = []
    for label in labels:
        others = np.flatnonzero(data.y_test != label)
        if len(others) < config.examples:
            raise ValueError(
                f"the test split has {len(others)} images of other classes than {label}; "
                f"the digits start needs examples={config.examples}"
            )
        rows.append(data.x_test[np.sort(rng.choice(others, config.examples, replace=False))])
    return np.stack(rows).astype(np.float32)


def budget_rates(first: np.ndarray, budgets: Sequence[int]) -> dict:
    """``{budget: {"rate", "median_steps"}}`` from each row's first step past the threshold
    (-1: never): the share of rows there within the budget and their median step."""
    first = np.asarray(first).ravel()
    out = {}
    for b in budgets:
        hit = (first >= 0) & (first <= b)
        median = float(np.median(first[hit])) if hit.any() else None
        out[str(int(b))] = {"rate": float(hit.mean()), "median_steps": median}
    return out


def _backwork_rates(model, data, run_config, initial, config, references, strategy):
    """A fooling or rubbish run's ``budget_rates``, its rows and their mean target
    probability at the end; ``None`` when it was interrupted."""
    reach = FirstReach(config.threshold)
    result = backwork(
        model, data, run_config, strategy, [reach], initial_images=initial, references=references
    )
    if result.interrupted:
        return None
    first = reach.first if reach.first is not None else np.full(result.target_probs.shape, -1)
    return {
        "budgets": budget_rates(first, config.budgets),
        "rows": int(first.size),
        "mean_target_prob": float(result.target_probs.mean()),
    }


def _attacked_subset(data: Dataset, config: StressConfig) -> tuple[np.ndarray, np.ndarray]:
    n = len(data.x_test)
    if config.attack_examples >= n:
        return data.x_test, data.y_test
    rng = np.random.default_rng([config.seed, 100])
    rows = np.sort(rng.choice(n, config.attack_examples, replace=False))
    return data.x_test[rows], data.y_test[rows]


def _pgd(model, x, eps, y, config: StressConfig, targeted: bool, strategy) -> np.ndarray:
    """PGD images, then the model's predicted classes on them."""
    x_adv = attacks.pgd(
        model,
        x,
        eps,
        y,
        step_size=config.pgd_step_size,
        steps=config.pgd_steps,
        targeted=targeted,
        seed=config.seed,
        strategy=strategy,
    )
    return models.predict_classes(model, x_adv, strategy=strategy)


def _measure(part, model, data, backwork_config, config, references, strategy, num_classes):
    """One part's value (``None`` when interrupted); targets are among the data's
    ``num_classes`` classes (never an extra ``negative`` class)."""
    if part == "clean_accuracy":
        return models.evaluate(model, data.x_test, data.y_test, strategy=strategy)
    x, y = _attacked_subset(data, config)
    if part.startswith("pgd_accuracy/"):
        eps = {f"{e:g}": e for e in config.pgd_eps}[part.split("/")[1]]
        return float(np.mean(_pgd(model, x, eps, y, config, False, strategy) == y))
    if part == "targeted_pgd_success":
        rng = np.random.default_rng([config.seed, 200])
        targets = (y + rng.integers(1, num_classes, size=len(y))) % num_classes
        hit = _pgd(model, x, config.targeted_eps, targets, config, True, strategy) == targets
        return float(np.mean(hit))
    labels = backwork_config.labels
    lo, hi = backwork_config.input_min, backwork_config.input_max
    if part == "rubbish":
        run = rubbish_config(backwork_config, config)
        initial = start_images("uniform", data, labels, config, lo, hi)
        return _backwork_rates(model, data, run, initial, config, None, strategy)
    start = part.split("/")[1]
    initial = start_images(start, data, labels, config, lo, hi)
    run = fooling_config(backwork_config, config)
    return _backwork_rates(model, data, run, initial, config, references(), strategy)


def stress_test(
    model: keras.Model,
    data: Dataset,
    backwork_config: BackworkConfig,
    config: StressConfig = StressConfig(),
    *,
    done: dict | None = None,
    on_part: Callable[[str, object, float], None] | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> dict:
    """Measures one model (see the module docstring); parts in ``done`` are kept as given.

    Args:
        model: The classifier (logits).
        data: Its training data (the reference sets) and test split; a model with one
            output more than the data's classes has it named ``negative``.
        backwork_config: The run's backworking settings (labels, costs, learning rate).
        config: What to measure (``StressConfig``).
        done: Parts already measured (``{part: value}``), e.g. by an interrupted run.
        on_part: Called with ``(part, value, seconds)`` after every part measured here.
        strategy: Optional ``tf.distribute`` strategy.

    Returns:
        ``{part: value}`` for every part finished (all of ``config.parts()`` unless
        interrupted; ``interrupts.interrupted()`` tells).
    """
    known = with_negative_class(model, data)
    parts = dict(done or {})
    cache: list = []

    def references():
        if not cache:
            cache.append(reference_set(model, known, fooling_config(backwork_config, config)))
        return cache[0]

    for part in config.parts():
        if part in parts:
            continue
        start = time.perf_counter()
        value = _measure(
            part, model, known, backwork_config, config, references, strategy, data.num_classes
        )
        if value is None:
            break
        parts[part] = value
        seconds = time.perf_counter() - start
        logger.info("stress %s of %s: %s (%.0f s)", part, model.name, _brief(value), seconds)
        if on_part is not None:
            on_part(part, value, seconds)
        interrupts.check()
    return parts


def _brief(value) -> str:
    if isinstance(value, dict):
        return (
            ", ".join(f"{b}: {100 * v['rate']:.0f}%" for b, v in value["budgets"].items())
            + f" of {value['rows']} rows"
        )
    return f"{value:.4f}"


def summarise(parts: dict, config: StressConfig) -> dict:
    """The record of one model in the form of ``docs/results/retrain_stress.json``:
    ``clean_accuracy``, ``pgd_accuracy`` {eps: value}, ``targeted_pgd_success``,
    ``fooling`` {start: {budget: {"rate", "median_steps"}}}, ``rubbish`` {budget: ...}
    (missing parts left out)."""
    out: dict = {}
    if "clean_accuracy" in parts:
        out["clean_accuracy"] = parts["clean_accuracy"]
    pgd = {p.split("/")[1]: v for p, v in parts.items() if p.startswith("pgd_accuracy/")}
    if pgd:
        out["pgd_accuracy"] = pgd
    if "targeted_pgd_success" in parts:
        out["targeted_pgd_success"] = parts["targeted_pgd_success"]
    fooling = {p.split("/")[1]: v["budgets"] for p, v in parts.items() if p.startswith("fooling/")}
    if fooling:
        out["fooling"] = fooling
    if "rubbish" in parts:
        out["rubbish"] = parts["rubbish"]["budgets"]
    return out


def settings(data: Dataset, backwork_config: BackworkConfig, config: StressConfig) -> dict:
    """Everything a continued stress test must share with the interrupted one."""
    return json.loads(
        json.dumps(
            {
                "version": VERSION,
                "stress": dataclasses.asdict(config),
                "fooling_backwork": dataclasses.asdict(fooling_config(backwork_config, config)),
                "data": {
                    "name": data.name,
                    "num_train": len(data.x_train),
                    "num_test": len(data.x_test),
                    "fingerprint": models.data_fingerprint(data),
                },
            }
        )
    )


def _part_file(output_dir, name: str) -> Path:
    return Path(output_dir) / f"{name}.json"


def _load_parts(path: Path, wanted: dict, weights: str, resume: bool) -> tuple[dict, dict]:
    """The finished parts of one model's file and their seconds; refuses a file made
    otherwise."""
    if not path.exists():
        return {}, {}
    saved = io.read_json(path)
    if not resume:
        raise ValueError(
            f"{path} holds a finished stress test part; resume=True continues it (with the "
            "same settings), or choose another output_dir"
        )
    if saved.get("settings") != wanted:
        differences = settings_differences(saved.get("settings") or {}, wanted) or ["its version"]
        raise ValueError(
            f"{path} was made with other stress or backworking settings or data: "
            + "; ".join(differences[:4])
            + "; choose another output_dir"
        )
    if saved.get("weights") != weights:  # e.g. more rounds: the mode's last model is new
        logger.warning("%s was measured for another model; measuring this one afresh", path)
        return {}, {}
    return dict(saved.get("parts", {})), dict(saved.get("seconds", {}))


def stress_models(
    named: Sequence[tuple[str, keras.Model]],
    data: Dataset,
    backwork_config: BackworkConfig,
    config: StressConfig = StressConfig(),
    *,
    output_dir: str | os.PathLike | None = None,
    resume: bool = False,
    strategy: tf.distribute.Strategy | None = None,
) -> dict:
    """``stress_test`` on every ``(name, model)``, each finished part kept in
    ``<output_dir>/<name>.json`` (with the settings and the weights' fingerprint), so
    ``resume=True`` continues an interrupted test; ``resume=False`` refuses a folder with
    finished parts.

    Returns:
        ``{"models": {name: summarise(...)}, "seconds": {name: {part: s}}, "measured":
        {name: [the parts measured by this call]}, "settings": ..., "complete": bool}``.
    """
    wanted = settings(data, backwork_config, config)
    prints = {name: weights_fingerprint(model) for name, model in named}
    done = {}
    if output_dir is not None:  # every file checked before any work
        io.check_writable_folder(output_dir, "output_dir")
        done = {
            n: _load_parts(_part_file(output_dir, n), wanted, prints[n], resume) for n, _ in named
        }
    table, seconds, measured, complete = {}, {}, {}, True
    for name, model in named:
        store, seconds[name] = done.get(name, ({}, {}))
        measured[name] = []

        def keep(part, value, took, name=name, store=store):
            store[part] = value
            seconds[name][part] = took
            measured[name].append(part)
            if output_dir is not None:
                record = {
                    "settings": wanted,
                    "weights": prints[name],
                    "parts": store,
                    "seconds": seconds[name],
                }
                with interrupts.protected():
                    io.write_json(_part_file(output_dir, name), record)

        try:
            stress_test(
                model, data, backwork_config, config, done=store, on_part=keep, strategy=strategy
            )
        except KeyboardInterrupt:  # Ctrl-C inside an attack or between parts
            complete = False
        if store:
            table[name] = summarise(store, config)
        if not complete or len(store) < len(config.parts()):
            complete = False
            logger.warning("stress test interrupted during %s; finished parts are kept", name)
            break
    return {
        "models": table,
        "seconds": seconds,
        "measured": measured,
        "settings": wanted,
        "complete": complete,
    }
