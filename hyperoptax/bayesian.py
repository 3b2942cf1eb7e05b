"""Bayesian optimisation: spaces -> unit cube -> GP core -> acquisition -> spaces."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray, PyTree, Real

from . import gp
from ._checks import check_callable, check_int, check_real, is_traced, plain
from ._dtypes import float_dtype, is_f64
from ._jit import jit
from ._suggest import believer_batch, incumbent
from ._targets import model_targets
from ._typing import typecheck
from ._warn import warn
from .acquisition import EI, PI, UCB, BaseAcquisition, BaseHallucination, SampleHallucination
from .base import Optimizer, OptimizerState, Results, as_results, batch_length
from .kernels import BaseKernel, Matern, Unordered
from .spaces import FlatSpace, as_batch, flatten_space, from_configs, is_matrix

__all__ = ["BayesianSearchState", "BayesianSearch", "recommended"]

_INIT_LOG_NOISE = math.log(1e-3)


def _as_float_array(x):
    return jnp.asarray(x, float_dtype())


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
    n_parallel = check_int("recommended", "n_parallel", n_parallel, 1)
    common = dict(
        n_restarts=8,
        n_lbfgs_steps=30,
        n_parallel=n_parallel,
        n_warmup=math.ceil(_RECOMMENDED_WARMUP / n_parallel),
    )
    if is_f64(float_dtype()):
        return dict(kernel=Matern(nu=2.5), acquisition=UCB(kappa=1.0), **common)
    return dict(kernel=Matern(nu=1.5), acquisition=EI(), **common)


_FRESH_EVERY = 8


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
    n_candidates: int = eqx.field(default=1000, static=True, converter=plain)
    n_restarts: int = eqx.field(default=2, static=True, converter=plain)
    n_lbfgs_steps: int = eqx.field(default=10, static=True, converter=plain)
    n_hparam_steps: int = eqx.field(default=20, static=True, converter=plain)
    n_warmup: int = eqx.field(default=1, static=True, converter=plain)
    maximize: bool = eqx.field(default=True, static=True, converter=plain)
    n_parallel: int = eqx.field(default=4, static=True, converter=plain)
    hallucination: BaseHallucination = eqx.field(default_factory=SampleHallucination)

    def __check_init__(self):
        name = type(self).__name__
        check_int(name, "n_candidates", self.n_candidates, 1)
        check_int(name, "n_restarts", self.n_restarts, 0)
        check_int(name, "n_lbfgs_steps", self.n_lbfgs_steps, 0)
        check_int(name, "n_hparam_steps", self.n_hparam_steps, 0)
        check_int(name, "n_warmup", self.n_warmup, 0)
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
        check_callable(
            name, "hallucination", self.hallucination, "hallucination(mean, std, key, y_max)"
        )
        check_real(name, "jitter", self.jitter, "non-negative")

    @classmethod
    def init(
        cls, space: PyTree, n_max: int = 200, **kwargs
    ) -> tuple[BayesianSearchState, BayesianSearch]:
        """Build the optimizer from `kwargs` and an empty state with room for `n_max` results."""
        optimizer = cls(**kwargs)
        return optimizer._init_state(space, n_max), optimizer

    def _init_state(self, space: PyTree, n_max: int = 200) -> BayesianSearchState:
        n_max = check_int(type(self).__name__, "n_max", n_max, 1)
        if n_max < self.n_parallel:
            raise ValueError(
                f"{type(self).__name__}: n_max={n_max} cannot hold one batch of "
                f"n_parallel={self.n_parallel} results; pass n_max >= n_parallel."
            )
        flat = flatten_space(space)
        # The length scale as an array argument: a new value must not compile anew.
        dtype = float_dtype()
        ls = jnp.asarray(self.kernel.length_scale, dtype)
        arrays = _empty_buffers(ls, n_max, flat.n_params, dtype)
        return BayesianSearchState(space, *arrays)

    def _free_slots(self, state: BayesianSearchState) -> int | None:
        """Unfilled slots of the buffers (`None` for a traced state, which cannot be read)."""
        # numpy, not jnp: under an outer `jit` a jnp sum of a concrete buffer is staged.
        if is_traced(state.mask):
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
        self,
        state: BayesianSearchState,
        key: PRNGKeyArray,
        params: Any = None,
        results: Any = None,
        *,
        pending: PyTree | Real[ArrayLike, "p n_params"] | list | None = None,
    ) -> PyTree:
        """Select the next batch of `n_parallel` configurations.

        While fewer than `n_warmup * n_parallel` results are recorded, candidates are
        uniformly random. Afterwards the GP posterior is used to maximise the
        acquisition function, with Kriging Believer hallucination for the parallel
        slots. Each leaf of the returned pytree has shape `(n_parallel,)`. `params` and
        `results` (the previous batch) are unused: the state already holds every
        recorded result; they are in the signature the API reference gives every
        optimizer.

        `pending` are configurations suggested earlier whose results are not in yet
        (asynchronous workers): a batched params pytree (each leaf `(p,)`), a raw
        `(p, n_params)` array or a list of configurations (see `to_configs`). The model
        treats each as the batch's own picks: a pseudo-observation from
        `hallucination` is added there before the first pick, so the suggestions keep
        away from work in progress. The pending configurations are padded to a power of
        two, so that each power compiles once.
        """
        flat = flatten_space(state.space)
        running = np.zeros((0, flat.n_params))
        if pending is not None:
            where = f"{type(self).__name__}.get_next_params"
            running = _configurations(state.space, pending, where)
        slots = 1 << (len(running) - 1).bit_length() if len(running) else 0
        return self._ask(state, key, running, slots)

    def _asynchronous(self) -> BayesianSearch:
        # One pick at a time; the warm-up stays as many random evaluations.
        return dataclasses.replace(self, n_parallel=1, n_warmup=self.n_warmup * self.n_parallel)

    def _ask(self, state, key, running, n_slots):
        flat = flatten_space(state.space)
        # The compiled step returns one raw matrix; the pytree is built outside it.
        if n_slots == 0:
            return flat.unflatten(suggest_raw(self, state, key))
        rows = np.zeros((n_slots, flat.n_params))
        rows[: len(running)] = running
        valid = jnp.arange(n_slots) < len(running)
        # Padding rows sit at the centre of the cube (and are masked out).
        unit = jnp.where(valid[:, None], flat.to_unit(jnp.asarray(rows, state.X.dtype)), 0.5)
        return flat.unflatten(suggest_raw(self, state, key, unit, valid))

    @typecheck
    def update_state(  # type: ignore[override]  # `params` is required here (API reference)
        self,
        state: BayesianSearchState,
        key: PRNGKeyArray | None,
        results: Results,
        params: PyTree | Real[ArrayLike, "batch n_params"],
    ) -> BayesianSearchState:
        """Record new observations and update the GP hyperparameters.

        Writes the results into the next free slots of the buffers, then runs
        `n_hparam_steps` of Adam on the marginal likelihood once at least two
        observations exist. A batch may hold any number `k >= 1` of results, not only
        `n_parallel`: asynchronous workers record each configuration when it finishes
        (each `k` compiles once). When fewer slots remain than results, only the first
        ones are recorded, with a warning (a traced state cannot warn: size `n_max`
        for the whole search; `optimize` and `optimize_scan` refuse an `n_iterations`
        that does not fit).

        Args:
            state: current `BayesianSearchState`.
            key: PRNG key (unused; kept for a uniform API).
            results: observed objective values, shape `(k,)` (usually `(n_parallel,)`).
            params: the configurations of the results: a batched params pytree (each
                leaf `(k,)`, as `get_next_params` returns) or a raw `(k, n_params)`
                array. Values must lie in the search space: a concrete batch with one
                outside it (a bound crossed, a fraction for an integer, not a member of
                a discrete space, NaN) raises a `ValueError` naming the parameter,
                because the model cannot place it on its unit cube.
        """
        name = type(self).__name__
        flat = flatten_space(state.space)
        where = f"{name}.update_state"
        k = batch_length(results, where)
        m = flat.batch_size(params)
        if m and m != k:
            raise ValueError(
                f"{where}: {k} results for {m} configurations in `params`; pass one result "
                f"per configuration."
            )
        flat.check_batch(params, k, where)
        flat.check_given(params, where)
        results = as_results(results, k, name, method="update_state")
        free = self._free_slots(state)
        if free is not None and free < k:
            warn(
                f"{name}.update_state: the state is full (n_max="
                f"{state.mask.shape[0]}); {k - free} of these {k} "
                f"results are not recorded and cannot be the best result. Pass a larger "
                f"`n_max` to `init` for longer searches."
            )
        return _update(self, state, results, params)

    @typecheck
    def warm_start(
        self,
        state: BayesianSearchState,
        params: PyTree | Real[ArrayLike, "n n_params"] | list | OptimizerState,
        results: Results | Real[ArrayLike, ""] | None = None,
    ) -> BayesianSearchState:
        """Record observations made earlier, then fit the GP hyperparameters to them.

        `params` is any number `n` of configurations: a batched pytree (each leaf
        `(n,)`), a raw `(n, n_params)` array, or a list of configurations such as dicts
        of Python values (see `to_configs`), with `results` of shape `(n,)`; a single
        configuration (every leaf a scalar, as `best_params` returns it) may come with a
        scalar result. Or it is
        another run's `BayesianSearchState` (for example from `load_state`) over the
        same search space, and `results` is left out; or a `HyperbandState`, whose
        evaluations at the largest budget it reached (the full trainings) are recorded,
        for a search that goes on at that budget. Values must lie in the search
        space; results may be NaN or inf (recorded as failures). More observations
        than free slots raise a `ValueError`.
        """
        from .hyperband import HyperbandState  # it builds on this module

        name = f"{type(self).__name__}.warm_start"
        flat = flatten_space(state.space)
        if isinstance(params, OptimizerState):
            if not isinstance(params, BayesianSearchState | HyperbandState):
                raise TypeError(
                    f"{name}: {type(params).__name__} keeps no results; pass the "
                    f"configurations and results its search returned, `warm_start(state, "
                    f"params, results)` for each batch of `optimize`'s history."
                )
            if results is not None:
                raise ValueError(f"{name}: pass `results` only with `params`, not with a state.")
            if flatten_space(params.space).columns != flat.columns:
                raise ValueError(
                    f"{name}: the given state searches {params.space!r}, not this search's "
                    f"space {state.space!r}."
                )
            keep = np.asarray(params.mask)
            if isinstance(params, HyperbandState) and keep.any():
                budget = np.asarray(params.budget)
                keep = keep & (budget == budget[keep].max())  # the full trainings
            X, y = np.asarray(params.X)[keep], np.asarray(params.y)[keep]
        else:
            single = False
            if not isinstance(params, list | tuple):  # not a list of configurations
                params, single = as_batch(params)
            X = _configurations(state.space, params, name)
            n = len(X)
            if results is None:
                raise ValueError(f"{name}: `results` (shape ({n},)) is required with `params`.")
            if single:  # a scalar result for the one configuration
                results = jnp.atleast_1d(jnp.asarray(results))
            y = np.asarray(as_results(results, n, type(self).__name__, method="warm_start"))
        if len(y) == 0:
            return state
        free = self._free_slots(state)
        if free is not None and len(y) > free:
            raise ValueError(
                f"{name}: {len(y)} observations do not fit in the {free} free slots of the "
                f"state (n_max={state.mask.shape[0]}); pass a larger `n_max` to `init`."
            )
        dtype = state.X.dtype
        return _update(self, state, jnp.asarray(y, dtype), jnp.asarray(X, dtype))

    @typecheck
    def predict(
        self, state: BayesianSearchState, params: PyTree | Real[ArrayLike, "q n_params"]
    ) -> tuple[Float[Array, " q"], Float[Array, " q"], Float[Array, " q"]]:
        """The surrogate model at `params`: posterior mean, std and acquisition value.

        `params` is a batched params pytree (each leaf `(q,)`) or a raw `(q, n_params)`
        array; a single configuration (every leaf a scalar, as `best_params` returns it)
        is a batch of one. Everything is on the model's internal scale, where larger is better
        and 1.0 is the range of results observed so far times the number of
        parameters (results oriented, warped and standardised; see the concepts
        page), with the current hyperparameters.
        For plots and diagnostics; the search itself does not call it.
        """
        flat = flatten_space(state.space)
        params, _ = as_batch(params)
        flat.check_batch(params, flat.batch_size(params), f"{type(self).__name__}.predict")
        return _predict(self, state, flat.as_matrix(params))

    @typecheck
    def best_result(self, state: BayesianSearchState, observed: bool = False) -> Float[Array, ""]:
        """The observed raw result of `best_params`' configuration; NaN if none is finite.

        With `observed=True`, or a deterministic objective that the model interpolates,
        this is the best result observed (max if `maximize`, min otherwise). With noisy
        results it can be a little worse than the luckiest one: see `best_params`.
        """
        ok = state.mask & jnp.isfinite(state.y)
        return jnp.where(jnp.any(ok), state.y[self._best_row(state, observed)], jnp.nan)

    @typecheck
    def best_params(self, state: BayesianSearchState, observed: bool = False) -> PyTree:
        """The observed configuration (each leaf a scalar) the model believes best, or with
        `observed=True` the one with the best observed result.

        Raises a `ValueError` while no observation has a finite result (none recorded,
        or every one NaN or inf): there is no configuration to report.

        With noisy results the luckiest observation is not the best configuration: a
        mediocre one with a lucky draw beats a good one with an unlucky draw. So among
        the observations whose result the noise cannot tell apart from the best (within
        two noise standard deviations), this is the one with the largest posterior mean.
        The model that decides is the search's own (`kernel`, as the last update fitted
        it) or a smooth `Matern(2.5)` fitted to the results when this is called,
        whichever predicts each result better from the others (leave-one-out),
        because a rough kernel such as the default `Matern(0.5)` can explain noise as
        roughness and report the luckiest observation. The noise is the fitted one,
        scaled down where configurations evaluated close together give results closer
        than it allows (`gp.replicate_noise_bound`): a smooth model can explain a
        rugged objective's ripples as noise, while results that nearly repeat where
        configurations nearly repeat show there is little. When the model interpolates
        the results, or the near-replicates repeat exactly, this is the best observed
        result.

        When the results are exact (a deterministic objective: a simulation, or a
        training whose every source of randomness is fixed and whose result you would
        accept as measured), pass `observed=True`: the best observed configuration is
        then the best one known, and the model could only report one you have seen do
        worse (a smooth model can take a rugged objective's ripples for noise). This is
        what Optuna's `GPSampler(deterministic_objective=True)` assumes. It also skips
        the two model fits the default makes, so it costs next to nothing.
        """
        flat = flatten_space(state.space)
        message = f"{type(self).__name__}.best_params: no observation has a finite result yet."
        traced = is_traced(state.y) or is_traced(state.mask)
        if not traced and not np.any(np.asarray(state.mask) & np.isfinite(np.asarray(state.y))):
            raise ValueError(message)
        row = state.X[self._best_row(state, observed)]
        if traced:  # under jit or vmap: the same error, raised when the program runs
            row = eqx.error_if(row, ~jnp.any(state.mask & jnp.isfinite(state.y)), message)
        return jax.tree_util.tree_map(lambda leaf: leaf[0], flat.unflatten(row[None, :]))

    def _best_row(self, state: BayesianSearchState, observed: bool) -> Array:
        """The row `best_params` reports: the model's choice, or the best observed."""
        if observed:
            return _best_observed(state.y, state.mask, self.maximize)
        return _best_index(self, state)


def _configurations(space: PyTree, params, where: str) -> np.ndarray:
    """Configurations given as a batched pytree, a raw matrix or a list of configurations
    (`to_configs`' form), checked to lie in the space, as an `(n, n_params)` array."""
    flat = flatten_space(space)
    if isinstance(params, list | tuple) and not is_matrix(params):
        if len(params) == 0:
            return np.zeros((0, flat.n_params))
        params = from_configs(params, space)
    flat.check_batch(params, flat.batch_size(params), where)
    X = flat.check_given(params, where)
    if X is None:
        raise TypeError(f"{where}: configurations must be concrete values, not traced ones.")
    return X


# The smooth kernel `best_params` weighs against the search's own, and the Adam steps of
# each fit it makes.
REPORT_KERNEL = Matern(nu=2.5)
REPORT_FIT_STEPS = 200
# How correlated two observations' latent values must be for `best_params` to take them
# as near-replicates (`gp.replicate_noise_bound`).
REPLICATE_CORRELATION = 0.99


@jit
def _empty_buffers(length_scale, n_max: int, n_params: int, dtype):
    """An empty state's buffers and starting log length scales, built as one program
    (op by op, each array would compile one of its own)."""
    ls = jnp.broadcast_to(length_scale, (n_params,))
    return (
        jnp.zeros((n_max, n_params), dtype),
        jnp.zeros((n_max,), dtype),
        jnp.zeros((n_max,), bool),
        jnp.clip(jnp.log(ls), *gp.LOG_LS_BOUNDS),
    )


@jit
def _best_observed(y, mask, maximize: bool) -> Array:
    """The row of the best finite observed result (row 0 when none is finite)."""
    value = y if maximize else -y
    return jnp.argmax(jnp.where(mask & jnp.isfinite(y), value, -jnp.inf))


@jit
def _best_index(search: BayesianSearch, state: BayesianSearchState) -> Array:
    """The row of `best_params`: see its docstring.

    Which observed configuration is best is a question of telling noise from signal,
    which a GP answers through its kernel, and the two kernels that matter answer it
    differently: a rough one (the default `Matern(0.5)`) can explain noisy results as a
    rough objective (its fitted noise stays at the floor, and the luckiest observation
    would be reported), a smooth one (`REPORT_KERNEL`) must explain a rugged
    deterministic objective's ripples as noise (and would report a smoothed-over
    choice). So the search's model as its last update fitted it and the smooth one,
    fitted here (`REPORT_FIT_STEPS` of Adam, with `gp.fit_hyperparameters`' fresh
    starts), are compared, and the one that predicts each result better from the
    others (`gp.neg_loo_log_density`) ranks the observations: on noisy Branin the smooth
    model wins, on Ackley's function the rough one. The noise that sets the band is
    lowered where near-replicates contradict it (`_ranked_best`). With
    `n_hparam_steps=0` the search's model decides as it is.
    """
    flat = flatten_space(state.space)
    z, _ = model_targets(state.y, state.mask, search.maximize)
    data = _dataset(flat, state, z)
    own = _model_kernel(search, flat)
    if search.n_hparam_steps == 0:
        return _ranked_best(search, state, z, data, own, _gp_params(state))
    smooth = Unordered(REPORT_KERNEL, flat.n_choices) if any(flat.n_choices) else REPORT_KERNEL
    fit_data = gp.fit_subset(data)

    enough = jnp.sum(state.mask) >= 2
    # The search's own model is the state's fit (refitted at every update).
    p_own = _gp_params(state)
    start = gp.prior_mode(flat.n_params, z.dtype)
    p_smooth = jax.lax.cond(
        enough,
        lambda: gp.fit_hyperparameters(smooth, start, data, search.jitter, REPORT_FIT_STEPS),
        lambda: start,
    )

    def loo(model):  # one traced copy for both models, run for each
        flag, p = model
        return gp.neg_loo_log_density(_Either(own, smooth, flag), p, fit_data, search.jitter)

    models = jax.tree_util.tree_map(lambda *a: jnp.stack(a), p_own, p_smooth)
    v_own, v_smooth = jax.lax.map(loo, (jnp.asarray([False, True]), models))
    use_smooth = enough & (v_smooth < v_own)
    params = jax.tree_util.tree_map(lambda a, b: jnp.where(use_smooth, a, b), p_smooth, p_own)
    return _ranked_best(search, state, z, data, _Either(own, smooth, use_smooth), params)


class _Either(BaseKernel):
    """`second` where the traced flag `use_second` is true, `first` otherwise.

    Code that takes a kernel is traced once for a choice between two (`_best_index`
    scores both models with one traced copy of the leave-one-out density, then ranks
    with the one chosen): a `cond` between two calls of that code would compile it
    twice. Both covariances are computed and one is kept, two kernel evaluations
    where a factorisation follows (a `cond` between the two covariances ran slower, as
    it keeps them from fusing with what uses them). It evaluates whole covariances only.
    """

    length_scale: ArrayLike
    first: BaseKernel
    second: BaseKernel
    use_second: Bool[Array, ""]

    def __init__(self, first: BaseKernel, second: BaseKernel, use_second):
        self.length_scale = first.length_scale
        self.first, self.second = first, second
        self.use_second = jnp.asarray(use_second, bool)

    def profile(self, d2):
        raise TypeError("_Either evaluates whole covariances only (call it).")

    def __call__(self, x, y, length_scale=None):
        return jnp.where(
            self.use_second, self.second(x, y, length_scale), self.first(x, y, length_scale)
        )


def _ranked_best(
    search: BayesianSearch,
    state: BayesianSearchState,
    z,
    data: gp.Dataset,
    kernel,
    params,
    replicates: bool = True,
):
    """Among the observations within two noise standard deviations of the best target,
    the one with the largest posterior mean (under `params`).

    The noise is the fitted one, scaled down where near-replicates contradict it
    (`gp.replicate_noise_bound`; with `replicates` false, the fitted noise alone):
    a smooth model fitted to a rugged deterministic objective explains its ripples as
    noise, and would otherwise report a configuration worse than one it observed.
    """
    flat = flatten_space(state.space)
    ok = state.mask & jnp.isfinite(state.y)
    post = gp.fit(kernel, params, data, search.jitter, _mean(flat))
    # The targets are standardised, and the noise variance is on their scale.
    noise_var = gp.diagonal(params, search.jitter, z.dtype)
    if replicates:
        noise_var = gp.replicate_noise_bound(
            kernel, params, data, search.jitter, REPLICATE_CORRELATION
        )
    noise_sd = jnp.sqrt(noise_var)
    z_best = jnp.max(jnp.where(ok, z, -jnp.inf))
    eligible = ok & (z >= z_best - 2.0 * noise_sd)
    mean = gp.fitted_mean(post, z, search.jitter)
    return jnp.argmax(jnp.where(eligible, mean, -jnp.inf))


def _model_kernel(search: BayesianSearch, flat: FlatSpace) -> BaseKernel:
    """The kernel the GP uses: the configured one, with categorical columns unordered."""
    if any(flat.n_choices):
        return Unordered(search.kernel, flat.n_choices)
    return search.kernel


def _mean(flat: FlatSpace) -> gp.BoundaryMean:
    """The GP's prior mean: lower towards the faces of the ordered columns."""
    ordered = [0.0 if k else 1.0 for k in flat.n_choices]
    return gp.BoundaryMean(jnp.asarray(ordered, float_dtype()))


def _gp_params(state: BayesianSearchState) -> gp.GPParams:
    return gp.GPParams(state.log_length_scale, state.log_output_scale, state.log_noise)


def _dataset(flat: FlatSpace, state: BayesianSearchState, z) -> gp.Dataset:
    """What the GP is conditioned on: the observations on the unit cube, the targets `z`."""
    return gp.Dataset(jnp.where(state.mask[:, None], flat.to_unit(state.X), 0.0), z, state.mask)


@jit
def _update(
    search: BayesianSearch, state: BayesianSearchState, results, params
) -> BayesianSearchState:
    flat = flatten_space(state.space)
    X_new = flat.as_matrix(params)
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
    # The fresh starts of the fit cost twice what refining the last fit does, so after the
    # first 16 observations they run when the count passes a multiple of 8.
    n_new = jnp.sum(state.mask)
    fresh = (n_new <= _FRESH_EVERY * 2) | (n_new // _FRESH_EVERY != n_old // _FRESH_EVERY)
    return fit_model(search, state, fresh)


def fit_model(
    search: BayesianSearch, state: BayesianSearchState, fresh=True
) -> BayesianSearchState:
    """`state` with its GP hyperparameters fitted to the observations where `mask` is set
    (any subset of the rows), `search.n_hparam_steps` of Adam; unchanged with fewer than
    two observations or `n_hparam_steps=0`. `fresh` (a traced bool is fine) adds the fresh
    starts of `gp.fit_hyperparameters` to the refinement of the last fit."""
    if search.n_hparam_steps == 0:
        return state
    flat = flatten_space(state.space)
    z, _ = model_targets(state.y, state.mask, search.maximize)

    def refit():
        return gp.fit_hyperparameters(
            _model_kernel(search, flat),
            _gp_params(state),
            _dataset(flat, state, z),
            search.jitter,
            search.n_hparam_steps,
            fresh_starts=fresh,
        )

    p = jax.lax.cond(jnp.sum(state.mask) >= 2, refit, lambda: _gp_params(state))
    return eqx.tree_at(
        lambda s: (s.log_length_scale, s.log_output_scale, s.log_noise),
        state,
        (p.log_length_scale, p.log_output_scale, p.log_noise),
    )


@jit
def _predict(search: BayesianSearch, state: BayesianSearchState, X):
    flat = flatten_space(state.space)
    z, unit = model_targets(state.y, state.mask, search.maximize, flat.n_params)
    kernel = _model_kernel(search, flat)
    post = gp.fit(kernel, _gp_params(state), _dataset(flat, state, z), search.jitter, _mean(flat))
    mean, std = gp.predict(kernel, post, flat.to_unit(X))
    y_best = incumbent(post, z, search.jitter) / unit
    return mean / unit, std / unit, search.acquisition(mean / unit, std / unit, y_best)


@jit
def suggest_raw(
    search: BayesianSearch,
    state: BayesianSearchState,
    key: PRNGKeyArray,
    pending=None,
    pending_mask=None,
    fixed=None,
    n_picks=None,
) -> PyTree:
    """The next batch as a raw `(n_parallel, n_params)` matrix (see `believer_batch` for
    `pending`, `pending_mask`, `fixed` and `n_picks`)."""
    flat = flatten_space(state.space)
    n_obs = jnp.sum(state.mask)
    n_finite = jnp.sum(state.mask & jnp.isfinite(state.y))
    use_gp = (n_obs >= search.n_warmup * search.n_parallel) & (n_finite >= 1)
    z, unit = model_targets(state.y, state.mask, search.maximize, flat.n_params)
    key, k_ls = jax.random.split(key)
    batch = believer_batch(
        search,
        flat,
        _model_kernel(search, flat),
        _mean(flat),
        gp.drawn_length_scales(_gp_params(state), k_ls),
        _dataset(flat, state, z),
        unit,
        key,
        use_gp,
        pending,
        pending_mask,
        fixed,
        n_picks,
    )
    return flat.from_unit(batch)
