"""The shared Gaussian-process core: pure functions on arrays.

Nothing here knows about search spaces or optimizers. Inputs live in the unit cube,
targets are already standardised, and a boolean mask marks which rows of the fixed-size
buffers hold observations, so every shape is static under `jit`, `scan` and `vmap`.
Masked rows are decoupled from the rest (identity rows of the Gram matrix, zero targets),
which makes them invisible to the posterior and to the marginal likelihood.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Bool, Float

from ._dtypes import is_f64
from ._typing import typecheck
from .kernels import BaseKernel

__all__ = [
    "Dataset",
    "GPParams",
    "BoundaryMean",
    "Posterior",
    "fit",
    "predict",
    "fitted_mean",
    "neg_log_marginal_likelihood",
    "neg_log_posterior",
    "prior_mode",
    "fit_hyperparameters",
    "spread_subset",
    "nearest",
    "maximize_acquisition",
]

# Hyperparameter bounds on the unit cube with standardised targets.
LOG_LS_BOUNDS = (math.log(0.01), math.log(100.0))
LOG_OUTPUT_BOUNDS = (math.log(0.05), math.log(20.0))
# Noise floor, a fraction of the standardised variance, added to `jitter` on the
# diagonal. In float32 the diagonal is mostly `jitter` (1e-6 by default), what the
# factorisation of clustered points needs; the floor sits below it so that it does not
# blur the model near the optimum, and the rare factorisation that fails is retried
# with a larger diagonal (`_cholesky`). float64 resolves much finer differences with a
# far lower floor, though not one at its precision, which makes the model
# overconfident. benchmarks/RESULTS.md, "The float32 noise floor".
LOG_NOISE_MIN = math.log(1e-7)
LOG_NOISE_MIN_F64 = math.log(1e-10)
LOG_NOISE_MAX = math.log(0.5)
# Hyperparameters are fitted on at most this many observations (spread over the whole
# history): each Adam step factorises the Gram matrix, O(n^3), and 128 points pin down
# length scales, output scale and noise as well as more do (benchmarks/RESULTS.md,
# "Speed"). Buffers of at most this size are fitted whole.
MAX_FIT_POINTS = 128
# In a buffer of more than `MAX_REFINE_POINTS` rows a suggestion reads the model
# through neighbourhoods (`_suggest._Local`): candidates ranked on posteriors of
# `MAX_REFINE_POINTS` observations, the best of them refined on the posterior of their
# `MAX_LOCAL_POINTS` nearest observations, and starts and refined points scored on the
# posterior of the `LOCAL_SCORE_POINTS` nearest each. The whole posterior costs an
# O(n^3) factorisation and a solve against its n x n factor per scored point, most of
# a suggestion's time at 1000 observations and nearly all of it at 5000; up to
# `MAX_REFINE_POINTS` rows it costs no more than the neighbourhoods
# (benchmarks/RESULTS.md, "Where a suggestion's time goes at 1000 observations").
MAX_LOCAL_POINTS = 64
LOCAL_SCORE_POINTS = 128
MAX_REFINE_POINTS = 256


# The standard deviation, in log space, of the length scales a suggestion's acquisition
# sees around the fitted ones (`drawn_length_scales`).
LENGTH_SCALE_DRAW = 0.5


class GPParams(eqx.Module):
    """GP hyperparameters in log space: ARD length scales, output scale (std), noise variance."""

    log_length_scale: Float[Array, " d"]
    log_output_scale: Float[Array, ""]
    log_noise: Float[Array, ""]

    def clip(self) -> GPParams:
        """Project onto the bounds that keep a fit from collapsing."""
        return GPParams(
            jnp.clip(self.log_length_scale, *LOG_LS_BOUNDS),
            jnp.clip(self.log_output_scale, *LOG_OUTPUT_BOUNDS),
            jnp.clip(self.log_noise, log_noise_min(self.log_noise.dtype), LOG_NOISE_MAX),
        )


def log_noise_min(dtype) -> float:
    """The lower bound on the log noise variance for arrays of `dtype`."""
    return LOG_NOISE_MIN_F64 if is_f64(dtype) else LOG_NOISE_MIN


def effective_jitter(jitter, dtype):
    """`jitter` is stated for float32; wider floats get it scaled by their epsilon ratio.

    The default 1e-6 is what float32 needs to factorise clustered points; in float64 the
    same diagonal would blur differences float64 can resolve.
    """
    if not is_f64(dtype):
        return jitter
    return jitter * float(jnp.finfo(dtype).eps / jnp.finfo(jnp.float32).eps)


def drawn_length_scales(params: GPParams, key) -> GPParams:
    """`params` with each log length scale moved by `LENGTH_SCALE_DRAW` times a standard
    normal draw: the model a suggestion's acquisition uses.

    A fitted length scale is one value of a posterior that can be wide. Where a search
    has stopped varying a parameter, the observations no longer inform its length
    scale, the fit keeps it where the prior puts it, and a long one makes the model
    certain that moving the parameter changes little, so the search never moves it
    again: noisy Branin's runs that sat on the face beside its third minimum for
    their last fifty evaluations (benchmarks/RESULTS.md, "Length scales drawn for each
    suggestion"). Drawing the length scales afresh for each suggestion, a step of
    Thompson sampling over the hyperparameters, lets some suggestions see a shorter one
    and look where the fit alone would not; over many suggestions the acquisition
    averages over length scales near the fit instead of trusting one value.
    """
    ls = params.log_length_scale
    eps = jax.random.normal(key, ls.shape, ls.dtype)
    return GPParams(ls + LENGTH_SCALE_DRAW * eps, params.log_output_scale, params.log_noise)


def diagonal(params: GPParams, jitter, dtype):
    """What the Gram matrix adds on the diagonal of observed rows: noise plus jitter."""
    return jnp.exp(params.log_noise) + effective_jitter(jitter, dtype)


class Dataset(eqx.Module):
    """The observations a GP is conditioned on, in fixed-size buffers.

    `X` holds inputs on the unit cube, `y` the standardised targets, and `mask` marks
    the rows that hold an observation; the other rows are ignored (their values do
    not matter), so the buffers can be written in place as a search goes on.
    """

    X: Float[Array, "n d"]
    y: Float[Array, " n"]
    mask: Bool[Array, " n"]


class BoundaryMean(eqx.Module):
    """The GP's prior mean: highest at the centre of the cube, lower towards its faces.

    `-drop * (q(x) - 1/3)` with `q(x)` the average of `(2 x_k - 1)^2` over the ordered
    columns (`weights` 1; 0 for a categorical column, whose position on the unit
    interval means nothing): 0 at the centre, 1 at a corner, 1/3 on average over the
    cube, so the prior mean averages to the targets' mean over the cube and a corner
    sits `drop` standardised units below the centre. It states the belief that the
    objective does not keep improving beyond the observations. With a constant prior
    mean, the posterior mean extrapolates a slope onto the faces and the posterior
    standard deviation is largest at the corners, farthest from the data, so the
    acquisitions favour the faces: a search that puts a parameter on a bound never learns
    what it does inside (benchmarks/RESULTS.md, "Suggestions on the faces of the cube").
    Near observations the data decide, so an optimum on a face is still found.

    It is a belief about where there are no observations, not a trend in them: the
    hyperparameters are fitted to the targets as they are (`fit_hyperparameters`).
    Fitted to the targets minus this mean, good results near a face become a steeper,
    smoother residual, the length scales grow, and the model no longer resolves an
    optimum just inside the face (noisy Branin's third minimum, 0.04 from it);
    benchmarks/RESULTS.md, "The prior mean that falls towards the faces".
    """

    weights: Float[Array, " d"]
    drop: float = eqx.field(default=1.0, static=True)

    def __call__(self, X: Float[Array, "n d"]) -> Float[Array, " n"]:
        total = jnp.maximum(jnp.sum(self.weights), 1.0)
        q = jnp.sum(self.weights[None, :] * (2.0 * X - 1.0) ** 2, axis=-1) / total
        return -self.drop * (q - jnp.sum(self.weights) / total / 3.0)


def _residuals(data: Dataset, mean: BoundaryMean | None) -> Dataset:
    """`data` with the prior mean taken off the targets (0 on masked rows)."""
    y = data.y if mean is None else data.y - mean(data.X)
    return Dataset(data.X, jnp.where(data.mask, y, 0.0), data.mask)


class Posterior(eqx.Module):
    """A fitted GP: training inputs, mask, Cholesky factor, `K^-1 (y - m(X))` and the prior
    mean `m` (`None`: zero)."""

    X: Float[Array, "n d"]
    mask: Bool[Array, " n"]
    chol: Float[Array, "n n"]
    alpha: Float[Array, " n"]
    params: GPParams
    mean: BoundaryMean | None = None


def _cross(kernel: BaseKernel, params: GPParams, A, B):
    sf2 = jnp.exp(2 * params.log_output_scale)
    return sf2 * kernel(A, B, jnp.exp(params.log_length_scale))


def _gram(K, params: GPParams, mask, jitter):
    """The masked Gram matrix from the covariances `K` of the rows, and the mask of
    observed pairs: masked rows and columns become identity rows, observed ones get
    noise and jitter on the diagonal."""
    both = mask[:, None] & mask[None, :]
    diag = jnp.where(mask, diagonal(params, jitter, K.dtype), 1.0)
    return jnp.where(both, K, 0.0) + jnp.diag(diag), both


def _masked_gram(kernel, params, X, mask, jitter):
    return _gram(_cross(kernel, params, X, X), params, mask, jitter)[0]


def _factor_one(K, shift):
    L = jnp.linalg.cholesky(K)
    # Rare numerical failure: retry with `shift` more on the diagonal.
    eye = jnp.eye(K.shape[-1], dtype=K.dtype)
    return jax.lax.cond(
        jnp.any(jnp.isnan(L)), lambda: jnp.linalg.cholesky(K + shift * eye), lambda: L
    )


@jax.custom_batching.custom_vmap
def _factor(K, shift):
    return _factor_one(K, shift)


@_factor.def_vmap
def _factor_vmap(axis_size, in_batched, K, shift):
    # Under vmap on the CPU, factorise the batch one matrix at a time: jaxlib's batched
    # CPU Cholesky splits a batch over XLA's thread pool and blocks its own thread until
    # the pieces finish, so run from a pool thread it can deadlock (many searches
    # under one `filter_vmap`; benchmarks/RESULTS.md, "Speed"). The matrices here are
    # small, so the loop costs little. Other platforms (GPUs) factorise the batch at once.
    # The retry is decided for the whole batch: a `cond` on each matrix's own failure
    # would, vmapped, factorise every matrix twice.
    K_batched, shift_batched = in_batched
    if not K_batched:
        return _factor(K, shift), False
    if not shift_batched:
        shift = jnp.broadcast_to(shift, (axis_size,))
    factor = lambda K: jax.lax.platform_dependent(  # noqa: E731
        K, cpu=lambda K: jax.lax.map(jnp.linalg.cholesky, K), default=jnp.linalg.cholesky
    )
    L = factor(K)
    failed = jnp.any(jnp.isnan(L), axis=(-2, -1))
    eye = jnp.eye(K.shape[-1], dtype=K.dtype)[None]

    def retry():
        shifted = factor(K + shift[:, None, None].astype(K.dtype) * eye)
        return jnp.where(failed[:, None, None], shifted, L)

    return jax.lax.cond(jnp.any(failed), retry, lambda: L), True


@jax.custom_jvp
def _factor_shifted(K, shift):
    return _factor(K, shift)


@_factor_shifted.defjvp
def _factor_jvp(primals, tangents):
    # dL = L Phi(L^-1 dK L^-T), Phi = lower triangle with the diagonal halved. The
    # shift is a numerical safeguard, held constant.
    (K, shift), (dK, _) = primals, tangents
    L = _factor_shifted(K, shift)
    dK = 0.5 * (dK + dK.T)
    tmp = jax.scipy.linalg.solve_triangular(L, dK, lower=True)
    tmp = jax.scipy.linalg.solve_triangular(L, tmp.T, lower=True).T
    phi = jnp.tril(tmp) - 0.5 * jnp.diag(jnp.diagonal(tmp))
    return L, L @ phi


def cholesky(K: Float[Array, "n n"]) -> Float[Array, "n n"]:
    """Lower Cholesky factor, safe under `vmap` on the CPU, differentiable."""
    return _factor_shifted(K, jnp.zeros((), K.dtype))


def _cholesky(K, jitter):
    """`cholesky(K)`, or where that fails that of `K` with a much larger diagonal."""
    return _factor_shifted(K, 1e3 * jitter + (1e-8 if is_f64(K.dtype) else 1e-4))


# XLA's CPU triangular solve with one right-hand side slows down faster than the square
# of the factor's rows (memory access, not arithmetic: 2.5-3.6 ms at 1000 rows, 150-180
# ms at 5000, against 6 ms for a matrix-vector product with the same factor). Against
# a factor of more than `SOLVE_BLOCK` rows a vector is solved in blocks of that many
# rows, the off-diagonal parts as matrix-vector products: about 4x faster at 1000 and
# at 5000 rows (benchmarks/RESULTS.md, "Speed"). Smaller factors use XLA's solve.
SOLVE_BLOCK = 256


def _solve_vector(L, b, transpose: bool = False):
    """`L^-1 b`, or `L^-T b` if `transpose`, for a lower-triangular `L` and a vector `b`."""
    n = L.shape[0]
    starts = range(0, n, SOLVE_BLOCK)
    solved = b[:0]  # the solution's part found so far: the rows above (below) the block
    for s in reversed(starts) if transpose else starts:
        e = min(n, s + SOLVE_BLOCK)
        if transpose:
            rhs = b[s:e] - solved @ L[e:, s:e]
        else:
            rhs = b[s:e] - L[s:e, :s] @ solved
        x = jax.scipy.linalg.solve_triangular(L[s:e, s:e], rhs, lower=True, trans=int(transpose))
        solved = jnp.concatenate([x, solved] if transpose else [solved, x])
    return solved


def _cho_solve(L, b):
    """`(L L^T)^-1 b` for a vector `b`."""
    if L.shape[0] <= SOLVE_BLOCK:
        return jax.scipy.linalg.cho_solve((L, True), b)
    return _solve_vector(L, _solve_vector(L, b), transpose=True)


@typecheck
def fit(
    kernel: BaseKernel,
    params: GPParams,
    data: Dataset,
    jitter,
    mean: BoundaryMean | None = None,
) -> Posterior:
    """Condition the GP (prior mean `mean`, zero if `None`) on the observations in `data`."""
    X, mask = data.X, data.mask
    L = _cholesky(_masked_gram(kernel, params, X, mask, jitter), effective_jitter(jitter, X.dtype))
    # Triangular solves rather than an explicit inverse: float32 needs the accuracy
    # to resolve the objective near the optimum.
    alpha = _cho_solve(L, _residuals(data, mean).y)
    return Posterior(X, mask, L, alpha, params, mean)


@typecheck
def predict(
    kernel: BaseKernel, post: Posterior, Xq: Float[Array, "q d"]
) -> tuple[Float[Array, " q"], Float[Array, " q"]]:
    """Posterior mean and standard deviation of the latent function at `Xq`."""
    Ks = jnp.where(post.mask[:, None], _cross(kernel, post.params, post.X, Xq), 0.0)
    mean = Ks.T @ post.alpha
    if post.mean is not None:
        mean = mean + post.mean(Xq)
    v = jax.scipy.linalg.solve_triangular(post.chol, Ks, lower=True)
    var = jnp.exp(2 * post.params.log_output_scale) - jnp.sum(v * v, axis=0)
    std = jnp.sqrt(jnp.maximum(var, jnp.finfo(var.dtype).tiny))
    return mean, std


@typecheck
def fitted_mean(post: Posterior, y: Float[Array, " n"], jitter) -> Float[Array, " n"]:
    """Posterior mean of the latent function at the training inputs (0 on masked rows).

    `fit` solved `(K + (noise + jitter) I) alpha = y - m(X)`, so the latent mean
    `m(X) + K alpha` there is `y - (noise + jitter) alpha`: what the model believes was
    observed, without another kernel evaluation. It equals `y` when the model
    interpolates and is pulled towards the neighbours where it explains part of an
    observation as noise.
    """
    return jnp.where(post.mask, y - diagonal(post.params, jitter, y.dtype) * post.alpha, 0.0)


@typecheck
def neg_log_marginal_likelihood(
    kernel: BaseKernel, params: GPParams, data: Dataset, jitter
) -> Float[Array, ""]:
    """Negative log marginal likelihood of the observations in `data` (zero prior mean)."""
    post = fit(kernel, params, data, jitter)
    y = jnp.where(data.mask, data.y, 0.0)
    n = jnp.sum(data.mask)
    return (
        0.5 * jnp.dot(y, post.alpha)
        + jnp.sum(jnp.log(jnp.diagonal(post.chol)))
        + 0.5 * n * math.log(2 * math.pi)
    )


@typecheck
def neg_loo_log_density(
    kernel: BaseKernel, params: GPParams, data: Dataset, jitter
) -> Float[Array, ""]:
    """Negative leave-one-out log predictive density of the observations in `data` (zero
    prior mean; `inf` where the factorisation fails).

    Each observation is predicted by the GP conditioned on all the others, in closed
    form from one factorisation: with `K` the Gram matrix (noise included) and `a = K^-1
    y`, the prediction of `y_i` has variance `1 / [K^-1]_ii` and misses by `a_i / [K^-1]_ii`
    (Rasmussen and Williams, Gaussian Processes for Machine Learning, section 5.4.2). It
    scores how well a model predicts observations it has not seen, which the marginal
    likelihood does only under the model's own assumptions.
    """
    post = fit(kernel, params, data, jitter)
    eye = jnp.eye(data.X.shape[0], dtype=data.X.dtype)
    L_inv = jax.scipy.linalg.solve_triangular(post.chol, eye, lower=True)
    precision = jnp.sum(L_inv * L_inv, axis=0)  # the diagonal of K^-1
    var = 1.0 / precision
    miss = post.alpha * var
    log_density = -0.5 * (jnp.log(2 * math.pi * var) + miss * miss / var)
    v = -jnp.sum(jnp.where(data.mask, log_density, 0.0))
    return jnp.where(jnp.isfinite(v), v, jnp.inf)


def _prior_median_log_length_scale(d: int) -> float:
    # Length scales: log-normal prior with median 0.6 * sqrt(d) on the unit cube, growing
    # with sqrt(d) so the model stays usable in many dimensions, yet short enough that a
    # boundary slope is not mistaken for a global trend.
    return -0.5 + 0.5 * math.log(d)


def prior_mode(d: int, dtype) -> GPParams:
    """Where the hyperparameter prior is centred: the fit's fresh start."""
    return GPParams(
        jnp.full((d,), _prior_median_log_length_scale(d), dtype),
        jnp.zeros((), dtype),
        jnp.asarray(_PRIOR_LOG_NOISE, dtype),
    )


# The noise variance's log-normal prior on standardised targets: centre and width (log).
_PRIOR_LOG_NOISE = math.log(1e-4)
_PRIOR_LOG_NOISE_SIGMA = 3.0


def _neg_log_prior(params: GPParams) -> Float[Array, ""]:
    # Length scales log-normal around `prior_mode` (sigma 1); output scale near 1; noise
    # pulled towards small.
    d = params.log_length_scale.shape[0]
    mu, sigma = _prior_median_log_length_scale(d), 1.0
    ls = 0.5 * jnp.sum(((params.log_length_scale - mu) / sigma) ** 2)
    out = 0.5 * (params.log_output_scale / 1.0) ** 2
    noise = 0.5 * ((params.log_noise - _PRIOR_LOG_NOISE) / _PRIOR_LOG_NOISE_SIGMA) ** 2
    return ls + out + noise


def neg_log_posterior(
    kernel: BaseKernel, params: GPParams, data: Dataset, jitter
) -> Float[Array, ""]:
    """What the hyperparameter fit minimises: the negative log marginal likelihood plus the
    negative log prior (`inf` where the factorisation fails)."""
    v = neg_log_marginal_likelihood(kernel, params, data, jitter) + _neg_log_prior(params)
    return jnp.where(jnp.isfinite(v), v, jnp.inf)


def _value_and_grad(kernel, params, data: Dataset, jitter) -> tuple[Array, GPParams]:
    """NLL + negative log prior and its gradient in closed form, one factorisation per call.

    With `W = (K^-1 - a a^T) / 2`, `a = K^-1 y`, the NLL gradient is `sum(W * dK/dp)`.
    For a stationary kernel `K = s^2 k(r^2)`, `r^2 = sum_k (dx_k / l_k)^2`, the derivatives
    are `2 K` for log s, `noise` on the diagonal for log noise, and
    `-2 s^2 k'(r^2) (dx_k / l_k)^2` for log l_k; `k'` comes from a JVP of the kernel's
    profile, so every kernel gets this for free. Unlike reverse-mode through the
    Cholesky, nothing is differentiated but the elementwise profile.
    """
    X, mask = data.X, data.mask
    n, dtype = X.shape[0], X.dtype
    ls = jnp.exp(params.log_length_scale)
    sf2 = jnp.exp(2 * params.log_output_scale)
    noise = jnp.exp(params.log_noise)
    r2 = kernel.sqdist(X, X, ls)
    prof, dprof = jax.jvp(kernel.profile, (r2,), (jnp.ones_like(r2),))
    K, both = _gram(sf2 * prof, params, mask, jitter)
    eye = jnp.eye(n, dtype=dtype)
    L = _cholesky(K, effective_jitter(jitter, dtype))
    L_inv = jax.scipy.linalg.solve_triangular(L, eye, lower=True)
    K_inv = L_inv.T @ L_inv
    y = jnp.where(mask, data.y, 0.0)
    a = K_inv @ y
    W = jnp.where(both, 0.5 * (K_inv - a[:, None] * a[None, :]), 0.0)
    prior_value, prior = jax.value_and_grad(_neg_log_prior)(params)
    # Masked rows are identity rows: they add log(1) = 0 and nothing to y.a.
    value = (
        0.5 * jnp.dot(y, a)
        + jnp.sum(jnp.log(jnp.diagonal(L)))
        + 0.5 * jnp.sum(mask) * math.log(2 * math.pi)
        + prior_value
    )
    grad = GPParams(
        -2.0 * sf2 * kernel.sqdist_contract(X, X, ls, W * dprof) + prior.log_length_scale,
        2.0 * sf2 * jnp.sum(W * prof) + prior.log_output_scale,
        noise * jnp.trace(W) + prior.log_noise,
    )
    return jnp.where(jnp.isfinite(value), value, jnp.inf), grad


def spread_subset(data: Dataset, m: int) -> Dataset:
    """A dataset of `m` rows holding at most `m` of the observed rows of `data`.

    All observed rows when there are at most `m`; otherwise `m` of them evenly spaced
    in buffer order (for a search: over its whole history, old and recent alike).
    """
    n_obs = jnp.sum(data.mask)
    i = jnp.arange(m)
    # 0-based rank among the observed rows of each row to take.
    ranks = jnp.where(n_obs > m, (i * n_obs) // m, i)
    rows = jnp.searchsorted(jnp.cumsum(data.mask), ranks + 1)
    rows = jnp.minimum(rows, data.X.shape[0] - 1)
    return Dataset(data.X[rows], data.y[rows], i < n_obs)


def fit_subset(data: Dataset, max_points: int = MAX_FIT_POINTS) -> Dataset:
    """The observations `fit_hyperparameters` fits on: `spread_subset` of them past
    `max_points` rows, with the masked targets set to zero."""
    if data.X.shape[0] > max_points:
        data = spread_subset(data, max_points)
    return Dataset(data.X, jnp.where(data.mask, data.y, 0.0), data.mask)


@typecheck
def replicate_noise_bound(
    kernel: BaseKernel,
    params: GPParams,
    data: Dataset,
    jitter: float,
    min_correlation: float = 0.99,
    n_pairs: int = 16,
    level: float = 0.05,
) -> Float[Array, ""]:
    """The largest observation noise variance that near-replicates in `data` allow.

    Two observations whose latent values are correlated at least `min_correlation` under
    `params` are near-replicates: under the model their difference has variance
    `2 * (noise + s2 * (1 - k))`, `s2` the output variance and `k` the correlation. Over
    the `n_pairs` most correlated such pairs (each row with its most correlated later
    row), the sum `T` of the squared differences over their variances is chi-squared
    with `m` degrees of freedom if the model is right. If the pairs are quieter than
    that, the model's variances are too large by at least `T / q`, `q` the chi-squared
    quantile at `level`: the noise is scaled down by that factor, never up. Without
    near-replicates, or with pairs the model explains, the fitted noise stands. A
    smooth model fitted to a rugged deterministic objective takes its ripples for noise;
    configurations evaluated close together show that they are not.

    Pairs of one configuration evaluated twice (`same_configuration`) are tested on
    their own as well, and the smaller scale is kept: their difference is noise alone,
    and the ripples of other near pairs must not hide that they repeat exactly.
    """
    noise = diagonal(params, jitter, data.y.dtype)
    k = kernel(data.X, data.X, jnp.exp(params.log_length_scale))
    n = data.X.shape[0]
    later = jnp.arange(n)[:, None] < jnp.arange(n)[None, :]
    k = jnp.where(later & data.mask[:, None] & data.mask[None, :], k, -1.0)
    partner = jnp.argmax(k, axis=1)
    k_pair = jnp.take_along_axis(k, partner[:, None], axis=1)[:, 0]
    y = jnp.where(data.mask, data.y, 0.0)
    sf2 = jnp.exp(2 * params.log_output_scale)
    k_top, rows = jax.lax.top_k(k_pair, min(n_pairs, n))
    counted = k_top >= min_correlation
    variance = 2.0 * (noise + sf2 * jnp.clip(1.0 - k_top, 0.0))
    ratio = (y[rows] - y[partner[rows]]) ** 2 / variance
    quantiles = jnp.asarray(chi2_quantiles(level, max(1, min(n_pairs, n))), y.dtype)

    def scale(pairs):
        m = jnp.sum(pairs)
        t = jnp.sum(jnp.where(pairs, ratio, 0.0))
        q = quantiles[jnp.clip(m, 1, quantiles.shape[0]) - 1]
        return jnp.where(m > 0, t / q, jnp.inf)

    same = counted & same_configuration(data.X[rows], data.X[partner[rows]])
    return noise * jnp.minimum(jnp.minimum(scale(counted), scale(same)), 1.0)


# Two configurations closer than this in every coordinate of the unit cube are the same
# one (a configuration's round trip through its space's values moves it by a few ulps).
SAME_CONFIGURATION = 1e-5


def same_configuration(a: Array, b: Array) -> Array:
    """Whether row `i` of `a` and row `i` of `b` (on the unit cube) are the same
    configuration."""
    return jnp.all(jnp.abs(a - b) <= SAME_CONFIGURATION, axis=-1)


@functools.cache
def chi2_quantiles(p: float, max_dof: int) -> tuple[float, ...]:
    """The chi-squared quantiles at probability `p` for 1 to `max_dof` degrees of freedom.

    Computed once on the host, in double precision (bisection on the series of the
    regularised lower incomplete gamma function), so that the programs that test
    near-replicates look the quantile up instead of carrying the incomplete gamma
    function's loops (it compiled in about 0.3 s per use).
    """

    def cdf(x: float, dof: int) -> float:
        a, y = 0.5 * dof, 0.5 * x
        if y <= 0.0:
            return 0.0
        term = total = 1.0 / a
        n = 1
        while term > 1e-17 * total and n < 10_000:
            term *= y / (a + n)
            total += term
            n += 1
        return min(1.0, math.exp(a * math.log(y) - y - math.lgamma(a)) * total)

    def quantile(dof: int) -> float:
        lo, hi = 0.0, 10.0 * dof + 10.0
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if cdf(mid, dof) < p else (lo, mid)
        return 0.5 * (lo + hi)

    return tuple(quantile(k) for k in range(1, max_dof + 1))


def nearest(
    data: Dataset, x: Float[Array, " d"], log_length_scale: Float[Array, " d"], m: int
) -> Dataset:
    """A dataset of the `m` rows of `data` nearest `x`, observed rows first.

    Distances are measured in length scales. With at most `m` observed rows it holds
    all of them (and masked padding). A posterior on these rows is, near `x`, close to
    the posterior on all of them: with a Matern or RBF kernel the nearest observations
    screen off the far ones.
    """
    d2 = jnp.sum(((data.X - x[None, :]) * jnp.exp(-log_length_scale)[None, :]) ** 2, axis=1)
    rows = jax.lax.top_k(jnp.where(data.mask, -d2, -jnp.inf), m)[1]
    return Dataset(data.X[rows], data.y[rows], data.mask[rows])


@typecheck
def fit_hyperparameters(
    kernel: BaseKernel,
    params: GPParams,
    data: Dataset,
    jitter,
    n_steps: int,
    learning_rate: float = 0.1,
    max_points: int = MAX_FIT_POINTS,
    fresh_starts=True,
) -> GPParams:
    """Maximum a posteriori hyperparameters: `n_steps` of Adam from three starts, the best kept.

    One start is `params` (the last fit: cheap refinement as data arrive); two start from
    the prior's centre (`prior_mode`), one with little noise and one with much. A fit
    that only ever continues from the last one stays in the basin it found early: a
    length scale grown so long that a parameter looks irrelevant and is never varied
    again, or noise explained away by short length scales. Every iterate is scored by
    its posterior density (from the factorisation its gradient needs anyway) and the
    best one is returned, so the result is never worse than `params`. Buffers longer
    than `max_points` are fitted on `spread_subset` of their observations, so the cost
    of a step stops growing with the number of observations. With `fresh_starts` false
    (a traced bool is fine) only `params` is refined, a third of the cost. The fit
    takes the targets as they are, with a zero prior mean, whatever prior mean `fit`
    is given afterwards (see `BoundaryMean`).
    """
    adam = optax.adam(learning_rate)
    data = fit_subset(data, max_points)

    def step(carry, _):
        p, s, best_p, best_v = carry
        v, g = _value_and_grad(kernel, p, data, jitter)
        better = v < best_v
        best_p = jax.tree_util.tree_map(lambda a, b: jnp.where(better, a, b), p, best_p)
        best_v = jnp.where(better, v, best_v)
        # A NaN gradient (failed factorisation) must not poison the parameters.
        g = jax.tree_util.tree_map(lambda x: jnp.where(jnp.isfinite(x), x, 0.0), g)
        u, s = adam.update(g, s, p)
        return (optax.apply_updates(p, u).clip(), s, best_p, best_v), None

    def run(p):
        inf = jnp.asarray(jnp.inf, p.log_output_scale.dtype)
        # One step more than asked: the last one only scores the final iterate.
        (_, _, best_p, best_v), _ = jax.lax.scan(
            step, (p, adam.init(p), p, inf), None, length=n_steps + 1
        )
        return best_p, best_v

    d, dtype = params.log_length_scale.shape[0], params.log_length_scale.dtype
    fresh = prior_mode(d, dtype)
    noisy = GPParams(
        fresh.log_length_scale, fresh.log_output_scale, jnp.asarray(_NOISY_START, dtype)
    )
    starts = jax.tree_util.tree_map(lambda *a: jnp.stack(a), params.clip(), fresh, noisy)

    def run_if(start):
        p, active = start
        return jax.lax.cond(active, run, lambda p: (p, jnp.asarray(jnp.inf, dtype)), p)

    # One start after another: under `vmap` the factorisations and their retry
    # (`_cholesky`'s `cond`) would all run for every start, several times the cost. The
    # fresh starts are skipped (and cannot win) unless asked for: one traced copy of the
    # Adam loop serves both cases, which keeps the update's program small.
    fresh_too = jnp.asarray(fresh_starts, bool)
    active = jnp.stack([jnp.asarray(True), fresh_too, fresh_too])
    fitted, values = jax.lax.map(run_if, (starts, active))
    return jax.tree_util.tree_map(lambda a: a[jnp.argmin(values)], fitted)


# The noisy fresh start: a tenth of the standardised variance.
_NOISY_START = math.log(0.1)


@typecheck
def maximize_acquisition(
    score: Callable[[Float[Array, "q d"]], Float[Array, " q"]],
    starts: Float[Array, "r d"],
    n_steps: int,
) -> tuple[Float[Array, "r d"], Float[Array, " r"]]:
    """Refine each start with `n_steps` of L-BFGS on `score`, inside the unit cube.

    Returns the best iterate of each refinement and its score. The start is the first
    iterate, so no result is worse than its start; a non-finite score never wins.
    """
    # L-BFGS directions without a line search: each step is capped at 0.1 of the unit
    # cube (a trust region), and the best iterate is kept. One value-and-gradient per
    # step, traced once (the loop also scores the last iterate, so nothing else calls
    # `score`), keeps this cheap to run and to compile.
    lbfgs = optax.chain(optax.scale_by_lbfgs(), optax.scale(-1.0), optax.clip_by_global_norm(0.1))

    def neg(x):
        return -score(jnp.clip(x, 0.0, 1.0)[None, :])[0]

    def refine(x0):
        def step(carry, _):
            x, s, best_x, best_v = carry
            v, g = jax.value_and_grad(neg)(x)
            g = jnp.where(jnp.isfinite(g), g, 0.0)
            better = v < best_v
            best_x, best_v = jnp.where(better, x, best_x), jnp.where(better, v, best_v)
            u, s = lbfgs.update(g, s, x)
            return (optax.apply_updates(x, u), s, best_x, best_v), None

        inf = jnp.asarray(jnp.inf, x0.dtype)
        init = (x0, lbfgs.init(x0), x0, inf)
        (_, _, best_x, best_v), _ = jax.lax.scan(step, init, None, length=n_steps + 1)
        return jnp.clip(best_x, 0.0, 1.0), -best_v

    return jax.vmap(refine)(starts)
