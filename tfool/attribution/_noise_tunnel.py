"""The noise tunnel: SmoothGrad and friends over any attribution method."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tfool.attribution._checks import _check_choice, _check_int, _check_x

#: How the noise tunnel combines the attributions of the noisy copies.
NT_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")


def noise_tunnel(
    attribution_fn: Callable[..., np.ndarray],
    x: np.ndarray,
    nt_type: str = "smoothgrad",
    nt_samples: int = 5,
    stdevs: float = 1.0,
    seed: int = 0,
    **kwargs: Any,
) -> np.ndarray:
    """SmoothGrad and friends (Smilkov et al. 2017; Captum's ``NoiseTunnel``).

    Calls ``attribution_fn(x=x + noise, **kwargs)`` for ``nt_samples`` Gaussian noise
    draws of standard deviation ``stdevs`` and combines the results: their mean
    (``smoothgrad``), the mean of their squares (``smoothgrad_sq``) or their variance
    (``vargrad``). With ``stdevs=0`` ``smoothgrad`` equals the plain method.

    Args:
        attribution_fn: An attribution function of this module (or any function taking
            ``x=`` and returning an array of its shape), e.g. ``integrated_gradients``.
        x: Inputs ``[N, ...]``.
        nt_type: One of ``NT_TYPES``.
        nt_samples: Noisy copies per input (>= 1).
        stdevs: Standard deviation of the noise, in input units (>= 0). Captum's default 1.0
            is meant for standardised inputs; for pixels in [0, 1] use 0.1 to 0.2.
        seed: Seed of the noise.
        **kwargs: Passed to ``attribution_fn``: ``model_fn``, ``target`` and its options.

    Returns:
        float32 array of ``x``'s shape.

    Raises:
        ValueError: unknown ``nt_type``, ``nt_samples < 1``, negative ``stdevs``, or
            ``return_convergence_delta`` in ``kwargs``.
    """
    x = _check_x(x)
    _check_choice("nt_type", nt_type, NT_TYPES)
    samples = _check_int("nt_samples", nt_samples, 1)
    if not (np.isfinite(stdevs) and stdevs >= 0):
        raise ValueError(f"stdevs={stdevs!r} must be a finite number >= 0")
    if kwargs.get("return_convergence_delta"):
        raise ValueError("return_convergence_delta=True is not supported under noise_tunnel")
    if not callable(attribution_fn):
        raise ValueError(f"attribution_fn={attribution_fn!r} is not callable")
    rng = np.random.default_rng(seed)
    total = np.zeros(x.shape, np.float64)
    total_sq = np.zeros(x.shape, np.float64)
    for _ in range(samples):
        noise = rng.normal(0.0, 1.0, size=x.shape) * float(stdevs)
        attr = np.asarray(attribution_fn(x=(x + noise).astype(np.float32), **kwargs), np.float64)
        if attr.shape != x.shape:
            raise ValueError(f"attribution_fn returned shape {attr.shape}, expected {x.shape}")
        total += attr
        total_sq += attr * attr
    mean, mean_sq = total / samples, total_sq / samples
    if nt_type == "smoothgrad":
        out = mean
    elif nt_type == "smoothgrad_sq":
        out = mean_sq
    else:
        out = np.maximum(mean_sq - mean * mean, 0.0)
    return out.astype(np.float32)
