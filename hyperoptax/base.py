"""The optimizer interface shared by every search, and the two optimisation loops."""

from __future__ import annotations

import abc
import inspect
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray, PyTree

from .spaces import flatten_space

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
    leaves = jax.tree_util.tree_leaves(out)
    if len(leaves) != 1 or leaves[0].shape != ():
        shapes = [getattr(x, "shape", None) for x in leaves]
        hint = " Call `.squeeze()` inside `func` before returning." if shapes == [(1,)] else ""
        raise ValueError(
            f"`func` must return a scalar (shape ()), got an output with shapes {shapes}.{hint}"
        )


def _step(optimizer: Optimizer, state: OptimizerState, key: PRNGKeyArray, func: Callable):
    """One iteration: suggest a batch, evaluate it under vmap, record the results."""
    k_suggest, k_eval, k_update = jax.random.split(key, 3)
    params = optimizer.get_next_params(state, k_suggest)
    keys = jax.random.split(k_eval, optimizer.n_parallel)
    results = jax.vmap(func)(keys, params)
    state = optimizer.update_state(state, k_update, results, params)
    return state, params, results


_jit_step = eqx.filter_jit(_step)


@eqx.filter_jit
def _scan(optimizer, state, key, func, n_iterations: int):
    def body(state, key):
        state, params, results = _step(optimizer, state, key, func)
        return state, (params, results)

    return jax.lax.scan(body, state, jax.random.split(key, n_iterations))


class Optimizer(eqx.Module):
    """Base class of every search.

    An optimizer is an immutable configuration; everything that changes during a search
    lives in its state, which goes in and comes out of every method.
    """

    n_parallel: eqx.AbstractVar[int]

    def __check_init__(self):
        _check_n_parallel(type(self).__name__, self.n_parallel)

    @classmethod
    def init(cls, space: PyTree, **kwargs) -> tuple[OptimizerState, Optimizer]:
        """Build the optimizer from `kwargs` and its initial state for `space`."""
        optimizer = cls(**kwargs)
        return optimizer._init_state(space), optimizer

    def _init_state(self, space: PyTree) -> OptimizerState:
        flatten_space(space)  # validates the space
        return OptimizerState(space)

    @abc.abstractmethod
    def get_next_params(
        self, state: OptimizerState, key: PRNGKeyArray, params=None, results=None
    ) -> PyTree:
        """Gets the next parameters to sample from the space.

        Returns a batched pytree where every leaf has shape `(n_parallel,)`. `params` and
        `results` are the previous iteration's values (None on the first call).
        """

    @abc.abstractmethod
    def update_state(
        self, state: OptimizerState, key: PRNGKeyArray, results: Array, params=None
    ) -> OptimizerState:
        """Updates the optimizer state based on the results of the function."""

    def _default_n_iterations(self, state: OptimizerState) -> int:
        raise ValueError(
            f"{type(self).__name__}: `n_iterations` is required (it has no natural end)."
        )

    def _traced_default(self) -> ValueError:
        return ValueError(
            f"{type(self).__name__}: `n_iterations=None` runs until the state is full, which "
            f"cannot be read from a traced state (inside `jit` or `vmap` over the state); "
            f"pass `n_iterations` explicitly."
        )

    def _n_iterations(self, state: OptimizerState, n_iterations: int | None) -> int:
        if n_iterations is None:
            return self._default_n_iterations(state)
        if isinstance(n_iterations, bool) or not isinstance(n_iterations, int):
            raise TypeError(f"`n_iterations` must be an int, got {n_iterations!r}.")
        if n_iterations < 0:
            raise ValueError(f"`n_iterations` must be non-negative, got {n_iterations!r}.")
        return n_iterations

    def optimize(
        self,
        state: OptimizerState,
        key: PRNGKeyArray,
        func: Callable,
        n_iterations: int | None = None,
    ) -> tuple[OptimizerState, tuple[list[PyTree], list[Array]]]:
        """High level API for optimizing a function over a space.

        `func(key, params)` receives one configuration (each leaf a scalar) and must
        return a scalar (`()` shape); a batch of `n_parallel` configurations is
        evaluated with `jax.vmap`. The step (suggest, evaluate, update) is compiled
        once and reused every iteration.

        Returns `(state, (params_hist, results_hist))`: lists with one batched params
        pytree and one `(n_parallel,)` results array per iteration.
        """
        n_iterations = self._n_iterations(state, n_iterations)
        _check_func(func, state, key)
        params_hist, results_hist = [], []
        for k in jax.random.split(key, n_iterations) if n_iterations else []:
            state, params, results = _jit_step(self, state, k, func)
            params_hist.append(params)
            results_hist.append(results)
        return state, (params_hist, results_hist)

    def optimize_scan(
        self,
        state: OptimizerState,
        key: PRNGKeyArray,
        func: Callable,
        n_iterations: int | None = None,
    ) -> tuple[OptimizerState, tuple[PyTree, Array]]:
        """Like `optimize`, but the whole loop is one `jax.lax.scan` in one XLA program.

        Requires `func` to be JAX-traceable. Returns stacked arrays: each leaf of
        `params_hist` has shape `(n_iterations, n_parallel)` and `results_hist` has
        shape `(n_iterations, n_parallel)`. Works under `eqx.filter_vmap` over keys.
        """
        n_iterations = self._n_iterations(state, n_iterations)
        _check_func(func, state, key)
        return _scan(self, state, key, func, n_iterations)


def as_results(results: Any, n_parallel: int, owner: str) -> Array:
    """Check and convert a results batch to a float vector of shape `(n_parallel,)`."""
    results = jnp.asarray(results)
    if results.shape != (n_parallel,):
        raise ValueError(
            f"{owner}.update_state: `results` must have shape (n_parallel,) = ({n_parallel},), "
            f"got shape {results.shape}."
        )
    return results.astype(jnp.result_type(float))
