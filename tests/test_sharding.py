"""Batch evaluation and seeds sharded over 4 simulated CPU devices (in a subprocess)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

import hyperoptax as hx

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def report():
    env = dict(os.environ, PYTHONPATH=str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, str(HERE / "sharding_worker.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_batch_is_really_split_over_the_devices(report):
    assert report["devices"] == 4
    # optimize_scan's history keeps the batch axis split: each of the 4 devices holds
    # one configuration of each of the 3 iterations.
    assert (
        report["scan_spec"] == "PartitionSpec(None, 'batch')"
        or report["scan_spec"] == "P(None, 'batch')"
    )
    assert report["scan_shards"] == [[3, 1]] and report["scan_shard_devices"] == 4
    assert report["loop_spec"] in ("PartitionSpec('batch',)", "P('batch',)")


def test_sharded_search_matches_the_unsharded_one(report):
    # Same key, same first suggestions; at the same configurations the objective's
    # float32 results agree to the last bit or two (XLA compiles one batch of 4 and four
    # batches of 1 into different kernels). Later suggestions come from GP fits that saw
    # those last bits, so they agree to float32 precision of the fit (1e-5), and so do
    # their results.
    assert report["scan_first_params_equal"]
    assert report["scan_first_results_rel_diff"] < 1e-6 and report["loop_results_rel_diff"] < 1e-6
    assert report["scan_X_diff"] < 1e-5 and report["scan_results_rel_diff"] < 1e-5


def test_seeds_sharded_over_devices(report):
    assert report["seeds_spec"] in ("PartitionSpec('batch',)", "P('batch',)")
    assert report["seeds_close"]


def test_indivisible_batch_is_refused(report):
    assert (
        "n_parallel=6 configurations cannot be split evenly over the mesh's 4 devices"
        in (report["indivisible_error"])
    )


def test_hyperband_rungs_are_split_over_the_devices(report):
    # Rungs of 9, 3 and 1 configurations on 4 devices (padded, padding dropped): the
    # same search as on one device, each rung's program partitioned four ways.
    assert report["hb_rung_sizes"] == [9, 3, 1]
    assert report["hb_same_configurations"] and report["hb_results_diff"] < 1e-6
    assert report["hb_partitions"] == 1


def test_mesh_argument_is_checked_in_process():
    state, opt = hx.RandomSearch.init({"x": hx.LinearSpace(0.0, 1.0)}, n_parallel=3)
    mesh = Mesh(np.array(jax.devices()), ("batch",))  # one device here: 3 is divisible
    _, (_, rh) = opt.optimize_scan(state, jax.random.PRNGKey(0), lambda k, p: p["x"], 2, mesh=mesh)
    assert rh.shape == (2, 3)
    with pytest.raises(TypeError, match="mesh"):
        opt.optimize_scan(state, jax.random.PRNGKey(0), lambda k, p: p["x"], 2, mesh="cpu")
    hb_state, hb = hx.Hyperband.init({"x": hx.LinearSpace(0.0, 1.0)}, min_budget=1, max_budget=3)
    with pytest.raises(TypeError, match="Hyperband: `mesh`"):
        hb.optimize(hb_state, jax.random.PRNGKey(0), lambda k, p, b: p["x"], mesh="cpu")
