"""The model an outside engine's searcher keeps between its suggestions.

Optuna and Ray Tune ask for one configuration at a time and report results in any order.
`GrowingModel` keeps one `BayesianSearch` state for them: new observations are added by a
partial update (no refactorisation of what is already there), the buffer grows by
doubling (each capacity compiles once), and the state is rebuilt only when the search
space or the direction changes or a recorded observation is no longer what it was.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..bayesian import BayesianSearch, BayesianSearchState, recommended
from ..spaces import from_configs

# The state's capacity grows by doubling from this; each capacity compiles once.
MIN_CAPACITY = 64

Observation = tuple[Any, float]  # (configuration, result; NaN for a failure)


def one_at_a_time(owner: str, settings: Mapping[str, Any], engine: str, direction: str) -> dict:
    """`hx.recommended(n_parallel=1)` updated with `settings`, checked now (not at the
    first suggestion). `n_parallel` must stay 1, since `engine` asks for one trial at a
    time, and `maximize` is refused: `direction` says which way the engine optimises."""
    settings = {**recommended(n_parallel=1), **settings}
    if settings["n_parallel"] != 1:
        raise ValueError(
            f"{owner}: `n_parallel` must be 1: {engine} asks for one trial at a time "
            "(concurrent trials are pending configurations instead)."
        )
    if "maximize" in settings:
        raise ValueError(
            f"{owner}: {direction} decides whether to maximise; do not pass `maximize`."
        )
    BayesianSearch(**settings)
    return settings


def same_observation(a: Observation, b: Observation) -> bool:
    return a[0] == b[0] and (a[1] == b[1] or (math.isnan(a[1]) and math.isnan(b[1])))


class GrowingModel:
    """One `BayesianSearch` state, extended as observations arrive.

    `settings` are `BayesianSearch` settings (without `maximize`). `signature` is any
    value that identifies the search space and direction: a different one rebuilds the
    state.
    """

    def __init__(self, settings: Mapping[str, Any]):
        self.settings = dict(settings)
        self.signature: Any = None
        self.state: BayesianSearchState | None = None
        self.search: BayesianSearch | None = None
        self.recorded: dict[Any, Observation] = {}
        self.capacity = 0

    def fit(
        self,
        signature: Any,
        space: Any,
        maximize: bool,
        observed: Mapping[Any, Observation],
    ) -> tuple[BayesianSearchState, BayesianSearch]:
        """The state holding `observed` (in its order): the kept one extended, or a new one."""
        reuse = (
            self.state is not None
            and self.signature == signature
            and len(observed) <= self.capacity
            and all(
                k in observed and same_observation(observed[k], v) for k, v in self.recorded.items()
            )
        )
        if not reuse:
            self.reset(signature, space, maximize, len(observed))
        assert self.state is not None and self.search is not None
        new = [k for k in observed if k not in self.recorded]
        # In chunks of powers of two (13 -> 8, 4, 1): each chunk size compiles once, and
        # several processes completing trials in any order need only a few of them.
        while new:
            size = 1 << (len(new).bit_length() - 1)
            chunk, new = new[:size], new[size:]
            params = from_configs([observed[k][0] for k in chunk], space)
            results = np.asarray([observed[k][1] for k in chunk])
            self.state = self.search.update_state(self.state, None, results, params)
            self.recorded.update({k: observed[k] for k in chunk})
        return self.state, self.search

    def reset(self, signature: Any, space: Any, maximize: bool, n: int) -> None:
        """An empty state for `space` with room for at least `n` observations."""
        capacity = MIN_CAPACITY
        while capacity < n:
            capacity *= 2
        self.state, self.search = BayesianSearch.init(
            space, n_max=capacity, maximize=maximize, **self.settings
        )
        self.signature, self.recorded, self.capacity = signature, {}, capacity
