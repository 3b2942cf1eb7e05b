"""Bayesian optimisation: spaces -> unit cube -> GP core -> acquisition -> spaces."""

from __future__ import annotations

import math
import warnings
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray, PyTree, Real

from . import gp
from .acquisition import EI, PI, UCB, BaseAcquisition, BaseHallucination, SampleHallucination
from ._typing import typecheck
from .base import Optimizer, OptimizerState, Results, as_results
from .kernels import BaseKernel, Matern, Unordered
from .spaces import FlatSpace, _float_dtype, flatten_space, from_configs

__all__ = ["BayesianSearchState", "BayesianSearch", "recommended"]

_INIT_LOG_NOISE = math.log(1e-3)


def _as_float_array(x):
    return jnp.asarray(x, _float_dtype())


class BayesianSearchState(OptimizerState):
    """State for `BayesianSearch`.

    All arrays are fixed-size (`n_max` is chosen at init) so that one compilation serves
    the whole search; `mask` tracks which slots have been written.

    Attributes:
        X: observed configurations as raw values (what the objective saw), shape
            `(n_max, n_params)`, zero-padded.
        y: observed results, shape `(n_max,)`, zero-padded, raw (never negated,
            whatever `maximize` is; NaN and inf are kept as reported).
        mask: `True` for slots that hold an observation, shape `(n_max,)`.
        log_length_scale: ARD length scales of the GP on the unit cube, in log space,
            shape `(n_params,)`; tuned by Adam after each update.
        log_output_scale: log of the GP output scale (standard deviation), shape `()`.
        log_noise: log of the GP noise variance, shape `()`.
    """

    X: Float[Array, "n_max n_params"]
    y: Float[Array, " n_max"]
    mask: Bool[Array, " n_max"]
    log_length_scale: Float[Array, " n_params"]
    log_output_scale: Float[Array, ""] = eqx.field(default=0.0, converter=_as_float_array)
    log_noise: Float[Array, ""] = eqx.field(default=_INIT_LOG_NOISE, converter=_as_float_array)


# Random evaluations before the model drives, in the recommended settings: enough to see
# the objective's scale and spread across the space before the first model commits.
_RECOMMENDED_WARMUP = 10


def recommended(n_parallel: int = 1) -> dict[str, Any]:
    """The `BayesianSearch.init` settings we recommend, for the active precision and a batch size.

    `BayesianSearch.init(space, n_max=100, **hx.recommended(n_parallel=4))`. The API
    reference fixes the constructor's defaults (`Matern(nu=0.5)`, `PI()`,
    `n_warmup=1`, `n_parallel=4`); these are the settings that did best on the
    development half of the robustness suite (`benchmarks/RESULTS.md`), chosen
    separately for float32 (JAX's default) and for float64 (`jax_enable_x64` on), so
    call it after setting the precision. The returned settings include `n_parallel`
    (the number of configurations evaluated at once; 1 when they run one at a time)
    and an `n_warmup` of that many batches that the first 10 evaluations are uniformly
    random, whatever the batch size.
    """
    _check_int("recommended", "n_parallel", n_parallel, 1)
    common = dict(n_restarts=8, n_lbfgs_steps=30, n_parallel=n_parallel,
                  n_warmup=math.ceil(_RECOMMENDED_WARMUP / n_parallel))
    if gp._f64(_float_dtype()):
        return dict(kernel=Matern(nu=2.5), acquisition=UCB(kappa=1.0), **common)
    return dict(kernel=Matern(nu=1.5), acquisition=EI(), **common)


def _check_int(owner, name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: `{name}` must be an int, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{owner}: `{name}` must be at least {minimum}, got {value!r}.")


def warp_medians(dtype) -> float:
    """The output warp's scale, in median gaps to the best result, for results of `dtype`.

    See `_model_targets`; measured in benchmarks/RESULTS.md ("The output warp in float64",
    "The float32 warp at two median gaps").
    """
    return 10.0 if gp._f64(dtype) else 2.0


_FRESH_EVERY = 8


def _model_targets(y, mask, maximize: bool, n_params: int = 1):
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
    the incumbent in more than two or three dimensions (benchmarks/RESULTS.md, "The seed
    defaults").
    """
    f = y if maximize else -y
    finite = mask & jnp.isfinite(f)
    worst = jnp.min(jnp.where(finite, f, jnp.inf))
    worst = jnp.where(jnp.any(finite), worst, 0.0)
    f = jnp.where(finite, f, worst)
    best = jnp.max(jnp.where(mask, f, -jnp.inf))
    gap = jnp.where(mask, best - f, jnp.nan)
    scale = jnp.nanmedian(gap)
    scale = jnp.where(scale > 0, scale, jnp.nanmax(gap))
    scale = jnp.where(scale > 0, scale, 1.0) * warp_medians(y.dtype)
    g = -jnp.log1p(jnp.where(mask, gap, 0.0) / scale)
    n = jnp.maximum(jnp.sum(mask), 1)
    mean = jnp.sum(jnp.where(mask, g, 0.0)) / n
    std = jnp.sqrt(jnp.sum(jnp.where(mask, (g - mean) ** 2, 0.0)) / n)
    std = jnp.where(std > 0, std, 1.0)
    z = jnp.where(mask, (g - mean) / std, 0.0)
    unit = n_params * jnp.nanmax(gap) / (scale * std)
    unit = jnp.where(jnp.isfinite(unit) & (unit > 0), unit, 1.0)
    return z, unit


class BayesianSearch(Optimizer[BayesianSearchState]):
    """Bayesian optimisation with a Gaussian Process surrogate.

    A GP (Matérn 0.5 kernel by default) models the objective on the unit cube; the next
    batch maximises an acquisition function (PI by default) over random and local
    candidates refined by L-BFGS. ARD length scales, output scale and noise are tuned
    with Adam after each update. Parallel batches come from Kriging Believer: after
    each pick a pseudo-observation from `hallucination` is added and the posterior is
    refitted before the next pick.

    Attributes:
        jitter: small diagonal added to the kernel matrix for numerical stability,
            stated for float32; under `jax_enable_x64` it is scaled down by the ratio of
            the float64 and float32 machine epsilons (see the concepts page).
        kernel: covariance function; its `length_scale` initialises the ARD scales.
        acquisition: acquisition function (default `PI()`).
        n_candidates: random and local candidates scored per pick (default 1000).
        n_restarts: best candidates refined with L-BFGS (default 2).
        n_lbfgs_steps: L-BFGS steps per refinement (default 10).
        n_hparam_steps: Adam steps tuning the GP hyperparameters per update (default
            20); `0` disables tuning.
        n_warmup: iterations of uniformly random suggestions before the GP drives.
        maximize: whether larger results are better (default `True`).
        n_parallel: configurations per batch (default 4).
        hallucination: pseudo-observation strategy for the batch (default
            `SampleHallucination()`).

    For sample efficiency use the settings `recommended()` returns (see
    `benchmarks/RESULTS.md`): `BayesianSearch.init(space, n_max, **recommended(n_parallel=1))`.
    """

    jitter: float = 1e-6
    kernel: BaseKernel = eqx.field(default_factory=lambda: Matern(nu=0.5))
    acquisition: BaseAcquisition = eqx.field(default_factory=PI)
    n_candidates: int = eqx.field(default=1000, static=True)
    n_restarts: int = eqx.field(default=2, static=True)
    n_lbfgs_steps: int = eqx.field(default=10, static=True)
    n_hparam_steps: int = eqx.field(default=20, static=True)
    n_warmup: int = eqx.field(default=1, static=True)
    maximize: bool = eqx.field(default=True, static=True)
    n_parallel: int = eqx.field(default=4, static=True)
    hallucination: BaseHallucination = eqx.field(default_factory=SampleHallucination)

    def __check_init__(self):
        name = type(self).__name__
        _check_int(name, "n_candidates", self.n_candidates, 1)
        _check_int(name, "n_restarts", self.n_restarts, 0)
        _check_int(name, "n_lbfgs_steps", self.n_lbfgs_steps, 0)
        _check_int(name, "n_hparam_steps", self.n_hparam_steps, 0)
        _check_int(name, "n_warmup", self.n_warmup, 0)
        if self.n_restarts > self.n_candidates:
            raise ValueError(
                f"{name}: `n_restarts` ({self.n_restarts}) cannot exceed `n_candidates` "
                f"({self.n_candidates})."
            )
        if not isinstance(self.maximize, bool):
            raise TypeError(f"{name}: `maximize` must be a bool, got {self.maximize!r}.")
        if not isinstance(self.kernel, BaseKernel):
            raise TypeError(f"{name}: `kernel` must be a BaseKernel, got {self.kernel!r}.")
        if not isinstance(self.acquisition, BaseAcquisition):
            raise TypeError(
                f"{name}: `acquisition` must be a BaseAcquisition, got {self.acquisition!r}."
            )
        if not callable(self.hallucination):
            raise TypeError(
                f"{name}: `hallucination` must be callable as (mean, std, key, y_max), "
                f"got {self.hallucination!r}."
            )
        if not isinstance(self.jitter, jax.core.Tracer):
            j = np.asarray(self.jitter)
            if not (np.all(np.isfinite(j)) and np.all(j >= 0)):
                raise ValueError(f"{name}: `jitter` must be finite and non-negative, got {self.jitter!r}.")

    @classmethod
    def init(
        cls, space: PyTree, n_max: int = 200, **kwargs
    ) -> tuple[BayesianSearchState, BayesianSearch]:
        """Build the optimizer from `kwargs` and an empty state with room for `n_max` results."""
        optimizer = cls(**kwargs)
        return optimizer._init_state(space, n_max), optimizer

    def _init_state(self, space: PyTree, n_max: int = 200) -> BayesianSearchState:
        _check_int(type(self).__name__, "n_max", n_max, 1)
        if n_max < self.n_parallel:
            raise ValueError(
                f"{type(self).__name__}: n_max={n_max} cannot hold one batch of "
                f"n_parallel={self.n_parallel} results; pass n_max >= n_parallel."
            )
        flat = flatten_space(space)
        f = _float_dtype()
        ls = jnp.broadcast_to(jnp.asarray(self.kernel.length_scale, f), (flat.n_params,))
        return BayesianSearchState(
            space,
            jnp.zeros((n_max, flat.n_params), f),
            jnp.zeros((n_max,), f),
            jnp.zeros((n_max,), bool),
            jnp.clip(jnp.log(ls), *gp.LOG_LS_BOUNDS),
        )

    def _free_slots(self, state: BayesianSearchState) -> int | None:
        """Unfilled slots of the buffers (`None` for a traced state, which cannot be read)."""
        # numpy, not jnp: under an outer `jit` a jnp sum of a concrete buffer is staged.
        if isinstance(state.mask, jax.core.Tracer):
            return None
        return state.mask.shape[0] - int(np.sum(np.asarray(state.mask)))

    def _default_n_iterations(self, state: BayesianSearchState) -> int:
        free = self._free_slots(state)
        if free is None:
            raise self._traced_default()
        # Whole batches only: a batch that does not fit would lose results.
        return free // self.n_parallel

    def _n_iterations(self, state: BayesianSearchState, n_iterations: int | None) -> int:
        n = super()._n_iterations(state, n_iterations)
        free = self._free_slots(state)
        if n_iterations is not None and free is not None and n * self.n_parallel > free:
            raise ValueError(
                f"{type(self).__name__}: n_iterations={n} batches of n_parallel={self.n_parallel} "
                f"need {n * self.n_parallel} free slots, but the state has {free} "
                f"(n_max={state.mask.shape[0]}); the results that do not fit would be lost. "
                f"Pass a larger `n_max` to `init`, or at most {free // self.n_parallel} iterations."
            )
        return n

    # -- public API -------------------------------------------------------------------

    @typecheck
    def get_next_params(
        self, state: BayesianSearchState, key: PRNGKeyArray, params: Any = None, results: Any = None
    ) -> PyTree:
        """Select the next batch of `n_parallel` configurations.

        While fewer than `n_warmup * n_parallel` results are recorded, candidates are
        uniformly random. Afterwards the GP posterior is used to maximise the
        acquisition function, with Kriging Believer hallucination for the parallel
        slots. Each leaf of the returned pytree has shape `(n_parallel,)`.
        """
        # The compiled step returns one raw matrix; the pytree is built outside it.
        return flatten_space(state.space).unflatten(_suggest(self, state, key))

    @typecheck
    def update_state(  # type: ignore[override]  # `params` is required here (API reference)
        self,
        state: BayesianSearchState,
        key: PRNGKeyArray | None,
        results: Results,
        params: PyTree | Real[ArrayLike, "batch n_params"],
    ) -> BayesianSearchState:
        """Record new observations and update the GP hyperparameters.

        Writes the batch into the next free slots of the buffers, then runs `n_hparam_steps` of Adam on the marginal likelihood once at least two
        observations exist. When fewer slots remain than results, only the first
        ones are recorded, with a warning (a traced state cannot warn: size `n_max`
        for the whole search; `optimize` and `optimize_scan` refuse an `n_iterations`
        that does not fit).

        Args:
            state: current `BayesianSearchState`.
            key: PRNG key (unused; kept for a uniform API).
            results: observed objective values, shape `(n_parallel,)`.
            params: the batched params pytree from `get_next_params` (each leaf
                `(n_parallel,)`) or a raw `(n_parallel, n_params)` array.
        """
        _check_params(params, flatten_space(state.space), self.n_parallel)
        results = as_results(results, self.n_parallel, type(self).__name__)
        free = self._free_slots(state)
        if free is not None and free < self.n_parallel:
            warnings.warn(
                f"{type(self).__name__}.update_state: the state is full (n_max="
                f"{state.mask.shape[0]}); {self.n_parallel - free} of these {self.n_parallel} "
                f"results are not recorded and cannot be the best result. Pass a larger "
                f"`n_max` to `init` for longer searches.",
                stacklevel=2,
            )
        return _update(self, state, results, params)

    @typecheck
    def warm_start(
        self,
        state: BayesianSearchState,
        params: PyTree | Real[ArrayLike, "n n_params"] | list | BayesianSearchState,
        results: Results | None = None,
    ) -> BayesianSearchState:
        """Record observations made earlier, then fit the GP hyperparameters to them.

        `params` is any number `n` of configurations: a batched pytree (each leaf
        `(n,)`), a raw `(n, n_params)` array, or a list of configurations such as dicts
        of Python values (see `to_configs`), with `results` of shape `(n,)`. Or it is
        another run's `BayesianSearchState` (for example from `load_state`) over the
        same search space, and `results` is left out. Values must lie in the search
        space; results may be NaN or inf (recorded as failures). More observations
        than free slots raise a `ValueError`.
        """
        name = f"{type(self).__name__}.warm_start"
        flat = flatten_space(state.space)
        if isinstance(params, BayesianSearchState):
            if results is not None:
                raise ValueError(f"{name}: pass `results` only with `params`, not with a state.")
            if flatten_space(params.space).columns != flat.columns:
                raise ValueError(
                    f"{name}: the given state searches {params.space!r}, not this search's "
                    f"space {state.space!r}."
                )
            keep = np.asarray(params.mask)
            X, y = np.asarray(params.X)[keep], np.asarray(params.y)[keep]
        else:
            if isinstance(params, list | tuple) and not _is_matrix(params):
                params = from_configs(params, state.space)
            n = _n_rows(params)
            _check_params(params, flat, n, owner=name)
            X = np.asarray(_params_matrix(params, flat))
            if results is None:
                raise ValueError(f"{name}: `results` (shape ({n},)) is required with `params`.")
            y = np.asarray(as_results(results, n, type(self).__name__, method="warm_start"))
        if len(y) == 0:
            return state
        flat.check_values(X, name)
        free = self._free_slots(state)
        if free is not None and len(y) > free:
            raise ValueError(
                f"{name}: {len(y)} observations do not fit in the {free} free slots of the "
                f"state (n_max={state.mask.shape[0]}); pass a larger `n_max` to `init`."
            )
        f = state.X.dtype
        return _update(self, state, jnp.asarray(y, f), jnp.asarray(X, f))

    @typecheck
    def predict(
        self, state: BayesianSearchState, params: PyTree | Real[ArrayLike, "q n_params"]
    ) -> tuple[Float[Array, " q"], Float[Array, " q"], Float[Array, " q"]]:
        """The surrogate model at `params`: posterior mean, std and acquisition value.

        `params` is a batched params pytree (each leaf `(q,)`) or a raw `(q, n_params)`
        array. Everything is on the model's internal scale, where larger is better
        and 1.0 is the range of results observed so far times the number of
        parameters (results oriented, warped and standardised; see the concepts
        page), with the current hyperparameters.
        For plots and diagnostics; the search itself does not call it.
        """
        flat = flatten_space(state.space)
        _check_params(params, flat, _n_rows(params), owner=f"{type(self).__name__}.predict")
        return _predict(self, state, _params_matrix(params, flat))

    @typecheck
    def best_result(self, state: BayesianSearchState) -> Float[Array, ""]:
        """The observed raw result of `best_params`' configuration; NaN if none is finite.

        For a deterministic objective this is the best result observed (max if
        `maximize`, min otherwise). With noisy results it can be a little worse than the
        luckiest one: see `best_params`.
        """
        ok = state.mask & jnp.isfinite(state.y)
        return jnp.where(jnp.any(ok), state.y[_best_index(self, state)], jnp.nan)

    @typecheck
    def best_params(self, state: BayesianSearchState) -> PyTree:
        """The observed configuration (each leaf a scalar) the model believes best.

        With noisy results the luckiest observation is not the best configuration: a
        mediocre one with a lucky draw beats a good one with an unlucky draw. So among
        the observations whose result the fitted noise cannot tell apart from the best
        (within two noise standard deviations), this is the one with the largest
        posterior mean. When the model interpolates the results (a deterministic
        objective: the fitted noise is at its floor), that is the best observed result.
        """
        flat = flatten_space(state.space)
        row = state.X[_best_index(self, state)]
        return jax.tree_util.tree_map(lambda leaf: leaf[0], flat.unflatten(row[None, :]))


@eqx.filter_jit
def _best_index(opt: BayesianSearch, state: BayesianSearchState) -> Array:
    """The row of `best_params`: see its docstring."""
    flat = flatten_space(state.space)
    ok = state.mask & jnp.isfinite(state.y)
    z, _ = _model_targets(state.y, state.mask, opt.maximize)
    params = _gp_params(state)
    post = gp.fit(_model_kernel(opt, flat), params, _unit_inputs(flat, state), z, state.mask, opt.jitter)
    # The targets are standardised, and the noise variance is on their scale.
    noise_sd = jnp.sqrt(gp.diagonal(params, opt.jitter, z.dtype))
    z_best = jnp.max(jnp.where(ok, z, -jnp.inf))
    eligible = ok & (z >= z_best - 2.0 * noise_sd)
    mean = gp.fitted_mean(post, z, opt.jitter)
    return jnp.argmax(jnp.where(eligible, mean, -jnp.inf))


def _check_params(
    params, flat: FlatSpace, n_parallel: int, owner: str = "BayesianSearch.update_state"
) -> None:
    """Check that a batch of params is a pytree or raw matrix of the expected shape."""
    expected = f"a params pytree with {flat.n_params} leaves of shape ({n_parallel},) " \
               f"or an array of shape ({n_parallel}, {flat.n_params})"
    if _is_matrix(params):
        if params.shape != (n_parallel, flat.n_params):
            raise ValueError(
                f"{owner}: `params` must be {expected}; got an array of shape {params.shape}."
            )
        return
    shapes = [jnp.shape(leaf) for leaf in jax.tree_util.tree_leaves(params)]
    if len(shapes) != flat.n_params or any(s != (n_parallel,) for s in shapes):
        raise ValueError(f"{owner}: `params` must be {expected}; got leaves of shapes {shapes}.")


def _n_rows(params) -> int:
    """The batch size of a params pytree or matrix (0 if it cannot be told)."""
    if _is_matrix(params):
        return params.shape[0]
    shapes = [jnp.shape(leaf) for leaf in jax.tree_util.tree_leaves(params)]
    return shapes[0][0] if shapes and len(shapes[0]) == 1 else 0


def _is_matrix(params) -> bool:
    return isinstance(params, jax.Array | np.ndarray) and np.ndim(params) == 2


def _params_matrix(params, flat: FlatSpace) -> Array:
    """A checked batch of params (pytree or raw matrix) as `(n, d)` floats; traceable."""
    if _is_matrix(params):
        return jnp.asarray(params, _float_dtype())
    return flat.flatten(params)


def _model_kernel(opt: BayesianSearch, flat: FlatSpace) -> BaseKernel:
    """The kernel the GP uses: the configured one, with categorical columns unordered."""
    if any(flat.n_choices):
        return Unordered(opt.kernel, flat.n_choices)
    return opt.kernel


def _gp_params(state: BayesianSearchState) -> gp.GPParams:
    return gp.GPParams(state.log_length_scale, state.log_output_scale, state.log_noise)


def _unit_inputs(flat: FlatSpace, state: BayesianSearchState) -> Array:
    return jnp.where(state.mask[:, None], flat.to_unit(state.X), 0.0)


@eqx.filter_jit
def _update(opt: BayesianSearch, state: BayesianSearchState, results, params) -> BayesianSearchState:
    flat = flatten_space(state.space)
    X_new = _params_matrix(params, flat)
    n_old = jnp.sum(state.mask)
    idx = n_old + jnp.arange(X_new.shape[0])
    state = eqx.tree_at(
        lambda s: (s.X, s.y, s.mask),
        state,
        (
            state.X.at[idx].set(X_new, mode="drop"),
            state.y.at[idx].set(results, mode="drop"),
            state.mask.at[idx].set(True, mode="drop"),
        ),
    )
    if opt.n_hparam_steps == 0:
        return state
    U, (z, _) = _unit_inputs(flat, state), _model_targets(state.y, state.mask, opt.maximize)

    # The fresh starts of the fit cost twice what refining the last fit does, so after the
    # first 16 observations they run when the count passes a multiple of 8.
    n_new = jnp.sum(state.mask)
    fresh = (n_new <= _FRESH_EVERY * 2) | (n_new // _FRESH_EVERY != n_old // _FRESH_EVERY)

    def refit():
        return gp.fit_hyperparameters(
            _model_kernel(opt, flat), _gp_params(state), U, z, state.mask, opt.jitter, opt.n_hparam_steps,
            fresh_starts=fresh,
        )

    p = jax.lax.cond(jnp.sum(state.mask) >= 2, refit, lambda: _gp_params(state))
    return eqx.tree_at(
        lambda s: (s.log_length_scale, s.log_output_scale, s.log_noise),
        state,
        (p.log_length_scale, p.log_output_scale, p.log_noise),
    )


@eqx.filter_jit
def _predict(opt: BayesianSearch, state: BayesianSearchState, X):
    flat = flatten_space(state.space)
    z, unit = _model_targets(state.y, state.mask, opt.maximize, flat.n_params)
    kernel = _model_kernel(opt, flat)
    post = gp.fit(kernel, _gp_params(state), _unit_inputs(flat, state), z, state.mask, opt.jitter)
    mean, std = gp.predict(kernel, post, flat.to_unit(X))
    y_best = _incumbent(post, z, opt.jitter) / unit
    return mean / unit, std / unit, opt.acquisition(mean / unit, std / unit, y_best)


def _incumbent(post: gp.Posterior, z, jitter) -> Array:
    """The best value the model believes was observed: the largest posterior mean at the
    observed points (`-inf` when there are none).

    It is the best result itself when the model interpolates the results. When the fit
    explains part of them as noise (a rugged objective such as Ackley's), the best result
    is partly luck that no point can be expected to beat; measured against it, EI and PI
    only see improvement where the model is most uncertain, in the corners of the cube
    (benchmarks/RESULTS.md, "The incumbent the acquisitions measure against").
    """
    return jnp.max(jnp.where(post.mask, gp.fitted_mean(post, z, jitter), -jnp.inf))


def _candidates(key, x_best, n: int, d: int) -> Array:
    """Uniform points plus a quarter of points scattered around the incumbent.

    The local points are Gaussian around the incumbent with a standard deviation
    log-uniform in [1e-3, 0.2] (fine exploitation to a wide neighbourhood). All of it
    comes from one uniform draw (normals by the inverse CDF): every random-number call
    compiles its own generator, which dominated the compile time.
    """
    n_local = n // 4
    u = jax.random.uniform(key, (n, d + 1), x_best.dtype)
    uniform, local, r = u[: n - n_local, :d], u[n - n_local :, :d], u[n - n_local :, d:]
    radius = jnp.exp(math.log(1e-3) + r * (math.log(0.2) - math.log(1e-3)))
    eps = jnp.finfo(x_best.dtype).eps
    local = x_best[None, :] + radius * ndtri(jnp.clip(local, eps, 1.0 - eps))
    return jnp.concatenate([uniform, jnp.clip(local, 0.0, 1.0)])


def _restart_indices(scores, r: int) -> Array:
    """Best `r` candidates to refine, half of them from the uniform part.

    The near-incumbent candidates usually score best, so a plain top-`r` would refine
    only around the incumbent and miss a better basin that a uniform candidate found.
    """
    n = scores.shape[0]
    n_uniform = n - n // 4
    r_uniform = (r + 1) // 2
    if r < 2 or r_uniform > n_uniform or r - r_uniform > n - n_uniform:
        return jax.lax.top_k(scores, r)[1]
    top_u = jax.lax.top_k(scores[:n_uniform], r_uniform)[1]
    top_l = jax.lax.top_k(scores[n_uniform:], r - r_uniform)[1] + n_uniform
    return jnp.concatenate([top_u, top_l])


@eqx.filter_jit
def _suggest(opt: BayesianSearch, state: BayesianSearchState, key: PRNGKeyArray) -> PyTree:
    flat = flatten_space(state.space)
    n_obs = jnp.sum(state.mask)
    n_finite = jnp.sum(state.mask & jnp.isfinite(state.y))
    use_gp = (n_obs >= opt.n_warmup * opt.n_parallel) & (n_finite >= 1)
    return flat.from_unit(_gp_batch(opt, state, flat, key, use_gp))


def _gp_batch(opt: BayesianSearch, state: BayesianSearchState, flat: FlatSpace, key, use_gp) -> Array:
    """Kriging Believer: pick, hallucinate, refit, `n_parallel` times, as one scan.

    While `use_gp` is false (warm-up, or no finite result yet) each pick is the first
    of its uniformly random candidates instead: one code path, compiled once.
    """
    n_max, d, P = state.X.shape[0], flat.n_params, opt.n_parallel
    params = _gp_params(state)
    kernel = _model_kernel(opt, flat)
    U = _unit_inputs(flat, state)
    z, unit = _model_targets(state.y, state.mask, opt.maximize, flat.n_params)
    i_best = jnp.argmax(jnp.where(state.mask, z, -jnp.inf))
    x_best = U[i_best]
    snaps = bool(flat.integer.any())

    def snap(x):
        # Integer and discrete columns go to their cell centres, so scores are honest.
        return flat.to_unit(flat.from_unit(x)) if snaps else x

    def body(carry, inputs):
        X, y, m = carry
        j, k = inputs
        k_cand, k_hall = jax.random.split(k)
        post = gp.fit(kernel, params, X, y, m, opt.jitter)
        # The believer takes its pseudo-observations for real: a hallucinated value
        # above the best becomes the incumbent the next picks must beat.
        y_best = _incumbent(post, y, opt.jitter)

        def score(Xq):
            mean, std = gp.predict(kernel, post, Xq)
            s = opt.acquisition.score(mean / unit, std / unit, y_best / unit)
            return jnp.where(jnp.isnan(s), -jnp.inf, s)

        def penalised(Xq):
            s = score(Xq)
            if snaps:  # a snapped point may coincide with one already taken
                same = jnp.all(Xq[:, None, :] == X[None, :, :], axis=-1) & m[None, :]
                s = jnp.where(jnp.any(same, axis=1), -jnp.inf, s)
            return s

        cands = snap(_candidates(k_cand, x_best, opt.n_candidates, d))
        s_c = penalised(cands)
        if opt.n_restarts > 0 and opt.n_lbfgs_steps > 0:
            starts = cands[_restart_indices(s_c, opt.n_restarts)]
            refined, s_r = gp.maximize_acquisition(score, starts, opt.n_lbfgs_steps)
            if snaps:  # snapping moves the point: score it where it will be evaluated
                refined = snap(refined)
                s_r = penalised(refined)
            cands = jnp.concatenate([cands, refined])
            s_c = jnp.concatenate([s_c, jnp.where(jnp.isnan(s_r), -jnp.inf, s_r)])
        x = jnp.where(use_gp, cands[jnp.argmax(s_c)], cands[0])
        mean, std = gp.predict(kernel, post, x[None, :])
        # A scalar; hallucinations written for hyperoptax 0.2.0 return shape (1,).
        h = unit * jnp.reshape(opt.hallucination(mean[0] / unit, std[0] / unit, k_hall, y_best / unit), ())
        slot = n_max + j
        return (X.at[slot].set(x), y.at[slot].set(h), m.at[slot].set(True)), x

    f = U.dtype
    carry = (
        jnp.concatenate([U, jnp.zeros((P, d), f)]),
        jnp.concatenate([z, jnp.zeros((P,), f)]),
        jnp.concatenate([state.mask, jnp.zeros((P,), bool)]),
    )
    _, xs = jax.lax.scan(body, carry, (jnp.arange(P), jax.random.split(key, P)))
    return xs
