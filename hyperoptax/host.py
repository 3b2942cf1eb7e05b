"""Objectives outside JAX: one configuration as plain Python values in, a float out.

The suggestion and the update stay compiled; only the evaluation runs on the host,
one configuration per call, in order or concurrently through any
`concurrent.futures.Executor` (threads, processes, or a Dask cluster through
`distributed.Client(...).get_executor()`).
"""

from __future__ import annotations

import functools
import math
import pickle
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

import numpy as np

from ._warn import warn

__all__ = ["evaluate_configs", "evaluate_batch", "check_on_error", "check_sendable", "settle"]

_ON_ERROR = ("record", "raise")


def check_on_error(on_error: str) -> None:
    if on_error not in _ON_ERROR:
        raise ValueError(f"`on_error` must be one of {_ON_ERROR}, got {on_error!r}.")


def check_sendable(owner: str, objective: Any, executor: Executor | None) -> None:
    """Refuse an objective that a `ProcessPoolExecutor` cannot send to its workers.

    The pool pickles the objective with every configuration it submits; a lambda or a
    nested function cannot be pickled, and every evaluation would fail (each recorded
    as NaN with a warning) instead of the search stopping at once.
    """
    if not isinstance(executor, ProcessPoolExecutor):
        return
    try:
        pickle.dumps(objective)
    except Exception as e:
        raise TypeError(
            f"{owner}: a ProcessPoolExecutor sends the objective to its worker processes "
            f"by pickling it, and {objective!r} cannot be pickled ({type(e).__name__}: "
            f"{e}). Define it at the top level of a module (not a lambda or a nested "
            f"function), or use a ThreadPoolExecutor."
        ) from None


def as_float(value: Any, what: str = "the objective must return") -> float:
    """A result as a float; arrays must hold exactly one number (`TypeError` otherwise,
    worded `f"{what} one real number, got {value!r}"`)."""
    arr = np.asarray(value)
    if arr.size != 1 or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise TypeError(f"{what} one real number, got {value!r}")
    return float(arr.reshape(()))


def _failed(
    config, error: BaseException | None, value=None, why: str = "not a finite real number"
) -> None:
    if error is None:
        what = f"returned {value!r}, {why}"
    else:
        tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        what = f"raised {type(error).__name__}: {error}\n{tb}"
    warn(
        f"hyperoptax: the evaluation of {config!r} failed ({what}); it is recorded as NaN "
        f"and the search goes on (on_error='raise' stops it instead).",
        RuntimeWarning,
    )


def evaluate_configs(
    objective: Callable[[Any], Any],
    configs: Sequence[Any],
    executor: Executor | None = None,
    on_error: str = "record",
    dtype: Any = None,
) -> np.ndarray:
    """Evaluate `objective(config)` for each configuration; results in the same order.

    With `executor`, every configuration is submitted at once (`executor.submit`) and
    the results are gathered in order; without, they run one after another here.
    A configuration whose evaluation raises, or returns NaN, inf or something that is
    not one real number, has failed: with `on_error="record"` (default) it gets a NaN
    result and a `RuntimeWarning` names the configuration and the error; with
    `on_error="raise"` the exception propagates (a non-finite result raises
    `ValueError`). With `dtype` (the search's float dtype), a result too large for it
    (1e39 in float32) has failed too, rather than becoming `inf` on the way in.
    """
    check_on_error(on_error)
    check_sendable("evaluate_configs", objective, executor)
    return evaluate_batch(objective, configs, executor, on_error, dtype)


def evaluate_batch(objective, configs, executor, on_error, dtype) -> np.ndarray:
    """`evaluate_configs` once its arguments are checked."""
    calls: list[Callable[[], Any]]
    if executor is not None:
        futures = [executor.submit(objective, c) for c in configs]
        calls = [f.result for f in futures]
    else:
        calls = [functools.partial(objective, c) for c in configs]
    return np.array(
        [settle(config, call, on_error, dtype) for config, call in zip(configs, calls, strict=True)]
    )


def settle(config: Any, call: Callable[[], Any], on_error: str, dtype: Any = None) -> float:
    """The result of one evaluation, `call()` (the objective, or a future's `result`),
    as a float: NaN for a failed one (with `on_error="record"`), see `evaluate_configs`."""
    biggest = math.inf if dtype is None else float(np.finfo(dtype).max)
    try:
        raw = call()
    except Exception as e:
        if on_error == "raise":
            raise
        _failed(config, e)
        return math.nan
    try:
        value = as_float(raw)
    except TypeError:
        if on_error == "raise":
            raise
        _failed(config, None, raw)
        return math.nan
    if not math.isfinite(value):
        if on_error == "raise":
            raise ValueError(f"the objective returned {value!r} for {config!r}")
        _failed(config, None, raw)
        return math.nan
    if abs(value) > biggest:
        why = (
            f"beyond the range of {np.dtype(dtype).name} (+-{biggest:.4g}) "
            f"the search records results in"
        )
        if on_error == "raise":
            raise ValueError(f"the objective returned {value!r} for {config!r}, {why}")
        _failed(config, None, raw, why)
        return math.nan
    return value
