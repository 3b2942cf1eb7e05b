"""A checkpointed search run as its own process (see test_checkpoint.py).

usage: python checkpoint_worker.py CHECKPOINT OUT.npz [hyperband]
Prints "iteration i" after each iteration (each rung: `hyperband`, a successive-halving
search of continued trainings); saves the final state and history to OUT.
"""

import sys

import jax
import numpy as np
from helpers import BRANIN_SPACE, HB_SPACE, branin, start, train

import hyperoptax as hx

CONFIG = dict(
    n_candidates=64, n_restarts=2, n_lbfgs_steps=3, n_hparam_steps=5, n_parallel=2, maximize=False
)
N_MAX = 16


def run(checkpoint=None, callback=None):
    state, opt = hx.BayesianSearch.init(BRANIN_SPACE, n_max=N_MAX, **CONFIG)
    return opt.optimize(
        state, jax.random.PRNGKey(3), branin, checkpoint=checkpoint, callback=callback
    )


def run_hyperband(checkpoint=None, callback=None):
    state, opt = hx.SuccessiveHalving.init(HB_SPACE, min_budget=1, max_budget=9, maximize=False)
    return opt.optimize(
        state,
        jax.random.PRNGKey(4),
        train,
        init_carry=start,
        checkpoint=checkpoint,
        callback=callback,
    )


def hyperband_arrays(state, results_hist):
    fields = ("X", "y", "budget", "configuration", "bracket", "rung", "mask")
    out = {name: np.asarray(getattr(state, name)) for name in fields}
    return dict(out, results=np.concatenate(results_hist))


def arrays(state, results_hist):
    return dict(
        X=np.asarray(state.X),
        y=np.asarray(state.y),
        mask=np.asarray(state.mask),
        ls=np.asarray(state.log_length_scale),
        results=np.stack(results_hist),
    )


if __name__ == "__main__":

    def report(i, *_):
        print(f"iteration {i}", flush=True)

    if sys.argv[3:] == ["hyperband"]:
        state, (_, results) = run_hyperband(sys.argv[1], report)
        np.savez(sys.argv[2], **hyperband_arrays(state, results))
    else:
        state, (_, results) = run(sys.argv[1], report)
        np.savez(sys.argv[2], **arrays(state, results))
