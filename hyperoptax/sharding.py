"""Spreading the evaluation of a batch over the devices of a `jax.sharding.Mesh`.

The `n_parallel` configurations of a batch are split along the mesh's devices (every
mesh axis is used for the batch axis); each device evaluates its share. The GP step is
small and stays replicated: every device computes the same suggestion. Outputs read on
the host are replicated, or gathered across processes, so nothing assumes that one
process sees every device.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["batch_sharding", "check_mesh", "pad_to_mesh", "put_replicated", "to_host"]


def check_mesh(mesh: Any, n_parallel: int | None, owner: str) -> None:
    """A `Mesh` (whose device count divides `n_parallel`, unless that is `None`), or a
    clear error."""
    if mesh is None:
        return
    if not isinstance(mesh, Mesh):
        raise TypeError(f"{owner}: `mesh` must be a jax.sharding.Mesh, got {mesh!r}.")
    if n_parallel is not None and n_parallel % mesh.size:
        raise ValueError(
            f"{owner}: n_parallel={n_parallel} configurations cannot be split evenly over "
            f"the mesh's {mesh.size} devices; choose n_parallel as a multiple of {mesh.size} "
            f"(each device evaluates n_parallel / {mesh.size})."
        )


def batch_sharding(mesh: Mesh, ndim: int = 1, axis: int = 0) -> NamedSharding:
    """Shard dimension `axis` of an `ndim`-dimensional array over all of `mesh`."""
    spec: list[Any] = [None] * ndim
    spec[axis] = mesh.axis_names
    return NamedSharding(mesh, PartitionSpec(*spec))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def shard_batch(tree: Any, mesh: Mesh | None, axis: int = 0) -> Any:
    """Constrain the leading (batch) axis of every leaf to be split over `mesh`."""
    if mesh is None:
        return tree
    return jax.tree_util.tree_map(
        lambda x: jax.lax.with_sharding_constraint(x, batch_sharding(mesh, x.ndim, axis)), tree
    )


def pad_to_mesh(tree: Any, mesh: Mesh | None) -> Any:
    """Every leaf's leading axis padded, by repeating its last entry, to a multiple of
    `mesh.size` and split over `mesh` (inside `jit`), so that a population of any size
    spreads over the devices; slice the outputs back to the population. `None` for
    `mesh`: `tree` unchanged."""
    if mesh is None:
        return tree

    def pad(x):
        extra = -x.shape[0] % mesh.size
        if extra:
            x = jax.numpy.concatenate([x, jax.numpy.repeat(x[-1:], extra, axis=0)])
        return x

    return shard_batch(jax.tree_util.tree_map(pad, tree), mesh)


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    if mesh is None:
        return tree
    return jax.tree_util.tree_map(
        lambda x: jax.lax.with_sharding_constraint(x, replicated(mesh)), tree
    )


def put_replicated(tree: Any, mesh: Mesh | None) -> Any:
    """Every array leaf of `tree` placed replicated over `mesh` (no copy for a leaf that
    already is); other leaves as they are. `None` for `mesh`: `tree` unchanged."""
    if mesh is None:
        return tree
    sharding = replicated(mesh)
    return jax.tree_util.tree_map(
        lambda x: jax.device_put(x, sharding) if isinstance(x, jax.Array) else x, tree
    )


def to_host(x: Any) -> np.ndarray:
    """A NumPy copy of `x`, gathered from other processes when this one lacks shards."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
