"""hyperoptax's Bayesian search as a Ray Tune searcher (hyperoptax.integrations.ray)."""

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from ray import tune

import hyperoptax as hx
from hyperoptax.integrations.ray import HyperoptaxSearch, to_space

# Small settings: these tests check the plumbing, not the model.
SETTINGS = dict(n_candidates=64, n_restarts=2, n_lbfgs_steps=5, n_warmup=3)
SPACE = {
    "x": tune.uniform(-1.0, 1.0),
    "lr": tune.loguniform(1e-5, 1e-1),
    "model": {"act": tune.choice(["relu", "tanh"]), "depth": tune.randint(1, 6)},
}


def loss(config):
    m = config["model"]
    return (
        (config["x"] - 0.3) ** 2
        + (math.log10(config["lr"]) + 3) ** 2
        + (0.0 if m["act"] == "tanh" else 1.0)
        + 0.1 * abs(m["depth"] - 2)
    )


def test_domains_map_to_spaces():
    assert to_space(tune.uniform(0.0, 2.0)) == hx.LinearSpace(0.0, 2.0)
    assert to_space(tune.loguniform(1e-4, 1.0)) == hx.LogSpace(1e-4, 1.0)
    assert to_space(tune.randint(1, 10)) == hx.QLinearSpace(1, 9)  # Tune's upper is exclusive
    assert to_space(tune.lograndint(1, 1025)) == hx.QLogSpace(1, 1024)
    assert to_space(tune.qrandint(0, 10, 5)).values == (0, 5, 10)  # inclusive with q > 1
    assert to_space(tune.quniform(0.0, 1.0, 0.25)).values == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert to_space(tune.choice(["a", None, 3])).choices == ("a", None, 3)
    with pytest.raises(ValueError, match="Normal"):
        to_space(tune.randn(0.0, 1.0))
    with pytest.raises(ValueError, match="grid search"):
        HyperoptaxSearch({"a": tune.grid_search([1, 2])})


def test_settings_are_checked_when_the_searcher_is_made():
    with pytest.raises(ValueError, match="n_parallel"):
        HyperoptaxSearch(n_parallel=4)
    with pytest.raises(ValueError, match="do not pass `maximize`"):
        HyperoptaxSearch(maximize=True)
    with pytest.raises(ValueError, match="mode"):
        HyperoptaxSearch(mode="minimise")
    with pytest.raises(ValueError, match="n_candidates"):
        HyperoptaxSearch(n_candidates=0)
    with pytest.raises(RuntimeError, match="metric"):
        HyperoptaxSearch(SPACE).suggest("t")


def run(searcher, n, start=0, log=None):
    """`n` trials one at a time, each completed before the next is suggested."""
    log = [] if log is None else log
    for i in range(start, start + n):
        config = searcher.suggest(f"t{i}")
        log.append(config)
        searcher.on_trial_complete(f"t{i}", {"loss": loss(config)})
    return log


@pytest.fixture(scope="module")
def searched():
    searcher = HyperoptaxSearch(SPACE, metric="loss", mode="min", seed=0, **SETTINGS)
    return searcher, run(searcher, 12)


def test_suggestions_are_in_the_space_and_improve(searched):
    searcher, configs = searched
    for c in configs:
        assert set(c) == {"x", "lr", "model"} and set(c["model"]) == {"act", "depth"}
        assert -1.0 <= c["x"] <= 1.0 and 1e-5 <= c["lr"] <= 1e-1
        assert c["model"]["act"] in ("relu", "tanh")
        assert isinstance(c["model"]["depth"], int) and 1 <= c["model"]["depth"] <= 5
    values = [loss(c) for c in configs]
    assert min(values[3:]) < min(values[:3])  # the model beats the random warm-up
    assert [v for _, v in searcher._observed.values()] == values
    # The model holds every result completed before the last suggestion.
    np.testing.assert_allclose(np.asarray(searcher._model.state.y)[:11], values[:11], rtol=1e-5)


def test_errors_and_missing_metrics_are_failures_and_running_trials_are_pending(searched):
    searcher = pickle.loads(pickle.dumps(searched[0]))
    twin = pickle.loads(pickle.dumps(searched[0]))
    first = searcher.suggest("running")  # stays running: pending for the next one
    assert searcher.suggest("next") != twin.suggest("next")
    searcher.on_trial_complete("next", None, error=True)
    searcher.on_trial_complete("running", {"other": 1.0})
    searcher.on_trial_complete("unknown", {"loss": 1.0})  # not its trial: ignored
    assert searcher._observed["running"] == (first, searcher._observed["running"][1])
    assert math.isnan(searcher._observed["running"][1])
    assert math.isnan(searcher._observed["next"][1]) and "unknown" not in searcher._observed


def test_a_restored_searcher_suggests_what_the_original_would(searched, tmp_path):
    original = pickle.loads(pickle.dumps(searched[0]))
    original.suggest("running")  # a pending trial is part of what is saved
    original.save(str(tmp_path / "searcher.pkl"))
    restored = HyperoptaxSearch(seed=123)  # seed, space and settings come from the file
    restored.restore(str(tmp_path / "searcher.pkl"))
    a = run(original, 3, start=12)
    b = run(restored, 3, start=12)
    assert a == b
    np.testing.assert_array_equal(original._model.state.X, restored._model.state.X)
    with pytest.raises(ValueError, match="not a HyperoptaxSearch checkpoint"):
        (tmp_path / "other.pkl").write_bytes(pickle.dumps({"format": 99}))
        restored.restore(str(tmp_path / "other.pkl"))


def test_points_to_evaluate_come_first_and_added_points_are_observations():
    searcher = HyperoptaxSearch(
        SPACE,
        metric="loss",
        mode="max",
        points_to_evaluate=[{"x": 0.1, "lr": 1e-3, "model": {"act": "relu", "depth": 2}, "y": 1}],
        **SETTINGS,
    )
    assert searcher.suggest("a") == {"x": 0.1, "lr": 1e-3, "model": {"act": "relu", "depth": 2}}
    searcher.add_evaluated_point({"x": 0.5, "lr": 1e-2, "model": {"act": "tanh", "depth": 3}}, 2.0)
    with pytest.raises(ValueError, match="'model/depth'"):
        searcher.add_evaluated_point({"x": 0.5, "lr": 1e-2, "model": {"act": "tanh"}}, 2.0)
    assert [v for _, v in searcher._observed.values()] == [2.0]


# Ray starts its processes with fork+exec, which JAX's fork warning cannot tell apart.
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
def test_a_local_tune_run(tmp_path):
    ray = pytest.importorskip("ray")
    # Trials run in Ray's worker processes, which import this module to find `loss`.
    here = str(Path(__file__).parent)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": here}},
    )
    try:

        def train(config):
            tune.report({"loss": loss(config)})

        searcher = HyperoptaxSearch(seed=0, **SETTINGS)  # the space comes from param_space
        tuner = tune.Tuner(
            train,
            param_space={**SPACE, "constant": 7},
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                metric="loss",
                mode="min",
                num_samples=4,
                max_concurrent_trials=2,
            ),
            run_config=tune.RunConfig(storage_path=str(tmp_path), name="exp", verbose=0),
        )
        results = tuner.fit()
    finally:
        ray.shutdown()
    assert len(results) == 4 and not results.errors
    configs = [r.config for r in results]
    assert all(c["constant"] == 7 and -1.0 <= c["x"] <= 1.0 for c in configs)
    # Tune saved the searcher with the experiment; a new one restores every observation.
    restored = HyperoptaxSearch()
    restored.restore_from_dir(str(tmp_path / "exp"))
    observed = sorted(v for _, v in restored._observed.values())
    np.testing.assert_allclose(observed, sorted(r.metrics["loss"] for r in results))


def test_the_model_records_results_in_power_of_two_chunks(searched, monkeypatch):
    """Trials that complete in any order reach the model in chunks of powers of two
    (each size compiles once), all of them, in their order."""
    from hyperoptax.integrations._model import GrowingModel, one_at_a_time

    sizes = []
    update = hx.BayesianSearch.update_state
    monkeypatch.setattr(
        hx.BayesianSearch,
        "update_state",
        lambda self, s, k, r, p: sizes.append(len(r)) or update(self, s, k, r, p),
    )
    configs = searched[1]
    observed = {f"t{i}": (configs[i], loss(configs[i])) for i in range(3)}
    model = GrowingModel(one_at_a_time("test", SETTINGS, "", ""))  # the searcher's programs
    space = searched[0]._space
    state, _ = model.fit("min", space, False, observed)
    assert sizes == [2, 1]
    np.testing.assert_allclose(np.asarray(state.y)[:3], [loss(c) for c in configs[:3]], rtol=1e-6)
    assert int(state.mask.sum()) == 3
    observed["t3"] = (configs[3], loss(configs[3]))
    state, _ = model.fit("min", space, False, observed)
    assert sizes == [2, 1, 1] and int(state.mask.sum()) == 4  # extended, not rebuilt
