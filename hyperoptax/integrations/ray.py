"""hyperoptax's Bayesian search as a Ray Tune searcher.

```python
from ray import tune
from hyperoptax.integrations.ray import HyperoptaxSearch

tuner = tune.Tuner(
    train,
    param_space={"lr": tune.loguniform(1e-4, 1e-1), "width": tune.randint(16, 257)},
    tune_config=tune.TuneConfig(
        search_alg=HyperoptaxSearch(seed=0), metric="loss", mode="min", num_samples=50
    ),
)
tuner.fit()
```

Needs Ray Tune (`pip install "hyperoptax[ray]"`). Users keep Ray's cluster, schedulers,
trial checkpoints and results; the searcher only decides which configuration a trial
tries.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

try:
    from ray.tune.search import Searcher
    from ray.tune.search.sample import (
        Categorical,
        Domain,
        Float,
        Integer,
        LogUniform,
        Quantized,
        Uniform,
    )
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "hyperoptax.integrations.ray needs Ray Tune: pip install 'hyperoptax[ray]'."
    ) from e

from ..checkpoint import _read_checked, state_bytes
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
from ._model import GrowingModel, Observation, one_at_a_time

__all__ = ["HyperoptaxSearch", "to_space"]

_FORMAT = 1  # of the file `HyperoptaxSearch.save` writes


def _multiples(q: float, lower: float, upper: float) -> tuple:
    """The multiples of `q` in `[lower, upper]` (Tune's quantised domains)."""
    first, last = math.ceil(lower / q - 1e-9), math.floor(upper / q + 1e-9)
    if last < first:
        raise ValueError(f"no multiple of {q} lies in [{lower}, {upper}].")
    values = tuple(k * q for k in range(first, last + 1))
    return tuple(int(v) for v in values) if isinstance(q, int) else values


def to_space(domain: Domain) -> Space:
    """The hyperoptax space of one Ray Tune search-space entry.

    `tune.uniform` -> `LinearSpace`, `tune.loguniform` -> `LogSpace`, `tune.randint` ->
    `QLinearSpace`, `tune.lograndint` -> `QLogSpace` (Tune's upper bound of these two is
    exclusive), `tune.choice` -> `CategoricalSpace`, and the quantised ones
    (`tune.quniform`, `tune.qloguniform`, `tune.qrandint`, `tune.qlograndint`) ->
    `DiscreteSpace` of the multiples of `q` they can return. Normal distributions and
    `tune.grid_search` have no counterpart and raise `ValueError`.
    """
    sampler = domain.get_sampler()
    q = None
    if isinstance(sampler, Quantized):
        q, sampler = sampler.q, sampler.sampler
    log = isinstance(sampler, LogUniform)
    if isinstance(sampler, Uniform | LogUniform):
        if isinstance(domain, Categorical) and not log:
            return CategoricalSpace(tuple(domain.categories))
        if isinstance(domain, Float):
            if q is not None:
                return DiscreteSpace(_multiples(q, domain.lower, domain.upper))
            return (LogSpace if log else LinearSpace)(domain.lower, domain.upper)
        if isinstance(domain, Integer):
            if q is not None and q != 1:  # the upper bound is inclusive then
                return DiscreteSpace(_multiples(int(q), domain.lower, domain.upper))
            return (QLogSpace if log else QLinearSpace)(domain.lower, domain.upper - 1)
    raise ValueError(
        f"HyperoptaxSearch: no hyperoptax space for a Tune {type(domain).__name__} "
        f"sampled by {type(sampler).__name__}; use uniform, loguniform, randint, "
        f"lograndint, choice or their quantised forms."
    )


def _convert(space: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """A (nested) dict of Tune domains and hyperoptax spaces -> a dict of spaces.

    Constants are left out: Tune merges them into every trial's configuration itself.
    """
    out: dict[str, Any] = {}
    for name, value in space.items():
        path = f"{where}{name}"
        if isinstance(value, Mapping) and "grid_search" in value:
            raise ValueError(
                f"HyperoptaxSearch: {path!r} is a grid search; a searcher cannot take one "
                "(use tune.choice, or hyperoptax's GridSearch)."
            )
        if isinstance(value, Space):
            out[name] = value
        elif isinstance(value, Domain):
            out[name] = to_space(value)
        elif isinstance(value, Mapping):
            inner = _convert(value, f"{path}/")
            if inner:
                out[name] = inner
    return out


def _pick(config: Mapping[str, Any], space: Mapping[str, Any], where: str = "") -> dict:
    """The entries of `config` that `space` has (a point handed in by the user)."""
    out = {}
    for name, sub in space.items():
        if name not in config:
            raise ValueError(f"HyperoptaxSearch: the point {config!r} has no '{where}{name}'.")
        out[name] = (
            _pick(config[name], sub, f"{where}{name}/") if isinstance(sub, dict) else config[name]
        )
    return out


class HyperoptaxSearch(Searcher):
    """A Ray Tune searcher that suggests each trial's configuration with `BayesianSearch`.

    The search space is `space` (Tune domains such as `tune.loguniform(1e-4, 1e-1)`,
    hyperoptax spaces, or both, in a dict that may nest) or, when `space` is `None`, the
    Tuner's `param_space` (see `to_space`). Every completed trial is an observation:
    its `metric` as reported last (so a trial a scheduler stopped early counts with the
    value it had then); an errored trial, or one that never reported the metric, is a
    failure (a NaN result, which the model treats as the worst result seen). Trials
    suggested but not complete are *pending*: the next suggestion keeps away from them
    (`BayesianSearch.get_next_params(..., pending=...)`), so concurrent trials do not
    receive near-copies of each other's configurations.

    The GP state lives in the driver process between suggestions and is extended by a
    partial update when a trial completes; programs compile once per process for each
    capacity (64 observations, doubling) and each number of pending trials (rounded up to
    a power of two). `save` and `restore` (which Tune calls for experiment checkpoints
    and `Tuner.restore`) keep the state bitwise, so a restored searcher suggests what
    the original would have.

    Args:
        space: the search space, or `None` to take it from the Tuner's `param_space`.
        metric: the reported result to optimise (or `TuneConfig(metric=...)`).
        mode: `"min"` or `"max"` (or `TuneConfig(mode=...)`).
        points_to_evaluate: configurations to try first, before the model's.
        seed: seeds the suggestions (with the trial's position); `None` draws one.
        **settings: `BayesianSearch` settings; default `hx.recommended(n_parallel=1)` for
            the active precision, and any given here replace those. `n_parallel` must
            stay 1 (Tune asks for one trial at a time).
    """

    def __init__(
        self,
        space: Mapping[str, Any] | None = None,
        metric: str | None = None,
        mode: str | None = None,
        *,
        points_to_evaluate: Sequence[Mapping[str, Any]] | None = None,
        seed: int | None = None,
        **settings: Any,
    ):
        if mode not in (None, "min", "max"):
            raise ValueError(f"HyperoptaxSearch: `mode` must be 'min' or 'max', not {mode!r}.")
        super().__init__(metric=metric, mode=mode)
        settings = one_at_a_time("HyperoptaxSearch", settings, "Tune", "`mode`")
        self._model = GrowingModel(settings)
        self._space = _convert(space) if space is not None else None
        if self._space is not None and not self._space:
            raise ValueError("HyperoptaxSearch: `space` has no parameter to search.")
        self._points = [dict(p) for p in points_to_evaluate or ()]
        self._seed = int(np.random.SeedSequence(seed).generate_state(1)[0] >> 1)
        self._n_suggested = 0
        self._observed: dict[str, Observation] = {}
        self._running: dict[str, dict] = {}

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        if self._space is None:
            space = _convert(config)
            if not space:
                return False
            self._space = space
        return True

    def suggest(self, trial_id: str) -> dict | None:
        if self._space is None:
            raise RuntimeError(
                "HyperoptaxSearch has no search space: pass `space`, or give the Tuner a "
                "`param_space` with Tune domains."
            )
        if self._metric is None or self._mode is None:
            raise RuntimeError(
                "HyperoptaxSearch needs `metric` and `mode`: pass them to it or to TuneConfig."
            )
        if self._points:
            config = _pick(self._points.pop(0), self._space)
        else:
            state, search = self._model.fit(
                self._mode, self._space, self._mode == "max", self._observed
            )
            key = jax.random.fold_in(jax.random.PRNGKey(self._seed), self._n_suggested)
            pending = list(self._running.values())
            config = to_configs(search.get_next_params(state, key, pending=pending), self._space)[0]
        self._n_suggested += 1
        self._running[trial_id] = config
        return config

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        config = self._running.pop(trial_id, None)
        if config is None:  # not a trial of this searcher
            return
        value = None if error or result is None else result.get(self._metric)
        self._observed[trial_id] = (config, _number(value))

    def add_evaluated_point(
        self,
        parameters: dict,
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ) -> None:
        """Record a configuration evaluated outside this searcher (an error as a failure)."""
        if self._space is None:
            raise RuntimeError("HyperoptaxSearch: set the search space before adding points.")
        config = _pick(parameters, self._space)
        self._observed[f"hyperoptax-added-{len(self._observed)}"] = (
            config,
            _number(None if error else value),
        )

    # -- checkpoints --------------------------------------------------------------------

    def __getstate__(self) -> dict:
        """What `save` writes: the settings, trials and the GP state (as checkpoint bytes)."""
        out = {k: v for k, v in self.__dict__.items() if k != "_model"}
        m = self._model
        out["_model"] = dict(
            settings=m.settings,
            signature=m.signature,
            recorded=m.recorded,
            capacity=m.capacity,
            state=None if m.state is None else state_bytes(m.state, m.search),
        )
        return out

    def __setstate__(self, saved: dict) -> None:
        saved = dict(saved)
        data = saved.pop("_model")
        self.__dict__.update(saved)
        model = GrowingModel(data["settings"])
        if data["state"] is not None:
            model.reset(data["signature"], self._space, self._mode == "max", data["capacity"])
            assert model.state is not None
            model.state = _read_checked(
                "HyperoptaxSearch's saved state", model.state, model.search, data["state"]
            )[1]
            model.recorded = dict(data["recorded"])
        self._model = model

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"format": _FORMAT, "searcher": self.__getstate__()}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            saved = pickle.load(f)
        if not isinstance(saved, dict) or saved.get("format") != _FORMAT:
            raise ValueError(f"{checkpoint_path} is not a HyperoptaxSearch checkpoint.")
        self.__setstate__(saved["searcher"])


def _number(value: Any) -> float:
    """A reported result as a float; a missing or non-numeric one is a failure (NaN)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
