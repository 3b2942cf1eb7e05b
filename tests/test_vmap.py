"""`eqx.filter_vmap` over `optimize_scan`: seeds for every optimizer, and settings."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from helpers import BRANIN_SPACE, MIXED_SPACE, branin, mixed_objective

import hyperoptax as hx

KEY = jax.random.PRNGKey(0)
SMALL = dict(n_candidates=32, n_restarts=2, n_lbfgs_steps=3, n_hparam_steps=3)


def test_random_search_vmaps_over_seeds():
    state, opt = hx.RandomSearch.init(MIXED_SPACE, n_parallel=2)
    keys = jax.random.split(KEY, 4)
    _, (ph, rh) = eqx.filter_jit(
        eqx.filter_vmap(lambda k: opt.optimize_scan(state, k, mixed_objective, 3))
    )(keys)
    assert (
        rh.shape == (4, 3, 2) and ph["width"].shape == (4, 3, 2) and ph["width"].dtype == jnp.int32
    )
    # Each seed is the search run alone with that key.
    _, (_, r1) = opt.optimize_scan(state, keys[1], mixed_objective, 3)
    np.testing.assert_allclose(rh[1], r1, rtol=1e-6)
    assert len(np.unique(np.asarray(rh))) == rh.size


def test_grid_search_vmaps_over_shuffled_states():
    space = {"a": hx.DiscreteSpace((1, 2, 3)), "b": hx.DiscreteSpace((0.5, 1.5))}
    keys = jax.random.split(KEY, 3)
    states = [hx.GridSearch.init(space, key=k, shuffle=True)[0] for k in keys]
    _, opt = hx.GridSearch.init(space, shuffle=True)
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *states)
    f = lambda k, p: p["a"] * p["b"]  # noqa: E731
    final, (ph, rh) = eqx.filter_vmap(lambda s, k: opt.optimize_scan(s, k, f, 6))(stacked, keys)
    assert rh.shape == (3, 6, 1) and final.grid_idx.tolist() == [6, 6, 6]
    # Every seed walks the whole grid, each in its own order.
    for i in range(3):
        assert sorted(np.asarray(rh[i, :, 0]).tolist()) == sorted(
            [a * b for a in (1, 2, 3) for b in (0.5, 1.5)]
        )
    assert not np.array_equal(rh[0], rh[1]) or not np.array_equal(rh[1], rh[2])


def test_bayesian_search_vmaps_over_ucb_kappa():
    state, opt = hx.BayesianSearch.init(
        BRANIN_SPACE, n_max=6, maximize=False, n_parallel=1, acquisition=hx.UCB(), **SMALL
    )
    kappas = jnp.array([0.1, 1.0, 10.0])

    def run(kappa):
        o = eqx.tree_at(lambda o: o.acquisition.kappa, opt, kappa)
        return o.optimize_scan(state, KEY, branin, 6)

    final, (ph, rh) = eqx.filter_jit(eqx.filter_vmap(run))(kappas)
    assert rh.shape == (3, 6, 1) and final.y.shape == (3, 6)
    # Same key: identical warm-up, then kappa changes where the search goes.
    np.testing.assert_array_equal(ph["x1"][:, 0, 0], np.full(3, ph["x1"][0, 0, 0]))
    assert not np.allclose(ph["x1"][0, 1:], ph["x1"][2, 1:])
    # Each member equals the search with that kappa run on its own.
    alone = eqx.tree_at(lambda o: o.acquisition.kappa, opt, 10.0).optimize_scan(
        state, KEY, branin, 6
    )
    np.testing.assert_allclose(rh[2], alone[1][1], rtol=1e-3)
    per_kappa_best = jax.vmap(opt.best_result)(final)
    assert per_kappa_best.shape == (3,) and bool(jnp.all(jnp.isfinite(per_kappa_best)))
