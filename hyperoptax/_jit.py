"""`jit`: `eqx.filter_jit` with the compiler options the library's own programs use.

XLA's CPU backend emits each fused loop through its MLIR fusion emitters by default. A
search's programs hold a few hundred small fusions, and for them the older emitters
compile about 40% faster and with about 300 MiB less memory, at much the same speed once
compiled (benchmarks/RESULTS.md, "Compile time"). Compilation is most of a search's
first call, so every program the library compiles itself asks for the older emitters.
The option belongs to those programs only: nothing global changes, and a program the
user compiles (a `filter_jit` around a `filter_vmap` of `optimize_scan`, say) is built
with the user's settings. On other backends, or with an XLA that no longer knows the
option, the programs compile with XLA's defaults.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax

__all__ = ["CPU_COMPILER_OPTIONS", "compiler_options", "jit"]

CPU_COMPILER_OPTIONS: dict[str, Any] = {"xla_cpu_use_fusion_emitters": False}


@functools.cache
def compiler_options() -> dict[str, Any]:
    """The options for the default backend: `CPU_COMPILER_OPTIONS` where XLA accepts
    them on the CPU, none elsewhere. Decided once, at the first compilation."""
    if jax.default_backend() != "cpu":
        return {}
    try:
        jax.jit(lambda x: x + 1, compiler_options=CPU_COMPILER_OPTIONS).lower(1.0).compile()
    except Exception:  # an XLA without the option ("No such compile option")
        return {}
    return dict(CPU_COMPILER_OPTIONS)


class jit:
    """`eqx.filter_jit(fn)`, compiled with `compiler_options()` when called from outside
    any trace. XLA takes compiler options for a whole program only, so a call inside
    another program being traced (`optimize`'s step calls `suggest_raw`) is staged into
    that program as a plain `eqx.filter_jit`. Both are built on first use (importing the
    library starts no backend)."""

    def __init__(self, fn: Callable):
        functools.update_wrapper(self, fn)
        self._fn = fn
        self._plain: Callable | None = None
        self._top: Callable | None = None

    def _jitted(self, top: bool) -> Any:
        if self._plain is None:
            self._plain = eqx.filter_jit(self._fn)
            options = compiler_options()
            # Passed through to `jax.jit` (equinox's signature does not name it).
            jitkwargs: dict[str, Any] = {"compiler_options": options}
            self._top = eqx.filter_jit(self._fn, **jitkwargs) if options else None
        return self._top if top and self._top is not None else self._plain

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        leaves = jax.tree_util.tree_leaves((args, kwargs))
        if any(isinstance(x, jax.core.Tracer) for x in leaves):
            return self._jitted(top=False)(*args, **kwargs)
        try:
            return self._jitted(top=True)(*args, **kwargs)
        except ValueError as e:  # traced from a program without tracer arguments
            if "compiler_options" not in str(e):
                raise
            return self._jitted(top=False)(*args, **kwargs)

    def lower(self, *args: Any, **kwargs: Any) -> Any:
        return self._jitted(top=True).lower(*args, **kwargs)
