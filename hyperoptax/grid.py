"""Exhaustive grid search over discrete spaces."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from ._checks import is_traced, plain
from ._dtypes import float_dtype
from ._jit import jit
from ._typing import typecheck
from ._warn import warn
from .base import Optimizer, OptimizerState, Results, as_results
from .spaces import CategoricalSpace, DiscreteSpace, Space, flatten_space

__all__ = ["GridSearchState", "GridSearch"]

# At most this many combinations (2**24: 64 MiB per parameter in float32) are enumerated.
_MAX_COMBINATIONS = 2**24


class GridSearchState(OptimizerState):
    """State for `GridSearch`.

    Attributes:
        grid: all parameter combinations, shape `(n_total, n_params)`, truncated to a
            multiple of `n_parallel`.
        grid_idx: current position in `grid`; advanced by `n_parallel` by each
            `update_state`.
    """

    grid: Float[Array, "n_total n_params"]
    grid_idx: Int[Array, ""]


class GridSearch(Optimizer[GridSearchState]):
    """Exhaustive grid search over a discrete search space.

    Iterates through every combination of the `DiscreteSpace` values, the last leaf
    varying fastest (or in a random order if `shuffle=True`). All spaces must be
    `DiscreteSpace` or `CategoricalSpace`.

    Attributes:
        shuffle: if True, randomise the traversal order during `init`; pass `key` to
            `init` for reproducibility.
        n_parallel: configurations per batch (default 1).
    """

    shuffle: bool = eqx.field(default=False, static=True, converter=plain)
    n_parallel: int = eqx.field(default=1, static=True, converter=plain)

    def __check_init__(self):
        if not isinstance(self.shuffle, bool):
            raise TypeError(f"GridSearch: `shuffle` must be a bool, got {self.shuffle!r}.")

    @classmethod
    def init(
        cls, space: PyTree, key: PRNGKeyArray | None = None, **kwargs: Any
    ) -> tuple[GridSearchState, GridSearch]:
        """Initialise the grid search.

        Args:
            space: a pytree of `DiscreteSpace` and `CategoricalSpace` objects (continuous
                spaces have no grid).
            key: PRNG key used when `shuffle=True` (defaults to `PRNGKey(0)`).
            **kwargs: forwarded to the `GridSearch` constructor.

        Returns:
            `(state, optimizer)`.
        """
        optimizer = cls(**kwargs)
        return optimizer._init_state(space, key), optimizer

    def _init_state(self, space: PyTree, key: PRNGKeyArray | None = None) -> GridSearchState:
        flat = flatten_space(space)
        leaves = jax.tree_util.tree_leaves(space, is_leaf=lambda x: isinstance(x, Space))
        for path, leaf in zip(flat.paths, leaves, strict=True):
            if not isinstance(leaf, DiscreteSpace | CategoricalSpace):
                raise ValueError(
                    f"GridSearch: every space must be a DiscreteSpace or CategoricalSpace; "
                    f"the space at {path or '<root>'} is {type(leaf).__name__}."
                )
        # A categorical parameter walks its choices by index.
        values = [
            tuple(range(len(leaf.choices))) if isinstance(leaf, CategoricalSpace) else leaf.values
            for leaf in leaves
        ]
        n_total = int(np.prod([len(v) for v in values], dtype=object))
        if n_total > _MAX_COMBINATIONS:
            raise ValueError(
                f"GridSearch: the grid has {n_total:,} combinations of {len(values)} parameters, "
                f"more than the {_MAX_COMBINATIONS:,} a grid search enumerates (the state holds "
                f"every combination). Use fewer values, or RandomSearch / BayesianSearch, which "
                f"need no grid."
            )
        # The last leaf varies fastest, as in itertools.product.
        axes = np.meshgrid(*[np.asarray(v, np.float64) for v in values], indexing="ij")
        grid = np.stack([a.reshape(-1) for a in axes], axis=-1)
        if self.shuffle:
            key = jax.random.PRNGKey(0) if key is None else key
            grid = grid[np.asarray(jax.random.permutation(key, len(grid)))]
        n_keep = (len(grid) // self.n_parallel) * self.n_parallel
        if n_keep == 0:
            raise ValueError(
                f"GridSearch: the grid has {len(grid)} combinations, fewer than "
                f"n_parallel={self.n_parallel}."
            )
        if n_keep < len(grid):
            warn(
                f"GridSearch: the grid has {len(grid)} combinations, not a multiple of "
                f"n_parallel={self.n_parallel}; the last {len(grid) - n_keep} are dropped."
            )
        return GridSearchState(
            space, jnp.asarray(grid[:n_keep], float_dtype()), jnp.asarray(0, jnp.int32)
        )

    def _remaining(self, state: GridSearchState) -> int | None:
        """Whole batches left in the grid; `None` when the state is traced."""
        if is_traced(state.grid_idx):
            return None
        return (state.grid.shape[0] - int(state.grid_idx)) // self.n_parallel

    def _default_n_iterations(self, state: GridSearchState) -> int:
        remaining = self._remaining(state)
        if remaining is None:
            raise self._traced_default()
        return remaining

    def _n_iterations(self, state, n_iterations):
        n = super()._n_iterations(state, n_iterations)
        if (
            n_iterations is not None
            and self._remaining(state) is not None
            and n > self._remaining(state)
        ):
            raise ValueError(
                f"GridSearch: {n} iterations requested but only {self._remaining(state)} "
                f"batches of the grid remain (the grid would be exhausted)."
            )
        return n

    @typecheck
    def get_next_params(
        self,
        state: GridSearchState,
        key: PRNGKeyArray | None = None,
        params: Any = None,
        results: Any = None,
    ) -> PyTree:
        """Return the next `n_parallel` combinations; each leaf has shape `(n_parallel,)`.

        Raises `ValueError` in eager use once the grid is exhausted. Under tracing (for
        example inside `optimize_scan`) the traversal wraps around instead. `key`,
        `params` and `results` are unused (they are in the signature the API reference
        gives every optimizer).
        """
        if not is_traced(state.grid_idx):
            if int(state.grid_idx) + self.n_parallel > state.grid.shape[0]:
                raise ValueError(
                    f"GridSearch: the grid is exhausted: all {state.grid.shape[0]} "
                    f"combinations have been suggested."
                )
        return _grid_batch(self, state)

    def _asynchronous(self) -> GridSearch:
        raise ValueError(
            "GridSearch: `asynchronous=True` is not supported: the grid is walked in whole "
            "batches. Run it with batches, or use RandomSearch / BayesianSearch."
        )

    @typecheck
    def update_state(
        self,
        state: GridSearchState,
        key: PRNGKeyArray | None = None,
        results: Results | None = None,
        params: Any = None,
    ) -> GridSearchState:
        """Advance the grid index by `n_parallel`.

        The grid moves by whole batches, so `results`, when given, must hold the whole
        batch's `n_parallel` results; `key` and `params` are unused
        (they are in the signature the API reference gives every optimizer).
        """
        if results is not None:
            as_results(results, self.n_parallel, type(self).__name__, size="n_parallel")
        return eqx.tree_at(lambda s: s.grid_idx, state, state.grid_idx + self.n_parallel)


@jit
def _grid_batch(optimizer: GridSearch, state: GridSearchState) -> PyTree:
    n_total = state.grid.shape[0]
    start = state.grid_idx % n_total
    rows = jax.lax.dynamic_slice_in_dim(state.grid, start, optimizer.n_parallel, axis=0)
    return flatten_space(state.space).unflatten(rows)
