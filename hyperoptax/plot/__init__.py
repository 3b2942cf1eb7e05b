"""Look at a search: its history, what mattered, and what the model believes.

Every function returns a `matplotlib.figure.Figure` made without `pyplot`, so nothing
is left open in pyplot's global list of figures: display it in a notebook (it is the
cell's value), or `fig.savefig("history.png")`. Matplotlib is an optional dependency
(`pip install hyperoptax[plot]`); this module is the only one that imports it.

- `history` and `parallel` need only the observations: a `BayesianSearchState`, or any
  state together with the `evaluations` that `optimize` returned (random and grid
  searches keep no observations in their states).
- `importance`, `slices` and `contour` show the `BayesianSearch`'s model and need the
  optimizer that owns the state.

From a checkpoint file, without code: `python -m hyperoptax.plot search.ckpt --out
figures/` writes every plot that applies.
"""

from __future__ import annotations

import functools
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

try:
    import matplotlib.cm
    import matplotlib.colors
    import matplotlib.ticker
    from matplotlib.figure import Figure
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("hyperoptax.plot needs matplotlib: pip install 'hyperoptax[plot]'.") from e

from .._targets import results_from_model
from ..base import OptimizerState
from ..spaces import CategoricalSpace, FlatSpace, _space_leaves, flatten_space

__all__ = [
    "history",
    "parallel",
    "parameter_importance",
    "importance",
    "slices",
    "contour",
]


class _Figure(Figure):
    """A matplotlib `Figure` that notebooks show as an image by itself (without pyplot's
    inline backend a bare `Figure` displays as its repr)."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png")
        return buf.getvalue()


_BEST = "tab:red"
_FAILED = "tab:gray"


# -- what a search observed -----------------------------------------------------------


@dataclass
class _Observations:
    flat: FlatSpace
    names: list[str]
    labels: list[tuple[str, ...] | None]  # the choices' labels of categorical columns
    X: np.ndarray  # (n, d) raw values (categorical columns: indices)
    y: np.ndarray  # (n,) results, NaN or inf where an evaluation failed
    batch: np.ndarray  # (n,) the batch each evaluation belonged to
    maximize: bool
    budget: np.ndarray | None = None  # (n,) each evaluation's budget (multi-fidelity)

    @property
    def ok(self) -> np.ndarray:
        return np.isfinite(self.y)

    def best_so_far(self) -> np.ndarray:
        """The best finite result up to each evaluation (NaN before the first); with
        budgets, among the evaluations at the largest budget, as `best_result` reports."""
        worst = -np.inf if self.maximize else np.inf
        counts = self.ok
        if self.budget is not None and self.ok.any():
            counts = self.ok & (self.budget == self.budget[self.ok].max())
        y = np.where(counts, self.y, worst)
        best = np.maximum.accumulate(y) if self.maximize else np.minimum.accumulate(y)
        return np.where(np.isfinite(best), best, np.nan)


def _name(path: str) -> str:
    """`"['optimizer']['lr']"` -> `"optimizer.lr"`, `"[0]"` -> `"0"`."""
    parts = re.findall(r"\[(?:'([^']*)'|([^\]]*))\]|\.(\w+)", path)
    return ".".join(a or b or c for a, b, c in parts) or "value"


def _label(choice: Any) -> str:
    if isinstance(choice, str):
        return choice
    return getattr(choice, "__name__", None) or repr(choice)


def _direction(optimizer, maximize: bool | None) -> bool:
    if maximize is not None:
        return bool(maximize)
    # Searches without a direction of their own (random, grid) follow the library's
    # convention: larger is better.
    return bool(getattr(optimizer, "maximize", True))


def _observations(state, optimizer=None, evaluations=None, maximize=None) -> _Observations:
    if not isinstance(state, OptimizerState):
        raise TypeError(
            f"The first argument is the search's state (`plot(state, optimizer)`), got "
            f"{type(state).__name__}."
        )
    flat = flatten_space(state.space)
    budget = None
    if evaluations is not None:
        params_hist, results_hist = evaluations
        if isinstance(results_hist, list | tuple):  # `optimize`: one batch per entry
            Xs = [np.asarray(flat.as_matrix(p), float) for p in params_hist]
            ys = [np.asarray(r, float).reshape(-1) for r in results_hist]
        else:  # `optimize_scan` or a checkpoint: stacked `(iterations, n_parallel, ...)`
            results = np.asarray(results_hist, float)
            leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(params_hist)]
            Xs = [
                np.asarray(flat.as_matrix(jax.tree_util.tree_unflatten(flat.treedef, row)), float)
                for row in zip(*[list(leaf) for leaf in leaves], strict=True)
            ]
            ys = [r.reshape(-1) for r in results]
        if len(Xs) != len(ys):
            raise ValueError(
                f"evaluations: {len(Xs)} batches of configurations but {len(ys)} of results."
            )
        sizes = [len(y) for y in ys]
        X = np.concatenate(Xs) if Xs else np.zeros((0, flat.n_params))
        y = np.concatenate(ys) if ys else np.zeros((0,))
        batch = np.repeat(np.arange(len(ys)), sizes)
    elif hasattr(state, "y") and hasattr(state, "mask"):
        held: Any = state  # a state that keeps its observations
        mask = np.asarray(held.mask)
        X, y = np.asarray(held.X, float)[mask], np.asarray(held.y, float)[mask]
        batch = np.arange(len(y)) // getattr(optimizer, "n_parallel", 1)
        if hasattr(held, "budget"):  # a multi-fidelity search's rows
            budget = np.asarray(held.budget)[mask]
    else:
        raise TypeError(
            f"{type(state).__name__} keeps no observations: pass the history that "
            f"`optimize` returned as well, `evaluations=(params_hist, results_hist)`."
        )
    labels: list[tuple[str, ...] | None] = [
        tuple(_label(c) for c in leaf.choices) if isinstance(leaf, CategoricalSpace) else None
        for leaf in _space_leaves(state.space)
    ]
    names = [_name(p) for p in flat.paths] or [f"x{i}" for i in range(flat.n_params)]
    direction = _direction(optimizer, maximize)
    return _Observations(flat, names, labels, X, y, batch, direction, budget)


def _grid_shape(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def _format_axis(axis, obs: _Observations, k: int, which: str) -> None:
    """Log scale, integer ticks or category names for parameter `k` on `which` ('x'/'y')."""
    ax = axis
    set_scale = ax.set_xscale if which == "x" else ax.set_yscale
    axis_obj = ax.xaxis if which == "x" else ax.yaxis
    labels = obs.labels[k]
    if labels is not None:
        axis_obj.set_major_locator(matplotlib.ticker.FixedLocator(range(len(labels))))
        axis_obj.set_major_formatter(matplotlib.ticker.FixedFormatter(labels))
        for t in axis_obj.get_ticklabels():
            t.set_rotation(30 if which == "x" else 0)
    elif obs.flat.log[k]:
        set_scale("log")
    elif obs.flat.integer[k]:
        axis_obj.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))


# -- model-free plots -----------------------------------------------------------------


def history(
    state,
    optimizer=None,
    *,
    evaluations=None,
    maximize: bool | None = None,
) -> Figure:
    """Every result by evaluation, the best so far, failures marked, batches shaded.

    `state` is a `BayesianSearchState`, or any state with `evaluations=(params_hist,
    results_hist)` as `optimize` or `optimize_scan` returned them. The direction is the
    optimizer's `maximize` (or the `maximize` given; larger is better for searches
    without one). Failed evaluations (NaN or inf) are crosses along the bottom edge.
    A multi-fidelity search's state (`HyperbandState`) shows every evaluation coloured
    by its budget, and the best so far among the evaluations at the largest budget (a
    short training's result does not compare with a full one's), as `best_result`.
    """
    obs = _observations(state, optimizer, evaluations, maximize)
    fig = _Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    n = len(obs.y)
    index = np.arange(1, n + 1)
    ok = obs.ok
    if len(np.unique(obs.batch)) < n:  # batches of several evaluations: shade every other
        for b in np.unique(obs.batch)[1::2]:
            where = index[obs.batch == b]
            ax.axvspan(where[0] - 0.5, where[-1] + 0.5, color="0.93", lw=0, zorder=0)
    if obs.budget is None:
        ax.scatter(index[ok], obs.y[ok], s=16, color="tab:blue", label="result", zorder=2)
        best_label = "best so far"
    else:  # coloured by budget; the best among the full trainings
        budgets = obs.budget[ok]
        smallest = max(int(budgets.min()), 1) if len(budgets) else 1
        largest = max(int(budgets.max()), smallest + 1) if len(budgets) else 2
        points = ax.scatter(
            index[ok],
            obs.y[ok],
            s=16,
            c=budgets,
            cmap="viridis",
            norm=matplotlib.colors.LogNorm(smallest, largest),
            label="result",
            zorder=2,
        )
        fig.colorbar(points, ax=ax, label="budget")
        best_label = f"best so far at budget {int(budgets.max())}" if len(budgets) else "best"
    ax.step(index, obs.best_so_far(), where="post", color=_BEST, label=best_label, zorder=3)
    if (~ok).any():
        low, high = ax.get_ylim()
        edge = low if obs.maximize else high
        ax.scatter(
            index[~ok],
            np.full((~ok).sum(), edge),
            marker="x",
            color=_FAILED,
            label=f"failed ({(~ok).sum()})",
            zorder=2,
            clip_on=False,
        )
        ax.set_ylim(low, high)
    ax.set_xlabel("evaluation")
    ax.set_ylabel("result (larger is better)" if obs.maximize else "result (smaller is better)")
    ax.set_xlim(0.5, max(n, 1) + 0.5)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.legend(loc="best", fontsize="small")
    return fig


@functools.lru_cache(maxsize=64)
def _maps(flat: FlatSpace):
    """The space's maps raw <-> unit cube, compiled (op by op they would compile every
    primitive again for each new shape)."""
    return jax.jit(flat.to_unit), jax.jit(flat.from_unit), jax.jit(flat.snap)


def _positions(obs: _Observations, X: np.ndarray) -> np.ndarray:
    """Raw values -> positions in [0, 1] per column (categories evenly spaced)."""
    return np.asarray(_maps(obs.flat)[0](jnp.asarray(X, jnp.float32)), float)


def _raw(obs: _Observations, U: np.ndarray) -> np.ndarray:
    """Positions in the unit cube -> raw values (integers and choices snapped)."""
    return np.asarray(_maps(obs.flat)[1](jnp.asarray(U, jnp.float32)), float)


def parallel(
    state,
    optimizer=None,
    *,
    evaluations=None,
    maximize: bool | None = None,
) -> Figure:
    """Parallel coordinates: one line per evaluation through its parameter values,
    coloured by its result (the best drawn last, on top; failures grey and dashed).

    Each axis spans its space from the lower bound (bottom) to the upper (top), on a
    log scale for log spaces; categorical axes list their choices.
    """
    obs = _observations(state, optimizer, evaluations, maximize)
    d = obs.flat.n_params
    fig = _Figure(figsize=(max(6.0, 1.1 * d + 2.5), 4.5), layout="constrained")
    ax = fig.add_subplot()
    P = _positions(obs, obs.X) if len(obs.y) else np.zeros((0, d))
    ok = obs.ok
    xs = np.arange(d)
    ends = _raw(obs, np.array([[0.0] * d, [1.0] * d]))  # each axis' lowest and highest value
    for row in P[~ok]:
        ax.plot(xs, row, color=_FAILED, lw=0.8, ls="--", alpha=0.6)
    good = obs.y[ok] if obs.maximize else -obs.y[ok]
    order = np.argsort(good)  # worst first, best last (on top)
    cmap = matplotlib.colormaps["viridis"]
    if ok.any():
        norm = matplotlib.colors.Normalize(np.min(good), np.max(good))
        for i in order:
            ax.plot(xs, P[ok][i], color=cmap(norm(good[i])), lw=1.0, alpha=0.8)
    ax.vlines(xs, 0.0, 1.0, color="0.6", lw=0.8, zorder=0)
    for k in range(d):
        labels = obs.labels[k]
        if labels is not None:
            for j, label in enumerate(labels):
                ax.annotate(
                    label,
                    (k, (j + 0.5) / len(labels)),
                    xytext=(3, 0),
                    textcoords="offset points",
                    fontsize="x-small",
                    va="center",
                )
        else:
            lo, hi = ends[0, k], ends[1, k]
            ax.annotate(
                f"{lo:.3g}", (k, 0), xytext=(3, -9), textcoords="offset points", fontsize="x-small"
            )
            ax.annotate(
                f"{hi:.3g}", (k, 1), xytext=(3, 3), textcoords="offset points", fontsize="x-small"
            )
    ax.set_xticks(xs, obs.names, rotation=30 if d > 4 else 0, ha="right" if d > 4 else "center")
    ax.set_yticks([])
    ax.set_xlim(-0.2, d - 0.6)
    ax.set_ylim(-0.05, 1.05)
    if ok.any():
        mappable = matplotlib.cm.ScalarMappable(
            norm=matplotlib.colors.Normalize(*((np.min(obs.y[ok]), np.max(obs.y[ok])))),
            cmap=cmap if obs.maximize else cmap.reversed(),
        )
        fig.colorbar(mappable, ax=ax, label="result")
    return fig


# -- the model -------------------------------------------------------------------------


def _require_model(state, optimizer) -> None:
    from ..bayesian import BayesianSearch, BayesianSearchState

    if not isinstance(optimizer, BayesianSearch) or not isinstance(state, BayesianSearchState):
        raise TypeError(
            "This plot shows the BayesianSearch's model: pass a BayesianSearchState and "
            f"its BayesianSearch (got {type(state).__name__} and {type(optimizer).__name__})."
        )
    n_ok = int(np.sum(np.asarray(state.mask) & np.isfinite(np.asarray(state.y))))
    if n_ok < 2:
        raise ValueError(
            f"The model needs at least two finite results to show anything; the state has {n_ok}."
        )


def _predict_chunks(state, optimizer, U: np.ndarray, chunk: int = 2048):
    """The model at unit-cube points `U` (snapped onto the space): mean, std and the
    acquisition on the model's scale, as NumPy arrays. Evaluated in padded chunks of one
    size, so that every plot of a search uses the same compiled program."""
    flat = flatten_space(state.space)
    out = []
    for start in range(0, len(U), chunk):
        part = U[start : start + chunk]
        padded = np.concatenate([part, np.repeat(part[-1:], chunk - len(part), 0)])
        X = _maps(flat)[1](jnp.asarray(padded, state.X.dtype))
        mean, std, acq = optimizer.predict(state, X)
        out.append([np.asarray(a, float)[: len(part)] for a in (mean, std, acq)])
    return [np.concatenate(parts) for parts in zip(*out, strict=True)]


@functools.partial(jax.jit, static_argnums=(3, 4))
def _results(v, y, mask, maximize, n_params):
    return results_from_model(v, y, mask, maximize, n_params)


def _to_results(state, optimizer, v):
    """Values on the model's scale -> results in the objective's units."""
    n_params = flatten_space(state.space).n_params
    v = jnp.asarray(v, state.y.dtype)
    return np.asarray(_results(v, state.y, state.mask, optimizer.maximize, n_params), float)


def _best_unit(state, optimizer) -> np.ndarray:
    from ..bayesian import _best_index

    row = np.asarray(state.X[_best_index(optimizer, state)], float)
    return _positions(_observations(state, optimizer), row[None, :])[0]


def parameter_importance(
    state, optimizer, *, n_levels: int = 16, n_samples: int = 128, seed: int = 0
) -> dict[str, float]:
    """How much each parameter matters to the model: `{name: share}`, summing to one.

    A variance decomposition of the posterior mean over the search space (as fANOVA
    does for random forests): for each parameter, its main effect is the posterior mean
    averaged over all the other parameters (`n_samples` random points, the same for
    every parameter) as a function of that parameter alone (`n_levels` values across its
    range), and its importance is the variance of that main effect, as a share of the sum
    over all parameters. Interactions are not counted: a parameter that matters only
    together with another one shows less than its due. The posterior mean is on the
    model's scale (results oriented, warped and standardised), so the shares describe
    the region of good results more than the far-off bad ones.
    """
    _require_model(state, optimizer)
    flat = flatten_space(state.space)
    d = flat.n_params
    base = np.random.default_rng(seed).uniform(size=(n_samples, d))
    levels = (np.arange(n_levels) + 0.5) / n_levels
    U = np.repeat(base[None, None], d, 0).repeat(n_levels, 1)  # (d, levels, samples, d)
    for k in range(d):
        U[k, :, :, k] = levels[:, None]
    mean = _predict_chunks(state, optimizer, U.reshape(-1, d))[0]
    main = mean.reshape(d, n_levels, n_samples).mean(axis=2)
    variance = main.var(axis=1)
    total = variance.sum()
    shares = variance / total if total > 0 else np.full(d, 1.0 / d)
    names = _observations(state, optimizer).names
    return dict(zip(names, (float(s) for s in shares), strict=True))


def importance(state, optimizer, **kwargs) -> Figure:
    """`parameter_importance` as a bar chart, the most important parameter on top."""
    shares = parameter_importance(state, optimizer, **kwargs)
    names = sorted(shares, key=shares.__getitem__)
    fig = _Figure(figsize=(6, max(2.0, 0.35 * len(names) + 1.0)), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(names, [shares[n] for n in names], color="tab:blue")
    ax.set_xlabel("share of the posterior mean's main-effect variance")
    ax.set_xlim(0, 1)
    return fig


def _levels(obs: _Observations, k: int, n_points: int) -> np.ndarray:
    """Unit-cube positions along parameter `k`: every value of a discrete column, else a
    fine grid."""
    flat = obs.flat
    if flat.discrete[k] or flat.integer[k]:
        grid = np.linspace(0, 1, max(n_points, 2))
        unit = np.asarray(
            flat.to_unit(
                flat.from_unit(jnp.asarray(np.tile(grid[:, None], (1, flat.n_params)), jnp.float32))
            ),
            float,
        )[:, k]
        return np.unique(unit)
    return np.linspace(0.0, 1.0, n_points)


def slices(state, optimizer, *, n_points: int = 101) -> Figure:
    """The model along each parameter through the best configuration.

    Above: the posterior median in the objective's units with bands of one and two
    standard deviations (the 16-84% and 2-98% quantiles of what the model expects), the
    observations projected onto that parameter, and the best configuration's value
    (vertical line). Below: the acquisition along the same slice. Log axes for log
    spaces, integers as integers, choice names for categorical parameters.
    """
    _require_model(state, optimizer)
    obs = _observations(state, optimizer)
    d = obs.flat.n_params
    best = _best_unit(state, optimizer)
    grids = [_levels(obs, k, n_points) for k in range(d)]
    U = np.concatenate([np.tile(best, (len(g), 1)) for g in grids])
    offsets = np.cumsum([0] + [len(g) for g in grids])
    for k, g in enumerate(grids):
        U[offsets[k] : offsets[k + 1], k] = g
    mean, std, acq = _predict_chunks(state, optimizer, U)
    bands = {s: _to_results(state, optimizer, mean + s * std) for s in (-2, -1, 0, 1, 2)}
    raw = _raw(obs, U)
    best_raw = _raw(obs, best[None, :])[0]
    ok = obs.ok
    finite_y = obs.y[ok]
    span = (finite_y.max() - finite_y.min()) if ok.any() else 1.0
    ylim = (finite_y.min() - 0.15 * span, finite_y.max() + 0.15 * span) if ok.any() else None

    rows, cols = _grid_shape(d)
    fig = _Figure(figsize=(3.4 * cols, 3.4 * rows), layout="constrained")
    outer = fig.add_gridspec(rows, cols)
    for k in range(d):
        inner = outer[k // cols, k % cols].subgridspec(2, 1, height_ratios=(3, 1), hspace=0.05)
        ax = fig.add_subplot(inner[0])
        ax_acq = fig.add_subplot(inner[1], sharex=ax)
        sl = slice(offsets[k], offsets[k + 1])
        x = raw[sl, k]
        categorical = obs.labels[k] is not None
        if categorical:
            err = np.abs(np.stack([bands[0][sl] - bands[-2][sl], bands[2][sl] - bands[0][sl]]))
            ax.errorbar(x, bands[0][sl], yerr=err, fmt="o", color="tab:blue", capsize=3)
            ax_acq.bar(x, acq[sl], color="tab:green", width=0.5)
        else:
            ax.fill_between(x, bands[-2][sl], bands[2][sl], color="tab:blue", alpha=0.15, lw=0)
            ax.fill_between(x, bands[-1][sl], bands[1][sl], color="tab:blue", alpha=0.3, lw=0)
            ax.plot(x, bands[0][sl], color="tab:blue", lw=1.5)
            ax_acq.plot(x, acq[sl], color="tab:green", lw=1.2)
        ax.scatter(obs.X[ok, k], obs.y[ok], s=10, color="k", alpha=0.6, zorder=3)
        ax.axvline(best_raw[k], color=_BEST, lw=1, ls="--")
        ax_acq.axvline(best_raw[k], color=_BEST, lw=1, ls="--")
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.set_title(obs.names[k], fontsize="medium")
        ax.tick_params(labelbottom=False)
        ax_acq.set_yticks([])
        ax_acq.set_ylabel("acq.", fontsize="small")
        _format_axis(ax_acq, obs, k, "x")
        if k % cols == 0:
            ax.set_ylabel("result")
    return fig


def contour(state, optimizer, params: Sequence[str] | None = None, *, n_points: int = 40) -> Figure:
    """The posterior median over two parameters (the others at the best configuration),
    with the observations.

    `params` names the two parameters (as `parameter_importance` names them: dict keys
    joined by dots); by default the two the model finds most important.
    """
    _require_model(state, optimizer)
    obs = _observations(state, optimizer)
    if obs.flat.n_params < 2:
        raise ValueError("contour needs a search space of at least two parameters.")
    if params is None:
        shares = parameter_importance(state, optimizer)
        params = sorted(shares, key=shares.__getitem__, reverse=True)[:2]
    if len(params) != 2 or any(p not in obs.names for p in params):
        raise ValueError(
            f"contour: `params` must name two parameters among {obs.names}, got {params!r}."
        )
    i, j = (obs.names.index(p) for p in params)
    if i == j:
        raise ValueError(f"contour: `params` names the same parameter twice: {params!r}.")
    best = _best_unit(state, optimizer)
    gi, gj = _levels(obs, i, n_points), _levels(obs, j, n_points)
    U = np.tile(best, (len(gi) * len(gj), 1))
    U[:, i] = np.repeat(gi, len(gj))
    U[:, j] = np.tile(gj, len(gi))
    mean = _predict_chunks(state, optimizer, U)[0]
    median = _to_results(state, optimizer, mean).reshape(len(gi), len(gj))
    raw = _raw(obs, U)
    xi, xj = raw[:: len(gj), i], raw[: len(gj), j]
    fig = _Figure(figsize=(6, 5), layout="constrained")
    ax = fig.add_subplot()
    mesh = ax.pcolormesh(
        xi, xj, median.T, shading="nearest", cmap="viridis" if obs.maximize else "viridis_r"
    )
    fig.colorbar(mesh, ax=ax, label="posterior median of the result")
    ok = obs.ok
    ax.scatter(
        obs.X[ok, i], obs.X[ok, j], s=12, color="w", edgecolors="k", lw=0.5, label="observed"
    )
    best_raw = _raw(obs, best[None, :])[0]
    ax.scatter(
        [best_raw[i]], [best_raw[j]], marker="*", s=150, color=_BEST, edgecolors="k", label="best"
    )
    ax.set_xlabel(obs.names[i])
    ax.set_ylabel(obs.names[j])
    _format_axis(ax, obs, i, "x")
    _format_axis(ax, obs, j, "y")
    ax.legend(loc="best", fontsize="small")
    return fig
