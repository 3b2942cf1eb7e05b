"""Smoke test: the benchmark code runs on a tiny budget, so it cannot rot."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import problems  # noqa: E402
import regret  # noqa: E402


def test_problem_optima_are_where_the_literature_puts_them():
    import jax.numpy as jnp

    space, f, fmin, _ = problems.PROBLEMS["branin"]
    assert abs(float(f(None, {"x0": jnp.pi, "x1": 2.275})) - fmin) < 1e-4
    _, f, fmin, _ = problems.PROBLEMS["hartmann6"]
    x = [0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573]
    assert abs(float(f(None, {f"x{i}": v for i, v in enumerate(x)})) - fmin) < 1e-3
    _, f, fmin, _ = problems.PROBLEMS["rosenbrock4"]
    assert float(f(None, {f"x{i}": 1.0 for i in range(4)})) == 0.0


def test_regret_runner_tiny_budget():
    r, t = regret.run("mixed", "random", range(2), budget=4)
    assert r.shape == (2,) and np.all(r >= 0) and np.all(np.isfinite(r))


def test_bayesian_config_runs_tiny_budget():
    r, _ = regret.run("branin", "Matern2.5+EI", range(1), budget=3)
    assert r.shape == (1,) and np.isfinite(r[0]) and r[0] >= 0
