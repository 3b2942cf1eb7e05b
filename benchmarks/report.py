"""Tables and regret-curve plots from the runs compare.py wrote to `benchmarks/out/`.

python benchmarks/report.py                  # markdown tables on stdout, PNGs in benchmarks/plots/
python benchmarks/report.py --no-plots
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from compare import CONTESTANTS, OUT  # noqa: E402
from problems import PROBLEMS  # noqa: E402

PLOTS = HERE / "plots"


def load(paths, quick=False):
    """Runs grouped by (problem, contestant, dtype); a run repeated in several files counts once.

    Only runs at the problem's full budget are kept (budget 12 with `quick`).
    """
    runs, seen = defaultdict(list), set()
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            if r["budget"] != (12 if quick else PROBLEMS[r["problem"]][3]):
                continue
            key = (r["problem"], r["contestant"], r["dtype"], r["seed"], r["budget"])
            if key not in seen:
                seen.add(key)
                runs[key[:3]].append(r)
    return runs


def _names(runs):
    """Contestants in the runs: the standard ones in their order, then any others (--define)."""
    found = {k[1] for k in runs}
    return [c for c in CONTESTANTS if c in found] + sorted(found - set(CONTESTANTS))


def regrets(rows, problem):
    """(seeds, evaluations) simple regret; for mlp_digits the validation error."""
    fmin = PROBLEMS[problem][2]
    n = min(len(r["best"]) for r in rows)
    return np.array([r["best"][:n] for r in rows]) - fmin


def cell(rows, problem):
    final = regrets(rows, problem)[:, -1]
    q1, med, q3 = np.percentile(final, [25, 50, 75])
    wall = np.median([r["wall"] for r in rows])
    return f"{med:.2g} [{q1:.2g}, {q3:.2g}] ({wall:.1f} s, n={len(rows)})"


def table(runs, dtype="float32", contestants=None):
    problems = [p for p in PROBLEMS if any(k[0] == p and k[2] == dtype for k in runs)]
    names = [
        c for c in (contestants or _names(runs)) if any(k[1] == c and k[2] == dtype for k in runs)
    ]
    lines = [f"| problem (evals) | {' | '.join(names)} |", "|---" * (len(names) + 1) + "|"]
    for p in problems:
        cells = [cell(runs[(p, c, dtype)], p) if (p, c, dtype) in runs else "—" for c in names]
        lines.append(
            f"| {p} ({len(runs[next(k for k in runs if k[0] == p)][0]['best'])}) | "
            f"{' | '.join(cells)} |"
        )
    return "\n".join(lines)


def plot(runs, dtype="float32"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    PLOTS.mkdir(exist_ok=True)
    for p in PROBLEMS:
        keys = [k for k in runs if k[0] == p and k[2] == dtype]
        if not keys:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for c in _names(runs):
            if (p, c, dtype) not in runs:
                continue
            r = np.maximum(regrets(runs[(p, c, dtype)], p), 1e-8)
            q1, med, q3 = np.percentile(r, [25, 50, 75], axis=0)
            x = np.arange(1, r.shape[1] + 1)
            ax.plot(x, med, label=f"{c} (n={r.shape[0]})")
            ax.fill_between(x, q1, q3, alpha=0.15)
        ax.set_yscale("log")
        ax.set_xlabel("evaluations")
        ax.set_ylabel("validation error" if p == "mlp_digits" else "simple regret")
        ax.set_title(f"{p}: median and interquartile range over seeds ({dtype})")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(PLOTS / f"{p}-{dtype}.png", dpi=90)
        plt.close(fig)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--runs",
        type=Path,
        nargs="*",
        default=sorted(OUT.parent.glob("*.jsonl")),
        help="JSON-lines files from compare.py (default: benchmarks/out/*.jsonl)",
    )
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--quick", action="store_true", help="report the runs of `compare.py --quick`")
    args = ap.parse_args()
    runs = load(args.runs, args.quick)
    for dtype in ("float32", "float64"):
        if any(k[2] == dtype for k in runs):
            print(
                f"\n### {dtype}: median final regret [25th, 75th percentile] "
                f"(median wall s per run, seeds)\n"
            )
            print(table(runs, dtype))
            if not args.no_plots:
                plot(runs, dtype)


if __name__ == "__main__":
    main()
