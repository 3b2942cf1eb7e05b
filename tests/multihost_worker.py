"""One process of a two-process JAX cluster on this machine, run by `test_multihost.py`.

`python multihost_worker.py PORT PROCESS_ID OUT_DIR`: joins the cluster at
`127.0.0.1:PORT` as process `PROCESS_ID` of 2, with two CPU devices of its own and CPU
collectives over gloo, so that the mesh spans 4 devices in two processes. With
`PROCESS_ID` -1 it is the one-process reference instead: 4 devices in one process, as
`sharding_worker.py` has. Prints one JSON object.
"""

import os
import sys

PORT, PROCESS_ID, OUT = sys.argv[1], int(sys.argv[2]), sys.argv[3]
DEVICES = 4 if PROCESS_ID < 0 else 2
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={DEVICES}"
)

import json  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")
if PROCESS_ID >= 0:
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{PORT}", num_processes=2, process_id=PROCESS_ID
    )

from helpers import SHARDED_SMALL as SMALL  # noqa: E402
from helpers import SHARDED_SPACE as SPACE  # noqa: E402
from helpers import count_compilations  # noqa: E402
from helpers import sharded_objective as objective  # noqa: E402

import hyperoptax as hx  # noqa: E402


class Crash(Exception):
    pass


def crash_at(iteration):
    def callback(i, state, params, results):
        if i == iteration:
            raise Crash(f"killed during iteration {i}")

    return callback


def host_objective(config):
    return float((np.log10(config["lr"]) + 2.0) ** 2 + abs(config["width"] - 9) / 10)


def main():
    mesh = Mesh(np.array(jax.devices()), ("batch",))  # every device of every process
    out = {
        "processes": jax.process_count(),
        "devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
    }
    key = jax.random.PRNGKey(0)
    state, opt = hx.BayesianSearch.init(SPACE, n_max=12, maximize=False, n_parallel=4, **SMALL)
    ckpt = Path(OUT) / f"search-{PROCESS_ID}.ckpt"  # one file per process
    with count_compilations("_step") as compiled:
        if PROCESS_ID >= 0:
            # Killed after two of three iterations, then started again: it resumes from
            # the file.
            try:
                opt.optimize(
                    state, key, objective, 3, mesh=mesh, checkpoint=ckpt, callback=crash_at(2)
                )
            except Crash:
                out["saved_iterations"] = hx.checkpoint.read_header(ckpt)["extra"]["iteration"]
            final, (params, results) = opt.optimize(
                state, key, objective, 3, mesh=mesh, checkpoint=ckpt
            )
        else:
            final, (params, results) = opt.optimize(state, key, objective, 3, mesh=mesh)
    out["step_compilations"] = compiled[0]
    out["params"] = [
        {k: np.asarray(hx.sharding.to_host(v)).tolist() for k, v in p.items()} for p in params
    ]
    out["results"] = [hx.sharding.to_host(r).tolist() for r in results]
    out["X"] = hx.sharding.to_host(final.X).tolist()
    out["y"] = hx.sharding.to_host(final.y).tolist()

    if PROCESS_ID >= 0:  # on the host: the same in every process, compared between them
        h_state, h_opt = hx.BayesianSearch.init(
            SPACE, n_max=6, maximize=False, n_parallel=2, **SMALL
        )
        with ThreadPoolExecutor(2) as pool:
            h_final, _ = h_opt.optimize_host(
                h_state, jax.random.PRNGKey(1), host_objective, 3, executor=pool
            )
        out["host_X"] = np.asarray(h_final.X).tolist()
        out["host_y"] = np.asarray(h_final.y).tolist()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
