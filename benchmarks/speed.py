"""Latency, compile time and scaling of BayesianSearch (float32, n_parallel=1 unless stated).

    python benchmarks/speed.py                       # every table (about 10 minutes)
    python benchmarks/speed.py --only latency        # one table: latency, observations,
                                                     #   batches, parameters, seeds, branin,
                                                     #   checkpoint, report
    python benchmarks/speed.py --quick               # small sizes, a smoke run
    python benchmarks/speed.py --only branin --xla-defaults   # the library's programs
                                                     #   built with XLA's default emitters

Each configuration runs in a fresh process, so "first call" includes tracing and XLA
compilation but not JAX's own start-up (importing jax, creating the CPU client).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

RECOMMENDED = "hx.recommended(n_parallel=1)"
CONFIGS = {
    "recommended": RECOMMENDED,
    "Matern2.5+EI": "dict(kernel=hx.Matern(nu=2.5), acquisition=hx.EI())",
    "defaults": "dict()",
}


def _block(x):
    import jax

    return jax.block_until_ready(x)


def filled_state(d, n_obs, n_max, mixed=False, **kw):
    """A state holding `n_obs` observations: of `sum(sin(5 x))` on `[0, 1]^d`, or with
    `mixed` of the suite's 12-parameter HPO-shaped problem (log, integer, linear)."""
    import jax
    import jax.numpy as jnp

    import hyperoptax as hx
    from hyperoptax.spaces import flatten_space

    if mixed:
        from suite import HPO_TRAIN12_SPACE, hpo_train12

        space = HPO_TRAIN12_SPACE
        rs, ropt = hx.RandomSearch.init(space, n_parallel=n_obs)
        params = ropt.get_next_params(rs, jax.random.PRNGKey(1))
        X, y = flatten_space(space).flatten(params), jax.vmap(hpo_train12)(params)
    else:
        space = {f"x{i}": hx.LinearSpace(0.0, 1.0) for i in range(d)}
        X = jax.random.uniform(jax.random.PRNGKey(1), (n_obs, d))
        y = jnp.sum(jnp.sin(5 * X), axis=1)
    state, opt = hx.BayesianSearch.init(space, n_max=n_max, **kw)
    state = state.__class__(
        state.space,
        state.X.at[:n_obs].set(X),
        state.y.at[:n_obs].set(y),
        state.mask.at[:n_obs].set(True),
        state.log_length_scale,
    )
    return state, opt


def timed(fn, reps):
    import numpy as np

    _block(fn())
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        _block(fn())
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def latency(d, n_obs, config, reps=20, mixed=False):
    """First (compile) and steady-state times of get_next_params and update_state."""
    import jax
    import jax.numpy as jnp

    import hyperoptax as hx

    kw = eval(CONFIGS[config], {"hx": hx})
    state, opt = filled_state(d, n_obs, n_obs + 1, mixed=mixed, **{**kw, "n_parallel": 1})
    key = jax.random.PRNGKey(0)
    t = time.perf_counter()
    params = _block(opt.get_next_params(state, key))
    first = time.perf_counter() - t
    res = jnp.zeros(1)
    t = time.perf_counter()
    _block(opt.update_state(state, key, res, params))
    first_u = time.perf_counter() - t
    g = timed(lambda: opt.get_next_params(state, key), reps)
    u = timed(lambda: opt.update_state(state, key, res, params), max(3, reps // 4))
    return dict(
        first_suggest=first,
        first_update=first_u,
        suggest=g,
        update=u,
        peak_bytes=peak_bytes(),
        peak_rss=peak_rss(),
    )


def batch_latency(n_obs, n_parallel, reps=5):
    """Steady time of one `get_next_params` batch of `n_parallel` (6-D, recommended
    settings for that batch size, `n_obs` observations): the Kriging Believer's picks."""
    import jax

    import hyperoptax as hx

    kw = hx.recommended(n_parallel=n_parallel)
    state, opt = filled_state(6, n_obs, n_obs + n_parallel, **kw)
    key = jax.random.PRNGKey(0)
    t = time.perf_counter()
    _block(opt.get_next_params(state, key))
    first = time.perf_counter() - t
    return dict(first=first, suggest=timed(lambda: opt.get_next_params(state, key), reps))


def report_cost(d, n_obs, config, reps=5):
    """First (compile) and steady times of `best_params` on a state of `n_obs`
    observations: it refits two models each call (see `BayesianSearch.best_params`);
    and of `best_params(state, observed=True)`, which fits none (timed first)."""
    import hyperoptax as hx

    kw = eval(CONFIGS[config], {"hx": hx})
    state, opt = filled_state(d, n_obs, n_obs, **{**kw, "n_parallel": 1})
    out = {}
    for name, observed in (("observed", True), ("model", False)):
        t = time.perf_counter()
        _block(opt.best_params(state, observed=observed))
        out[f"first_{name}"] = time.perf_counter() - t
        out[f"steady_{name}"] = timed(lambda o=observed: opt.best_params(state, observed=o), reps)
    return dict(first=out["first_model"], steady=out["steady_model"], **out)


def peak_rss():
    """This process's peak resident memory in bytes (compilation included): what the CPU
    reports where JAX's device statistics do not."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_bytes():
    """The device's peak memory in use so far (None where JAX does not report it: CPU)."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def seeds(n_seeds, budget=30, n_sequential=None, config="recommended"):
    """n_seeds Branin searches: together under filter_vmap vs one after another.

    `n_sequential` (default all) searches are timed one after another and the time
    scaled to `n_seeds`, for counts too large to run one by one.
    """
    import equinox as eqx
    import jax
    from problems import PROBLEMS

    import hyperoptax as hx

    space, f, _, _ = PROBLEMS["branin"]
    kw = eval(CONFIGS[config], {"hx": hx})
    state, opt = hx.BayesianSearch.init(
        space, n_max=budget, maximize=False, **{**kw, "n_parallel": 1}
    )
    keys = jax.random.split(jax.random.PRNGKey(0), n_seeds)
    together = eqx.filter_jit(eqx.filter_vmap(lambda k: opt.optimize_scan(state, k, f)[1][1]))
    one = eqx.filter_jit(lambda k: opt.optimize_scan(state, k, f)[1][1])
    t = time.perf_counter()
    _block(together(keys))
    first_v = time.perf_counter() - t
    t = time.perf_counter()
    _block(together(keys))
    vmapped = time.perf_counter() - t
    _block(one(keys[0]))
    m = n_seeds if n_sequential is None else min(n_sequential, n_seeds)
    t = time.perf_counter()
    for k in keys[:m]:
        _block(one(k))
    sequential = (time.perf_counter() - t) * n_seeds / m
    return dict(
        first_vmapped=first_v, vmapped=vmapped, sequential=sequential, peak_bytes=peak_bytes()
    )


def branin_total(config):
    """A whole 50-evaluation Branin `optimize`, compile included."""
    import jax
    from problems import PROBLEMS

    import hyperoptax as hx

    space, f, _, n = PROBLEMS["branin"]
    kw = eval(CONFIGS[config], {"hx": hx})
    t = time.perf_counter()
    state, opt = hx.BayesianSearch.init(space, n_max=n, maximize=False, **{**kw, "n_parallel": 1})
    state, _ = opt.optimize(state, jax.random.PRNGKey(0), f)
    _block(state.y)
    return dict(total=time.perf_counter() - t)


def gpsampler_total(n=50):
    """Optuna's GPSampler on the same 50-evaluation Branin (it has no compilation to
    cache: it pays its start-up in every process). Imports are not timed."""
    import math

    import optuna
    import torch  # noqa: F401  (imported before the clock, as JAX is for our runs)

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial):
        x1, x2 = trial.suggest_float("x1", -5.0, 10.0), trial.suggest_float("x2", 0.0, 15.0)
        b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
        return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10

    t = time.perf_counter()
    sampler = optuna.samplers.GPSampler(seed=0, deterministic_objective=True)
    optuna.create_study(sampler=sampler).optimize(objective, n_trials=n)
    return dict(total=time.perf_counter() - t)


def checkpoint_cost(n_iterations, n_max=1000):
    """What checkpointing costs: per iteration of a host search (its state and whole
    history saved after every iteration), and per `save_state` of a full 12-parameter
    Bayesian state."""
    import os

    import jax
    import numpy as np

    import hyperoptax as hx

    space = {f"x{i}": hx.LinearSpace(0.0, 1.0) for i in range(6)}
    state, opt = hx.RandomSearch.init(space, n_parallel=1)
    key = jax.random.PRNGKey(0)
    with tempfile.TemporaryDirectory() as tmp:

        def run(checkpoint):
            t = time.perf_counter()
            opt.optimize_host(state, key, lambda c: c["x0"], n_iterations, checkpoint=checkpoint)
            return time.perf_counter() - t

        run(None)
        plain = min(run(None) for _ in range(3))
        saved = []
        for i in range(3):
            saved.append(run(os.path.join(tmp, f"run{i}.ckpt")))
        per_iteration = (min(saved) - plain) / n_iterations
        full, bopt = filled_state(12, n_max, n_max, mixed=True, n_parallel=1)
        path = os.path.join(tmp, "state.ckpt")
        hx.save_state(path, full, bopt)
        ts = []
        for _ in range(20):
            t = time.perf_counter()
            hx.save_state(path, full, bopt)
            ts.append(time.perf_counter() - t)
        ls = []
        for _ in range(20):
            t = time.perf_counter()
            hx.load_state(path, full, bopt)
            ls.append(time.perf_counter() - t)
    return dict(per_iteration=per_iteration, save=float(np.median(ts)), load=float(np.median(ls)))


XLA_DEFAULTS = False


def _in_fresh_process(call: str, cache_dir: str | None = None) -> dict:
    """Run `speed.<call>` in a new interpreter; `cache_dir` turns on JAX's persistent
    compilation cache there (see docs/howto/startup.md)."""
    cache = ""
    if cache_dir:
        cache = (
            f"jax.config.update('jax_compilation_cache_dir', {cache_dir!r}); "
            f"jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0); "
        )
    if XLA_DEFAULTS:  # the library's programs built with XLA's default CPU emitters
        cache += "import hyperoptax._jit; hyperoptax._jit.CPU_COMPILER_OPTIONS.clear(); "
    code = (
        f"import sys, json; sys.path.insert(0, {str(HERE)!r}); import speed; "
        f"import jax; {cache}jax.numpy.zeros(1).block_until_ready(); "
        f"print('RESULT', json.dumps(speed.{call}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(out.stderr[-3000:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--only",
        choices=[
            "latency",
            "observations",
            "batches",
            "parameters",
            "seeds",
            "branin",
            "checkpoint",
            "report",
        ],
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--seeds-config",
        choices=list(CONFIGS),
        default="recommended",
        help="the settings of the `seeds` section's searches",
    )
    ap.add_argument(
        "--xla-defaults",
        action="store_true",
        help="build the library's programs with XLA's default CPU fusion emitters "
        "(hyperoptax/_jit.py) instead of the older ones it asks for",
    )
    args = ap.parse_args()
    global XLA_DEFAULTS
    XLA_DEFAULTS = args.xla_defaults

    def want(section):
        return args.only in (None, section)

    ms = 1e3

    def latency_table(title, rows):
        """One latency table: `rows` is [(first cells, call in a fresh process)]."""
        print(
            f"\n| {title} | first suggest (s) | first update (s) | suggest (ms) | update (ms) "
            "| peak RSS (MiB) |"
        )
        print("|---" * (len(title.split(" | ")) + 5) + "|")
        for cells, call in rows:
            r = _in_fresh_process(call)
            print(
                f"| {cells} | {r['first_suggest']:.2f} | {r['first_update']:.2f} | "
                f"{r['suggest'] * ms:.1f} | {r['update'] * ms:.1f} | "
                f"{r['peak_rss'] / 2**20:.0f} |",
                flush=True,
            )

    n_obs = 20 if args.quick else 100
    if want("latency"):
        latency_table(
            "config | d | observations",
            [(f"{c} | 6 | {n_obs}", f"latency(6, {n_obs}, {c!r})") for c in CONFIGS]
            + [
                (
                    f"recommended | 12 mixed | {n_obs}",
                    f"latency(12, {n_obs}, 'recommended', mixed=True)",
                )
            ],
        )
    if want("observations"):
        latency_table(
            "observations (6-D, recommended)",
            [
                (f"{n}", f"latency(6, {n}, 'recommended', reps={5 if n >= 1000 else 20})")
                for n in ([20, 50] if args.quick else [50, 200, 300, 1000, 5000])
            ],
        )
    if want("batches"):
        print(
            "\n| observations | batch (`n_parallel`) | first batch (s) | batch (ms) "
            "| per pick (ms) |"
        )
        print("|---|---|---|---|---|")
        sizes = [(20, 4)] if args.quick else [(100, 4), (300, 27), (1000, 4), (1000, 16)]
        for n, b in sizes:
            r = _in_fresh_process(f"batch_latency({n}, {b})")
            print(
                f"| {n} | {b} | {r['first']:.2f} | {r['suggest'] * ms:.1f} | "
                f"{r['suggest'] * ms / b:.1f} |",
                flush=True,
            )
    if want("parameters"):
        latency_table(
            "parameters (100 observations, recommended)",
            [
                (f"{d}", f"latency({d}, {n_obs}, 'recommended', reps=10)")
                for d in ([2, 10] if args.quick else [2, 10, 100, 1000])
            ],
        )
    if want("seeds"):
        print(
            f"\n| seeds (Branin, 30 evaluations, {args.seeds_config}) | together, filter_vmap (s) "
            "| one after another (s) | ratio | first vmapped call incl. compile (s) |"
        )
        print("|---|---|---|---|---|")
        for n in [1, 4] if args.quick else [1, 8, 64, 256]:
            # 256 seeds: the one-after-another time of 64 of them, scaled.
            r = _in_fresh_process(
                f"seeds({n}, {8 if args.quick else 30}, n_sequential={min(n, 64)}, "
                f"config={args.seeds_config!r})"
            )
            print(
                f"| {n} | {r['vmapped']:.2f} | {r['sequential']:.2f} | "
                f"{r['vmapped'] / r['sequential']:.2f} | "
                f"{r['first_vmapped']:.1f} |",
                flush=True,
            )
    if want("checkpoint"):
        n = 20 if args.quick else 200
        r = _in_fresh_process(f"checkpoint_cost({n}, {100 if args.quick else 1000})")
        print(
            f"\n| checkpoint | per iteration of a {n}-iteration host search (ms) "
            f"| save_state, 12 parameters, "
            f"{100 if args.quick else 1000} observations (ms) | load_state (ms) |"
        )
        print("|---|---|---|---|")
        print(
            f"| this checkout | {r['per_iteration'] * ms:.2f} | {r['save'] * ms:.2f} "
            f"| {r['load'] * ms:.2f} |",
            flush=True,
        )
    if want("report"):
        print(
            "\n| config | d | observations | first `best_params` (s) | `best_params` (ms) "
            "| first with `observed=True` (s) | with `observed=True` (ms) |"
        )
        print("|---|---|---|---|---|---|---|")
        for config in ("recommended", "defaults"):
            for n in [20] if args.quick else [100, 1000]:
                r = _in_fresh_process(f"report_cost(6, {n}, {config!r})")
                print(
                    f"| {config} | 6 | {n} | {r['first']:.2f} | {r['steady'] * ms:.0f} "
                    f"| {r['first_observed']:.2f} | {r['steady_observed'] * ms:.2f} |",
                    flush=True,
                )
    if want("branin"):
        print(
            "\n| config | 50-evaluation Branin `optimize`, compile included (s) "
            "| the same with a warm persistent compilation cache (s) |"
        )
        print("|---|---|---|")
        for config in CONFIGS:
            cold = _in_fresh_process(f"branin_total({config!r})")
            with tempfile.TemporaryDirectory() as cache:
                _in_fresh_process(f"branin_total({config!r})", cache)  # fills the cache
                warm = _in_fresh_process(f"branin_total({config!r})", cache)
            print(f"| {config} | {cold['total']:.1f} | {warm['total']:.1f} |", flush=True)
        gp = [_in_fresh_process("gpsampler_total()")["total"] for _ in range(2)]
        print(f"| Optuna GPSampler, two fresh processes | {gp[0]:.1f} | {gp[1]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
