"""Multi-fidelity searches at equal total budget: anytime curves of the best full-budget result.

    python benchmarks/multifidelity.py --seeds 10               # every development problem
    python benchmarks/multifidelity.py --seeds 10 --problems mf_borehole mf_hartmann3 lc_momentum
    python benchmarks/multifidelity.py --problems lc_train --contestants hyperband bohb
    python benchmarks/multifidelity.py --quick                  # smoke run (in the test suite)
    python benchmarks/multifidelity.py --report                 # tables and plots (each half)

Problems (`objective(params, z)`, `z` in [0, 1] the fidelity of a budget: `log(budget /
min_budget) / log(max_budget / min_budget)`, so `z = 1` is the full budget):

- `mf_branin`: Branin with the fidelity-biased coefficients of the multi-fidelity
  Branin in the BO literature (Kandasamy et al. 2017, BOCA): `b - 0.01 (1 - z)`, `c -
  0.1 (1 - z)`, `t + 0.05 (1 - z)`; optimum 5 / (4 pi) at `z = 1`.
- `mf_hartmann6`: Hartmann-6 whose first coefficient is lowered by `0.1 (1 - z)` (the
  multi-fidelity Hartmann of the same literature); optimum -3.32236801141551.
- `lc_train`: a training-run-shaped learning curve whose early ranking misleads: loss
  `a(x) + (1 - a(x)) g_p(x)(t)`, `g` falling from about 1 to exactly 0 at the full budget
  `T`, faster for larger learning rates (`p` grows tenfold per 1.5 decades), while the
  asymptote `a(x)` is best at a learning rate of 10^-2.5: configurations with large
  learning rates lead until about a third of the budget. Optimum 0.05 (at `lr =
  10^-2.5`, `width = 256`, `dropout = 0.3`, `weight_decay = 1e-4`).
- held out (run once, reported only; no setting was chosen by looking at them):
  `mf_borehole`, the 8-D borehole water-flow function with the low fidelity of Xiong,
  Qian and Wu (2013), mixed linearly with the high one by `z`, minimised (optimum at
  a known corner, by monotonicity); `mf_hartmann3`, Hartmann-3 with the first
  coefficient lowered by `0.1 (1 - z)`; `lc_momentum`, a second learning-curve
  problem (learning rate, batch size, momentum: large learning rates and small
  batches learn fast early, the asymptote is best at `lr = 10^-2`, batch 64, momentum
  0.9; optimum 0.05).
- `mlp_digits` (a real task): the demo's Equinox MLP on scikit-learn's digits
  (`hyperoptax.demo`, same space), the budget in units of 4 full-batch AdamW steps (27
  units = 108 steps; every budget trains the first steps of the same full run, same
  initial weights and dropout masks), scored by the validation error. Its optimum is
  unknown: regrets are measured from the error floor 0 (they are validation errors).

Contestants, each with the same total budget `B = n_rounds * Hyperband.total_budget(
continued=True)` (a promoted configuration pays only the budget beyond its last rung:
its training continues, as Optuna's pruned trials do):

- `random`, `bo`: `B / max_budget` evaluations at the full budget (random search; the
  Bayesian search with `hx.recommended()`);
- `hyperband`, `bohb`: `hx.Hyperband` with random configurations / with `model =
  hx.BayesianSearch(**hx.recommended())`;
- `asha`, `asha-model`: `hx.Hyperband.optimize_host` (asynchronous successive
  halving, each configuration reporting after every unit of budget) with random
  configurations / drawn by `model = hx.BayesianSearch(**hx.recommended(n_parallel=1))`,
  run one configuration after another until the budget is spent (a callback stops the
  search);
- `tpe-hyperband`, `tpe-sh`: Optuna's `TPESampler` with its `HyperbandPruner` /
  `SuccessiveHalvingPruner` (`min_resource` = min_budget, `reduction_factor` = eta),
  every trial reporting its loss after each unit of budget until it is pruned or
  finishes; trials run until the budget is spent.

Each run records its anytime curve: the best full-budget result so far against the
budget spent. The objectives are noiseless, so a result is the configuration's true
value.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import hyperoptax as hx
from hyperoptax import demo

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from robust import provenance  # noqa: E402
from suite import _H3_A, _H3_P, _H6_A, _H6_P, _H_ALPHA  # noqa: E402

OUT = HERE / "out" / "multifidelity.jsonl"
CONTESTANTS = [
    "random",
    "bo",
    "hyperband",
    "bohb",
    "asha",
    "asha-model",
    "tpe-hyperband",
    "tpe-sh",
]
# Rows of other code kept in the tables: BOHB's rule (the model fitted to the largest
# budget with n_params + 1 results, without a budget input), commit 3635b36.
EXTRA = ["bohb-largest"]
ETA = 3


class MFProblem(NamedTuple):
    space: dict
    f: Callable  # f(params, z) -> scalar, minimised
    optimum: float
    max_budget: int
    n_rounds: int
    min_budget: int = 1
    held_out: bool = False
    # curve(params): f at every budget from 1 to max_budget in one call, for the host
    # contestants that report after every unit (the same values, computed once).
    curve: Callable | None = None


def _mf_branin(p, z):
    x1, x2 = p["x1"], p["x2"]
    b = 5.1 / (4 * math.pi**2) - 0.01 * (1 - z)
    c = 5 / math.pi - 0.1 * (1 - z)
    t = 1 / (8 * math.pi) + 0.05 * (1 - z)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * jnp.cos(x1) + 10


def _mf_hartmann6(p, z):
    x = jnp.stack([p[f"x{i}"] for i in range(6)])
    alpha = jnp.asarray(_H_ALPHA, x.dtype).at[0].add(-0.1 * (1 - z))
    return -jnp.sum(alpha * jnp.exp(-jnp.sum(_H6_A * (x[None, :] - _H6_P) ** 2, axis=1)))


_LC_T = 27


def _lc_train(p, z):
    u = jnp.log10(p["lr"])
    a = (
        0.05
        + 0.08 * (u + 2.5) ** 2
        + 0.05 * (jnp.log2(p["width"].astype(u.dtype)) - 8) ** 2 / 9
        + 0.1 * (p["dropout"] - 0.3) ** 2
        + 0.02 * (jnp.log10(p["weight_decay"]) + 4) ** 2 / 4
    )
    rate = 0.3 * 10 ** ((u + 2.5) / 1.5)
    t = _LC_T**z  # the budget (min_budget 1)
    floor = (_LC_T + 1.0) ** -rate
    g = ((t + 1) ** -rate - floor) / (1 - floor)
    return a + (1 - a) * g


def _borehole(p, z, xp=jnp):
    rw, r, tu, hu, tl, hl, length, kw = (p[k] for k in _BOREHOLE)
    log_ratio = xp.log(r / rw)
    inner = 2 * length * tu / (log_ratio * rw**2 * kw) + tu / tl
    high = 2 * math.pi * tu * (hu - hl) / (log_ratio * (1 + inner))
    low = 5 * tu * (hu - hl) / (log_ratio * (1.5 + inner))
    return z * high + (1 - z) * low


# Names and ranges of the borehole function; the flow falls with r, L and the lower
# bounds of the rest, so its minimum is the corner below.
_BOREHOLE = {
    "rw": (0.05, 0.15),
    "r": (100.0, 50000.0),
    "tu": (63070.0, 115600.0),
    "hu": (990.0, 1110.0),
    "tl": (63.1, 116.0),
    "hl": (700.0, 820.0),
    "l": (1120.0, 1680.0),
    "kw": (9855.0, 12045.0),
}
_BOREHOLE_MIN = {k: hi if k in ("r", "hl", "l") else lo for k, (lo, hi) in _BOREHOLE.items()}


def _mf_hartmann3(p, z):
    x = jnp.stack([p[f"x{i}"] for i in range(3)])
    alpha = jnp.asarray(_H_ALPHA, x.dtype).at[0].add(-0.1 * (1 - z))
    return -jnp.sum(alpha * jnp.exp(-jnp.sum(_H3_A * (x[None, :] - _H3_P) ** 2, axis=1)))


def _lc_momentum(p, z):
    u = jnp.log10(p["lr"]) + 2
    b = jnp.log2(p["batch"].astype(u.dtype)) - 6
    a = 0.05 + 0.1 * u**2 + 0.05 * b**2 / 4 + 0.5 * (p["momentum"] - 0.9) ** 2
    tau = 8.0 * 2 ** (b / 2) * 10 ** (-u / 2) / (1 + 2 * p["momentum"])  # time constant
    t = _LC_T**z
    floor = jnp.exp(-_LC_T / tau)
    g = (jnp.exp(-t / tau) - floor) / (1 - floor)
    return a + (1 - a) * g


_MLP_STEPS = 4  # AdamW steps per unit of budget


def _mlp_digits(p, z):
    units = jnp.round(_LC_T ** jnp.asarray(z, jnp.float32)).astype(jnp.int32)
    return demo.mlp_validation_error(
        None, p, steps=_MLP_STEPS * _LC_T, budget_steps=_MLP_STEPS * units
    )


def _mlp_curve(p):
    return demo.mlp_validation_error(None, p, steps=_MLP_STEPS * _LC_T, every=_MLP_STEPS)


PROBLEMS = {
    "mf_branin": MFProblem(
        {"x1": hx.LinearSpace(-5.0, 10.0), "x2": hx.LinearSpace(0.0, 15.0)},
        _mf_branin,
        5 / (4 * math.pi),
        27,
        4,
    ),
    "mf_hartmann6": MFProblem(
        {f"x{i}": hx.LinearSpace(0.0, 1.0) for i in range(6)},
        _mf_hartmann6,
        -3.32236801141551,
        27,
        4,
    ),
    "lc_train": MFProblem(
        {
            "lr": hx.LogSpace(1e-4, 1.0),
            "width": hx.QLogSpace(16, 1024),
            "dropout": hx.LinearSpace(0.0, 0.8),
            "weight_decay": hx.LogSpace(1e-6, 1e-1),
        },
        _lc_train,
        0.05,
        _LC_T,
        4,
    ),
    "mlp_digits": MFProblem(demo.SPACE, _mlp_digits, 0.0, _LC_T, 4, curve=_mlp_curve),
    "mf_borehole": MFProblem(
        {k: hx.LinearSpace(lo, hi) for k, (lo, hi) in _BOREHOLE.items()},
        _borehole,
        float(_borehole({k: np.float64(v) for k, v in _BOREHOLE_MIN.items()}, 1.0, np)),
        27,
        4,
        held_out=True,
    ),
    "mf_hartmann3": MFProblem(
        {f"x{i}": hx.LinearSpace(0.0, 1.0) for i in range(3)},
        _mf_hartmann3,
        -3.86277978733270,
        27,
        4,
        held_out=True,
    ),
    "lc_momentum": MFProblem(
        {
            "lr": hx.LogSpace(1e-4, 1.0),
            "batch": hx.QLogSpace(16, 1024),
            "momentum": hx.LinearSpace(0.0, 0.99),
        },
        _lc_momentum,
        0.05,
        _LC_T,
        4,
        held_out=True,
    ),
}
DEVELOPMENT = [name for name, p in PROBLEMS.items() if not p.held_out]
HELD_OUT = [name for name, p in PROBLEMS.items() if p.held_out]
QUICK = dict(max_budget=9, n_rounds=1)


def _fidelity(problem: MFProblem, budget):
    span = math.log(problem.max_budget / problem.min_budget)
    return jnp.log(jnp.asarray(budget, jnp.float32) / problem.min_budget) / span


def total_budget(problem: MFProblem) -> int:
    hb = hx.Hyperband(min_budget=problem.min_budget, max_budget=problem.max_budget, eta=ETA)
    return problem.n_rounds * hb.total_budget(continued=True)


def _curve(costs, values, full):
    """`(spent, best full-budget value so far)` after each evaluation."""
    spent = np.cumsum(costs)
    best = np.minimum.accumulate(np.where(full, values, np.inf))
    return spent.tolist(), best.tolist()


_MADE: dict[int, tuple] = {}


def _objectives(problem: MFProblem):
    """The full-budget and the budgeted objective of `problem`, made once, so that the
    compiled programs (keyed by the function) serve every seed."""
    if id(problem) not in _MADE:
        _MADE[id(problem)] = (problem, *_make_objectives(problem))
    return _MADE[id(problem)][1:]


def _make_objectives(problem: MFProblem):

    def full(key, p):
        return problem.f(p, 1.0)

    def budgeted(key, p, budget):
        return problem.f(p, _fidelity(problem, budget))

    return full, budgeted


def run_full_budget(contestant, problem: MFProblem, seed):
    n = total_budget(problem) // problem.max_budget
    objective = _objectives(problem)[0]
    key = jax.random.PRNGKey(seed)
    if contestant == "bo":
        state, opt = hx.BayesianSearch.init(
            problem.space, n_max=n, maximize=False, **hx.recommended(n_parallel=1)
        )
    else:
        state, opt = hx.RandomSearch.init(problem.space, n_parallel=1)
    _, (_, results) = opt.optimize(state, key, objective, n)
    y = np.concatenate([np.asarray(r) for r in results])
    return _curve(np.full(n, problem.max_budget), y, np.ones(n, bool))


def _hyperband(problem: MFProblem, model=None):
    """`(state, optimizer)` of the problem's Hyperband schedule (minimising)."""
    return hx.Hyperband.init(
        problem.space,
        min_budget=problem.min_budget,
        max_budget=problem.max_budget,
        eta=ETA,
        maximize=False,
        model=model,
        n_rounds=problem.n_rounds,
    )


def run_hyperband(contestant, problem: MFProblem, seed):
    model = hx.BayesianSearch(**hx.recommended()) if contestant != "hyperband" else None
    state, opt = _hyperband(problem, model)
    state, _ = opt.optimize(state, jax.random.PRNGKey(seed), _objectives(problem)[1])
    budget, config = np.asarray(state.budget), np.asarray(state.configuration)
    reached: dict[int, int] = {}
    costs = []
    for b, c in zip(budget, config, strict=True):  # continued training: pay beyond the last rung
        costs.append(b - reached.get(c, 0))
        reached[c] = b
    return _curve(costs, np.asarray(state.y), budget == problem.max_budget)


def _stepper(problem: MFProblem):
    """`start(params)` for one configuration, giving `value(step)`: the objective at
    budget `step`; from one learning curve per configuration where the problem has one
    (at its own full budget; a --quick run's other budgets evaluate `f`)."""
    f = jax.jit(problem.f)
    curve = None if problem.curve is None else jax.jit(problem.curve)

    def start(params):
        def value(step):
            return float(f(params, _fidelity(problem, step)))

        if curve is None or problem.min_budget != 1:
            return value
        values = np.asarray(curve(params))
        if len(values) != problem.max_budget:
            return value
        return lambda step: float(values[step - 1])

    return start


def run_asha(problem: MFProblem, seed, model=None):
    """`Hyperband.optimize_host` (asynchronous successive halving), one configuration
    after another, each reporting after every unit of budget, until the budget is spent."""
    start = _stepper(problem)
    B = total_budget(problem)
    costs, values, full = [], [], []

    def objective(config, report):
        if len(costs) >= B:  # every step costs one unit
            return
        value_at = start({k: jnp.asarray(v) for k, v in config.items()})
        for step in range(problem.min_budget, problem.max_budget + 1):
            if len(costs) >= B:
                return
            value = value_at(step)
            costs.append(1)
            values.append(value)
            full.append(step == problem.max_budget)
            if report(step, value):
                return

    state, opt = _hyperband(problem, model)
    with warnings.catch_warnings():  # the configurations cut off at the end of the budget
        warnings.simplefilter("ignore", RuntimeWarning)
        # More configurations than the budget can train: the budget ends the run.
        opt.optimize_host(
            state,
            jax.random.PRNGKey(seed),
            objective,
            n_configurations=B,
            callback=lambda *_: len(costs) >= B,
        )
    return _curve(costs, np.asarray(values), np.asarray(full))


def run_optuna(contestant, problem: MFProblem, seed):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if contestant == "tpe-hyperband":
        pruner = optuna.pruners.HyperbandPruner(
            min_resource=problem.min_budget, max_resource=problem.max_budget, reduction_factor=ETA
        )
    else:
        pruner = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=problem.min_budget, reduction_factor=ETA
        )
    # A fixed study name: Optuna's Hyperband pruner assigns trials to brackets by a
    # checksum of the study's name (random unless given) and the trial number.
    study = optuna.create_study(
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner,
        direction="minimize",
        study_name=f"{contestant}-{seed}",
    )
    start = _stepper(problem)
    B = total_budget(problem)
    costs, values, full = [], [], []
    spent = 0
    while spent < B:
        trial = study.ask()
        p = {}
        for name, s in problem.space.items():
            if isinstance(s, hx.QLogSpace):
                p[name] = trial.suggest_int(name, int(s.lower_bound), int(s.upper_bound), log=True)
            else:
                log = isinstance(s, hx.LogSpace)
                p[name] = trial.suggest_float(
                    name, float(s.lower_bound), float(s.upper_bound), log=log
                )
        value_at = start({k: jnp.asarray(v) for k, v in p.items()})
        pruned = False
        for step in range(problem.min_budget, problem.max_budget + 1):
            value = value_at(step)
            spent += 1
            costs.append(1)
            values.append(value)
            full.append(step == problem.max_budget)
            trial.report(value, step)
            if step < problem.max_budget and trial.should_prune():
                pruned = True
                break
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, value)
    return _curve(costs, np.asarray(values), np.asarray(full))


def run(contestant, name, seed, problem=None):
    problem = problem or PROBLEMS[name]
    t = time.perf_counter()
    if contestant in ("random", "bo"):
        spent, best = run_full_budget(contestant, problem, seed)
    elif contestant in ("hyperband", "bohb"):
        spent, best = run_hyperband(contestant, problem, seed)
    elif contestant == "asha":
        spent, best = run_asha(problem, seed)
    elif contestant == "asha-model":
        spent, best = run_asha(problem, seed, hx.BayesianSearch(**hx.recommended(n_parallel=1)))
    else:
        spent, best = run_optuna(contestant, problem, seed)
    return dict(
        contestant=contestant,
        problem=name,
        seed=seed,
        budget=total_budget(problem),
        max_budget=problem.max_budget,
        optimum=problem.optimum,
        spent=spent,
        best=best,
        seconds=time.perf_counter() - t,
    )


def regret_at(row, fraction):
    """The best full-budget regret once `fraction` of the total budget was spent."""
    spent, best = np.asarray(row["spent"]), np.asarray(row["best"])
    i = np.searchsorted(spent, fraction * row["budget"], side="right") - 1
    return float(best[i] - row["optimum"]) if i >= 0 else math.inf


FRACTIONS = (1 / 9, 1 / 3, 2 / 3, 1.0)


def _fmt(v):
    return "-" if not np.isfinite(v) else f"{v:.3g}"  # "-": no full-budget result yet


def table(rows):
    """Median (quartiles) regret at fractions of the total budget, per problem."""
    by = {}
    for r in rows:
        by.setdefault((r["problem"], r["contestant"]), []).append(r)
    lines = []
    for problem in dict.fromkeys(r["problem"] for r in rows):
        some = next(r for r in rows if r["problem"] == problem)
        held_out = " Held out: reported only." if PROBLEMS[problem].held_out else ""
        lines += [
            "",
            f"{problem} (total budget {some['budget']}, full budget {some['max_budget']}): "
            f"median regret [quartiles] of the best full-budget result, by budget spent.{held_out}",
            "",
            "| contestant | runs | " + " | ".join(f"{f:.2f} B" for f in FRACTIONS) + " |",
            "|---|---|" + "---|" * len(FRACTIONS),
        ]
        for c in CONTESTANTS + EXTRA:
            runs = by.get((problem, c))
            if not runs:
                continue
            cells = []
            for f in FRACTIONS:
                v = np.array([regret_at(r, f) for r in runs])
                q1, q2, q3 = (_fmt(q) for q in np.percentile(v, [25, 50, 75]))
                cells.append(f"{q2} [{q1}, {q3}]")
            lines.append(f"| {c} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = list(dict.fromkeys(r["problem"] for r in rows))
    fig, axes = plt.subplots(1, len(problems), figsize=(5 * len(problems), 4), squeeze=False)
    for ax, problem in zip(
        axes[0], problems, strict=True
    ):  # inf (no full-budget result yet) is not drawn
        B = next(r["budget"] for r in rows if r["problem"] == problem)
        grid = np.linspace(0.02, 1.0, 50)
        for c in CONTESTANTS + EXTRA:
            runs = [r for r in rows if r["problem"] == problem and r["contestant"] == c]
            if not runs:
                continue
            v = np.array([[regret_at(r, f) for f in grid] for r in runs])
            v = np.maximum(v, 1e-7)
            q1, q2, q3 = np.percentile(v, [25, 50, 75], axis=0)
            (line,) = ax.plot(grid * B, q2, label=c)
            ax.fill_between(grid * B, q1, q3, color=line.get_color(), alpha=0.15)
        ax.set_yscale("log")
        ax.set_title(problem)
        ax.set_xlabel("budget spent")
        ax.set_ylabel("regret of the best full-budget result")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--problems",
        nargs="+",
        default=DEVELOPMENT,
        help=f"default: the development problems; held out (run once, report only): {HELD_OUT}",
    )
    p.add_argument("--contestants", nargs="+", default=CONTESTANTS)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--quick", action="store_true", help="max budget 9, one round, one seed")
    p.add_argument("--report", action="store_true", help="tables and a plot from --out")
    args = p.parse_args(argv)
    if args.report:
        rows = [json.loads(line) for line in args.out.read_text().splitlines()]
        print(table(rows))
        (HERE / "plots").mkdir(exist_ok=True)
        halves = {"multifidelity.png": DEVELOPMENT, "multifidelity-held-out.png": HELD_OUT}
        for path, names in halves.items():
            if half := [r for r in rows if r["problem"] in names]:
                plot(half, HERE / "plots" / path)
        return rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    info = provenance()
    rows = []
    for name in args.problems:
        problem = PROBLEMS[name]._replace(**QUICK) if args.quick else PROBLEMS[name]
        for contestant in args.contestants:
            for seed in range(1 if args.quick else args.seeds):
                row = {**run(contestant, name, seed, problem), **info, "quick": args.quick}
                rows.append(row)
                with open(args.out, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(
                    f"{name} {contestant} seed {seed}: regret {regret_at(row, 1.0):.4g} "
                    f"({row['seconds']:.1f} s)",
                    flush=True,
                )
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
