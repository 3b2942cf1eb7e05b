"""Stationary covariance functions.

A kernel only evaluates covariances; fitting and prediction live in `hyperoptax.gp`.
"""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ._checks import check_real, plain

__all__ = ["BaseKernel", "RBF", "Matern", "Unordered"]


def _per_dim(length_scale, x):
    return jnp.broadcast_to(jnp.asarray(length_scale, x.dtype), x.shape[-1:])


def _safe_sqrt(d2):
    # The double `where` keeps the gradient at zero distance finite (zero) instead of NaN.
    positive = d2 > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, d2, 1.0)), 0.0)


class BaseKernel(eqx.Module):
    """Abstract base class for stationary, unit-variance positive-definite kernels.

    `kernel(x, y, length_scale=None)` maps `(n, d)` and `(m, d)` inputs to an `(n, m)`
    covariance matrix. `length_scale` is a scalar or one value per dimension (ARD); it
    defaults to the kernel's own `length_scale`.
    """

    length_scale: eqx.AbstractVar[ArrayLike]

    def __check_init__(self):
        check_real(type(self).__name__, "length_scale", self.length_scale, "positive")

    @abc.abstractmethod
    def profile(self, d2: Float[Array, ...]) -> Float[Array, ...]:
        """Covariance as a function of the squared scaled distance."""

    def dim_sqdist(
        self, xk: Float[Array, " n"], yk: Float[Array, " m"], k: Array
    ) -> Float[Array, "n m"]:
        """Unscaled squared distance along dimension `k` (a traced index).

        Direct differences: exact at small distances, which float32 needs near the
        optimum (the |x|^2 + |y|^2 - 2 x.y form loses them to cancellation).
        """
        return (xk[:, None] - yk[None, :]) ** 2

    def _scan_dims(self, x, y, length_scale, body, init):
        ls = _per_dim(self.length_scale if length_scale is None else length_scale, x)
        d = x.shape[-1]

        def step(carry, inputs):
            xk, yk, lk, k = inputs
            return body(carry, self.dim_sqdist(xk, yk, k) / (lk * lk))

        # One dimension per step: XLA's CPU backend evaluates an (n, m, d) broadcast
        # reduced over d an order of magnitude slower than d passes over (n, m), and
        # the loop compiles once whatever d is.
        return jax.lax.scan(step, init, (x.T, y.T, ls, jnp.arange(d)), unroll=d if d <= 8 else 1)

    def sqdist(
        self, x: Float[Array, "n d"], y: Float[Array, "m d"], length_scale: ArrayLike | None = None
    ) -> Float[Array, "n m"]:
        """Squared scaled distance `sum_k dim_sqdist_k / l_k^2`; the covariance is its `profile`."""
        init = jnp.zeros((x.shape[0], y.shape[0]), x.dtype)
        return self._scan_dims(x, y, length_scale, lambda acc, t: (acc + t, None), init)[0]

    def sqdist_contract(
        self,
        x: Float[Array, "n d"],
        y: Float[Array, "m d"],
        length_scale: ArrayLike | None,
        weights: Float[Array, "n m"],
    ) -> Float[Array, " d"]:
        """`sum_ij weights_ij * dim_sqdist_k(i, j) / l_k^2` for each dimension `k`.

        The GP core's closed-form length-scale gradient is built from these.
        """
        return self._scan_dims(x, y, length_scale, lambda c, t: (c, jnp.sum(weights * t)), None)[1]

    def __call__(
        self, x: Float[Array, "n d"], y: Float[Array, "m d"], length_scale: ArrayLike | None = None
    ) -> Float[Array, "n m"]:
        return self.profile(self.sqdist(jnp.atleast_2d(x), jnp.atleast_2d(y), length_scale))


class RBF(BaseKernel):
    """Radial basis function (squared-exponential) kernel: `exp(-r^2 / 2)`."""

    length_scale: ArrayLike = 1.0

    def profile(self, d2):
        return jnp.exp(-0.5 * d2)


class Matern(BaseKernel):
    """Matérn kernel family with smoothness `nu` in {0.5, 1.5, 2.5, inf}.

    `nu=0.5` is the exponential kernel (rough functions), `nu=2.5` the usual choice for
    hyperparameter surfaces, `nu=inf` equals `RBF`.
    """

    length_scale: ArrayLike = 1.0
    nu: float = eqx.field(default=2.5, static=True, converter=plain)

    def __check_init__(self):
        if self.nu not in (0.5, 1.5, 2.5, math.inf):
            raise ValueError(f"Matern: `nu` must be one of 0.5, 1.5, 2.5 or inf, got {self.nu!r}.")

    def profile(self, d2):
        if self.nu == math.inf:
            return jnp.exp(-0.5 * d2)
        r = _safe_sqrt(d2)
        if self.nu == 0.5:
            return jnp.exp(-r)
        if self.nu == 1.5:
            s = math.sqrt(3.0) * r
            return (1.0 + s) * jnp.exp(-s)
        s = math.sqrt(5.0) * r
        return (1.0 + s + s * s / 3.0) * jnp.exp(-s)


class Unordered(BaseKernel):
    """`base` with some dimensions treated as unordered categories.

    A dimension with `n_choices[k] = c > 0` holds one of `c` categories on the unit
    interval (category `i` owns the cell `[i / c, (i + 1) / c)`); its distance term is
    `(1 / l_k)^2` between different categories and 0 within one, so no category lies
    between two others. Other dimensions (`n_choices[k] = 0`) are as in `base`. The
    Bayesian search wraps its kernel in this when the space has a `CategoricalSpace`.
    """

    length_scale: ArrayLike
    base: BaseKernel
    n_choices: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, base: BaseKernel, n_choices: tuple[int, ...]):
        self.length_scale = base.length_scale
        self.base = base
        self.n_choices = tuple(int(c) for c in n_choices)

    def profile(self, d2):
        return self.base.profile(d2)

    def dim_sqdist(self, xk, yk, k):
        c = jnp.asarray(self.n_choices, xk.dtype)[k]

        def cell(u):
            return jnp.minimum(jnp.floor(jnp.clip(u, 0.0, 1.0) * c), c - 1.0)

        differ = (cell(xk)[:, None] != cell(yk)[None, :]).astype(xk.dtype)
        return jnp.where(c > 0, differ, (xk[:, None] - yk[None, :]) ** 2)
