"""Compare ways of choosing `best_params` on the same searches (paired).

What a search reports is decided after it ends, from its final state, so report rules can
be compared without the seed noise of running every search again: `states` runs each
problem's search once per seed and keeps its final state; `score` ranks every state with
each rule and prints the robustness suite's two figures (mean normalised score, failed
runs) per rule and per problem.

    python benchmarks/reports.py states --contestant hx-defaults-p1 --seeds 40 --first-seed 120
    python benchmarks/reports.py score --contestant hx-defaults-p1

The rules (all but `observed` rank with "within two noise standard deviations of the
best, largest posterior mean", the fitted noise deciding the band, except `library`):
- `observed`: the best observation;
- `search-model`: the search's own model as the state holds it;
- `map`: the search's kernel or `Matern(2.5)`, both refitted, whichever has the larger
  fitted posterior density;
- `laplace`: the same by a Laplace approximation of each model's evidence (the posterior
  density less half the log determinant of its Hessian in the hyperparameters);
- `loo`: the same by leave-one-out predictive density;
- `library`: what `best_params` does (`loo`, but with the search's model as the state
  holds it against the refitted `Matern(2.5)`, and the band's noise lowered where
  near-replicates contradict it: `gp.replicate_noise_bound`).

Scores need random search's rows of the same problems (`robust.py run --contestants
random`), read from `--random` (default: the suite's own file).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import hyperoptax as hx
from hyperoptax import bayesian, gp
from hyperoptax._targets import model_targets
from hyperoptax.kernels import Unordered
from hyperoptax.spaces import flatten_space

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import robust  # noqa: E402
import suite  # noqa: E402

STATES = HERE / "out" / "report-states"
RULES = ["observed", "search-model", "map", "laplace", "loo", "library"]


def _init(contestant, problem, budget):
    return hx.BayesianSearch.init(
        problem.space, n_max=budget, maximize=False, **robust.hx_configs()[contestant]
    )


def states(contestant, half, seeds, first_seed, out: Path, quick=False):
    """Run each problem of `half` once per seed; save each final state's leaves (and the
    budget). `quick`: the suite's smoke problems with its smoke budget."""
    out.mkdir(parents=True, exist_ok=True)
    for name, problem in suite.PROBLEMS.items():
        if quick:
            if name not in robust.QUICK_PROBLEMS:
                continue
        elif half != "all" and problem.half != half:
            continue
        budget = robust.QUICK_BUDGET if quick else problem.budget
        for seed in range(first_seed, first_seed + seeds):
            path = out / f"{name}-{seed}.npz"
            if path.exists():
                continue
            state, opt = _init(contestant, problem, budget)
            key = jax.random.PRNGKey(seed)
            if problem.host:
                state, _ = opt.optimize_host(state, key, problem.f, budget)
            else:
                state, _ = opt.optimize(state, key, problem.objective, budget)
            leaves = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(state)]
            np.savez(path, *leaves, budget=budget)
            print(name, seed, flush=True)


_SEARCHES: dict = {}


def _load_state(contestant, problem, path):
    """The saved state at `path` and its search (one search object per problem and
    budget, so its compiled programs are reused across the saved states)."""
    z = np.load(path)
    budget = int(z["budget"])
    if (contestant, problem.name, budget) not in _SEARCHES:
        _SEARCHES[(contestant, problem.name, budget)] = _init(contestant, problem, budget)
    like, opt = _SEARCHES[(contestant, problem.name, budget)]
    leaves = [jnp.asarray(z[f"arr_{i}"]) for i in range(len(z.files) - 1)]
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like), leaves), opt


@eqx.filter_jit
def _refitted_choices(search, state):
    """The rows the `map` and `laplace` rules choose, and the one the search's model
    as it stands chooses (`search-model`)."""
    flat = flatten_space(state.space)
    z, _ = model_targets(state.y, state.mask, search.maximize)
    data = bayesian._dataset(flat, state, z)
    own = bayesian._model_kernel(search, flat)
    smooth = bayesian.REPORT_KERNEL
    if any(flat.n_choices):
        smooth = Unordered(smooth, flat.n_choices)
    fit_data = gp.fit_subset(data)
    scored = []
    starts = (bayesian._gp_params(state), gp.prior_mode(flat.n_params, z.dtype))
    for kernel, start in zip((own, smooth), starts, strict=True):
        p = gp.fit_hyperparameters(kernel, start, data, search.jitter, bayesian.REPORT_FIT_STEPS)
        value = gp.neg_log_posterior(kernel, p, fit_data, search.jitter)
        vec, unravel = ravel_pytree(p)

        def grad(v, kernel=kernel, unravel=unravel):
            g = gp._value_and_grad(kernel, unravel(v), fit_data, search.jitter)[1]
            return ravel_pytree(g)[0]

        H = jax.jacfwd(grad)(vec)
        curvature = jnp.linalg.eigvalsh(0.5 * (H + H.T))
        laplace = value + 0.5 * jnp.sum(jnp.log(jnp.maximum(curvature, 1e-3)))
        loo = gp.neg_loo_log_density(kernel, p, fit_data, search.jitter)
        row = bayesian._ranked_best(search, state, z, data, kernel, p, replicates=False)
        scored.append((row, value, laplace, loo))
    (row_own, map_own, lap_own, loo_own), (row_smooth, map_smooth, lap_smooth, loo_smooth) = scored
    as_is = bayesian._ranked_best(
        search, state, z, data, own, bayesian._gp_params(state), replicates=False
    )
    return (
        as_is,
        jnp.where(map_smooth < map_own, row_smooth, row_own),
        jnp.where(lap_smooth < lap_own, row_smooth, row_own),
        jnp.where(loo_smooth < loo_own, row_smooth, row_own),
    )


def rank(contestant, statedir: Path):
    """One row per saved state: the true value of each rule's report."""
    rows = []
    for name, problem in suite.PROBLEMS.items():
        paths = sorted(statedir.glob(f"{name}-*.npz"))
        if not paths:
            continue
        for path in paths:
            state, opt = _load_state(contestant, problem, path)
            flat = flatten_space(state.space)
            y = np.asarray(state.y)
            ok = np.asarray(state.mask) & np.isfinite(y)
            as_is, by_map, by_laplace, by_loo = (int(i) for i in _refitted_choices(opt, state))
            chosen = {
                "observed": int(np.argmin(np.where(ok, y, np.inf))),
                "search-model": as_is,
                "map": by_map,
                "laplace": by_laplace,
                "loo": by_loo,
                "library": int(bayesian._best_index(opt, state)),
            }
            true = {}
            for rule, i in chosen.items():
                if problem.noise == 0:  # deterministic: the observation is the value
                    true[rule] = float(y[i])
                else:
                    leaf = flat.unflatten(np.asarray(state.X)[i][None, :])
                    params = jax.tree_util.tree_map(lambda a: a[0], leaf)
                    config = robust._config_of(params, problem.space)
                    true[rule] = robust._true_value(problem, config)
            rows.append(dict(problem=name, seed=int(path.stem.rsplit("-", 1)[1]), true=true))
            print(name, rows[-1]["seed"], flush=True)
    return rows


def table(rows, random_paths, quick=False):
    loaded = robust.load(random_paths, quick=quick)
    random = {k: v for k, v in loaded.items() if k[1] == "random"}
    grouped = dict(random)
    for r in rows:
        for rule in RULES:
            grouped.setdefault((r["problem"], rule), []).append(dict(found=r["true"][rule], wall=0))
    s = robust.summary(grouped)
    problems = sorted({r["problem"] for r in rows})
    lines = ["| problem | " + " | ".join(RULES) + " |", "|---" * (len(RULES) + 1) + "|"]

    def cell(p, rule):
        return f"{s[(p, rule)]['score'].mean():.1f} / {int(s[(p, rule)]['fail'].sum())}"

    for p in problems:
        lines.append(f"| {p} | " + " | ".join(cell(p, rule) for rule in RULES) + " |")
    means = []
    for rule in RULES:
        score = np.mean([s[(p, rule)]["score"].mean() for p in problems])
        fails = sum(int(s[(p, rule)]["fail"].sum()) for p in problems)
        runs = sum(s[(p, rule)]["n"] for p in problems)
        means.append(f"**{score:.1f} / {fails} of {runs}**")
    lines.append("| mean / failed runs | " + " | ".join(means) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for cmd in ("states", "score"):
        c = sub.add_parser(cmd)
        c.add_argument("--contestant", default="hx-defaults-p1", choices=list(robust.hx_configs()))
        c.add_argument("--dir", type=Path, default=None, help="states folder")
    st = sub.choices["states"]
    st.add_argument("--half", choices=[suite.DEV, suite.HELD_OUT, "all"], default=suite.DEV)
    st.add_argument("--seeds", type=int, default=10)
    st.add_argument("--first-seed", type=int, default=0)
    for cmd in ("states", "score"):
        sub.choices[cmd].add_argument("--quick", action="store_true", help="smoke problems")
    sub.choices["score"].add_argument("--random", type=Path, nargs="*", default=[robust.OUT])
    args = parser.parse_args(argv)
    statedir = args.dir or STATES / args.contestant
    if args.cmd == "states":
        seeds = 1 if args.quick else args.seeds
        states(args.contestant, args.half, seeds, args.first_seed, statedir, args.quick)
    else:
        text = table(rank(args.contestant, statedir), args.random, args.quick)
        print(text)
        return text


if __name__ == "__main__":
    main()
