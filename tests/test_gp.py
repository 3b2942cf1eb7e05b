import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hyperoptax as hx
from hyperoptax import gp

KEY = jax.random.PRNGKey(0)
N, D = 12, 2
X = jax.random.uniform(KEY, (N, D))
Y = jnp.sin(6 * X[:, 0]) + jnp.cos(4 * X[:, 1])
Y = (Y - Y.mean()) / Y.std()
MASK = jnp.arange(N) < 9
KERNEL = hx.Matern(nu=2.5)


def params(ls=0.3, noise=1e-6):
    return gp.GPParams(jnp.full(D, jnp.log(ls)), jnp.array(0.0), jnp.array(jnp.log(noise)))


def test_posterior_interpolates_noise_free_data():
    post = gp.fit(KERNEL, params(), gp.Dataset(X, Y, MASK), 1e-6)
    mean, std = gp.predict(KERNEL, post, X[:9])
    np.testing.assert_allclose(mean, Y[:9], atol=1e-2)
    assert float(std.max()) < 0.05


@pytest.mark.parametrize("prior_mean", [None, gp.BoundaryMean(jnp.ones(D))])
@pytest.mark.parametrize("noise", [1e-6, 0.3])
def test_fitted_mean_is_the_posterior_mean_at_the_observations(noise, prior_mean):
    post = gp.fit(KERNEL, params(noise=noise), gp.Dataset(X, Y, MASK), 1e-6, prior_mean)
    fitted = gp.fitted_mean(post, Y, 1e-6)
    mean, _ = gp.predict(KERNEL, post, X[:9])
    np.testing.assert_allclose(fitted[:9], mean, rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(fitted[9:], 0.0)
    if noise > 0.1:  # a noisy model does not reproduce its observations
        assert float(jnp.max(jnp.abs(fitted[:9] - Y[:9]))) > 0.1


def test_boundary_mean_falls_towards_the_faces_and_ignores_unordered_columns():
    prior_mean = gp.BoundaryMean(jnp.ones(D))
    # Without observations the posterior mean is the prior mean: a corner `drop` (1)
    # below the centre, the middle of a face half as much.
    post = gp.fit(KERNEL, params(), gp.Dataset(X, Y, jnp.zeros(N, bool)), 1e-6, prior_mean)
    mean, _ = gp.predict(KERNEL, post, jnp.array([[0.5, 0.5], [0.0, 0.5], [1.0, 0.0]]))
    np.testing.assert_allclose(mean, [1 / 3, -1 / 6, -2 / 3], atol=1e-6)
    # It averages to zero over the cube: the targets' mean stays the level far from data.
    u = jax.random.uniform(jax.random.PRNGKey(2), (20000, D))
    assert abs(float(jnp.mean(prior_mean(u)))) < 0.01
    # Near the observations the data decide: the model still interpolates them.
    post = gp.fit(KERNEL, params(), gp.Dataset(X, Y, MASK), 1e-6, prior_mean)
    np.testing.assert_allclose(gp.predict(KERNEL, post, X[:9])[0], Y[:9], atol=1e-2)
    # A categorical column (weight 0) has no faces: where its cells sit changes nothing.
    first_ordered = gp.BoundaryMean(jnp.array([1.0, 0.0]))
    values = first_ordered(jnp.array([[0.2, 0.0], [0.2, 0.5], [0.2, 1.0]]))
    np.testing.assert_allclose(values, values[0])
    assert float(first_ordered(jnp.array([[1.0, 0.5]]))[0]) < float(values[0])


def test_masked_rows_are_ignored():
    junk = Y.at[9:].set(1e3)
    post_a = gp.fit(KERNEL, params(), gp.Dataset(X, Y, MASK), 1e-6)
    post_b = gp.fit(KERNEL, params(), gp.Dataset(X.at[9:].set(0.5), junk, MASK), 1e-6)
    q = jax.random.uniform(jax.random.PRNGKey(1), (20, D))
    for a, b in zip(gp.predict(KERNEL, post_a, q), gp.predict(KERNEL, post_b, q), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("noise", [1e-3, 0.3])
def test_leave_one_out_density_is_each_observation_predicted_from_the_others(noise):
    # The closed form against its definition: condition on the other observed rows, predict
    # the left-out one (latent variance plus noise), sum the Gaussian log densities.
    p = params(noise=noise)
    y = jnp.where(MASK, Y, 0.0)
    total = 0.0
    for i in range(9):
        others = MASK & (jnp.arange(N) != i)
        post = gp.fit(KERNEL, p, gp.Dataset(X, y, others), 1e-6)
        mean, std = gp.predict(KERNEL, post, X[i : i + 1])
        var = std[0] ** 2 + gp.diagonal(p, 1e-6, Y.dtype)
        total += -0.5 * (jnp.log(2 * jnp.pi * var) + (Y[i] - mean[0]) ** 2 / var)
    value = gp.neg_loo_log_density(KERNEL, p, gp.Dataset(X, Y, MASK), 1e-6)
    np.testing.assert_allclose(value, -total, rtol=1e-3)
    # Masked rows, whatever they hold, are neither predicted nor used.
    junk = gp.Dataset(X.at[9:].set(0.5), Y.at[9:].set(1e3), MASK)
    np.testing.assert_allclose(gp.neg_loo_log_density(KERNEL, p, junk, 1e-6), value, rtol=1e-4)


def test_near_replicates_lower_the_noise_only_where_they_contradict_it():
    # 60 configurations each evaluated twice, far apart at length scale 0.01.
    base = jax.random.uniform(KEY, (60, D))
    Xr = jnp.concatenate([base, base])
    f = jnp.sin(6 * Xr[:, 0]) + jnp.cos(4 * Xr[:, 1])
    noisy = f + 0.3 * jax.random.normal(jax.random.PRNGKey(2), f.shape)
    data = gp.Dataset(Xr, noisy, jnp.ones(120, bool))

    def bound(p, d):
        return float(gp.replicate_noise_bound(KERNEL, p, d, 1e-6))

    # A fitted noise the repeats agree with stands.
    right = params(ls=0.01, noise=0.3**2)
    assert bound(right, data) == pytest.approx(float(gp.diagonal(right, 1e-6, f.dtype)))
    # A fitted noise five times the true one comes down, to a bound above the true one.
    assert 0.3**2 < bound(params(ls=0.01, noise=0.5), data) < 0.5 / 2
    # A deterministic objective repeats its results: no noise, whatever the fitted one.
    assert bound(params(ls=0.01, noise=0.5), gp.Dataset(Xr, f, jnp.ones(120, bool))) == 0.0
    # Without near-replicates (masked rows are none) nothing contradicts the fitted noise.
    single = gp.Dataset(Xr, noisy, jnp.arange(120) < 60)
    assert bound(params(ls=0.01, noise=0.5), single) == pytest.approx(0.5, rel=1e-4)
    # Close pairs on a rugged deterministic objective whose ripples a long length scale
    # cannot follow: their difference is the little the ripples vary between them.
    near = jnp.concatenate([base, base + 1e-4])
    rugged = jnp.sin(60 * near[:, 0]) + near[:, 1]
    assert bound(params(ls=0.3, noise=0.5), gp.Dataset(near, rugged, jnp.ones(120, bool))) < 1e-3


def test_a_configuration_evaluated_twice_measures_the_noise_on_its_own():
    # Pairs 0.01 apart at length scale 0.3 are near-replicates (correlation > 0.99), but
    # on ripples of wavelength 0.1 their results differ by more than a noise of 0.5
    # would make them, so together they do not contradict it.
    base = jax.random.uniform(KEY, (30, D))
    X = jnp.concatenate([base, base + 0.01])
    f = 3 * jnp.sin(60 * X[:, 0]) + X[:, 1]
    p = params(ls=0.3, noise=0.5)
    fitted = float(gp.diagonal(p, 1e-6, f.dtype))

    def bound(X, y):
        data = gp.Dataset(X, y, jnp.ones(len(y), bool))
        return float(gp.replicate_noise_bound(KERNEL, p, data, 1e-6))

    assert bound(X, f) == pytest.approx(fitted, rel=1e-4)
    # One configuration evaluated again, the same result (a round trip through the
    # space's values moves it by an ulp): that difference is noise alone, and it is none.
    again = jnp.concatenate([X, X[3:4] * (1 + 1e-7)])
    assert bound(again, jnp.concatenate([f, f[3:4]])) == 0.0
    # Evaluated again with a result a noise draw away: the fitted noise stands.
    assert bound(again, jnp.concatenate([f, f[3:4] + 0.7])) == pytest.approx(fitted, rel=1e-4)
    # A configuration a thousandth away is another configuration: the pairs test it as before.
    other = jnp.concatenate([X, X[3:4] + 1e-3])
    assert bound(other, jnp.concatenate([f, f[3:4]])) > 0.0


def test_chi2_quantile():
    # Tabulated points of the chi-squared distribution (5% and 50%).
    table = gp.chi2_quantiles(0.05, 16)
    assert len(table) == 16
    for dof, q in ((1, 0.00393214), (2, 0.1025866), (8, 2.7326368), (16, 7.9616457)):
        assert table[dof - 1] == pytest.approx(q, rel=1e-6)
    for dof, q in ((1, 0.4549364), (5, 4.3514602)):
        assert gp.chi2_quantiles(0.5, 5)[dof - 1] == pytest.approx(q, rel=1e-6)


def test_std_grows_away_from_data():
    post = gp.fit(KERNEL, params(ls=0.1), gp.Dataset(X, Y, MASK), 1e-6)
    _, std_far = gp.predict(KERNEL, post, jnp.array([[5.0, 5.0]]))
    np.testing.assert_allclose(std_far, 1.0, atol=1e-3)


def test_hyperparameter_fit_lowers_nll():
    p0 = params(ls=3.0, noise=1e-2)
    nll0 = gp.neg_log_marginal_likelihood(KERNEL, p0, gp.Dataset(X, Y, MASK), 1e-6)
    p1 = gp.fit_hyperparameters(KERNEL, p0, gp.Dataset(X, Y, MASK), 1e-6, 50)
    nll1 = gp.neg_log_marginal_likelihood(KERNEL, p1, gp.Dataset(X, Y, MASK), 1e-6)
    assert float(nll1) < float(nll0)
    assert p1.log_length_scale.shape == (D,)


def _noisy_data(n, d, noise, key):
    kx, kn = jax.random.split(key)
    X = jax.random.uniform(kx, (n, d))
    f = jnp.sin(4 * X[:, 0]) + 0.5 * jnp.cos(3 * X[:, 1])
    y = f + noise * jax.random.normal(kn, (n,))
    return X, y


def test_hyperparameter_fit_never_ends_below_its_start():
    # From a start that is already the optimum, from a poor one, and from the far corner of
    # the bounds: the posterior density never goes down, whatever Adam does on the way.
    # Compiled once (per number of steps), not traced op by op at every call.
    fit = eqx.filter_jit(gp.fit_hyperparameters)
    density = eqx.filter_jit(gp.neg_log_posterior)
    X, y = _noisy_data(40, 3, 0.05, KEY)
    y = (y - y.mean()) / y.std()
    good = gp.prior_mode(3, jnp.float32)
    for _ in range(10):  # 200 steps
        good = fit(KERNEL, good, gp.Dataset(X, y, jnp.ones(40, bool)), 1e-6, 20)
    starts = [
        good,
        gp.GPParams(jnp.log(jnp.array([0.05, 20.0, 0.3])), jnp.array(1.5), jnp.array(-2.0)),
        gp.GPParams(
            jnp.full(3, gp.LOG_LS_BOUNDS[1]),
            jnp.array(gp.LOG_OUTPUT_BOUNDS[0]),
            jnp.array(gp.LOG_NOISE_MAX),
        ),
    ]
    data = gp.Dataset(X, y, jnp.ones(40, bool))
    for p0 in jax.tree.map(lambda a: jnp.array(a, jnp.float32), starts):  # one weak type
        before = density(KERNEL, p0, data, 1e-6)
        for steps in (1, 20):
            fitted = fit(KERNEL, p0, data, 1e-6, steps)
            after = density(KERNEL, fitted, data, 1e-6)
            assert float(after) <= float(before), (steps, float(before), float(after))


def test_fit_escapes_a_length_scale_that_grew_too_long():
    # A parameter the model wrote off early (length scale at the upper bound, where the
    # likelihood is flat) comes back once the data show its effect: the fit does not
    # only continue from where it was.
    X, y = _noisy_data(40, 2, 0.0, KEY)
    y = (y - y.mean()) / y.std()
    stuck = gp.GPParams(
        jnp.array([gp.LOG_LS_BOUNDS[1], 0.0]), jnp.array(0.0), jnp.array(jnp.log(1e-4))
    )
    p = gp.fit_hyperparameters(KERNEL, stuck, gp.Dataset(X, y, jnp.ones(40, bool)), 1e-6, 20)
    assert float(jnp.exp(p.log_length_scale[0])) < 2.0, jnp.exp(p.log_length_scale)


@pytest.mark.parametrize("noise", [0.05, 0.3])
def test_fitted_noise_matches_the_noise_in_the_data(noise):
    X, y = _noisy_data(100, 2, noise, jax.random.PRNGKey(3))
    sd = y.std()
    data = gp.Dataset(X, (y - y.mean()) / sd, jnp.ones(100, bool))
    p = gp.fit_hyperparameters(KERNEL, gp.prior_mode(2, jnp.float32), data, 1e-6, 100)
    fitted_sd = float(jnp.sqrt(jnp.exp(p.log_noise)) * sd)
    assert noise / 3 < fitted_sd < noise * 3, (noise, fitted_sd)


def test_lbfgs_never_worse_than_start_and_stays_in_cube():
    post = gp.fit(KERNEL, params(), gp.Dataset(X, Y, MASK), 1e-6)

    def score(q):
        m, s = gp.predict(KERNEL, post, q)
        return hx.EI().score(m, s, jnp.max(jnp.where(MASK, Y, -jnp.inf)))

    starts = jax.random.uniform(jax.random.PRNGKey(2), (6, D))
    xs, vals = gp.maximize_acquisition(score, starts, 10)
    assert bool(jnp.all(vals >= score(starts)))
    assert bool(jnp.all((xs >= 0) & (xs <= 1)))
    np.testing.assert_allclose(vals, score(xs), rtol=1e-5)
    assert float(vals.max()) > float(score(starts).max())


@pytest.mark.parametrize(
    "kernel",
    [KERNEL, hx.kernels.Unordered(hx.Matern(nu=1.5), (3, 0))],
    ids=["matern", "categorical"],
)
def test_analytic_value_and_gradient_match_autodiff(kernel):
    p = params(ls=0.4, noise=1e-3)
    y = jnp.where(MASK, Y, 0.0)

    def objective(q):
        return gp.neg_log_marginal_likelihood(
            kernel, q, gp.Dataset(X, y, MASK), 1e-6
        ) + gp._neg_log_prior(q)

    value, auto = jax.value_and_grad(objective)(p)
    ours_value, ours = gp._value_and_grad(kernel, p, gp.Dataset(X, y, MASK), 1e-6)
    np.testing.assert_allclose(ours_value, value, rtol=1e-4)
    np.testing.assert_allclose(
        gp.neg_log_posterior(kernel, p, gp.Dataset(X, y, MASK), 1e-6), value, rtol=1e-5
    )
    for a, b in zip(jax.tree_util.tree_leaves(auto), jax.tree_util.tree_leaves(ours), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3)


def test_spread_subset_takes_observed_rows_evenly():
    n = 40
    Xs = jnp.arange(n, dtype=jnp.float32)[:, None] * jnp.ones((1, D))
    mask = (jnp.arange(n) % 4 != 3) & (jnp.arange(n) < 36)  # 27 observed rows, with gaps
    observed = np.flatnonzero(np.asarray(mask))
    a = gp.spread_subset(gp.Dataset(Xs, Xs[:, 0], mask), 9)
    Xa, ya, ma = a.X, a.y, a.mask
    assert bool(ma.all())
    np.testing.assert_array_equal(ya, observed[::3])  # every third observed row
    np.testing.assert_array_equal(Xa[:, 1], ya)
    # Room for all of them: every observed row once, the rest masked out.
    b = gp.spread_subset(gp.Dataset(Xs, Xs[:, 0], mask), 32)
    yb, mb = b.y, b.mask
    assert int(mb.sum()) == 27
    np.testing.assert_array_equal(np.asarray(yb)[np.asarray(mb)], observed)


def test_long_buffers_fit_hyperparameters_on_a_spread_subset():
    n = 30
    Xl = jax.random.uniform(jax.random.PRNGKey(3), (n, D))
    yl = jnp.sin(6 * Xl[:, 0]) + Xl[:, 1]
    mask = jnp.arange(n) < 25
    p0 = params(ls=1.0, noise=1e-2)
    capped = gp.fit_hyperparameters(KERNEL, p0, gp.Dataset(Xl, yl, mask), 1e-6, 5, max_points=10)
    direct = gp.fit_hyperparameters(
        KERNEL, p0, gp.spread_subset(gp.Dataset(Xl, yl, mask), 10), 1e-6, 5
    )
    full = gp.fit_hyperparameters(KERNEL, p0, gp.Dataset(Xl, yl, mask), 1e-6, 5)
    for a, b in zip(
        jax.tree_util.tree_leaves(capped), jax.tree_util.tree_leaves(direct), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert not np.allclose(capped.log_length_scale, full.log_length_scale)


def test_cholesky_under_vmap_factorises_one_matrix_at_a_time_and_differentiates():
    A = jax.random.normal(jax.random.PRNGKey(8), (5, 4, 4))
    K = A @ jnp.swapaxes(A, -1, -2) + 4 * jnp.eye(4)[None]
    np.testing.assert_allclose(
        jax.vmap(gp.cholesky)(K), jnp.linalg.cholesky(K), rtol=1e-5, atol=1e-6
    )
    # No batched factorisation in the vmapped program: jaxlib's batched CPU Cholesky
    # deadlocked when 64 searches ran under one vmap.
    jaxpr = str(jax.make_jaxpr(jax.vmap(gp.cholesky))(K))
    assert "scan" in jaxpr

    def loss(chol):
        return lambda k: jnp.sum(jnp.log(jnp.diagonal(chol(k)))) + jnp.sum(chol(k)[2] ** 2)

    ours, ref = (
        jax.vmap(jax.grad(loss(gp.cholesky)))(K),
        jax.vmap(jax.grad(loss(jnp.linalg.cholesky)))(K),
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6)


def test_a_failed_factorisation_is_retried_for_that_matrix_alone_under_vmap():
    # One matrix of the batch is not positive definite (an eigenvalue of -1e-5): its
    # factor comes from the retry's larger diagonal, the others' are untouched, and the
    # vmapped results equal the unbatched ones matrix by matrix.
    A = jax.random.normal(jax.random.PRNGKey(9), (4, 5, 5))
    K = A @ jnp.swapaxes(A, -1, -2) + jnp.eye(5)[None]
    v = jnp.ones(5) / jnp.sqrt(5.0)
    K = K.at[2].set(jnp.eye(5) - (1 + 1e-5) * jnp.outer(v, v))
    assert np.isnan(jnp.linalg.cholesky(K[2])).any()
    jitter = 1e-6
    batched = jax.jit(jax.vmap(lambda k: gp._cholesky(k, jitter)))(K)
    one_by_one = jnp.stack([jax.jit(lambda k: gp._cholesky(k, jitter))(k) for k in K])
    assert np.isfinite(batched).all()
    np.testing.assert_array_equal(batched, one_by_one)
    for i in (0, 1, 3):
        np.testing.assert_array_equal(batched[i], jnp.linalg.cholesky(K[i]))
    shifted = K[2] + (1e3 * jitter + 1e-4) * jnp.eye(5)
    np.testing.assert_allclose(batched[2], jnp.linalg.cholesky(shifted), rtol=1e-5)


def test_nearest_takes_the_observed_rows_nearest_in_length_scales():
    n = 30
    Xs = jax.random.uniform(jax.random.PRNGKey(3), (n, D))
    mask = jnp.arange(n) % 5 != 0  # 24 observed rows
    x = jnp.array([0.5, 0.5])
    # The second coordinate's length scale is 10x shorter: distances are mostly along it.
    lls = jnp.log(jnp.array([1.0, 0.1]))
    near = gp.nearest(gp.Dataset(Xs, jnp.arange(n, dtype=jnp.float32), mask), x, lls, 6)
    d2 = np.sum(((np.asarray(Xs) - 0.5) / np.array([1.0, 0.1])) ** 2, axis=1)
    d2[~np.asarray(mask)] = np.inf
    expected = np.argsort(d2)[:6]
    assert bool(near.mask.all())
    np.testing.assert_array_equal(np.sort(np.asarray(near.y)), np.sort(expected))
    np.testing.assert_array_equal(near.X, Xs[np.asarray(near.y).astype(int)])
    # Room for more than the observed rows: all of them, the rest masked out.
    small = gp.nearest(gp.Dataset(Xs, jnp.arange(n, dtype=jnp.float32), mask), x, lls, 28)
    assert int(small.mask.sum()) == 24
    observed = np.flatnonzero(np.asarray(mask))
    np.testing.assert_array_equal(np.sort(np.asarray(small.y)[np.asarray(small.mask)]), observed)


def test_long_factors_solve_vectors_in_blocks_as_xla_does():
    # A whole block of `SOLVE_BLOCK` rows and a partial one, masked gaps inside.
    n = gp.SOLVE_BLOCK + 44
    Xl = jax.random.uniform(jax.random.PRNGKey(4), (n, D))
    yl = jnp.sin(6 * Xl[:, 0]) * jnp.cos(3 * Xl[:, 1])
    mask = (jnp.arange(n) % 7 != 3) & (jnp.arange(n) < n - 20)
    b = jax.random.normal(jax.random.PRNGKey(5), (n,))

    @jax.jit
    def solves(data, b):
        post = gp.fit(KERNEL, params(ls=0.2, noise=1e-3), data, 1e-6)
        L = post.chol
        ours = (post.alpha, gp._solve_vector(L, b), gp._solve_vector(L, b, True))
        xla = (
            jax.scipy.linalg.cho_solve((L, True), jnp.where(data.mask, data.y, 0.0)),
            jax.scipy.linalg.solve_triangular(L, b, lower=True),
            jax.scipy.linalg.solve_triangular(L, b, lower=True, trans=1),
        )
        return ours, xla

    for a, e in zip(*solves(gp.Dataset(Xl, yl, mask), b), strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4 * float(jnp.abs(e).max()))
