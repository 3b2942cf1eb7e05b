import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hyperoptax as hx

X = jax.random.uniform(jax.random.PRNGKey(0), (5, 3))
Y = jax.random.uniform(jax.random.PRNGKey(1), (4, 3))
KERNELS = [
    hx.RBF(),
    hx.Matern(nu=0.5),
    hx.Matern(nu=1.5),
    hx.Matern(nu=2.5),
    hx.Matern(nu=math.inf),
]


@pytest.mark.parametrize("k", KERNELS)
def test_shape_unit_diagonal_symmetric_psd(k):
    assert k(X, Y).shape == (5, 4)
    K = k(X, X)
    np.testing.assert_allclose(np.diag(K), 1.0, atol=1e-6)
    np.testing.assert_allclose(K, K.T, atol=1e-6)
    assert float(jnp.linalg.eigvalsh(K).min()) > -1e-5


def test_known_values():
    x, y = jnp.zeros((1, 1)), jnp.ones((1, 1))
    np.testing.assert_allclose(hx.RBF()(x, y), math.exp(-0.5), rtol=1e-6)
    np.testing.assert_allclose(hx.Matern(nu=0.5)(x, y), math.exp(-1), rtol=1e-6)
    s = math.sqrt(5)
    np.testing.assert_allclose(hx.Matern(nu=2.5)(x, y), (1 + s + 5 / 3) * math.exp(-s), rtol=1e-6)
    np.testing.assert_allclose(hx.Matern(nu=math.inf)(x, y), hx.RBF()(x, y), rtol=1e-6)


def test_ard_length_scale_per_dimension():
    k = hx.RBF()
    x, y = jnp.zeros((1, 2)), jnp.array([[1.0, 1.0]])
    long_second = k(x, y, jnp.array([1.0, 1e6]))
    np.testing.assert_allclose(long_second, math.exp(-0.5), rtol=1e-5)
    np.testing.assert_allclose(k(x, y, 2.0), hx.RBF(length_scale=2.0)(x, y), rtol=1e-6)


@pytest.mark.parametrize("k", KERNELS)
def test_gradient_finite_at_zero_distance(k):
    g = jax.grad(lambda x: k(x[None], X[:1]).sum())(X[0])
    assert bool(jnp.all(jnp.isfinite(g)))
    g_ls = jax.grad(lambda ls: k(X, X, ls).sum())(jnp.ones(3))
    assert bool(jnp.all(jnp.isfinite(g_ls)))


def test_bad_arguments():
    with pytest.raises(ValueError, match="nu"):
        hx.Matern(nu=1.0)
    with pytest.raises(ValueError, match="length_scale"):
        hx.RBF(length_scale=0.0)
    with pytest.raises(ValueError, match="length_scale"):
        hx.Matern(length_scale=-1.0)


def test_sqdist_and_contraction_match_per_dimension_terms():
    x = jax.random.uniform(jax.random.PRNGKey(5), (7, 3))
    y = jax.random.uniform(jax.random.PRNGKey(6), (5, 3))
    ls = jnp.array([0.2, 1.0, 3.0])
    terms = ((x[:, None, :] - y[None, :, :]) / ls[None, None, :]) ** 2
    k = hx.Matern(nu=1.5)
    np.testing.assert_allclose(k.sqdist(x, y, ls), terms.sum(-1), rtol=1e-5)
    w = jax.random.normal(jax.random.PRNGKey(7), (7, 5))
    np.testing.assert_allclose(
        k.sqdist_contract(x, y, ls, w), jnp.einsum("ij,ijk->k", w, terms), rtol=1e-4
    )
    # A categorical first dimension (3 cells): 1 / l^2 between different cells, 0 within.
    u = hx.kernels.Unordered(k, (3, 0, 0))
    cells_differ = (jnp.floor(x[:, None, 0] * 3) != jnp.floor(y[None, :, 0] * 3)) / ls[0] ** 2
    expected = cells_differ + terms[..., 1:].sum(-1)
    np.testing.assert_allclose(u.sqdist(x, y, ls), expected, rtol=1e-5)
