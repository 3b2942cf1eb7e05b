"""`python -m hyperoptax.plot search.ckpt --out figures/`: every plot that applies, as PNG.

The checkpoint is one written by `save_state` or by a checkpointed `optimize` /
`optimize_host`. History and parallel coordinates need observations (a Bayesian or
multi-fidelity search's state, or the history a running search's checkpoint keeps); importance,
slices and contour need the Bayesian search's optimizer, saved with the state.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..checkpoint import rebuild_search
from . import contour, history, importance, parallel, slices


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hyperoptax.plot",
        description="Write every plot that applies to a saved search as PNG files.",
    )
    parser.add_argument("checkpoint", type=Path, help="a file from save_state or optimize")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for the PNG files")
    parser.add_argument("--dpi", type=int, default=120)
    direction = parser.add_mutually_exclusive_group()
    direction.add_argument(
        "--minimize",
        dest="maximize",
        action="store_false",
        default=None,
        help="smaller results are better (when the file does not say)",
    )
    direction.add_argument(
        "--maximize",
        dest="maximize",
        action="store_true",
        default=None,
        help="larger results are better (when the file does not say)",
    )
    args = parser.parse_args(argv)

    try:
        state, optimizer, evaluations = rebuild_search(args.checkpoint)
    except (OSError, ValueError) as e:
        print(f"hyperoptax.plot: {e}", file=sys.stderr)
        return 2
    if args.maximize is None and getattr(optimizer, "maximize", None) is None:
        print(
            "hyperoptax.plot: the file does not say whether larger results are better; "
            "plotting as if they were (pass --minimize otherwise).",
            file=sys.stderr,
        )
    maximize = args.maximize if args.maximize is not None else None
    has_observations = evaluations is not None or hasattr(state, "y")
    plots = {}
    if has_observations:
        kwargs = dict(evaluations=evaluations, maximize=maximize)
        plots["history"] = lambda: history(state, optimizer, **kwargs)
        plots["parallel"] = lambda: parallel(state, optimizer, **kwargs)
    model = optimizer is not None and hasattr(state, "log_length_scale")
    if model:
        plots["importance"] = lambda: importance(state, optimizer)
        plots["slices"] = lambda: slices(state, optimizer)
        if len(state.log_length_scale) >= 2:
            plots["contour"] = lambda: contour(state, optimizer)
    if not plots:
        print(f"hyperoptax.plot: {args.checkpoint} holds nothing to plot.", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for name, make in plots.items():
        try:
            fig = make()
        except ValueError as e:  # e.g. the model has fewer than two results
            print(f"hyperoptax.plot: no {name} plot: {e}", file=sys.stderr)
            continue
        path = args.out / f"{name}.png"
        fig.savefig(path, dpi=args.dpi)
        print(path)
    if not model and hasattr(state, "log_length_scale"):
        print(
            "hyperoptax.plot: no model plots (they need the Bayesian search's optimizer, "
            "saved with the state: save_state(path, state, optimizer)).",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
