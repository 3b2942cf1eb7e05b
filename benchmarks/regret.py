"""Sample efficiency: median final simple regret over seeds, hyperoptax configurations.

    python benchmarks/regret.py            # 10 seeds, full budgets
    python benchmarks/regret.py --quick    # 3 seeds, a smoke run
    python benchmarks/regret.py --x64 --configs Matern2.5+EI   # float64
"""

import argparse
import sys
import time

import jax
import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import hyperoptax as hx  # noqa: E402
from problems import PROBLEMS  # noqa: E402

CONFIGS = {
    "defaults": lambda: dict(),
    "defaults, n_parallel=1": lambda: dict(n_parallel=1),
    "Matern2.5+EI": lambda: dict(n_parallel=1, kernel=hx.Matern(nu=2.5), acquisition=hx.EI()),
}


def run(problem, config, seeds, budget=None):
    space, f, fmin, n = PROBLEMS[problem]
    n = budget or n
    regrets, times = [], []
    for s in seeds:
        key = jax.random.PRNGKey(s)
        t = time.perf_counter()
        if config == "random":
            state, opt = hx.RandomSearch.init(space, n_parallel=1)
            _, (_, rh) = opt.optimize_scan(state, key, f, n)
            best = float(np.min(np.asarray(rh)))
        else:
            state, opt = hx.BayesianSearch.init(space, n_max=n, maximize=False, **CONFIGS[config]())
            state, _ = opt.optimize(state, key, f)
            best = float(opt.best_result(state))
        times.append(time.perf_counter() - t)
        regrets.append(best - fmin)
    return np.array(regrets), np.array(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--problems", nargs="*", default=list(PROBLEMS))
    ap.add_argument("--configs", nargs="*", default=["random", *CONFIGS])
    ap.add_argument("--x64", action="store_true", help="run in float64")
    args = ap.parse_args()
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    seeds = range(3 if args.quick else args.seeds)
    budget = 15 if args.quick else None
    names = args.configs
    print(f"| problem (evals) | {' | '.join(names)} |")
    print("|---" * (len(names) + 1) + "|")
    for prob in args.problems:
        cells = []
        for c in names:
            r, t = run(prob, c, seeds, budget)
            q1, med, q3 = np.percentile(r, [25, 50, 75])
            cells.append(f"{med:.2g} [{q1:.2g}, {q3:.2g}] ({np.median(t[1:] if len(t) > 1 else t):.1f} s)")
        print(f"| {prob} ({budget or PROBLEMS[prob][3]}) | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
