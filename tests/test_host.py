"""Host-side objectives: plain Python values, executors, categorical choices, failures."""

import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hyperoptax as hx

KEY = jax.random.PRNGKey(0)
SMALL = dict(n_candidates=64, n_restarts=2, n_lbfgs_steps=5, n_hparam_steps=5)
SPACE = {
    "opt": hx.CategoricalSpace(("adam", "sgd", None)),
    "lr": hx.LogSpace(1e-4, 1e-1),
    "layers": hx.QLinearSpace(1, 4),
}


def loss(config):
    """A pure-Python objective; sgd is worse, None is not an optimizer at all."""
    if config["opt"] is None:
        raise RuntimeError("no optimizer chosen")
    penalty = {"adam": 0.0, "sgd": 1.0}[config["opt"]]
    return penalty + (np.log10(config["lr"]) + 2.5) ** 2 + 0.1 * (config["layers"] - 2) ** 2


@pytest.fixture(scope="module")
def bayes():
    return hx.BayesianSearch.init(SPACE, n_max=24, maximize=False, n_parallel=4, **SMALL)


@pytest.fixture(scope="module")
def host_run(bayes):
    """A Bayesian host-side search over a categorical space with a thread pool."""
    state, opt = bayes
    seen = []

    def objective(config):
        seen.append(dict(config))
        return loss(config)

    with warnings.catch_warnings(record=True) as caught, ThreadPoolExecutor(4) as pool:
        warnings.simplefilter("always")
        final, hist = opt.optimize_host(state, KEY, objective, executor=pool)
    return final, hist, seen, caught


def test_objective_gets_plain_python_values(host_run):
    _, _, seen, _ = host_run
    assert len(seen) == 24
    for config in seen:
        assert config["opt"] in ("adam", "sgd", None)
        assert type(config["lr"]) is float and 1e-4 <= config["lr"] <= 1e-1
        assert type(config["layers"]) is int and 1 <= config["layers"] <= 4


def test_results_line_up_with_their_configurations(host_run):
    final, (params_hist, results_hist), _, _ = host_run
    assert len(results_hist) == 6 and results_hist[0].shape == (4,)
    for params, results in zip(params_hist, results_hist, strict=True):
        for config, r in zip(hx.to_configs(params, SPACE), np.asarray(results), strict=True):
            if config["opt"] is None:
                assert np.isnan(r)
            else:
                assert r == pytest.approx(loss(config), rel=1e-5)
    np.testing.assert_array_equal(final.y, np.concatenate([np.asarray(r) for r in results_hist]))


def test_failures_are_recorded_reported_and_do_not_poison_the_search(host_run):
    final, (params_hist, results_hist), seen, caught = host_run
    failed = [c for c in seen if c["opt"] is None]
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert failed and len(messages) == len(failed)
    assert "no optimizer chosen" in messages[0] and "'opt': None" in messages[0]
    assert int(np.sum(np.isnan(final.y))) == len(failed)
    # The search went on and found the right region: adam, lr near 10**-2.5.
    opt = hx.BayesianSearch(maximize=False, n_parallel=4, **SMALL)
    best = opt.best_params(final)
    assert SPACE["opt"].decode(best["opt"]) == "adam"
    assert float(opt.best_result(final)) < 0.2
    assert all(np.all(np.isfinite(np.asarray(p["lr"]))) for p in params_hist)


def test_on_error_raise_stops_the_search():
    state, opt = hx.RandomSearch.init(SPACE, n_parallel=3)

    def broken(config):
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        opt.optimize_host(state, KEY, broken, 2, on_error="raise")
    with pytest.raises(ValueError, match="returned nan"):
        opt.optimize_host(state, KEY, lambda c: float("nan"), 1, on_error="raise")
    with pytest.raises(ValueError, match="on_error"):
        opt.optimize_host(state, KEY, loss, 1, on_error="ignore")
    with pytest.warns(RuntimeWarning, match="returned 'text'") as caught:
        _, (_, rh) = opt.optimize_host(state, KEY, lambda c: "text", 1)
    assert caught[0].filename == __file__  # shown at the caller's line
    assert np.all(np.isnan(np.asarray(rh[0])))
    # Too large for float32: a failure that names the configuration, not an overflow.
    with pytest.warns(
        RuntimeWarning,
        match=r"evaluation of \{.*'lr'.*returned 1e\+39, beyond the range of float32",
    ):
        _, (_, rh) = opt.optimize_host(state, KEY, lambda c: 1e39, 1)
    assert np.all(np.isnan(np.asarray(rh[0])))
    with pytest.raises(ValueError, match="beyond the range of float32"):
        opt.optimize_host(state, KEY, lambda c: -1e39, 1, on_error="raise")


def test_thread_pool_evaluates_a_batch_concurrently():
    state, opt = hx.RandomSearch.init({"x": hx.LinearSpace(0.0, 1.0)}, n_parallel=4)
    barrier = threading.Barrier(4, timeout=20)

    def objective(config):
        barrier.wait()  # only returns once all four evaluations run at the same time
        return config["x"]

    with ThreadPoolExecutor(4) as pool:
        _, (ph, rh) = opt.optimize_host(state, KEY, objective, 2, executor=pool)
    np.testing.assert_allclose(np.stack(rh), np.stack([np.asarray(p["x"]) for p in ph]), rtol=1e-6)


def test_an_objective_a_process_pool_cannot_send_is_refused_before_any_evaluation():
    # A lambda cannot be pickled: every evaluation would fail, each with a warning.
    state, opt = hx.RandomSearch.init(SPACE, n_parallel=2)
    configs = hx.to_configs(opt.get_next_params(state, KEY), SPACE)
    with ProcessPoolExecutor(1) as pool:
        for run in (
            lambda: opt.optimize_host(state, KEY, lambda c: 0.0, 1, executor=pool),
            lambda: opt.optimize_host(
                state, KEY, lambda c: 0.0, 1, executor=pool, asynchronous=True
            ),
            lambda: hx.evaluate_configs(lambda c: 0.0, configs, pool),
        ):
            with pytest.raises(TypeError, match="cannot be pickled.*top level of a module"):
                run()
        assert not pool._processes  # nothing was started


def test_dask_cluster_evaluates_the_batch():
    distributed = pytest.importorskip("distributed")
    state, opt = hx.RandomSearch.init(SPACE, n_parallel=4)
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    try:
        with distributed.Client(cluster) as client:
            pids = client.run(lambda: __import__("os").getpid())
            _, (ph, rh) = opt.optimize_host(state, KEY, loss, 2, executor=client.get_executor())
    finally:
        cluster.close()
    assert len(pids) == 2
    for params, results in zip(ph, rh, strict=True):
        for config, r in zip(hx.to_configs(params, SPACE), np.asarray(results), strict=True):
            assert (
                np.isnan(r) if config["opt"] is None else r == pytest.approx(loss(config), rel=1e-5)
            )


def test_categorical_inside_jax_objectives_is_the_index():
    space = {
        "act": hx.CategoricalSpace(("relu", "tanh", "identity")),
        "x": hx.LinearSpace(-1.0, 1.0),
    }
    branches = [jax.nn.relu, jnp.tanh, lambda v: v]

    def objective(key, p):
        assert p["act"].dtype == jnp.int32
        return jax.lax.switch(p["act"], branches, p["x"])

    for opt_cls in (hx.RandomSearch, hx.BayesianSearch):
        kw = (
            dict(n_parallel=2)
            if opt_cls is hx.RandomSearch
            else dict(n_max=6, n_parallel=2, **SMALL)
        )
        state, opt = opt_cls.init(space, **kw)
        _, (ph, rh) = opt.optimize_scan(state, KEY, objective, 3)
        acts = np.asarray(ph["act"]).ravel()
        assert set(acts.tolist()) <= {0, 1, 2}
        want = [branches[a](x) for a, x in zip(acts, np.asarray(ph["x"]).ravel(), strict=True)]
        np.testing.assert_allclose(np.asarray(rh).ravel(), want, rtol=1e-6)
    assert space["act"].choices[int(acts[0])] == space["act"].decode(acts[0])


def test_grid_search_walks_every_choice():
    space = {"opt": hx.CategoricalSpace(("adam", "sgd", None)), "layers": hx.DiscreteSpace((1, 2))}
    state, opt = hx.GridSearch.init(space)
    seen = []
    opt.optimize_host(state, KEY, lambda c: seen.append((c["opt"], c["layers"])) or 0.0)
    # Leaves in pytree order (dict keys sorted: "layers", then "opt"), the last fastest.
    assert seen == [(o, n) for n in (1, 2) for o in ("adam", "sgd", None)]


def test_the_gp_treats_categories_as_unordered():
    kernel = hx.kernels.Unordered(hx.Matern(nu=1.5), (3, 0))
    # Category centres on the unit interval: 1/6, 1/2, 5/6.
    X = jnp.array([[1 / 6, 0.3], [1 / 2, 0.3], [5 / 6, 0.3], [0.2, 0.3]])
    K = kernel(X, X, jnp.array([0.5, 0.5]))
    # The first and last categories are as alike as neighbouring ones...
    assert float(K[0, 1]) == pytest.approx(float(K[0, 2])) and float(K[0, 1]) < 1.0
    # ...and a point anywhere in a category's cell is that category.
    assert float(K[0, 3]) == pytest.approx(1.0)
    ordered = hx.Matern(nu=1.5)(X, X, jnp.array([0.5, 0.5]))
    assert float(ordered[0, 2]) < float(ordered[0, 1])


def test_categorical_configs_round_trip_and_validation():
    space = {"arch": hx.CategoricalSpace(((64, 64), (128,), None)), "lr": hx.LogSpace(1e-3, 1e-1)}
    state, opt = hx.RandomSearch.init(space, n_parallel=5)
    params = opt.get_next_params(state, KEY)
    configs = hx.to_configs(params, space)
    assert all(c["arch"] in ((64, 64), (128,), None) for c in configs)
    back = hx.from_configs(configs, space)
    np.testing.assert_array_equal(back["arch"], params["arch"])
    with pytest.raises(ValueError, match="not one of the choices"):
        hx.from_configs([{"arch": (32,), "lr": 0.01}], space)
    with pytest.raises(ValueError, match="appears twice"):
        hx.CategoricalSpace(("a", "b", "a"))
    with pytest.raises(TypeError, match="hashable"):
        hx.CategoricalSpace(([1], [2]))
    with pytest.raises(ValueError, match="must not be empty"):
        hx.CategoricalSpace(())


def test_tunes_a_scikit_learn_model_end_to_end():
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_diabetes(return_X_y=True)
    space = {"alpha": hx.LogSpace(1e-3, 1e4), "scale": hx.CategoricalSpace((True, False))}

    def cv_score(config):
        steps = [StandardScaler()] if config["scale"] else []
        model = make_pipeline(*steps, Ridge(alpha=config["alpha"]))
        return float(cross_val_score(model, X, y, cv=3).mean())  # R^2, larger is better

    state, opt = hx.BayesianSearch.init(space, n_max=12, n_parallel=2, **SMALL)
    state, (_, rh) = opt.optimize_host(state, KEY, cv_score)
    worst_alpha = cv_score({"alpha": 1e4, "scale": True})
    best = opt.best_params(state)
    assert float(opt.best_result(state)) > worst_alpha + 0.1
    # The reported configuration (every leaf a scalar) as plain values, the choice itself.
    [config] = hx.to_configs(best, space)
    assert config["scale"] in (True, False) and isinstance(config["alpha"], float)
    assert float(opt.best_result(state)) == pytest.approx(cv_score(config), rel=1e-5)
    # ...and as a batch of one wherever configurations go.
    batch = jax.tree_util.tree_map(lambda v: v[None], best)
    for got, want in zip(opt.predict(state, best), opt.predict(state, batch), strict=True):
        assert got.shape == (1,)
        np.testing.assert_array_equal(got, want)
    fresh, _ = hx.BayesianSearch.init(space, n_max=4, n_parallel=2, **SMALL)
    warm = opt.warm_start(fresh, best, opt.best_result(state))
    assert int(warm.mask.sum()) == 1 and float(warm.y[0]) == float(opt.best_result(state))
    assert hx.to_configs(opt.best_params(warm), space) == [config]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_host_search_checkpoints_and_resumes(tmp_path):
    state, opt = hx.RandomSearch.init(SPACE, n_parallel=2)
    full, (_, rh) = opt.optimize_host(state, KEY, loss, 4)

    def crash(i, *_):
        if i == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        opt.optimize_host(state, KEY, loss, 4, checkpoint=tmp_path / "c", callback=crash)
    calls = []

    def counted(config):
        calls.append(config)
        return loss(config)

    _, (_, rh2) = opt.optimize_host(state, KEY, counted, 4, checkpoint=tmp_path / "c")
    # The crash came before iteration 2 was saved: iterations 2 and 3 (two configurations
    # each) are evaluated again, 0 and 1 come from the checkpoint; the history is whole.
    assert len(calls) == 4
    np.testing.assert_array_equal(np.stack(rh2), np.stack(rh))


def test_functions_as_choices():
    space = {"act": hx.CategoricalSpace((np.tanh, np.sin, None))}
    state, opt = hx.RandomSearch.init(space, n_parallel=6)
    configs = hx.to_configs(opt.get_next_params(state, KEY), space)
    assert {c["act"] for c in configs} <= {np.tanh, np.sin, None}
    back = hx.from_configs(configs, space)
    assert [space["act"].decode(i) for i in np.asarray(back["act"])] == [c["act"] for c in configs]


def _key(config):
    return tuple(sorted((k, repr(v)) for k, v in config.items()))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_asynchronous_search_keeps_every_worker_busy(bayes):
    # The first configuration finishes only once four others have been recorded: with
    # batches, the first batch would wait for it (until the 60 s timeout).
    # Asynchronously the other workers go on, each result is recorded when it arrives,
    # and no configuration is lost or evaluated twice.
    state, opt = bayes
    calls, lock, busy, released = [], threading.Lock(), [0, 0], threading.Event()

    def objective(config):
        with lock:
            slow = not calls
            calls.append(dict(config))
            busy[0] += 1
            busy[1] = max(busy)
        if slow:
            released.wait(timeout=60)
        else:
            time.sleep(0.01 * (config["layers"] % 3))
        with lock:
            busy[0] -= 1
        return loss(config)

    def callback(i, *_):
        if i == 3:
            released.set()

    with ThreadPoolExecutor(4) as pool:
        final, (ph, rh) = opt.optimize_host(
            state, KEY, objective, 3, executor=pool, callback=callback, asynchronous=True
        )
    assert len(calls) == 12 and 2 <= busy[1] <= 4
    configs = [hx.to_configs(p, SPACE)[0] for p in ph]
    assert sorted(map(_key, configs)) == sorted(map(_key, calls))  # each once, none lost
    assert len(set(map(_key, configs))) == 12
    assert [c == calls[0] for c in configs].index(True) >= 4  # recorded after others
    for c, r in zip(configs, rh, strict=True):
        assert r.shape == (1,)
        if c["opt"] is None:
            assert np.isnan(r[0])
        else:
            assert float(r[0]) == pytest.approx(loss(c), rel=1e-5)
    assert int(final.mask.sum()) == 12
    np.testing.assert_array_equal(final.y[:12], np.concatenate(rh))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_asynchronous_search_needs_an_executor_and_no_grid(bayes):
    # A callback that stops the search stops new submissions; the running one is recorded.
    rs, ropt = hx.RandomSearch.init(SPACE, n_parallel=2)
    with ThreadPoolExecutor(2) as pool:
        _, (_, rh) = ropt.optimize_host(
            rs, KEY, loss, 5, executor=pool, callback=lambda i, *_: i == 1, asynchronous=True
        )
    assert 2 <= len(rh) <= 3
    state, opt = bayes
    with pytest.raises(ValueError, match="needs an `executor`"):
        opt.optimize_host(state, KEY, loss, 1, asynchronous=True)
    gs, gopt = hx.GridSearch.init({"x": hx.DiscreteSpace((1.0, 2.0))}, n_parallel=2)
    with ThreadPoolExecutor(2) as pool, pytest.raises(ValueError, match="whole batches"):
        gopt.optimize_host(gs, KEY, lambda c: c["x"], 1, executor=pool, asynchronous=True)


def test_killed_asynchronous_search_resumes_without_loss_or_repeats(tmp_path):
    from async_worker import N_ITERATIONS, N_PARALLEL, SPACE, objective, run

    here = Path(__file__).parent
    env = dict(os.environ, PYTHONPATH=str(here) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ckpt = tmp_path / "async.ckpt"
    proc = subprocess.Popen(
        [sys.executable, str(here / "async_worker.py"), str(ckpt)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    for line in proc.stdout:
        if line.strip() == "recorded 3":
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    calls = []

    def counted(config):
        calls.append(config)
        return objective(config)

    state, (ph, rh) = run(ckpt, counted)
    total = N_ITERATIONS * N_PARALLEL
    assert len(rh) == total
    configs = [_key(hx.to_configs(p, SPACE)[0]) for p in ph]
    restored = configs[: total - len(calls)]
    assert len(restored) >= 4  # what the killed process recorded came from the checkpoint
    assert not set(restored) & set(map(_key, calls))  # and was not evaluated again
    assert sorted(configs[len(restored) :]) == sorted(map(_key, calls))
    assert len(set(configs)) == total
    for c, r in zip(ph, rh, strict=True):
        assert float(r[0]) == pytest.approx(float(c["x"][0] + c["n"][0] / 1000.0), rel=1e-5)
    # A finished search resumes to its result without evaluating anything.
    calls.clear()
    _, (_, rh2) = run(ckpt, counted)
    assert not calls and np.array_equal(np.concatenate(rh2), np.concatenate(rh))
