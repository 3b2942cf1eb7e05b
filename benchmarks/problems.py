"""Benchmark problems: (space, objective to minimise, optimum value, evaluation budget).

`mlp_digits` has no known optimum: its "regret" is the validation error itself.
"""

import math

import jax.numpy as jnp
import suite  # the Hartmann-6 constants live there

import hyperoptax as hx
from hyperoptax import demo


def _vec(p, n):
    return jnp.stack([p[f"x{i}"] for i in range(n)])


def branin(key, p):
    x1, x2 = p["x0"], p["x1"]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * jnp.cos(x1) + 10


def hartmann6(key, p):
    return suite.hartmann6(_vec(p, 6))


def ackley5(key, p):
    x = _vec(p, 5)
    return (
        -20 * jnp.exp(-0.2 * jnp.sqrt(jnp.mean(x**2)))
        - jnp.exp(jnp.mean(jnp.cos(2 * math.pi * x)))
        + 20
        + math.e
    )


def rosenbrock4(key, p):
    x = _vec(p, 4)
    return jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def mixed(key, p):
    # HPO-shaped: log learning rate, integer layers, log-integer width, linear dropout.
    return (
        (jnp.log10(p["lr"]) + 2.5) ** 2
        + 0.3 * (p["layers"] - 3) ** 2
        + 0.5 * (jnp.log2(p["width"]) - 7) ** 2
        + 4 * (p["dropout"] - 0.2) ** 2
    )


def _box(n, lo, hi):
    return {f"x{i}": hx.LinearSpace(lo, hi) for i in range(n)}


PROBLEMS = {
    "branin": (
        {"x0": hx.LinearSpace(-5.0, 10.0), "x1": hx.LinearSpace(0.0, 15.0)},
        branin,
        5.0 / (4.0 * math.pi),  # 0.39788735772973816
        50,
    ),
    "hartmann6": (_box(6, 0.0, 1.0), hartmann6, -3.322368011415515, 100),
    "ackley5": (_box(5, -5.0, 5.0), ackley5, 0.0, 100),
    "rosenbrock4": (_box(4, -2.0, 2.0), rosenbrock4, 0.0, 100),
    "mixed": (
        {
            "lr": hx.LogSpace(1e-5, 1e-1),
            "layers": hx.QLinearSpace(1, 6),
            "width": hx.QLogSpace(8, 1024),
            "dropout": hx.LinearSpace(0.0, 0.5),
        },
        mixed,
        0.0,
        60,
    ),
}


# -- a real task: an Equinox MLP on scikit-learn's digits, scored by validation error ----
# The objective is the one `python -m hyperoptax.demo` tunes: 100 full-batch AdamW steps,
# width masked at up to 128 units, fixed weights/dropout key (deterministic).

mlp_digits = demo.mlp_validation_error

PROBLEMS["mlp_digits"] = (
    demo.SPACE,
    mlp_digits,
    0.0,
    40,
)
