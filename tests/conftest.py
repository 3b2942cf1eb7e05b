import os
import pathlib

# Many tests (and the documentation pages and worker processes they start) build the same
# searches, which compile to the same XLA programs. A persistent compilation cache for the
# test run, shared by the xdist workers and the subprocesses (through the environment),
# compiles each of them once. `.ci/run` deletes `.cache/`, so CI starts empty.
_CACHE = pathlib.Path(__file__).resolve().parent.parent / ".cache" / "jax-tests"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

import jax  # noqa: E402

# Strictness: implicit rank promotion is a bug source; the library must not rely on it.
jax.config.update("jax_numpy_rank_promotion", "raise")
