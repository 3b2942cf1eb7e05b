"""hyperoptax inside Optuna against Optuna's own samplers: regret and seconds per trial.

    python benchmarks/optuna_sampler.py                      # 100 and 500 trials, Hartmann-6
    python benchmarks/optuna_sampler.py --trials 100 --seeds 3 --problem hpo_cat8
    python benchmarks/optuna_sampler.py --quick              # smoke run (in the test suite)
    python benchmarks/optuna_sampler.py --processes 2 --trials 100 --seeds 5 \
        --eval-seconds 0.2                                   # two workers on one storage

Each run is one Optuna study on a problem of the robustness suite (`suite.py`) through
`robust.run_optuna`, with `HyperoptaxSampler(seed=s)` (recommended settings),
`GPSampler(seed=s, deterministic_objective=...)` or `TPESampler(seed=s)`. Reported: the
final regret of the best trial and the wall time per trial, compilation included (a
fresh sampler per run; hyperoptax compiles once per process, so its first run pays it:
the script runs one untimed 30-trial study first). The whole suite's comparison is
`robust.py run --contestants hx-in-optuna`.

With `--processes P` each study lives in a journal file that P worker processes share
(`optuna.storages.JournalStorage`), each running `trials / P` trials with its own
sampler (seeded `P * seed + i`); the wall time is the whole study's, the workers' start
and compilation included. `--eval-seconds` adds that much sleep to every evaluation, for
objectives that take time (where concurrent workers pay off).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import robust
from suite import PROBLEMS

SAMPLERS = {"hyperoptax": robust.IN_OPTUNA, "optuna-gp": "optuna-gp", "optuna-tpe": "optuna-tpe"}


def _slow(objective, seconds):
    def slow(trial):
        if seconds:
            time.sleep(seconds)
        return objective(trial)

    return slow


def worker(journal, sampler, problem, seed, n_trials, eval_seconds):
    """One process of a shared study: `n_trials` trials on the study in `journal`."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    problem_ = PROBLEMS[problem]
    study = optuna.load_study(
        study_name="shared",
        storage=JournalStorage(JournalFileBackend(journal)),
        sampler=robust.optuna_sampler(SAMPLERS[sampler], problem_, seed),
    )
    objective, _ = robust.optuna_objective(problem_, seed)
    study.optimize(_slow(objective, eval_seconds), n_trials=n_trials)


def shared_study(sampler, problem, seed, n_trials, processes, eval_seconds):
    """The best value of a study that `processes` workers share through a journal file."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    with tempfile.TemporaryDirectory() as tmp:
        journal = str(Path(tmp) / "study.log")
        storage = JournalStorage(JournalFileBackend(journal))
        optuna.create_study(study_name="shared", storage=storage, direction="minimize")
        per = n_trials // processes
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    journal,
                    sampler,
                    problem,
                    str(processes * seed + i),
                    str(per),
                    str(eval_seconds),
                ]
            )
            for i in range(processes)
        ]
        if any(p.wait() for p in procs):
            raise RuntimeError("a worker process failed")
        study = optuna.load_study(study_name="shared", storage=storage)
        values = [t.value for t in study.trials if t.value is not None]
        return np.asarray(values)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problem", default="hartmann6")
    ap.add_argument("--trials", type=int, nargs="*", default=[100, 500])
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--samplers", nargs="*", default=list(SAMPLERS))
    ap.add_argument("--quick", action="store_true", help="Branin, 6 trials, hyperoptax only")
    ap.add_argument("--out", help="append one JSON row per run to this file")
    ap.add_argument("--processes", type=int, default=1, help="workers sharing one storage")
    ap.add_argument("--eval-seconds", type=float, default=0.0, help="sleep per evaluation")
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--worker":
        journal, sampler, problem, seed, n, secs = sys.argv[2:]
        return worker(journal, sampler, problem, int(seed), int(n), float(secs))
    args = ap.parse_args(argv)
    if args.quick:
        args.problem, args.trials, args.samplers = "branin", [6], ["hyperoptax"]
    problem = PROBLEMS[args.problem]
    if "hyperoptax" in args.samplers and args.processes == 1:  # compile outside the timing
        robust.run_optuna(robust.IN_OPTUNA, problem, 999, min(30, max(args.trials)))
    rows = []
    for n in args.trials:
        for name in args.samplers:
            for seed in range(args.seeds):
                t = time.perf_counter()
                if args.processes == 1:
                    objective, ys = robust.optuna_objective(problem, seed)
                    study = optuna.create_study(
                        sampler=robust.optuna_sampler(SAMPLERS[name], problem, seed)
                    )
                    study.optimize(_slow(objective, args.eval_seconds), n_trials=n)
                else:
                    ys = shared_study(
                        name, args.problem, seed, n, args.processes, args.eval_seconds
                    )
                wall = time.perf_counter() - t
                row = dict(
                    problem=args.problem,
                    sampler=name,
                    trials=n,
                    seed=seed,
                    regret=float(np.nanmin(ys) - problem.optimum),
                    s_per_trial=wall / n,
                    processes=args.processes,
                    eval_seconds=args.eval_seconds,
                    wall=wall,
                )
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.out:
                    with open(args.out, "a") as fh:
                        fh.write(json.dumps(row) + "\n")
    print(f"\n{args.processes} process(es), {args.eval_seconds} s per evaluation")
    print(f"{'sampler':<12}{'trials':>8}{'regret (median)':>18}{'s/trial (median)':>18}")
    for n in args.trials:
        for name in args.samplers:
            r = [x for x in rows if x["sampler"] == name and x["trials"] == n]
            print(
                f"{name:<12}{n:>8}{np.median([x['regret'] for x in r]):>18.3g}"
                f"{np.median([x['s_per_trial'] for x in r]):>18.4f}"
            )
    return rows


if __name__ == "__main__":
    main()
