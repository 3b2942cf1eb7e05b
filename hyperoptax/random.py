"""Random search: the memoryless baseline."""

from __future__ import annotations

import equinox as eqx
from jaxtyping import Array, PRNGKeyArray, PyTree

from .base import Optimizer, OptimizerState, as_results
from .spaces import flatten_space

__all__ = ["RandomSearch"]


class RandomSearch(Optimizer):
    """Stateless random search: samples each space independently each iteration.

    No model is fitted and no history is maintained, so this is the cheapest optimizer
    and a strong baseline.

    Attributes:
        n_parallel: configurations per batch (default 1).
    """

    n_parallel: int = eqx.field(default=1, static=True)

    @eqx.filter_jit
    def get_next_params(
        self, state: OptimizerState, key: PRNGKeyArray, params=None, results=None
    ) -> PyTree:
        """Sample `n_parallel` independent configurations; each leaf has shape `(n_parallel,)`."""
        flat = flatten_space(state.space)
        return flat.unflatten(flat.from_unit(flat.sample_unit(key, self.n_parallel)))

    def update_state(
        self, state: OptimizerState, key: PRNGKeyArray, results: Array, params=None
    ) -> OptimizerState:
        """RandomSearch is memoryless: the state is returned unchanged."""
        as_results(results, self.n_parallel, type(self).__name__)
        return state
