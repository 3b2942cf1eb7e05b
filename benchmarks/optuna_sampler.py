"""hyperoptax inside Optuna against Optuna's own samplers: regret and seconds per trial.

    python benchmarks/optuna_sampler.py                      # 100 and 500 trials, Hartmann-6
    python benchmarks/optuna_sampler.py --trials 100 --seeds 3 --problem hpo_cat8
    python benchmarks/optuna_sampler.py --quick              # smoke run (in the test suite)

Each run is one Optuna study on a problem of the robustness suite (`suite.py`) through
`robust.run_optuna`, with `HyperoptaxSampler(seed=s)` (recommended settings),
`GPSampler(seed=s, deterministic_objective=...)` or `TPESampler(seed=s)`. Reported: the
final regret of the best trial and the wall time per trial, compilation included (a
fresh sampler per run; hyperoptax compiles once per process, so its first run pays it:
the script runs one untimed 30-trial study first). The whole suite's comparison is
`robust.py run --contestants hx-in-optuna`.
"""

import argparse
import json
import time

import numpy as np
import robust
from suite import PROBLEMS

SAMPLERS = {"hyperoptax": robust.IN_OPTUNA, "optuna-gp": "optuna-gp", "optuna-tpe": "optuna-tpe"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problem", default="hartmann6")
    ap.add_argument("--trials", type=int, nargs="*", default=[100, 500])
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--samplers", nargs="*", default=list(SAMPLERS))
    ap.add_argument("--quick", action="store_true", help="Branin, 6 trials, hyperoptax only")
    ap.add_argument("--out", help="append one JSON row per run to this file")
    args = ap.parse_args(argv)
    if args.quick:
        args.problem, args.trials, args.samplers = "branin", [6], ["hyperoptax"]
    problem = PROBLEMS[args.problem]
    if "hyperoptax" in args.samplers:  # compile outside the timed runs
        robust.run_optuna(robust.IN_OPTUNA, problem, 999, min(30, max(args.trials)))
    rows = []
    for n in args.trials:
        for name in args.samplers:
            for seed in range(args.seeds):
                t = time.perf_counter()
                ys, _ = robust.run_optuna(SAMPLERS[name], problem, seed, n)
                wall = time.perf_counter() - t
                row = dict(
                    problem=args.problem,
                    sampler=name,
                    trials=n,
                    seed=seed,
                    regret=float(np.nanmin(ys) - problem.optimum),
                    s_per_trial=wall / n,
                )
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.out:
                    with open(args.out, "a") as fh:
                        fh.write(json.dumps(row) + "\n")
    print(f"\n{'sampler':<12}{'trials':>8}{'regret (median)':>18}{'s/trial (median)':>18}")
    for n in args.trials:
        for name in args.samplers:
            r = [x for x in rows if x["sampler"] == name and x["trials"] == n]
            print(
                f"{name:<12}{n:>8}{np.median([x['regret'] for x in r]):>18.3g}"
                f"{np.median([x['s_per_trial'] for x in r]):>18.4f}"
            )
    return rows


if __name__ == "__main__":
    main()
