"""Multi-fidelity search: successive halving and Hyperband on JAX objectives with a budget.

An objective `objective(key, params, budget)` trains one configuration for `budget`
units (epochs, steps: the user's unit; an int32 scalar) and returns a scalar. Successive
halving evaluates many configurations on a small budget, keeps the best `1/eta` of
them, evaluates those on `eta` times the budget, and so on up to `max_budget`.
Hyperband runs several such brackets, from the most aggressive (many configurations,
smallest budget) to plain evaluation at `max_budget`, because how early a ranking can
be trusted depends on the problem (Li et al., "Hyperband: a novel bandit-based approach
to hyperparameter optimization", JMLR 2018).

Each rung's configurations are evaluated at once, `jax.vmap`ped over the population,
one compiled program per population size (the budget is an argument, not a constant).
Objectives outside JAX run with `optimize_host`: asynchronous successive halving, each
configuration reporting as it trains and stopped when it falls behind its rung.
Configurations are drawn uniformly at random from the space, or, with a `model`, mostly
from a Bayesian search fitted to the results of the brackets before, the budget one of
its inputs (in the spirit of BOHB, which fits a density model to one budget's results:
Falkner, Klein and Hutter, "BOHB: robust and efficient hyperparameter optimization at
scale", ICML 2018); once that model has seen enough full-budget results, it also
chooses each rung's survivors, by their predicted full-budget result.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, PyTree

from ._checks import check_int, check_positional, is_traced, plain
from ._dtypes import float_dtype
from ._jit import jit
from ._loop import Progress, _split, abstract_arguments, check_callback, check_scalar_output
from ._warn import warn
from .base import OptimizerState
from .bayesian import BayesianSearch, _predict, fit_model, suggest_raw
from .checkpoint import RunCheckpoint, _describe_arrays
from .host import as_float, check_on_error, settle
from .sharding import check_mesh, pad_to_mesh
from .spaces import LogSpace, flatten_space, to_configs

__all__ = ["Rung", "HyperbandState", "Hyperband", "SuccessiveHalving"]

OBJECTIVE_USAGE = "objective(key, params, budget) -> scalar"
HOST_USAGE = "objective(config, report) with report(step, value) -> bool (True: stop)"
CARRY_USAGE = "objective(key, params, budget, carry) -> (scalar, carry)"


class Rung(NamedTuple):
    """One rung of a bracket: `n_configurations` evaluated with `budget` each."""

    n_configurations: int
    budget: int


class HyperbandState(OptimizerState):
    """Every evaluation of a multi-fidelity search, in the order they ran.

    Row `i` is one evaluation: configuration `X[i]` (raw values, one column per
    parameter), trained with `budget[i]`, result `y[i]` (NaN or inf for a failure).
    `configuration[i]` numbers the configuration (the same number in every rung it was
    promoted to), `bracket[i]` and `rung[i]` say where it ran; `mask[i]` whether row
    `i` holds an evaluation.
    """

    X: Float[Array, "n n_params"]
    y: Float[Array, " n"]
    budget: Int[Array, " n"]
    configuration: Int[Array, " n"]
    bracket: Int[Array, " n"]
    rung: Int[Array, " n"]
    mask: Bool[Array, " n"]


def _budget(max_budget: int, eta: int, steps_below: int, min_budget: int) -> int:
    """`max_budget / eta**steps_below`, rounded to an integer of at least `min_budget`."""
    return max(min_budget, round(max_budget / eta**steps_below))


class Hyperband(eqx.Module):
    """Hyperband over random configurations: brackets of successive halving.

    With `R = max_budget / min_budget` and `s_max = floor(log_eta R)`, bracket `s` (from
    `s_max` down to 0) starts `n = ceil((s_max + 1) eta^s / (s + 1))` configurations on
    budget `max_budget eta^-s` and runs `s + 1` rungs: rung `i` evaluates `floor(n
    eta^-i)` configurations (the best of the rung before) with budget `max_budget
    eta^(i-s)` (Li et al. 2018, Algorithm 1; budgets rounded to integers). For
    `min_budget=1, max_budget=81, eta=3` the brackets start 81, 34, 15, 8 and 5
    configurations on budgets 1, 3, 9, 27 and 81.

    With a `model` (a `BayesianSearch`, for example
    `hx.BayesianSearch(**hx.recommended())`), a bracket's first rung is drawn from it
    once the brackets before hold one evaluation more than it has inputs: its GP is fitted
    to every result so far (fresh hyperparameters each bracket), with the budget as one
    more input on a log scale, so that cheap results inform the model as far as they
    agree with full-budget ones (the fitted length scale of the budget says how far),
    and suggests a Kriging Believer batch at the full budget for all but
    `random_fraction` of the rung; those stay uniformly random, so that a model misled by
    cheap budgets cannot keep the search from the rest of the space. (BOHB, Falkner et
    al. 2018, fits a density model to the largest budget with enough results instead:
    `benchmarks/RESULTS.md`, "Multi-fidelity search at equal budget", compares both.)
    The model's `n_parallel`, `n_warmup` and `maximize` are set by the search (one batch
    of the largest model-drawn rung's size, so that the model compiles once; smaller
    rungs take its first picks and skip the others); its other settings (kernel,
    acquisition, candidates, restarts) are used as they are.
    Once the brackets before have evaluated `n_params + 1` configurations at the full
    budget, the model also chooses each rung's survivors: the GP is fitted to every
    result so far, the rung's included, and the configurations with the best posterior
    mean at the full budget go on, instead of those with the best result on the rung's
    budget, which can mislead (a large learning rate leads early and loses at the end).
    Which brackets use the model depends on the schedule only (`model_brackets`,
    `model_promotions`), so a search stays one traceable program.

    Attributes:
        min_budget: the smallest budget a configuration is evaluated with (>= 1; at
            most `max_budget / eta`, so that a rung fits below the full budget, or equal
            to `max_budget` for brackets of one rung).
        max_budget: the full budget; `best_params` reports the best configuration
            evaluated with it.
        eta: the factor between rungs: each keeps the best `1/eta` (default 3).
        maximize: whether larger results are better (default True).
        model: a `BayesianSearch` whose settings draw the brackets' configurations once
            there are results to fit (default `None`: uniformly random).
        random_fraction: the share of each model-drawn rung that is uniformly random
            instead (default 1/3, BOHB's).
        n_rounds: how many times the whole round of brackets runs (default 1); later
            rounds are where a `model` has the most results to learn from.
    """

    min_budget: int = eqx.field(static=True, converter=plain)
    max_budget: int = eqx.field(static=True, converter=plain)
    eta: int = eqx.field(default=3, static=True, converter=plain)
    maximize: bool = eqx.field(default=True, static=True, converter=plain)
    model: BayesianSearch | None = None
    random_fraction: float = eqx.field(default=1 / 3, static=True, converter=plain)
    n_rounds: int = eqx.field(default=1, static=True, converter=plain)

    def __check_init__(self):
        name = type(self).__name__
        check_int(name, "min_budget", self.min_budget, 1)
        check_int(name, "max_budget", self.max_budget, 1)
        check_int(name, "eta", self.eta, 2)
        check_int(name, "n_rounds", self.n_rounds, 1)
        if self.max_budget < self.min_budget:
            raise ValueError(
                f"{name}: `max_budget` ({self.max_budget}) must be at least `min_budget` "
                f"({self.min_budget})."
            )
        if self.min_budget < self.max_budget < self.eta * self.min_budget:
            ratio = self.max_budget / self.min_budget
            fix = f"`eta={math.floor(ratio)}`, " if ratio >= 2 else ""
            raise ValueError(
                f"{name}: `max_budget / min_budget` = {ratio:g} is below `eta` = {self.eta}, "
                f"so no rung fits below `max_budget`: every configuration would be "
                f"evaluated once, at `max_budget`, and `min_budget` never used. Use "
                f"{fix}a `min_budget` of at most {self.max_budget // self.eta}, or "
                f"`min_budget == max_budget` to evaluate at one budget."
            )
        if not isinstance(self.maximize, bool):
            raise TypeError(f"{name}: `maximize` must be a bool, got {self.maximize!r}.")
        if self.model is not None and not isinstance(self.model, BayesianSearch):
            raise TypeError(
                f"{name}: `model` must be a `BayesianSearch` (for example "
                f"`hx.BayesianSearch(**hx.recommended())`) or None, got "
                f"{type(self.model).__name__}."
            )
        fraction = self.random_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
            raise TypeError(f"{name}: `random_fraction` must be a number, got {fraction!r}.")
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"{name}: `random_fraction` must be in [0, 1], got {fraction}.")

    @classmethod
    def init(cls, space: PyTree, **kwargs: Any) -> tuple[HyperbandState, Hyperband]:
        """`(state, optimizer)`: the optimizer from `kwargs` (`min_budget`, `max_budget`,
        `eta`, `maximize`) and buffers for every evaluation of its brackets."""
        optimizer = cls(**kwargs)
        flat = flatten_space(space)
        n = optimizer._n_evaluations()
        zeros = jnp.zeros((n,), jnp.int32)
        state = HyperbandState(
            space,
            jnp.zeros((n, flat.n_params), float_dtype()),
            jnp.full((n,), jnp.nan, float_dtype()),
            zeros,
            zeros,
            zeros,
            zeros,
            jnp.zeros((n,), bool),
        )
        return state, optimizer

    @property
    def s_max(self) -> int:
        """The most aggressive bracket's number of halvings, `floor(log_eta R)`."""
        ratio = self.max_budget / self.min_budget
        s = int(math.floor(math.log(ratio) / math.log(self.eta) + 1e-9))
        return s

    def _bracket(self, s: int, n: int) -> list[Rung]:
        return [
            Rung(n // self.eta**i, _budget(self.max_budget, self.eta, s - i, self.min_budget))
            for i in range(s + 1)
        ]

    def brackets(self) -> list[list[Rung]]:
        """The schedule: for each bracket in the order they run, its rungs (`n_rounds`
        times the round of brackets)."""
        return self._round() * self.n_rounds

    def _round(self) -> list[list[Rung]]:
        s_max = self.s_max
        return [
            self._bracket(s, math.ceil((s_max + 1) * self.eta**s / (s + 1)))
            for s in range(s_max, -1, -1)
        ]

    def model_brackets(self, n_params: int) -> list[bool]:
        """For each bracket, whether a `model` draws its configurations: once the brackets
        before it hold one evaluation more than the GP has inputs (`n_params + 2` with the
        budget input, `n_params + 1` when `min_budget == max_budget`). Depends on the
        schedule only."""
        need = n_params + (2 if self.min_budget < self.max_budget else 1)
        done, out = 0, []
        for bracket in self.brackets():
            out.append(done >= need)
            done += sum(r.n_configurations for r in bracket)
        return out

    def model_promotions(self, n_params: int) -> list[bool]:
        """For each bracket, whether `model` chooses its survivors: once the brackets
        before it evaluated `n_params + 1` configurations at the full budget (never when
        `min_budget == max_budget`, where a bracket has one rung). Depends on the
        schedule only."""
        done, out = 0, []
        for bracket in self.brackets():
            out.append(self.min_budget < self.max_budget and done >= n_params + 1)
            done += bracket[-1].n_configurations  # every bracket ends at max_budget
        return out

    def _n_evaluations(self) -> int:
        """How many evaluations the schedule makes (the rows of `init`'s state)."""
        return sum(r.n_configurations for bracket in self.brackets() for r in bracket)

    def _n_model(self, n: int) -> int:
        """How many of a first rung of `n` the model draws."""
        return n - round(self.random_fraction * n)

    def total_budget(self, continued: bool = False) -> int:
        """The sum of the budgets the schedule spends: every evaluation from scratch, or
        with `continued` each promoted configuration only from its last rung's budget on
        (`optimize(..., init_carry=...)`)."""
        total = 0
        for bracket in self.brackets():
            previous = 0
            for rung in bracket:
                total += rung.n_configurations * (rung.budget - (previous if continued else 0))
                previous = rung.budget
        return total

    def optimize(
        self,
        state: HyperbandState,
        key: PRNGKeyArray,
        objective: Callable,
        *,
        init_carry: Callable | None = None,
        callback: Callable | None = None,
        checkpoint: str | os.PathLike | None = None,
        progress: bool | None = None,
        mesh: Mesh | None = None,
    ) -> tuple[HyperbandState, tuple[list[PyTree], list[Array]]]:
        """Run every bracket. `objective(key, params, budget)` gets one configuration
        (each leaf a scalar) and an int32 budget, and returns a scalar. `state` is the
        empty one `init` returns (a state holding evaluations is refused with a
        `ValueError`: the schedule writes its own rows, so they would not be kept).

        With `init_carry`, a promoted configuration continues its training instead of
        starting again: `init_carry(key, params)` makes a configuration's training state
        (any pytree of arrays) before its first rung, and the objective is
        `objective(key, params, budget, carry) -> (result, carry)`: it trains on from
        `carry` (what it returned on the configuration's last rung) until `budget` in
        total, so the carry should record how far it got. `total_budget(continued=True)`
        says what the schedule then spends.

        Returns `(state, (params_hist, results_hist))`, one batched params pytree and
        one results array per rung, in the order they ran; `state` holds every
        evaluation with its budget. Within a rung the configurations with the best
        results are promoted (with a `model`, in the brackets `model_promotions` names,
        those the model predicts best at the full budget), failures (NaN or inf) last: a
        failed configuration goes on only when fewer configurations than the next rung
        holds succeeded.

        `callback(rung, state, params, results)` is called on the host after every rung
        (`rung` counts the rungs run, from 0; `params` and `results` are the rung's); a
        truthy return value stops the search there. `progress` shows a bar of rungs with
        the bracket and rung running and the best full-budget result so far: `None`
        (default) when stderr is a terminal, `True` always, `False` never.

        `checkpoint` (a file path) saves the search after every rung: the state, where
        the schedule stands and, with `init_carry`, the training states of the rung just
        run. Called again with the same arguments after a crash, `optimize` resumes from
        the file: the rungs already run are not evaluated again (their results are read
        from the state) and the search ends bit for bit as an uninterrupted one; a
        finished or stopped search returns at once. A checkpoint of another search,
        key, state or `init_carry` choice is refused.

        `mesh` (a `jax.sharding.Mesh`) splits each rung's population over the mesh's
        devices (all its axes), each device training its share; a population that does
        not divide evenly is padded with copies of its last configuration, whose results
        are dropped.

        Every step is a JAX operation, so a whole search can be traced:
        `eqx.filter_vmap(lambda k: opt.optimize(state, k, objective)[0])(keys)` runs one
        search per key in one program (without `callback`, `checkpoint` or `progress`,
        which work on the host).
        """
        name = type(self).__name__
        self._check_state(state)
        check_callback(name, callback)
        check_mesh(mesh, None, name)
        if init_carry is None:
            check_positional(name, "objective", objective, 3, OBJECTIVE_USAGE)
        else:
            check_positional(name, "objective", objective, 4, CARRY_USAGE)
            check_positional(name, "init_carry", init_carry, 2, "init_carry(key, params) -> carry")
        _check_outputs(objective, init_carry, state, key)
        state_traced = any(is_traced(x) for x in jax.tree_util.tree_leaves(state))
        traced = is_traced(key) or state_traced
        if traced and (callback is not None or progress or checkpoint is not None):
            raise ValueError(
                f"{name}.optimize: `callback`, `checkpoint` and `progress` work with results "
                f"on the host, which a traced search (under jit or vmap) cannot; run without "
                f"them there."
            )
        if progress is None:
            progress = not traced and sys.stderr.isatty()
        schedule = self.brackets()
        n_rungs = sum(len(br) for br in schedule)
        run, done, stopped = None, 0, False
        if checkpoint is not None:
            run = RunCheckpoint(checkpoint, self, state, key, n_rungs, mode="rungs")
            like = functools.partial(_carry_like, self, state, key, objective, init_carry)
            state, _, _, done, stopped, more = run.resume(state, arrays_like=like)
            if done and more.get("continued") != (init_carry is not None):
                with_or_without = "with" if more.get("continued") else "without"
                raise ValueError(
                    f"{checkpoint} is the checkpoint of a run {with_or_without} `init_carry`; "
                    f"resume it the same way, or pass another checkpoint path to start a new "
                    f"search."
                )
        if not done and not state_traced:  # (a search vmapped over keys has its state)
            self._check_empty(state, "optimize")
        bar = Progress(self, bool(progress), n_rungs, done, [])
        try:
            return self._run(
                state, key, objective, init_carry, callback, bar, run, done, stopped, mesh
            )
        finally:
            bar.close()

    def _check_state(self, state: Any) -> None:
        """`state` is a `HyperbandState` with a row for every evaluation of the schedule."""
        name = type(self).__name__
        if not isinstance(state, HyperbandState):
            raise TypeError(
                f"{name}.optimize: `state` must be the `HyperbandState` that "
                f"`{name}.init` returns, got {type(state).__name__}."
            )
        need, have = self._n_evaluations(), state.X.shape[-2]
        if have < need:
            raise ValueError(
                f"{name}.optimize: `state` has room for {have} evaluations, and this "
                f"schedule makes {need}; make the state with `{name}.init` and the same "
                f"`min_budget`, `max_budget`, `eta` and `n_rounds`."
            )

    def _check_empty(self, state: HyperbandState, method: str) -> None:
        """A new search starts from a state without evaluations: the schedule writes its
        own rows from the first, so a used state's results would be silently dropped."""
        n = int(np.asarray(state.mask).sum())
        if n:
            name = type(self).__name__
            raise ValueError(
                f"{name}.{method}: `state` already holds {n} evaluations of an earlier "
                f"search, which the state this search returns would not keep; pass the "
                f"state `{name}.init` returns (keep the earlier one to compare; for a "
                f"longer search use a larger `n_rounds`, and to resume an interrupted one "
                f"pass `checkpoint=`)."
            )

    def _run(self, state, key, objective, init_carry, callback, bar, run, done, stopped, mesh):
        """The schedule's rungs in order; the first `done` replayed from `state` (a resumed
        checkpoint): every key is split as in the first run, nothing is evaluated, and the
        last replayed rung's training states come from `run.arrays`."""
        flat = flatten_space(state.space)
        params_hist, results_hist = [], []
        row, next_configuration, r = 0, 0, 0
        model_brackets = self.model_brackets(flat.n_params)
        model_promotions = [
            self.model is not None and m for m in self.model_promotions(flat.n_params)
        ]
        # The model that ranks a rung's configurations by their prediction at the full budget.
        ranker = (
            None
            if self.model is None
            else dataclasses.replace(self.model, n_warmup=0, maximize=self.maximize)
        )
        # One batch size for every model-drawn rung (the largest; smaller rungs take the
        # first picks of the sequential batch), so that the model compiles once.
        n_draw = max(
            (
                self._n_model(br[0].n_configurations)
                for br, m in zip(self.brackets(), model_brackets, strict=True)
                if m
            ),
            default=0,
        )
        schedule = self.brackets()
        # Keys and random configurations are drawn for the largest rung and cut to size
        # (JAX's threefry numbers its outputs in order, so the first `n` of a split into
        # more keys are the keys of a split into `n`): one program each, not one per size.
        n_most = max(br[0].n_configurations for br in schedule)
        for b, bracket in enumerate(schedule):
            n0 = bracket[0].n_configurations
            n_model = self._n_model(n0)
            drawn_by_model = bool(self.model is not None and model_brackets[b] and n_model)
            key, k_init, k_model, X = _bracket_draw(state.space, key, n_most, drawn_by_model)
            X = _rows(X, 0, n0)
            if r < done:  # replayed: the configurations the first run drew
                X = _rows(state.X, row, n0)
            elif drawn_by_model:
                model = dataclasses.replace(
                    self.model, n_parallel=n_draw, n_warmup=0, maximize=self.maximize
                )
                # Compiled for the largest model-drawn rung; a smaller one skips the
                # picks it does not use.
                drawn = _model_draws(
                    model,
                    state,
                    self.min_budget,
                    self.max_budget,
                    k_model,
                    n_picks=_i32(n_model),
                )
                X = _with_drawn(X, drawn, n_model)
            ids = jnp.asarray(np.arange(n0, dtype=np.int32) + next_configuration)
            next_configuration += n0
            carry = None
            if init_carry is not None and r >= done:
                carry = _init(init_carry, flat.unflatten(X), _split(k_init, n_most), mesh)
            for i, rung in enumerate(bracket):
                params = flat.unflatten(X)
                n = len(X)
                key, keys = _rung_keys(key, n_most)  # the rung's keys: the first n
                last_in_bracket = i + 1 == len(bracket)
                replayed = r < done
                if replayed:
                    results = _rows(state.y, row, n)
                    if r == done - 1 and init_carry is not None and not last_in_bracket:
                        carry = jax.tree_util.tree_map(jnp.asarray, run.arrays)
                    bar.see(results, best=rung.budget == self.max_budget)
                else:
                    budget = jnp.asarray(rung.budget, jnp.int32)
                    if carry is None:
                        results = _evaluate(objective, params, keys, budget, mesh)
                    else:
                        results, carry = _continue(objective, params, keys, budget, carry, mesh)
                    state = _record(state, _i32(row), X, results, budget, ids, _i32(b), _i32(i))
                row, r = row + n, r + 1
                params_hist.append(params)
                results_hist.append(results)
                if not replayed:
                    bar.update(
                        results,
                        best=rung.budget == self.max_budget,  # the best shown: full budget
                        info={
                            "bracket": f"{b + 1}/{len(schedule)}",
                            "rung": f"{i + 1}/{len(bracket)}",
                        },
                    )
                    if callback is not None:
                        stopped = bool(callback(r - 1, state, params, results))
                    if run is not None:
                        run.save(
                            state,
                            [],
                            [],
                            stopped,
                            iteration=r,
                            arrays=None if last_in_bracket else carry,
                            continued=init_carry is not None,
                        )
                if stopped and r >= done:
                    return state, (params_hist, results_hist)
                if not last_in_bracket:
                    k = bracket[i + 1].n_configurations
                    if r < done:  # the next rung was replayed too: its rows are recorded
                        X, ids = _rows(state.X, row, k), _rows(state.configuration, row, k)
                    elif model_promotions[b]:
                        scores = _model_scores(ranker, state, self.min_budget, self.max_budget)
                        ranking = _rows(scores, row - n, n)
                        X, ids, carry = _advance(ranking, X, ids, carry, k, True)
                    else:
                        X, ids, carry = _advance(results, X, ids, carry, k, self.maximize)
        return state, (params_hist, results_hist)

    def optimize_host(
        self,
        state: HyperbandState,
        key: PRNGKeyArray,
        objective: Callable,
        *,
        executor: Executor | None = None,
        n_configurations: int | None = None,
        on_error: str = "record",
        checkpoint: str | os.PathLike | None = None,
        callback: Callable | None = None,
        progress: bool | None = None,
    ) -> tuple[HyperbandState, list[PyTree]]:
        """Asynchronous successive halving (ASHA) for objectives outside JAX.

        `objective(config, report)` trains one configuration (plain Python values, as
        `to_configs` gives them) and calls `report(step, value)` as it goes, `step` the
        budget spent so far in your unit (it must not decrease: a step lower than the one
        before fails the configuration with a `ValueError`, as a `value` that is not one
        number does); `report` returns `True` when the configuration should stop (its
        return value is then not used). A configuration is judged when its steps first
        reach a rung's budget, by the value reported then (a step reported again after
        that is not used, with one warning per search): it goes on if that value is among
        the best `1/eta` of the values that rung has recorded so far (the best one while
        fewer than `eta` have), so nobody waits for a slow configuration (Li et al., "A
        system for massively parallel hyperparameter tuning", MLSys 2020); at
        `max_budget` it is done. Configurations run as the executor's workers free up
        (`executor.submit`; threads, or anything that runs the objective in this process,
        since `report` answers from here), each in its bracket of the schedule (the
        brackets' first rungs in order, repeated); without `executor` one after another.

        `state` is the empty one `init` returns, as for `optimize`.
        `n_configurations` (default: the schedule's, `sum` of the brackets' first rungs)
        are drawn uniformly at random, all submitted at once. With a `model`, they are
        drawn one at a time as workers free up, `model.n_parallel` running at once: once
        the rungs hold one value more than the GP has inputs, the model's GP is fitted
        to every rung value so far (budget as one more input, as in `optimize`) and
        suggests at the full budget, with the running configurations pending (Kriging
        Believer), except for every configuration that `random_fraction` keeps random
        (with 1/3: the third, sixth, ...). Promotions here go by the rung's values, with
        or without a model (each is decided at one report, where `optimize` decides a
        whole rung at once). An objective that raises has failed: NaN is
        recorded at its next rung, with a warning (`on_error="raise"` re-raises instead,
        and every other configuration is told to stop at its next report). `step` and
        `value` must each be one real number (a Python number, or an array holding
        one): anything else makes `report` raise `TypeError` in the objective, which
        then fails as above. A reported value that is NaN, infinite or too large for
        the state's dtype (a diverged training) is recorded as NaN and stops that
        configuration. An objective that returns before it is stopped or reaches
        `max_budget` is warned about, once per search.

        `checkpoint` (a file path) saves the search whenever a rung value is recorded or
        a configuration ends: every value so far, which configurations are done, and the
        configurations drawn. Called again with the same arguments after a crash, it
        resumes: finished configurations are not run again, and those that were
        running start their training again (their training state lives in your
        objective) but record only the rungs they had not reached.

        `callback(i, state, params, results)` is called from this thread whenever a
        configuration ends (`i` counts them, `state` holds every rung value so far,
        `params` the configuration as a batch of one, `results` its last value); a
        truthy return value stops the search: configurations not yet handed to the
        executor are not started, and every other one is told to stop at its next
        report (without a model all are handed out at once, so each queued one stops at
        its first report). `progress` shows a bar
        of ended configurations with the best full-budget value so far: `None`
        (default) when stderr is a terminal, `True` always, `False` never.

        Returns `(state, configs)`: a state recording every rung value in the order they
        came (`budget` the rung's budget, `configuration` the index into `configs`),
        and the configurations.
        """
        name = type(self).__name__
        check_positional(name, "objective", objective, 2, HOST_USAGE)
        check_on_error(on_error)
        check_callback(name, callback)
        if isinstance(executor, ProcessPoolExecutor):
            raise TypeError(
                f"{name}.optimize_host: `report` answers from this process, so the "
                f"objective must run in it: use a thread pool (the objective may start a "
                f"process or a remote job itself), not a ProcessPoolExecutor."
            )
        if n_configurations is None:
            n_configurations = sum(b[0].n_configurations for b in self.brackets())
        n_configurations = check_int(name, "n_configurations", n_configurations, 1)
        flat = flatten_space(state.space)
        X = np.array(flat.from_unit(flat.sample_unit(key, n_configurations)))  # writable
        k_model = jax.random.fold_in(key, 1)  # the model's picks: fold_in(k_model, j)
        cycle = [b for b, br in enumerate(self.brackets()) for _ in range(br[0].n_configurations)]
        ladder = _Ladder(self, [cycle[j % len(cycle)] for j in range(n_configurations)])
        configs: list[Any] = []
        n_restored, stopped = 0, False
        if checkpoint is not None:
            run = RunCheckpoint(checkpoint, self, state, key, n_configurations, mode="asha")
            _, _, _, _, stopped, more = run.resume(state)
            n_restored = len(more.get("X", []))
            if n_restored:
                X[:n_restored] = np.asarray(more["X"], X.dtype)
            ladder.restore(more.get("rows", []), more.get("done", []))

            def save() -> None:  # with the ladder's lock held
                run.save(
                    state,
                    [],
                    [],
                    stopped,
                    iteration=len(ladder.rows),
                    rows=[list(r) for r in ladder.rows],
                    done=[j for j, done in enumerate(ladder.stopped) if done],
                    X=X[: len(configs)].tolist(),
                )

            ladder.save = save
        if not ladder.rows:  # a new search (nothing restored from a checkpoint)
            self._check_empty(state, "optimize_host")
        draw = None if self.model is None else _HostDraws(self, state, ladder, X)
        if executor is None:
            n_running = 1
        else:
            n_running = n_configurations if draw is None else draw.model.n_parallel
        futures: dict[Future, int] = {}

        def config_of(j: int) -> Any:
            return to_configs(flat.unflatten(jnp.asarray(X[j : j + 1])), state.space)[0]

        def submit(j: int) -> None:
            if draw is not None and j >= n_restored:  # the running ones are pending
                running = X[sorted(futures.values())]
                X[j] = draw(X[j], running, jax.random.fold_in(k_model, j), j)
            configs.append(config_of(j))
            if ladder.stopped[j]:  # done before the checkpoint was written
                return
            run = functools.partial(objective, configs[j], functools.partial(ladder.report, j))
            if executor is not None:
                futures[executor.submit(run)] = j
                return
            future: Future = Future()
            try:
                future.set_result(run())
            except Exception as e:
                future.set_exception(e)
            futures[future] = j

        if progress is None:
            progress = sys.stderr.isatty()
        n_ended = sum(ladder.stopped)  # by a resumed checkpoint
        bar = Progress(self, bool(progress), n_configurations, n_ended, [])

        def ended(j: int) -> None:
            """Configuration `j` ended: the bar, and the callback (which may stop)."""
            nonlocal n_ended, stopped
            with ladder.lock:
                last = next((r for r in reversed(ladder.rows) if r[0] == j), None)
            value = np.asarray([math.nan if last is None else last[3]])
            full = last is not None and last[2] == self.max_budget
            bar.update(value, best=full, info={"bracket": str(ladder.bracket[j] + 1)})
            if callback is not None and not stopped:
                params = flat.unflatten(jnp.asarray(X[j : j + 1]))
                if callback(n_ended, _host_state(state.space, X, ladder), params, value):
                    with ladder.lock:
                        stopped = True
                        if ladder.save is not None:
                            ladder.save()
                    ladder.abort()
            n_ended += 1

        def settle_finished() -> None:
            done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
            for future in done:
                j = futures.pop(future)
                # The return value is not used: NaN here means the objective raised
                # (re-raised with on_error="raise").
                call = functools.partial(_ignore_result, future.result)
                ladder.finish(j, failed=math.isnan(settle(configs[j], call, on_error)))
                ended(j)

        try:
            for j in range(n_configurations):
                while len(futures) >= n_running:
                    settle_finished()
                if stopped:
                    break
                submit(j)
            while futures:
                settle_finished()
        except BaseException:
            ladder.abort()
            raise
        finally:
            bar.close()
        configs += [config_of(j) for j in range(len(configs), n_restored)]  # a stopped resume
        return _host_state(state.space, X, ladder), configs

    def _best_row(self, state: HyperbandState) -> tuple[Array, Array]:
        """`(row, found)`: the row of the best finite result at the largest budget that
        has one, and whether any result is finite (row 0 when none is). JAX operations
        only, so that `best_result` and `best_params` work on states traced under `jit`
        or `vmap` (a search vmapped over seeds)."""
        ok = state.mask & jnp.isfinite(state.y)
        top = jnp.max(jnp.where(ok, state.budget, -1))  # largest budget with a finite result
        value = state.y if self.maximize else -state.y
        return jnp.argmax(jnp.where(ok & (state.budget == top), value, -jnp.inf)), jnp.any(ok)

    def best_result(self, state: HyperbandState) -> Array:
        """The best result at the largest budget that has a finite result (`max_budget`
        unless every evaluation there failed); NaN if none is finite."""
        row, found = self._best_row(state)
        return jnp.where(found, state.y[row], jnp.nan)

    def best_params(self, state: HyperbandState) -> PyTree:
        """The configuration (each leaf a scalar) of `best_result`. Raises a `ValueError`
        while no evaluation has a finite result (under `jit` or `vmap`, when the program
        runs)."""
        message = f"{type(self).__name__}: no evaluation has a finite result yet."
        index, found = self._best_row(state)
        traced = is_traced(state.y) or is_traced(state.mask)
        if not traced and not bool(found):
            raise ValueError(message)
        row = state.X[index]
        if traced:
            row = eqx.error_if(row, ~found, message)
        flat = flatten_space(state.space)
        return jax.tree_util.tree_map(lambda leaf: leaf[0], flat.unflatten(row[None, :]))


class SuccessiveHalving(Hyperband):
    """Successive halving: one bracket that ends at `max_budget`.

    By default it is Hyperband's most aggressive bracket: `eta**s_max` configurations on
    budget `max_budget eta^-s_max` (about `min_budget`), each rung keeping the best
    `1/eta` and multiplying the budget by `eta`. With `n_configurations = n` it runs
    `s + 1` rungs, `s = min(s_max, floor(log_eta n))`, so that the last rung still has a
    configuration and still runs at `max_budget`. With `n_rounds` the bracket runs
    again, and a `model` draws the later rounds' configurations.

    Attributes:
        n_configurations: configurations in the first rung (default `eta**s_max`).
    """

    n_configurations: int | None = eqx.field(default=None, static=True, converter=plain)

    def __check_init__(self):
        if self.n_configurations is not None:
            check_int(type(self).__name__, "n_configurations", self.n_configurations, 1)

    def _round(self) -> list[list[Rung]]:
        if self.n_configurations is None:
            return [self._bracket(self.s_max, self.eta**self.s_max)]
        n = self.n_configurations
        s = min(self.s_max, int(math.floor(math.log(n) / math.log(self.eta) + 1e-9)))
        return [self._bracket(s, n)]


def _ignore_result(call: Callable[[], Any]) -> float:
    call()
    return 0.0


def _host_state(
    space: PyTree, X: np.ndarray, ladder: _Ladder, n_rows: int | None = None
) -> HyperbandState:
    """The rung values `ladder` has recorded, in the order they came, as a state; padded
    with masked rows to `n_rows` when given (more rows if more arrived meanwhile), and
    to one row when nothing was recorded."""
    with ladder.lock:
        rows = list(ladder.rows)
    k = len(rows)
    # At least one row (masked when nothing was recorded), as every other state has.
    n = max(k, 1 if n_rows is None else n_rows)
    dtype = np.dtype(float_dtype())
    # NumPy arrays of the final dtypes, moved to the device as they are: no conversion
    # to compile for each new number of rows.
    X_rows = np.zeros((n, X.shape[1]), dtype)
    X_rows[:k] = X[[r[0] for r in rows]].reshape(k, X.shape[1])
    y = np.full((n,), np.nan, dtype)
    y[:k] = [r[3] for r in rows]
    ints = np.zeros((4, n), np.int32)
    ints[:, :k] = (
        np.asarray([(r[2], r[0], ladder.bracket[r[0]], r[1]) for r in rows], np.int32)
        .reshape(k, 4)
        .T
    )
    columns = (X_rows, y, *ints, np.arange(n) < k)
    return HyperbandState(space, *(jax.device_put(c) for c in columns))


class _Ladder:
    """ASHA's bookkeeping for `optimize_host`, shared by the worker threads."""

    def __init__(self, opt: Hyperband, bracket: list[int]):
        self.opt, self.bracket = opt, bracket
        self.budgets = [[r.budget for r in br] for br in opt.brackets()]
        self.values: dict[tuple[int, int], list[float]] = {}  # (bracket, rung) -> values
        self.next_rung = [0] * len(bracket)
        self.last_step = [-math.inf] * len(bracket)  # the last step each one reported
        self.rung_step = [-math.inf] * len(bracket)  # the step of each one's last rung value
        self.repeat_warned = False
        self.early_warned = False
        self.stopped = [False] * len(bracket)
        self.rows: list[tuple[int, int, int, float]] = []  # configuration, rung, budget, value
        self.lock = threading.Lock()
        self.aborted = False
        self.save: Callable[[], None] | None = None  # called with the lock held
        self.biggest = float(np.finfo(float_dtype()).max)  # values beyond are not finite

    def restore(self, rows: list, done: list[int]) -> None:
        """The rung values and finished configurations of a checkpoint, recorded again."""
        for j, k, _, value in rows:
            assert self.next_rung[j] == k, "a checkpoint's rows are in the order they came"
            self._record(j, value)
        for j in done:
            self.stopped[j] = True

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.opt.maximize else a < b

    def _record(self, j: int, value: float) -> bool:
        """Record `value` at configuration `j`'s next rung; whether it goes on."""
        b, k = self.bracket[j], self.next_rung[j]
        self.rows.append((j, k, self.budgets[b][k], value))
        rung = self.values.setdefault((b, k), [])
        rung.append(value)
        self.next_rung[j] = k + 1
        if not math.isfinite(value) or k + 1 == len(self.budgets[b]):
            return False
        finite = [v for v in rung if math.isfinite(v)]
        ahead = sum(self._better(v, value) for v in finite)
        return ahead < max(1, len(rung) // self.opt.eta)

    def report(self, j: int, step, value) -> bool:
        """`report(step, value)` for configuration `j`: `True` when it should stop."""
        # Anything but one real number is a mistake in the objective, which fails it
        # (recorded with a warning, or re-raised with on_error="raise"), as a result of
        # that kind does in `optimize_host` of the other searches. A finite value too
        # large for the state's dtype is recorded as NaN, as a diverged training is.
        step = as_float(step, "report(step, value): `step` must be")
        value = as_float(value, "report(step, value): `value` must be")
        if abs(value) > self.biggest:
            value = math.nan
        with self.lock:
            if self.aborted or self.stopped[j]:
                return True
            # A step that goes back is a mistake in the objective too (a training that
            # restarted its counter, or reports another configuration's steps): the
            # rungs it passed hold values of the steps reported before.
            if step < self.last_step[j]:
                raise ValueError(
                    f"report(step, value): `step` went back from {self.last_step[j]:g} to "
                    f"{step:g}; a configuration's steps must not decrease."
                )
            # The same step again after it gave a rung its value (reports after every
            # batch with the epoch as the step): the rung keeps the first value. Said
            # once per search, as Optuna's `trial.report` does for each such report.
            repeat = step == self.rung_step[j] and not self.repeat_warned
            self.repeat_warned |= repeat
            self.last_step[j] = step
            budgets = self.budgets[self.bracket[j]]
            go_on, recorded = True, False
            while go_on and self.next_rung[j] < len(budgets) and step >= budgets[self.next_rung[j]]:
                go_on, recorded = self._record(j, value), True
            if recorded:
                self.rung_step[j] = step
            self.stopped[j] = not go_on
            if recorded and self.save is not None:
                self.save()
        if repeat:
            warn(
                f"hyperoptax: configuration {j} reported step {step:g} again; a rung keeps "
                f"the value first reported at its budget, so this one ({value:g}) and later "
                f"repeats are not used (this warning is not repeated). Report each step "
                f"once, for example after each epoch with the epochs done.",
                RuntimeWarning,
            )
        return not go_on

    def finish(self, j: int, failed: bool) -> None:
        """Configuration `j`'s objective returned (or raised, `failed`)."""
        with self.lock:
            if self.stopped[j]:
                return
            self.stopped[j] = True
            if self.aborted and not failed:  # told to stop by a stopped search
                if self.save is not None:
                    self.save()
                return
            if failed:
                self._record(j, math.nan)
            if self.save is not None:
                self.save()
            if failed or self.early_warned:
                return
            self.early_warned = True
            done, rungs = self.next_rung[j], len(self.budgets[self.bracket[j]])
        warn(
            f"hyperoptax: the objective returned for configuration {j} before it reached "
            f"max_budget={self.opt.max_budget} or was stopped, with {done} of its "
            f"{rungs} rungs reported; call report(step, value) as it trains, at least at "
            f"every rung's budget (its return value is not used). This warning is not "
            f"repeated.",
            RuntimeWarning,
        )

    def abort(self) -> None:
        with self.lock:
            self.aborted = True  # every later report says stop


def _fitted(model: BayesianSearch, state: HyperbandState, min_budget: int, max_budget: int):
    """`model`'s state holding every result so far, its GP fitted (fresh hyperparameters):
    the budget is one more input (log scale) unless every evaluation has the same one."""
    n, d = state.X.shape
    if min_budget == max_budget:
        observed = model._init_state(state.space, n)
        X = state.X
    else:
        space = (state.space, LogSpace(float(min_budget), float(max_budget)))
        observed = model._init_state(space, n)
        X = jnp.concatenate([state.X, state.budget[:, None].astype(state.X.dtype)], axis=1)
        # Empty rows at the smallest budget, where the logarithm is defined (masked out).
        X = jnp.where(state.mask[:, None], X, X.at[:, d].set(min_budget))
    observed = eqx.tree_at(lambda s: (s.X, s.y, s.mask), observed, (X, state.y, state.mask))
    return fit_model(model, observed)


@jit
def _model_scores(
    model: BayesianSearch, state: HyperbandState, min_budget: int, max_budget: int
) -> Array:
    """For every row of `state`, the model's posterior mean of its configuration at the
    full budget, larger better (the model's scale: `BayesianSearch.predict`); `-inf`
    where the row's result failed or is empty. What a promotion ranks once the model
    has seen full-budget results: a configuration that leads on a small budget but that
    the full-budget results around it say will fall behind is not promoted."""
    fitted = _fitted(model, state, min_budget, max_budget)
    full = jnp.full((state.X.shape[0], 1), max_budget, state.X.dtype)
    mean, _, _ = _predict(model, fitted, jnp.concatenate([state.X, full], axis=1))
    return jnp.where(state.mask & jnp.isfinite(state.y), mean, -jnp.inf)


@jit
def _model_draws(
    model: BayesianSearch,
    state: HyperbandState,
    min_budget: int,
    max_budget: int,
    key,
    pending=None,
    pending_mask=None,
    n_picks=None,
) -> Array:
    """`model.n_parallel` raw configurations: `model`'s suggestions at the full budget,
    its GP fitted to every result so far (`_fitted`). `pending` (raw rows, those where
    `pending_mask`) are configurations running at the full budget. With `n_picks` (an
    int32 scalar) only the first that many are drawn (the rest are not used)."""
    d = state.X.shape[1]
    fitted = _fitted(model, state, min_budget, max_budget)
    space, fixed = fitted.space, None
    if min_budget < max_budget:
        fixed = jnp.full((d + 1,), jnp.nan, state.X.dtype).at[d].set(1.0)
    if pending is not None:
        full = jnp.full((len(pending), fitted.X.shape[1] - d), max_budget, state.X.dtype)
        pending = flatten_space(space).to_unit(jnp.concatenate([pending, full], axis=1))
        pending = jnp.where(pending_mask[:, None], pending, 0.5)  # padding: masked out
    return suggest_raw(model, fitted, key, pending, pending_mask, fixed, n_picks)[:, :d]


class _HostDraws:
    """`optimize_host`'s model draws: one configuration at a time, from the rung values
    recorded so far, with the running configurations pending."""

    def __init__(self, opt: Hyperband, state: HyperbandState, ladder: _Ladder, X: np.ndarray):
        """`X`: every configuration's raw row (filled in as they are drawn)."""
        self.opt, self.space, self.ladder, self.configurations = opt, state.space, ladder, X
        self.d = flatten_space(state.space).n_params
        self.need = self.d + (2 if opt.min_budget < opt.max_budget else 1)
        assert opt.model is not None
        self.model = opt.model
        # One pick per draw; the running configurations padded to n_parallel - 1 slots.
        self.picker = dataclasses.replace(
            opt.model, n_parallel=1, n_warmup=0, maximize=opt.maximize
        )

    def __call__(self, x: np.ndarray, running: np.ndarray, key, j: int) -> np.ndarray:
        """Configuration `j`: `x` (its random draw), or the model's pick."""
        f = self.opt.random_fraction
        if math.floor((j + 1) * f) > math.floor(j * f):  # a random one
            return x
        with self.ladder.lock:
            k = len(self.ladder.rows)
        if k < self.need:
            return x
        # Buffers of the next power of two (at least 32) rows: the model's cost follows
        # the rows recorded, and each size compiles once.
        n_rows = max(32, 1 << (k - 1).bit_length())
        state = _host_state(self.space, self.configurations, self.ladder, n_rows)
        slots = max(1, self.model.n_parallel - 1)
        pending = np.zeros((slots, self.d), x.dtype)
        pending[: len(running)] = running[:slots]
        pending_mask = jnp.arange(slots) < min(len(running), slots)
        drawn = _model_draws(
            self.picker,
            state,
            self.opt.min_budget,
            self.opt.max_budget,
            key,
            jnp.asarray(pending),
            pending_mask,
        )
        return np.asarray(drawn[0])


# The host loop's bookkeeping between rungs is compiled, one small program per rung
# size: run op by op, each operation compiled a program of its own for every shape it
# met (about 260 programs and 8 s before the first result of a model-based search;
# benchmarks/RESULTS.md, "The bookkeeping between rungs, compiled").


def _i32(v: int) -> Array:
    return jnp.asarray(v, jnp.int32)


@jit
def _bracket_draw(space: PyTree, key, n: int, model: bool):
    """A bracket's keys `(key, k_init, k_model)` (`k_model` None unless `model`) and `n`
    random configurations (raw rows; the bracket takes the first ones it needs)."""
    key, k_sample, k_init = jax.random.split(key, 3)
    k_model = None
    if model:
        key, k_model = jax.random.split(key)
    flat = flatten_space(space)
    return key, k_init, k_model, flat.from_unit(flat.sample_unit(k_sample, n))


@jit
def _rung_keys(key, n: int):
    """The next key, and `n` evaluation keys (a rung uses the first ones it needs)."""
    key, k_eval = jax.random.split(key)
    return key, jax.random.split(k_eval, n)


def _population(params: PyTree) -> int:
    return jax.tree_util.tree_leaves(params)[0].shape[0]


@jit
def _with_drawn(X, drawn, n_model: int):
    """`X` with its first `n_model` rows the model's draws."""
    return jnp.concatenate([drawn[:n_model], X[n_model:]])


def _rows(x: Array, row: int, n: int) -> Array:
    """Rows `row` to `row + n` of `x`: cut on the host when `x` is concrete (an operation
    on a new shape would compile a program), inside the trace otherwise."""
    if is_traced(x):
        return jax.lax.dynamic_slice_in_dim(x, row, n)
    return jnp.asarray(np.asarray(x)[row : row + n])


@jit
def _record(state: HyperbandState, row, X, results, budget, ids, bracket, rung):
    """`state` with one rung's evaluations written into rows `row` onwards."""
    n = X.shape[0]

    def put(buffer, values):
        values = jnp.broadcast_to(jnp.asarray(values, buffer.dtype), (n, *buffer.shape[1:]))
        return jax.lax.dynamic_update_slice_in_dim(buffer, values, row, 0)

    return eqx.tree_at(
        lambda s: (s.X, s.y, s.budget, s.configuration, s.bracket, s.rung, s.mask),
        state,
        (
            put(state.X, X),
            put(state.y, results),
            put(state.budget, budget),
            put(state.configuration, ids),
            put(state.bracket, bracket),
            put(state.rung, rung),
            put(state.mask, True),
        ),
    )


@jit
def _advance(results, X, ids, carry, k: int, maximize: bool):
    """The `k` configurations promoted to the next rung: their rows, ids and training
    states."""
    keep = _promote(results, k, maximize)
    carry = None if carry is None else jax.tree_util.tree_map(lambda c: c[keep], carry)
    return X[keep], ids[keep], carry


def _take(tree: PyTree, n: int) -> PyTree:
    return jax.tree_util.tree_map(lambda x: x[:n], tree)


def _layout(tree: PyTree) -> tuple[str, list]:
    """A pytree's structure and its leaves' shapes and dtypes, comparable with `==`."""
    return str(jax.tree_util.tree_structure(tree)), _describe_arrays(tree)


def _check_outputs(objective, init_carry, state: HyperbandState, key) -> None:
    """Fail before anything runs, with what was expected, when the objective returns
    something other than a scalar (and, continuing, the carry it was given)."""
    k, params = abstract_arguments(state, key)
    budget = jax.ShapeDtypeStruct((), jnp.int32)
    if init_carry is None:
        check_scalar_output(jax.eval_shape(objective, k, params, budget), "objective")
        return
    carry = jax.eval_shape(init_carry, k, params)
    out = jax.eval_shape(objective, k, params, budget, carry)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ValueError(
            f"`objective` with `init_carry` must return `(result, carry)` "
            f"({CARRY_USAGE}), but it returned {type(out).__name__} {out!r}."
        )
    check_scalar_output(out[0], "objective")
    if _layout(out[1]) != _layout(carry):
        raise ValueError(
            f"`objective` must return a carry like the one it is given (the same pytree "
            f"structure, shapes and dtypes: a rung's carries are stacked and fed to the "
            f"next rung); `init_carry` made {carry}, the objective returned {out[1]}."
        )


@jit
def _evaluate(objective, params, keys, budget, mesh=None) -> Array:
    """One rung: every configuration evaluated with `budget`, under `vmap` (split over
    `mesh`'s devices when given). `keys` may be longer than the population: the first
    ones are used."""
    n = _population(params)
    keys = keys[:n]
    params, keys = pad_to_mesh((params, keys), mesh)
    out = jax.vmap(objective, in_axes=(0, 0, None))(keys, params, budget)
    return jnp.asarray(out, float_dtype()).reshape(keys.shape[0])[:n]


@jit
def _init(init_carry, params, keys, mesh=None):
    """Every configuration's training state before its first rung (`keys` as for
    `_evaluate`)."""
    n = _population(params)
    keys = keys[:n]
    return _take(jax.vmap(init_carry)(*pad_to_mesh((keys, params), mesh)), n)


@jit
def _continue(objective, params, keys, budget, carry, mesh=None):
    """One rung of continued trainings: `(results, carries)` (`keys` as for `_evaluate`)."""
    n = _population(params)
    keys = keys[:n]
    params, keys, carry = pad_to_mesh((params, keys, carry), mesh)
    out, carry = jax.vmap(objective, in_axes=(0, 0, None, 0))(keys, params, budget, carry)
    return jnp.asarray(out, float_dtype()).reshape(keys.shape[0])[:n], _take(carry, n)


def _carry_like(opt: Hyperband, state, key, objective, init_carry, done: int) -> PyTree:
    """The shapes and dtypes of the training states after rung `done - 1` (from the start
    of the schedule): what a checkpoint saved there holds."""
    if init_carry is None:
        raise ValueError(
            "the checkpoint holds the training states of a run with `init_carry`; resume it "
            "the same way, or pass another checkpoint path to start a new search."
        )
    rungs = [rung for bracket in opt.brackets() for rung in bracket]
    n = rungs[done - 1].n_configurations
    params = flatten_space(state.space).unflatten(state.X[:n])
    keys = jax.random.split(key, n)
    budget = jnp.asarray(rungs[done - 1].budget, jnp.int32)
    carry = eqx.filter_eval_shape(_init, init_carry, params, keys)
    return eqx.filter_eval_shape(_continue, objective, params, keys, budget, carry)[1]


def _promote(results: Array, k: int, maximize: bool) -> Array:
    """The indices of the best `k` results, failures last (a stable order on ties)."""
    score = jnp.where(jnp.isfinite(results), results if maximize else -results, -jnp.inf)
    return jnp.argsort(-score, stable=True)[:k]
