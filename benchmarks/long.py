"""Long searches: what a search of many evaluations finds, and what its steps cost.

    python benchmarks/long.py                      # 250 evaluations, 10 seeds
    python benchmarks/long.py --evals 400 --seeds 5 --problems hartmann6
    python benchmarks/long.py --report             # the table of benchmarks/RESULTS.md
    python benchmarks/long.py --quick              # smoke run (in the test suite)

The recommended settings (`hx.recommended(n_parallel=1)`, float32) run `optimize_scan`
for `--evals` evaluations on functions of `problems.py`, with `n_max` equal to the
number of evaluations, so buffers longer than the model's subset sizes
(`gp.MAX_FIT_POINTS`, `gp.MAX_LOCAL_POINTS`) take the paths that bound their cost. Each
run appends one JSON line (problem, seed, evaluations, final regret, wall seconds
including compilation for the first seed of a process, the library's commit) to
`benchmarks/out/long.jsonl`; runs already there for the same commit are skipped.
Compare commits with `--report --commit A B`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from problems import PROBLEMS  # noqa: E402

import hyperoptax as hx  # noqa: E402

OUT = HERE / "out" / "long.jsonl"
DEFAULT_PROBLEMS = ["hartmann6", "ackley5", "rosenbrock4"]


def commit() -> str:
    root = Path(hx.__file__).resolve().parent.parent
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "hyperoptax"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    return head + ("+dirty" if dirty else "")


def run(problem: str, seed: int, evals: int, n_max: int | None = None) -> tuple[float, float]:
    """Final regret and wall seconds of one search (buffer of `n_max` slots, default `evals`)."""
    space, f, optimum, _ = PROBLEMS[problem]
    state, opt = hx.BayesianSearch.init(
        space, n_max=n_max or evals, maximize=False, **hx.recommended(n_parallel=1)
    )
    t = time.perf_counter()
    _, (_, results) = opt.optimize_scan(state, jax.random.PRNGKey(seed), f, evals)
    results = np.asarray(results).reshape(-1)
    wall = time.perf_counter() - t
    return float(np.nanmin(results) - optimum), wall


def rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def report(path: Path, commits: list[str] | None) -> str:
    data = rows(path)
    commits = commits or sorted({r["commit"] for r in data})
    lines = [
        "| commit | problem | evaluations | seeds | median final regret | quartiles | "
        "median wall (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["commit"], r["problem"], r["evals"]) for r in data if r["commit"] in commits})
    for c, p, e in keys:
        sel = [r for r in data if (r["commit"], r["problem"], r["evals"]) == (c, p, e)]
        reg = np.array([r["regret"] for r in sel])
        wall = np.array([r["wall"] for r in sel[1:]] or [sel[0]["wall"]])
        q1, q3 = np.percentile(reg, [25, 75])
        lines.append(
            f"| {c} | {p} | {e} | {len(sel)} | {np.median(reg):.3g} | {q1:.3g} - {q3:.3g} | "
            f"{np.median(wall):.1f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--problems", nargs="*", default=DEFAULT_PROBLEMS, choices=list(PROBLEMS))
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--evals", type=int, default=250)
    ap.add_argument(
        "--quick",
        action="store_true",
        help="one seed of hartmann6, 20 evaluations in a buffer long enough for the "
        "neighbourhood refinement (not recorded)",
    )
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--commit", nargs="*", default=None, help="commits to report")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.report:
        print(report(args.out, args.commit))
        return
    if args.quick:
        regret, wall = run("hartmann6", 0, 20, n_max=hx.gp.MAX_REFINE_POINTS + 4)
        print(f"hartmann6 seed 0: regret {regret:.4g} after 20 evaluations ({wall:.1f} s)")
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    c = commit()
    done = {(r["commit"], r["problem"], r["seed"], r["evals"]) for r in rows(args.out)}
    for problem in args.problems:
        for seed in range(args.seeds):
            if (c, problem, seed, args.evals) in done:
                continue
            regret, wall = run(problem, seed, args.evals)
            row = dict(problem=problem, seed=seed, evals=args.evals, regret=regret, wall=wall)
            print(f"{problem:12s} seed {seed:2d}: regret {regret:.4g} ({wall:.1f} s)", flush=True)
            with args.out.open("a") as fh:
                fh.write(json.dumps({**row, "commit": c}) + "\n")


if __name__ == "__main__":
    main()
