"""Search spaces and their map to the unit interval.

Every space describes one scalar hyperparameter. A space knows three things:

- how to draw a value (`sample`),
- how to turn an arbitrary number into a valid member (`transform`),
- how to map a value to the unit interval and back (`to_unit` / `from_unit`), which is
  what the Gaussian process of `BayesianSearch` works on.

All three are implemented once, on per-column arrays (see `FlatSpace`), so a pytree of
many spaces is sampled, warped and snapped with a handful of vectorised operations.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree

from ._checks import check_real, is_traced, plain
from ._dtypes import float_dtype
from ._random import uniform

__all__ = [
    "Space",
    "LinearSpace",
    "LogSpace",
    "QLinearSpace",
    "QLogSpace",
    "DiscreteSpace",
    "CategoricalSpace",
    "to_configs",
    "from_configs",
]


def _check_number(cls_name: str, arg: str, value: Any) -> float:
    """One real, finite number (a Python number or a size-1 array), as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real | np.ndarray | jax.Array):
        raise TypeError(f"{cls_name}: `{arg}` must be a real number, got {value!r}.")
    try:
        number = float(np.asarray(value).reshape(()))
    except (TypeError, ValueError):  # more than one number, or a traced value
        raise TypeError(f"{cls_name}: `{arg}` must be a real number, got {value!r}.") from None
    check_real(cls_name, arg, number)
    return number


@dataclasses.dataclass(frozen=True)
class _Column:
    """What one parameter looks like to the vectorised code.

    `lo`/`hi` are the warped bounds (natural log applied for log spaces; cell edges
    widened by 0.5 for integers; index edges for discrete values). `ilo`/`ihi` are the
    integer bounds a rounded value is clipped to (index bounds for discrete spaces).
    """

    lo: float
    hi: float
    log: bool
    integer: bool
    ilo: float
    ihi: float
    values: tuple[float, ...]  # empty unless discrete
    dtype: Any
    categorical: bool = False  # unordered choices: values are the indices


class Space(eqx.Module):
    """Abstract base class for hyperparameter search spaces.

    A space is a static description of one scalar hyperparameter. Subclasses only say
    how they look as a column (`_column`); sampling, snapping and the unit-interval
    warp are shared.
    """

    @abc.abstractmethod
    def _column(self) -> _Column:
        raise NotImplementedError

    @property
    def dtype(self):
        """The dtype of the values this space produces."""
        return self._column().dtype

    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...] = ()) -> Array:
        """Draw values of this space with the given shape."""
        u = uniform(key, shape, float_dtype())
        return self.from_unit(u)

    def transform(self, value: ArrayLike) -> Array:
        """Map arbitrary numbers (any shape) to valid members of this space's dtype."""
        flat = FlatSpace.from_columns((self._column(),))
        value = jnp.asarray(value, float_dtype())
        return flat.snap(value[..., None])[..., 0].astype(self.dtype)

    def to_unit(self, value: ArrayLike) -> Float[Array, ...]:
        """Map values of this space (any shape) to the unit interval."""
        flat = FlatSpace.from_columns((self._column(),))
        value = jnp.asarray(value, float_dtype())
        return flat.to_unit(value[..., None])[..., 0]

    def from_unit(self, u: ArrayLike) -> Array:
        """Map points of the unit interval (any shape) to valid members of this space."""
        flat = FlatSpace.from_columns((self._column(),))
        u = jnp.asarray(u, float_dtype())
        return flat.from_unit(u[..., None])[..., 0].astype(self.dtype)


def _check_bounds(name: str, lower_bound: Any, upper_bound: Any) -> tuple[float, float]:
    lo = _check_number(name, "lower_bound", lower_bound)
    hi = _check_number(name, "upper_bound", upper_bound)
    if not lo < hi:
        raise ValueError(
            f"{name}: `lower_bound` must be smaller than `upper_bound`, "
            f"got lower_bound={lower_bound!r}, upper_bound={upper_bound!r}."
        )
    dtype = np.dtype(float_dtype())
    biggest = float(np.finfo(dtype).max)
    # The bounds and the width must be finite numbers of this dtype.
    if not max(abs(lo), abs(hi), hi - lo) <= biggest:
        raise ValueError(
            f"{name}: [lower_bound, upper_bound] = [{lower_bound!r}, {upper_bound!r}] does not "
            f"fit in {dtype.name}, whose numbers lie within +-{biggest:.4g} (the width "
            f"upper_bound - lower_bound included); enable jax_enable_x64 for float64, or "
            f"rescale the parameter."
        )
    if not dtype.type(lo) < dtype.type(hi):  # a range narrower than the dtype's spacing
        raise ValueError(
            f"{name}: lower_bound={lower_bound!r} and upper_bound={upper_bound!r} are the "
            f"same {dtype.name} number ({float(dtype.type(lo))!r}), so every value would "
            f"be that one; enable jax_enable_x64 for float64, or rescale the parameter "
            f"(search its offset from lower_bound, say)."
        )
    return lo, hi


def _check_base(name: str, base: Any) -> None:
    b = _check_number(name, "base", base)
    if not b > 1:
        raise ValueError(f"{name}: `base` must be greater than 1, got {base!r}.")


def _check_positive(name: str, lower_bound: Any) -> None:
    if not float(lower_bound) > 0:
        raise ValueError(
            f"{name}: log-scaled bounds must be positive, got lower_bound={lower_bound!r}."
        )
    dtype = np.dtype(float_dtype())
    tiny = float(np.finfo(dtype).tiny)
    if float(lower_bound) < tiny:
        raise ValueError(
            f"{name}: lower_bound={lower_bound!r} is below the smallest normal {dtype.name} "
            f"({tiny:.4g}); enable jax_enable_x64 for float64, or rescale the parameter."
        )


def _integer_bounds(name: str, lo: float, hi: float) -> tuple[int, int]:
    ilo, ihi = math.ceil(lo), math.floor(hi)
    if ilo > ihi:
        raise ValueError(
            f"{name}: no integer lies in [lower_bound, upper_bound] = [{lo!r}, {hi!r}]."
        )
    return ilo, ihi


def _check_int_dtype(name: str, datatype: Any) -> None:
    try:
        ok = jnp.issubdtype(datatype, jnp.integer)
    except TypeError:
        ok = False
    if not ok:
        raise TypeError(f"{name}: `datatype` must be an integer dtype, got {datatype!r}.")


class LinearSpace(Space):
    """Uniform continuous space over `[lower_bound, upper_bound]`."""

    lower_bound: float = eqx.field(static=True, converter=plain)
    upper_bound: float = eqx.field(static=True, converter=plain)

    def __check_init__(self):
        _check_bounds(type(self).__name__, self.lower_bound, self.upper_bound)

    def _column(self) -> _Column:
        lo, hi = float(self.lower_bound), float(self.upper_bound)
        return _Column(lo, hi, False, False, lo, hi, (), float_dtype())


class LogSpace(LinearSpace):
    """Log-uniform continuous space over `[lower_bound, upper_bound]`.

    Samples uniformly in log space so that each order of magnitude receives equal
    probability mass. Useful for learning rates and other scale parameters that span
    several orders of magnitude. The distribution does not depend on `base` (a
    log-uniform law is the same in every base); `base` is kept for readability.
    """

    base: float = eqx.field(default=10, static=True, converter=plain)

    def __check_init__(self):
        name = type(self).__name__
        _check_base(name, self.base)
        _check_positive(name, self.lower_bound)

    def _column(self) -> _Column:
        lo, hi = float(self.lower_bound), float(self.upper_bound)
        return _Column(math.log(lo), math.log(hi), True, False, lo, hi, (), float_dtype())


def _check_integer_space(space) -> None:
    name = type(space).__name__
    _check_int_dtype(name, space.datatype)
    ilo, ihi = _integer_bounds(name, float(space.lower_bound), float(space.upper_bound))
    low, high, holds = _integer_limits(space.datatype)
    if ilo < low or ihi > high:
        raise ValueError(
            f"{name}: [lower_bound, upper_bound] = [{space.lower_bound!r}, {space.upper_bound!r}] "
            f"does not fit: {holds}; enable jax_enable_x64 (and an int64 `datatype`) for "
            f"larger ranges."
        )


def _integer_limits(datatype: Any) -> tuple[int, int, str]:
    """The integers a space of `datatype` can hold, and the sentence that says why.

    Integers pass through the float dtype on their way to the GP and back: they must be
    exact there too (float32 holds every integer up to 2**24).
    """
    info = np.iinfo(np.dtype(datatype))
    exact = 2 ** (np.finfo(np.dtype(float_dtype())).nmant + 1)
    holds = (
        f"{np.dtype(datatype).name} holds [{info.min}, {info.max}] and "
        f"{np.dtype(float_dtype()).name} represents every integer only within +-{exact}"
    )
    return max(int(info.min), -exact), min(int(info.max), exact), holds


def _integer_column(space, log: bool) -> _Column:
    ilo, ihi = _integer_bounds(type(space).__name__, space.lower_bound, space.upper_bound)
    # Each integer k owns the cell [k - 0.5, k + 0.5] (in log space for log spaces).
    lo, hi = ilo - 0.5, ihi + 0.5
    if log:
        lo, hi = math.log(lo), math.log(hi)
    return _Column(lo, hi, log, True, ilo, ihi, (), space.datatype)


class QLinearSpace(LinearSpace):
    """Quantized (integer) variant of `LinearSpace`.

    Draws every integer in `[lower_bound, upper_bound]` with equal probability. Use this
    for discrete integer hyperparameters with a uniform prior (e.g. number of layers).
    """

    datatype: Any = eqx.field(default=jnp.int32, static=True)

    def __check_init__(self):
        _check_integer_space(self)

    def _column(self) -> _Column:
        return _integer_column(self, log=False)


class QLogSpace(LogSpace):
    """Quantized (integer) variant of `LogSpace`.

    Samples in log space and rounds to the nearest integer. Use this for integer
    hyperparameters whose scale spans orders of magnitude (e.g. number of hidden units).
    """

    datatype: Any = eqx.field(default=jnp.int32, static=True)

    def __check_init__(self):
        _check_integer_space(self)

    def _column(self) -> _Column:
        return _integer_column(self, log=True)


def _to_discrete_values(values: Any) -> tuple:
    if isinstance(values, np.ndarray | jax.Array):
        values = np.asarray(values).ravel().tolist()
    return tuple(plain(v) for v in values)


class DiscreteSpace(Space):
    """Discrete space over a fixed set of numeric values.

    Samples uniformly from `values`. `transform` snaps any continuous value to the
    nearest element, which is useful when discrete candidates are generated via
    continuous optimization (e.g. in `BayesianSearch`). The values are treated as
    ordered: the unit-interval map places them by rank.
    """

    values: tuple = eqx.field(static=True, converter=_to_discrete_values)

    def __check_init__(self):
        name = type(self).__name__
        if len(self.values) == 0:
            raise ValueError(f"{name}: `values` must not be empty, got {self.values!r}.")
        for v in self.values:
            _check_number(name, "values", v)
        # The values pass through the float dtype (and integers come back as int32): they
        # must be numbers of it, and integers exact in it.
        lo, hi = min(self.values), max(self.values)
        fdtype = np.dtype(float_dtype())
        if all(isinstance(v, numbers.Integral) for v in self.values):
            low, high, holds = _integer_limits(jnp.int32)
            ok = low <= lo and hi <= high
        else:
            biggest = float(np.finfo(fdtype).max)
            ok = max(abs(float(lo)), abs(float(hi))) <= biggest
            holds = f"{fdtype.name} numbers lie within +-{biggest:.4g}"
        if not ok:
            raise ValueError(
                f"{name}: `values` from {lo!r} to {hi!r} do not fit: {holds}; enable "
                f"jax_enable_x64 for float64, or rescale the parameter."
            )
        # Values the dtype holds as one number would be one value: a typo, or a
        # resolution the search cannot give (0.1 and 0.1 + 1e-10 in float32).
        held = np.asarray([float(v) for v in self.values], fdtype)
        _, first, counts = np.unique(held, return_index=True, return_counts=True)
        if (counts > 1).any():
            i = int(first[np.argmax(counts > 1)])
            raise ValueError(
                f"{name}: the value {self.values[i]!r} appears twice (as {fdtype.name} "
                f"numbers) in `values`."
            )

    @property
    def _sorted(self) -> tuple[float, ...]:
        return tuple(sorted(float(v) for v in set(self.values)))

    def _column(self) -> _Column:
        vals = self._sorted
        all_int = all(isinstance(v, numbers.Integral) for v in self.values)
        dtype = jnp.int32 if all_int else float_dtype()
        n = len(vals)
        return _Column(-0.5, n - 0.5, False, True, 0.0, float(n - 1), vals, dtype)

    def decode(self, value: Any) -> Any:
        """The declared member a value of this space stands for (exactly as declared).

        In float32, `DiscreteSpace((0.1, 0.5))` holds 0.1 as 0.100000001...; host code
        gets the declared 0.1 back (`to_configs` with the space does this).
        """
        v = float(np.asarray(value))
        return min(self.values, key=lambda member: abs(float(member) - v))


def _as_choices(choices: Any) -> tuple:
    if isinstance(choices, str | bytes) or not isinstance(choices, Sequence | np.ndarray):
        raise TypeError(
            f"CategoricalSpace: `choices` must be a sequence of choices, got {choices!r}."
        )
    return (
        tuple(np.asarray(choices).tolist()) if isinstance(choices, np.ndarray) else tuple(choices)
    )


class CategoricalSpace(Space):
    """An unordered choice among any Python values (strings, None, callables, ...).

    Inside JAX objectives the value is the `int32` index of the choice: map it back
    with `space.choices[index]` on the host, or select with `jax.lax.switch(index,
    branches)` / `jnp.asarray(table)[index]` under tracing. Host-side objectives
    (`optimize_host`, `to_configs(params, space)`) receive the choice itself.
    `BayesianSearch` treats the categories as unordered: two configurations differ in
    this parameter or they do not, with no notion that one choice lies between two
    others (a per-parameter length scale says how much a change matters).
    """

    choices: tuple = eqx.field(static=True, converter=_as_choices)

    def __check_init__(self):
        if len(self.choices) == 0:
            raise ValueError("CategoricalSpace: `choices` must not be empty.")
        try:
            hash(self.choices)
        except TypeError:
            raise TypeError(
                f"CategoricalSpace: every choice must be hashable (use tuples rather than "
                f"lists or dicts), got {self.choices!r}."
            ) from None
        for i, c in enumerate(self.choices):
            if any(_same(c, d) for d in self.choices[:i]):
                raise ValueError(f"CategoricalSpace: the choice {c!r} appears twice.")

    def _column(self) -> _Column:
        n = len(self.choices)
        idx = tuple(float(i) for i in range(n))
        return _Column(-0.5, n - 0.5, False, True, 0.0, float(n - 1), idx, jnp.int32, True)

    def decode(self, index: Any) -> Any:
        """The choice with this index (a Python int or a concrete integer array)."""
        return self.choices[int(np.asarray(index))]

    def encode(self, choice: Any) -> int:
        """The index of `choice` (matched by identity, then equality)."""
        for i, c in enumerate(self.choices):
            if _same(choice, c):
                return i
        raise ValueError(
            f"CategoricalSpace: {choice!r} is not one of the choices {self.choices!r}."
        )


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(type(a) is type(b) and a == b)
    except Exception:
        return False


class FlatSpace:
    """A pytree of spaces as per-column arrays, built once from static spaces.

    Columns follow the order of `jax.tree_util.tree_leaves(space)`. All methods work on
    arrays whose last axis has one entry per column and are vectorised over columns.
    Values are handled as floats internally ("raw" values); `unflatten` casts each
    column to its space's dtype.
    """

    def __init__(self, columns: tuple[_Column, ...], treedef=None, paths=()):
        if len(columns) == 0:
            raise ValueError("The search space is empty: it must contain at least one Space.")
        self.columns = columns
        self.treedef = treedef
        self.paths = paths
        self.n_params = len(columns)
        self.dtypes = tuple(c.dtype for c in columns)
        self.lo = np.array([c.lo for c in columns])
        self.hi = np.array([c.hi for c in columns])
        self.log = np.array([c.log for c in columns])
        self.integer = np.array([c.integer for c in columns])
        self.discrete = np.array([len(c.values) > 0 for c in columns])
        self.ilo = np.array([c.ilo for c in columns])
        self.ihi = np.array([c.ihi for c in columns])
        self.categorical = np.array([c.categorical for c in columns])
        # Number of choices of each unordered column (0 elsewhere), for the GP's kernel.
        self.n_choices = tuple(len(c.values) if c.categorical else 0 for c in columns)
        width = max(1, max(len(c.values) for c in columns))
        # Padded with +inf so a padded entry is never the nearest value.
        table = np.full((len(columns), width), np.inf)
        for i, c in enumerate(columns):
            table[i, : len(c.values)] = c.values
        self.table = table
        self.has_discrete = bool(self.discrete.any())

    @classmethod
    def from_columns(cls, columns):
        return _flat_from_columns(tuple(columns))

    # -- vectorised maps; every array is (..., n_params) ------------------------------

    def _col(self, a, x):
        # Column constants broadcast explicitly to (..., d): no implicit rank promotion.
        return jnp.broadcast_to(jnp.asarray(a, x.dtype if a.dtype != bool else bool), x.shape)

    def _nearest_index(self, x):
        table = jnp.asarray(np.where(np.isinf(self.table), np.nan, self.table), x.dtype)
        table = jnp.broadcast_to(table, x.shape + table.shape[-1:])
        dist = jnp.abs(x[..., None] - table)
        dist = jnp.where(jnp.isnan(dist), jnp.inf, dist)
        return jnp.argmin(dist, axis=-1).astype(x.dtype)

    def _lookup(self, idx):
        table = jnp.asarray(np.where(np.isinf(self.table), 0.0, self.table), idx.dtype)
        i = jnp.clip(idx.astype(jnp.int32), 0, table.shape[-1] - 1)
        table = jnp.broadcast_to(table, idx.shape + table.shape[-1:])
        return jnp.take_along_axis(table, i[..., None], axis=-1)[..., 0]

    def _inner_bounds(self, dtype) -> tuple[np.ndarray, np.ndarray]:
        """The declared bounds as numbers of `dtype`, rounded inwards where inexact, so
        that every value between them lies within the declared bounds."""
        lo = np.asarray(self.ilo, dtype)
        hi = np.asarray(self.ihi, dtype)
        lo = np.where(
            lo.astype(np.float64) < self.ilo, np.nextafter(lo, np.asarray(np.inf, dtype)), lo
        )
        hi = np.where(
            hi.astype(np.float64) > self.ihi, np.nextafter(hi, np.asarray(-np.inf, dtype)), hi
        )
        return lo, hi

    def from_unit(self, u: Float[Array, "... d"]) -> Float[Array, "... d"]:
        """Unit cube -> valid raw values (rounded, snapped), as floats.

        Continuous values are clipped to the declared bounds (rounding in `exp` must not
        take a log-scaled value past them).
        """
        lo, hi = self._col(self.lo, u), self._col(self.hi, u)
        w = lo + jnp.clip(u, 0.0, 1.0) * (hi - lo)
        x = jnp.where(self._col(self.log, u), jnp.exp(w), w)
        rlo, rhi = self._inner_bounds(np.dtype(u.dtype))
        x = jnp.clip(x, self._col(rlo, x), self._col(rhi, x))
        return self._round(x)

    def _round(self, x):
        ilo, ihi = self._col(self.ilo, x), self._col(self.ihi, x)
        x = jnp.where(self._col(self.integer, x), jnp.clip(jnp.round(x), ilo, ihi), x)
        if self.has_discrete:
            discrete = self._col(self.discrete, x)
            x = jnp.where(discrete, self._lookup(jnp.where(discrete, x, 0)), x)
        return x

    def snap(self, x: Float[Array, "... d"]) -> Float[Array, "... d"]:
        """Arbitrary raw numbers -> nearest valid raw values, as floats."""
        if self.has_discrete:
            x = jnp.where(self._col(self.discrete, x), self._nearest_index(x), x)
        return self._round(x)

    def to_unit(self, x: Float[Array, "... d"]) -> Float[Array, "... d"]:
        """Raw values -> unit cube (integers and discrete values map to cell centres)."""
        if self.has_discrete:
            x = jnp.where(self._col(self.discrete, x), self._nearest_index(x), x)
        log = self._col(self.log, x)
        safe = jnp.where(log, jnp.maximum(x, jnp.finfo(x.dtype).tiny), 1.0)
        w = jnp.where(log, jnp.log(safe), x)
        lo, hi = self._col(self.lo, x), self._col(self.hi, x)
        return (w - lo) / (hi - lo)

    def check_given(self, params, owner: str) -> np.ndarray | None:
        """A shape-checked batch (pytree or raw matrix) as an `(n, d)` host matrix, after
        `check_values`; `None` for a traced batch, which cannot be read on the host."""
        leaves = [params] if is_matrix(params) else jax.tree_util.tree_leaves(params)
        if any(is_traced(leaf) for leaf in leaves):
            return None
        # In the dtype the search computes in, as `as_matrix` gives it: discrete members
        # compare equal there.
        dtype = np.dtype(float_dtype())
        if is_matrix(params):
            x = np.asarray(params, dtype)
        else:
            x = np.stack([np.asarray(leaf, dtype) for leaf in leaves], axis=-1)
        self.check_values(x, owner)
        return x

    def check_values(self, x, owner: str) -> None:
        """Raise a `ValueError` naming the parameter if a raw value is not in its space.

        `x` is a concrete `(n, d)` matrix of raw values; finite values inside the bounds
        (for integer spaces, whole numbers; for discrete spaces, members) pass.
        """
        given = np.asarray(x)
        x = given.astype(np.float64)
        for j, c in enumerate(self.columns):
            col = x[:, j]
            if len(c.values):
                # Compared in the dtype the values arrived in: float32 holds 0.1 as
                # 0.100000001..., which is the member 0.1 all the same.
                ok = np.isin(given[:, j], np.asarray(c.values, np.float64).astype(given.dtype))
                what = f"one of {c.values}"
            else:
                lo, hi = (math.exp(c.lo), math.exp(c.hi)) if c.log else (c.lo, c.hi)
                if c.integer:
                    lo, hi = c.ilo, c.ihi
                tol = 1e-6 * max(1.0, abs(lo), abs(hi))
                ok = np.isfinite(col) & (col >= lo - tol) & (col <= hi + tol)
                if c.integer:
                    ok &= col == np.round(col)
                what = f"{'an integer' if c.integer else 'a number'} in [{lo:g}, {hi:g}]"
            if not ok.all():
                i = int(np.argmin(ok))
                name = self.paths[j] if self.paths else f"column {j}"
                raise ValueError(
                    f"{owner}: parameter {name or '<root>'} of configuration {i} "
                    f"is {float(col[i])!r}, "
                    f"not {what}."
                )

    def sample_unit(self, key: PRNGKeyArray, n: int) -> Float[Array, "n d"]:
        return uniform(key, (n, self.n_params), float_dtype())

    # -- batches of configurations: a params pytree or a raw `(n, d)` matrix ----------

    def check_batch(self, params, n: int, owner: str) -> None:
        """Raise a `ValueError` (naming `owner`) unless `params` is a batch of `n`
        configurations: a pytree with one `(n,)` leaf per column, or an `(n, d)` array
        (`n` 0: any number of them, as `batch_size` could not tell)."""
        size = n if n else "n"
        expected = (
            f"a params pytree with {self.n_params} leaves of shape ({size},) "
            f"or an array of shape ({size}, {self.n_params})"
        )
        if is_matrix(params):
            if params.shape != (n, self.n_params):
                raise ValueError(
                    f"{owner}: `params` must be {expected}; got an array of shape {params.shape}."
                )
            return
        shapes = [jnp.shape(leaf) for leaf in jax.tree_util.tree_leaves(params)]
        if len(shapes) != self.n_params or any(s != (n,) for s in shapes):
            raise ValueError(
                f"{owner}: `params` must be {expected}; got leaves of shapes {shapes}."
            )

    @staticmethod
    def batch_size(params) -> int:
        """The number of configurations in a params pytree or matrix (0 if it cannot be told)."""
        if is_matrix(params):
            return params.shape[0]
        shapes = [jnp.shape(leaf) for leaf in jax.tree_util.tree_leaves(params)]
        return shapes[0][0] if shapes and len(shapes[0]) == 1 else 0

    def as_matrix(self, params) -> Float[Array, "n d"]:
        """A checked batch (pytree or raw matrix) as an `(n, d)` float matrix; traceable."""
        if is_matrix(params):
            return jnp.asarray(params, float_dtype())
        return self.flatten(params)

    # -- pytrees ----------------------------------------------------------------------

    def flatten(self, params: PyTree) -> Float[Array, "n d"]:
        """A batched params pytree (each leaf `(n,)`) -> raw float matrix `(n, d)`."""
        leaves = jax.tree_util.tree_leaves(params)
        if len(leaves) != self.n_params:
            raise ValueError(
                f"params has {len(leaves)} leaves but the search space has {self.n_params}."
            )
        return jnp.stack([jnp.asarray(v, float_dtype()) for v in leaves], axis=-1)

    def unflatten(self, x: Float[Array, "n d"]) -> PyTree:
        """Raw float matrix `(n, d)` -> params pytree, each leaf `(n,)` with its dtype.

        A concrete matrix is split on the host, because every output of a compiled
        function costs XLA compilation time (seconds for a thousand parameters), while
        inside a traced function the leaves are free intermediates.
        """
        if not is_traced(x):
            host = np.asarray(x)
            leaves = [jnp.asarray(host[..., i].astype(dt)) for i, dt in enumerate(self.dtypes)]
            return jax.tree_util.tree_unflatten(self.treedef, leaves)
        cols = jnp.split(x, self.n_params, axis=-1)
        leaves = [c[..., 0].astype(dt) for c, dt in zip(cols, self.dtypes, strict=True)]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)


def as_batch(params: Any) -> tuple[Any, bool]:
    """`(params, single)`: a single configuration (a pytree whose every leaf is a scalar,
    as `best_params` returns it) as a batch of one, each leaf `(1,)`, and `single` True;
    anything else unchanged, and `single` False."""
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves or is_matrix(params) or any(jnp.ndim(leaf) != 0 for leaf in leaves):
        return params, False
    one = jax.tree_util.tree_map(
        lambda v: v[None] if isinstance(v, jax.Array | np.ndarray) else np.asarray([v]), params
    )
    return one, True


def is_matrix(params: Any) -> bool:
    """Whether a batch of configurations is a raw `(n, d)` array rather than a pytree."""
    return isinstance(params, jax.Array | np.ndarray) and np.ndim(params) == 2


def _is_space(x: Any) -> bool:
    return isinstance(x, Space)


def flatten_space(space: PyTree[Space]) -> FlatSpace:
    """Describe a pytree of spaces as per-column arrays (cached per space)."""
    leaves, treedef = jax.tree_util.tree_flatten(space, is_leaf=_is_space)
    try:
        return _flatten_cached(treedef, tuple(leaves))
    except TypeError as e:
        if "unhashable" not in str(e):
            raise
        return _flatten(space)


@functools.lru_cache(maxsize=256)
def _flatten_cached(treedef, leaves) -> FlatSpace:
    return _flatten(jax.tree_util.tree_unflatten(treedef, leaves))


@functools.lru_cache(maxsize=256)
def _flat_from_columns(columns) -> FlatSpace:
    return FlatSpace(columns, None, ())


def _flatten(space) -> FlatSpace:
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(space, is_leaf=_is_space)
    for path, leaf in leaves_with_path:
        if not isinstance(leaf, Space):
            raise TypeError(
                f"Every leaf of the search space must be a Space; the leaf at "
                f"{jax.tree_util.keystr(path) or '<root>'} is {leaf!r}."
            )
    if not leaves_with_path:
        raise ValueError("The search space is empty: it must contain at least one Space.")
    columns = tuple(leaf._column() for _, leaf in leaves_with_path)
    paths = tuple(jax.tree_util.keystr(p) for p, _ in leaves_with_path)
    return FlatSpace(columns, treedef, paths)


def _space_leaves(space: PyTree) -> list[Space]:
    return jax.tree_util.tree_leaves(space, is_leaf=_is_space)


def to_configs(params: PyTree, space: PyTree | None = None) -> list[PyTree]:
    """A batched params pytree (each leaf `(n,)`) -> a list of `n` configurations.

    Each configuration has the pytree's structure (a dict for a dict space) with plain
    Python values: `float` for continuous parameters, `int` for integer ones. With
    `space`, a `CategoricalSpace` parameter becomes the choice itself instead of its
    index, and a `DiscreteSpace` parameter exactly the declared value (not its float32
    rounding). Use it to hand suggestions to code outside JAX. A single configuration
    (every leaf a scalar, as `best_params` returns it) gives a list of one:
    `hx.to_configs(opt.best_params(state), space)[0]`.
    """
    leaves, treedef = jax.tree_util.tree_flatten(as_batch(params)[0])
    if not leaves:
        raise ValueError("to_configs: `params` has no leaves.")
    host = [np.asarray(v) for v in leaves]
    shapes = {v.shape for v in host}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(
            f"to_configs: every leaf of `params` must have the same shape (n,); got shapes "
            f"{[v.shape for v in host]}."
        )
    decoders: list[Any] = [None] * len(host)
    if space is not None:
        spaces = _space_leaves(space)
        if len(spaces) != len(host):
            raise ValueError(
                f"to_configs: `params` has {len(host)} leaves but the space has {len(spaces)}."
            )
        decoders = [
            sp.decode if isinstance(sp, CategoricalSpace | DiscreteSpace) else None for sp in spaces
        ]

    def value(j, i):
        return decoders[j](host[j][i]) if decoders[j] else host[j][i].item()

    n = host[0].shape[0]
    return [
        jax.tree_util.tree_unflatten(treedef, [value(j, i) for j in range(len(host))])
        for i in range(n)
    ]


def from_configs(configs: Sequence[PyTree], space: PyTree) -> PyTree:
    """A list of configurations (for example dicts of Python values) -> a batched pytree.

    The inverse of `to_configs`: each leaf of the result has shape `(len(configs),)` and
    its space's dtype, ready for `update_state` or `warm_start`. Every configuration
    must have the structure of `space`; a `CategoricalSpace` parameter may be given as
    the choice itself or as its index.
    """
    flat = flatten_space(space)
    spaces = _space_leaves(space)
    if isinstance(configs, Mapping) or not isinstance(configs, Sequence) or len(configs) == 0:
        raise ValueError(
            f"from_configs: `configs` must be a non-empty list of configurations, got {configs!r}."
        )
    rows = []
    for i, config in enumerate(configs):
        # Up to the space's structure: a choice (None, a tuple, a function) is one value.
        try:
            leaves = flat.treedef.flatten_up_to(config)
        except (ValueError, TypeError):
            raise ValueError(
                f"from_configs: configuration {i} does not match the search space: expected "
                f"the structure {_describe(flat.treedef)}, got {config!r}."
            ) from None
        rows.append([_encode(sp, v) for sp, v in zip(spaces, leaves, strict=True)])
    x = np.asarray(rows, dtype=np.float64)
    # Before any cast: 1.9 for an integer parameter must be refused, not truncated to 1.
    flat.check_values(x, "from_configs")
    out = [jnp.asarray(x[:, j].astype(dt)) for j, dt in enumerate(flat.dtypes)]
    return jax.tree_util.tree_unflatten(flat.treedef, out)


def _encode(space: Space, value: Any) -> float:
    if isinstance(space, CategoricalSpace):
        try:
            return float(space.encode(value))
        except ValueError:
            if isinstance(value, numbers.Integral | np.integer) and 0 <= int(value) < len(
                space.choices
            ):
                return float(int(value))
            raise
    return float(value)


def _describe(treedef) -> str:
    return repr(jax.tree_util.tree_unflatten(treedef, ["..."] * treedef.num_leaves))
