"""Run the robustness suite (`suite.py`) and summarise it the way the black-box challenge did.

    python benchmarks/robust.py run --half dev                 # every contestant, 10 seeds
    python benchmarks/robust.py run --half held-out --contestants random hx-recommended
    python benchmarks/robust.py run --quick                    # smoke run: 2 problems, tiny budgets
    python benchmarks/robust.py report                         # tables (markdown) and plots
    python benchmarks/robust.py report --x64                   # the runs made with --x64
    python benchmarks/robust.py reference knn_digits           # a real task's reference value

Every run appends one JSON line to `benchmarks/out/robust.jsonl` (or `--out`): the
contestant, problem, seed, budget, the best observed value after each evaluation, the
*true* value of the configuration the contestant reports as its best (`found`; for noisy
problems this is not its luckiest observation), the true value of the configuration
with the best observed result (`found_observed`: what reporting the luckiest observation
would score; `report --found observed` scores that, and `report --found setting`
scores it on the noise-free problems only, where `best_params(state, observed=True)`
is the documented setting), the wall time, and the library's commit,
package versions and date. Runs already in the file (same contestant, problem, seed,
budget, precision and commit) are skipped, so an interrupted sweep resumes; rows from
other commits are kept, and `report --commit C [C ...]` reports those of the given
commits only.

Two summary figures per contestant, on each half:
- the normalised score `100 * (random_median - found) / (random_median - optimum)`:
  100 is the optimum (or the reference value), 0 random search's median final result;
- the failure rate: the share of runs whose `found` is worse than random search's median
  (by more than the problem's `tie`: one validation example of a real task's error rate).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from suite import DEV, HELD_OUT, PROBLEMS  # noqa: E402

import hyperoptax as hx  # noqa: E402

OUT = HERE / "out" / "robust.jsonl"
PLOTS = HERE / "plots" / "robust"


EXTRA: dict[str, str] = {}  # contestants from --define: name -> keyword arguments (Python)


def hx_configs():
    """The hyperoptax contestants, all sequential (`n_parallel=1`)."""
    return {
        "hx-defaults-p1": dict(n_parallel=1),  # the API reference's defaults, one at a time
        "hx-recommended": hx.recommended(n_parallel=1),
        **{name: eval(kwargs, {"hx": hx}) for name, kwargs in EXTRA.items()},
    }


PEERS = ["optuna-tpe", "optuna-gp"]
# hyperoptax's recommended settings as an Optuna sampler (`HyperoptaxSampler`), on request.
IN_OPTUNA = "hx-in-optuna"
CONTESTANTS = ["random", "hx-defaults-p1", "hx-recommended", *PEERS]
# A JAX objective and a host one (scikit-learn, through `optimize_host`): both runners.
QUICK_PROBLEMS = ["branin", "elasticnet_diabetes"]
QUICK_BUDGET = 6


def _categorical(space):
    return isinstance(space, hx.CategoricalSpace)


def _true_value(problem, config):
    """The noiseless objective at a configuration of plain Python values."""
    if problem.host:
        return float(problem.f(config))
    params = {}
    for name, s in problem.space.items():
        v = config[name]
        if _categorical(s):
            params[name] = jnp.asarray(s.encode(v), jnp.int32)
        else:
            params[name] = jnp.asarray(
                v, jnp.int32 if isinstance(v, int) else jnp.result_type(float)
            )
    return float(problem.f(params))


def _config_of(params, space):
    """A pytree of scalars (as `best_params` returns) -> one configuration of Python values."""
    return hx.to_configs(jax.tree_util.tree_map(lambda v: jnp.asarray(v)[None], params), space)[0]


# -- contestants ------------------------------------------------------------------------


def run_hyperoptax(contestant, problem, seed, budget):
    key = jax.random.PRNGKey(seed)
    if contestant == "random":
        state, opt = hx.RandomSearch.init(problem.space, n_parallel=1)
    else:
        state, opt = hx.BayesianSearch.init(
            problem.space, n_max=budget, maximize=False, **hx_configs()[contestant]
        )
    if problem.host:
        state, (ph, rh) = opt.optimize_host(state, key, problem.f, budget)
    else:
        state, (ph, rh) = opt.optimize(state, key, problem.objective, budget)
    configs = [c for p in ph for c in hx.to_configs(p, problem.space)]
    ys = np.concatenate([np.asarray(r).reshape(-1) for r in rh])
    if contestant == "random":
        best = observed = configs[int(np.argmin(np.where(np.isfinite(ys), ys, np.inf)))]
    else:
        best = _config_of(opt.best_params(state), problem.space)
        observed = _config_of(opt.best_params(state, observed=True), problem.space)
    return ys, best, observed


def _noise_key(seed):
    counter = iter(range(10**9))
    base = jax.random.PRNGKey(10_000 + seed)
    return lambda: jax.random.fold_in(base, next(counter))


def optuna_sampler(contestant, problem, seed):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if contestant == "optuna-tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if contestant == IN_OPTUNA:
        from hyperoptax.integrations.optuna import HyperoptaxSampler

        return HyperoptaxSampler(seed=seed)
    # The documented setting for noiseless objectives (noise-free problems only).
    return optuna.samplers.GPSampler(seed=seed, deterministic_objective=problem.noise == 0)


def run_optuna(contestant, problem, seed, budget):
    import optuna

    objective, ys = optuna_objective(problem, seed)
    study = optuna.create_study(
        sampler=optuna_sampler(contestant, problem, seed), direction="minimize"
    )
    study.optimize(objective, n_trials=budget)
    return np.asarray(ys), dict(study.best_params)


def optuna_objective(problem, seed):
    """An Optuna objective for `problem` (noise keyed by `seed`) and the list it appends
    each result to."""
    f = None if problem.host else jax.jit(problem.objective)
    next_key = _noise_key(seed)
    ys = []

    def objective(trial):
        config = {}
        for name, s in problem.space.items():
            if _categorical(s):
                config[name] = trial.suggest_categorical(name, list(s.choices))
            elif isinstance(s, hx.QLinearSpace | hx.QLogSpace):
                config[name] = trial.suggest_int(
                    name, int(s.lower_bound), int(s.upper_bound), log=isinstance(s, hx.QLogSpace)
                )
            else:
                config[name] = trial.suggest_float(
                    name, float(s.lower_bound), float(s.upper_bound), log=isinstance(s, hx.LogSpace)
                )
        if problem.host:
            y = float(problem.f(config))
        else:
            params = {
                k: jnp.asarray(
                    problem.space[k].encode(v) if _categorical(problem.space[k]) else v,
                    jnp.int32
                    if isinstance(v, int) or _categorical(problem.space[k])
                    else jnp.result_type(float),
                )
                for k, v in config.items()
            }
            y = float(f(next_key(), params))
        ys.append(y)
        return y

    return objective, ys


def run(contestant, problem_name, seed, budget=None):
    """One run: (best observed after each evaluation, true value of the reported best, wall s,
    true value of the configuration with the best observed result).

    For noise-free problems the last equals the best observed result; for noisy ones it
    is what a contestant that reports its luckiest observation would score.
    """
    problem = PROBLEMS[problem_name]
    budget = budget or problem.budget
    t = time.perf_counter()
    if contestant in (*PEERS, IN_OPTUNA):
        ys, best = run_optuna(contestant, problem, seed, budget)
        observed = best  # Optuna reports the trial with the best observed value
    else:
        ys, best, observed = run_hyperoptax(contestant, problem, seed, budget)
    wall = time.perf_counter() - t
    ys = np.where(np.isfinite(ys), ys, np.inf)[:budget]
    found = _true_value(problem, best)
    found_observed = found if observed is best else _true_value(problem, observed)
    return np.minimum.accumulate(ys), found, wall, found_observed


# -- provenance -----------------------------------------------------------------------------


def provenance():
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "../hyperoptax"],
            cwd=HERE,
            capture_output=True,
            text=True,
        ).stdout.strip()
        commit += "+dirty" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    versions = {}
    for pkg in ("jax", "equinox", "optax", "optuna", "torch", "scikit-learn"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    return dict(commit=commit, versions=versions, date=datetime.date.today().isoformat())


def _rows(path):
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def cmd_run(args):
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    for name, kwargs in args.define:
        EXTRA[name] = kwargs
    dtype = "float64" if args.x64 else "float32"
    prov = provenance()
    names = args.problems or [n for n, p in PROBLEMS.items() if args.half in ("all", p.half)]
    if args.quick:
        names = args.problems or QUICK_PROBLEMS
    n_seeds = args.seeds if not args.quick else min(args.seeds, 1)
    seeds = range(args.first_seed, args.first_seed + n_seeds)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    # The peers' and random search's runs do not depend on hyperoptax's model: one per seed.
    def run_key(c, problem, seed, budget, dtype, commit):
        return c, problem, seed, budget, dtype, None if c in ("random", *PEERS) else commit

    done = {
        run_key(r["contestant"], r["problem"], r["seed"], r["budget"], r["dtype"], r["commit"])
        for r in _rows(args.out)
    }
    for name in names:
        budget = QUICK_BUDGET if args.quick else PROBLEMS[name].budget
        for c in args.contestants:
            for s in seeds:
                if run_key(c, name, s, budget, dtype, prov["commit"]) in done:
                    continue
                curve, found, wall, found_observed = run(c, name, s, budget)
                row = dict(
                    contestant=c,
                    problem=name,
                    seed=s,
                    budget=budget,
                    dtype=dtype,
                    best=[float(v) for v in curve],
                    found=found,
                    found_observed=found_observed,
                    wall=wall,
                    **prov,
                )
                with args.out.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(f"{name:20s} {c:16s} seed {s}: found {found:.5g} ({wall:.1f} s)", flush=True)


# -- summaries ------------------------------------------------------------------------------


def load(paths, dtype="float32", commit=None, quick=False, found="reported"):
    """{(problem, contestant): [row, ...]}: full-budget runs, one per seed (the latest).

    With `found="observed"` each run is scored by `found_observed` (hyperoptax rows
    without it are left out; random search and the peers report their best observation).
    `found="setting"` scores each contestant at its documented setting for the problem:
    on noise-free problems hyperoptax reports `best_params(state, observed=True)` (its
    `found_observed`), as Optuna's GPSampler runs with `deterministic_objective=True`
    there; on noisy problems the model's report (`found`).
    With `dtype="float64"` the hyperoptax rows are those run under `jax_enable_x64`,
    scored against the same random-search and peer rows as float32 (they ran once, in
    float32: a distribution of random results does not depend on JAX's precision).
    """
    runs = {}
    for path in paths:
        for r in _rows(path):
            baseline = r["contestant"] in ("random", *PEERS)
            if r["problem"] not in PROBLEMS or r["dtype"] != ("float32" if baseline else dtype):
                continue
            if found == "observed" or (found == "setting" and PROBLEMS[r["problem"]].noise == 0):
                # Random search and the peers report their best observation anyway.
                if r["contestant"] in ("random", *PEERS):
                    r = dict(r, found_observed=r.get("found_observed", r["found"]))
                if "found_observed" not in r:
                    continue
                r = dict(r, found=r["found_observed"])
            if r["budget"] != (QUICK_BUDGET if quick else PROBLEMS[r["problem"]].budget):
                continue
            if commit and r["commit"] not in commit and r["contestant"] not in ("random", *PEERS):
                continue
            runs[(r["problem"], r["contestant"], r["seed"])] = r
    grouped = defaultdict(list)
    for (p, c, _), r in sorted(runs.items()):
        grouped[(p, c)].append(r)
    return grouped


def summary(grouped):
    """Per problem and contestant: median found, score per run, failures; needs random's runs."""
    out = {}
    for (p, c), rows in grouped.items():
        if (p, "random") not in grouped:
            continue
        problem = PROBLEMS[p]
        rand = np.median([r["found"] for r in grouped[(p, "random")]])
        found = np.array([r["found"] for r in rows])
        span = rand - problem.optimum
        score = 100 * (rand - found) / span if span > 0 else np.zeros_like(found)
        out[(p, c)] = dict(
            found=found,
            score=score,
            fail=found > rand + problem.tie,
            random_median=rand,
            wall=float(np.median([r["wall"] for r in rows])),
            n=len(rows),
        )
    return out


def _fmt(v):
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


def tables(grouped, contestants=None):
    s = summary(grouped)
    names = contestants or [c for c in CONTESTANTS if any(k[1] == c for k in s)]
    names += sorted({k[1] for k in s} - set(names))
    lines = []
    for half in (DEV, HELD_OUT):
        probs = [
            p for p in PROBLEMS if PROBLEMS[p].half == half and any((p, c) in s for c in names)
        ]
        if not probs:
            continue
        lines += [
            f"\n#### {half} half: mean normalised score (failure rate, runs)\n",
            "| contestant | mean score | failure rate | problems | runs |",
            "|---|---|---|---|---|",
        ]
        for c in names:
            cells = [s[(p, c)] for p in probs if (p, c) in s]
            if not cells:
                continue
            mean_score = np.mean([np.mean(x["score"]) for x in cells])
            fails = sum(int(x["fail"].sum()) for x in cells)
            runs = sum(x["n"] for x in cells)
            lines.append(
                f"| {c} | {mean_score:.1f} | {fails}/{runs} = {100 * fails / runs:.1f}% | "
                f"{len(cells)}/{len(probs)} | {runs} |"
            )
        lines += [
            f"\n#### {half} half, per problem: median regret of the reported best "
            f"(mean score; runs worse than random's median)\n",
            f"| problem (d, evals) | {' | '.join(names)} |",
            "|---" * (len(names) + 1) + "|",
        ]
        for p in probs:
            prob = PROBLEMS[p]
            cells = []
            for c in names:
                if (p, c) not in s:
                    cells.append("—")
                    continue
                x = s[(p, c)]
                reg = np.median(x["found"]) - prob.optimum
                cells.append(
                    f"{_fmt(reg)} ({np.mean(x['score']):.0f}; {int(x['fail'].sum())}/{x['n']})"
                )
            tag = f"{prob.kind}, {prob.dim}, {prob.budget}" + (", ref" if prob.reference else "")
            lines.append(f"| {p} ({tag}) | {' | '.join(cells)} |")
    return "\n".join(lines)


def plot(grouped):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    PLOTS.mkdir(parents=True, exist_ok=True)
    for p, prob in PROBLEMS.items():
        keys = [k for k in grouped if k[0] == p]
        if not keys:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for c in [c for c in CONTESTANTS if (p, c) in grouped] + sorted(
            {k[1] for k in keys} - set(CONTESTANTS)
        ):
            rows = grouped[(p, c)]
            n = min(len(r["best"]) for r in rows)
            r = np.maximum(np.array([r["best"][:n] for r in rows]) - prob.optimum, 1e-8)
            q1, med, q3 = np.percentile(r, [25, 50, 75], axis=0)
            x = np.arange(1, n + 1)
            ax.plot(x, med, label=f"{c} (n={r.shape[0]})")
            ax.fill_between(x, q1, q3, alpha=0.15)
        ax.set_yscale("log")
        ax.set_xlabel("evaluations")
        ax.set_ylabel("best observed - " + ("reference" if prob.reference else "optimum"))
        ax.set_title(f"{p} ({prob.half}): median, quartiles", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(PLOTS / f"{p}.png", dpi=80)
        plt.close(fig)


def cmd_report(args):
    grouped = load(
        args.out if isinstance(args.out, list) else [args.out],
        dtype="float64" if args.x64 else "float32",
        commit=args.commit,
        quick=args.quick,
        found=args.found,
    )
    print(tables(grouped))
    if not args.no_plots and not args.x64:  # the plots show the float32 runs
        plot(grouped)


def cmd_reference(args):
    problem = PROBLEMS[args.problem]
    state, opt = hx.RandomSearch.init(problem.space, n_parallel=args.n)
    params = opt.get_next_params(state, jax.random.PRNGKey(12345))
    configs = hx.to_configs(params, problem.space)
    ys = [problem.f(c) if problem.host else _true_value(problem, c) for c in configs]
    i = int(np.nanargmin(ys))
    print(f"{args.problem}: best of {args.n} random configurations {ys[i]!r} at {configs[i]}")


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--half", choices=[DEV, HELD_OUT, "all"], default=DEV)
    r.add_argument("--problems", nargs="*")
    r.add_argument("--contestants", nargs="*", default=CONTESTANTS)
    r.add_argument("--seeds", type=int, default=10)
    r.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seeds first_seed .. first_seed + seeds - 1 (fresh seeds to check a decision on)",
    )
    r.add_argument(
        "--quick", action="store_true", help=f"{QUICK_PROBLEMS}, one seed, budget {QUICK_BUDGET}"
    )
    r.add_argument("--x64", action="store_true")
    r.add_argument(
        "--xla-defaults",
        action="store_true",
        help="build the library's programs with XLA's default CPU fusion emitters "
        "(hyperoptax/_jit.py; write these rows to their own --out)",
    )
    r.add_argument(
        "--define",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "KWARGS"),
        help='an extra hyperoptax contestant: --define ucb "{**hx.recommended(n_parallel=1), '
        "'acquisition': hx.UCB()}\"",
    )
    r.add_argument("--out", type=Path, default=OUT)
    r.set_defaults(fn=cmd_run)
    p = sub.add_parser("report")
    p.add_argument("--out", type=Path, nargs="*", default=[OUT])
    p.add_argument("--commit", nargs="*", help="hyperoptax rows from these commits only")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument(
        "--x64", action="store_true", help="the hyperoptax runs made with jax_enable_x64 (no plots)"
    )
    p.add_argument(
        "--found",
        choices=["reported", "observed", "setting"],
        default="reported",
        help="score the reported best configuration (`best_params(state)`), the one with the "
        "best observed result, or each at its setting for the problem: the best observed "
        "on noise-free problems (`best_params(state, observed=True)`), the report on noisy "
        "ones",
    )
    p.set_defaults(fn=cmd_report)
    f = sub.add_parser("reference")
    f.add_argument("problem")
    f.add_argument("--n", type=int, default=2000)
    f.set_defaults(fn=cmd_reference)
    args = ap.parse_args(argv)
    if getattr(args, "xla_defaults", False):
        import hyperoptax._jit

        hyperoptax._jit.CPU_COMPILER_OPTIONS.clear()
    args.fn(args)


if __name__ == "__main__":
    main()
