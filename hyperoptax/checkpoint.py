"""Search states on disk: atomic, checksummed saves; checked loads; a running search's resume.

A checkpoint file is a short JSON header followed by the state's arrays in Equinox's
leaf serialisation (`eqx.tree_serialise_leaves`) and a SHA-256 digest of everything
before it. The header records what the state belongs to (state class, search space,
optimizer configuration, array shapes), so a checkpoint is never loaded into a search
it was not made for; the digest makes any damage (a torn copy, a flipped bit, an edit)
an error instead of a resume with wrong data.

Files are written to a temporary name in the same directory, flushed to disk and
renamed over the target: a crash mid-write leaves the previous checkpoint intact, never
a torn file. Several processes may write the same path (every process of a multi-host
search does): each writes its own temporary file, the last rename wins, and a reader
always sees one whole checkpoint. A temporary file left by a writer that was killed is
removed by the next write on the same machine, once its process is gone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PyTree

from .sharding import to_host
from .spaces import CategoricalSpace, Space, flatten_space

if TYPE_CHECKING:
    from .base import OptimizerState

S = TypeVar("S", bound="OptimizerState")

__all__ = ["save_state", "load_state", "read_header"]

_MAGIC = b"hyperoptax-checkpoint\n"
# 1: magic, header length, header, payload. 2: the same, then the SHA-256 of all of it.
_FORMAT = 2
_DIGEST_BYTES = 32


def _describe_arrays(tree: PyTree) -> list[list]:
    leaves = jax.tree_util.tree_leaves(tree)
    return [[list(np.shape(x)), str(getattr(x, "dtype", np.asarray(x).dtype))] for x in leaves]


def _describe_choice(choice: Any) -> str:
    """A categorical choice as text that a new process reproduces (no memory addresses)."""
    if choice is None or isinstance(choice, bool | int | float | str | bytes):
        return repr(choice)
    target = getattr(choice, "__wrapped__", choice)  # jitted functions wrap the original
    name = getattr(target, "__qualname__", None)
    if name is not None:  # functions, classes
        return f"{getattr(target, '__module__', None)}.{name}"
    kind = type(choice)
    return f"<{kind.__module__}.{kind.__qualname__} instance>"


def _describe_leaf(space: Space) -> str:
    if isinstance(space, CategoricalSpace):
        return f"CategoricalSpace(choices=({', '.join(map(_describe_choice, space.choices))}))"
    return repr(space)


def _describe_space(space: PyTree) -> str:
    """Each parameter's path and space, in pytree order (dict keys sorted)."""
    leaves = jax.tree_util.tree_flatten_with_path(space, is_leaf=lambda x: isinstance(x, Space))[0]
    return ", ".join(
        f"{jax.tree_util.keystr(path) or '<root>'}: {_describe_leaf(leaf)}" for path, leaf in leaves
    )


def _optimizer_fingerprint(optimizer: eqx.Module | None) -> str | None:
    """The optimizer's class, static configuration and array-valued settings, as text."""
    if optimizer is None:
        return None
    leaves = [np.asarray(x).tolist() for x in jax.tree_util.tree_leaves(optimizer)]
    return f"{optimizer!r} {json.dumps(leaves)}"


def _configuration(x: Any) -> Any:
    """An optimizer's configuration as JSON values: every field by value, defaults too.

    What the comparison of two checkpoints' optimizers uses: unlike the repr (which hides
    a field only while it *is* its default object), it does not change when the
    optimizer is copied, pickled or rebuilt from equal settings.
    """
    if isinstance(x, eqx.Module):
        fields = {f.name: _configuration(getattr(x, f.name)) for f in dataclasses.fields(x)}
        return {"class": type(x).__name__, **fields}
    if isinstance(x, jax.Array | np.ndarray | np.generic | float | int) and not isinstance(x, bool):
        return np.asarray(x).tolist()
    if isinstance(x, list | tuple):
        return [_configuration(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _configuration(v) for k, v in x.items()}
    if isinstance(x, bool | str) or x is None:
        return x
    return repr(x)


def _header(state: OptimizerState, optimizer: eqx.Module | None, extra: dict | None) -> dict:
    return {
        "format": _FORMAT,
        "state": type(state).__name__,
        "space": _describe_space(state.space),
        "optimizer": _optimizer_fingerprint(optimizer),
        "configuration": None if optimizer is None else _configuration(optimizer),
        # What `python -m hyperoptax.plot` rebuilds the search from (`rebuild_search`).
        "space_configuration": _configuration(state.space),
        "arrays": _describe_arrays(state),
        "extra": extra or {},
    }


def _writer_tag() -> str:
    """This process's part of a temporary file's name: host and process id."""
    return f"{re.sub(r'[^A-Za-z0-9-]', '_', socket.gethostname())}-{os.getpid()}"


def _writer_is_gone(tag: str) -> bool:
    """Whether the writer of a temporary file tagged `tag` has died (on this machine).

    A writer on another machine, or one still running here, is never presumed dead.
    """
    host, _, pid = tag.rpartition("-")
    if host != _writer_tag().rpartition("-")[0] or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def _remove_dead_writers_files(directory: Path, name: str) -> None:
    pattern = re.compile(rf"^\.{re.escape(name)}\.(.+)\.[^.]+\.tmp$")
    for candidate in directory.iterdir():
        match = pattern.match(candidate.name)
        if match and _writer_is_gone(match.group(1)):
            try:
                candidate.unlink()
            except OSError:
                pass


def _encode(header: dict, payload: PyTree) -> bytes:
    buffer = io.BytesIO()
    text = json.dumps(header).encode()
    buffer.write(_MAGIC)
    buffer.write(len(text).to_bytes(8, "little"))
    buffer.write(text)
    eqx.tree_serialise_leaves(buffer, payload)
    data = buffer.getvalue()
    return data + hashlib.sha256(data).digest()


def _write_atomic(path: Path, header: dict, payload: PyTree) -> None:
    path = Path(path)
    if path.is_dir():  # else the error would name the temporary file renamed onto it
        raise IsADirectoryError(f"{str(path)!r} is a directory; pass a file path inside it.")
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    data = _encode(header, payload)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{_writer_tag()}.", suffix=".tmp", dir=directory
    )
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _remove_dead_writers_files(directory, path.name)
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


def check_writable(path: str | os.PathLike) -> None:
    """Raise `ValueError` now if a checkpoint cannot be written at `path`.

    A search checks this before it evaluates anything, so that no result is computed
    only to be lost when the first save fails.
    """
    if str(path) == "":
        raise ValueError("`checkpoint` must be a file path, got an empty string.")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"checkpoint={str(path)!r} is a directory; pass a file path inside it.")
    directory = path.parent if str(path.parent) else Path(".")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(
            prefix=f".{path.name}.{_writer_tag()}.", suffix=".tmp", dir=directory
        )
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValueError(
            f"checkpoint={str(path)!r} cannot be written ({e}); nothing was evaluated. "
            f"Pass a path in a directory this process can write."
        ) from None


def _damaged(path, why: str) -> ValueError:
    return ValueError(
        f"{path} is damaged ({why}); it was not loaded. Use another copy, or delete it to "
        f"start the search again."
    )


def _split(data: bytes, path) -> tuple[dict, bytes]:
    """A checkpoint file's bytes -> (header, payload), after checking its digest."""
    if not data.startswith(_MAGIC):
        raise ValueError(f"{path} is not a hyperoptax checkpoint.")
    start = len(_MAGIC) + 8
    size = int.from_bytes(data[len(_MAGIC) : start], "little")
    body, digest = data[:-_DIGEST_BYTES], data[-_DIGEST_BYTES:]
    if len(data) >= start + _DIGEST_BYTES and hashlib.sha256(body).digest() == digest:
        header = json.loads(data[start : start + size])
        payload = body[start + size :]
    else:
        # Either damaged, or format 1, which had no digest.
        try:
            header = json.loads(data[start : start + size]) if start + size <= len(data) else None
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != 1:
            raise _damaged(path, "its contents do not match the checksum it was saved with")
        payload = data[start + size :]
    if header.get("format") not in (1, _FORMAT):
        raise ValueError(
            f"{path}: checkpoint format {header.get('format')!r}, "
            f"this version reads 1 and {_FORMAT}."
        )
    return header, payload


def read_header(path: str | os.PathLike) -> dict:
    """The JSON header of a checkpoint file, after checking its checksum.

    A dict saying what the file was made for: `"format"`, `"state"` (the state's
    class), `"space"`, `"optimizer"` (its configuration), `"arrays"` (shapes and
    dtypes) and `"extra"`. For the checkpoint of a running search `"extra"` holds the
    loop position: `"iteration"` (iterations done), `"n_iterations"` and `"stopped"`
    (whether a callback stopped it). Raises `ValueError` for a file that is damaged or
    not a hyperoptax checkpoint.
    """
    return _split(Path(path).read_bytes(), path)[0]


def _check_compatible(path, header: dict, expected: dict) -> None:
    checks = [
        ("state", "a state of class"),
        ("space", "the search space"),
        ("optimizer", "the optimizer"),
        ("arrays", "state arrays of shapes and dtypes"),
    ]
    # Files from before "configuration" existed are compared by the optimizer's repr.
    by_configuration = (
        header.get("configuration") is not None and expected["configuration"] is not None
    )
    for field, what in checks:
        if field == "optimizer" and (header[field] is None or expected[field] is None):
            continue
        if field == "optimizer" and by_configuration:
            if header["configuration"] != expected["configuration"]:
                raise ValueError(
                    f"{path} was made for a different search: it holds the optimizer "
                    f"{header[field]!r}, but this search has {expected[field]!r} (as "
                    f"configurations: {json.dumps(header['configuration'])} against "
                    f"{json.dumps(expected['configuration'])})."
                )
            continue
        if header[field] != expected[field]:
            raise ValueError(
                f"{path} was made for a different search: it holds {what} "
                f"{header[field]!r}, but this search has {expected[field]!r}."
                + (_precision_hint(header[field], expected[field]) if field == "arrays" else "")
            )


def _precision_hint(saved: list, here: list) -> str:
    """What to do when two arrays descriptions differ only in their float dtype."""

    def floats(arrays: list) -> set:
        return {dtype for _, dtype in arrays if dtype.startswith("float")}

    same_shapes = [shape for shape, _ in saved] == [shape for shape, _ in here]
    if not same_shapes or floats(saved) == floats(here) or len(floats(saved)) != 1:
        return ""
    (dtype,) = floats(saved)
    x64 = "on" if dtype == "float64" else "off"
    return (
        f" It was saved in {dtype}: load it with jax_enable_x64 {x64}, set before the "
        f"search is built."
    )


def _read_checked(
    path,
    like: OptimizerState,
    optimizer: eqx.Module | None,
    data: bytes | None = None,
    check: bool = True,
    arrays_like: Callable[[int], PyTree] | None = None,
) -> tuple[dict, Any, Any, Any]:
    """Read `path` (or `data`, called `path` in errors) and check it was made for this
    search: `(header, state, history, arrays)`.

    `like` gives the state's structure; `history` is `None` for a saved state. With
    `check` false only the arrays' shapes and dtypes are compared (`rebuild_search`).
    `arrays` are the extra arrays a running search saved (`RunCheckpoint.save(...,
    arrays=)`), read with the structure `arrays_like(iteration)` gives; else `None`.
    """
    header, payload = _split(Path(path).read_bytes() if data is None else data, path)
    expected = _header(like, optimizer, None)
    if check:
        _check_compatible(path, header, expected)
    elif header["arrays"] != expected["arrays"]:
        raise ValueError(f"{path}: the search rebuilt from its header does not fit its arrays.")
    extra = header.get("extra", {})
    described = extra.get("history")
    history = None if described is None else _history_like(described, like)
    arrays = None
    if extra.get("more_arrays") is not None:
        if arrays_like is None:
            raise ValueError(f"{path} holds arrays that this call does not expect.")
        arrays = jax.tree_util.tree_map(
            lambda x: np.zeros(x.shape, x.dtype), arrays_like(extra["iteration"])
        )
        if _describe_arrays(arrays) != extra["more_arrays"]:
            raise ValueError(
                f"{path}: the saved training states have shapes and dtypes "
                f"{extra['more_arrays']}, but this run's have {_describe_arrays(arrays)}."
            )
    try:
        state, history, arrays = eqx.tree_deserialise_leaves(
            io.BytesIO(payload), (like, history, arrays)
        )
    except Exception as e:  # a payload that does not fit (format 1 files have no digest)
        raise ValueError(f"{path}: the checkpoint data cannot be read ({e}).") from None
    return header, state, history, arrays


def save_state(
    path: str | os.PathLike, state: OptimizerState, optimizer: eqx.Module | None = None
) -> None:
    """Save a search state to `path`, atomically.

    Pass the `optimizer` too so that `load_state` can refuse a checkpoint made with a
    different configuration.
    """
    _write_atomic(Path(path), _header(state, optimizer, None), state)


def state_bytes(state: OptimizerState, optimizer: eqx.Module | None = None) -> bytes:
    """What `save_state` writes, as bytes (for a file that holds more than the state)."""
    return _encode(_header(state, optimizer, None), state)


def load_state(
    path: str | os.PathLike, like: OptimizerState, optimizer: eqx.Module | None = None
) -> OptimizerState:
    """Load a state saved by `save_state` (or by a checkpointed `optimize`).

    `like` is a state of the same search, typically fresh from `init(space, ...)`: it
    gives the structure, shapes and dtypes. A checkpoint made for another search space,
    state class, buffer size or (when both sides know it) optimizer configuration raises
    `ValueError` saying what differs.
    """
    return _read_checked(path, like, optimizer)[1]


def _rebuild(config: Any, classes: dict[str, type]) -> Any:
    """An object back from `_configuration`'s JSON values (classes looked up by name)."""
    if isinstance(config, dict) and "class" in config:
        cls = classes.get(config["class"])
        if cls is None:
            raise ValueError(f"the class {config['class']} is not one of hyperoptax's")
        kwargs = {
            f.name: _rebuild(config[f.name], classes)
            for f in dataclasses.fields(cls)
            if f.init and f.name in config
        }
        return cls(**kwargs)
    if isinstance(config, dict):
        return {k: _rebuild(v, classes) for k, v in config.items()}
    if isinstance(config, list):
        return [_rebuild(v, classes) for v in config]
    if isinstance(config, str):  # a dtype's repr: "<class 'jax.numpy.int32'>", "dtype('int8')"
        m = re.fullmatch(r"<class '(?:jax\.)?numpy\.(\w+)'>|dtype\('(\w+)'\)", config)
        if m:
            return np.dtype(m.group(1) or m.group(2))
    return config


def rebuild_search(path: str | os.PathLike) -> tuple[Any, Any, Any]:
    """`(state, optimizer, evaluations)` from a checkpoint file alone, for looking at it.

    The search space and the optimizer are rebuilt from the header (categorical choices
    that are not plain values come back as their descriptions); `optimizer` is `None`
    when the file was saved without one or holds classes from outside hyperoptax, and
    `evaluations` is the run's `(params_hist, results_hist)` for the checkpoint of a
    running search, else `None` (and for a `HyperbandState`, which holds every
    evaluation). Raises `ValueError` for files written before headers
    described their space.
    """
    import hyperoptax

    header = read_header(path)
    if header.get("space_configuration") is None:
        raise ValueError(
            f"{path} does not describe its search space (written by an older hyperoptax): "
            f"load it with `load_state(path, like, optimizer)` and pass the state on."
        )
    if any(dtype == "float64" for _, dtype in header["arrays"]):
        jax.config.update("jax_enable_x64", True)
    classes = {name: obj for name, obj in vars(hyperoptax).items() if isinstance(obj, type)}
    space = _rebuild(header["space_configuration"], classes)
    optimizer = None
    if header.get("configuration") is not None:
        try:
            optimizer = _rebuild(header["configuration"], classes)
        except (ValueError, TypeError):
            optimizer = None
    states = {
        "BayesianSearchState": hyperoptax.BayesianSearch,
        "GridSearchState": hyperoptax.GridSearch,
        "OptimizerState": hyperoptax.RandomSearch,
    }
    kind = states.get(header["state"])
    if header["state"] == "HyperbandState":  # its rows, as the header describes them
        arrays = (jnp.zeros(tuple(shape), np.dtype(dtype)) for shape, dtype in header["arrays"])
        like = hyperoptax.HyperbandState(space, *arrays)
    elif kind is None:
        raise ValueError(f"{path} holds a {header['state']}, which cannot be rebuilt.")
    else:
        maker = optimizer if isinstance(optimizer, kind) else kind()
        if header["state"] == "BayesianSearchState":
            like = maker._init_state(space, n_max=header["arrays"][0][0][0])
        else:
            like = maker._init_state(space)
    _, state, history, _ = _read_checked(path, like, None, check=False)
    if header["state"] == "HyperbandState":
        history = None  # its state holds every evaluation (a run's checkpoint keeps none)
    return state, optimizer, history


# -- a running search (`optimize`, `optimize_host`) ----------------------------------------


def _history_treedef(state: OptimizerState):
    flat = flatten_space(state.space)
    return jax.tree_util.tree_structure(
        (jax.tree_util.tree_unflatten(flat.treedef, [0] * flat.n_params), 0)
    )


def _history_like(described: list, state: OptimizerState) -> PyTree:
    leaves = [np.zeros(shape, dtype) for shape, dtype in described]
    return jax.tree_util.tree_unflatten(_history_treedef(state), leaves)


def _key_list(key) -> list:
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.asarray(key).tolist()


def state_digest(state: OptimizerState) -> str:
    """A digest of a state's arrays: what a checkpointed run started from."""
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, state)
    return hashlib.sha256(buffer.getvalue()).hexdigest()


class RunCheckpoint:
    """The checkpoint file of one running search (`optimize(..., checkpoint=path)`).

    Made before the search evaluates anything: it checks that `path` can be written and
    records what the run is (optimizer, key, number of iterations, a digest of the state
    it starts from), so that `resume` accepts only a checkpoint of the same call.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        optimizer: eqx.Module,
        state: OptimizerState,
        key,
        n_iterations: int,
        mode: str = "batches",
    ):
        check_writable(path)
        self.path = path
        self.optimizer = optimizer
        self.key = _key_list(key)
        self.n_iterations = n_iterations
        self.mode = mode
        self.start = state_digest(state)
        self.arrays: PyTree = None

    def resume(
        self, state: S, arrays_like: Callable[[int], PyTree] | None = None
    ) -> tuple[S, list, list, int, bool, dict]:
        """`(state, params_hist, results_hist, iterations_done, stopped, extra)`: from the
        file when it exists, else the fresh start; `extra` holds what `save` was given
        beyond the history. Arrays saved with `save(..., arrays=)` are in `self.arrays`
        afterwards (`None` if none), read with the structure `arrays_like(iterations_done)`
        gives (shapes and dtypes, for example from `jax.eval_shape`).

        Refuses a checkpoint of another search, of the same search called with another
        key or number of iterations, or started from another state (for example one
        warm-started with other observations).
        """
        self.arrays = None
        if not os.path.exists(self.path):
            return state, [], [], 0, False, {}
        path = self.path
        header, state, history, self.arrays = _read_checked(
            path, state, self.optimizer, arrays_like=arrays_like
        )
        extra = header["extra"]
        if history is None:
            raise ValueError(f"{path} holds a saved state, not a running search's checkpoint.")
        expected = {"key": self.key, "n_iterations": self.n_iterations, "mode": self.mode}
        for name, value in expected.items():
            saved = extra.get(name, "batches" if name == "mode" else None)
            if saved != value:
                # The argument the user passed: ASHA counts configurations.
                shown = (
                    "n_configurations" if (name, self.mode) == ("n_iterations", "asha") else name
                )
                raise ValueError(
                    f"{path} is the checkpoint of a run with {shown}={saved!r}, but this run "
                    f"has {shown}={value!r}. Pass the same arguments to resume it, or another "
                    f"checkpoint path to start a new search."
                )
        if extra.get("start", self.start) != self.start:
            raise ValueError(
                f"{path} is the checkpoint of a run that started from another state (for "
                f"example one warm-started with other observations). Pass the state that run "
                f"started from to resume it, or another checkpoint path to start a new search."
            )
        params, results = history
        n = len(results)  # the history saved: every iteration done, or none
        params_hist = [
            jax.tree_util.tree_map(lambda a, i=i: jnp.asarray(a[i]), params) for i in range(n)
        ]
        results_hist = [jnp.asarray(results[i]) for i in range(n)]
        done = extra["iteration"]
        return state, params_hist, results_hist, done, extra["stopped"], extra.get("more", {})

    def save(
        self,
        state: OptimizerState,
        params_hist: list,
        results_hist: list,
        stopped: bool,
        *,
        iteration: int | None = None,
        arrays: PyTree = None,
        **more: Any,
    ) -> None:
        """Save the run: state, loop position, history, how it started, `arrays` (any
        pytree of arrays, in `self.arrays` after `resume`) and `more` (JSON values,
        returned by `resume`). The loop position is `iteration`, by default the
        history's length (a search whose history can be rebuilt from its state saves
        none)."""
        arrays = jax.tree_util.tree_map(to_host, arrays)
        if params_hist:
            history = (
                jax.tree_util.tree_map(
                    lambda *xs: np.stack([to_host(x) for x in xs]), *params_hist
                ),
                np.stack([to_host(r) for r in results_hist]),
            )
        else:  # nothing finished yet (an asynchronous run saves what it submitted)
            flat = flatten_space(state.space)
            history = jax.tree_util.tree_unflatten(
                _history_treedef(state),
                [np.zeros((0, 1), dt) for dt in flat.dtypes] + [np.zeros((0, 1), np.float32)],
            )
        extra = {
            "iteration": len(results_hist) if iteration is None else iteration,
            "n_iterations": self.n_iterations,
            "key": self.key,
            "start": self.start,
            "stopped": stopped,
            "mode": self.mode,
            "more": more,
            "history": _describe_arrays(history),
            "more_arrays": None if arrays is None else _describe_arrays(arrays),
        }
        _write_atomic(
            Path(self.path), _header(state, self.optimizer, extra), (state, history, arrays)
        )
