"""Smoke test: the benchmark code runs on a tiny budget, so it cannot rot."""

import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import compare  # noqa: E402
import problems  # noqa: E402
import report  # noqa: E402


def test_problem_optima_are_where_the_literature_puts_them():
    import jax.numpy as jnp

    # Full-precision optima (Branin's 5 / (4 pi), Hartmann-6's -3.322368011...): at the
    # published minimisers the float32 objectives are within float32's rounding of them,
    # far below the smallest regret the tables report.
    space, f, fmin, _ = problems.PROBLEMS["branin"]
    assert fmin == 5.0 / (4.0 * math.pi)
    for x0, x1 in ((-math.pi, 12.275), (math.pi, 2.275), (9.42478, 2.475)):
        value = float(f(None, {"x0": jnp.float32(x0), "x1": jnp.float32(x1)}))
        assert abs(value - fmin) < 5e-7, (x0, x1, value - fmin)
    _, f, fmin, _ = problems.PROBLEMS["hartmann6"]
    assert fmin == -3.322368011415515
    x = [0.20168952, 0.15001069, 0.47687398, 0.27533243, 0.31165162, 0.65730054]
    value = float(f(None, {f"x{i}": jnp.float32(v) for i, v in enumerate(x)}))
    assert abs(value - fmin) < 5e-7, value - fmin
    _, f, fmin, _ = problems.PROBLEMS["rosenbrock4"]
    assert float(f(None, {f"x{i}": 1.0 for i in range(4)})) == 0.0


def test_hyperoptax_runner_reports_the_search_results_in_order():
    # The runner's curve is the running minimum of what the search evaluated, in order:
    # the same search run here by hand gives the same values.
    import jax

    import hyperoptax as hx

    space, f, _, _ = problems.PROBLEMS["mixed"]
    curve, _ = compare.run("hx-recommended", "mixed", 3, 12)
    config = compare.HX_CONFIGS["hx-recommended"]
    config = config() if callable(config) else config
    state, opt = hx.BayesianSearch.init(space, n_max=12, maximize=False, **config)
    _, (_, results) = opt.optimize(state, jax.random.PRNGKey(3), f)
    np.testing.assert_array_equal(curve, np.minimum.accumulate(np.concatenate(results)))


def test_peers_see_log_scales_and_integers(monkeypatch):
    # What Optuna receives for each parameter of the mixed space, read from its trials.
    import optuna

    studies = []
    create = optuna.create_study

    def recording_create_study(*args, **kwargs):
        studies.append(create(*args, **kwargs))
        return studies[-1]

    monkeypatch.setattr(optuna, "create_study", recording_create_study)
    curve, _ = compare.run("optuna-tpe", "mixed", 0, 5)
    (study,) = studies
    dist = study.trials[0].distributions
    assert isinstance(dist["lr"], optuna.distributions.FloatDistribution)
    assert (dist["lr"].low, dist["lr"].high, dist["lr"].log) == (1e-5, 1e-1, True)
    assert isinstance(dist["layers"], optuna.distributions.IntDistribution)
    assert (dist["layers"].low, dist["layers"].high, dist["layers"].log) == (1, 6, False)
    assert isinstance(dist["width"], optuna.distributions.IntDistribution)
    assert (dist["width"].low, dist["width"].high, dist["width"].log) == (8, 1024, True)
    assert isinstance(dist["dropout"], optuna.distributions.FloatDistribution)
    assert (dist["dropout"].low, dist["dropout"].high, dist["dropout"].log) == (0.0, 0.5, False)
    # The runner records what Optuna was told, in trial order.
    np.testing.assert_allclose(curve, np.minimum.accumulate([t.value for t in study.trials]))


def test_report_tables_from_runs(tmp_path):
    import json

    budget = problems.PROBLEMS["branin"][3]
    path = tmp_path / "runs.jsonl"
    rows = [
        dict(
            contestant=c,
            problem="branin",
            seed=s,
            budget=budget,
            dtype="float32",
            best=[10.0] * (budget - 1) + [problems.PROBLEMS["branin"][2] + r],
            wall=1.0,
        )
        for c, r0 in (("random", 1.0), ("hx-recommended", 0.01))
        for s, r in enumerate([r0, 2 * r0, 3 * r0])
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    text = report.table(report.load([path]))
    assert "| branin (50) | 2 [1.5, 2.5]" in text and "0.02 [0.015, 0.025]" in text


def test_multifidelity_quick_run_spends_the_budget_and_reports_anytime_curves(tmp_path):
    import jax.numpy as jnp
    import multifidelity as mf

    # The problems' optima: the full-budget objective at its minimiser.
    lc = mf.PROBLEMS["lc_train"]
    best = {"lr": 10**-2.5, "width": 256, "dropout": 0.3, "weight_decay": 1e-4}
    p = {k: jnp.asarray(v) for k, v in best.items()}
    assert abs(float(lc.f(p, 1.0)) - lc.optimum) < 1e-6
    # Early in training a large learning rate leads (the misleading ranking), not at the end.
    fast = {**p, "lr": jnp.asarray(0.3)}
    assert float(lc.f(fast, 0.0)) < float(lc.f(p, 0.0)) and float(lc.f(fast, 1.0)) > 0.3
    assert abs(float(mf._mf_branin({"x1": jnp.pi, "x2": 2.275}, 1.0)) - 5 / (4 * math.pi)) < 1e-6
    # Held-out problems: the optima, and the second learning curve's misleading start.
    corner = {k: jnp.asarray(v) for k, v in mf._BOREHOLE_MIN.items()}
    borehole = mf.PROBLEMS["mf_borehole"]
    assert float(borehole.f(corner, 1.0)) == pytest.approx(borehole.optimum, rel=1e-6)
    inside = {k: jnp.asarray((lo + hi) / 2) for k, (lo, hi) in mf._BOREHOLE.items()}
    assert float(borehole.f(inside, 1.0)) > borehole.optimum + 10
    h3 = {"x0": 0.114614, "x1": 0.555649, "x2": 0.852547}
    assert abs(float(mf._mf_hartmann3(h3, 1.0)) - mf.PROBLEMS["mf_hartmann3"].optimum) < 1e-5
    lcm = mf.PROBLEMS["lc_momentum"]
    good = {"lr": jnp.asarray(1e-2), "batch": jnp.asarray(64), "momentum": jnp.asarray(0.9)}
    fast = {**good, "lr": jnp.asarray(0.1), "batch": jnp.asarray(16)}
    assert abs(float(lcm.f(good, 1.0)) - lcm.optimum) < 1e-6
    assert float(lcm.f(fast, 1 / 3)) < float(lcm.f(good, 1 / 3)) and float(lcm.f(fast, 1.0)) > 0.15
    assert set(mf.HELD_OUT) == {"mf_borehole", "mf_hartmann3", "lc_momentum"}

    out = tmp_path / "mf.jsonl"
    argv = ["--quick", "--problems", "mf_branin", "--out", str(out), "--contestants"]
    rows = mf.main(argv + ["random", "hyperband", "tpe-sh"])
    problem = mf.PROBLEMS["mf_branin"]._replace(**mf.QUICK)
    budget = mf.total_budget(problem)
    for r in rows:
        spent, best = np.asarray(r["spent"]), np.asarray(r["best"])
        assert (
            r["budget"] == budget and np.all(np.diff(spent) > 0) and np.all(best[1:] <= best[:-1])
        )
        assert abs(spent[-1] - budget) < problem.max_budget  # whole trainings only
    # Hyperband with continued trainings spends exactly its schedule's continued budget.
    hb = next(r for r in rows if r["contestant"] == "hyperband")
    assert hb["spent"][-1] == budget
    assert mf.regret_at(hb, 1.0) >= 0.0 and math.isinf(mf.regret_at(hb, 0.01))
    text = mf.table(rows)
    assert "| hyperband | 1 |" in text and "| tpe-sh | 1 |" in text


def test_device_script_prints_its_table(tmp_path, monkeypatch, capsys):
    # benchmarks/device.py is meant to run once, on a borrowed GPU: its rows (speed.py's
    # seeds, latency and branin_total) run here in this process, at the smallest sizes.
    import device
    import speed

    in_process = lambda call: eval("speed." + call, {"speed": speed})  # noqa: E731
    monkeypatch.setattr(device, "_in_fresh_process", in_process)
    monkeypatch.setitem(device.SIZES, "quick", dict(seeds=[2], observations=[20]))
    out = tmp_path / "device.md"
    monkeypatch.setattr(sys, "argv", ["device.py", "--quick", "--out", str(out)])
    device.main()
    table = out.read_text()
    assert table == capsys.readouterr().out
    assert "| seeds (Branin, 8 evaluations) |" in table and "\n| 2 | " in table
    assert "\n| 20 | " in table and "failed" not in table
    assert speed.RECOMMENDED in speed.CONFIGS.values()
    assert re.search(
        r"cold start, 50-evaluation Branin `optimize` incl. compilation: [0-9.]+ s", table
    )


def test_long_search_script_runs_the_neighbourhood_refinement(capsys):
    # benchmarks/long.py --quick: a search in a buffer longer than gp.MAX_REFINE_POINTS.
    import long

    long.main(["--quick"])
    m = re.search(r"regret ([0-9.e+-]+) after 20 evaluations", capsys.readouterr().out)
    assert m and math.isfinite(float(m.group(1))) and float(m.group(1)) >= 0.0


def test_report_rules_rank_saved_searches(tmp_path):
    # `reports.py --quick`: saved final states come back as the searches left them, and
    # every rule's report is one of their observations: the best one for `observed`, and
    # `best_result`'s for `library`.
    import json

    import reports
    import robust
    import suite

    reports.main(["states", "--quick", "--contestant", "hx-recommended", "--dir", str(tmp_path)])
    rows = reports.rank("hx-recommended", tmp_path)
    assert {r["problem"] for r in rows} == set(robust.QUICK_PROBLEMS)
    for r in rows:
        problem = suite.PROBLEMS[r["problem"]]
        state, opt = reports._load_state(
            "hx-recommended", problem, tmp_path / f"{r['problem']}-{r['seed']}.npz"
        )
        y = np.asarray(state.y)[np.asarray(state.mask)]
        assert len(y) == robust.QUICK_BUDGET and set(r["true"]) == set(reports.RULES)
        assert r["true"]["observed"] == float(np.min(y))
        assert r["true"]["library"] == float(opt.best_result(state))
        assert all(v in y for v in r["true"].values())  # noise-free: reports are observations
    # Scored against random search's rows of the same budget.
    random_rows = tmp_path / "random.jsonl"
    with random_rows.open("w") as fh:
        for name in robust.QUICK_PROBLEMS:
            for seed, found in enumerate((1e3, 2e3, 3e3)):
                row = dict(problem=name, contestant="random", seed=seed, found=found)
                row.update(dtype="float32", budget=robust.QUICK_BUDGET, wall=0.0)
                fh.write(json.dumps(row) + "\n")
    text = reports.table(rows, [random_rows], quick=True)
    assert all(f"| {name} |" in text for name in robust.QUICK_PROBLEMS)
    assert "| mean / failed runs |" in text and "0 of 2**" in text
