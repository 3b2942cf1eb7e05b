import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import hyperoptax as hx
from checkpoint_worker import CONFIG, N_MAX, arrays, run
from helpers import BRANIN_SPACE, MIXED_SPACE, branin, mixed_objective

HERE = Path(__file__).parent
KEY = jax.random.PRNGKey(3)


@pytest.fixture(scope="module")
def reference():
    """The uninterrupted run the checkpointed ones must reproduce."""
    state, (params, results) = run()
    return state, params, results


@pytest.fixture(scope="module")
def search():
    return hx.BayesianSearch.init(BRANIN_SPACE, n_max=N_MAX, **CONFIG)


def _worker(*args):
    env = dict(os.environ, PYTHONPATH=str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, str(HERE / "checkpoint_worker.py"), *map(str, args)],
        stdout=subprocess.PIPE, text=True, env=env,
    )


def test_killed_search_resumes_bitwise_identical(tmp_path, reference):
    ckpt, out = tmp_path / "search.ckpt", tmp_path / "out.npz"
    proc = _worker(ckpt, out)
    for line in proc.stdout:  # kill it while iteration 3's checkpoint is being written
        if line.strip() == "iteration 3":
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    assert ckpt.exists()
    done = hx.checkpoint.read_header(ckpt)["extra"]["iteration"]
    assert 1 <= done < N_MAX // CONFIG["n_parallel"]
    resumed = _worker(ckpt, out)
    lines = resumed.stdout.read().split()
    assert resumed.wait(timeout=300) == 0
    # It picked up after the last saved iteration instead of starting over.
    assert lines[1] == str(done)
    got = np.load(out)
    state, _, results = reference
    want = arrays(state, results)
    for name in want:
        assert got[name].tobytes() == want[name].tobytes(), name
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_callback_stops_and_a_finished_search_is_not_rerun(tmp_path, search, reference):
    state, opt = search
    calls = []

    def stop_at_2(i, st, params, results):
        calls.append((i, results.shape, int(st.mask.sum())))
        return i == 2

    ckpt = tmp_path / "c"
    st, (ph, rh) = opt.optimize(state, KEY, branin, callback=stop_at_2, checkpoint=ckpt)
    assert calls == [(0, (2,), 2), (1, (2,), 4), (2, (2,), 6)] and len(rh) == 3
    # Same iterations as the full run up to the stop.
    np.testing.assert_array_equal(np.stack(rh), np.stack(reference[2][:3]))
    again, (ph2, rh2) = opt.optimize(state, KEY, branin, callback=stop_at_2, checkpoint=ckpt)
    assert len(calls) == 3 and len(rh2) == 3
    np.testing.assert_array_equal(again.X, st.X)
    np.testing.assert_array_equal(ph2[1]["x1"], ph[1]["x1"])


def test_resume_refuses_other_arguments_or_searches(tmp_path, search):
    state, opt = search
    ckpt = tmp_path / "c"
    opt.optimize(state, KEY, branin, 1, checkpoint=ckpt)
    with pytest.raises(ValueError, match="key="):
        opt.optimize(state, jax.random.PRNGKey(4), branin, 1, checkpoint=ckpt)
    with pytest.raises(ValueError, match="n_iterations="):
        opt.optimize(state, KEY, branin, 2, checkpoint=ckpt)
    other_opt = hx.BayesianSearch(**dict(CONFIG, n_candidates=65))
    with pytest.raises(ValueError, match="different search: it holds the optimizer"):
        other_opt.optimize(state, KEY, branin, 1, checkpoint=ckpt)
    other_space, _ = hx.BayesianSearch.init(MIXED_SPACE, n_max=N_MAX, **CONFIG)
    with pytest.raises(ValueError, match="search space"):
        hx.load_state(ckpt, other_space)
    bigger, _ = hx.BayesianSearch.init(BRANIN_SPACE, n_max=N_MAX + 1, **CONFIG)
    with pytest.raises(ValueError, match="shapes"):
        hx.load_state(ckpt, bigger)
    (tmp_path / "junk").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a hyperoptax checkpoint"):
        hx.load_state(tmp_path / "junk", state)


def test_save_and_load_state_round_trip(tmp_path, search, reference, monkeypatch):
    state, opt = search
    full = reference[0]
    hx.save_state(tmp_path / "s", full, opt)
    loaded = hx.load_state(tmp_path / "s", state, opt)
    for a, b in zip(jax.tree_util.tree_leaves(loaded), jax.tree_util.tree_leaves(full)):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    # A crash while writing leaves the previous file intact.
    class Boom(Exception):
        pass

    def explode(f, tree):
        f.write(b"partial")
        raise Boom

    monkeypatch.setattr(hx.checkpoint.eqx, "tree_serialise_leaves", explode)
    with pytest.raises(Boom):
        hx.save_state(tmp_path / "s", full, opt)
    monkeypatch.undo()
    again = hx.load_state(tmp_path / "s", state, opt)
    np.testing.assert_array_equal(again.X, full.X)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
    # A writer killed mid-write leaves its temporary file; the next write removes it,
    # but not one that another writer is still filling (newer than this write).
    stale, live = tmp_path / ".s.killed.tmp", tmp_path / ".s.live.tmp"
    stale.write_bytes(b"partial")
    live.write_bytes(b"partial")
    os.utime(stale, (1e9, 1e9))
    os.utime(live, (4e9, 4e9))
    hx.save_state(tmp_path / "s", full, opt)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".s.live.tmp", "s"]


def test_optimize_scan_callback_sees_every_iteration(search):
    state, opt = search
    seen = []
    _, (_, rh) = opt.optimize_scan(
        state, KEY, branin, 3, callback=lambda i, st, p, r: seen.append((int(i), np.asarray(r)))
    )
    jax.effects_barrier()
    assert [i for i, _ in seen] == [0, 1, 2]
    np.testing.assert_array_equal(np.stack([r for _, r in seen]), np.asarray(rh))


def test_progress_bar_shows_best_result(search, capsys):
    state, opt = search
    _, (_, rh) = opt.optimize(state, KEY, branin, 2, progress=True)
    err = capsys.readouterr().err
    best = np.min(np.stack(rh))
    assert "2/2" in err and f"best={best:.6g}" in err
    opt.optimize(state, KEY, branin, 2)  # not a terminal: silent by default
    assert capsys.readouterr().err == ""


def test_warm_start_from_configs_arrays_and_saved_state(tmp_path, search, reference):
    state, opt = search
    full, params_hist, results_hist = reference
    configs = [c for p in params_hist[:2] for c in hx.to_configs(p)]
    assert configs[0].keys() == {"x1", "x2"} and isinstance(configs[0]["x1"], float)
    results = np.concatenate([np.asarray(r) for r in results_hist[:2]])
    warm = opt.warm_start(state, configs, list(results))
    assert int(warm.mask.sum()) == 4
    np.testing.assert_allclose(warm.y[:4], results)
    np.testing.assert_allclose(warm.X[:4], np.asarray(full.X[:4]), rtol=1e-6)
    # The GP hyperparameters were fitted to the earlier observations.
    assert not np.allclose(warm.log_length_scale, state.log_length_scale)
    # Same observations given as a raw matrix.
    raw = opt.warm_start(state, np.asarray(full.X[:4]), results)
    np.testing.assert_array_equal(raw.X, warm.X)
    # From another run's saved state, into a bigger buffer.
    hx.save_state(tmp_path / "s", full, opt)
    big, _ = hx.BayesianSearch.init(BRANIN_SPACE, n_max=N_MAX + 4, **CONFIG)
    from_saved = opt.warm_start(big, hx.load_state(tmp_path / "s", state, opt))
    assert int(from_saved.mask.sum()) == N_MAX
    np.testing.assert_array_equal(from_saved.y[:N_MAX], full.y)
    assert opt.best_result(from_saved) == opt.best_result(full)
    # The search goes on from there.
    cont, _ = opt.optimize(from_saved, KEY, branin)
    assert bool(cont.mask.all())


def test_warm_start_rejects_bad_input(search):
    state, opt = search
    with pytest.raises(ValueError, match=r"\['x1'\] of configuration 1 is 100.0, not a number in \[-5, 10\]"):
        opt.warm_start(state, [{"x1": 0.0, "x2": 1.0}, {"x1": 100.0, "x2": 1.0}], [1.0, 2.0])
    with pytest.raises(ValueError, match="does not match the search space"):
        opt.warm_start(state, [{"x1": 0.0}], [1.0])
    with pytest.raises(ValueError, match=r"`results` must have shape \(2,\)"):
        opt.warm_start(state, [{"x1": 0.0, "x2": 1.0}, {"x1": 1.0, "x2": 1.0}], [1.0])
    other, _ = hx.BayesianSearch.init(MIXED_SPACE, n_max=4)
    with pytest.raises(ValueError, match="not this search's space"):
        opt.warm_start(state, other)
    rs, ropt = hx.RandomSearch.init(BRANIN_SPACE)
    with pytest.raises(TypeError, match="keeps no model"):
        ropt.warm_start(rs, [{"x1": 0.0, "x2": 1.0}], [1.0])


def test_configs_round_trip_keeps_integer_types():
    space = {"lr": hx.LogSpace(1e-4, 1e-1), "width": hx.QLogSpace(8, 512), "act": hx.DiscreteSpace((0, 1, 2))}
    state, opt = hx.RandomSearch.init(space, n_parallel=3)
    params = opt.get_next_params(state, KEY)
    configs = hx.to_configs(params)
    assert len(configs) == 3 and isinstance(configs[0]["width"], int) and isinstance(configs[0]["lr"], float)
    back = hx.from_configs(configs, space)
    for k in space:
        assert back[k].dtype == params[k].dtype
        np.testing.assert_array_equal(back[k], params[k])


@pytest.mark.parametrize("which", ["random", "grid"])
def test_every_optimizer_resumes_after_a_crash(tmp_path, which):
    if which == "random":
        state, opt = hx.RandomSearch.init(MIXED_SPACE, n_parallel=2)
        f = mixed_objective
    else:
        space = {"a": hx.DiscreteSpace((1, 2, 3)), "b": hx.DiscreteSpace((0.5, 1.5))}
        state, opt = hx.GridSearch.init(space, n_parallel=2)
        f = lambda k, p: p["a"] * p["b"]  # noqa: E731
    full, (ph, rh) = opt.optimize(state, KEY, f, 3)

    def crash(i, *_):
        if i == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        opt.optimize(state, KEY, f, 3, checkpoint=tmp_path / "c", callback=crash)
    resumed, (ph2, rh2) = opt.optimize(state, KEY, f, 3, checkpoint=tmp_path / "c")
    np.testing.assert_array_equal(np.stack(rh2), np.stack(rh))
    for a, b in zip(jax.tree_util.tree_leaves(ph2), jax.tree_util.tree_leaves(ph)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree_util.tree_leaves(resumed), jax.tree_util.tree_leaves(full)):
        np.testing.assert_array_equal(a, b)
