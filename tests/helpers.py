"""Shared objectives and spaces for the tests."""

import contextlib
import logging
import math
import pathlib
import re

import jax
import jax.numpy as jnp

import hyperoptax as hx


def branin(key, p):
    x1, x2 = p["x1"], p["x2"]
    b, c, t = 5.1 / (4 * jnp.pi**2), 5 / jnp.pi, 1 / (8 * jnp.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * jnp.cos(x1) + 10


BRANIN_SPACE = {"x1": hx.LinearSpace(-5.0, 10.0), "x2": hx.LinearSpace(0.0, 15.0)}
BRANIN_MIN = 5.0 / (4.0 * math.pi)  # 0.39788735772973816

MIXED_SPACE = {
    "lr": hx.LogSpace(1e-5, 1e-1),
    "layers": hx.QLinearSpace(1, 4),
    "width": hx.QLogSpace(8, 512),
    "act": hx.DiscreteSpace((0, 1, 2)),
    "dropout": hx.LinearSpace(0.0, 0.5),
}


def mixed_objective(key, p):
    # Smooth in log(lr); prefers 2 layers, width near 64, act 1, dropout 0.1.
    return (
        (jnp.log10(p["lr"]) + 3.0) ** 2
        + (p["layers"] - 2) ** 2
        + (jnp.log2(p["width"]) - 6.0) ** 2 / 4
        + (p["act"] != 1)
        + (p["dropout"] - 0.1) ** 2
    )


# Multi-fidelity objectives: `budget` is an int32 scalar.
HB_SPACE = {"x": hx.LinearSpace(0.0, 1.0), "n": hx.QLinearSpace(1, 4)}


def budget_objective(key, params, budget):
    # Deterministic (the key is unused), so every evaluation can be checked one by one.
    # More budget brings each configuration closer to its final value, 1 - (x - 0.3)^2.
    final = 1.0 - (params["x"] - 0.3) ** 2 - 0.01 * params["n"]
    return final - 1.0 / (1.0 + budget)


def train(key, params, budget, carry):
    """Gradient descent on a 1-D quadratic from where the carry left off, until `budget`
    steps in total; the loss after them."""
    w, done = carry

    def step(_, w):
        return w - params["x"] * 0.2 * (w - 1.0)

    w = jax.lax.fori_loop(done, budget, step, w)
    return (w - 1.0) ** 2, (w, budget)


def start(key, params):
    return jnp.asarray(3.0), jnp.asarray(0, jnp.int32)


def check_in_space(params, space, n):
    """Each leaf of a batched params pytree is (n,), of the space's dtype, and valid."""
    for name, sp in space.items():
        v = params[name]
        assert v.shape == (n,), (name, v.shape)
        assert v.dtype == sp.dtype, (name, v.dtype, sp.dtype)
        assert bool(jnp.all(jnp.isfinite(v.astype(jnp.float32)))), name
        if isinstance(sp, hx.DiscreteSpace):
            assert all(float(x) in [float(m) for m in sp.values] for x in v), name
        else:
            assert bool(jnp.all(v >= sp.lower_bound)) and bool(jnp.all(v <= sp.upper_bound)), name


# The sharded searches' (sharding_worker.py, multihost_worker.py).
SHARDED_SPACE = {"lr": hx.LogSpace(1e-3, 1e-1), "width": hx.QLinearSpace(2, 16)}
SHARDED_SMALL = dict(n_candidates=64, n_restarts=2, n_lbfgs_steps=3, n_hparam_steps=3)


def sharded_objective(key, p):
    """Some real work per configuration: 20 gradient steps on a masked linear model."""
    X = jax.random.normal(jax.random.PRNGKey(1), (64, 16))
    y = X @ jnp.linspace(-1.0, 1.0, 16)
    mask = (jnp.arange(16) < p["width"]).astype(X.dtype)

    def step(w, _):
        g = jax.grad(lambda w: jnp.mean((X @ (w * mask) - y) ** 2))(w)
        return w - p["lr"] * g, None

    w, _ = jax.lax.scan(step, jnp.zeros(16), None, length=20)
    return jnp.mean((X @ (w * mask) - y) ** 2)


@contextlib.contextmanager
def count_compilations(name):
    """Counts how many times JAX compiles the jitted function `name` inside the block
    (yields a one-element list holding the count)."""
    counter = [0]

    class Handler(logging.Handler):
        def emit(self, record):
            counter[0] += f"Compiling jit({name})" in record.getMessage()

    handler, logger = Handler(), logging.getLogger("jax")
    logger.addHandler(handler)
    jax.config.update("jax_log_compiles", True)
    try:
        yield counter
    finally:
        jax.config.update("jax_log_compiles", False)
        logger.removeHandler(handler)


def run_page_code(page, tmp_path, monkeypatch):
    """Run a documentation page's ```python blocks, in order, as one program, in
    `tmp_path` (checkpoints and files land there)."""
    root = pathlib.Path(__file__).resolve().parents[1]
    blocks = re.findall(r"```python\n(.*?)```", (root / page).read_text(), re.S)
    assert blocks, f"{page} has no python code"
    monkeypatch.chdir(tmp_path)
    exec(compile("\n".join(blocks), page, "exec"), {"__name__": "__docs__"})
