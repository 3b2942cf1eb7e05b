"""Successive halving and Hyperband: the published schedule, promotion, budgets, failures."""

import dataclasses
import functools
import threading
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import HB_SPACE as SPACE
from helpers import budget_objective as objective
from helpers import start, train

import hyperoptax as hx


def failing(key, params, budget):
    return jnp.where(params["x"] > 0.8, jnp.nan, objective(key, params, budget))


def schedule(opt):
    return [[(r.n_configurations, r.budget) for r in bracket] for bracket in opt.brackets()]


def test_brackets_follow_hyperband_definition():
    # Li et al. (2018), Table 1: R = 81, eta = 3.
    assert schedule(hx.Hyperband(min_budget=1, max_budget=81, eta=3)) == [
        [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
        [(34, 3), (11, 9), (3, 27), (1, 81)],
        [(15, 9), (5, 27), (1, 81)],
        [(8, 27), (2, 81)],
        [(5, 81)],
    ]
    # eta = 2, R = 16: n = ceil(5 * 2^s / (s + 1)).
    assert schedule(hx.Hyperband(min_budget=1, max_budget=16, eta=2)) == [
        [(16, 1), (8, 2), (4, 4), (2, 8), (1, 16)],
        [(10, 2), (5, 4), (2, 8), (1, 16)],
        [(7, 4), (3, 8), (1, 16)],
        [(5, 8), (2, 16)],
        [(5, 16)],
    ]
    # R = 10 is not a power of eta: s_max = 2, budgets 100 / 9 and 100 / 3 rounded.
    assert schedule(hx.Hyperband(min_budget=10, max_budget=100, eta=3)) == [
        [(9, 11), (3, 33), (1, 100)],
        [(5, 33), (1, 100)],
        [(3, 100)],
    ]
    assert schedule(hx.Hyperband(min_budget=5, max_budget=5)) == [[(1, 5)]]


def test_successive_halving_is_the_most_aggressive_bracket():
    hb = hx.Hyperband(min_budget=1, max_budget=27, eta=3)
    sh = hx.SuccessiveHalving(min_budget=1, max_budget=27, eta=3)
    assert schedule(sh) == schedule(hb)[:1] == [[(27, 1), (9, 3), (3, 9), (1, 27)]]
    sh = hx.SuccessiveHalving(min_budget=1, max_budget=27, n_configurations=20)
    assert schedule(sh) == [[(20, 3), (6, 9), (2, 27)]]  # ends at the full budget


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(min_budget=0, max_budget=9), ValueError),
        (dict(min_budget=10, max_budget=9), ValueError),
        (dict(min_budget=1, max_budget=9, eta=1), ValueError),
        # No rung below max_budget: one evaluation per round, min_budget never used.
        (dict(min_budget=10, max_budget=20), ValueError),
        (dict(min_budget=4, max_budget=30, eta=8), ValueError),
        (dict(min_budget=1.5, max_budget=9), TypeError),
        (dict(min_budget=1, max_budget=9, maximize="yes"), TypeError),
        (dict(min_budget=1, max_budget=9, model=hx.RandomSearch()), TypeError),
        (dict(min_budget=1, max_budget=9, random_fraction=1.5), ValueError),
        (dict(min_budget=1, max_budget=9, n_rounds=0), ValueError),
    ],
)
def test_bad_settings_are_refused(kwargs, error):
    with pytest.raises(error, match="Hyperband"):
        hx.Hyperband(**kwargs)


@pytest.fixture(scope="module", params=[True, False], ids=["maximize", "minimize"])
def run(request):
    maximize = request.param
    sign = 1.0 if maximize else -1.0

    def f(key, params, budget):
        return sign * objective(key, params, budget)

    state, opt = hx.Hyperband.init(SPACE, min_budget=1, max_budget=27, maximize=maximize)
    state, hist = opt.optimize(state, jax.random.PRNGKey(0), f)
    return state, opt, hist, f


def test_a_bayesian_search_goes_on_from_the_full_trainings(run):
    state, opt, _, _ = run
    search = hx.BayesianSearch(maximize=opt.maximize, n_parallel=1, n_hparam_steps=0)
    full = np.asarray(state.budget) == opt.max_budget
    warm = search.warm_start(search._init_state(SPACE, n_max=32), state)
    n = int(full.sum())
    assert int(warm.mask.sum()) == n
    np.testing.assert_array_equal(warm.y[:n], np.asarray(state.y)[full])
    np.testing.assert_array_equal(warm.X[:n], np.asarray(state.X)[full])
    with pytest.raises(TypeError, match="OptimizerState keeps no results"):
        search.warm_start(warm, hx.RandomSearch.init(SPACE)[0])


def test_every_evaluation_is_recorded_with_its_budget(run):
    state, opt, (params_hist, results_hist), f = run
    rungs = [r for bracket in opt.brackets() for r in bracket]
    assert bool(state.mask.all()) and len(state.y) == sum(r.n_configurations for r in rungs)
    assert [len(r) for r in results_hist] == [r.n_configurations for r in rungs]
    np.testing.assert_array_equal(
        state.budget, np.repeat([r.budget for r in rungs], [r.n_configurations for r in rungs])
    )
    # The vmapped rungs give what evaluating each configuration alone gives.
    for i in range(len(state.y)):
        params = {"n": state.X[i, 0].astype(jnp.int32), "x": state.X[i, 1]}  # columns: sorted keys
        assert float(f(None, params, state.budget[i])) == pytest.approx(float(state.y[i]), abs=1e-6)


def test_survivors_are_the_best_of_their_rung_and_nothing_else_goes_on(run):
    state, opt, _, _ = run
    y, config = np.asarray(state.y), np.asarray(state.configuration)
    bracket, rung = np.asarray(state.bracket), np.asarray(state.rung)
    for b in np.unique(bracket):
        for r in np.unique(rung[bracket == b])[:-1]:
            here = np.flatnonzero((bracket == b) & (rung == r))
            nxt = set(config[(bracket == b) & (rung == r + 1)])
            order = np.argsort(-y[here] if opt.maximize else y[here], kind="stable")
            assert nxt == set(config[here[order[: len(nxt)]]])
            assert len(nxt) == len(here) // opt.eta
    # A configuration's budget only grows, rung after rung, and each rung it reaches
    # follows the one before.
    for c in np.unique(config):
        rows = np.flatnonzero(config == c)
        assert list(rung[rows]) == list(range(len(rows)))
        assert np.all(np.diff(np.asarray(state.budget)[rows]) > 0)


def test_best_is_reported_at_the_full_budget(run):
    state, opt, _, _ = run
    full = np.asarray(state.budget) == opt.max_budget
    y = np.asarray(state.y)
    best = y[full].max() if opt.maximize else y[full].min()
    assert float(opt.best_result(state)) == best
    params = opt.best_params(state)
    row = np.flatnonzero(full & (y == best))[0]
    assert float(params["x"]) == float(state.X[row, 1]) and params["n"].dtype == jnp.int32


def test_failed_configurations_are_not_promoted():
    state, opt = hx.SuccessiveHalving.init(SPACE, min_budget=1, max_budget=9, eta=3)
    state, _ = opt.optimize(state, jax.random.PRNGKey(1), failing)
    y, rung = np.asarray(state.y), np.asarray(state.rung)
    first = rung == 0
    assert np.isnan(y[first]).any() and (np.isfinite(y[first]).sum() >= 3)
    assert np.isfinite(y[~first]).all()  # enough succeeded, so no failure went on
    assert np.isfinite(float(opt.best_result(state)))


def test_a_continued_training_equals_an_uninterrupted_one():
    state, opt = hx.Hyperband.init(SPACE, min_budget=1, max_budget=9, eta=3, maximize=False)
    state, _ = opt.optimize(state, jax.random.PRNGKey(2), train, init_carry=start)
    assert int(state.rung.max()) == 2  # configurations continued over three rungs
    for i in range(len(state.y)):
        params = {"n": state.X[i, 0].astype(jnp.int32), "x": state.X[i, 1]}
        # From scratch to the same total budget, in one go.
        loss, _ = train(None, params, state.budget[i], start(None, params))
        assert float(loss) == pytest.approx(float(state.y[i]), rel=1e-6, abs=1e-9)
    # Continuing spends only the budget beyond each configuration's last rung.
    assert opt.total_budget(continued=True) < opt.total_budget()
    assert opt.total_budget() == int(state.budget.sum())


def test_objectives_with_the_wrong_signature_are_refused():
    state, opt = hx.Hyperband.init(SPACE, min_budget=1, max_budget=3)
    key = jax.random.PRNGKey(0)
    with pytest.raises(TypeError, match=r"objective\(key, params, budget\)"):
        opt.optimize(state, key, lambda key, params: 0.0)  # no budget
    with pytest.raises(TypeError, match="carry"):
        opt.optimize(state, key, objective, init_carry=start)  # no carry
    with pytest.raises(TypeError, match="init_carry"):
        opt.optimize(state, key, train, init_carry=3)


def test_a_state_that_does_not_fit_the_schedule_is_refused():
    state, opt = hx.Hyperband.init(SPACE, min_budget=1, max_budget=3)
    key = jax.random.PRNGKey(0)
    bayes_state, _ = hx.BayesianSearch.init(SPACE, n_max=4)
    with pytest.raises(TypeError, match="`state` must be the `HyperbandState`"):
        opt.optimize(bayes_state, key, objective)
    # The state of a shorter schedule has too few rows for this one's evaluations.
    longer = hx.Hyperband(min_budget=1, max_budget=9)
    with pytest.raises(ValueError, match=f"room for {len(state.y)} evaluations"):
        longer.optimize(state, key, objective)
    # A state that holds a search's results: run again, `state, _ = opt.optimize(state,
    # ...)` would return a state without them. Refused on both paths, nothing lost.
    used, _ = opt.optimize(state, key, objective)
    n = int(used.mask.sum())
    with pytest.raises(ValueError, match=f"already holds {n} evaluations"):
        opt.optimize(used, key, objective)
    keys = jax.random.split(key, 2)  # searches vmapped over keys: the state is known
    with pytest.raises(ValueError, match=f"already holds {n} evaluations"):
        eqx.filter_eval_shape(eqx.filter_vmap(lambda k: opt.optimize(used, k, objective)), keys)

    def reports(config, report):
        for step in range(1, 4):
            if report(step, float(config["x"])):
                return

    with pytest.raises(ValueError, match=f"optimize_host: `state` already holds {n}"):
        opt.optimize_host(used, key, reports)


def test_objectives_returning_the_wrong_thing_are_refused_before_anything_runs():
    state, opt = hx.Hyperband.init(SPACE, min_budget=1, max_budget=3)
    key = jax.random.PRNGKey(0)
    calls = []

    def vector(key, params, budget):
        calls.append(1)
        return jnp.stack([params["x"], params["x"]])

    with pytest.raises(ValueError, match=r"`objective` must return a scalar .* shape \(2,\)"):
        opt.optimize(state, key, vector)
    with pytest.raises(ValueError, match=r"must return `\(result, carry\)`"):
        opt.optimize(state, key, lambda k, p, b, c: train(k, p, b, c)[0], init_carry=start)
    with pytest.raises(ValueError, match="a carry like the one it is given"):
        opt.optimize(state, key, lambda k, p, b, c: (train(k, p, b, c)[0], c[0]), init_carry=start)

    def wider(key, params, budget, carry):
        loss, (w, done) = train(key, params, budget, carry)
        return loss, (w.astype(jnp.float16), done)

    with pytest.raises(ValueError, match="a carry like the one it is given"):
        opt.optimize(state, key, wider, init_carry=start)
    assert calls == [1]  # traced once for its shape, never run


def test_searches_vmap_over_seeds():
    state, opt = hx.SuccessiveHalving.init(SPACE, min_budget=1, max_budget=9, eta=3)
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    together = eqx.filter_jit(eqx.filter_vmap(lambda k: opt.optimize(state, k, objective)[0]))(keys)
    for i, k in enumerate(keys):
        alone, _ = opt.optimize(state, k, objective)
        np.testing.assert_array_equal(together.configuration[i], alone.configuration)
        np.testing.assert_allclose(together.X[i], alone.X, rtol=1e-6)
        np.testing.assert_allclose(together.y[i], alone.y, rtol=1e-6)
        # The report works on the batch of states as on each state alone.
        best = jax.vmap(opt.best_result)(together)
        np.testing.assert_allclose(best[i], opt.best_result(alone), rtol=1e-6)
        chosen = jax.vmap(opt.best_params)(together)
        for name, value in opt.best_params(alone).items():
            np.testing.assert_allclose(chosen[name][i], value, rtol=1e-6)
    # Under jit too, where no finite result is an error when the program runs.
    assert np.isnan(eqx.filter_jit(opt.best_result)(state))
    with pytest.raises(Exception, match="no evaluation has a finite result"):
        eqx.filter_jit(opt.best_params)(state)
    with pytest.raises(ValueError, match="no evaluation has a finite result"):
        opt.best_params(state)


# Small settings for the model: these tests check what the brackets do with it.
MODEL = hx.BayesianSearch(
    **{**hx.recommended(), "n_candidates": 64, "n_restarts": 2, "n_lbfgs_steps": 5}
)


def test_the_host_loop_compiles_a_few_programs_per_rung_size_not_one_per_operation():
    """Between rungs the loop draws keys and configurations, records results and
    promotes the best. Run op by op, every operation compiled a program of its own for
    each shape it met: 243 programs for this schedule (8 rung sizes), about 8 s of a
    model-based search's first run. Now: the rung's evaluation, its record and its
    promotion per size, and a few programs for the draws."""
    lowered = []

    def listen(event, secs, **kwargs):
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
            lowered.append(event)

    space = {"x": hx.LinearSpace(0.0, 1.0), "lr": hx.LogSpace(1e-3, 1.0)}

    def quadratic(key, p, budget):  # a new function: nothing of it is compiled yet
        return (p["x"] - 0.3) ** 2 + jnp.log10(p["lr"] / 0.01) ** 2 / budget

    state, opt = hx.Hyperband.init(space, min_budget=1, max_budget=27, eta=3, maximize=False)
    sizes = {rung.n_configurations for bracket in opt.brackets() for rung in bracket}
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        state, _ = opt.optimize(state, jax.random.PRNGKey(0), quadratic)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    n_rows = sum(rung.n_configurations for bracket in opt.brackets() for rung in bracket)
    assert len(sizes) == 8 and int(state.mask.sum()) == n_rows
    # At least the 8 evaluations (the objective is new); at most a few programs per size.
    assert len(sizes) <= len(lowered) <= 4 * len(sizes) + 12, len(lowered)


def test_rounds_repeat_the_schedule_and_the_model_starts_once_there_are_enough_results():
    hb = hx.Hyperband(min_budget=1, max_budget=9, n_rounds=2, model=MODEL)
    once = schedule(hx.Hyperband(min_budget=1, max_budget=9))
    assert schedule(hb) == once + once == 2 * [[(9, 1), (3, 3), (1, 9)], [(5, 3), (1, 9)], [(3, 9)]]
    assert hb.total_budget() == 2 * hx.Hyperband(min_budget=1, max_budget=9).total_budget()
    # The model has n_params + 1 inputs (the budget too) and needs one result more:
    # the brackets hold 13, 6 and 3 evaluations.
    assert hb.model_brackets(2) == [False] + [True] * 5
    assert hb.model_brackets(11) == [False] + [True] * 5
    assert hb.model_brackets(12) == [False, False] + [True] * 4
    assert hb.model_brackets(20) == [False] * 3 + [True] * 3
    # The model chooses survivors once n_params + 1 configurations reached the full
    # budget: the brackets end with 1, 1 and 3 of them.
    assert hb.model_promotions(2) == [False] * 3 + [True] * 3
    assert hb.model_promotions(4) == [False] * 3 + [True] * 3
    assert hb.model_promotions(5) == [False] * 4 + [True] * 2
    one_budget = hx.SuccessiveHalving(min_budget=3, max_budget=3, n_rounds=9, model=MODEL)
    assert one_budget.model_promotions(1) == [False] * 9
    # BOHB's share of random configurations: a third of each model-drawn rung.
    assert [hb._n_model(n) for n in (9, 5, 3, 1)] == [6, 3, 2, 1]


def test_without_model_draws_a_bracket_is_random_search():
    # random_fraction=1: the model draws nothing, so every bracket starts from the random
    # search's configurations; until the model ranks promotions (the second round, after
    # five full-budget results) the search is the random one.
    state, plain = hx.Hyperband.init(SPACE, min_budget=1, max_budget=9, n_rounds=2)
    _, allrandom = hx.Hyperband.init(
        SPACE, min_budget=1, max_budget=9, n_rounds=2, model=MODEL, random_fraction=1.0
    )
    assert allrandom.model_promotions(2) == [False] * 3 + [True] * 3
    a, _ = plain.optimize(state, jax.random.PRNGKey(0), objective)
    b, _ = allrandom.optimize(state, jax.random.PRNGKey(0), objective)
    first_round = np.asarray(a.bracket) < 3
    first_rungs = np.asarray(a.rung) == 0
    for rows in (first_round, first_rungs):
        np.testing.assert_array_equal(a.X[rows], b.X[rows])
        np.testing.assert_array_equal(a.y[rows], b.y[rows])


@pytest.fixture(scope="module")
def model_run():
    # One bracket, three rounds: every model-drawn rung has the same size (one program).
    # A model that draws where its posterior mean is best (UCB with kappa 0, each pick
    # believed at its mean), so that the test can see where the draws go.
    greedy = eqx.tree_at(
        lambda m: (m.acquisition, m.hallucination),
        MODEL,
        (hx.UCB(kappa=0.0), hx.MeanHallucination()),
    )
    state, opt = hx.SuccessiveHalving.init(
        SPACE, min_budget=1, max_budget=9, n_configurations=9, n_rounds=5, model=greedy
    )
    return [opt.optimize(state, jax.random.PRNGKey(seed), objective)[0] for seed in range(3)], opt


def test_model_draws_go_where_the_results_are_good(model_run):
    states, opt = model_run
    assert opt.model_brackets(2) == [False] + [True] * 4
    n_model = opt._n_model(9)
    model_gap, random_gap = [], []
    for state in states:
        x = np.asarray(state.X[:, 1])  # columns: sorted keys ("n", "x")
        first = np.flatnonzero(np.asarray(state.rung) == 0)
        assert len(first) == 45
        # Round 1 is random; in the later rounds the model draws the first `n_model`.
        for first_row in (9, 18, 27, 36):
            rows = first[first_row : first_row + 9]
            model_gap += list(np.abs(x[rows[:n_model]] - 0.3))
            random_gap += list(np.abs(x[rows[n_model:]] - 0.3))
        # The model's draws are configurations of the space.
        drawn = np.asarray(state.X)[first[9:]]
        n = drawn[:, 0]
        assert np.all((n >= 1) & (n <= 4) & (n == np.round(n)))
        assert np.all((drawn[:, 1] >= 0.0) & (drawn[:, 1] <= 1.0))
    # The best final value is at x = 0.3; uniform draws are 0.29 from it on average.
    gaps = np.mean(model_gap), np.mean(random_gap)
    assert gaps[0] < 0.15 and gaps[0] < gaps[1] / 2, gaps


def test_smaller_model_drawn_rungs_get_the_models_first_picks(model_run):
    # Brackets of 9, 5 and 3 configurations: the model draws 6, 3 and 2 of them from one
    # program compiled for 6 picks, which skips the picks a smaller rung does not use.
    # Each rung's drawn rows must be the model's picks, not the skipped ones.
    _, single = model_run
    state, opt = hx.Hyperband.init(
        SPACE, min_budget=1, max_budget=9, n_rounds=2, model=single.model
    )
    assert opt.model_brackets(2) == [False] + [True] * 5
    gaps = {9: [], 5: [], 3: []}
    for seed in range(2):
        out, _ = opt.optimize(state, jax.random.PRNGKey(seed), objective)
        x, first = np.asarray(out.X[:, 1]), np.flatnonzero(np.asarray(out.rung) == 0)
        bracket = np.asarray(out.bracket)[first]
        for b in range(1, 6):
            rows = first[bracket == b]
            drawn = x[rows[: opt._n_model(len(rows))]]
            gaps[len(rows)] += list(np.abs(drawn - 0.3))
    # Uniform draws are 0.29 from the best x on average, skipped picks (zeros) 0.3.
    # Two seeds; model-drawn brackets of 9, 5 and 3 once, twice and twice each.
    assert {n: len(gap) for n, gap in gaps.items()} == {9: 12, 5: 12, 3: 8}
    for n, gap in gaps.items():
        assert np.mean(gap) < 0.15, (n, np.mean(gap))


def test_model_based_search_is_traceable_over_seeds(model_run):
    states, opt = model_run
    state, _ = hx.SuccessiveHalving.init(
        SPACE, min_budget=1, max_budget=9, n_configurations=9, n_rounds=5, model=MODEL
    )
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    shapes = eqx.filter_eval_shape(
        eqx.filter_vmap(lambda k: opt.optimize(state, k, objective)[0]), keys
    )
    assert shapes.X.shape == (4, *states[0].X.shape) and shapes.y.shape == (4, 65)


def misleading(key, params, budget):
    # Small budgets mislead: the best x moves from 0.8 on budget 1 to 0.3 on budget 9.
    centre = 0.3 + 0.5 * (1.0 - jnp.log(budget) / jnp.log(9.0))
    return 1.0 - (params["x"] - centre) ** 2 - 0.01 * params["n"]


@pytest.fixture(scope="module")
def misled_run(model_run):
    # model_run's schedule and model: the model's programs compiled there are reused.
    _, opt = model_run
    state, _ = hx.SuccessiveHalving.init(
        SPACE, min_budget=1, max_budget=9, n_configurations=9, n_rounds=5, model=opt.model
    )
    return [opt.optimize(state, jax.random.PRNGKey(s), misleading)[0] for s in range(3)], opt


def test_the_model_promotes_what_it_predicts_best_at_the_full_budget(misled_run):
    states, opt = misled_run
    # One full-budget result per bracket; the model ranks from the fourth on.
    assert opt.model_promotions(2) == [False] * 3 + [True] * 2
    promoted_gap, leading_gap = [], []
    for state in states:
        y, x, config = (
            np.asarray(state.y),
            np.asarray(state.X[:, 1]),
            np.asarray(state.configuration),
        )
        bracket, rung = np.asarray(state.bracket), np.asarray(state.rung)
        for b in range(5):
            for r in (0, 1):
                here = np.flatnonzero((bracket == b) & (rung == r))
                nxt = np.flatnonzero((bracket == b) & (rung == r + 1))
                leading = here[np.argsort(-y[here], kind="stable")[: len(nxt)]]
                assert len(nxt) == len(here) // opt.eta
                if not opt.model_promotions(2)[b]:  # the best results go on
                    assert set(config[nxt]) == set(config[leading])
                else:
                    assert set(config[nxt]) <= set(config[here])
                    promoted_gap.append(np.mean(np.abs(x[nxt] - 0.3)))
                    leading_gap.append(np.mean(np.abs(x[leading] - 0.3)))
    # The full-budget optimum is x = 0.3; the configurations leading on the smaller
    # budget are nearer 0.8. The model, having seen full-budget results, promotes
    # those it predicts best there.
    gaps = np.mean(promoted_gap), np.mean(leading_gap)
    assert gaps[0] < gaps[1] / 2, gaps


def test_a_model_with_a_single_budget_has_no_budget_input():
    # min_budget == max_budget: plain rounds of full evaluations, the model drawing the
    # later ones from every result (a budget input would be constant).
    state, opt = hx.SuccessiveHalving.init(
        SPACE, min_budget=3, max_budget=3, n_configurations=3, n_rounds=3, model=MODEL
    )
    assert schedule(opt) == [[(3, 3)]] * 3 and opt.model_brackets(2) == [False, True, True]
    state, _ = opt.optimize(state, jax.random.PRNGKey(0), objective)
    assert bool(state.mask.all()) and np.all(np.asarray(state.budget) == 3)
    assert bool(jnp.all(jnp.isfinite(state.y))) and len(np.unique(np.asarray(state.X), axis=0)) == 9


# Asynchronous successive halving on the host (optimize_host).


def curve(config, step):
    # Smaller is better; more steps bring each configuration towards (x - 0.3)^2.
    return (config["x"] - 0.3) ** 2 + 0.1 * config["n"] + 1.0 / step


def test_asha_promotes_without_waiting_for_stragglers():
    from concurrent.futures import ThreadPoolExecutor

    def objective(config, report):
        slow = config["x"] > 0.85  # stragglers: 0.25 s a step
        for step in range(1, 10):
            time.sleep(0.25 if slow else 0.005)
            if report(step, curve(config, step)):
                return

    state, opt = hx.SuccessiveHalving.init(SPACE, min_budget=1, max_budget=9, maximize=False)
    with ThreadPoolExecutor(3) as pool:
        out, configs = opt.optimize_host(state, jax.random.PRNGKey(0), objective, executor=pool)
    slow = [j for j, c in enumerate(configs) if c["x"] > 0.85]
    assert len(configs) == 9 and slow, [c["x"] for c in configs]
    order = [(int(c), int(r)) for c, r in zip(out.configuration, out.rung, strict=True)]
    # A configuration finished its full budget before any straggler reported its first rung.
    first_full = next(i for i, (_, r) in enumerate(order) if r == 2)
    first_slow = min(order.index((j, 0)) for j in slow)
    assert first_full < first_slow, order
    assert int(out.budget[first_full]) == 9 and float(opt.best_result(out)) == pytest.approx(
        min(float(y) for y, b in zip(out.y, out.budget, strict=True) if b == 9)
    )


def test_asha_stops_configurations_and_promotes_only_the_best_of_a_rung():
    answers = {}

    def stubborn(config, report):  # keeps training whatever it is told
        for step in range(1, 28):
            answers.setdefault(config["x"], []).append(report(step, curve(config, step)))

    state, opt = hx.Hyperband.init(SPACE, min_budget=1, max_budget=27, maximize=False)
    out, configs = opt.optimize_host(state, jax.random.PRNGKey(1), stubborn)
    assert len(configs) == sum(b[0].n_configurations for b in opt.brackets())
    rows = list(
        zip(
            *(np.asarray(a) for a in (out.configuration, out.bracket, out.rung, out.y)), strict=True
        )
    )
    seen = {}
    for i, (j, b, k, y) in enumerate(rows):
        budgets = [r.budget for r in opt.brackets()[b]]
        assert int(out.budget[i]) == budgets[k] and seen.get(j, -1) == k - 1  # rung by rung
        seen[j] = k
        if any(jj == j and kk == k + 1 for jj, _, kk, _ in rows[i + 1 :]):
            # Promoted: among the best 1/eta of its rung so far (the best while < eta).
            rung = [yy for jj, bb, kk, yy in rows[: i + 1] if bb == b and kk == k]
            assert sum(v < y for v in rung) < max(1, len(rung) // 3), (rung, y)
    for j, config in enumerate(configs):
        said = answers[config["x"]]
        # Once told to stop, always told to stop; no rung recorded after that.
        assert said == sorted(said) and said[-1]
        budgets = [
            r.budget for r in opt.brackets()[int(out.bracket[list(out.configuration).index(j)])]
        ]
        assert said.index(True) + 1 == budgets[seen[j]]


def test_asha_failures_are_recorded_and_early_returns_warned():
    def flaky(config, report):
        for step in range(1, 10):
            if config["x"] > 0.7 and step == 2:
                raise RuntimeError("diverged")
            if report(step, curve(config, step)):
                return

    state, opt = hx.SuccessiveHalving.init(SPACE, min_budget=1, max_budget=9, maximize=False)
    with pytest.warns(RuntimeWarning, match="diverged") as caught:
        out, configs = opt.optimize_host(state, jax.random.PRNGKey(0), flaky)
    assert {w.filename for w in caught} == {__file__}  # shown at the caller's line
    failed = {j for j, c in enumerate(configs) if c["x"] > 0.7}
    assert failed
    for j, k, y in zip(out.configuration, out.rung, out.y, strict=True):
        if int(j) in failed and int(k) > 0:
            assert np.isnan(float(y))  # NaN at the rung it did not reach, then no more
    with pytest.raises(RuntimeError, match="diverged"):
        opt.optimize_host(state, jax.random.PRNGKey(0), flaky, on_error="raise")
    # An objective that never reports: one warning for the search (not one per
    # configuration), and a state with nothing in it, whose best is NaN / an error.
    with pytest.warns(RuntimeWarning, match="with 0 of its 3 rungs reported") as caught:
        empty, _ = opt.optimize_host(
            state, jax.random.PRNGKey(0), lambda config, report: None, n_configurations=2
        )
    assert len(caught) == 1 and caught[0].filename == __file__
    assert np.isnan(float(opt.best_result(empty)))
    with pytest.raises(ValueError, match="no evaluation has a finite result"):
        opt.best_params(empty)
    with pytest.raises(TypeError, match="report"):
        opt.optimize_host(state, jax.random.PRNGKey(0), lambda config: 0.0)
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1) as pool, pytest.raises(TypeError, match="thread pool"):
        opt.optimize_host(state, jax.random.PRNGKey(0), flaky, executor=pool)


def test_asha_reports_take_one_number_as_results_do():
    # A value held in an array of one element counts as that number; a value that is not
    # one number is a mistake in the objective: it fails the configuration with a warning
    # that says what was reported (or raises with on_error="raise"), never a silent NaN.
    def as_array(config, report):
        for step in range(1, 10):
            if report(jnp.asarray(step), jnp.asarray([curve(config, step)])):
                return

    state, opt = hx.SuccessiveHalving.init(SPACE, min_budget=1, max_budget=9, maximize=False)
    out, configs = opt.optimize_host(state, jax.random.PRNGKey(0), as_array, n_configurations=4)
    rows = zip(out.configuration, out.budget, strict=True)
    expected = [curve(configs[int(j)], int(b)) for j, b in rows]
    np.testing.assert_allclose(out.y, expected, rtol=1e-6)

    def two_values(config, report):
        report(1, [1.0, 2.0])

    with pytest.warns(RuntimeWarning, match=r"`value` must be one real number, got \[1.0, 2.0\]"):
        out, _ = opt.optimize_host(state, jax.random.PRNGKey(0), two_values, n_configurations=2)
    assert np.isnan(np.asarray(out.y)).all() and len(out.y) == 2
    with pytest.raises(TypeError, match="`step` must be one real number"):
        opt.optimize_host(
            state,
            jax.random.PRNGKey(0),
            lambda config, report: report("one", 1.0),
            n_configurations=1,
            on_error="raise",
        )

    # A step that goes back (a training that restarted its counter) fails the
    # configuration the same way: its rungs would hold the values of other steps.
    def restarted(config, report):
        for step in (1, 2, 3, 1, 2, 3, 4):
            if report(step, curve(config, step)):
                return

    with pytest.warns(RuntimeWarning, match="`step` went back from 3 to 1"):
        out, _ = opt.optimize_host(state, jax.random.PRNGKey(0), restarted, n_configurations=2)
    at_last_rung = np.asarray(out.y)[np.asarray(out.rung) == 2]
    assert len(at_last_rung) and np.isnan(at_last_rung).all()
    with pytest.raises(ValueError, match="must not decrease"):
        opt.optimize_host(
            state, jax.random.PRNGKey(0), restarted, n_configurations=1, on_error="raise"
        )

    # The same step again after it gave a rung its value (a report after every batch
    # with the epoch as the step): the rung keeps the first value, and one warning,
    # shown at the report's line in the objective, says so.
    def every_batch(config, report):
        for epoch in range(1, 10):
            for batch in range(3):
                if report(epoch, curve(config, epoch) + batch):
                    return

    with pytest.warns(RuntimeWarning, match="reported step 1 again") as caught:
        out, configs = opt.optimize_host(
            state, jax.random.PRNGKey(0), every_batch, n_configurations=3
        )
    assert len(caught) == 1 and caught[0].filename == __file__
    rows = zip(out.configuration, out.budget, strict=True)
    expected = [curve(configs[int(j)], int(b)) for j, b in rows]
    np.testing.assert_allclose(out.y, expected, rtol=1e-6)
    # Too large for float32: recorded as NaN and stopped, as a diverged training is.
    out, _ = opt.optimize_host(
        state, jax.random.PRNGKey(0), lambda config, report: report(1, 1e39), n_configurations=2
    )
    assert np.isnan(np.asarray(out.y)).all()


def test_asha_with_a_model_draws_where_the_results_are_good(model_run):
    from concurrent.futures import ThreadPoolExecutor

    _, greedy = model_run  # its model: UCB with kappa 0, mean hallucination
    model = dataclasses.replace(greedy.model, n_parallel=2)  # two configurations running
    state, opt = hx.SuccessiveHalving.init(
        SPACE, min_budget=1, max_budget=9, maximize=False, model=model
    )
    running, most, lock = [0], [0], threading.Lock()

    def objective(config, report):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            for step in range(1, 10):
                time.sleep(0.002)
                if report(step, curve(config, step)):
                    return
        finally:
            with lock:
                running[0] -= 1

    # With 18 configurations the draws see fewer than 32 rung values: one model program.
    with ThreadPoolExecutor(4) as pool:
        out, configs = opt.optimize_host(
            state, jax.random.PRNGKey(0), objective, executor=pool, n_configurations=18
        )
    assert len(configs) == 18 and most[0] <= 2  # n_parallel at a time, not the pool's 4
    x = np.array([c["x"] for c in configs])
    assert np.all((x >= 0) & (x <= 1)) and all(c["n"] in (1, 2, 3, 4) for c in configs)
    # The first configurations are random (the model needs 4 rung values first); every
    # third stays random (random_fraction 1/3); the others are the model's picks.
    model_picks = [j for j in range(9, 18) if (j + 1) % 3]
    random_picks = [j for j in range(18) if (j + 1) % 3 == 0]
    gaps = np.mean(np.abs(x[model_picks] - 0.3)), np.mean(np.abs(x[random_picks] - 0.3))
    assert gaps[0] < 0.15 and gaps[0] < gaps[1] / 2, gaps


def test_callback_sees_every_rung_and_can_stop_the_search(capsys):
    seen = []

    def callback(rung, state, params, results):
        seen.append((rung, int(state.mask.sum()), len(results), len(params["x"])))
        return rung == 2  # stop after the first bracket

    state, opt = hx.Hyperband.init(SPACE, min_budget=1, max_budget=9)
    out, (_, results_hist) = opt.optimize(
        state, jax.random.PRNGKey(0), objective, callback=callback, progress=True
    )
    sizes = [r.n_configurations for bracket in opt.brackets() for r in bracket]
    assert seen == [(i, sum(sizes[: i + 1]), sizes[i], sizes[i]) for i in range(3)]
    assert int(out.mask.sum()) == sum(sizes[:3]) and len(results_hist) == 3
    # The bar counts rungs and shows where the search is and its best full-budget result.
    err = capsys.readouterr().err
    assert "3/6" in err and "bracket=1/3" in err and "rung=3/3" in err, err
    assert f"best={float(out.y[sum(sizes[:3]) - 1]):.6g}" in err, err
    # A traced search cannot call back to the host.
    with pytest.raises(ValueError, match="traced"):
        eqx.filter_eval_shape(
            lambda k: opt.optimize(state, k, objective, callback=callback)[0], jax.random.PRNGKey(0)
        )
    with pytest.raises(TypeError, match="callback"):
        opt.optimize(state, jax.random.PRNGKey(0), objective, callback=3)


def _bytes(tree):
    return [np.asarray(x).tobytes() for x in jax.tree_util.tree_leaves(tree)]


class Crash(Exception):
    pass


def test_a_checkpointed_search_resumes_after_any_rung_as_if_uninterrupted(tmp_path, model_run):
    # Model-drawn brackets: the resumed search draws the later brackets from the same
    # model fits and keys as the uninterrupted one.
    states, opt = model_run
    state, _ = hx.SuccessiveHalving.init(
        SPACE, min_budget=1, max_budget=9, n_configurations=9, n_rounds=5, model=opt.model
    )
    key = jax.random.PRNGKey(0)
    n_rungs = sum(len(bracket) for bracket in opt.brackets())
    # Mid-bracket in the random round; in the first model-drawn round; after the first
    # rung of a bracket whose survivors the model chooses (that choice is made again on
    # resuming, from the restored state; the earlier ones are read from it).
    for crash_at in (1, 4, 10):

        def crash(rung, *_, at=crash_at):
            if rung == at:
                raise Crash

        path = tmp_path / f"search-{crash_at}.ckpt"
        with pytest.raises(Crash):
            opt.optimize(state, key, objective, checkpoint=path, callback=crash)
        assert hx.checkpoint.read_header(path)["extra"]["iteration"] == crash_at
        seen = []
        out, (_, results) = opt.optimize(
            state, key, objective, checkpoint=path, callback=lambda r, *_, s=seen: s.append(r)
        )
        assert seen == list(range(crash_at, n_rungs))  # nothing run twice
        assert len(results) == n_rungs
        assert _bytes(out) == _bytes(states[0])
    # A finished search is read back, not run again.
    again, (_, results_again) = opt.optimize(
        state, key, objective, checkpoint=path, callback=lambda *_: pytest.fail("ran again")
    )
    assert _bytes(again) == _bytes(states[0]) and _bytes(results_again) == _bytes(results)


def test_a_stopped_checkpointed_search_stays_stopped_and_other_runs_are_refused(tmp_path):
    state, opt = hx.Hyperband.init(SPACE, min_budget=1, max_budget=9, eta=3, maximize=False)
    key, path = jax.random.PRNGKey(2), tmp_path / "search.ckpt"
    first, _ = opt.optimize(
        state, key, train, init_carry=start, checkpoint=path, callback=lambda r, *_: r == 1
    )
    again, (_, results) = opt.optimize(state, key, train, init_carry=start, checkpoint=path)
    assert len(results) == 2 and _bytes(again) == _bytes(first)
    with pytest.raises(ValueError, match="key="):
        opt.optimize(state, jax.random.PRNGKey(3), train, init_carry=start, checkpoint=path)
    with pytest.raises(ValueError, match="init_carry"):
        opt.optimize(state, key, objective, checkpoint=path)
    with pytest.raises(ValueError, match="different search"):
        hx.Hyperband(min_budget=1, max_budget=9, eta=3).optimize(
            state, key, train, init_carry=start, checkpoint=path
        )
    with pytest.raises(ValueError, match="traced"):
        eqx.filter_eval_shape(
            lambda k: opt.optimize(state, k, objective, checkpoint=tmp_path / "x")[0], key
        )


class Killed(BaseException):  # not an Exception: nothing records it as a failure
    pass


@pytest.mark.parametrize("with_model", [False, True], ids=["random", "model"])
def test_asha_resumes_from_its_checkpoint(tmp_path, model_run, with_model):
    model = dataclasses.replace(model_run[1].model, n_parallel=2) if with_model else None
    state, opt = hx.SuccessiveHalving.init(
        SPACE, min_budget=1, max_budget=9, maximize=False, model=model
    )
    calls = []

    def objective(config, report, crash_at=None):
        calls.append(config["x"])
        for step in range(1, 10):
            if (len(calls), step) == crash_at:
                raise Killed
            if report(step, curve(config, step)):
                return

    key = jax.random.PRNGKey(0)
    # One after another (no executor), so that the uninterrupted run is reproducible.
    want, want_configs = opt.optimize_host(state, key, objective, n_configurations=16)
    calls.clear()
    # Kill it while a late configuration trains beyond its first rung (step 2: it was
    # promoted to rung 1, budget 3, so it trains steps 2 and 3).
    promoted = np.asarray(want.configuration)[np.asarray(want.rung) == 1]
    j = int(promoted[promoted >= 8].min())
    path = tmp_path / "asha.ckpt"
    crash = functools.partial(objective, crash_at=(j + 1, 2))
    with pytest.raises(Killed):
        opt.optimize_host(state, key, crash, n_configurations=16, checkpoint=path)
    assert len(calls) == j + 1
    calls.clear()
    # Another number of configurations is refused, naming the argument the user passed.
    with pytest.raises(ValueError, match="n_configurations=16, but this run has n_config"):
        opt.optimize_host(state, key, objective, n_configurations=17, checkpoint=path)
    got, configs = opt.optimize_host(state, key, objective, n_configurations=16, checkpoint=path)
    # Finished configurations were not run again; the killed one started again.
    assert len(calls) == 16 - j and calls[0] == configs[j]["x"]
    assert configs == want_configs and _bytes(got) == _bytes(want)


def test_asha_callback_sees_every_ended_configuration_and_can_stop(tmp_path, capsys):
    def objective(config, report):
        for step in range(1, 10):
            if report(step, curve(config, step)):
                return

    seen = []

    def callback(i, state, params, results):
        seen.append((i, len(state.y), float(params["x"][0]), float(results[0])))
        return i == 4  # stop after the fifth configuration

    state, opt = hx.SuccessiveHalving.init(SPACE, min_budget=1, max_budget=9, maximize=False)
    path = tmp_path / "asha.ckpt"
    key = jax.random.PRNGKey(0)
    out, configs = opt.optimize_host(
        state, key, objective, callback=callback, progress=True, checkpoint=path
    )
    # One at a time: each ended configuration's last value is the state's last row.
    assert [s[0] for s in seen] == list(range(5)) and len(configs) == 5
    for (_, n_rows, x, value), config in zip(seen, configs, strict=True):
        assert x == config["x"] and value == pytest.approx(float(out.y[n_rows - 1]), rel=1e-6)
    assert "5/9" in capsys.readouterr().err  # the bar counts ended configurations
    # Stopped for good: the checkpoint says so, and a rerun starts nothing.
    again, configs_again = opt.optimize_host(
        state, key, lambda c, r: pytest.fail("ran again"), checkpoint=path
    )
    assert _bytes(again) == _bytes(out) and configs_again == configs
    with pytest.raises(TypeError, match="callback"):
        opt.optimize_host(state, key, objective, callback=3)
