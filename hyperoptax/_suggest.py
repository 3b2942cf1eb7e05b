"""The suggestion engine of `BayesianSearch`: candidates, acquisition maximisation and
Kriging Believer batches.

Everything here works on the unit cube and on the model's targets (`_targets.py`); the
optimizer's settings (`acquisition`, `hallucination`, `n_candidates`, `n_restarts`,
`n_lbfgs_steps`, `n_parallel`, `jitter`) are read from the `BayesianSearch` passed in.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri
from jaxtyping import Array

from . import _random, gp
from .kernels import BaseKernel
from .spaces import FlatSpace

if TYPE_CHECKING:
    from .bayesian import BayesianSearch

__all__ = ["incumbent", "candidates", "restart_indices", "believer_batch"]

# One candidate in `LOCAL_EVERY` is scattered around the incumbent, the others are
# uniform; `candidates` and `restart_indices` must agree on it.
LOCAL_EVERY = 4
# Standard deviations of the local candidates: log-uniform between these.
_LOCAL_RADII = (1e-3, 0.2)


def _n_local(n: int) -> int:
    return n // LOCAL_EVERY


def incumbent(post: gp.Posterior, z, jitter) -> Array:
    """The best value the model believes was observed: the largest posterior mean at the
    observed points (`-inf` when there are none).

    It is the best result itself when the model interpolates the results. When the fit
    explains part of them as noise (a rugged objective such as Ackley's), the best result
    is partly luck that no point can be expected to beat; measured against it, EI and PI
    only see improvement where the model is most uncertain, in the corners of the cube
    (benchmarks/RESULTS.md, "The incumbent the acquisitions measure against").
    """
    return jnp.max(jnp.where(post.mask, gp.fitted_mean(post, z, jitter), -jnp.inf))


def candidates(key, x_best, n: int, d: int) -> Array:
    """`n` points: uniform ones, then one in `LOCAL_EVERY` scattered around the incumbent.

    The local points are Gaussian around the incumbent with a standard deviation
    log-uniform in `_LOCAL_RADII` (fine exploitation to a wide neighbourhood). All of it
    comes from one uniform draw (normals by the inverse CDF), because every
    random-number call compiles its own generator.
    """
    n_local = _n_local(n)
    u = _random.uniform(key, (n, d + 1), x_best.dtype)
    uniform, local, r = u[: n - n_local, :d], u[n - n_local :, :d], u[n - n_local :, d:]
    low, high = (math.log(v) for v in _LOCAL_RADII)
    radius = jnp.exp(low + r * (high - low))
    eps = jnp.finfo(x_best.dtype).eps
    local = x_best[None, :] + radius * ndtri(jnp.clip(local, eps, 1.0 - eps))
    return jnp.concatenate([uniform, jnp.clip(local, 0.0, 1.0)])


def restart_indices(scores, r: int) -> Array:
    """The best `r` of `candidates`' points to refine, half of them from the uniform part.

    The near-incumbent candidates usually score best, so a plain top-`r` would refine
    only around the incumbent and miss a better basin that a uniform candidate found.
    """
    n = scores.shape[0]
    n_uniform = n - _n_local(n)
    r_uniform = (r + 1) // 2
    if r < 2 or r_uniform > n_uniform or r - r_uniform > n - n_uniform:
        return jax.lax.top_k(scores, r)[1]
    top_u = jax.lax.top_k(scores[:n_uniform], r_uniform)[1]
    top_l = jax.lax.top_k(scores[n_uniform:], r - r_uniform)[1] + n_uniform
    return jnp.concatenate([top_u, top_l])


def _snap(flat: FlatSpace, x):
    """Integer and discrete columns to their cell centres, so that scores are honest."""
    return flat.to_unit(flat.from_unit(x)) if flat.integer.any() else x


def _score(search: BayesianSearch, kernel: BaseKernel, post: gp.Posterior, unit, y_best, Xq):
    """The acquisition's score at `Xq` (`-inf` where it is NaN)."""
    mean, std = gp.predict(kernel, post, Xq)
    s = search.acquisition.score(mean / unit, std / unit, y_best / unit)
    return jnp.where(jnp.isnan(s), -jnp.inf, s)


def _penalised(flat: FlatSpace, scores, Xq, X, m):
    """`scores`, with `-inf` where a snapped point coincides with one already taken."""
    if not flat.integer.any():
        return scores

    # Column by column on `(q, n)` matrices: XLA's CPU backend is several times slower on
    # the `(q, n, d)` broadcast (as for the kernel's distances, `BaseKernel.dim_sqdist`).
    def same_column(j, same):
        return same & (Xq[:, j][:, None] == X[:, j][None, :])

    same = jax.lax.fori_loop(
        0, Xq.shape[1], same_column, jnp.broadcast_to(m, (Xq.shape[0], m.shape[0]))
    )
    return jnp.where(jnp.any(same, axis=1), -jnp.inf, scores)


def _pinned(fixed, X):
    """`X` with the columns where `fixed` is a number set to it (`fixed` NaN elsewhere)."""
    return X if fixed is None else jnp.where(jnp.isnan(fixed), X, fixed)


def _pick(
    search: BayesianSearch,
    flat: FlatSpace,
    kernel,
    post,
    unit,
    y_best,
    data,
    x_best,
    key,
    use_gp,
    fixed=None,
):
    """One point: the best of the candidates and of their L-BFGS refinements, all scored
    on the posterior `post` of every observation (a long buffer uses `_pick_local`).

    While `use_gp` is false it is the first (uniformly random) candidate instead. Columns
    where `fixed` is a number stay at that value (the score sees them pinned, so their
    gradient is zero and the refinement leaves them). `data` holds the observations
    `post` is conditioned on.
    """

    def score_on(post, Xq):
        return _score(search, kernel, post, unit, y_best, _pinned(fixed, Xq))

    def score(Xq):
        return score_on(post, Xq)

    X, m = data.X, data.mask
    cands = _snap(flat, candidates(key, x_best, search.n_candidates, flat.n_params))
    cands = _pinned(fixed, cands)
    s_c = _penalised(flat, score(cands), cands, X, m)
    if search.n_restarts > 0 and search.n_lbfgs_steps > 0:
        starts = cands[restart_indices(s_c, search.n_restarts)]
        refined, s_r = gp.maximize_acquisition(score, starts, search.n_lbfgs_steps)
        refined = _pinned(fixed, refined)
        if flat.integer.any():  # snapping moves the point: score it where it will be evaluated
            refined = _snap(flat, refined)
            s_r = _penalised(flat, score(refined), refined, X, m)
        cands = jnp.concatenate([cands, refined])
        s_c = jnp.concatenate([s_c, jnp.where(jnp.isnan(s_r), -jnp.inf, s_r)])
    return jnp.where(use_gp, cands[jnp.argmax(s_c)], cands[0])


class _Local(eqx.Module):
    """The model of a long buffer, read through neighbourhoods (no whole posterior).

    Beyond `gp.MAX_REFINE_POINTS` rows a whole posterior costs a factorisation of the
    buffer, O(n^3), and one triangular solve per scored point against its n x n factor:
    most of a suggestion's time at 1000 observations, all of it at 5000. Near a point,
    a GP conditioned on the observations nearest it (in length scales) is close to the
    one conditioned on all of them, because with a Matern or RBF kernel the nearest
    observations screen off the far ones (local approximate GPs: Gramacy and Apley,
    2015). So every point that can be picked is scored on the posterior of its own
    `gp.LOCAL_SCORE_POINTS` nearest observations, and the candidates are ranked first on
    two cheaper models to choose which ones to score that way (`_pick_local`).
    """

    kernel: BaseKernel
    params: gp.GPParams
    mean: gp.BoundaryMean
    data: gp.Dataset
    jitter: float | Array

    def near(self, x, m: int) -> gp.Posterior:
        """The posterior on the `m` observations nearest `x`."""
        near = gp.nearest(self.data, x, self.params.log_length_scale, m)
        return gp.fit(self.kernel, self.params, near, self.jitter, self.mean)

    def incumbent(self) -> Array:
        """`incumbent` of the neighbourhood of the best result (`-inf` without one)."""
        y = jnp.where(self.data.mask, self.data.y, -jnp.inf)
        x = self.data.X[jnp.argmax(y)]
        near = gp.nearest(self.data, x, self.params.log_length_scale, gp.MAX_REFINE_POINTS)
        post = gp.fit(self.kernel, self.params, near, self.jitter, self.mean)
        return incumbent(post, near.y, self.jitter)


def _pick_local(
    search: BayesianSearch, flat: FlatSpace, model: _Local, unit, y_best, x_best, key, use_gp, fixed
):
    """`_pick` for a long buffer (`_Local`).

    The uniform candidates are ranked on the posterior of `gp.MAX_REFINE_POINTS`
    observations spread over the buffer (`gp.spread_subset`: the coarse shape of the
    objective), the candidates around the incumbent on the posterior of the incumbent's
    `gp.MAX_REFINE_POINTS` nearest observations. The best of each part (as
    `restart_indices` chooses them, at least one) are refined by L-BFGS on the posterior
    of their `gp.MAX_LOCAL_POINTS` nearest observations. The starts and the refined
    points are then scored alike, each on the posterior of the `gp.LOCAL_SCORE_POINTS`
    observations nearest it, and the best score is the pick: a refinement can leave the
    neighbourhood it was refined on, where that small model knows nothing, and a start
    must be able to win against it.
    """

    def score_on(post, Xq):
        return _score(search, model.kernel, post, unit, y_best, _pinned(fixed, Xq))

    X, m = model.data.X, model.data.mask
    cands = _snap(flat, candidates(key, x_best, search.n_candidates, flat.n_params))
    cands = _pinned(fixed, cands)
    n_uniform = cands.shape[0] - _n_local(cands.shape[0])
    spread = gp.spread_subset(model.data, gp.MAX_REFINE_POINTS)
    coarse = gp.fit(model.kernel, model.params, spread, model.jitter, model.mean)
    around = model.near(x_best, gp.MAX_REFINE_POINTS)
    s_c = jnp.concatenate(
        [score_on(coarse, cands[:n_uniform]), score_on(around, cands[n_uniform:])]
    )
    starts = cands[restart_indices(_penalised(flat, s_c, cands, X, m), max(search.n_restarts, 1))]

    def refine(x0):
        post = model.near(x0, gp.MAX_LOCAL_POINTS)
        x, _ = gp.maximize_acquisition(
            lambda Xq: score_on(post, Xq), x0[None, :], search.n_lbfgs_steps
        )
        return _snap(flat, _pinned(fixed, x))[0]

    def final_score(x):
        return score_on(model.near(x, gp.LOCAL_SCORE_POINTS), x[None, :])[0]

    picks = jnp.concatenate([starts, jax.vmap(refine)(starts)])
    s = jax.vmap(final_score)(picks)
    s = _penalised(flat, jnp.where(jnp.isnan(s), -jnp.inf, s), picks, X, m)
    return jnp.where(use_gp, picks[jnp.argmax(s)], cands[0])


def believer_batch(
    search: BayesianSearch,
    flat: FlatSpace,
    kernel: BaseKernel,
    prior_mean: gp.BoundaryMean,
    params: gp.GPParams,
    data: gp.Dataset,
    unit,
    key,
    use_gp,
    pending=None,
    pending_mask=None,
    fixed=None,
    n_picks=None,
) -> Array:
    """Kriging Believer: pick, hallucinate, refit, `n_parallel` times, as one scan.

    The GP has the covariance `kernel` and the prior mean `prior_mean`. `data` holds the
    observations on the unit cube with the model's targets, `unit` the acquisitions' scale
    (`_targets.model_targets`). `pending` (`(p, n_params)` on the unit cube, or `None`)
    are configurations still being evaluated: each is hallucinated and added to the data,
    as the batch's own picks are, before the first pick; rows where `pending_mask` (`(p,)`,
    given with `pending`) is false are padding and ignored. Returns the batch on the unit
    cube, `(n_parallel, n_params)`. While `use_gp` is false (warm-up, or no finite result
    yet) each pick is uniformly random instead: one code path, compiled once. `fixed`
    (`(n_params,)` on the unit cube, NaN for free columns, or `None`) pins columns: every
    pick has those values there (a multi-fidelity model's budget column at the full
    budget). `n_picks` (an int32 scalar, or `None` for all) is how many of the batch's
    picks are wanted: the later ones are skipped, and are zeros (a caller compiled for
    its largest batch that needs fewer picks this time; the first picks do not depend on
    the batch's size).
    """
    n_max, d, P = data.X.shape[0], flat.n_params, search.n_parallel
    n_pending = 0 if pending is None else pending.shape[0]
    x_best = data.X[jnp.argmax(jnp.where(data.mask, data.y, -jnp.inf))]

    def believe(data, post, y_best, x, slot, key, real=True):
        """`data` with a pseudo-observation from `hallucination` at `x`, in `slot`
        (masked out unless `real`)."""
        if local:
            post = post.near(x, gp.LOCAL_SCORE_POINTS)
        mean, std = gp.predict(kernel, post, x[None, :])
        # A scalar; hallucinations written for hyperoptax 0.2.0 return shape (1,).
        h = unit * jnp.reshape(
            search.hallucination(mean[0] / unit, std[0] / unit, key, y_best / unit), ()
        )
        return gp.Dataset(
            data.X.at[slot].set(x), data.y.at[slot].set(h), data.mask.at[slot].set(real)
        )

    # Beyond `gp.MAX_REFINE_POINTS` rows the model is read through neighbourhoods.
    local = n_max + n_pending + P > gp.MAX_REFINE_POINTS

    def fit(data):
        if local:
            model = _Local(kernel, params, prior_mean, data, search.jitter)
            return model, model.incumbent()
        post = gp.fit(kernel, params, data, search.jitter, prior_mean)
        # The believer takes its pseudo-observations for real: a hallucinated value
        # above the best becomes the incumbent the next picks must beat.
        return post, incumbent(post, data.y, search.jitter)

    def in_flight(data, inputs):
        j, x, real, k = inputs
        post, y_best = fit(data)
        return believe(data, post, y_best, x, n_max + j, k, real), None

    def body(data, inputs):
        if n_picks is None:
            return pick(data, inputs)
        # Real control flow where the program is not vmapped (under `vmap` both run).
        return jax.lax.cond(
            inputs[0] < n_picks, pick, lambda data, _: (data, jnp.zeros((d,), dtype)), data, inputs
        )

    def pick(data, inputs):
        j, k = inputs
        k_cand, k_hall = jax.random.split(k)
        post, y_best = fit(data)
        if local:
            x = _pick_local(search, flat, post, unit, y_best, x_best, k_cand, use_gp, fixed)
            return believe(data, post, y_best, x, n_max + n_pending + j, k_hall), x
        x = _pick(
            search,
            flat,
            kernel,
            post,
            unit,
            y_best,
            data,
            x_best,
            k_cand,
            use_gp,
            fixed,
        )
        return believe(data, post, y_best, x, n_max + n_pending + j, k_hall), x

    # Room for the pending configurations' and the batch's pseudo-observations.
    dtype = data.X.dtype
    extra = n_pending + P
    carry = gp.Dataset(
        jnp.concatenate([data.X, jnp.zeros((extra, d), dtype)]),
        jnp.concatenate([data.y, jnp.zeros((extra,), dtype)]),
        jnp.concatenate([data.mask, jnp.zeros((extra,), bool)]),
    )
    if n_pending:
        k_pending, key = jax.random.split(key)
        keys = jax.random.split(k_pending, n_pending)
        inputs = (jnp.arange(n_pending), pending, pending_mask, keys)
        carry, _ = jax.lax.scan(in_flight, carry, inputs)
    _, xs = jax.lax.scan(body, carry, (jnp.arange(P), jax.random.split(key, P)))
    return xs
