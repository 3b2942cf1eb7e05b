"""Search states on disk: atomic saves, checked loads.

A checkpoint file is a short JSON header followed by the state's arrays in Equinox's
leaf serialisation (`eqx.tree_serialise_leaves`). The header records what the state
belongs to (state class, search space, optimizer configuration, array shapes), so a
checkpoint is never loaded into a search it was not made for. Files are written to a
temporary name in the same directory, flushed to disk and renamed over the target:
a crash mid-write leaves the previous checkpoint intact, never a torn file.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax
import numpy as np
from jaxtyping import PyTree

if TYPE_CHECKING:
    from .base import Optimizer, OptimizerState

__all__ = ["save_state", "load_state"]

_MAGIC = b"hyperoptax-checkpoint\n"
_FORMAT = 1


def _describe_arrays(tree: PyTree) -> list[list]:
    leaves = jax.tree_util.tree_leaves(tree)
    return [[list(np.shape(x)), str(getattr(x, "dtype", np.asarray(x).dtype))] for x in leaves]


def _describe_space(space: PyTree) -> str:
    """Each parameter's path and space, in pytree order (dict keys sorted)."""
    from .spaces import Space

    leaves = jax.tree_util.tree_flatten_with_path(space, is_leaf=lambda x: isinstance(x, Space))[0]
    return ", ".join(f"{jax.tree_util.keystr(path) or '<root>'}: {leaf!r}" for path, leaf in leaves)


def _optimizer_fingerprint(optimizer: Optimizer | None) -> str | None:
    """The optimizer's class, static configuration and array-valued settings, as text."""
    if optimizer is None:
        return None
    leaves = [np.asarray(x).tolist() for x in jax.tree_util.tree_leaves(optimizer)]
    return f"{optimizer!r} {json.dumps(leaves)}"


def _header(state: OptimizerState, optimizer: Optimizer | None, extra: dict | None) -> dict:
    return {
        "format": _FORMAT,
        "state": type(state).__name__,
        "space": _describe_space(state.space),
        "optimizer": _optimizer_fingerprint(optimizer),
        "arrays": _describe_arrays(state),
        "extra": extra or {},
    }


def _write_atomic(path: Path, header: dict, payload: PyTree) -> None:
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    started = time.time()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            text = json.dumps(header).encode()
            f.write(_MAGIC)
            f.write(len(text).to_bytes(8, "little"))
            f.write(text)
            eqx.tree_serialise_leaves(f, payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    # A writer killed mid-write (SIGKILL, power loss) leaves its temporary file behind;
    # the next successful write removes those older than itself.
    for stale in directory.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if stale.stat().st_mtime < started:
                stale.unlink()
        except OSError:
            pass
    try:  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def read_header(path: str | os.PathLike) -> dict:
    """The JSON header of a checkpoint file (what it was made for)."""
    with open(path, "rb") as f:
        return _read_header(f, path)


def _read_header(f, path) -> dict:
    if f.read(len(_MAGIC)) != _MAGIC:
        raise ValueError(f"{path} is not a hyperoptax checkpoint.")
    size = int.from_bytes(f.read(8), "little")
    try:
        header = json.loads(f.read(size))
    except ValueError as e:
        raise ValueError(f"{path}: the checkpoint header is corrupt ({e}).") from None
    if header.get("format") != _FORMAT:
        raise ValueError(
            f"{path}: checkpoint format {header.get('format')!r}, this version reads {_FORMAT}."
        )
    return header


def _check_compatible(path, header: dict, expected: dict) -> None:
    checks = [
        ("state", "a state of class"),
        ("space", "the search space"),
        ("optimizer", "the optimizer"),
        ("arrays", "state arrays of shapes and dtypes"),
    ]
    for field, what in checks:
        if field == "optimizer" and (header[field] is None or expected[field] is None):
            continue
        if header[field] != expected[field]:
            raise ValueError(
                f"{path} was made for a different search: it holds {what} "
                f"{header[field]!r}, but this search has {expected[field]!r}."
            )


def _checked_header(path, like: OptimizerState, optimizer: Optimizer | None) -> dict:
    """The header of `path`, after checking that it was made for this search."""
    header = read_header(path)
    _check_compatible(path, header, _header(like, optimizer, None))
    return header


def _read(path, like: PyTree) -> PyTree:
    with open(path, "rb") as f:
        _read_header(f, path)
        try:
            return eqx.tree_deserialise_leaves(f, like)
        except Exception as e:  # a truncated or foreign payload
            raise ValueError(f"{path}: the checkpoint data cannot be read ({e}).") from None


def save_state(
    path: str | os.PathLike, state: OptimizerState, optimizer: Optimizer | None = None
) -> None:
    """Save a search state to `path`, atomically.

    Pass the `optimizer` too so that `load_state` can refuse a checkpoint made with a
    different configuration.
    """
    _write_atomic(Path(path), _header(state, optimizer, None), state)


def load_state(
    path: str | os.PathLike, like: OptimizerState, optimizer: Optimizer | None = None
) -> OptimizerState:
    """Load a state saved by `save_state` (or by a checkpointed `optimize`).

    `like` is a state of the same search, typically fresh from `init(space, ...)`: it
    gives the structure, shapes and dtypes. A checkpoint made for another search space,
    state class, buffer size or (when both sides know it) optimizer configuration raises
    `ValueError` saying what differs.
    """
    _checked_header(path, like, optimizer)
    return _read(path, like)


def _save_run(path, state, optimizer, extra: dict[str, Any], history: PyTree) -> None:
    """Checkpoint of a running `optimize`: the state, the loop position and the history."""
    extra = dict(extra, history=_describe_arrays(history))
    _write_atomic(Path(path), _header(state, optimizer, extra), (state, history))


def _load_run(path, like_state, optimizer, history_treedef) -> tuple[dict, Any, PyTree]:
    """Read a run checkpoint made for this search; returns `(extra, state, history)`."""
    extra = _checked_header(path, like_state, optimizer)["extra"]
    if "iteration" not in extra:
        raise ValueError(f"{path} holds a saved state, not a running search's checkpoint.")
    leaves = [np.zeros(shape, dtype) for shape, dtype in extra["history"]]
    like = (like_state, jax.tree_util.tree_unflatten(history_treedef, leaves))
    state, history = _read(path, like)
    return extra, state, history
