"""Wall time of a search whose batch is split over 1, 2 and 4 devices.

Each device count runs in a fresh process (the count is fixed when JAX starts; on a
CPU the devices are simulated with --xla_force_host_platform_device_count and share
the machine's cores). The objective trains the demo's Equinox MLP on scikit-learn's
digits (100 AdamW steps per configuration); the search is `BayesianSearch` with the
recommended settings, n_parallel=8, 5 iterations (40 trainings) under `optimize_scan`.

    python benchmarks/sharding.py            # prints a Markdown table
"""

import json
import os
import subprocess
import sys
import time

N_PARALLEL, N_ITER = 8, 5


def run(n_devices: int) -> dict:
    import jax
    import numpy as np
    from jax.sharding import Mesh

    import hyperoptax as hx
    from hyperoptax import demo

    assert jax.device_count() == n_devices, jax.devices()
    mesh = Mesh(np.array(jax.devices()), ("batch",)) if n_devices > 1 else None
    state, opt = hx.BayesianSearch.init(
        demo.SPACE,
        n_max=N_PARALLEL * N_ITER,
        maximize=False,
        n_parallel=N_PARALLEL,
        kernel=hx.Matern(nu=1.5),
        acquisition=hx.UCB(),
        n_restarts=8,
        n_lbfgs_steps=30,
    )
    demo.load_digits_split()
    times = []
    for seed in range(3):  # the first includes compilation
        t = time.perf_counter()
        _, (_, r) = opt.optimize_scan(
            state, jax.random.PRNGKey(seed), demo.mlp_validation_error, N_ITER, mesh=mesh
        )
        r.block_until_ready()
        times.append(time.perf_counter() - t)
    return dict(devices=n_devices, first=times[0], steady=min(times[1:]), best=float(np.min(r)))


def main():
    rows = []
    for n in (1, 2, 4):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
        code = (
            "import sys; sys.path.insert(0, 'benchmarks'); import sharding, json; "
            f"print(json.dumps(sharding.run({n})))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]["steady"]
    print("| devices | first call incl. compile (s) | steady run (s) | speed-up | best error |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['devices']} | {r['first']:.2f} | {r['steady']:.2f} | "
            f"{base / r['steady']:.2f}x | {r['best']:.4f} |"
        )


if __name__ == "__main__":
    main()
