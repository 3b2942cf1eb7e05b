import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import MIXED_SPACE, check_in_space, mixed_objective

import hyperoptax as hx

KEY = jax.random.PRNGKey(0)


def test_batches_respect_spaces_and_dtypes():
    state, opt = hx.RandomSearch.init(MIXED_SPACE, n_parallel=16)
    params = opt.get_next_params(state, KEY)
    check_in_space(params, MIXED_SPACE, 16)


def test_reproducible_and_key_dependent():
    state, opt = hx.RandomSearch.init(MIXED_SPACE, n_parallel=4)
    a, b = opt.get_next_params(state, KEY), opt.get_next_params(state, KEY)
    c = opt.get_next_params(state, jax.random.PRNGKey(1))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["lr"], c["lr"])


def test_update_is_stateless_but_checks_results_shape():
    state, opt = hx.RandomSearch.init(MIXED_SPACE, n_parallel=2)
    assert opt.update_state(state, KEY, jnp.zeros(2)) is state
    # Workers may report any number of results, one at a time included.
    assert opt.update_state(state, KEY, [1.0]) is state
    assert opt.update_state(state, KEY, jnp.zeros(3)) is state
    with pytest.raises(ValueError, match=r"at least one result, got shape \(0,\)"):
        opt.update_state(state, KEY, jnp.zeros(0))
    with pytest.raises(TypeError, match="results"):
        opt.update_state(state, KEY, jnp.zeros((2, 1)))
    # Pending configurations do not change independent draws.
    a = opt.get_next_params(state, KEY)
    b = opt.get_next_params(state, KEY, pending=a)
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("bad", [0, -1])
def test_n_parallel_must_be_positive(bad):
    with pytest.raises(ValueError, match="n_parallel"):
        hx.RandomSearch(n_parallel=bad)


def test_optimize_scan_shapes():
    state, opt = hx.RandomSearch.init(MIXED_SPACE, n_parallel=3)
    _, (ph, rh) = opt.optimize_scan(state, KEY, mixed_objective, 5)
    assert rh.shape == (5, 3)
    assert ph["layers"].shape == (5, 3) and ph["layers"].dtype == jnp.int32


def test_n_iterations_is_required():
    state, opt = hx.RandomSearch.init(MIXED_SPACE)
    with pytest.raises(ValueError, match="n_iterations"):
        opt.optimize(state, KEY, mixed_objective)
