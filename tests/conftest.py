import os
import pathlib
import subprocess
import sys

# Two JAX processes that share the cores, each with XLA's thread pools over all of them,
# run several times slower than one alone: the pools spin against each other
# (benchmarks/RESULTS.md, "Several JAX processes on two cores"). Each test worker
# therefore runs on cores of its own (the cores dealt out among the workers) when there
# are cores enough; the processes a test starts inherit them. This must happen before
# JAX starts its CPU client.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_N_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
if _WORKER.startswith("gw") and hasattr(os, "sched_setaffinity"):
    _CORES = sorted(os.sched_getaffinity(0))
    if 1 < _N_WORKERS <= len(_CORES):
        os.sched_setaffinity(0, set(_CORES[int(_WORKER[2:]) :: _N_WORKERS]))

# Many tests (and the documentation pages and worker processes they start) build the same
# searches, which compile to the same XLA programs. A persistent compilation cache for the
# test run, shared by the xdist workers and the subprocesses (through the environment),
# compiles each of them once. `.ci/run` deletes `.cache/`, so CI starts empty.
_CACHE = pathlib.Path(__file__).resolve().parent.parent / ".cache" / "jax-tests"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

# XLA's older CPU fusion emitters for every program of the test run. The library asks
# for them in the programs it compiles itself, which compile about a third faster with
# them (hyperoptax/_jit.py); the programs the tests compile (a `filter_jit` around a
# `filter_vmap` of `optimize_scan`, the documentation pages' own) are built with XLA's
# defaults unless the process asks otherwise, and the suite spends more time compiling
# than running (benchmarks/RESULTS.md, "The test suite on two cores"). An XLA that does
# not know the flag would refuse to start, so a fresh process tries it first; the test
# workers and the processes tests start inherit the result through the environment.
_EMITTERS = "--xla_cpu_use_fusion_emitters=false"
if "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
    _flags = f"{os.environ.get('XLA_FLAGS', '')} {_EMITTERS}".strip()
    _probe = subprocess.run(
        [sys.executable, "-c", "import jax.numpy as jnp; jnp.zeros(1).block_until_ready()"],
        env={**os.environ, "XLA_FLAGS": _flags, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
    )
    if _probe.returncode == 0:
        os.environ["XLA_FLAGS"] = _flags

import jax  # noqa: E402

# Strictness: implicit rank promotion is a bug source; the library must not rely on it.
jax.config.update("jax_numpy_rank_promotion", "raise")


# The workers take whole files (`--dist loadfile`), each the next file when it is near
# the end of its own; with the longest files first they end together (cold times on two
# cores, benchmarks/RESULTS.md, "The test suite on two cores"). Files not named run
# after these, in the order pytest collects them.
_LONGEST_FIRST = (
    "test_bayesian.py",
    "test_docs.py",
    "test_robust_suite.py",
    "test_gp.py",
    "test_benchmarks.py",
    "test_checkpoint.py",
    "test_docs_howto.py",
    "test_multihost.py",
    "test_hyperband.py",
    "test_ray.py",
    "test_host.py",
    "test_optuna.py",
    "test_demo.py",
    "test_sharding.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
