"""Latency and compile time of BayesianSearch (float32, n_parallel=1 unless stated).

    python benchmarks/speed.py
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import hyperoptax as hx  # noqa: E402
from problems import PROBLEMS  # noqa: E402


def _block(x):
    return jax.block_until_ready(x)


def filled_state(d, n_obs, n_max, **kw):
    space = {f"x{i}": hx.LinearSpace(0.0, 1.0) for i in range(d)}
    state, opt = hx.BayesianSearch.init(space, n_max=n_max, **kw)
    X = jax.random.uniform(jax.random.PRNGKey(1), (n_obs, d))
    y = jnp.sum(jnp.sin(5 * X), axis=1)
    state = state.__class__(state.space, state.X.at[:n_obs].set(X), state.y.at[:n_obs].set(y),
                            state.mask.at[:n_obs].set(True), state.log_length_scale)
    return state, opt


def timed(fn, reps=20):
    _block(fn())
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        _block(fn())
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def latency(d, n_obs, label, **kw):
    state, opt = filled_state(d, n_obs, n_obs + 1, n_parallel=1, **kw)
    key = jax.random.PRNGKey(0)
    t = time.perf_counter()
    params = _block(opt.get_next_params(state, key))
    first = time.perf_counter() - t
    res = jnp.zeros(1)
    t = time.perf_counter()
    _block(opt.update_state(state, key, res, params))
    first_u = time.perf_counter() - t
    g = timed(lambda: opt.get_next_params(state, key))
    u = timed(lambda: opt.update_state(state, key, res, params))
    print(f"| {label} | {d} | {n_obs} | {first:.2f} | {first_u:.2f} | {g * 1e3:.1f} | {u * 1e3:.1f} |",
          flush=True)


def branin_total(**kw):
    space, f, _, n = PROBLEMS["branin"]
    t = time.perf_counter()
    state, opt = hx.BayesianSearch.init(space, n_max=n, maximize=False, n_parallel=1, **kw)
    state, _ = opt.optimize(state, jax.random.PRNGKey(0), f)
    _block(state.y)
    return time.perf_counter() - t


def main():
    rec = dict(kernel=hx.Matern(nu=2.5), acquisition=hx.EI())
    print("| config | d | observations | first suggest (s, compile incl.) | first update (s) |"
          " steady suggest (ms) | steady update (ms) |")
    print("|---|---|---|---|---|---|---|")
    for d, n in [(6, 100), (6, 50), (6, 200), (2, 100), (10, 100), (100, 100)]:
        latency(d, n, "Matern2.5+EI", **rec)
    latency(6, 100, "defaults")
    print()
    print(f"50-evaluation Branin optimize, compile included: {branin_total(**rec):.1f} s (Matern2.5+EI), "
          f"{branin_total():.1f} s (defaults, n_parallel=1)")


if __name__ == "__main__":
    main()
