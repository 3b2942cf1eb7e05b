"""Acquisition functions and Kriging Believer hallucination strategies.

Both work on the model's internal scale. `BayesianSearch` orients the observed results
so that larger is better, warps and standardises them for the GP, and then rescales so
that 1.0 is the range of results observed so far times the number of parameters (an
improvement on the best by 1.0 would beat it by the whole observed range once per
parameter). Acquisitions and hallucinations get the posterior `mean`, `std` and the
incumbent `y_max` on that scale, so absolute margins such as `PI(xi=0.01)` mean "1% of
the observed range per parameter" for any objective. The incumbent is the best value
the model believes was observed: the largest posterior mean at the observed points,
which is the best result itself unless the fitted noise explains part of the results.
Within a parallel batch it also counts the pseudo-observations of the batch's earlier
picks (Kriging Believer takes them for real).
"""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._checks import check_real

__all__ = [
    "BaseAcquisition",
    "EI",
    "PI",
    "UCB",
    "BaseHallucination",
    "MeanHallucination",
    "SampleHallucination",
    "UCBHallucination",
    "ConstantHallucination",
]

# Floor on the posterior std: keeps z finite where the model is (nearly) certain.
_MIN_STD = 1e-9


def _z(mean, std, y_max, margin, owner):
    if y_max is None:
        raise ValueError(f"{owner}: `y_max` (the best value observed so far) is required.")
    std = jnp.maximum(std, _MIN_STD)
    return (mean - y_max - margin) / std, std


# Where `_erfcx` turns from `exp(x^2) erfc(x)` to its asymptotic series: below it
# `erfc` stays normal in float32 (2e-17 at 6), above it the series' first omitted
# term is below float32's epsilon.
_ERFCX_SERIES = 6.0


def _erfcx(x):
    """`exp(x^2) erfc(x)` for `x >= 0`. (`jax.scipy.special.erfcx` returns 0 for
    float32 arguments between about 9.2 and 9.4, where `erfc` underflows before its
    own series takes over.)"""
    xd = jnp.where(x < _ERFCX_SERIES, x, _ERFCX_SERIES)
    direct = jnp.exp(xd * xd) * jax.lax.erfc(xd)
    xs = jnp.where(x < _ERFCX_SERIES, _ERFCX_SERIES, x)
    u = 1.0 / (2.0 * xs * xs)
    # 1 - u + 3 u^2 - 15 u^3 + 105 u^4 - 945 u^5 + 10395 u^6, in Horner form.
    series = 1.0
    for k in (11.0, 9.0, 7.0, 5.0, 3.0, 1.0):
        series = 1.0 - k * u * series
    return jnp.where(x < _ERFCX_SERIES, direct, series / (xs * math.sqrt(math.pi)))


def _upper_tail(z):
    """`(log_phi, t, e)`: `log phi(z)`, `t = |z|` and `e = erfcx(t / sqrt 2)`.

    Phi and EI's `h` below are read from this one scaled complementary error function:
    `Phi(-t) = phi(z) sqrt(pi / 2) e`, finite and accurate for every `z` (no `exp(z^2)`
    is formed). One `erfcx` in place of the several error functions inside `ndtr` and
    `log_ndtr` keeps the compiled suggestion small: each error function is a long
    polynomial, in every program that scores a point and again in its gradient
    (benchmarks/RESULTS.md, "Compile time"). `t` is `-z` or `z` by a `where`, not
    `abs`, so that the gradient at `z = 0` is the right one-sided one.
    """
    log_phi = -0.5 * z * z - 0.5 * math.log(2 * math.pi)
    t = jnp.where(z < 0, -z, z)
    return log_phi, t, _erfcx(t / math.sqrt(2))


def _log_ndtr(z):
    """log Phi(z): the lower tail's own logarithm below 0, `log1p` of the small
    complement above."""
    log_phi, _, e = _upper_tail(z)
    log_tail = log_phi + 0.5 * math.log(math.pi / 2) + jnp.log(e)  # log Phi(-|z|)
    return jnp.where(z < 0, log_tail, jnp.log1p(-jnp.exp(log_tail)))


def _ndtr(z):
    log_phi, _, e = _upper_tail(z)
    tail = jnp.exp(log_phi) * math.sqrt(math.pi / 2) * e  # Phi(-|z|)
    return jnp.where(z < 0, tail, 1.0 - tail)


def _log_h(z):
    """log(phi(z) + z * Phi(z)), accurate and with useful gradients for very negative z.

    `h(z) = max(z, 0) + phi(z) g` with `g = 1 - |z| Phi(-|z|) / phi(z)` in (0, 1], from
    one `erfcx` (`_upper_tail`). `g` loses digits to cancellation as `|z|` grows (it
    tends to `1 / z^2`), so below -10 the asymptotic series takes over. Each branch sees
    its input clipped to its own range, so no branch feeds a NaN into the gradient.
    """
    zc = jnp.where(z > -10.0, z, -10.0)
    log_phi, t, e = _upper_tail(zc)
    g = 1.0 - t * math.sqrt(math.pi / 2) * e
    # -10 < z < 0: log phi(z) + log g.
    below = log_phi + jnp.log(jnp.where(z < 0, g, 1.0))
    # z >= 0: log(z + phi(z) g); phi underflows harmlessly for large z.
    above = jnp.log(jnp.where(z < 0, 0.0, z) + jnp.exp(log_phi) * g)
    # z <= -10: asymptotic series phi(z) / z^2 * (1 - 3/z^2 + 15/z^4 - 105/z^6 + 945/z^8).
    za = jnp.where(z > -10.0, -10.0, z)
    u = 1.0 / (za * za)
    series = 1.0
    for k in (9.0, 7.0, 5.0, 3.0):
        series = 1.0 - k * u * series
    asym = -0.5 * za * za - 0.5 * math.log(2 * math.pi) + jnp.log(u) + jnp.log(series)
    return jnp.where(z >= 0, above, jnp.where(z > -10.0, below, asym))


class BaseAcquisition(eqx.Module):
    """Base class for acquisition functions.

    `acq(mean, std, y_max=None)` scores candidates from the posterior mean and standard
    deviation (any matching shapes); larger is more promising. `score` is a monotone
    transform of the same quantity that `BayesianSearch` maximises: for EI and PI its
    logarithm, which stays finite and keeps a gradient where the value underflows.
    """

    @abc.abstractmethod
    def __call__(
        self, mean: Float[Array, ...], std: Float[Array, ...], y_max=None
    ) -> Float[Array, ...]:
        raise NotImplementedError

    def score(
        self, mean: Float[Array, ...], std: Float[Array, ...], y_max=None
    ) -> Float[Array, ...]:
        return self(mean, std, y_max)


class EI(BaseAcquisition):
    """Expected Improvement over `y_max + xi * std`.

    `xi` is an exploration margin in units of the posterior standard deviation at the
    candidate: it asks uncertain points for a proportionate improvement and fades where
    the model is sure, so fine improvements near the incumbent stay reachable.
    """

    xi: ArrayLike = 0.01

    def __check_init__(self):
        check_real(type(self).__name__, "xi", self.xi, "non-negative")

    def __call__(self, mean, std, y_max=None):
        z, std = _z(mean, std, y_max, self.xi * std, "EI")
        return std * jnp.exp(_log_h(z))

    def score(self, mean, std, y_max=None):
        z, std = _z(mean, std, y_max, self.xi * std, "EI")
        return jnp.log(std) + _log_h(z)


class PI(BaseAcquisition):
    """Probability of Improvement over `y_max + xi`.

    `xi` is an absolute margin on the model's internal scale, a fraction of the range of
    results observed so far per parameter: in a search over 5 parameters the default
    asks for an improvement of 5% of that range. The margin must not shrink with the
    posterior std, and must not be tiny: PI is maximised about `xi / slope` away from
    the incumbent, so a small margin creeps along in small steps and stops exploring,
    and the room to explore grows with the number of parameters.
    """

    xi: ArrayLike = 0.01

    def __check_init__(self):
        check_real(type(self).__name__, "xi", self.xi, "non-negative")

    def __call__(self, mean, std, y_max=None):
        z, _ = _z(mean, std, y_max, self.xi, "PI")
        return _ndtr(z)

    def score(self, mean, std, y_max=None):
        z, _ = _z(mean, std, y_max, self.xi, "PI")
        return _log_ndtr(z)


class UCB(BaseAcquisition):
    """Upper Confidence Bound `mean + kappa * std` (`y_max` is ignored)."""

    kappa: ArrayLike = 2.0

    def __check_init__(self):
        check_real(type(self).__name__, "kappa", self.kappa, "non-negative")

    def __call__(self, mean, std, y_max=None):
        return mean + self.kappa * std


def _scalar(x):
    """Shape `(1,)` (how hyperoptax 0.2.0 passed `mean` and `std`) -> shape `()`."""
    return jnp.reshape(x, ()) if jnp.shape(x) == (1,) else x


class BaseHallucination(eqx.Module):
    """Base class for Kriging Believer hallucination strategies.

    `h(mean, std, key, y_max) -> scalar` gives the pseudo-observation recorded at a point
    already chosen for the current batch, so the next pick of the batch goes elsewhere.
    `BayesianSearch` passes `mean`, `std` and `y_max` as scalars (shape `()`) and needs
    a scalar back; a result of shape `(1,)` (what hallucinations written for
    hyperoptax 0.2.0 return) is accepted. The built-in ones return a scalar for scalar
    or `(1,)`-shaped inputs.
    All values are on the model's internal scale (larger is better, 1.0 is the observed
    range of results per parameter; see the module docstring); `y_max` is the incumbent,
    the largest posterior mean at the observed points and at the batch's earlier
    pseudo-observations. Any callable with this signature can be used; subclassing is
    optional.
    """

    @abc.abstractmethod
    def __call__(
        self, mean: Float[Array, ""], std: Float[Array, ""], key: PRNGKeyArray, y_max
    ) -> Float[Array, ""]:
        raise NotImplementedError


class MeanHallucination(BaseHallucination):
    """Classical Kriging Believer: hallucinate with the GP posterior mean."""

    def __call__(self, mean, std, key, y_max):
        return _scalar(mean)


class SampleHallucination(BaseHallucination):
    """Randomised Kriging Believer: hallucinate with a posterior sample, `mean + std * N(0, 1)`."""

    def __call__(self, mean, std, key, y_max):
        return _scalar(mean + std * jax.random.normal(key, jnp.shape(mean), jnp.result_type(mean)))


class UCBHallucination(BaseHallucination):
    """Optimistic hallucination: `mean + kappa * std`."""

    kappa: ArrayLike = 2.0

    def __check_init__(self):
        check_real(type(self).__name__, "kappa", self.kappa, "non-negative")

    def __call__(self, mean, std, key, y_max):
        return _scalar(mean + self.kappa * std)


class ConstantHallucination(BaseHallucination):
    """Constant liar: hallucinate with `y_max`, or with a fixed `value` when given.

    A fixed `value` is on the model's internal scale (larger is better, centred on the
    typical observed result, 1.0 is the observed range per parameter).
    """

    value: ArrayLike | None = None

    def __check_init__(self):
        if self.value is not None:
            check_real(type(self).__name__, "value", self.value)

    def __call__(self, mean, std, key, y_max):
        value = y_max if self.value is None else self.value
        return _scalar(jnp.broadcast_to(jnp.asarray(value, jnp.result_type(mean)), jnp.shape(mean)))
