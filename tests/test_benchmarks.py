"""Smoke test: the benchmark code runs on a tiny budget, so it cannot rot."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import problems  # noqa: E402
import compare  # noqa: E402
import report  # noqa: E402


def test_problem_optima_are_where_the_literature_puts_them():
    import jax.numpy as jnp

    space, f, fmin, _ = problems.PROBLEMS["branin"]
    assert abs(float(f(None, {"x0": jnp.pi, "x1": 2.275})) - fmin) < 1e-4
    _, f, fmin, _ = problems.PROBLEMS["hartmann6"]
    x = [0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573]
    assert abs(float(f(None, {f"x{i}": v for i, v in enumerate(x)})) - fmin) < 1e-3
    _, f, fmin, _ = problems.PROBLEMS["rosenbrock4"]
    assert float(f(None, {f"x{i}": 1.0 for i in range(4)})) == 0.0


def test_runner_tiny_budget_random_and_bayesian():
    for contestant in ("random", "hx-recommended"):
        curve, wall = compare.run(contestant, "mixed", 0, 4)
        # Best-so-far after each evaluation: 4 finite, non-increasing values above the optimum.
        assert curve.shape == (4,) and np.all(np.isfinite(curve)) and wall > 0
        assert np.all(np.diff(curve) <= 0) and curve[-1] >= problems.PROBLEMS["mixed"][2]


def test_peers_see_log_scales_and_integers():
    specs = {s[0]: s[1:] for s in compare.param_specs(problems.PROBLEMS["mixed"][0])}
    assert specs["lr"] == (1e-5, 1e-1, True, False)
    assert specs["layers"] == (1, 6, False, True)
    assert specs["width"] == (8, 1024, True, True)
    assert specs["dropout"] == (0.0, 0.5, False, False)


def test_report_tables_from_runs(tmp_path):
    import json

    budget = problems.PROBLEMS["branin"][3]
    path = tmp_path / "runs.jsonl"
    rows = [dict(contestant=c, problem="branin", seed=s, budget=budget, dtype="float32",
                 best=[10.0] * (budget - 1) + [problems.PROBLEMS["branin"][2] + r], wall=1.0)
            for c, r0 in (("random", 1.0), ("hx-recommended", 0.01)) for s, r in enumerate([r0, 2 * r0, 3 * r0])]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    text = report.table(report.load([path]))
    assert "| branin (50) | 2 [1.5, 2.5]" in text and "0.02 [0.015, 0.025]" in text
