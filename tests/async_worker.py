"""An asynchronous, checkpointed host search run as its own process (see test_host.py).

usage: python async_worker.py CHECKPOINT
Prints "recorded i" after each recorded evaluation; the test kills it part-way.
"""

import sys
import time
from concurrent.futures import ThreadPoolExecutor

import jax

import hyperoptax as hx

SPACE = {"x": hx.LinearSpace(0.0, 1.0), "n": hx.QLinearSpace(1, 1000)}
N_PARALLEL, N_ITERATIONS = 2, 5


def objective(config):
    time.sleep(0.02 + 0.05 * config["x"])  # workers finish out of order
    return config["x"] + config["n"] / 1000.0


def run(checkpoint, objective=objective, callback=None):
    state, opt = hx.RandomSearch.init(SPACE, n_parallel=N_PARALLEL)
    with ThreadPoolExecutor(N_PARALLEL) as pool:
        return opt.optimize_host(
            state,
            jax.random.PRNGKey(5),
            objective,
            N_ITERATIONS,
            executor=pool,
            checkpoint=checkpoint,
            callback=callback,
            asynchronous=True,
        )


if __name__ == "__main__":
    run(sys.argv[1], callback=lambda i, *_: print(f"recorded {i}", flush=True))
