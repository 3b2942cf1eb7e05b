"""The optimizer interface shared by every search, and the two optimisation loops."""

from __future__ import annotations

import abc
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any, Generic, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import Array, ArrayLike, PRNGKeyArray, PyTree, Real

from . import checkpoint as checkpoints
from ._typing import typecheck
from .sharding import check_mesh, replicate, shard_batch, to_host
from .spaces import flatten_space, to_configs

__all__ = ["OptimizerState", "Optimizer"]


class OptimizerState(eqx.Module):
    """Base optimizer state: a JAX pytree holding the search space definition.

    Subclasses add the arrays their optimizer needs. The space's own fields are static,
    so a state can be passed through `jit`, `scan` and `vmap` unchanged.
    """

    space: PyTree


def _check_n_parallel(owner: str, n_parallel: Any) -> None:
    if isinstance(n_parallel, bool) or not isinstance(n_parallel, int):
        raise TypeError(f"{owner}: `n_parallel` must be an int, got {n_parallel!r}.")
    if n_parallel < 1:
        raise ValueError(f"{owner}: `n_parallel` must be at least 1, got {n_parallel!r}.")


def _check_func(func: Callable, state: OptimizerState, key: PRNGKeyArray) -> None:
    """Fail early, with the expected signature, instead of deep inside a trace."""
    if not callable(func):
        raise TypeError(f"`func` must be callable as fn(key, params), got {func!r}.")
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        kinds = [p.kind for p in sig.parameters.values()]
        positional = sum(
            k in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            for k in kinds
        )
        if inspect.Parameter.VAR_POSITIONAL not in kinds and positional < 2:
            raise TypeError(
                f"`func` must take two positional arguments, fn(key, params) -> scalar, "
                f"where `params` is one configuration; got a callable with signature {sig}."
            )
    flat = flatten_space(state.space)
    params = jax.tree_util.tree_unflatten(
        flat.treedef, [jax.ShapeDtypeStruct((), dt) for dt in flat.dtypes]
    )
    key = jax.eval_shape(lambda k: jax.random.split(k, 1)[0], key)
    out = jax.eval_shape(func, key, params)
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
        shapes = [getattr(x, "shape", None) for x in jax.tree_util.tree_leaves(out)]
        if isinstance(out, jax.ShapeDtypeStruct):
            what = f"an array of shape {out.shape}"
        else:  # a tuple, list, dict, ...: the objective returns one number, not a container
            what = f"a {type(out).__name__} holding arrays of shapes {shapes}"
        hint = " Call `.squeeze()` inside `func` before returning." if shapes == [(1,)] else ""
        raise ValueError(
            f"`func` must return a scalar (one array of shape ()), but it returned {what}.{hint}"
        )


def _step(optimizer: Optimizer, state: OptimizerState, key: PRNGKeyArray, func: Callable, mesh=None):
    """One iteration: suggest a batch, evaluate it under vmap, record the results.

    With a `mesh`, the batch is split over its devices for the evaluation, and the
    results are gathered (replicated) for the update, which every device computes.
    """
    k_suggest, k_eval, k_update = jax.random.split(key, 3)
    params = optimizer.get_next_params(state, k_suggest)
    keys = jax.random.split(k_eval, optimizer.n_parallel)
    results = jax.vmap(func)(*shard_batch((keys, params), mesh))
    results = shard_batch(results, mesh)
    state = optimizer.update_state(state, k_update, replicate(results, mesh), replicate(params, mesh))
    return state, params, results


_jit_step = eqx.filter_jit(_step)


@eqx.filter_jit
def _scan(optimizer, state, key, func, n_iterations: int, callback=None, mesh=None):
    def body(state, inputs):
        i, key = inputs
        state, params, results = _step(optimizer, state, key, func, mesh)
        if callback is not None:
            jax.debug.callback(lambda *a: (callback(*a), None)[1], i, state, params, results)
        return state, (params, results)

    inputs = (jnp.arange(n_iterations), jax.random.split(key, n_iterations))
    state, hist = jax.lax.scan(body, state, inputs)
    return state, shard_batch(hist, mesh, axis=1)


StateT = TypeVar("StateT", bound=OptimizerState)

# A batch of results: an array (or list of numbers) with one entry per configuration.
Results = Real[ArrayLike, " batch"] | Sequence[Real[ArrayLike, ""]]


class Optimizer(eqx.Module, Generic[StateT]):
    """Base class of every search.

    An optimizer is an immutable configuration; everything that changes during a search
    lives in its state, which goes in and comes out of every method.
    """

    n_parallel: eqx.AbstractVar[int]

    def __check_init__(self):
        _check_n_parallel(type(self).__name__, self.n_parallel)

    @classmethod
    def init(cls, space: PyTree, **kwargs: Any) -> tuple[Any, Any]:
        """Build the optimizer from `kwargs` and its initial state for `space`."""
        optimizer = cls(**kwargs)
        return optimizer._init_state(space), optimizer

    def _init_state(self, space: PyTree) -> Any:
        flatten_space(space)  # validates the space
        return OptimizerState(space)

    @abc.abstractmethod
    def get_next_params(
        self, state: StateT, key: PRNGKeyArray, params=None, results=None
    ) -> PyTree:
        """Gets the next parameters to sample from the space.

        Returns a batched pytree where every leaf has shape `(n_parallel,)`. `params` and
        `results` are the previous iteration's values (None on the first call).
        """

    @abc.abstractmethod
    def update_state(
        self, state: StateT, key: PRNGKeyArray, results: Array, params=None
    ) -> StateT:
        """Updates the optimizer state based on the results of the function."""

    def _default_n_iterations(self, state: StateT) -> int:
        raise ValueError(
            f"{type(self).__name__}: `n_iterations` is required (it has no natural end)."
        )

    def _traced_default(self) -> ValueError:
        return ValueError(
            f"{type(self).__name__}: `n_iterations=None` runs until the state is full, which "
            f"cannot be read from a traced state (inside `jit` or `vmap` over the state); "
            f"pass `n_iterations` explicitly."
        )

    def _n_iterations(self, state: StateT, n_iterations: int | None) -> int:
        if n_iterations is None:
            return self._default_n_iterations(state)
        if isinstance(n_iterations, bool) or not isinstance(n_iterations, int):
            raise TypeError(f"`n_iterations` must be an int, got {n_iterations!r}.")
        if n_iterations < 0:
            raise ValueError(f"`n_iterations` must be non-negative, got {n_iterations!r}.")
        return n_iterations

    @typecheck
    def optimize(
        self,
        state: StateT,
        key: PRNGKeyArray,
        func: Callable,
        n_iterations: int | None = None,
        *,
        callback: Callable | None = None,
        checkpoint: str | os.PathLike | None = None,
        progress: bool | None = None,
        mesh: Mesh | None = None,
    ) -> tuple[StateT, tuple[list[PyTree], list[Array]]]:
        """High level API for optimizing a function over a space.

        `func(key, params)` receives one configuration (each leaf a scalar) and must
        return a scalar (`()` shape); a batch of `n_parallel` configurations is
        evaluated with `jax.vmap`. The step (suggest, evaluate, update) is compiled
        once and reused every iteration.

        Args:
            state: the search state (from `init`, or a previous run).
            key: PRNG key; one is split off per iteration and per evaluation.
            func: the objective, `func(key, params) -> scalar`.
            n_iterations: iterations to run; `None` runs as many whole batches as the
                state has room for (for searches that have an end). A number of
                iterations whose results would not fit in the state is refused.
            callback: called on the host after every iteration as
                `callback(iteration, state, params, results)` (`iteration` counts from
                0; `params` is the batch, `results` its `(n_parallel,)` results). A
                truthy return value stops the search after that iteration.
            checkpoint: a file path. The state, the history and the loop position are
                saved there (atomically) after every iteration; started again with the
                same arguments, the search resumes from the file instead of starting
                over, and ends exactly as an uninterrupted run would. A search that
                finished or was stopped by `callback` returns at once.
            progress: show a progress bar (iterations, best result so far) on stderr.
                `None` (default) shows it when stderr is a terminal and the run has at
                least 10 iterations; `True` always; `False` never.
            mesh: a `jax.sharding.Mesh`: the `n_parallel` configurations of each batch
                are split over its devices (all mesh axes), so each device evaluates
                `n_parallel / mesh.size` of them; the GP step stays replicated.
                `n_parallel` must be a multiple of the device count.

        Returns `(state, (params_hist, results_hist))`: lists with one batched params
        pytree and one `(n_parallel,)` results array per iteration (including those
        run before a resume).
        """
        n_iterations = self._n_iterations(state, n_iterations)
        _check_func(func, state, key)
        check_mesh(mesh, self.n_parallel, type(self).__name__)

        def step(state, k):
            return _jit_step(self, state, k, func, mesh)

        return _loop(self, state, key, n_iterations, step, callback, checkpoint, progress, 10)

    @typecheck
    def optimize_host(
        self,
        state: StateT,
        key: PRNGKeyArray,
        objective: Callable[[Any], Any],
        n_iterations: int | None = None,
        *,
        executor: Executor | None = None,
        on_error: str = "record",
        callback: Callable | None = None,
        checkpoint: str | os.PathLike | None = None,
        progress: bool | None = None,
    ) -> tuple[StateT, tuple[list[PyTree], list[Array]]]:
        """Optimize an objective that runs outside JAX, on plain Python values.

        `objective(config)` receives one configuration with the space's structure (a
        dict for a dict space) holding Python values: `float`, `int`, or for a
        `CategoricalSpace` the choice itself. It gets no key (seed your own randomness
        from the configuration or a counter if it needs one) and returns one real
        number. Suggestions and updates stay compiled; only the evaluation runs here.

        Args:
            state: the search state (from `init`, or a previous run).
            key: PRNG key for the suggestions.
            objective: the host-side objective, `objective(config) -> float`.
            n_iterations: iterations to run; `None` runs until the state is full.
            executor: a `concurrent.futures.Executor` (a thread or process pool, or a
                Dask cluster's `Client.get_executor()`): the `n_parallel`
                configurations of a batch are submitted at once and evaluated
                concurrently. `None` evaluates them one after another.
            on_error: `"record"` (default): a configuration whose evaluation raises or
                returns NaN/inf is recorded with a NaN result, reported with a
                `RuntimeWarning` naming it and the error, and the search goes on (the
                model treats it as the worst result seen). `"raise"`: the error
                propagates and the search stops.
            callback: as in `optimize`.
            checkpoint: as in `optimize`.
            progress: as in `optimize`, except that `None` shows the bar whenever
                stderr is a terminal.

        Returns `(state, (params_hist, results_hist))` as `optimize` does; failed
        evaluations are NaN in `results_hist` and in the state.
        """
        from .host import _check_on_error, evaluate_configs

        n_iterations = self._n_iterations(state, n_iterations)
        _check_on_error(on_error)
        dtype = jnp.result_type(float)

        def step(state, k):
            k_ask, k_tell = jax.random.split(k)
            params = self.get_next_params(state, k_ask)
            configs = to_configs(params, state.space)
            results = jnp.asarray(evaluate_configs(objective, configs, executor, on_error, dtype), dtype)
            return self.update_state(state, k_tell, results, params), params, results

        return _loop(self, state, key, n_iterations, step, callback, checkpoint, progress, 1)

    @typecheck
    def optimize_scan(
        self,
        state: StateT,
        key: PRNGKeyArray,
        func: Callable,
        n_iterations: int | None = None,
        *,
        callback: Callable | None = None,
        mesh: Mesh | None = None,
    ) -> tuple[StateT, tuple[PyTree, Array]]:
        """Like `optimize`, but the whole loop is one `jax.lax.scan` in one XLA program.

        Requires `func` to be JAX-traceable. Returns stacked arrays: each leaf of
        `params_hist` has shape `(n_iterations, n_parallel)` and `results_hist` has
        shape `(n_iterations, n_parallel)`. Works under `eqx.filter_vmap` over keys.

        `callback(iteration, state, params, results)` is called on the host after every
        iteration through `jax.debug.callback`, with NumPy arrays, for logging. Unlike
        in `optimize` it cannot stop the search (a compiled scan runs all its
        iterations), its return value is ignored, and under `vmap` it is called once
        per batch element. There is no checkpointing inside a scan: for long searches
        use `optimize`, or run `optimize_scan` in chunks and `save_state` between them.

        `mesh` splits each batch's evaluation over the mesh's devices, as in
        `optimize`; the returned histories keep that split along their batch axis.
        """
        n_iterations = self._n_iterations(state, n_iterations)
        _check_func(func, state, key)
        if callback is not None and not callable(callback):
            raise TypeError(f"`callback` must be callable, got {callback!r}.")
        check_mesh(mesh, self.n_parallel, type(self).__name__)
        return _scan(self, state, key, func, n_iterations, callback, mesh)

    def warm_start(self, state: StateT, params: Any, results: Any = None) -> StateT:
        """Record observations made earlier (only for searches that model them)."""
        raise TypeError(
            f"{type(self).__name__} keeps no model of past observations, so there is "
            f"nothing to warm-start; BayesianSearch.warm_start does."
        )


def _loop(optimizer, state, key, n_iterations, step, callback, checkpoint, progress, auto_min):
    """The host loop of `optimize` and `optimize_host`: resume, step, report, save."""
    if callback is not None and not callable(callback):
        raise TypeError(f"`callback` must be callable, got {callback!r}.")
    params_hist: list = []
    results_hist: list = []
    start, stopped = 0, False
    if checkpoint is not None:
        checkpoints.check_writable(checkpoint)
        started_from = checkpoints.state_digest(state)
        if os.path.exists(checkpoint):
            state, params_hist, results_hist, start, stopped = checkpoints.resume_run(
                checkpoint, optimizer, state, key, n_iterations, started_from
            )
    keys: Any = jax.random.split(key, n_iterations) if n_iterations else []
    bar = _Progress(optimizer, progress, n_iterations, start, results_hist, auto_min)
    try:
        for i in range(start, n_iterations):
            if stopped:
                break
            state, params, results = step(state, keys[i])
            params_hist.append(params)
            results_hist.append(results)
            if callback is not None:
                stopped = bool(callback(i, state, params, results))
            if checkpoint is not None:
                checkpoints.save_run(checkpoint, optimizer, state, key, n_iterations, started_from,
                                     params_hist, results_hist, stopped)
            bar.update(results)
    finally:
        bar.close()
    return state, (params_hist, results_hist)


class _Progress:
    """A tqdm bar with the iteration count and the best finite result so far."""

    def __init__(self, optimizer, enabled, total, initial, results_hist, auto_min):
        if enabled is None:
            enabled = total >= auto_min and sys.stderr.isatty()
        self.bar = None
        self.maximize = getattr(optimizer, "maximize", None)
        self.lo, self.hi = np.inf, -np.inf
        self.failed = 0
        for r in results_hist:
            self._see(r)
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=type(optimizer).__name__, file=sys.stderr)
            self._postfix()

    def _see(self, results):
        r = to_host(results).astype(np.float64)
        self.failed += int(np.sum(~np.isfinite(r)))
        r = r[np.isfinite(r)]
        if r.size:
            self.lo, self.hi = min(self.lo, r.min()), max(self.hi, r.max())

    def _postfix(self):
        info = {}
        if np.isfinite(self.hi):
            if self.maximize is None:  # the search does not know the direction
                info = dict(min=f"{self.lo:.6g}", max=f"{self.hi:.6g}")
            else:
                info = dict(best=f"{self.hi if self.maximize else self.lo:.6g}")
        if self.failed:
            info["failed"] = str(self.failed)
        if info:
            self.bar.set_postfix(info)

    def update(self, results):
        if self.bar is not None:
            self._see(results)
            self._postfix()
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def as_results(results: Any, n_parallel: int, owner: str, method: str = "update_state") -> Array:
    """Check and convert a results batch to a float vector of shape `(n_parallel,)`."""
    results = jnp.asarray(results)
    if results.shape != (n_parallel,):
        what = "(n_parallel,) = " if method == "update_state" else ""
        raise ValueError(
            f"{owner}.{method}: `results` must have shape {what}({n_parallel},), "
            f"got shape {results.shape}."
        )
    return results.astype(jnp.result_type(float))
