import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import BRANIN_MIN, BRANIN_SPACE, MIXED_SPACE, branin, check_in_space, mixed_objective
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hyperoptax as hx

KEY = jax.random.PRNGKey(0)
SMALL = dict(n_candidates=32, n_restarts=2, n_lbfgs_steps=3, n_hparam_steps=5)


@pytest.fixture(scope="module")
def branin_opt():
    return hx.BayesianSearch.init(BRANIN_SPACE, n_max=12, maximize=False, n_parallel=3, **SMALL)


@pytest.fixture(scope="module")
def mixed_opt():
    return hx.BayesianSearch.init(MIXED_SPACE, n_max=16, maximize=False, n_parallel=4, **SMALL)


@pytest.fixture(scope="module")
def mixed_run(mixed_opt):
    state, opt = mixed_opt
    return opt.optimize(state, KEY, mixed_objective, 3)


def test_defaults_match_the_reference():
    opt = hx.BayesianSearch()
    assert isinstance(opt.kernel, hx.Matern) and opt.kernel.nu == 0.5
    assert isinstance(opt.acquisition, hx.PI) and opt.acquisition.xi == 0.01
    assert isinstance(opt.hallucination, hx.SampleHallucination)
    assert (
        opt.jitter,
        opt.n_candidates,
        opt.n_restarts,
        opt.n_lbfgs_steps,
        opt.n_hparam_steps,
        opt.n_warmup,
        opt.maximize,
        opt.n_parallel,
    ) == (1e-6, 1000, 2, 10, 20, 1, True, 4)
    state, _ = hx.BayesianSearch.init(BRANIN_SPACE)
    assert state.X.shape == (200, 2) and state.y.shape == (200,) and state.mask.shape == (200,)
    assert state.log_length_scale.shape == (2,)
    np.testing.assert_allclose(state.log_length_scale, 0.0)


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        (dict(n_parallel=0), ValueError),
        (dict(n_candidates=0), ValueError),
        (dict(n_candidates=2, n_restarts=3), ValueError),
        (dict(n_hparam_steps=-1), ValueError),
        (dict(n_warmup=1.5), TypeError),
        (dict(maximize="yes"), TypeError),
        (dict(jitter=-1.0), ValueError),
        (dict(kernel="rbf"), TypeError),
    ],
)
def test_bad_configuration(kwargs, exc):
    with pytest.raises(exc, match="BayesianSearch"):
        hx.BayesianSearch(**kwargs)


def test_batches_valid_typed_and_distinct(mixed_opt, mixed_run):
    state, opt = mixed_opt
    final, (ph, rh) = mixed_run
    assert int(final.mask.sum()) == 12
    for p in ph:
        check_in_space(p, MIXED_SPACE, 4)
    nxt = opt.get_next_params(final, KEY)
    check_in_space(nxt, MIXED_SPACE, 4)
    rows = np.stack([np.asarray(nxt[k], float) for k in sorted(nxt)], axis=1)
    assert len(np.unique(rows, axis=0)) == 4


def test_state_keeps_raw_values_and_results(mixed_opt, mixed_run):
    final, (ph, rh) = mixed_run
    np.testing.assert_allclose(final.y[:12], np.concatenate(rh), rtol=1e-6)
    lr = np.concatenate([p["lr"] for p in ph])
    leaves = jax.tree_util.tree_leaves(MIXED_SPACE, is_leaf=lambda s: isinstance(s, hx.Space))
    col = [
        i
        for i, s in enumerate(leaves)
        if isinstance(s, hx.LogSpace) and not isinstance(s, hx.QLogSpace)
    ][0]
    np.testing.assert_allclose(final.X[:12, col], lr, rtol=1e-6)


def test_best_result_and_params_minimize(mixed_opt, mixed_run):
    _, opt = mixed_opt
    final, (ph, rh) = mixed_run
    best = float(opt.best_result(final))
    assert best == pytest.approx(float(np.min(np.concatenate(rh))))
    bp = opt.best_params(final)
    assert bp["layers"].shape == () and bp["layers"].dtype == jnp.int32
    assert float(mixed_objective(KEY, bp)) == pytest.approx(best, rel=1e-5)


def test_update_writes_next_slots_and_overflow_keeps_first(branin_opt):
    state, opt = branin_opt
    X = jnp.array([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]])
    for i in range(4):
        state = opt.update_state(state, KEY, jnp.arange(3.0) + 3 * i, X)
    assert bool(state.mask.all())
    np.testing.assert_allclose(state.y, np.arange(12.0))
    with pytest.warns(UserWarning, match="3 of these 3 results are not recorded") as caught:
        full = opt.update_state(state, KEY, jnp.full(3, -100.0), X)
    # Shown at the caller's line, not inside the library or its decorators.
    assert caught[0].filename == __file__
    np.testing.assert_array_equal(full.y, state.y)
    partial = eqx.tree_at(lambda s: s.mask, state, state.mask.at[10:].set(False))
    with pytest.warns(UserWarning, match="1 of these 3 results are not recorded"):
        partial = opt.update_state(partial, KEY, jnp.array([7.0, 8.0, 9.0]), X)
    np.testing.assert_allclose(partial.y[10:], [7.0, 8.0])


def test_update_rejects_wrong_shapes(branin_opt):
    state, opt = branin_opt
    with pytest.raises(ValueError, match=r"3 results for 2 configurations"):
        opt.update_state(state, KEY, jnp.zeros(3), jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"3 results for 2 configurations"):
        opt.update_state(state, KEY, jnp.zeros(3), {"x1": jnp.zeros(2), "x2": jnp.zeros(2)})
    with pytest.raises(ValueError, match=r"4 results for 3 configurations"):
        opt.update_state(state, KEY, jnp.zeros(4), jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"an array of shape \(3, 2\); got .* \(3, 5\)"):
        opt.update_state(state, KEY, jnp.zeros(3), jnp.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"leaves of shape \(3,\)"):
        opt.update_state(state, KEY, jnp.zeros(3), {"x1": jnp.zeros(3)})


def _rows(state):
    return state.X, state.y, state.mask


@pytest.mark.parametrize("form", ["pytree", "matrix"])
def test_partial_updates_record_what_a_full_update_does(branin_opt, form):
    # Asynchronous workers report one result at a time: 1 then n_parallel - 1 results
    # give the state a whole batch gives (buffers always; every field when the
    # hyperparameters are not refitted in between).
    state, opt = branin_opt
    X = jnp.array([[0.5, 1.0], [-2.0, 12.0], [7.0, 3.5]])
    params = {"x1": X[:, 0], "x2": X[:, 1]} if form == "pytree" else X
    first = jax.tree_util.tree_map(lambda leaf: leaf[:1], params)
    rest = jax.tree_util.tree_map(lambda leaf: leaf[1:], params)
    y = jnp.array([3.0, 1.0, 2.0])
    for o in (opt, dataclasses.replace(opt, n_hparam_steps=0)):
        full = o.update_state(state, KEY, y, params)
        one = o.update_state(state, KEY, y[:1], first)
        assert int(one.mask.sum()) == 1 and float(one.y[0]) == 3.0
        parts = o.update_state(one, KEY, y[1:], rest)
        for a, b in zip(_rows(parts), _rows(full), strict=True):
            np.testing.assert_array_equal(a, b)
        if o.n_hparam_steps == 0:
            assert eqx.tree_equal(parts, full)
        else:  # two observations or more: the hyperparameters were refitted
            assert not np.array_equal(parts.log_length_scale, state.log_length_scale)


def test_pinned_columns_keep_their_value_in_every_pick(branin_opt):
    # What the multi-fidelity model uses to suggest at the full budget: a pinned column
    # (on the unit cube) has its value in every pick, the free ones are searched.
    from hyperoptax.bayesian import suggest_raw

    state, opt = branin_opt
    state, _ = opt.optimize(state, KEY, branin, 2)
    fixed = jnp.array([jnp.nan, 0.25])
    batch = np.asarray(suggest_raw(opt, state, KEY, fixed=fixed))
    np.testing.assert_allclose(batch[:, 1], 0.0 + 15.0 * 0.25, rtol=1e-6)  # x2 in [0, 15]
    assert len(np.unique(batch[:, 0])) == 3 and np.all((batch[:, 0] >= -5) & (batch[:, 0] <= 10))


def test_pending_configurations_are_kept_away_from(branin_opt):
    state, opt = branin_opt
    state, _ = opt.optimize(state, KEY, branin, 2)
    batch = opt.get_next_params(state, KEY)
    unit = np.array([[-5.0, 0.0]]), np.array([[15.0, 15.0]])  # BRANIN_SPACE: lower, width

    def on_cube(p):
        return (np.stack([np.asarray(p["x1"]), np.asarray(p["x2"])], 1) - unit[0]) / unit[1]

    # The same key without pending configurations picks `batch` again; with them, the
    # model believes a result at each of them, and keeps its picks away.
    again = opt.get_next_params(state, KEY, pending=[])
    np.testing.assert_array_equal(on_cube(again), on_cube(batch))
    steered = opt.get_next_params(state, KEY, pending=batch)
    gaps = np.linalg.norm(on_cube(steered)[:, None] - on_cube(batch)[None], axis=-1)
    assert gaps.min() > 1e-2, gaps
    check_in_space(steered, BRANIN_SPACE, 3)
    # Pending configurations as a list of dicts or a matrix are the same configurations.
    configs = hx.to_configs(batch, BRANIN_SPACE)
    listed = opt.get_next_params(state, KEY, pending=configs)
    matrix = opt.get_next_params(state, KEY, pending=np.asarray(on_cube(batch) * unit[1] + unit[0]))
    for p in (listed, matrix):
        np.testing.assert_allclose(on_cube(p), on_cube(steered), atol=1e-6)
    with pytest.raises(ValueError, match=r"not a number in \[-5, 10\]"):
        opt.get_next_params(state, KEY, pending=[{"x1": 20.0, "x2": 1.0}])


def test_hparam_fit_improves_the_posterior_density(branin_opt):
    from hyperoptax import bayesian, gp
    from hyperoptax._targets import model_targets
    from hyperoptax.spaces import flatten_space

    state, opt = branin_opt
    fitted, _ = opt.optimize(state, KEY, branin, 2)
    flat = flatten_space(fitted.space)
    z, _ = model_targets(fitted.y, fitted.mask, opt.maximize)
    data = bayesian._dataset(flat, fitted, z)

    def density(s):
        return float(
            gp.neg_log_posterior(
                bayesian._model_kernel(opt, flat), bayesian._gp_params(s), data, opt.jitter
            )
        )

    # The fitted hyperparameters explain the data better than the ones the search started with.
    start = eqx.tree_at(lambda s: (s.X, s.y, s.mask), state, (fitted.X, fitted.y, fitted.mask))
    assert density(fitted) < density(start) - 1e-3, (density(fitted), density(start))
    assert bool(jnp.all(jnp.isfinite(fitted.log_length_scale)))


def test_default_iterations_fill_the_buffer(branin_opt):
    state, opt = branin_opt
    state = opt.update_state(state, KEY, jnp.ones(3), jnp.ones((3, 2)))
    final, (ph, rh) = opt.optimize_scan(state, KEY, branin)
    assert rh.shape == (3, 3)  # 9 / 3
    assert bool(final.mask.all())


def test_no_result_is_dropped_when_the_buffer_fills(branin_opt):
    state, opt = branin_opt  # n_max=12, n_parallel=3
    calls = []

    def objective(config):
        calls.append(config)
        return branin(None, config)

    # More iterations than the buffer holds: refused before anything is evaluated.
    for run in (
        lambda: opt.optimize_host(state, KEY, objective, 5),
        lambda: opt.optimize(state, KEY, branin, 5),
        lambda: opt.optimize_scan(state, KEY, branin, 5),
    ):
        with pytest.raises(ValueError, match=r"need 15 free slots, but the state has 12"):
            run()
    assert calls == []
    # A buffer that is not a multiple of the batch: whole batches only, so every result
    # of the history is in the state and the best result agrees with the history.
    odd, opt5 = hx.BayesianSearch.init(
        BRANIN_SPACE, n_max=10, maximize=False, n_parallel=4, **SMALL
    )
    final, (_, rh) = opt5.optimize(odd, KEY, branin)
    history = np.concatenate([np.asarray(r) for r in rh])
    assert history.shape == (8,) and int(final.mask.sum()) == 8
    assert float(opt5.best_result(final)) == history.min()
    with pytest.raises(ValueError, match="cannot hold one batch"):
        hx.BayesianSearch.init(BRANIN_SPACE, n_max=2, n_parallel=4)
    with pytest.raises(ValueError, match="13 observations do not fit in the 12 free slots"):
        opt.warm_start(state, np.zeros((13, 2)), np.zeros(13))


def test_nan_and_inf_results_never_poison(branin_opt):
    state, opt = branin_opt
    X = jnp.array([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]])
    state = opt.update_state(state, KEY, jnp.array([jnp.nan, 5.0, jnp.inf]), X)
    state = opt.update_state(state, KEY, jnp.array([jnp.nan, jnp.nan, jnp.nan]), X + 1)
    assert float(opt.best_result(state)) == 5.0
    assert np.isnan(np.asarray(state.y[0]))  # kept as reported
    p = opt.get_next_params(state, KEY)
    check_in_space(p, BRANIN_SPACE, 3)
    assert bool(jnp.all(jnp.isfinite(state.log_length_scale)))


def test_all_failed_falls_back_to_random(branin_opt):
    state, opt = branin_opt
    state = opt.update_state(state, KEY, jnp.full(3, jnp.nan), jnp.ones((3, 2)))
    assert np.isnan(float(opt.best_result(state)))
    check_in_space(opt.get_next_params(state, KEY), BRANIN_SPACE, 3)


def test_best_params_raises_while_no_result_is_finite(branin_opt):
    # Not the empty buffer's zero row, a configuration nobody evaluated.
    state, opt = branin_opt
    failed = opt.update_state(state, KEY, jnp.array([jnp.nan, jnp.inf, -jnp.inf]), jnp.ones((3, 2)))
    for s in (state, failed):
        with pytest.raises(ValueError, match="no observation has a finite result yet"):
            opt.best_params(s)
    with pytest.raises(RuntimeError, match="no observation has a finite result yet"):
        eqx.filter_jit(opt.best_params)(failed)
    X = jnp.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    one = opt.update_state(failed, KEY, jnp.array([jnp.nan, 4.0, jnp.nan]), X)
    best = opt.best_params(one)
    assert (float(best["x1"]), float(best["x2"])) == (2.0, 3.0)


def test_update_state_refuses_configurations_outside_the_space(mixed_opt):
    state, opt = mixed_opt
    good = {
        "lr": jnp.array([1e-3, 1e-2]),
        "layers": jnp.array([2, 4]),
        "width": jnp.array([8, 512]),
        "act": jnp.array([0, 2]),
        "dropout": jnp.array([0.0, 0.5]),
    }
    bad = [
        ("lr", -1e-3, r"\['lr'\] of configuration 1 is -0.001"),  # NaN on the unit cube
        ("lr", 0.5, r"\['lr'\] of configuration 1 is 0.5, not a number in \[1e-05, 0.1\]"),
        ("layers", 5, r"\['layers'\] of configuration 1 is 5.0, not an integer in \[1, 4\]"),
        ("width", 100.5, r"\['width'\] .* not an integer"),
        ("act", 3, r"\['act'\] of configuration 1 is 3.0, not one of \(0.0, 1.0, 2.0\)"),
        ("dropout", jnp.nan, r"\['dropout'\] of configuration 1 is nan"),
    ]
    results = jnp.array([1.0, 2.0])
    for name, value, message in bad:
        params = {**good, name: good[name].astype(float).at[1].set(value)}
        with pytest.raises(ValueError, match=message):
            opt.update_state(state, KEY, results, params)
        matrix = jnp.stack(jax.tree_util.tree_leaves(params), axis=1)
        with pytest.raises(ValueError, match=message):
            opt.update_state(state, KEY, results, matrix)
        # Traced, the batch cannot be read: recorded as given, no error.
        eqx.filter_jit(opt.update_state)(state, KEY, results, matrix)
    recorded = opt.update_state(state, KEY, results, good)
    expected = jnp.stack(jax.tree_util.tree_leaves(good), axis=1).astype(recorded.X.dtype)
    np.testing.assert_allclose(recorded.X[:2], expected, rtol=1e-6)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    scale=st.sampled_from([1e-12, 1e-3, 1.0, 1e6, 1e12]),
    offset=st.sampled_from([0.0, -1e3, 1e6]),
    n_bad=st.integers(0, 3),
    duplicate=st.booleans(),
    constant=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_suggestions_always_finite_in_bounds_and_typed(
    branin_opt, scale, offset, n_bad, duplicate, constant, seed
):
    state, opt = branin_opt
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    for i, k in enumerate((k1, k2)):
        p = hx.RandomSearch(n_parallel=3).get_next_params(state, k)
        if duplicate:
            p = jax.tree_util.tree_map(lambda v: jnp.full_like(v, v[0]), p)
        y = jnp.ones(3) if constant else jax.vmap(branin)(jax.random.split(k, 3), p)
        y = y * scale + offset
        if i == 1 and n_bad:
            y = y.at[:n_bad].set(jnp.array([jnp.nan, jnp.inf, -jnp.inf])[:n_bad])
        state = opt.update_state(state, k, y, p)
    suggestion = opt.get_next_params(state, k3)
    check_in_space(suggestion, BRANIN_SPACE, 3)
    # The model drives: the batch is not the uniformly random one that a search still in
    # its warm-up (or one without a finite result) would draw with the same key.
    y = np.asarray(state.y)[np.asarray(state.mask) & np.isfinite(np.asarray(state.y))]
    if np.ptp(y) > 0:
        fallback = dataclasses.replace(opt, n_warmup=100).get_next_params(state, k3)
        assert not np.array_equal(np.asarray(suggestion["x1"]), np.asarray(fallback["x1"]))
    assert bool(jnp.all(jnp.isfinite(state.log_length_scale)))
    assert bool(jnp.isfinite(state.log_noise)) and bool(jnp.isfinite(state.log_output_scale))


def test_each_hallucination_changes_the_batch(branin_opt):
    state, opt = branin_opt
    # EI with a smooth kernel: with the default PI the later picks creep next to the
    # incumbent, away from the hallucinated point, and barely depend on its value
    # (see benchmarks/RESULTS.md). Candidates without L-BFGS refinement: the
    # hallucination acts between picks either way, and each of the five programs
    # compiles in about half the time.
    opt = dataclasses.replace(opt, kernel=hx.Matern(nu=2.5), acquisition=hx.EI(), n_lbfgs_steps=0)
    state, _ = opt.optimize(state, KEY, branin, 2)
    batches = []
    for h in (
        hx.MeanHallucination(),
        hx.UCBHallucination(kappa=3.0),
        hx.ConstantHallucination(value=-3.0),
        hx.SampleHallucination(),
    ):
        o = eqx.tree_at(lambda o: o.hallucination, opt, h)
        batches.append(np.stack([o.get_next_params(state, KEY)[k] for k in ("x1", "x2")], 1))
    for a in batches:
        np.testing.assert_allclose(
            a[0], batches[0][0], rtol=1e-6
        )  # first pick needs no hallucination
    for i in range(len(batches)):
        for j in range(i + 1, len(batches)):
            assert not np.allclose(batches[i][1:], batches[j][1:])


def test_optimistic_hallucination_becomes_the_incumbent(branin_opt):
    # Kriging Believer believes its pseudo-observations: a hallucinated value far above
    # everything observed is the best "result" the next picks must beat. If the
    # acquisition kept measuring against the observed best, the neighbourhood of the
    # first pick (mean near the hallucinated value) would win and the batch would pile
    # up there. Hallucinations receive the incumbent, so a recording one shows it.
    state, opt = branin_opt
    state, _ = opt.optimize(state, KEY, branin, 2)
    seen = []

    def optimistic(mean, std, key, y_max):
        jax.debug.callback(lambda v: seen.append(float(v)), y_max, ordered=True)
        return jnp.asarray(50.0, mean.dtype)

    o = eqx.tree_at(lambda o: o.hallucination, opt, optimistic)
    jax.block_until_ready(o.get_next_params(state, KEY))
    jax.effects_barrier()
    assert len(seen) == 3, seen
    assert seen[0] < 10.0, seen  # the observed incumbent, in acquisition units
    assert seen[1] > 45.0 and seen[2] > 45.0, seen  # the first pick's pseudo-observation


def test_acquisitions_measure_against_the_best_the_model_believes(branin_opt):
    # With a noisy fit the best result is partly luck: EI is measured against the largest
    # posterior mean at the observed points, not against the best result itself.
    from hyperoptax._targets import model_targets

    state, opt = branin_opt
    state, _ = opt.optimize(state, KEY, branin, 3)
    X = state.X[state.mask]
    z, unit = model_targets(state.y, state.mask, False, 2)
    best_result = jnp.max(jnp.where(state.mask, z, -jnp.inf)) / unit
    ei = hx.EI(xi=0.0)
    o = eqx.tree_at(lambda o: o.acquisition, opt, ei)
    s = eqx.tree_at(lambda s: s.log_noise, state, jnp.asarray(np.log(0.3), state.X.dtype))
    mean, std, acq = o.predict(s, X)  # at the observed points
    assert float(best_result - jnp.max(mean)) > 0.1 * float(jnp.max(std))
    np.testing.assert_allclose(acq, ei(mean, std, jnp.max(mean)), rtol=1e-4, atol=1e-7)
    assert not np.allclose(acq, ei(mean, std, best_result), rtol=1e-2, atol=1e-7)
    # A model that interpolates believes the best result.
    s = eqx.tree_at(lambda s: s.log_noise, state, jnp.asarray(np.log(1e-6), state.X.dtype))
    mean, _, _ = o.predict(s, X)
    np.testing.assert_allclose(jnp.max(mean), best_result, rtol=1e-3)


def test_optimize_scan_vmaps_over_seeds(branin_opt):
    state, opt = branin_opt
    keys = jax.random.split(KEY, 3)
    # The program of the next test but one (the same function), compiled once for both.
    run = eqx.filter_jit(eqx.filter_vmap(lambda k: opt.optimize_scan(state, k, branin)))
    final, (ph, rh) = run(keys)
    assert rh.shape == (3, 4, 3) and ph["x1"].shape == (3, 4, 3)
    assert final.y.shape == (3, 12)
    assert not np.allclose(rh[0], rh[1])
    single, (p0, r0) = opt.optimize_scan(state, keys[0], branin)
    # Same search: every configuration the same up to float32 rounding, which batching
    # changes in the L-BFGS refinement (a few 1e-5 of the 15-wide intervals; on
    # Branin's steep slopes that moves a result by up to 1e-3 of its value).
    for name in ("x1", "x2"):
        np.testing.assert_allclose(ph[name][0], p0[name], atol=2e-3)
    np.testing.assert_allclose(rh[0], r0, rtol=3e-3)


@pytest.fixture(scope="module")
def random_branin_regret():
    # Random search's median regret after 50 Branin evaluations, over 20 seeds.
    state, opt = hx.RandomSearch.init(BRANIN_SPACE, n_parallel=1)
    keys = jax.random.split(jax.random.PRNGKey(100), 20)
    _, (_, rh) = eqx.filter_vmap(lambda k: opt.optimize_scan(state, k, branin, 50))(keys)
    return float(np.median(np.min(np.asarray(rh), axis=(1, 2)) - BRANIN_MIN))


@pytest.mark.parametrize(
    "settings, factor",
    [("recommended", 100.0), ("defaults", 5.0)],
)
def test_finds_branin_optimum(random_branin_regret, settings, factor):
    # Five seeds of a 50-evaluation search end, by their median, `factor` times closer to
    # the optimum than random search's median (about 0.5): the recommended settings
    # reach about 1e-4 (benchmarks/RESULTS.md), the library defaults about 0.03.
    kwargs = hx.recommended(n_parallel=1) if settings == "recommended" else dict(n_parallel=1)
    state, opt = hx.BayesianSearch.init(
        BRANIN_SPACE, n_max=50, maximize=False, **{**kwargs, "n_candidates": 256}
    )
    # One compiled step reused for every seed (a vmapped scan would compile far longer).
    regret = [
        float(np.min(np.concatenate(opt.optimize(state, k, branin)[1][1]))) - BRANIN_MIN
        for k in jax.random.split(KEY, 5)
    ]
    assert np.median(regret) < random_branin_regret / factor, (regret, random_branin_regret)


def test_warmup_ignores_data_then_gp_drives(branin_opt):
    state0, opt = branin_opt
    opt = dataclasses.replace(opt, n_warmup=2)
    X = jnp.array([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]])
    one = opt.update_state(state0, KEY, jnp.array([1.0, 2.0, 3.0]), X)
    two = opt.update_state(one, KEY, jnp.array([4.0, 5.0, 6.0]), X + 1)
    p0, p1, p2 = (opt.get_next_params(s, KEY) for s in (state0, one, two))
    # Fewer than n_warmup * n_parallel = 6 results: the suggestion does not look at them.
    np.testing.assert_array_equal(p0["x1"], p1["x1"])
    assert not np.allclose(p1["x1"], p2["x1"])


def test_float64_search_runs_in_float64(tmp_path):
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        import hyperoptax as hx
        from helpers import BRANIN_SPACE, branin
        # `recommended` reads the precision when called: the float64 settings.
        kwargs = hx.recommended(n_parallel=2)
        assert kwargs["n_warmup"] == 5 and kwargs["kernel"] == hx.Matern(nu=2.5), kwargs
        small = dict(n_candidates=16, n_lbfgs_steps=2, n_hparam_steps=3, n_warmup=2)
        state, opt = hx.BayesianSearch.init(BRANIN_SPACE, n_max=8, maximize=False,
                                            **{**kwargs, **small})
        for name, value in kwargs.items():
            assert getattr(opt, name) == small.get(name, value), name
        state, (ph, rh) = opt.optimize(state, jax.random.PRNGKey(0), branin)
        assert state.X.dtype == jnp.float64 and state.y.dtype == jnp.float64, state.X.dtype
        assert state.log_length_scale.dtype == jnp.float64
        assert ph[-1]["x1"].dtype == jnp.float64
        assert bool(jnp.isfinite(opt.best_result(state)))
        # float64 gets a lower noise floor and a scaled-down jitter, so the posterior
        # interpolates noise-free data far more closely than float32 can (about 1e-5).
        from hyperoptax import gp
        X = jnp.linspace(0, 1, 12)[:, None]
        y = jnp.sin(6 * X[:, 0])
        p = gp.GPParams(jnp.log(jnp.array([0.3])), jnp.array(0.0), jnp.array(-50.0)).clip()
        assert float(jnp.exp(p.log_noise)) < 1e-9
        post = gp.fit(hx.Matern(nu=2.5), p, gp.Dataset(X, y, jnp.ones(12, bool)), 1e-6)
        mean, _ = gp.predict(hx.Matern(nu=2.5), post, X)
        assert float(jnp.max(jnp.abs(mean - y))) < 1e-8, mean - y
        # The output warp's properties in both precisions: it keeps the order of the
        # results (the best has the largest target), ignores their units and offset,
        # standardises, and is gentler in float64 (closer to linear in the results).
        from hyperoptax._targets import model_targets
        r = jnp.array([1.0, 2.0, 4.0, 8.0, 100.0, 0.0])
        m = jnp.array([True] * 5 + [False])
        linearity = {}
        for dtype in (jnp.float64, jnp.float32):
            z, _ = model_targets(r.astype(dtype), m, False, 2)
            assert z.dtype == dtype
            assert bool(jnp.all(jnp.diff(z[:5]) < 0)), z  # minimising: smaller is better
            z2, _ = model_targets((3.0 * r + 7.0).astype(dtype), m, False, 2)
            assert bool(jnp.allclose(z2[:5], z[:5], atol=1e-5)), (z, z2)
            assert abs(float(z[:5].mean())) < 1e-5 and abs(float(z[:5].std()) - 1.0) < 1e-5
            assert float(z[5]) == 0.0  # an empty slot stays out of the model
            linearity[dtype] = float(jnp.corrcoef(z[:5], -r[:5].astype(dtype))[0, 1])
        assert linearity[jnp.float64] > linearity[jnp.float32], linearity
        print("ok")
        """
    )
    import os

    env = {**os.environ, "PYTHONPATH": os.path.dirname(__file__)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ok" in out.stdout


def test_pi_margin_is_a_fraction_of_the_observed_range_per_parameter():
    from hyperoptax._targets import model_targets

    y = jnp.array([10.0, 10.0 - 1e-3, 7.0, 4.0, 0.0, 0.0])
    mask = jnp.array([True] * 5 + [False])
    z, unit = model_targets(y, mask, True, 3)
    # Near the best, one unit of the acquisitions' scale is worth the observed range (10)
    # once per parameter (3 here).
    slope = (z[0] - z[1]) / 1e-3
    np.testing.assert_allclose(unit, slope * 10.0 * 3, rtol=1e-2)
    # The model's targets do not depend on the number of parameters.
    z1, unit1 = model_targets(y, mask, True, 1)
    np.testing.assert_allclose(z1, z)
    np.testing.assert_allclose(unit1 * 3, unit, rtol=1e-6)
    # Changing the objective's units or offset changes nothing the model sees.
    z2, unit2 = model_targets(1e3 * y - 5.0, mask, True, 3)
    np.testing.assert_allclose(z2, z, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(unit2, unit, rtol=1e-4)


def test_default_pi_explores_instead_of_creeping():
    # PI is maximised about xi / slope from the incumbent; with the margin measured in
    # the observed range the default takes real steps, a tiny margin only creeps.
    def median_step(xi):
        state, opt = hx.BayesianSearch.init(
            BRANIN_SPACE,
            n_max=24,
            maximize=False,
            n_parallel=1,
            n_candidates=128,
            acquisition=hx.PI(xi=xi),
        )
        final, _ = opt.optimize(state, KEY, branin)
        U = (np.asarray(final.X) - np.array([-5.0, 0.0])) / 15.0
        return np.median(np.linalg.norm(np.diff(U[4:], axis=0), axis=1))

    assert median_step(0.01) > 0.01
    assert median_step(1e-4) < 0.005


def test_default_iterations_inside_jit_and_vmap(branin_opt):
    state, opt = branin_opt
    keys = jax.random.split(KEY, 3)
    # The state is a constant of the traced function: its fill level is still known.
    run = eqx.filter_jit(eqx.filter_vmap(lambda k: opt.optimize_scan(state, k, branin)))
    assert run(keys)[1][1].shape == (3, 4, 3)
    # A traced state has no readable fill level: a clear error, not a trace error.
    with pytest.raises(ValueError, match="n_iterations"):
        eqx.filter_jit(lambda s: opt.optimize_scan(s, KEY, branin))(state)


def test_restarts_come_from_uniform_and_local_candidates():
    from hyperoptax._suggest import restart_indices

    # 12 candidates: 9 uniform, then 3 near the incumbent, which score best.
    scores = jnp.array([0.0, 5.0, 1.0, 0.5, 4.0, 0.0, 0.0, 0.0, 0.0, 9.0, 8.0, 7.0])
    assert sorted(np.asarray(restart_indices(scores, 4)).tolist()) == [1, 4, 9, 10]
    # Odd counts favour the uniform part; a single restart is simply the best.
    assert sorted(np.asarray(restart_indices(scores, 3)).tolist()) == [1, 4, 9]
    assert np.asarray(restart_indices(scores, 1)).tolist() == [9]


def test_recommended_settings_are_accepted_in_float32():
    # (float64: `test_float64_search_runs_in_float64`, in its own process.) The settings
    # of the recommended Branin run above, so its compiled programs serve this search.
    kwargs = hx.recommended(n_parallel=1)
    assert kwargs["n_parallel"] == 1 and "n_max" not in kwargs
    # Ten random evaluations first, whatever the batch size.
    assert kwargs["n_warmup"] == 10 and hx.recommended(n_parallel=4)["n_warmup"] == 3
    assert kwargs["kernel"] == hx.Matern(nu=1.5) and isinstance(kwargs["acquisition"], hx.EI)
    state, opt = hx.BayesianSearch.init(
        BRANIN_SPACE, n_max=50, maximize=False, **{**kwargs, "n_candidates": 256}
    )
    for name, value in kwargs.items():
        if name != "n_candidates":
            assert getattr(opt, name) == value, name
    state, _ = opt.optimize(state, KEY, branin, 12)
    assert state.y.dtype == jnp.float32 and int(state.mask.sum()) == 12


def _two_unit_parameters():
    # The configuration of the next three tests (compiled once for all of them).
    space = {"x0": hx.LinearSpace(0.0, 1.0), "x1": hx.LinearSpace(0.0, 1.0)}
    return hx.BayesianSearch.init(
        space, n_max=31, maximize=False, **{**hx.recommended(n_parallel=1), "n_candidates": 256}
    )


def test_an_uninformative_start_does_not_send_the_search_to_a_corner():
    # Ten results near the centre that say nothing (all equal): with a constant prior
    # mean the acquisition is largest where the posterior is most uncertain, a corner
    # of the cube; the prior mean that falls towards the faces (`gp.BoundaryMean`)
    # makes the model expect no better there than anywhere else it has not looked.
    state, opt = _two_unit_parameters()
    X = 0.45 + 0.1 * jax.random.uniform(jax.random.PRNGKey(4), (10, 2))
    state = opt.warm_start(state, X, jnp.ones(10))
    x = opt.get_next_params(state, KEY)
    on_face = [min(float(v[0]), 1.0 - float(v[0])) < 0.02 for v in (x["x0"], x["x1"])]
    assert not all(on_face), x


def test_an_optimum_on_a_face_is_still_found():
    # The prior mean only speaks where there are no data: results that show the best
    # on the face x0 = 0 bring the next suggestion to that face.
    state, opt = _two_unit_parameters()
    X = jax.random.uniform(jax.random.PRNGKey(3), (30, 2))
    state = opt.warm_start(state, X, X[:, 0] + 4.0 * (X[:, 1] - 0.3) ** 2)
    x = opt.get_next_params(state, KEY)
    assert float(x["x0"][0]) < 0.02 and abs(float(x["x1"][0]) - 0.3) < 0.1, x


def test_a_parameter_written_off_early_comes_back_when_the_data_show_its_effect():
    # The model once decided that `x0` does not matter (its length scale at the upper
    # bound). Thirty results that show its effect (best at x0 = 0.3, inside the range)
    # must bring it back: a refit shortens the length scale, and the next suggestion
    # does not sit at a bound of x0.
    state, opt = _two_unit_parameters()
    X = jax.random.uniform(jax.random.PRNGKey(3), (30, 2))
    y = 4.0 * (X[:, 0] - 0.3) ** 2 + 0.2 * X[:, 1]
    stuck = eqx.tree_at(lambda s: s.log_length_scale, state, jnp.array([jnp.log(100.0), 0.0]))
    state = opt.warm_start(stuck, X, y)
    assert float(jnp.exp(state.log_length_scale[0])) < 2.0, jnp.exp(state.log_length_scale)
    x0 = opt.get_next_params(state, KEY)["x0"]
    assert 0.02 < float(x0[0]) < 0.98, x0


def _written(state, X, y, length_scale):
    """`state` with the results `y` at `X` in its first slots and fixed length scales,
    written in place (no fit to compile)."""
    n = X.shape[0]
    return eqx.tree_at(
        lambda s: (s.X, s.y, s.mask, s.log_length_scale),
        state,
        (
            state.X.at[:n].set(X),
            state.y.at[:n].set(y),
            state.mask.at[:n].set(True),
            jnp.log(jnp.full(X.shape[1], length_scale)),
        ),
    )


def test_a_long_buffer_suggests_what_the_whole_posterior_does_while_neighbourhoods_hold_it():
    # A buffer longer than `gp.MAX_REFINE_POINTS` reads the model through
    # neighbourhoods (`_suggest._Local`). While the neighbourhoods hold every
    # observation they are the whole posterior, so a long buffer must pick what a short
    # one with the same 40 results picks: a believer's batch of three (its first pick
    # is what a batch of one picks; the others follow the pseudo-observations).
    space = {"x0": hx.LinearSpace(0.0, 1.0), "x1": hx.LinearSpace(0.0, 1.0)}
    X = jax.random.uniform(jax.random.PRNGKey(6), (40, 2))
    y = (X[:, 0] - 0.3) ** 2 + (X[:, 1] - 0.7) ** 2 + 0.1 * jnp.sin(9.0 * X[:, 0])
    picks = []
    for n_max in (43, hx.gp.MAX_REFINE_POINTS + 8):
        kw = {**hx.recommended(n_parallel=3), "n_candidates": 64}
        state, opt = hx.BayesianSearch.init(space, n_max=n_max, maximize=False, **kw)
        x = opt.get_next_params(_written(state, X, y, 0.3), KEY)
        picks.append(np.stack([np.asarray(x["x0"]), np.asarray(x["x1"])], axis=1))
    assert picks[0].shape == (3, 2)
    assert np.unique(np.round(picks[0], 3), axis=0).shape[0] == 3, picks[0]
    np.testing.assert_allclose(picks[1], picks[0], atol=2e-3)


def test_a_long_buffer_refines_on_neighbourhoods_and_finds_the_gap():
    # A buffer longer than `gp.MAX_REFINE_POINTS` scores and refines its candidates on
    # the posteriors of their nearest observations (`gp.nearest`). 200 results of a
    # bowl with none within 0.1 of its minimum at (0.3, 0.7): the suggestion fills that
    # gap, closer to the minimum than any observation.
    space = {"x0": hx.LinearSpace(0.0, 1.0), "x1": hx.LinearSpace(0.0, 1.0)}
    n_max = hx.gp.MAX_REFINE_POINTS + 44
    state, opt = hx.BayesianSearch.init(
        space, n_max=n_max, maximize=False, **{**hx.recommended(n_parallel=1), "n_candidates": 64}
    )
    X = jax.random.uniform(jax.random.PRNGKey(5), (400, 2))
    gap = jnp.hypot(X[:, 0] - 0.3, X[:, 1] - 0.7)
    X = X[np.flatnonzero(np.asarray(gap > 0.1))[:200]]
    y = (X[:, 0] - 0.3) ** 2 + (X[:, 1] - 0.7) ** 2
    state = _written(state, X, y, 0.5)
    dist = []
    for key in jax.random.split(KEY, 9):
        x = opt.get_next_params(state, key)
        dist.append(float(jnp.hypot(x["x0"][0] - 0.3, x["x1"][0] - 0.7)))
    # Every suggestion fills the gap; candidates alone land a few hundredths away, the
    # refinement reaches the minimum (each suggestion draws its own length scales, so
    # where the model puts the minimum moves a little from one to the next).
    assert max(dist) < 0.05 and np.median(dist) < 0.01, dist


def test_noise_that_near_replicates_contradict_does_not_widen_the_report():
    # Ripples far faster than the observations are spaced: a smooth model can explain
    # them as noise (here: noise sd 0.32 of the standardised results), and ranked within
    # that noise the report is not the best observation. The twenty best configurations
    # were evaluated again a hair away and gave the same results, which evidences no
    # noise: the report is the best observation.
    from hyperoptax import bayesian, gp
    from hyperoptax._targets import model_targets
    from hyperoptax.spaces import flatten_space

    space = {f"x{i}": hx.LinearSpace(0.0, 1.0) for i in range(2)}
    base = jax.random.uniform(KEY, (60, 2))

    def rugged(x):
        return 4 * jnp.sum((x - 0.5) ** 2, -1) + 0.3 * jnp.sin(3000 * x[:, 0])

    X = jnp.concatenate([base, base[jnp.argsort(rugged(base))[:20]] + 1e-5])
    state, opt = hx.BayesianSearch.init(space, n_max=80, maximize=False, kernel=hx.Matern(nu=2.5))
    state = dataclasses.replace(state, X=X, y=rugged(X), mask=jnp.ones(80, bool))
    z = model_targets(state.y, state.mask, False)[0]
    data = bayesian._dataset(flatten_space(space), state, z)
    smooth = gp.GPParams(jnp.log(jnp.array([0.3, 0.3])), jnp.array(0.0), jnp.log(jnp.array(0.1)))

    def report(replicates):
        i = bayesian._ranked_best(opt, state, z, data, opt.kernel, smooth, replicates)
        return int(jnp.sum(state.y < state.y[i]))  # how many observations beat it

    assert report(replicates=True) == 0
    assert report(replicates=False) > 0


def test_observed_reports_the_best_observation_where_the_model_would_not():
    # Noisy results: the model ranks the observations within the noise of the best by
    # their posterior mean, and reports another configuration than the luckiest. With
    # `observed=True` (results taken as exact) the report is the best observed result,
    # in either direction, NaN ignored, under jit too.
    space = {f"x{i}": hx.LinearSpace(0.0, 1.0) for i in range(2)}
    k1, k2 = jax.random.split(KEY)
    X = jax.random.uniform(k1, (40, 2))
    y = jnp.sum((X - 0.5) ** 2, -1) + 0.05 * jax.random.normal(k2, (40,))
    y = y.at[3].set(jnp.nan)
    for maximize, sign in ((False, 1.0), (True, -1.0)):
        state, opt = hx.BayesianSearch.init(space, n_max=40, maximize=maximize, **SMALL)
        state = dataclasses.replace(state, X=X, y=sign * y, mask=jnp.ones(40, bool))
        luckiest = int(jnp.nanargmin(y))
        observed = opt.best_params(state, observed=True)
        assert [float(observed[f"x{i}"]) for i in range(2)] == X[luckiest].tolist()
        assert float(opt.best_result(state, observed=True)) == float(sign * y[luckiest])
        jitted = eqx.filter_jit(lambda s, o=opt: o.best_result(s, observed=True))
        assert float(jitted(state)) == float(sign * y[luckiest])
        if not maximize:  # the model's choice: another observation, worse as observed
            assert float(opt.best_result(state)) > float(y[luckiest])
    failed = dataclasses.replace(state, y=jnp.full(40, jnp.nan))
    with pytest.raises(ValueError, match="no observation has a finite result yet"):
        opt.best_params(failed, observed=True)
    assert np.isnan(float(opt.best_result(failed, observed=True)))
