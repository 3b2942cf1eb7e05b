"""A checkpointed search run as its own process (see test_checkpoint.py).

usage: python checkpoint_worker.py CHECKPOINT OUT.npz
Prints "iteration i" after each iteration; saves the final state and history to OUT.
"""

import sys

import jax
import numpy as np
from helpers import BRANIN_SPACE, branin

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

    state, (_, results) = run(sys.argv[1], report)
    np.savez(sys.argv[2], **arrays(state, results))
