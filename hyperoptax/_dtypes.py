"""The float dtype a search computes in, and whether a dtype is wider than float32."""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["float_dtype", "is_f64"]


def float_dtype():
    """float64 when the user enabled `jax_enable_x64`, float32 otherwise."""
    return jnp.result_type(float)


def is_f64(dtype) -> bool:
    """Whether `dtype` is wider than float32 (the settings tuned for float32 then change)."""
    return jnp.finfo(dtype).bits > 32
