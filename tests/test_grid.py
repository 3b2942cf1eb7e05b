import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hyperoptax as hx

KEY = jax.random.PRNGKey(0)
SPACE = {"a": hx.DiscreteSpace((1, 2, 3)), "b": hx.DiscreteSpace((0.1, 0.2))}


def f(key, p):
    return p["a"] * p["b"]


def test_grid_holds_every_combination_in_order():
    state, opt = hx.GridSearch.init(SPACE)
    assert state.grid.shape == (6, 2)
    expected = list(itertools.product((1, 2, 3), (0.1, 0.2)))
    np.testing.assert_allclose(np.asarray(state.grid), expected, rtol=1e-6)
    seen = []
    for _ in range(6):
        p = opt.get_next_params(state, KEY)
        assert p["a"].dtype == jnp.int32 and p["a"].shape == (1,)
        seen.append((int(p["a"][0]), float(p["b"][0])))
        state = opt.update_state(state, KEY, f(KEY, p))
    np.testing.assert_allclose(seen, expected, rtol=1e-6)


def test_exhausted_grid_raises_in_eager_use():
    state, opt = hx.GridSearch.init(SPACE, n_parallel=3)
    for _ in range(2):
        state = opt.update_state(state, KEY, jnp.zeros(3))
    with pytest.raises(ValueError, match="exhausted"):
        opt.get_next_params(state, KEY)
    with pytest.raises(ValueError, match="exhausted"):
        opt.optimize(state, KEY, f, 1)


def test_truncated_to_multiple_of_n_parallel_with_warning():
    with pytest.warns(UserWarning, match="dropped") as caught:
        state, _ = hx.GridSearch.init(SPACE, n_parallel=4)
    assert caught[0].filename == __file__  # shown at the caller's line
    assert state.grid.shape == (4, 2)


def test_shuffle_is_a_reproducible_permutation():
    s1, _ = hx.GridSearch.init(SPACE, key=jax.random.PRNGKey(3), shuffle=True)
    s2, _ = hx.GridSearch.init(SPACE, key=jax.random.PRNGKey(3), shuffle=True)
    s0, _ = hx.GridSearch.init(SPACE)
    np.testing.assert_array_equal(s1.grid, s2.grid)
    assert sorted(map(tuple, np.asarray(s1.grid).tolist())) == sorted(
        map(tuple, np.asarray(s0.grid).tolist())
    )
    assert not np.array_equal(s1.grid, s0.grid)
    s3, _ = hx.GridSearch.init(SPACE, shuffle=True)  # default key PRNGKey(0)
    s4, _ = hx.GridSearch.init(SPACE, key=jax.random.PRNGKey(0), shuffle=True)
    np.testing.assert_array_equal(s3.grid, s4.grid)


def test_a_grid_too_large_to_hold_is_refused_with_its_size():
    space = {k: hx.DiscreteSpace(tuple(range(100))) for k in "abcd"}
    with pytest.raises(ValueError, match="100,000,000 combinations of 4 parameters"):
        hx.GridSearch.init(space)


def test_non_discrete_space_is_rejected():
    with pytest.raises(ValueError, match="DiscreteSpace"):
        hx.GridSearch.init({"a": hx.LinearSpace(0.0, 1.0)})


def test_optimize_scan_covers_the_grid_and_default_runs_all():
    state, opt = hx.GridSearch.init(SPACE, n_parallel=2)
    state2, (ph, rh) = opt.optimize_scan(state, KEY, f)
    assert rh.shape == (3, 2)
    np.testing.assert_allclose(
        np.sort(np.asarray(rh).ravel()),
        np.sort([a * b for a, b in itertools.product((1, 2, 3), (0.1, 0.2))]),
        rtol=1e-6,
    )
    assert int(state2.grid_idx) == 6


def test_n_parallel_must_be_positive():
    with pytest.raises(ValueError, match="n_parallel"):
        hx.GridSearch(n_parallel=0)
