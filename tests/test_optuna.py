"""hyperoptax's Bayesian search as an Optuna sampler (hyperoptax.integrations.optuna)."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from optuna_worker import SETTINGS, objective

import hyperoptax as hx
from hyperoptax.integrations.optuna import HyperoptaxSampler, to_space

HERE = Path(__file__).parent
optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_distributions_map_to_spaces():
    assert to_space(FloatDistribution(0.0, 2.0)) == hx.LinearSpace(0.0, 2.0)
    assert to_space(FloatDistribution(1e-4, 1.0, log=True)) == hx.LogSpace(1e-4, 1.0)
    assert to_space(FloatDistribution(0.0, 1.0, step=0.25)).values == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert to_space(IntDistribution(1, 9)) == hx.QLinearSpace(1, 9)
    assert to_space(IntDistribution(1, 1024, log=True)) == hx.QLogSpace(1, 1024)
    assert to_space(IntDistribution(0, 10, step=5)).values == (0, 5, 10)
    assert to_space(CategoricalDistribution(("a", None, 3))).choices == ("a", None, 3)


def test_settings_are_checked_when_the_sampler_is_made():
    with pytest.raises(ValueError, match="n_parallel"):
        HyperoptaxSampler(n_parallel=4)
    with pytest.raises(ValueError, match="direction"):
        HyperoptaxSampler(maximize=True)
    with pytest.raises(ValueError, match="n_candidates"):
        HyperoptaxSampler(n_candidates=0)


def mixed(trial):
    x = trial.suggest_float("x", -2.0, 2.0)
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    q = trial.suggest_float("q", 0.0, 1.0, step=0.1)
    n = trial.suggest_int("n", 1, 8)
    act = trial.suggest_categorical("act", ["relu", "tanh", None])
    if act is None:
        raise RuntimeError("no activation")  # a failed trial
    return (
        (x - 0.5) ** 2
        + (math.log10(lr) + 3) ** 2
        + (q - 0.7) ** 2
        + 0.1 * (n - 3) ** 2
        + (0.0 if act == "tanh" else 1.0)
    )


@pytest.fixture(scope="module")
def mixed_study():
    study = optuna.create_study(sampler=HyperoptaxSampler(seed=0, **SETTINGS))
    study.optimize(mixed, n_trials=30, catch=(RuntimeError,))
    return study


def test_study_values_are_of_their_distributions_and_it_beats_random(mixed_study):
    for t in mixed_study.trials:
        p = t.params
        assert type(p["x"]) is float and -2.0 <= p["x"] <= 2.0
        assert type(p["lr"]) is float and 1e-5 <= p["lr"] <= 1e-1
        assert p["q"] in {round(0.1 * i, 10) for i in range(11)} or np.isclose(
            p["q"], np.round(p["q"], 1)
        )
        assert type(p["n"]) is int and 1 <= p["n"] <= 8
        assert p["act"] in ("relu", "tanh", None)
    random = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    random.optimize(mixed, n_trials=30, catch=(RuntimeError,))
    assert mixed_study.best_value < random.best_value
    assert mixed_study.best_value < 0.2  # the optimum is 0


def test_failed_trials_are_recorded_as_failures(mixed_study):
    sampler = mixed_study.sampler
    state = sampler._model.state
    failed = [t for t in mixed_study.trials if t.state == TrialState.FAIL]
    done = [t for t in mixed_study.trials if t.state == TrialState.COMPLETE]
    assert failed, "the objective fails for act=None"
    # Every trial but the last (recorded when the next one is sampled) is in the model.
    n = int(state.mask.sum())
    assert n == len(failed) + len(done) - 1
    assert int(np.isnan(np.asarray(state.y)[:n]).sum()) >= len(failed) - 1


def test_running_trials_are_pending():
    # Two studies with the same five results and a running trial each; in one the running
    # trial has its configuration (pending), in the other it has none yet. The next
    # trial (same number, so the same key and data) differs only by the pending one,
    # and keeps away from it.
    def quadratic(t):
        return (t.suggest_float("x", 0.0, 1.0) - 0.3) ** 2

    with_pending = optuna.create_study(sampler=HyperoptaxSampler(seed=0, **SETTINGS))
    with_pending.optimize(quadratic, n_trials=5)
    without = optuna.create_study(sampler=HyperoptaxSampler(seed=0, **SETTINGS))
    without.add_trials(with_pending.trials)
    x1 = with_pending.ask().suggest_float("x", 0.0, 1.0)
    without.ask()  # running, no parameters yet
    xa = with_pending.ask().suggest_float("x", 0.0, 1.0)
    xb = without.ask().suggest_float("x", 0.0, 1.0)
    assert abs(xa - xb) > 1e-3, (x1, xa, xb)
    assert abs(xa - x1) > abs(xb - x1), (x1, xa, xb)


def test_two_processes_share_one_storage(tmp_path):
    journal = str(tmp_path / "study.log")
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(journal))
    optuna.create_study(study_name="shared", storage=storage)
    env = dict(os.environ, PYTHONPATH=str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE / "optuna_worker.py"), journal, str(s), "8"], env=env
        )
        for s in (0, 1)
    ]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    study = optuna.load_study(study_name="shared", storage=storage)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 16
    # No check that the 16 configurations are distinct: a trial is pending for the other
    # process only once its parameters are in the storage, so two suggestions computed at
    # the same moment cannot see each other and may coincide (this happened: the corner
    # x=0, k=9 twice). Keeping away from running trials is tested in one process, with
    # the timing fixed (test_running_trials_are_pending).
    assert study.best_value < 0.01  # found together: the optimum is 0 at x=0.3, k=4
    assert study.best_value == min(objective(optuna.trial.FixedTrial(t.params)) for t in trials)
