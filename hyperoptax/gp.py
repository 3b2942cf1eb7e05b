"""The shared Gaussian-process core: pure functions on arrays.

Nothing here knows about search spaces or optimizers. Inputs live in the unit cube,
targets are already standardised, and a boolean mask marks which rows of the fixed-size
buffers hold observations, so every shape is static under `jit`, `scan` and `vmap`.
Masked rows are decoupled from the rest (identity rows of the Gram matrix, zero targets),
which makes them invisible to the posterior and to the marginal likelihood.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Bool, Float

from ._typing import typecheck
from .kernels import BaseKernel

__all__ = [
    "GPParams",
    "Posterior",
    "fit",
    "predict",
    "neg_log_marginal_likelihood",
    "fit_hyperparameters",
    "maximize_acquisition",
]

# Hyperparameter bounds on the unit cube with standardised targets.
LOG_LS_BOUNDS = (math.log(0.01), math.log(100.0))
LOG_OUTPUT_BOUNDS = (math.log(0.05), math.log(20.0))
# Noise floor: 1e-6 of the standardised variance, in float32 and float64 alike; a lower
# floor in float64 let the model grow overconfident and stall in local optima.
LOG_NOISE_MIN = math.log(1e-6)
LOG_NOISE_MAX = math.log(0.5)


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
            jnp.clip(self.log_noise, LOG_NOISE_MIN, LOG_NOISE_MAX),
        )


class Posterior(eqx.Module):
    """A fitted GP: training inputs, mask, Cholesky factor and `K^-1 y`."""

    X: Float[Array, "n d"]
    mask: Bool[Array, " n"]
    chol: Float[Array, "n n"]
    alpha: Float[Array, " n"]
    params: GPParams


def _cross(kernel: BaseKernel, params: GPParams, A, B):
    sf2 = jnp.exp(2 * params.log_output_scale)
    return sf2 * kernel(A, B, jnp.exp(params.log_length_scale))


def _masked_gram(kernel, params, X, mask, jitter):
    K = _cross(kernel, params, X, X)
    both = mask[:, None] & mask[None, :]
    diag = jnp.where(mask, jnp.exp(params.log_noise) + jitter, 1.0)
    return jnp.where(both, K, 0.0) + jnp.diag(diag)


def _cholesky(K, jitter):
    L = jnp.linalg.cholesky(K)
    # Rare numerical failure: retry once with a much larger diagonal.
    eye = jnp.eye(K.shape[0], dtype=K.dtype)
    return jax.lax.cond(
        jnp.any(jnp.isnan(L)),
        lambda: jnp.linalg.cholesky(K + (1e3 * jitter + 1e-4) * eye),
        lambda: L,
    )


@typecheck
def fit(
    kernel: BaseKernel,
    params: GPParams,
    X: Float[Array, "n d"],
    y: Float[Array, " n"],
    mask: Bool[Array, " n"],
    jitter,
) -> Posterior:
    """Condition the GP on the masked observations `(X, y)`."""
    L = _cholesky(_masked_gram(kernel, params, X, mask, jitter), jitter)
    # Triangular solves rather than an explicit inverse: float32 needs the accuracy
    # to resolve the objective near the optimum.
    alpha = jax.scipy.linalg.cho_solve((L, True), jnp.where(mask, y, 0.0))
    return Posterior(X, mask, L, alpha, params)


@typecheck
def predict(
    kernel: BaseKernel, post: Posterior, Xq: Float[Array, "q d"]
) -> tuple[Float[Array, " q"], Float[Array, " q"]]:
    """Posterior mean and standard deviation of the latent function at `Xq`."""
    Ks = jnp.where(post.mask[:, None], _cross(kernel, post.params, post.X, Xq), 0.0)
    mean = Ks.T @ post.alpha
    v = jax.scipy.linalg.solve_triangular(post.chol, Ks, lower=True)
    var = jnp.exp(2 * post.params.log_output_scale) - jnp.sum(v * v, axis=0)
    std = jnp.sqrt(jnp.maximum(var, jnp.finfo(var.dtype).tiny))
    return mean, std


@typecheck
def neg_log_marginal_likelihood(
    kernel: BaseKernel,
    params: GPParams,
    X: Float[Array, "n d"],
    y: Float[Array, " n"],
    mask: Bool[Array, " n"],
    jitter,
) -> Float[Array, ""]:
    """Negative log marginal likelihood of the masked observations."""
    post = fit(kernel, params, X, y, mask, jitter)
    y = jnp.where(mask, y, 0.0)
    n = jnp.sum(mask)
    return (
        0.5 * jnp.dot(y, post.alpha)
        + jnp.sum(jnp.log(jnp.diagonal(post.chol)))
        + 0.5 * n * math.log(2 * math.pi)
    )


def _neg_log_prior(params: GPParams) -> Float[Array, ""]:
    # Length scales: log-normal prior with median 0.6 * sqrt(d) on the unit cube, growing
    # with sqrt(d) so the model stays usable in many dimensions, yet short enough that a
    # boundary slope is not mistaken for a global trend. Output scale near 1; noise
    # pulled towards small.
    d = params.log_length_scale.shape[0]
    mu, sigma = -0.5 + 0.5 * math.log(d), 1.0
    ls = 0.5 * jnp.sum(((params.log_length_scale - mu) / sigma) ** 2)
    out = 0.5 * (params.log_output_scale / 1.0) ** 2
    noise = 0.5 * ((params.log_noise - math.log(1e-4)) / 3.0) ** 2
    return ls + out + noise


def _objective_grad(kernel, params, X, y, mask, jitter) -> GPParams:
    """Gradient of NLL + negative log prior in closed form, one factorisation per call.

    With `W = (K^-1 - a a^T) / 2`, `a = K^-1 y`, the NLL gradient is `sum(W * dK/dp)`.
    For a stationary kernel `K = s^2 k(r^2)`, `r^2 = sum_k (dx_k / l_k)^2`, the derivatives
    are `2 K` for log s, `noise` on the diagonal for log noise, and
    `-2 s^2 k'(r^2) (dx_k / l_k)^2` for log l_k; `k'` comes from a JVP of the kernel's
    profile, so every kernel gets this for free. Unlike reverse-mode through the
    Cholesky, nothing is differentiated but the elementwise profile.
    """
    n, f = X.shape[0], X.dtype
    ls = jnp.exp(params.log_length_scale)
    sf2 = jnp.exp(2 * params.log_output_scale)
    noise = jnp.exp(params.log_noise)
    D2 = kernel.sqdist_terms(X, X, ls)
    r2 = jnp.sum(D2, axis=-1)
    prof, dprof = jax.jvp(kernel.profile, (r2,), (jnp.ones_like(r2),))
    both = mask[:, None] & mask[None, :]
    K = jnp.where(both, sf2 * prof, 0.0) + jnp.diag(jnp.where(mask, noise + jitter, 1.0))
    eye = jnp.eye(n, dtype=f)
    L_inv = jax.scipy.linalg.solve_triangular(_cholesky(K, jitter), eye, lower=True)
    K_inv = L_inv.T @ L_inv
    a = K_inv @ jnp.where(mask, y, 0.0)
    W = jnp.where(both, 0.5 * (K_inv - a[:, None] * a[None, :]), 0.0)
    prior = jax.grad(_neg_log_prior)(params)
    return GPParams(
        -2.0 * sf2 * jnp.einsum("ij,ijk->k", W * dprof, D2) + prior.log_length_scale,
        2.0 * sf2 * jnp.sum(W * prof) + prior.log_output_scale,
        noise * jnp.trace(W) + prior.log_noise,
    )


@typecheck
def fit_hyperparameters(
    kernel: BaseKernel,
    params: GPParams,
    X: Float[Array, "n d"],
    y: Float[Array, " n"],
    mask: Bool[Array, " n"],
    jitter,
    n_steps: int,
    learning_rate: float = 0.1,
) -> GPParams:
    """Maximise the marginal likelihood (with weak priors) by `n_steps` of Adam from `params`."""
    opt = optax.adam(learning_rate)
    y = jnp.where(mask, y, 0.0)

    def step(carry, _):
        p, s = carry
        g = _objective_grad(kernel, p, X, y, mask, jitter)
        # A NaN gradient (failed factorisation) must not poison the parameters.
        g = jax.tree_util.tree_map(lambda x: jnp.where(jnp.isfinite(x), x, 0.0), g)
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u).clip(), s), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=n_steps)
    return params


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
    opt = optax.chain(optax.scale_by_lbfgs(), optax.scale(-1.0), optax.clip_by_global_norm(0.1))

    def neg(x):
        return -score(jnp.clip(x, 0.0, 1.0)[None, :])[0]

    def refine(x0):
        def step(carry, _):
            x, s, best_x, best_v = carry
            v, g = jax.value_and_grad(neg)(x)
            g = jnp.where(jnp.isfinite(g), g, 0.0)
            better = v < best_v
            best_x, best_v = jnp.where(better, x, best_x), jnp.where(better, v, best_v)
            u, s = opt.update(g, s, x)
            return (optax.apply_updates(x, u), s, best_x, best_v), None

        inf = jnp.asarray(jnp.inf, x0.dtype)
        init = (x0, opt.init(x0), x0, inf)
        (_, _, best_x, best_v), _ = jax.lax.scan(step, init, None, length=n_steps + 1)
        return jnp.clip(best_x, 0.0, 1.0), -best_v

    return jax.vmap(refine)(starts)
