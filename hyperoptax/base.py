"""The optimizer interface shared by every search: `OptimizerState` and `Optimizer`.

The loops the public methods run are in `_loop.py`; this module checks their arguments
and says what each method promises.
"""

from __future__ import annotations

import abc
import dataclasses
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any, Generic, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import Array, ArrayLike, PRNGKeyArray, PyTree, Real

from ._checks import check_int
from ._loop import async_host_loop, check_callback, check_objective, host_loop, jit_step, scan
from ._typing import typecheck
from .host import check_on_error, check_sendable, evaluate_batch
from .sharding import check_mesh, put_replicated
from .spaces import flatten_space, to_configs

__all__ = ["OptimizerState", "Optimizer"]


class OptimizerState(eqx.Module):
    """Base optimizer state: a JAX pytree holding the search space definition.

    Subclasses add the arrays their optimizer needs. The space's own fields are static,
    so a state can be passed through `jit`, `scan` and `vmap` unchanged.
    """

    space: PyTree


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
        check_int(type(self).__name__, "n_parallel", self.n_parallel, 1)

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
    def update_state(self, state: StateT, key: PRNGKeyArray, results: Array, params=None) -> StateT:
        """Updates the optimizer state based on the results of the function."""

    def _asynchronous(self) -> Optimizer:
        """The optimizer `optimize_host(..., asynchronous=True)` asks for one configuration
        at a time: this one with `n_parallel=1`, otherwise alike."""
        return dataclasses.replace(self, n_parallel=1)

    def _ask(self, state: StateT, key: PRNGKeyArray, running: np.ndarray, n_slots: int) -> PyTree:
        """A batch of suggestions while the configurations `running` (raw rows, at most
        `n_slots` of them) are evaluated. Searches that keep no model ignore them; one
        that does conditions on them, compiled once for `n_slots`."""
        return self.get_next_params(state, key)

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
        return check_int(type(self).__name__, "n_iterations", n_iterations, 0)

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
        check_objective(func, state, key, f"{type(self).__name__}.optimize")
        check_mesh(mesh, self.n_parallel, type(self).__name__)

        def step(state, k):
            # The state replicated over the mesh from the first iteration on (a fresh or
            # resumed state is on one device; the step's output is replicated), so the
            # step sees the same input shardings every iteration and compiles once.
            return jit_step(self, put_replicated(state, mesh), k, func, mesh)

        return host_loop(
            self,
            state,
            key,
            n_iterations,
            step,
            callback=callback,
            checkpoint=checkpoint,
            progress=progress,
            progress_from=10,
        )

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
        asynchronous: bool = False,
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
            asynchronous: `False` (default): batch after batch, each waiting for its
                slowest configuration. `True` (needs an `executor`): `n_parallel`
                evaluations run at any time; whenever one finishes, its result is
                recorded and a new configuration is submitted, suggested with the
                running ones pending (see `get_next_params`). The same number of
                evaluations, `n_iterations * n_parallel`, one per iteration of the
                history, in the order they finished. Which configurations are evaluated
                depends on that order, so two runs agree only when the evaluations
                finish in the same order. A resumed run loses nothing and evaluates
                nothing twice: the configurations that were running when it stopped
                are evaluated again first (their results were never recorded).
                `callback` is called after each evaluation; stopping lets the running
                ones finish and records them.

        Returns `(state, (params_hist, results_hist))` as `optimize` does; failed
        evaluations are NaN in `results_hist` and in the state.
        """
        n_iterations = self._n_iterations(state, n_iterations)
        check_on_error(on_error)
        check_sendable(f"{type(self).__name__}.optimize_host", objective, executor)
        dtype = jnp.result_type(float)
        if asynchronous:
            if executor is None:
                raise ValueError(
                    f"{type(self).__name__}.optimize_host: `asynchronous=True` needs an "
                    f"`executor` to run the evaluations on."
                )
            return async_host_loop(
                self,
                state,
                key,
                n_iterations * self.n_parallel,
                objective,
                executor,
                on_error=on_error,
                callback=callback,
                checkpoint=checkpoint,
                progress=progress,
            )

        def step(state, k):
            k_ask, k_tell = jax.random.split(k)
            params = self.get_next_params(state, k_ask)
            configs = to_configs(params, state.space)
            results = jnp.asarray(
                evaluate_batch(objective, configs, executor, on_error, dtype), dtype
            )
            return self.update_state(state, k_tell, results, params), params, results

        return host_loop(
            self,
            state,
            key,
            n_iterations,
            step,
            callback=callback,
            checkpoint=checkpoint,
            progress=progress,
            progress_from=1,
        )

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
        check_objective(func, state, key, f"{type(self).__name__}.optimize_scan")
        check_callback(type(self).__name__, callback)
        check_mesh(mesh, self.n_parallel, type(self).__name__)
        return scan(self, state, key, func, n_iterations, callback, mesh)

    def warm_start(self, state: StateT, params: Any, results: Any = None) -> StateT:
        """Record observations made earlier (only for searches that model them)."""
        raise TypeError(
            f"{type(self).__name__} keeps no model of past observations, so there is "
            f"nothing to warm-start; BayesianSearch.warm_start does."
        )


def batch_length(results: Any, where: str) -> int:
    """The number of results in a batch (a vector or a list of numbers); at least one."""
    shape = jnp.shape(results) if not isinstance(results, list | tuple) else (len(results),)
    if len(shape) != 1 or shape[0] == 0:
        raise ValueError(
            f"{where}: `results` must be a vector of at least one result, got shape {shape}."
        )
    return shape[0]


def as_results(
    results: Any, n: int, owner: str, method: str = "update_state", size: str = ""
) -> Array:
    """Check and convert a results batch to a float vector of shape `(n,)`; `size` names
    `n` in the error (`"n_parallel"` where only whole batches are accepted)."""
    results = jnp.asarray(results)
    if results.shape != (n,):
        shape = f"({size},) = ({n},)" if size else f"({n},)"
        raise ValueError(
            f"{owner}.{method}: `results` must have shape {shape}, got shape {results.shape}."
        )
    return results.astype(jnp.result_type(float))
