"""How often a search's model-driven suggestions put coordinates on a face of the unit cube.

    python benchmarks/faces.py hartmann6 --seeds 5            # recommended settings
    python benchmarks/faces.py mixed --seeds 20 --defaults    # the library defaults

For each run of a robustness-suite problem (`suite.py`), counts the suggestions after the
random warm-up that have a coordinate within 1e-6 of 0 or 1 on the unit cube, and the
coordinates on faces per suggestion. A uniform point has none; "Suggestions on the faces
of the cube" in RESULTS.md says why it matters.
"""

import argparse

import jax
import numpy as np
from suite import PROBLEMS

import hyperoptax as hx
from hyperoptax.spaces import flatten_space


def faces(problem_name, seeds, defaults=False, budget=None):
    problem = PROBLEMS[problem_name]
    budget = budget or problem.budget
    kwargs = dict(n_parallel=1) if defaults else hx.recommended(n_parallel=1)
    state0, search = hx.BayesianSearch.init(problem.space, n_max=budget, maximize=False, **kwargs)
    flat = flatten_space(problem.space)
    total = with_face = coords = 0
    for seed in range(seeds):
        state, _ = search.optimize(state0, jax.random.PRNGKey(seed), problem.objective)
        U = np.asarray(flat.to_unit(state.X))[search.n_warmup :]
        on = (U <= 1e-6) | (U >= 1 - 1e-6)
        total += len(U)
        with_face += int(on.any(axis=1).sum())
        coords += int(on.sum())
    return dict(suggestions=total, with_a_face=with_face, per_suggestion=coords / total)


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("problem", choices=sorted(PROBLEMS))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--defaults", action="store_true", help="the library defaults")
    args = ap.parse_args()
    r = faces(args.problem, args.seeds, args.defaults)
    print(
        f"{args.problem}: {r['with_a_face']} of {r['suggestions']} model-driven suggestions "
        f"have a coordinate on a face; {r['per_suggestion']:.2f} coordinates per suggestion"
    )


if __name__ == "__main__":
    main()
