"""hyperoptax's Bayesian search as an Optuna sampler.

```python
import optuna
from hyperoptax.integrations.optuna import HyperoptaxSampler

study = optuna.create_study(sampler=HyperoptaxSampler(seed=0))
study.optimize(objective, n_trials=100)
```

Needs Optuna (`pip install "hyperoptax[optuna]"`). Users keep Optuna's storages,
dashboard and pruners; the sampler only decides which configuration a trial tries.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

try:
    from optuna.distributions import (
        BaseDistribution,
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "hyperoptax.integrations.optuna needs Optuna: pip install 'hyperoptax[optuna]'."
    ) from e
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from ..spaces import (
    CategoricalSpace,
    DiscreteSpace,
    LinearSpace,
    LogSpace,
    QLinearSpace,
    QLogSpace,
    Space,
    to_configs,
)
from ._model import GrowingModel, one_at_a_time

__all__ = ["HyperoptaxSampler", "to_space"]

# Where a trial's suggested parameters are shared with other processes on the storage
# before the objective has asked for them all (they are pending there meanwhile).
_PARAMS_ATTR = "hyperoptax:params"


def to_space(distribution: BaseDistribution) -> Space:
    """The hyperoptax space of one Optuna distribution.

    `FloatDistribution` -> `LinearSpace` or `LogSpace` (`DiscreteSpace` with a `step`);
    `IntDistribution` -> `QLinearSpace` or `QLogSpace` (`DiscreteSpace` with a `step`
    other than 1); `CategoricalDistribution` -> `CategoricalSpace`.
    """
    d = distribution
    if isinstance(d, CategoricalDistribution):
        return CategoricalSpace(d.choices)
    if isinstance(d, IntDistribution):
        if d.step != 1:
            return DiscreteSpace(tuple(range(d.low, d.high + 1, d.step)))
        return QLogSpace(d.low, d.high) if d.log else QLinearSpace(d.low, d.high)
    if isinstance(d, FloatDistribution):
        if d.step is not None:
            n = int(round((d.high - d.low) / d.step))
            return DiscreteSpace(tuple(d.low + i * d.step for i in range(n + 1)))
        return LogSpace(d.low, d.high) if d.log else LinearSpace(d.low, d.high)
    raise TypeError(f"HyperoptaxSampler: unsupported distribution {distribution!r}.")


def _to_optuna(value: Any, distribution: BaseDistribution) -> Any:
    """A value `to_configs` gave, as the distribution's own type and inside it."""
    d = distribution
    if isinstance(d, CategoricalDistribution):
        return value
    if isinstance(d, IntDistribution):
        return int(min(max(int(round(value)), d.low), d.high))
    assert isinstance(d, FloatDistribution)
    value = float(min(max(float(value), d.low), d.high))
    if d.step is not None:  # the grid's own rounding, not float32's
        value = d.low + round((value - d.low) / d.step) * d.step
    return value


def _params(trial: FrozenTrial) -> dict[str, Any]:
    """A trial's parameters: those it has, and those this sampler suggested for it."""
    shared = trial.system_attrs.get(_PARAMS_ATTR)
    return {**(json.loads(shared) if shared else {}), **trial.params}


class HyperoptaxSampler(BaseSampler):
    """An Optuna sampler that suggests each trial's parameters with `BayesianSearch`.

    Optuna's float (log or not, with or without a step), int and categorical
    distributions map to hyperoptax spaces (`to_space`). Every trial of the study in
    the storage (from any process) is an observation: completed trials with their value;
    failed and pruned ones as failures (a NaN result, which the model treats as the
    worst result seen). Running trials are *pending*: the suggestion keeps away from
    them (`BayesianSearch.get_next_params(..., pending=...)`), so workers sharing one
    storage do not receive near-copies of each other's configurations. As with
    Optuna's own model-based samplers, parameters outside the space that all completed
    trials share (the first trial's, those of conditional branches) come from
    `independent_sampler`.

    The GP state is kept between trials and extended with the new trials only (a
    partial update); it is rebuilt when the search space changes or a recorded trial
    changes. Programs compile once per process for each search space, each capacity
    (64 observations, doubling) and each number of pending trials (rounded up to a
    power of two).

    Args:
        seed: seeds the suggestions (with the trial number) and the default
            `independent_sampler`; `None` draws one.
        independent_sampler: for parameters outside the relative search space
            (default `RandomSampler(seed=seed)`).
        **settings: `BayesianSearch` settings; default `hx.recommended(n_parallel=1)`
            for the active precision, and any given here replace those. `n_parallel`
            must stay 1 (Optuna asks for one trial at a time).
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        independent_sampler: BaseSampler | None = None,
        **settings: Any,
    ):
        self._settings = one_at_a_time(
            "HyperoptaxSampler", settings, "Optuna", "the study's `direction`"
        )
        self._seed = int(np.random.SeedSequence(seed).generate_state(1)[0] >> 1)
        self._independent = independent_sampler or RandomSampler(seed=seed)
        self._intersection = IntersectionSearchSpace()
        self._model = GrowingModel(self._settings)

    def reseed_rng(self) -> None:
        self._seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
        self._independent.reseed_rng()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {
            name: d for name, d in self._intersection.calculate(study).items() if not d.single()
        }

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._independent.before_trial(study, trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._independent.after_trial(study, trial, state, values)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        if study._is_multi_objective():
            raise ValueError("HyperoptaxSampler: multi-objective studies are not supported.")
        names = sorted(search_space)
        space = {name: to_space(search_space[name]) for name in names}
        maximize = study.direction == StudyDirection.MAXIMIZE
        states = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED, TrialState.RUNNING)
        observed: dict[int, tuple[dict, float]] = {}
        running: list[dict] = []
        for t in study._get_trials(deepcopy=False, states=states, use_cache=False):
            if t.number == trial.number:
                continue
            params = _params(t)
            if not all(
                n in params
                and search_space[n]._contains(search_space[n].to_internal_repr(params[n]))
                for n in names
            ):
                continue
            config = {n: params[n] for n in names}
            if t.state == TrialState.RUNNING:
                running.append(config)
            else:
                value = t.value if t.state == TrialState.COMPLETE else math.nan
                observed[t.number] = (config, math.nan if value is None else float(value))
        signature = (tuple(sorted(search_space.items(), key=lambda kv: kv[0])), maximize)
        observed = dict(sorted(observed.items()))  # in trial order
        state, search = self._model.fit(signature, space, maximize, observed)
        key = jax.random.fold_in(jax.random.PRNGKey(self._seed), trial.number)
        config = to_configs(search.get_next_params(state, key, pending=running), space)[0]
        out = {n: _to_optuna(config[n], search_space[n]) for n in names}
        study._storage.set_trial_system_attr(trial._trial_id, _PARAMS_ATTR, json.dumps(out))
        return out
