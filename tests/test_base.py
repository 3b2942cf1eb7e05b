import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import MIXED_SPACE, mixed_objective

import hyperoptax as hx

KEY = jax.random.PRNGKey(0)


@pytest.fixture(scope="module")
def random_opt():
    return hx.RandomSearch.init(MIXED_SPACE, n_parallel=2)


def test_init_returns_state_and_optimizer(random_opt):
    state, opt = random_opt
    assert isinstance(state, hx.OptimizerState) and isinstance(opt, hx.Optimizer)
    assert isinstance(opt, eqx.Module) and opt.n_parallel == 2


def test_optimize_returns_lists(random_opt):
    state, opt = random_opt
    _, (ph, rh) = opt.optimize(state, KEY, mixed_objective, 3)
    assert isinstance(ph, list) and isinstance(rh, list) and len(ph) == len(rh) == 3
    assert rh[0].shape == (2,) and ph[0]["width"].shape == (2,)


def test_optimize_does_not_retrace_after_first_iteration(random_opt):
    state, opt = random_opt
    traces = []

    def counted(key, p):
        traces.append(1)
        return mixed_objective(key, p)

    opt.optimize(state, KEY, counted, 1)
    after_one = len(traces)
    opt.optimize(state, KEY, counted, 10)
    # Ten more iterations reuse the compiled step (and the cached up-front check).
    assert len(traces) == after_one


def test_each_configuration_gets_its_own_key(random_opt):
    state, opt = random_opt
    _, (_, rh) = opt.optimize_scan(state, KEY, lambda k, p: jax.random.uniform(k), 2)
    assert len(np.unique(np.asarray(rh))) == 4


def test_func_with_one_argument_is_a_type_error(random_opt):
    state, opt = random_opt
    with pytest.raises(TypeError, match=r"fn\(key, params\)"):
        opt.optimize(state, KEY, lambda p: 0.0, 1)
    with pytest.raises(TypeError, match=r"fn\(key, params\)"):
        opt.optimize_scan(state, KEY, lambda p: 0.0, 1)


def test_non_scalar_result_is_an_error_with_squeeze_hint(random_opt):
    state, opt = random_opt
    with pytest.raises(ValueError, match="squeeze"):
        opt.optimize(state, KEY, lambda k, p: jnp.zeros(1), 1)
    with pytest.raises(ValueError, match="scalar"):
        opt.optimize_scan(state, KEY, lambda k, p: jnp.zeros(3), 1)
    # A container around the number names the objective, not `update_state`'s `results`.
    with pytest.raises(ValueError, match=r"`func` must return a scalar.*returned a tuple"):
        opt.optimize(state, KEY, lambda k, p: (jnp.zeros(()),), 1)
    with pytest.raises(ValueError, match=r"`func` must return a scalar.*returned a dict"):
        opt.optimize_scan(state, KEY, lambda k, p: {"loss": jnp.zeros(())}, 1)
    # A bool or complex result is refused as a host objective's is, naming the objective.
    with pytest.raises(TypeError, match=r"`func` must return a real number.*dtype bool"):
        opt.optimize(state, KEY, lambda k, p: p["lr"] > 0.01, 1)
    with pytest.raises(TypeError, match=r"`func` must return a real number.*complex64"):
        opt.optimize_scan(state, KEY, lambda k, p: jnp.zeros((), jnp.complex64), 1)


def test_negative_iterations_is_a_value_error(random_opt):
    state, opt = random_opt
    with pytest.raises(ValueError, match="n_iterations"):
        opt.optimize(state, KEY, mixed_objective, -1)
    with pytest.raises(ValueError, match="n_iterations"):
        opt.optimize_scan(state, KEY, mixed_objective, -1)


def test_zero_iterations_is_empty(random_opt):
    state, opt = random_opt
    _, (ph, rh) = opt.optimize(state, KEY, mixed_objective, 0)
    assert ph == [] and rh == []
    _, (ph, rh) = opt.optimize_scan(state, KEY, mixed_objective, 0)
    assert rh.shape == (0, 2)


def test_optimize_and_scan_agree(random_opt):
    state, opt = random_opt
    _, (ph, rh) = opt.optimize(state, KEY, mixed_objective, 3)
    _, (ps, rs) = opt.optimize_scan(state, KEY, mixed_objective, 3)
    np.testing.assert_allclose(np.stack(rh), rs, rtol=1e-5)
    # The same configurations, iteration by iteration, not only the same results.
    stacked = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *ph)
    for a, b in zip(jax.tree_util.tree_leaves(stacked), jax.tree_util.tree_leaves(ps), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_wrong_types_and_shapes_name_the_argument():
    state, opt = hx.BayesianSearch.init(MIXED_SPACE, n_max=8, n_parallel=2)
    params = hx.RandomSearch(n_parallel=2).get_next_params(state, KEY)
    with pytest.raises(TypeError, match=r"(?s)parameter 'results'.*Actual value: f32\[2,1\]"):
        opt.update_state(state, KEY, jnp.zeros((2, 1)), params)
    with pytest.raises(TypeError, match=r"(?s)parameter 'results'.*Actual value: \['a', 'b'\]"):
        opt.update_state(state, KEY, ["a", "b"], params)
    with pytest.raises(TypeError, match=r"(?s)parameter 'key'.*Actual value: 0"):
        opt.get_next_params(state, 0)
    with pytest.raises(TypeError, match=r"(?s)parameter 'state'"):
        opt.best_result(params)
    # Right rank, wrong length: the library's own check names both lengths.
    with pytest.raises(ValueError, match=r"3 results for 2 configurations in `params`"):
        opt.update_state(state, KEY, [1.0, 2.0, 3.0], params)
    with pytest.raises(ValueError, match=r"a vector of at least one result, got shape \(0,\)"):
        opt.update_state(state, KEY, [], params)
    # Lists of Python or NumPy numbers are fine.
    new = opt.update_state(state, KEY, [1, np.float32(2.5)], params)
    np.testing.assert_array_equal(new.y[:2], [1.0, 2.5])
    rs, ropt = hx.RandomSearch.init(MIXED_SPACE)
    with pytest.raises(TypeError, match=r"(?s)parameter 'key'"):
        ropt.get_next_params(rs, "key")
    with pytest.raises(TypeError, match=r"(?s)parameter 'func'"):
        ropt.optimize(rs, KEY, "not a function", 1)
