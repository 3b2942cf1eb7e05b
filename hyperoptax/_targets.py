"""The Bayesian search's targets: raw results -> what the GP models.

Results are oriented (larger is better), failures imputed, warped and standardised;
`unit` is the scale acquisitions see. `gp.py` takes the targets as given; this module
is where they come from.
"""

from __future__ import annotations

import jax.numpy as jnp

from ._dtypes import is_f64

__all__ = ["warp_medians", "model_targets", "results_from_model"]


def warp_medians(dtype) -> float:
    """The output warp's scale, in median gaps to the best result, for results of `dtype`.

    See `model_targets`; measured in benchmarks/RESULTS.md ("The output warp in float64",
    "The float32 warp at two median gaps").
    """
    return 10.0 if is_f64(dtype) else 2.0


def model_targets(y, mask, maximize: bool, n_params: int = 1):
    """Raw results -> the GP's targets: oriented, failures imputed, warped, standardised.

    Non-finite results count as the worst finite result seen, so a failure teaches the
    model "not here" without poisoning it. The warp `-log1p(gap / (c * median gap))` of
    the gap to the best value is monotone: it spreads out values near the best and
    compresses far-off bad ones, so that the GP can resolve the differences the search
    needs near the optimum. It also reshapes the objective (a smooth bowl becomes a
    sharp peak, which a stationary kernel extrapolates poorly), so it is only as strong
    as the precision needs: `c = 2` in float32, `c = 10` in float64, which resolves
    finer differences (as the noise floor and `jitter` are, see `gp.log_noise_min`).

    Also returns `unit`, the acquisitions' scale: how many standardised units an
    improvement on the best by `n_params` times the whole observed range of results is
    worth (through the warp's slope at the best). Acquisitions and hallucinations see
    values divided by `unit`, so a margin such as `PI(xi=0.01)` means "beat the best by
    1% of the observed range per parameter", whatever the objective's scale or the
    number of observations. Per parameter, because the room a search must cover grows
    with the number of parameters: a margin fixed to the range makes PI creep around
    the incumbent in more than two or three dimensions (benchmarks/RESULTS.md, "The library
    defaults").
    """
    g, _, _, mean, std, unit = _warp(y, mask, maximize, n_params)
    z = jnp.where(mask, (g - mean) / std, 0.0)
    return z, unit


def _warp(y, mask, maximize: bool, n_params: int):
    """`model_targets`' steps: the warped results `g` and what maps them to targets and
    back: `(g, best, scale, mean, std, unit)`."""
    oriented = y if maximize else -y
    finite = mask & jnp.isfinite(oriented)
    worst = jnp.min(jnp.where(finite, oriented, jnp.inf))
    worst = jnp.where(jnp.any(finite), worst, 0.0)
    oriented = jnp.where(finite, oriented, worst)
    best = jnp.max(jnp.where(mask, oriented, -jnp.inf))
    gap = jnp.where(mask, best - oriented, jnp.nan)
    scale = jnp.nanmedian(gap)
    scale = jnp.where(scale > 0, scale, jnp.nanmax(gap))
    scale = jnp.where(scale > 0, scale, 1.0) * warp_medians(y.dtype)
    g = -jnp.log1p(jnp.where(mask, gap, 0.0) / scale)
    n = jnp.maximum(jnp.sum(mask), 1)
    mean = jnp.sum(jnp.where(mask, g, 0.0)) / n
    std = jnp.sqrt(jnp.sum(jnp.where(mask, (g - mean) ** 2, 0.0)) / n)
    std = jnp.where(std > 0, std, 1.0)
    unit = n_params * jnp.nanmax(gap) / (scale * std)
    unit = jnp.where(jnp.isfinite(unit) & (unit > 0), unit, 1.0)
    return g, best, scale, mean, std, unit


def results_from_model(v, y, mask, maximize: bool, n_params: int = 1):
    """Values on the acquisitions' scale (`model_targets`' targets divided by `unit`, what
    `BayesianSearch.predict` returns) -> results in the objective's units.

    The inverse of `model_targets`' monotone map, so a quantile of the model's belief
    maps to the same quantile in the objective's units: the posterior mean becomes the
    median of what the model expects there, mean +- std its 16% and 84% quantiles.
    Values beyond what the warp can reach (far better than the best by more than its
    scale) come out as +-inf.
    """
    _, best, scale, mean, std, unit = _warp(y, mask, maximize, n_params)
    g = v * unit * std + mean
    oriented = best - scale * jnp.expm1(-g)
    return oriented if maximize else -oriented
