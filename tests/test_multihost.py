"""A search across two JAX processes (a 4-device mesh, two devices in each), as on
several hosts, against the same search in one process."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("multihost")
    env = dict(os.environ, PYTHONPATH=str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    port = str(_free_port())
    procs = {
        i: subprocess.Popen(
            [sys.executable, str(HERE / "multihost_worker.py"), port, str(i), str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in (0, 1, -1)  # two processes of one cluster, and the one-process reference
    }
    reports = {}
    try:
        for i, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=600)
            # A process that fails leaves the others waiting for it: stop them.
            assert proc.returncode == 0, f"process {i}:\n{stderr[-3000:]}"
            reports[i] = json.loads(stdout.strip().splitlines()[-1])
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    return reports, out


def test_the_mesh_spans_both_processes(runs):
    reports, _ = runs
    for i in (0, 1):
        assert reports[i]["processes"] == 2
        assert reports[i]["devices"] == 4 and reports[i]["local_devices"] == 2
    assert reports[-1]["processes"] == 1 and reports[-1]["devices"] == 4


def test_both_processes_end_with_identical_states(runs):
    reports, _ = runs
    for field in ("params", "results", "X", "y", "host_X", "host_y"):
        assert reports[0][field] == reports[1][field], field


def test_the_two_process_search_equals_the_one_process_search(runs):
    reports, _ = runs
    multi, single = reports[0], reports[-1]
    # The tolerances of the one-host sharding test: the same first suggestions, whose
    # float32 results agree to the last bit or two; later suggestions (from GP fits that
    # saw those bits) and their results to 1e-5.
    assert multi["params"][0] == single["params"][0]
    r_multi, r_single = np.array(multi["results"]), np.array(single["results"])
    rel_diff = np.abs(r_multi - r_single) / np.abs(r_single)
    assert np.max(rel_diff[0]) < 1e-6 and np.max(rel_diff) < 1e-5
    assert np.max(np.abs(np.array(multi["X"]) - np.array(single["X"]))) < 1e-5


def test_the_step_compiles_once(runs):
    # The state is replicated over the mesh before every step (a fresh state, and the
    # one read back from the checkpoint, are on one device), so the step sees the same
    # shardings every iteration, resumed or not.
    reports, _ = runs
    assert [reports[i]["step_compilations"] for i in (0, 1, -1)] == [1, 1, 1]


def test_each_process_resumes_from_its_checkpoint(runs):
    reports, out = runs
    for i in (0, 1):
        # Killed after two iterations were saved; the rerun finished the third.
        assert reports[i]["saved_iterations"] == 2
        assert (out / f"search-{i}.ckpt").exists()
        assert len(reports[i]["results"]) == 3 and len(reports[i]["params"]) == 3
