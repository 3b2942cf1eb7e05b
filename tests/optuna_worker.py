"""One of several processes sharing an Optuna study through a journal file (test_optuna.py).

usage: python optuna_worker.py JOURNAL SEED N_TRIALS
"""

import sys

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from hyperoptax.integrations.optuna import HyperoptaxSampler

SETTINGS = dict(n_candidates=64, n_restarts=2, n_lbfgs_steps=5, n_warmup=4)


def objective(trial):
    x = trial.suggest_float("x", 0.0, 1.0)
    k = trial.suggest_int("k", 1, 9)
    return (x - 0.3) ** 2 + 0.01 * (k - 4) ** 2


if __name__ == "__main__":
    journal, seed, n_trials = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(journal))
    study = optuna.load_study(
        study_name="shared", storage=storage, sampler=HyperoptaxSampler(seed=seed, **SETTINGS)
    )
    study.optimize(objective, n_trials=n_trials)
