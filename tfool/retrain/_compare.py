"""The headline figures of several retraining modes side by side."""

from __future__ import annotations

from collections.abc import Sequence

from tfool.retrain._rounds import RetrainResult


def compare_modes(results: Sequence[RetrainResult]) -> dict:
    """The headline figures of retraining runs side by side, JSON-ready.

    Returns:
        ``{mode: [RoundRecord.brief() per round], ..., "settings": {...}}``: the rounds of
        every mode, and the measurement settings (taken from the first result).

    Raises:
        ValueError: no results, or two results of the same mode.
    """
    if not results:
        raise ValueError("results is empty; expected one RetrainResult per mode")
    modes = [r.mode for r in results]
    if len(set(modes)) != len(modes):
        raise ValueError(f"results repeat a mode: {modes}")
    first = results[0].settings
    keys = ("fooling_budget", "fooling_examples", "fooling_seed", "fooling_threshold")
    settings = {k: first.get(k) for k in keys}
    settings.update(
        epochs_per_round=first["train"]["epochs"],
        from_scratch=first["from_scratch"],
        num_zero=first["num_zero"],
        num_noise=first["num_noise"],
        num_noise_probe=first["num_noise_probe"],
        fgsm_eps=first["fgsm_eps"],
        backwork_max_num_steps=first["backwork"]["max_num_steps"],
        backwork_num_examples=first["backwork"]["num_examples"],
        data=first["data"],
        model=first["model"],
    )
    table = {r.mode: [record.brief() for record in r.records] for r in results}
    return {**table, "settings": settings}
