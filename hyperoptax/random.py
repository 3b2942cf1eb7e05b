"""Random search: the memoryless baseline."""

from __future__ import annotations

from typing import Any

import equinox as eqx
from jaxtyping import PRNGKeyArray, PyTree

from ._checks import plain
from ._jit import jit
from ._typing import typecheck
from .base import Optimizer, OptimizerState, Results, as_results, batch_length
from .spaces import flatten_space

__all__ = ["RandomSearch"]


class RandomSearch(Optimizer[OptimizerState]):
    """Stateless random search: samples each space independently each iteration.

    No model is fitted and no history is maintained, so this is the cheapest optimizer
    and a strong baseline.

    Attributes:
        n_parallel: configurations per batch (default 1).
    """

    n_parallel: int = eqx.field(default=1, static=True, converter=plain)

    @typecheck
    def get_next_params(
        self,
        state: OptimizerState,
        key: PRNGKeyArray,
        params: Any = None,
        results: Any = None,
        *,
        pending: Any = None,
    ) -> PyTree:
        """Sample `n_parallel` independent configurations; each leaf has shape `(n_parallel,)`.

        `params` and `results` (the previous batch) are unused: they are in the signature
        the API reference gives every optimizer. So is `pending` (configurations still
        being evaluated, which `BayesianSearch` keeps away from): independent draws do
        not depend on them.
        """
        return _sample(self, state, key)

    @typecheck
    def update_state(
        self, state: OptimizerState, key: PRNGKeyArray | None, results: Results, params: Any = None
    ) -> OptimizerState:
        """RandomSearch is memoryless: the state is returned unchanged.

        `results` is checked to be a vector of at least one result (any number: workers
        may report one at a time); `key` and `params` are unused (they are in the
        signature the API reference gives every optimizer).
        """
        name = type(self).__name__
        as_results(results, batch_length(results, f"{name}.update_state"), name)
        return state


@jit
def _sample(search: RandomSearch, state: OptimizerState, key: PRNGKeyArray) -> PyTree:
    flat = flatten_space(state.space)
    return flat.unflatten(flat.from_unit(flat.sample_unit(key, search.n_parallel)))
