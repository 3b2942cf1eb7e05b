"""The optimisation loops behind `Optimizer.optimize`, `optimize_host` and `optimize_scan`.

A loop repeats one step (suggest a batch, evaluate it, record the results). The
compiled step and the scan of steps are here, and so is the host loop that runs a step
per iteration with what a long search needs around it: callbacks that may stop it,
a checkpoint after every iteration and a resume from it, and a progress bar.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from ._checks import check_callable, check_positional
from ._jit import jit
from .checkpoint import RunCheckpoint
from .host import settle
from .sharding import replicate, shard_batch, to_host
from .spaces import flatten_space, to_configs

if TYPE_CHECKING:
    from .base import Optimizer, OptimizerState

__all__ = [
    "abstract_arguments",
    "check_objective",
    "check_scalar_output",
    "check_callback",
    "jit_step",
    "scan",
    "host_loop",
    "async_host_loop",
]

CALLBACK_USAGE = "callback(iteration, state, params, results)"


def check_callback(owner: str, callback: Callable | None) -> None:
    if callback is not None:
        check_callable(owner, "callback", callback, CALLBACK_USAGE)


def check_objective(
    func: Callable, state: OptimizerState, key: PRNGKeyArray, owner: str = "optimize"
) -> None:
    """Fail early, with the expected signature, instead of deep inside a trace."""
    check_positional(
        owner, "func", func, 2, "fn(key, params) -> scalar (`params`: one configuration)"
    )
    check_scalar_output(jax.eval_shape(func, *abstract_arguments(state, key)), "func")


def abstract_arguments(state: OptimizerState, key: PRNGKeyArray) -> tuple[Any, Any]:
    """The shapes of an objective's `(key, params)` for one configuration of `state`'s
    space, for `jax.eval_shape`."""
    flat = flatten_space(state.space)
    params = jax.tree_util.tree_unflatten(
        flat.treedef, [jax.ShapeDtypeStruct((), dt) for dt in flat.dtypes]
    )
    return jax.eval_shape(lambda k: jax.random.split(k, 1)[0], key), params


def check_scalar_output(out: Any, name: str) -> None:
    """Raise a `ValueError` unless `out` (from `jax.eval_shape`) is one scalar array, and
    a `TypeError` if that scalar is not a real number (a bool or a complex number), as
    host objectives' results are checked."""
    if isinstance(out, jax.ShapeDtypeStruct) and out.shape == ():
        if not jnp.issubdtype(out.dtype, jnp.integer) and not jnp.issubdtype(
            out.dtype, jnp.floating
        ):
            raise TypeError(
                f"`{name}` must return a real number (an integer or floating-point scalar), "
                f"but it returned a scalar of dtype {out.dtype}."
            )
        return
    shapes = [getattr(x, "shape", None) for x in jax.tree_util.tree_leaves(out)]
    if isinstance(out, jax.ShapeDtypeStruct):
        what = f"an array of shape {out.shape}"
    else:  # a tuple, list, dict, ...: the objective returns one number, not a container
        what = f"a {type(out).__name__} holding arrays of shapes {shapes}"
    hint = f" Call `.squeeze()` inside `{name}` before returning." if shapes == [(1,)] else ""
    raise ValueError(
        f"`{name}` must return a scalar (one array of shape ()), but it returned {what}.{hint}"
    )


def _step(
    optimizer: Optimizer, state: OptimizerState, key: PRNGKeyArray, func: Callable, mesh=None
):
    """One iteration: suggest a batch, evaluate it under vmap, record the results.

    With a `mesh`, the batch is split over its devices for the evaluation, and the
    results are gathered (replicated) for the update, which every device computes.
    """
    k_suggest, k_eval, k_update = jax.random.split(key, 3)
    params = optimizer.get_next_params(state, k_suggest)
    keys = jax.random.split(k_eval, optimizer.n_parallel)
    results = jax.vmap(func)(*shard_batch((keys, params), mesh))
    results = shard_batch(results, mesh)
    state = optimizer.update_state(
        state, k_update, replicate(results, mesh), replicate(params, mesh)
    )
    return state, params, results


jit_step = jit(_step)
# The iterations' keys, compiled with the library's options (op by op, the split alone
# compiles for longer than a small search runs).
_split = jit(jax.random.split)


@jit
def scan(optimizer, state, key, func, n_iterations: int, callback=None, mesh=None):
    """`n_iterations` steps as one `jax.lax.scan`; the history stacked along axis 0."""

    def body(state, inputs):
        i, key = inputs
        state, params, results = _step(optimizer, state, key, func, mesh)
        if callback is not None:
            jax.debug.callback(lambda *a: (callback(*a), None)[1], i, state, params, results)
        return state, (params, results)

    inputs = (jnp.arange(n_iterations), jax.random.split(key, n_iterations))
    state, hist = jax.lax.scan(body, state, inputs)
    return state, shard_batch(hist, mesh, axis=1)


def host_loop(
    optimizer: Optimizer,
    state: OptimizerState,
    key: PRNGKeyArray,
    n_iterations: int,
    step: Callable,
    *,
    callback: Callable | None,
    checkpoint,
    progress: bool | None,
    progress_from: int,
):
    """Run `step(state, key) -> (state, params, results)` once per iteration on the host.

    Resumes from `checkpoint` when it holds this run, saves it after every iteration,
    calls `callback` (a truthy return stops the search) and shows a progress bar: always
    with `progress=True`, never with `False`, and with `None` when stderr is a terminal
    and the run has at least `progress_from` iterations. Returns `(state, (params_hist,
    results_hist))`.
    """
    check_callback(type(optimizer).__name__, callback)
    params_hist: list = []
    results_hist: list = []
    start, stopped = 0, False
    run = None
    if checkpoint is not None:
        run = RunCheckpoint(checkpoint, optimizer, state, key, n_iterations)
        state, params_hist, results_hist, start, stopped, _ = run.resume(state)
    keys: Any = _split(key, n_iterations) if n_iterations else []
    if progress is None:
        progress = n_iterations >= progress_from and sys.stderr.isatty()
    bar = Progress(optimizer, progress, n_iterations, start, results_hist)
    try:
        for i in range(start, n_iterations):
            if stopped:
                break
            state, params, results = step(state, keys[i])
            params_hist.append(params)
            results_hist.append(results)
            if callback is not None:
                stopped = bool(callback(i, state, params, results))
            if run is not None:
                run.save(state, params_hist, results_hist, stopped)
            bar.update(results)
    finally:
        bar.close()
    return state, (params_hist, results_hist)


def async_host_loop(
    optimizer: Optimizer,
    state: OptimizerState,
    key: PRNGKeyArray,
    n_total: int,
    objective: Callable,
    executor: Executor,
    *,
    on_error: str,
    callback: Callable | None,
    checkpoint,
    progress: bool | None,
):
    """`n_total` evaluations with `optimizer.n_parallel` of them running at any time.

    Whenever one finishes, its result is recorded (`update_state` with one result) and a
    free worker gets a configuration suggested with the running ones pending. The
    history has one entry per evaluation, a batch of one, in the order they finished.
    A checkpoint holds the state, the history and the configurations running when it
    was written; a resume submits those again first (their results were never
    recorded) and evaluates nothing that was recorded. A truthy `callback` stops new
    submissions; the running evaluations are finished and recorded.
    """
    check_callback(type(optimizer).__name__, callback)
    asker = optimizer._asynchronous()
    flat = flatten_space(state.space)
    dtype = jnp.result_type(float)
    n_workers = optimizer.n_parallel
    params_hist: list = []
    results_hist: list = []
    submitted, stopped, resubmit = 0, False, []
    run = None
    if checkpoint is not None:
        run = RunCheckpoint(checkpoint, optimizer, state, key, n_total, mode="asynchronous")
        state, params_hist, results_hist, _, stopped, more = run.resume(state)
        submitted, resubmit = more.get("submitted", 0), more.get("running", [])
    k_ask, k_tell = jax.random.split(key)
    ask_keys: Any = jax.random.split(k_ask, n_total) if n_total else []
    tell_keys: Any = jax.random.split(k_tell, n_total) if n_total else []
    if progress is None:
        progress = sys.stderr.isatty()
    bar = Progress(optimizer, progress, n_total, len(results_hist), results_hist)
    # Each running evaluation's raw row, its params (a batch of one) and configuration.
    running: dict[Future, tuple[np.ndarray, Any, Any]] = {}

    def submit(row: np.ndarray) -> None:
        params = flat.unflatten(jnp.asarray(row[None, :], dtype))
        config = to_configs(params, state.space)[0]
        running[executor.submit(objective, config)] = (row, params, config)

    def save() -> None:
        if run is not None:
            rows = [r.tolist() for r, _, _ in running.values()]
            run.save(state, params_hist, results_hist, stopped, submitted=submitted, running=rows)

    try:
        for row in resubmit:
            submit(np.asarray(row, dtype))
        while running or (submitted < n_total and not stopped):
            while not stopped and submitted < n_total and len(running) < n_workers:
                rows = np.array([r for r, _, _ in running.values()]).reshape(-1, flat.n_params)
                params = asker._ask(state, ask_keys[submitted], rows, n_workers - 1)
                submit(np.asarray(flat.as_matrix(params))[0])
                submitted += 1
            save()
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                _, params, config = running.pop(future)
                results = jnp.asarray([settle(config, future.result, on_error, dtype)], dtype)
                k = tell_keys[len(results_hist)]
                state = optimizer.update_state(state, k, results, params)
                params_hist.append(params)
                results_hist.append(results)
                save()
                if callback is not None and callback(len(results_hist) - 1, state, params, results):
                    stopped = True
                    save()
                bar.update(results)
    finally:
        bar.close()
    return state, (params_hist, results_hist)


class Progress:
    """A tqdm bar with the iteration count and the best finite result so far."""

    def __init__(self, optimizer, enabled: bool, total: int, initial: int, results_hist: list):
        self.bar = None
        self.maximize = getattr(optimizer, "maximize", None)
        self.lo, self.hi = np.inf, -np.inf
        self.failed = 0
        for r in results_hist:
            self.see(r)
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total, initial=initial, desc=type(optimizer).__name__, file=sys.stderr
            )
            self._postfix()

    def see(self, results, best: bool = True):
        """Count `results` (failures; towards the best unless `best` is false) without
        moving the bar: iterations a resumed run did before."""
        r = to_host(results).astype(np.float64)
        self.failed += int(np.sum(~np.isfinite(r)))
        r = r[np.isfinite(r)]
        if r.size and best:
            self.lo, self.hi = min(self.lo, r.min()), max(self.hi, r.max())

    def _postfix(self, extra: dict[str, str] | None = None):
        assert self.bar is not None
        info = dict(extra or {})
        if np.isfinite(self.hi):
            if self.maximize is None:  # the search does not know the direction
                info.update(min=f"{self.lo:.6g}", max=f"{self.hi:.6g}")
            else:
                info["best"] = f"{self.hi if self.maximize else self.lo:.6g}"
        if self.failed:
            info["failed"] = str(self.failed)
        if info:
            self.bar.set_postfix(info)

    def update(self, results, info: dict[str, str] | None = None, best: bool = True):
        """One iteration done: its `results` (failures counted; towards the best unless
        `best` is false), with `info` shown before the best."""
        if self.bar is not None:
            self.see(results, best)
            self._postfix(info)
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()
