"""Tune an Equinox MLP on scikit-learn's handwritten digits with `BayesianSearch`.

Run it with `python -m hyperoptax.demo` (needs scikit-learn: `pip install
"hyperoptax[demo]"`). It searches the learning rate, weight decay, hidden width and
dropout of a one-hidden-layer MLP; each configuration is trained for 100 full-batch
AdamW steps and scored by its validation error. The `n_parallel` configurations of a
batch train at once, as one `vmap`ped XLA program. At the end it writes plots of the
search (`hyperoptax.plot`) into `hyperoptax-demo-figures/` (`--figures`).

Two things cannot vary inside one compiled batch: array shapes and loop lengths. So the
network is built at the largest width and the units beyond `width` are masked to zero,
and every configuration trains for the same number of steps (a tunable epoch count
would be a step mask: updates after the last epoch become no-ops). A budget of steps
shared by the whole batch can vary (`budget_steps`, a multi-fidelity objective): the
steps beyond it are skipped.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from .bayesian import BayesianSearch, recommended
from .spaces import LinearSpace, LogSpace, QLogSpace, to_configs

__all__ = ["MAX_WIDTH", "SPACE", "load_digits_split", "mlp_validation_error", "main"]

MAX_WIDTH = 128

SPACE = {
    "lr": LogSpace(1e-4, 1.0),
    "weight_decay": LogSpace(1e-6, 1e-1),
    "width": QLogSpace(4, MAX_WIDTH),
    "dropout": LinearSpace(0.0, 0.8),
}


@functools.lru_cache(maxsize=1)
def load_digits_split(n_train: int = 1200):
    """scikit-learn's 8x8 digits, shuffled with a fixed seed, scaled to [0, 1].

    Returns NumPy arrays `(X_train, y_train, X_val, y_val)`: 1200 training and 597
    validation images of 64 pixels.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError(
            "The digits demo needs scikit-learn: pip install 'hyperoptax[demo]'."
        ) from None
    X, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(X))
    X, y = (X[order] / 16.0).astype(np.float32), y[order]
    # NumPy, not jnp: the first call may happen under a trace, and the cache outlives it.
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def mlp_validation_error(
    key: PRNGKeyArray | None,
    params: dict,
    steps: int = 100,
    budget_steps: Int[ArrayLike, ""] | None = None,
    every: int | None = None,
) -> Float[Array, "*curve"]:
    """Validation error of a one-hidden-layer MLP trained with `params`.

    `params` holds scalars `lr`, `weight_decay`, `width` and `dropout` (one
    configuration from `SPACE`). The weights and dropout masks come from a fixed key
    (`key` is not used), so the objective is deterministic and configurations are
    compared on the same footing. Traceable: `vmap` it to train a batch at once.

    `budget_steps` (an integer, traced or not; at most `steps`) trains only the first
    `budget_steps` of the `steps` AdamW steps, with the dropout masks of the full run:
    a multi-fidelity objective whose budget is the number of steps. `every` returns
    the learning curve instead: the validation errors after every `every` steps (shape
    `(steps // every,)`), each equal to what `budget_steps` at that step gives.
    """
    Xtr, ytr, Xva, yva = load_digits_split()
    k_init, k_drop = jax.random.split(jax.random.PRNGKey(0))
    model = eqx.nn.MLP(64, 10, MAX_WIDTH, depth=1, activation=jax.nn.relu, key=k_init)
    units = (jnp.arange(MAX_WIDTH) < params["width"]).astype(jnp.float32)
    keep = 1.0 - params["dropout"]

    def forward(m, X, drop_key=None):
        h = jax.nn.relu(jax.vmap(m.layers[0])(X)) * units[None, :]
        if drop_key is not None:
            h = h * jax.random.bernoulli(drop_key, keep, h.shape) / keep
        return jax.vmap(m.layers[1])(h)

    def loss(m, k):
        logits = forward(m, Xtr, k)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), ytr[:, None], axis=1))

    adamw = optax.adamw(params["lr"], weight_decay=params["weight_decay"])
    weights, static = eqx.partition(model, eqx.is_array)

    def train(carry, k):
        weights, state = carry
        grads = jax.grad(lambda w: loss(eqx.combine(w, static), k))(weights)
        updates, state = adamw.update(grads, state, weights)
        return optax.apply_updates(weights, updates), state

    def error(weights):
        pred = jnp.argmax(forward(eqx.combine(weights, static), Xva), axis=1)
        return jnp.mean(pred != yva).astype(Xva.dtype)

    def step(carry, inputs):
        i, k = inputs
        if budget_steps is None:
            carry = train(carry, k)
        else:  # a shared budget stays a branch under vmap: steps beyond it cost nothing
            carry = jax.lax.cond(i < budget_steps, train, lambda c, _: c, carry, k)
        if every is None:
            return carry, None
        no_error = jnp.zeros((), Xva.dtype)
        return carry, jax.lax.cond((i + 1) % every == 0, error, lambda _: no_error, carry[0])

    init = (weights, adamw.init(weights))
    inputs = (jnp.arange(steps), jax.random.split(k_drop, steps))
    (weights, _), curve = jax.lax.scan(step, init, inputs)
    if every is not None:
        return curve[every - 1 :: every]
    return error(weights)


def _format(config: dict) -> str:
    return (
        f"lr={config['lr']:.2e} weight_decay={config['weight_decay']:.1e} "
        f"width={config['width']:3d} dropout={config['dropout']:.2f}"
    )


def main(argv: list[str] | None = None) -> dict:
    """Run the demo search; returns the best configuration and its validation error."""
    ap = argparse.ArgumentParser(
        prog="python -m hyperoptax.demo", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--evaluations", type=int, default=40, help="total configurations to train")
    ap.add_argument("--parallel", type=int, default=4, help="configurations trained at once")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--figures",
        default="hyperoptax-demo-figures",
        help="folder for the search's plots (PNG; needs matplotlib); '' for none",
    )
    args = ap.parse_args(argv)
    if args.parallel < 1 or args.evaluations < args.parallel:
        ap.error(
            f"--parallel must be at least 1 and --evaluations at least --parallel, got "
            f"--evaluations {args.evaluations} --parallel {args.parallel}."
        )
    whole = args.evaluations - args.evaluations % args.parallel  # whole batches only
    rounded = "" if whole == args.evaluations else f" ({args.evaluations} in whole batches)"
    load_digits_split()
    print(
        f"Tuning an Equinox MLP on scikit-learn's digits: {whole} configurations{rounded}, "
        f"{args.parallel} trained at once, validation error (lower is better).",
        flush=True,
    )
    state, search = BayesianSearch.init(
        SPACE,
        n_max=whole,
        maximize=False,
        **recommended(n_parallel=args.parallel),
    )
    t0, best = time.perf_counter(), [np.inf]

    def report(i, state, params, results):
        for config, err in zip(to_configs(params), np.asarray(results), strict=True):
            mark = " *" if err < best[0] else ""
            best[0] = min(best[0], float(err))
            print(
                f"  [{time.perf_counter() - t0:5.1f} s] {_format(config)} -> error {err:.4f}{mark}",
                flush=True,
            )

    state, _ = search.optimize(
        state, jax.random.PRNGKey(args.seed), mlp_validation_error, callback=report
    )
    # The objective is deterministic (fixed weights and dropout keys): the best observed
    # configuration is the best one known.
    best_config = search.best_params(state, observed=True)
    config = {k: np.asarray(v).item() for k, v in best_config.items()}
    error = float(search.best_result(state, observed=True))
    print(f"Best after {int(state.mask.sum())} configurations ({time.perf_counter() - t0:.1f} s):")
    print(f"  {_format(config)}")
    print(f"  validation error {error:.4f} (accuracy {100 * (1 - error):.1f}%)")
    if args.figures:
        _write_figures(state, search, Path(args.figures))
    return {"config": config, "error": error}


def _write_figures(state, search, folder: Path) -> None:
    try:
        from . import plot
    except ImportError:
        print("(No figures: matplotlib is not installed; pip install 'hyperoptax[plot]'.)")
        return
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("history", "importance", "slices", "contour", "parallel"):
        fig = getattr(plot, name)(state, search)
        fig.savefig(folder / f"{name}.png", dpi=110)
    print(f"Figures of the search (history, importance, slices, contour, parallel): {folder}/")


if __name__ == "__main__":
    main(sys.argv[1:])
