"""Bayesian optimisation of the 2-D Branin function (minimum 0.397887) in 40 evaluations."""

import time

import jax
import jax.numpy as jnp

import hyperoptax as hx


def branin(key, p):
    x1, x2 = p["x1"], p["x2"]
    b, c, t = 5.1 / (4 * jnp.pi**2), 5 / jnp.pi, 1 / (8 * jnp.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * jnp.cos(x1) + 10


space = {"x1": hx.LinearSpace(-5.0, 10.0), "x2": hx.LinearSpace(0.0, 15.0)}
state, opt = hx.BayesianSearch.init(
    space,
    n_max=40,
    maximize=False,
    **hx.recommended(n_parallel=1),
)
start = time.perf_counter()
state, (params, results) = opt.optimize(state, jax.random.PRNGKey(0), branin)
for i in range(0, len(results), 5):
    best = min(float(r.min()) for r in results[: i + 5])
    print(f"evaluations {i + 5:3d}  best so far {best:.6f}")
best = opt.best_params(state)
print(
    f"best value {float(opt.best_result(state)):.6f} (optimum 0.397887) at "
    f"x1={float(best['x1']):.4f}, x2={float(best['x2']):.4f}; {time.perf_counter() - start:.1f} s"
)
