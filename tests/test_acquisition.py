import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

import hyperoptax as hx

KEY = jax.random.PRNGKey(0)


def test_ei_matches_closed_form():
    mean, std = jnp.array([0.0, 1.0, -2.0]), jnp.array([1.0, 0.5, 2.0])
    z = (mean - 0.5) / std
    expected = std * (z * norm.cdf(z) + norm.pdf(z))
    np.testing.assert_allclose(hx.EI(xi=0.0)(mean, std, 0.5), expected, rtol=1e-5)


def test_pi_and_ucb_closed_form():
    mean, std = jnp.array([0.0, 1.0]), jnp.array([1.0, 0.5])
    np.testing.assert_allclose(
        hx.PI(xi=0.0)(mean, std, 0.5), norm.cdf((mean - 0.5) / std), rtol=1e-6
    )
    np.testing.assert_allclose(hx.UCB(kappa=3.0)(mean, std), mean + 3.0 * std, rtol=1e-6)


def test_xi_margins_absolute_for_pi_std_relative_for_ei():
    mean, std = jnp.array([1.0]), jnp.array([2.0])
    np.testing.assert_allclose(
        hx.PI(xi=0.5)(mean, std, 0.0), norm.cdf((1.0 - 0.5) / 2.0), rtol=1e-6
    )
    assert float(hx.EI(xi=0.5)(mean, std, 0.0)[0]) < float(hx.EI(xi=0.0)(mean, std, 0.0)[0])


@pytest.mark.parametrize("acq", [hx.EI(), hx.PI(), hx.UCB()])
def test_tiny_or_zero_std_is_finite_and_score_keeps_gradient(acq):
    mean = jnp.array([-50.0, 0.0, 3.0])
    std = jnp.array([0.0, 1e-30, 1e-6])
    assert bool(jnp.all(jnp.isfinite(acq(mean, std, 1.0))))
    assert bool(jnp.all(jnp.isfinite(acq.score(mean, std, 1.0))))
    # Far below the incumbent the value underflows but the score still points uphill.
    g = jax.grad(lambda m: acq.score(m, jnp.array(0.1), 1.0))(jnp.array(-30.0))
    assert bool(jnp.isfinite(g)) and float(g) > 0


def test_score_is_monotone_in_value():
    mean = jnp.linspace(-3, 3, 50)
    std = jnp.full(50, 0.7)
    for acq in (hx.EI(), hx.PI()):
        v, s = acq(mean, std, 0.0), acq.score(mean, std, 0.0)
        np.testing.assert_allclose(jnp.exp(s), v, rtol=2e-3, atol=1e-30)


def test_ei_pi_require_y_max():
    with pytest.raises(ValueError, match="y_max"):
        hx.EI()(jnp.zeros(1), jnp.ones(1))


@pytest.mark.parametrize("bad", [-0.1, float("nan")])
def test_negative_parameters_rejected(bad):
    for make in (
        lambda: hx.EI(xi=bad),
        lambda: hx.PI(xi=bad),
        lambda: hx.UCB(kappa=bad),
        lambda: hx.UCBHallucination(kappa=bad),
    ):
        with pytest.raises(ValueError):
            make()


def test_hallucinations():
    m, s = jnp.array(1.0), jnp.array(0.5)
    assert float(hx.MeanHallucination()(m, s, KEY, 3.0)) == 1.0
    assert float(hx.UCBHallucination(kappa=2.0)(m, s, KEY, 3.0)) == 2.0
    assert float(hx.ConstantHallucination()(m, s, KEY, 3.0)) == 3.0
    assert float(hx.ConstantHallucination(value=-1.0)(m, s, KEY, 3.0)) == -1.0
    draws = jax.vmap(lambda k: hx.SampleHallucination()(m, s, k, 3.0))(jax.random.split(KEY, 4000))
    assert abs(float(draws.mean()) - 1.0) < 0.05 and abs(float(draws.std()) - 0.5) < 0.05


@pytest.mark.parametrize("shape", [(), (1,)])
def test_built_in_hallucinations_return_a_scalar(shape):
    """Scalars in (what BayesianSearch passes) or shape (1,) (what 0.2.0 passed): a scalar out."""
    m, s = jnp.ones(shape), jnp.full(shape, 0.5)
    for h in (
        hx.MeanHallucination(),
        hx.SampleHallucination(),
        hx.UCBHallucination(),
        hx.ConstantHallucination(),
        hx.ConstantHallucination(value=2.0),
    ):
        assert jnp.shape(h(m, s, KEY, jnp.asarray(3.0))) == (), h


def test_a_hallucination_written_for_0_2_0_still_works():
    """0.2.0's custom hallucinations return shape (1,); the batch takes it as the scalar."""

    def believer(mean, std, key, y_max):
        return jnp.reshape(mean, (1,))

    state, opt = hx.BayesianSearch.init(
        {"x": hx.LinearSpace(0.0, 1.0)},
        n_max=8,
        n_parallel=2,
        hallucination=believer,
        n_candidates=32,
    )
    state, (_, results) = opt.optimize(state, KEY, lambda k, p: -((p["x"] - 0.3) ** 2))
    assert int(state.mask.sum()) == 8 and np.isfinite(np.stack(results)).all()


def test_ei_margin_scales_with_std():
    # EI's margin is xi * std: identical z for (mean, std) and (2 mean, 2 std) around 0.
    a = hx.EI(xi=0.3)(jnp.array([1.0]), jnp.array([1.0]), 0.0)
    b = hx.EI(xi=0.3)(jnp.array([2.0]), jnp.array([2.0]), 0.0)
    np.testing.assert_allclose(2 * a, b, rtol=1e-5)


def _reference_scores(z):
    """log h(z) = log(phi + z Phi) and log Phi(z) with their derivatives, in float64.

    `math.erfc` is accurate to double precision; between -35 and 35 neither value
    underflows a double and the cancellation in `phi + z Phi` leaves about 13 digits.
    """
    phi = math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    cdf = 0.5 * math.erfc(-z / math.sqrt(2))
    h = phi + z * cdf
    log_cdf = math.log(cdf) if z < 0 else math.log1p(-0.5 * math.erfc(z / math.sqrt(2)))
    return math.log(h), cdf / h, log_cdf, phi / cdf


def test_ei_and_pi_scores_are_accurate_in_float32_with_their_gradients():
    """The log-scores BayesianSearch maximises, and their slopes, from deep below the
    incumbent (EI's tail) to far above it, at float32's accuracy. Catches a special
    function that underflows (`erfcx` of a float32 between 9.2 and 9.4 was 0, so log
    0) or a branch whose gradient goes wrong at its boundary."""
    zs = np.concatenate([np.linspace(-35.0, 35.0, 7001), [-10.0, -9.4 * math.sqrt(2), 0.0, 12.0]])
    zs = zs.astype(np.float32)
    mean = jnp.asarray(zs)
    std = jnp.ones_like(mean)
    ei, pi = hx.EI(xi=0.0), hx.PI(xi=0.0)
    got = {
        "log_h": ei.score(mean, std, 0.0),  # log std + log h, std = 1
        "d_log_h": jax.vmap(jax.grad(lambda m: ei.score(m, jnp.array(1.0), 0.0)))(mean),
        "log_cdf": pi.score(mean, std, 0.0),
        "d_log_cdf": jax.vmap(jax.grad(lambda m: pi.score(m, jnp.array(1.0), 0.0)))(mean),
    }
    ref = np.array([_reference_scores(float(z)) for z in zs]).T
    for (name, value), expected in zip(got.items(), ref, strict=True):
        value = np.asarray(value, np.float64)
        assert np.all(np.isfinite(value)), name
        if name == "d_log_cdf":  # where the slope underflows float32, only its sign counts
            small = expected < 1e-30
            assert np.all(value[small] >= 0), name
            value, expected = value[~small], expected[~small]
        np.testing.assert_allclose(value, expected, rtol=5e-5, atol=1e-6, err_msg=name)
    # The values PI and EI report (not their logarithms).
    np.testing.assert_allclose(pi(mean, std, 0.0), np.exp(ref[2]), rtol=1e-5, atol=2e-7)
    np.testing.assert_allclose(
        ei(mean, std, 0.0), np.exp(ref[0]), rtol=5e-5, atol=1e-30, err_msg="EI"
    )
