"""The library's programs compile with their own compiler options and stay usable
inside the user's transformations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyperoptax import _jit
from hyperoptax._loop import _split
from hyperoptax.bayesian import _empty_buffers

KEY = jax.random.PRNGKey(3)


def _expected_options():
    """The library's CPU options where this XLA accepts them, none where it does not."""
    try:
        jax.jit(lambda x: x, compiler_options=_jit.CPU_COMPILER_OPTIONS)(1.0)
    except Exception:
        return {}
    return _jit.CPU_COMPILER_OPTIONS


def test_cpu_programs_ask_for_the_older_fusion_emitters(monkeypatch):
    assert jax.default_backend() == "cpu"
    assert _jit.compiler_options() == _expected_options()
    # The options go to XLA with a program called from outside any trace (an option XLA
    # does not know is refused when it compiles), and stay out of one traced inside the
    # user's program, which XLA compiles with the user's options.
    monkeypatch.setattr(_jit, "compiler_options", lambda: {"xla_no_such_option": True})
    doubled = _jit.jit(lambda x: 2 * x)
    with pytest.raises(Exception, match="xla_no_such_option"):
        doubled(jnp.asarray(1.5))
    assert float(jax.jit(doubled)(jnp.asarray(1.5))) == 3.0


def test_a_library_program_inside_the_users_programs():
    # XLA takes options for a whole program only; a library program called while the
    # user's program is traced is staged into it, with or without traced arguments.
    expected = np.asarray(jax.random.key_data(_split(KEY, 4)))
    inside = jax.jit(lambda k: _split(k, 4))(KEY)
    closed_over = jax.jit(lambda: _split(KEY, 4))()
    batched = jax.vmap(lambda k: _split(k, 4))(jnp.stack([KEY, KEY]))
    for got in (inside, closed_over, batched[0], batched[1]):
        np.testing.assert_array_equal(np.asarray(jax.random.key_data(got)), expected)
    X, y, mask, log_ls = jax.jit(lambda: _empty_buffers(0.5, 5, 3, jnp.float32))()
    assert X.shape == (5, 3) and y.shape == mask.shape == (5,) and log_ls.shape == (3,)
    np.testing.assert_allclose(np.asarray(log_ls), np.log(0.5), rtol=1e-6)


def test_an_xla_without_the_option_compiles_with_its_defaults(monkeypatch):
    monkeypatch.setattr(_jit, "CPU_COMPILER_OPTIONS", {"xla_no_such_option": True})
    _jit.compiler_options.cache_clear()
    try:
        assert _jit.compiler_options() == {}
        doubled = _jit.jit(lambda x: 2 * x)
        assert float(doubled(jnp.asarray(1.5))) == 3.0
    finally:
        monkeypatch.undo()
        _jit.compiler_options.cache_clear()
    assert _jit.compiler_options() == _expected_options()
