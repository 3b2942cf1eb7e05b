"""Argument checks shared by every module.

Each check raises at once, before anything is traced, with a message that names the
owner (the class or function the user called), the argument and the value it got.
Values that are JAX tracers (a module built inside `jit` or `vmap`, a field being
vmapped over) cannot be read and pass unchecked.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any

import jax
import numpy as np

__all__ = ["is_traced", "plain", "check_int", "check_real", "check_callable", "check_positional"]


def is_traced(x: Any) -> bool:
    """Whether `x` is a tracer, whose value cannot be read on the host."""
    return isinstance(x, jax.core.Tracer)


def plain(value: Any) -> Any:
    """A NumPy scalar, or a concrete JAX or NumPy array of shape `()`, as the Python
    number it holds; anything else unchanged (for the checks to judge).

    The converter of the modules' static fields: a static field is part of what a
    compiled program is keyed on, so it holds plain Python values (Equinox warns about
    arrays there), while a user's bounds and sizes often come out of NumPy."""
    if isinstance(value, np.generic) or (
        isinstance(value, np.ndarray | jax.Array) and not is_traced(value) and value.shape == ()
    ):
        return value.item()
    return value


def check_int(owner: str, name: str, value: Any, minimum: int) -> int:
    """`value` is an integer (a Python or NumPy one, not a bool) of at least `minimum`;
    returned as a Python int."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: `{name}` must be an int, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{owner}: `{name}` must be at least {minimum}, got {value!r}.")
    return int(value)


_SIGNS = {
    None: "finite",
    "non-negative": "finite and non-negative",
    "positive": "positive and finite",
}


def check_real(owner: str, name: str, value: Any, sign: str | None = None) -> None:
    """`value` (a number or an array of them) is real and finite; with `sign`
    `"non-negative"` or `"positive"`, also that."""
    if is_traced(value):
        return
    # numpy, not jnp: a check must not be staged when a module is built under `jit`.
    v = np.asarray(value)
    if v.dtype == bool or not np.issubdtype(v.dtype, np.number) or np.iscomplexobj(v):
        raise TypeError(f"{owner}: `{name}` must be a real number, got {value!r}.")
    ok = np.isfinite(v)
    if sign == "non-negative":
        ok &= v >= 0
    elif sign == "positive":
        ok &= v > 0
    if not np.all(ok):
        raise ValueError(f"{owner}: `{name}` must be {_SIGNS[sign]}, got {value!r}.")


def check_callable(owner: str, name: str, value: Any, usage: str) -> None:
    """`value` is callable; `usage` shows how it will be called, e.g. `"fn(key, params)"`."""
    if not callable(value):
        raise TypeError(f"{owner}: `{name}` must be callable as {usage}, got {value!r}.")


def check_positional(owner: str, name: str, func: Any, n: int, usage: str) -> None:
    """`func` is callable with `n` positional arguments (when its signature can be read),
    as `usage` shows."""
    check_callable(owner, name, func, usage)
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return
    kinds = [p.kind for p in sig.parameters.values()]
    positional = sum(
        k in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        for k in kinds
    )
    if inspect.Parameter.VAR_POSITIONAL not in kinds and positional < n:
        raise TypeError(
            f"{owner}: `{name}` must be callable as {usage}; got a callable with signature {sig}."
        )
