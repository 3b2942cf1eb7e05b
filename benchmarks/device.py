"""One table of what a device gives: many seeds, many observations, a cold start.

    python benchmarks/device.py            # the sizes meant for a GPU (a few minutes there)
    python benchmarks/device.py --quick    # small sizes, a smoke run
    python benchmarks/device.py --out device.md

Runs on whatever device JAX finds first (a GPU when one is installed, else the CPU),
float32, recommended settings (`n_parallel=1`). Rows, each in a fresh process (so that
"first call" includes tracing and compilation, not JAX's own start-up):

- seeds: `n` 30-evaluation Branin searches under one `filter_vmap` against one after
  another (for large `n` a few are timed one after another and scaled);
- observations: a 6-D state holding `n` observations, the first and the steady-state
  times of `get_next_params` and of `update_state` with one result, and the device's
  peak memory where JAX reports it;
- cold start: a whole 50-evaluation Branin `optimize`, compilation included.

The figures of issue 25 (`benchmarks/RESULTS.md`, "Speed on other devices") come from it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import speed  # noqa: E402


def _in_fresh_process(call: str) -> dict | None:
    """`speed.<call>` in a new interpreter; None (and the error printed) if it fails, so
    that one failing row does not cost the others on a short lease."""
    try:
        return speed._in_fresh_process(call)
    except RuntimeError as e:
        print(f"{call} failed:\n{e}", file=sys.stderr, flush=True)
        return None


SIZES = {
    "full": dict(seeds=[1, 64, 1024], observations=[1000, 5000, 10000]),
    "quick": dict(seeds=[1, 4], observations=[50, 200]),
}


def _device() -> str:
    import jax

    d = jax.devices()[0]
    return f"{d.platform}: {getattr(d, 'device_kind', d)} (jax {jax.__version__})"


def _mib(b) -> str:
    return "-" if b is None else f"{b / 2**20:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", help="also write the table (Markdown) to this file")
    args = ap.parse_args()
    sizes = SIZES["quick" if args.quick else "full"]
    lines: list[str] = []

    def emit(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    start = time.perf_counter()
    emit(f"device: {_device()}")
    emit()
    budget = 8 if args.quick else 30
    emit(
        f"| seeds (Branin, {budget} evaluations) | together, filter_vmap (s) "
        "| one after another (s) | speed-up | first vmapped call incl. compile (s) "
        "| peak memory (MiB) |"
    )
    emit("|---|---|---|---|---|---|")
    for n in sizes["seeds"]:
        r = _in_fresh_process(f"seeds({n}, {budget}, n_sequential={min(n, 16)})")
        if r is None:
            emit(f"| {n} | failed | | | | |")
            continue
        emit(
            f"| {n} | {r['vmapped']:.3f} | {r['sequential']:.3f} | "
            f"{r['sequential'] / r['vmapped']:.1f}x | {r['first_vmapped']:.1f} | "
            f"{_mib(r['peak_bytes'])} |"
        )
    emit()
    emit(
        "| observations (6-D) | first suggest (s) | first update (s) | suggest (ms) "
        "| update (ms) | peak memory (MiB) |"
    )
    emit("|---|---|---|---|---|---|")
    for n in sizes["observations"]:
        r = _in_fresh_process(f"latency(6, {n}, 'recommended', reps={3 if n >= 5000 else 10})")
        if r is None:
            emit(f"| {n} | failed | | | | |")
            continue
        emit(
            f"| {n} | {r['first_suggest']:.2f} | {r['first_update']:.2f} | "
            f"{r['suggest'] * 1e3:.1f} | {r['update'] * 1e3:.1f} | {_mib(r['peak_bytes'])} |"
        )
    emit()
    r = _in_fresh_process("branin_total('recommended')")
    total = "failed" if r is None else f"{r['total']:.1f} s"
    emit(f"cold start, 50-evaluation Branin `optimize` incl. compilation: {total}")
    emit(f"(whole script {time.perf_counter() - start:.0f} s)")
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
