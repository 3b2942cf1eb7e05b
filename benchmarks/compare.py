"""Side-by-side sample efficiency and wall time: hyperoptax against the peers.

    python benchmarks/compare.py                    # every contestant and problem, 10 seeds
    python benchmarks/compare.py --quick            # 2 seeds, budgets of 12: a smoke run
    python benchmarks/compare.py --contestants optuna-gp skopt --problems branin --seeds 5
    python benchmarks/compare.py --x64 --contestants hx-recommended   # float64

Each finished run appends one JSON line (contestant, problem, seed, budget, the best
value after every evaluation, wall seconds) to `benchmarks/out/runs.jsonl`; runs already
there are skipped, so an interrupted sweep resumes. `python benchmarks/report.py` turns
the file into the tables and plots of `benchmarks/RESULTS.md`.

Every contestant minimises the same JAX objective (`problems.py`), evaluated eagerly
through one `jax.jit` for the peers and inside the compiled search for hyperoptax. The
peers declare log scales and integers the way their documentation recommends:
Optuna `suggest_float(log=True)` / `suggest_int(log=...)`, scikit-optimize
`Real/Integer(prior="log-uniform")`, bayesian-optimization (no log scale) optimises
log10 of log-scaled parameters and declares plain integers as `int`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from problems import PROBLEMS  # noqa: E402

import hyperoptax as hx  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "runs.jsonl"

# The settings the docs recommend, `hx.recommended()`, read for the precision of the run
# (after --x64 is applied). The float64 recommendation of the earlier tables, by name:
RECOMMENDED_X64 = dict(
    kernel=hx.Matern(nu=2.5),
    acquisition=hx.UCB(kappa=1.0),
    n_restarts=8,
    n_lbfgs_steps=30,
    n_warmup=10,
)
HX_CONFIGS = {
    "hx-defaults": dict(),
    "hx-defaults-p1": dict(n_parallel=1),
    "hx-matern25-ei": dict(n_parallel=1, kernel=hx.Matern(nu=2.5), acquisition=hx.EI()),
    "hx-recommended": lambda: hx.recommended(n_parallel=1),
    "hx-recommended-p4": lambda: hx.recommended(n_parallel=4),
    "hx-recommended-p8": lambda: hx.recommended(n_parallel=8),
    # What we recommend with `jax_enable_x64` on (run it with --x64).
    "hx-recommended-x64": dict(n_parallel=1, **RECOMMENDED_X64),
}
PEERS = ["optuna-tpe", "optuna-gp", "bayes_opt", "skopt"]
CONTESTANTS = ["random", *HX_CONFIGS, *PEERS]


# -- parameters as the peers see them --------------------------------------------------


def param_specs(space):
    """(name, low, high, log, integer) for each parameter of a flat dict space."""
    specs = []
    for name, s in space.items():
        integer = isinstance(s, hx.QLinearSpace | hx.QLogSpace)
        log = isinstance(s, hx.LogSpace | hx.QLogSpace)
        specs.append((name, s.lower_bound, s.upper_bound, log, integer))
    return specs


def _evaluator(f):
    fj = jax.jit(f)
    key = jax.random.PRNGKey(0)

    def evaluate(p):
        args = {
            k: jnp.asarray(v, jnp.int32 if isinstance(v, int | np.integer) else jnp.float32)
            for k, v in p.items()
        }
        return float(fj(key, args))

    return evaluate


def run_peer(peer, problem, seed, budget):
    space, f, _, _ = PROBLEMS[problem]
    evaluate, specs = _evaluator(f), param_specs(space)
    ys = []

    def record(p):
        v = evaluate(p)
        ys.append(v)
        return v

    if peer.startswith("optuna"):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = (
            optuna.samplers.TPESampler(seed=seed)
            if peer == "optuna-tpe"
            else optuna.samplers.GPSampler(seed=seed)
        )

        def objective(trial):
            p = {}
            for name, lo, hi, log, integer in specs:
                if integer:
                    p[name] = trial.suggest_int(name, int(lo), int(hi), log=log)
                else:
                    p[name] = trial.suggest_float(name, lo, hi, log=log)
            return record(p)

        optuna.create_study(sampler=sampler, direction="minimize").optimize(
            objective, n_trials=budget
        )
    elif peer == "skopt":
        import skopt
        from skopt.space import Integer, Real

        dims = [
            (Integer if integer else Real)(
                lo, hi, prior="log-uniform" if log else "uniform", name=name
            )
            for name, lo, hi, log, integer in specs
        ]

        def objective(x):
            return record(
                {s[0]: (int(v) if s[4] else float(v)) for s, v in zip(specs, x, strict=True)}
            )

        skopt.gp_minimize(objective, dims, n_calls=budget, random_state=seed)
    elif peer == "bayes_opt":
        import warnings

        from bayes_opt import BayesianOptimization

        pbounds = {}
        for name, lo, hi, log, integer in specs:
            if log:
                pbounds[name] = (math.log10(lo), math.log10(hi))
            elif integer:
                pbounds[name] = (int(lo), int(hi), int)
            else:
                pbounds[name] = (lo, hi)

        def objective(**kw):
            p = {}
            for name, lo, hi, log, integer in specs:
                v = 10.0 ** kw[name] if log else kw[name]
                p[name] = int(np.clip(round(v), lo, hi)) if integer else float(v)
            return -record(p)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = BayesianOptimization(
                objective, pbounds, random_state=seed, verbose=0, allow_duplicate_points=True
            )
            opt.maximize(init_points=5, n_iter=budget - 5)
    else:
        raise ValueError(f"unknown peer {peer!r}")
    return np.asarray(ys[:budget])


def run_hyperoptax(contestant, problem, seed, budget):
    space, f, _, _ = PROBLEMS[problem]
    key = jax.random.PRNGKey(seed)
    if contestant == "random":
        state, opt = hx.RandomSearch.init(space, n_parallel=1)
        _, (_, rh) = opt.optimize_scan(state, key, f, budget)
        return np.asarray(rh).reshape(-1)
    config = HX_CONFIGS[contestant]
    config = config() if callable(config) else config
    state, opt = hx.BayesianSearch.init(space, n_max=budget, maximize=False, **config)
    state, _ = opt.optimize(state, key, f)
    return np.asarray(state.y)[np.asarray(state.mask)]


def run(contestant, problem, seed, budget):
    """Best value after each evaluation and wall seconds of one run."""
    t = time.perf_counter()
    if contestant in PEERS:
        ys = run_peer(contestant, problem, seed, budget)
    else:
        ys = run_hyperoptax(contestant, problem, seed, budget)
    wall = time.perf_counter() - t
    ys = np.where(np.isfinite(ys), ys, np.inf)
    return np.minimum.accumulate(ys), wall


def _done(out):
    if not out.exists():
        return set()
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return {(r["contestant"], r["problem"], r["seed"], r["budget"], r["dtype"]) for r in rows}


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="2 seeds, budget 12")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--problems", nargs="*", default=list(PROBLEMS))
    ap.add_argument("--contestants", nargs="*", default=CONTESTANTS)
    ap.add_argument("--x64", action="store_true", help="hyperoptax in float64")
    ap.add_argument(
        "--define",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "KWARGS"),
        help="an extra hyperoptax contestant, e.g. --define ucb1 "
        '"dict(n_parallel=1, kernel=hx.Matern(nu=1.5), acquisition=hx.UCB(kappa=1.0))"',
    )
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    for name, kwargs in args.define:
        HX_CONFIGS[name] = eval(kwargs, {"hx": hx})
        CONTESTANTS.append(name)
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    dtype = "float64" if args.x64 else "float32"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = _done(args.out)
    seeds = range(min(2, args.seeds) if args.quick else args.seeds)
    for problem in args.problems:
        budget = 12 if args.quick else PROBLEMS[problem][3]
        for c in args.contestants:
            for s in seeds:
                if (c, problem, s, budget, dtype) in done:
                    continue
                curve, wall = run(c, problem, s, budget)
                row = dict(
                    contestant=c,
                    problem=problem,
                    seed=s,
                    budget=budget,
                    dtype=dtype,
                    best=[float(v) for v in curve],
                    wall=wall,
                )
                with args.out.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(
                    f"{problem:12s} {c:18s} seed {s}: best {curve[-1]:.4g} ({wall:.1f} s)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
