import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hyperoptax as hx
from hyperoptax.spaces import flatten_space

KEY = jax.random.PRNGKey(0)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: hx.LinearSpace(1.0, 0.0), "lower_bound"),
        (lambda: hx.LinearSpace(1.0, 1.0), "lower_bound"),
        (lambda: hx.LinearSpace(float("nan"), 1.0), "finite"),
        (lambda: hx.LinearSpace(0.0, float("inf")), "finite"),
        (lambda: hx.LogSpace(0.0, 1.0), "positive"),
        (lambda: hx.LogSpace(-1.0, 1.0), "positive"),
        (lambda: hx.LogSpace(1e-3, 1.0, base=1), "base"),
        (lambda: hx.LogSpace(1e-3, 1.0, base=0.5), "base"),
        (lambda: hx.QLinearSpace(5, 1), "lower_bound"),
        (lambda: hx.QLinearSpace(1.2, 1.8), "no integer"),
        (lambda: hx.QLogSpace(64, 8), "lower_bound"),
        (lambda: hx.DiscreteSpace(()), "empty"),
        (lambda: hx.DiscreteSpace((1.0, float("nan"))), "finite"),
        # Bounds the float32 / int32 dtypes cannot hold (under the default precision).
        (lambda: hx.LinearSpace(0.0, 1e39), "does not fit in float32"),
        (lambda: hx.LinearSpace(-1e308, 1e308), "does not fit in float32"),
        (lambda: hx.LinearSpace(-2e38, 2e38), "width"),
        (lambda: hx.LinearSpace(-1e39, -0.9e39), "does not fit in float32"),  # narrow, too big
        # Distinct Python floats that float32 rounds to one number: a space of one value.
        (lambda: hx.LinearSpace(1.0, 1.0 + 1e-9), "same float32 number"),
        (lambda: hx.LinearSpace(1e6, 1e6 + 0.01), "same float32 number"),
        (lambda: hx.LogSpace(1.0, 1.0 + 1e-9), "same float32 number"),
        (lambda: hx.LogSpace(1e-60, 1.0), "smallest normal float32"),
        (lambda: hx.QLinearSpace(0, 3e9), "int32 holds"),
        (lambda: hx.DiscreteSpace((1.0, 1e39)), "do not fit: float32 numbers"),
        (lambda: hx.DiscreteSpace((1, 2, 1)), "value 1 appears twice"),
        (lambda: hx.DiscreteSpace((0.1, 0.1 + 1e-10)), "appears twice \\(as float32"),
        (lambda: hx.DiscreteSpace((1, 2**25)), "every integer only within"),
        (lambda: hx.DiscreteSpace((-(2**40), 0)), "int32 holds"),
        (lambda: hx.QLogSpace(1, 1e8), "every integer only within"),
    ],
)
def test_bad_construction_is_a_value_error_naming_class_and_argument(make, match):
    with pytest.raises(ValueError, match=match) as info:
        make()
    assert "Space" in str(info.value)


@pytest.mark.parametrize(
    "make",
    [
        lambda: hx.DiscreteSpace(("adam", "sgd")),
        lambda: hx.DiscreteSpace((1, None)),
        lambda: hx.LinearSpace("0", 1.0),
        lambda: hx.QLinearSpace(0, 4, datatype=jnp.float32),
    ],
)
def test_non_numeric_input_is_a_type_error(make):
    with pytest.raises(TypeError, match="Space"):
        make()


def test_linear_samples_uniform_within_bounds():
    x = hx.LinearSpace(-2.0, 3.0).sample(KEY, (20000,))
    assert x.dtype == jnp.result_type(float)
    assert float(x.min()) >= -2.0 and float(x.max()) <= 3.0
    assert abs(float(x.mean()) - 0.5) < 0.05


def test_samples_are_jax_uniform_draws_of_the_key():
    # The library draws flat and reshapes (it compiles faster); a key must still give
    # the values `jax.random.uniform` gives for that shape, whatever the shape.
    key = jax.random.key(7)
    for shape in [(5,), (40, 3), (2, 3, 4)]:
        u = hx.LinearSpace(0.0, 1.0).sample(key, shape)
        np.testing.assert_array_equal(u, jax.random.uniform(key, shape))
    flat = flatten_space({"a": hx.LinearSpace(0.0, 1.0), "b": hx.LogSpace(1e-3, 1.0)})
    np.testing.assert_array_equal(flat.sample_unit(key, 9), jax.random.uniform(key, (9, 2)))


def test_log_samples_are_log_uniform():
    x = hx.LogSpace(1e-4, 1.0).sample(KEY, (20000,))
    assert float(x.min()) >= 1e-4 and float(x.max()) <= 1.0
    # Each decade holds a quarter of the mass.
    decades = np.histogram(np.log10(np.asarray(x)), bins=[-4, -3, -2, -1, 0])[0] / x.size
    np.testing.assert_allclose(decades, 0.25, atol=0.02)


@pytest.mark.parametrize("space", [hx.QLinearSpace(1, 3), hx.QLogSpace(1, 3)])
def test_integer_spaces_sample_members_with_their_dtype(space):
    x = space.sample(KEY, (3000,))
    assert x.dtype == jnp.int32
    assert set(np.unique(np.asarray(x)).tolist()) == {1, 2, 3}


def test_qlinear_gives_every_integer_equal_mass():
    x = np.asarray(hx.QLinearSpace(1, 3).sample(KEY, (30000,)))
    np.testing.assert_allclose(np.bincount(x)[1:] / x.size, 1 / 3, atol=0.015)


def test_custom_integer_dtype_is_kept():
    assert hx.QLinearSpace(0, 10, datatype=jnp.int8).sample(KEY, (4,)).dtype == jnp.int8


def test_discrete_samples_uniformly_over_members():
    sp = hx.DiscreteSpace((0.1, 1.0, 10.0, 100.0))
    x = np.asarray(sp.sample(KEY, (20000,)))
    vals, counts = np.unique(x, return_counts=True)
    np.testing.assert_allclose(vals, [0.1, 1.0, 10.0, 100.0], rtol=1e-6)
    np.testing.assert_allclose(counts / x.size, 0.25, atol=0.02)


def test_discrete_dtype_follows_values():
    assert hx.DiscreteSpace((1, 2, 3)).sample(KEY).dtype == jnp.int32
    assert hx.DiscreteSpace((1, 2.5)).sample(KEY).dtype == jnp.result_type(float)


def test_transform_rounds_and_snaps_elementwise_any_shape():
    q = hx.QLinearSpace(0, 10)
    out = q.transform(jnp.array([[0.4, 2.6], [-3.0, 11.7]]))
    assert out.dtype == jnp.int32
    np.testing.assert_array_equal(out, [[0, 3], [0, 10]])
    d = hx.DiscreteSpace((1.0, 5.0, 10.0))
    np.testing.assert_array_equal(
        d.transform(jnp.array([2.9, 3.1, 100.0, -7.0])), [1.0, 5.0, 10.0, 1.0]
    )
    lin = hx.LinearSpace(0.0, 1.0)
    np.testing.assert_allclose(lin.transform(jnp.array([0.25, 0.5])), [0.25, 0.5])


@pytest.mark.parametrize(
    "space, values",
    [
        (hx.LinearSpace(-2.0, 3.0), [-2.0, 0.0, 3.0]),
        (hx.LogSpace(1e-4, 1.0), [1e-4, 1e-2, 1.0]),
        (hx.QLinearSpace(1, 5), [1, 3, 5]),
        (hx.QLogSpace(8, 512), [8, 64, 512]),
        (hx.DiscreteSpace((3, 1, 2)), [1, 2, 3]),
    ],
)
def test_unit_map_round_trips_and_stays_in_unit_interval(space, values):
    u = space.to_unit(jnp.array(values, jnp.float32))
    assert bool(jnp.all((u >= 0) & (u <= 1)))
    back = space.from_unit(u)
    np.testing.assert_allclose(np.asarray(back, float), values, rtol=1e-5)


def test_log_space_is_affine_in_log():
    u = hx.LogSpace(1e-4, 1.0).to_unit(jnp.array([1e-4, 1e-3, 1e-2, 1e-1, 1.0]))
    np.testing.assert_allclose(u, [0, 0.25, 0.5, 0.75, 1.0], atol=1e-6)


def test_from_unit_clips_out_of_range_points():
    out = hx.LinearSpace(0.0, 1.0).from_unit(jnp.array([-0.5, 1.5]))
    np.testing.assert_allclose(out, [0.0, 1.0])


def test_flatten_space_nested_pytree():
    space = {
        "a": [hx.LinearSpace(0.0, 1.0), (hx.QLinearSpace(1, 3), hx.LogSpace(1e-3, 1.0))],
        "b": {"c": hx.DiscreteSpace((2, 4))},
    }
    flat = flatten_space(space)
    assert flat.n_params == 4
    u = jax.random.uniform(KEY, (7, 4))
    params = flat.unflatten(flat.from_unit(u))
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(
        {"a": [0, (0, 0)], "b": {"c": 0}}
    )
    assert params["a"][1][0].dtype == jnp.int32 and params["a"][1][0].shape == (7,)
    np.testing.assert_allclose(flat.flatten(params), flat.from_unit(u))


def test_flatten_space_rejects_non_space_leaf_with_path():
    with pytest.raises(TypeError, match=r"\['b'\]"):
        flatten_space({"a": hx.LinearSpace(0.0, 1.0), "b": 3.0})


def test_flatten_space_rejects_empty_space():
    with pytest.raises(ValueError, match="empty"):
        flatten_space({})


def test_sampling_is_reproducible_from_key():
    sp = hx.LogSpace(1e-3, 1.0)
    np.testing.assert_array_equal(sp.sample(KEY, (5,)), sp.sample(KEY, (5,)))
    assert not np.array_equal(sp.sample(KEY, (5,)), sp.sample(jax.random.PRNGKey(1), (5,)))


def test_spaces_are_equinox_modules_and_jit_friendly():
    import equinox as eqx

    sp = hx.QLogSpace(8, 512)
    assert isinstance(sp, eqx.Module)
    out = jax.jit(lambda k: sp.sample(k, (3,)))(KEY)
    assert out.dtype == jnp.int32 and bool(jnp.all((out >= 8) & (out <= 512))), out


def test_numpy_and_jax_scalars_are_taken_as_the_numbers_they_hold():
    # Bounds and sizes computed with NumPy or JAX: stored as Python numbers (static
    # fields key compiled programs; Equinox warns about arrays there), no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spaces = {
            "lr": hx.LogSpace(np.float64(1e-4), jnp.asarray(0.5), base=np.int64(10)),
            "width": hx.QLinearSpace(np.int64(8), np.int32(64)),
            "drop": hx.DiscreteSpace((np.float32(0.0), np.float64(0.5))),
        }
        assert spaces["lr"] == hx.LogSpace(1e-4, 0.5) and type(spaces["lr"].lower_bound) is float
        assert type(spaces["width"].upper_bound) is int
        assert [type(v) for v in spaces["drop"].values] == [float, float]
        state, opt = hx.BayesianSearch.init(spaces, n_max=np.int64(8), n_parallel=np.int64(2))
        assert state.X.shape == (8, 3) and opt == hx.BayesianSearch(n_parallel=2)
        _, hb = hx.Hyperband.init(spaces, min_budget=np.int64(1), max_budget=np.int64(9))
        assert hb == hx.Hyperband(min_budget=1, max_budget=9)
    with pytest.raises(TypeError, match="`n_max` must be an int"):
        hx.BayesianSearch.init(spaces, n_max=np.float64(8.0))
    with pytest.raises(TypeError, match="`n_parallel` must be an int"):
        hx.BayesianSearch(n_parallel=np.bool_(True))


@pytest.mark.parametrize(
    "space", [hx.LogSpace(1e-6, 1.0), hx.LogSpace(3e-5, 0.7), hx.LinearSpace(0.1, 0.3)]
)
def test_values_never_leave_the_declared_bounds(space):
    """Rounding in the unit map (exp in float32) must not step past a bound, bit for bit."""
    u = jnp.concatenate([jnp.array([0.0, 1.0, -1.0, 2.0]), jax.random.uniform(KEY, (20000,))])
    values = [float(v) for v in np.asarray(space.from_unit(u))]
    assert min(values) >= space.lower_bound and max(values) <= space.upper_bound
    state, opt = hx.RandomSearch.init({"p": space}, n_parallel=5000)
    configs = hx.to_configs(opt.get_next_params(state, KEY))
    assert all(space.lower_bound <= c["p"] <= space.upper_bound for c in configs)


def test_discrete_float_values_reach_host_code_exactly_as_declared():
    space = {"d": hx.DiscreteSpace((0.1, 0.5)), "q": hx.QLinearSpace(1, 5)}
    state, opt = hx.RandomSearch.init(space, n_parallel=8)
    seen = []
    opt.optimize_host(state, KEY, lambda c: seen.append(c["d"]) or 0.0, 2)
    assert set(seen) <= {0.1, 0.5} and len(seen) == 16
    # The library's own configurations are accepted back.
    configs = hx.to_configs(opt.get_next_params(state, KEY), space)
    bstate, bopt = hx.BayesianSearch.init(space, n_max=8, n_parallel=2)
    warm = bopt.warm_start(bstate, configs, np.arange(8.0))
    assert int(warm.mask.sum()) == 8


@pytest.mark.parametrize("value", [1.9, 5.7, 0.0])
def test_non_integral_or_out_of_range_integers_are_refused_on_every_path(value):
    space = {"q": hx.QLinearSpace(1, 5)}
    with pytest.raises(ValueError, match=r"\['q'\] of configuration 0 is"):
        hx.from_configs([{"q": value}], space)
    state, opt = hx.BayesianSearch.init(space, n_max=4, n_parallel=1)
    with pytest.raises(ValueError, match=r"\['q'\] of configuration 0 is"):
        opt.warm_start(state, [{"q": value}], [1.0])
    with pytest.raises(ValueError, match=r"\['q'\] of configuration 0 is"):
        opt.warm_start(state, np.array([[value]]), [1.0])
