"""The demo a newcomer runs first, and the Equinox objective it tunes."""

import jax
import jax.numpy as jnp
import pytest

from hyperoptax import demo


def test_objective_trains_a_batch_and_ranks_configurations():
    good = {"lr": 1e-2, "weight_decay": 1e-4, "width": 64, "dropout": 0.1}
    bad = {"lr": 1e-4, "weight_decay": 1e-4, "width": 4, "dropout": 0.8}
    batch = {k: jnp.array([good[k], bad[k]]) for k in good}
    batch["width"] = batch["width"].astype(jnp.int32)
    err = jax.vmap(demo.mlp_validation_error)(jax.random.split(jax.random.PRNGKey(0), 2), batch)
    # A sensible configuration learns the digits; a crippled one does far worse.
    assert err.shape == (2,) and float(err[0]) < 0.1 and float(err[1]) > float(err[0]) + 0.1
    # Deterministic: the same configuration scores the same with any key.
    again = demo.mlp_validation_error(jax.random.PRNGKey(5), good)
    assert float(again) == float(err[0])
    # The multi-fidelity form (benchmarks/multifidelity.py): a traced budget of steps
    # trains the first steps of the same run; all of them give the full run's result.
    budgeted = jax.jit(lambda b: demo.mlp_validation_error(None, good, budget_steps=b))
    assert abs(float(budgeted(100)) - float(again)) < 1e-6
    assert float(budgeted(2)) > float(again) + 0.1  # two steps: far from trained


def test_demo_runs_a_search_and_reports_the_best(capsys, tmp_path):
    out = demo.main(["--evaluations", "8", "--parallel", "4", "--figures", str(tmp_path)])
    text = capsys.readouterr().out
    lines = [line for line in text.splitlines() if "-> error" in line]
    assert len(lines) == 8
    errors = [float(line.rsplit("error ", 1)[1].split()[0]) for line in lines]
    assert abs(out["error"] - min(errors)) <= 5e-5 and "Best after 8 configurations" in text
    assert set(out["config"]) == set(demo.SPACE) and isinstance(out["config"]["width"], int)
    names = {"history", "importance", "slices", "contour", "parallel"}
    assert {p.stem for p in tmp_path.glob("*.png")} == names and str(tmp_path) in text
    # Impossible requests are a usage error of the command, not a traceback.
    for bad in (["--evaluations", "0"], ["--parallel", "0"], ["--evaluations", "3"]):
        with pytest.raises(SystemExit):
            demo.main(bad)
        assert "--evaluations at least --parallel" in capsys.readouterr().err
    # Eight evaluations are all random start-up ones (ten for the recommended settings), so
    # this checks the demo's mechanics, not the search's quality: what it prints and
    # returns. That the objective tells good configurations from bad ones is checked
    # above; the search's quality in test_bayesian.py and the benchmarks.
