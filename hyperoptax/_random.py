"""Random draws, shaped so that they compile quickly."""

from __future__ import annotations

import math

import jax

__all__ = ["uniform"]


def uniform(key, shape: tuple[int, ...], dtype) -> jax.Array:
    """`jax.random.uniform(key, shape, dtype)`, bitwise, drawn flat and then reshaped.

    JAX's default (partitionable) threefry gives a flat draw the same values in the same
    order, and XLA's CPU compiler builds the generator for a flat shape about three
    times faster than for a matrix (0.3 s against 0.9 s for 1000 x 7 draws): each such
    draw is part of every suggestion program's compile time
    (benchmarks/RESULTS.md, "Compile time").
    """
    flat = jax.random.uniform(key, (math.prod(shape),), dtype)
    return flat.reshape(shape)
