"""Asynchronous workers against synchronous batches when evaluation times vary.

    python benchmarks/stragglers.py                # 10 seeds, Hartmann-6, 4 workers
    python benchmarks/stragglers.py --quick        # smoke run (in the test suite)

Each evaluation of Hartmann-6 (development half of `suite.py`) sleeps for a time drawn
from a log-normal distribution (median `--median` seconds, log-sd 1: heavy-tailed, the
slowest of four is often several times the median), seeded by the evaluation's
configuration. Four thread workers; the recommended settings with `n_parallel=4`; the
same number of evaluations for both modes. For each run: the wall time, the final
regret, and the wall time at which the best result first came within `--target` of the
optimum (`inf` when never). The programs are compiled before the timed runs.
"""

import argparse
import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor

import jax
import numpy as np
from suite import PROBLEMS

import hyperoptax as hx


def timed_objective(problem, median, clock):
    f = jax.jit(problem.f)

    def objective(config):
        value = float(f({k: np.float32(v) for k, v in config.items()}))
        digest = hashlib.sha256(repr(sorted(config.items())).encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        time.sleep(median * float(np.exp(rng.normal())))
        clock.append((time.perf_counter(), value))
        return value

    return objective


def one_run(problem, seed, asynchronous, n_iterations, median, target, settings=None):
    """One search; `settings` replace the recommended ones (`n_parallel` stays 4)."""
    clock = []
    settings = {**hx.recommended(n_parallel=4), **(settings or {})}
    state, opt = hx.BayesianSearch.init(
        problem.space, n_max=4 * n_iterations, maximize=False, **settings
    )
    start = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        state, _ = opt.optimize_host(
            state,
            jax.random.PRNGKey(seed),
            timed_objective(problem, median, clock),
            n_iterations,
            executor=pool,
            asynchronous=asynchronous,
        )
    wall = time.perf_counter() - start
    best, reached = np.inf, np.inf
    for t, v in sorted(clock):
        best = min(best, v)
        if best - problem.optimum <= target and not np.isfinite(reached):
            reached = t - start
    return dict(
        mode="asynchronous" if asynchronous else "batches",
        seed=seed,
        wall_s=wall,
        regret=float(best - problem.optimum),
        reached_s=reached,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--iterations", type=int, default=15, help="batches of 4 (60 evaluations)")
    ap.add_argument("--median", type=float, default=0.2, help="median seconds per evaluation")
    ap.add_argument("--target", type=float, default=0.1, help="regret that counts as reached")
    ap.add_argument("--quick", action="store_true", help="2 batches, 1 seed, 10 ms evaluations")
    ap.add_argument("--out", help="append one JSON row per run to this file")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.iterations, args.median = 1, 2, 0.01
    problem = PROBLEMS["hartmann6"]
    for asynchronous in (False, True):  # compile both modes' programs first
        one_run(problem, 999, asynchronous, 2, 0.0, args.target)
    rows = []
    for seed in range(args.seeds):
        for asynchronous in (False, True):
            row = one_run(problem, seed, asynchronous, args.iterations, args.median, args.target)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.out:
                with open(args.out, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
    head = ("mode", "wall s (median)", "regret (median)", "reached (median s, count)")
    print(f"\n{head[0]:<14}{head[1]:>17}{head[2]:>17}{head[3]:>28}")
    for mode in ("batches", "asynchronous"):
        r = [x for x in rows if x["mode"] == mode]
        reached = [x["reached_s"] for x in r if np.isfinite(x["reached_s"])]
        print(
            f"{mode:<14}{np.median([x['wall_s'] for x in r]):>17.2f}"
            f"{np.median([x['regret'] for x in r]):>17.3g}"
            f"{(np.median(reached) if reached else np.inf):>20.2f} ({len(reached)}/{len(r)})"
        )


if __name__ == "__main__":
    main()
