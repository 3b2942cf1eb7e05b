import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from checkpoint_worker import CONFIG, N_MAX, arrays, hyperband_arrays, run, run_hyperband
from helpers import BRANIN_SPACE, MIXED_SPACE, branin, mixed_objective

import hyperoptax as hx

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
        stdout=subprocess.PIPE,
        text=True,
        env=env,
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


def test_killed_hyperband_resumes_mid_bracket_bitwise_identical(tmp_path):
    # Continued trainings: the checkpoint holds the training states of the rung just run.
    ckpt, out = tmp_path / "hb.ckpt", tmp_path / "out.npz"
    proc = _worker(ckpt, out, "hyperband")
    for line in proc.stdout:  # kill it while the first bracket's second rung is saved
        if line.strip() == "iteration 1":
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    extra = hx.checkpoint.read_header(ckpt)["extra"]
    # Rungs 0 and 1 (9 and 3 configurations) of the bracket's three: mid-bracket, with
    # the survivors' training states saved.
    assert extra["iteration"] in (1, 2) and extra["more_arrays"]
    resumed = _worker(ckpt, out, "hyperband")
    lines = resumed.stdout.read().split()
    assert resumed.wait(timeout=300) == 0
    assert lines[1] == str(extra["iteration"])  # it went on from the saved rung
    state, (_, results) = run_hyperband()
    want = hyperband_arrays(state, results)
    got = np.load(out)
    for name in want:
        assert got[name].tobytes() == want[name].tobytes(), name


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
    with pytest.raises(ValueError, match="shapes") as refused:
        hx.load_state(ckpt, bigger)
    assert "jax_enable_x64" not in str(refused.value)
    # A search of the same shapes in the other precision is told which one to use.
    in_float64 = jax.tree_util.tree_map(
        lambda a: np.asarray(a, np.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a,
        state,
    )
    with pytest.raises(ValueError, match="saved in float32: load it with jax_enable_x64 off"):
        hx.load_state(ckpt, in_float64)
    (tmp_path / "junk").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a hyperoptax checkpoint"):
        hx.load_state(tmp_path / "junk", state)


def test_save_and_load_state_round_trip(tmp_path, search, reference, monkeypatch):
    state, opt = search
    full = reference[0]
    hx.save_state(tmp_path / "s", full, opt)
    loaded = hx.load_state(tmp_path / "s", state, opt)
    for a, b in zip(
        jax.tree_util.tree_leaves(loaded), jax.tree_util.tree_leaves(full), strict=True
    ):
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
    # A writer killed mid-write leaves its temporary file; the next write on the same
    # machine removes it once that process is gone, but never a live writer's file.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    host = hx.checkpoint._writer_tag().rpartition("-")[0]
    stale = tmp_path / f".s.{host}-{dead}.abc.tmp"
    live = tmp_path / f".s.{host}-{os.getpid()}.def.tmp"
    elsewhere = tmp_path / f".s.otherhost-{dead}.ghi.tmp"
    for f in (stale, live, elsewhere):
        f.write_bytes(b"partial")
    hx.save_state(tmp_path / "s", full, opt)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, elsewhere.name, "s"])


_WRITER = """
import sys, jax, hyperoptax as hx
sys.path.insert(0, sys.argv[1])
from checkpoint_worker import CONFIG, N_MAX
from helpers import BRANIN_SPACE
state, opt = hx.BayesianSearch.init(BRANIN_SPACE, n_max=N_MAX, **CONFIG)
failed = 0
for i in range(int(sys.argv[3])):
    try:
        hx.save_state(sys.argv[2], state, opt)
    except OSError as e:
        failed += 1
        print(repr(e), flush=True)
print("failed", failed)
"""


def test_saving_onto_a_directory_names_the_directory_and_leaves_nothing(tmp_path, search):
    state, opt = search
    (tmp_path / "runs").mkdir()
    with pytest.raises(IsADirectoryError, match=r"runs' is a directory; pass a file path"):
        hx.save_state(tmp_path / "runs", state, opt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
    assert list((tmp_path / "runs").iterdir()) == []


def test_concurrent_writers_never_break_each_other(tmp_path, search):
    """Processes saving to one path (every process of a multi-host search does) all succeed."""
    ckpt = tmp_path / "shared.ckpt"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(HERE), str(ckpt), "150"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert all(out.strip().endswith("failed 0") for out in outputs), outputs
    state, opt = search
    hx.load_state(ckpt, state, opt)
    assert [p.name for p in tmp_path.iterdir()] == ["shared.ckpt"]


def test_two_checkpointed_searches_on_one_path_both_finish(tmp_path, reference):
    ckpt, outs = tmp_path / "c", [tmp_path / "a.npz", tmp_path / "b.npz"]
    procs = [_worker(ckpt, out) for out in outs]
    for p in procs:
        p.stdout.read()
        assert p.wait(timeout=300) == 0
    state, _, results = reference
    for out in outs:
        np.testing.assert_array_equal(np.load(out)["y"], np.asarray(state.y))


def _flip(path, byte, bit=0):
    data = bytearray(path.read_bytes())
    data[byte] ^= 1 << bit
    path.write_bytes(bytes(data))


def test_damaged_checkpoint_is_refused_never_resumed(tmp_path, search):
    state, opt = search
    good = tmp_path / "good"
    opt.optimize(state, KEY, branin, 2, checkpoint=good)
    data = good.read_bytes()
    magic = len(hx.checkpoint._MAGIC)
    # Every region: the header length, the header (iteration count, stopped flag), the
    # arrays, the checksum itself.
    header_end = magic + 8 + int.from_bytes(data[magic : magic + 8], "little")
    positions = sorted(
        {
            magic,
            magic + 5,
            *range(magic + 8, header_end, 97),
            *range(header_end, len(data), max(1, (len(data) - header_end) // 40)),
            len(data) - 1,
        }
    )
    for i, byte in enumerate(positions):
        bad = tmp_path / f"bad{i}"
        bad.write_bytes(data)
        _flip(bad, byte, bit=i % 8)
        with pytest.raises(ValueError, match="is damaged"):
            hx.load_state(bad, state, opt)
        with pytest.raises(ValueError, match="is damaged"):
            opt.optimize(state, KEY, branin, 2, checkpoint=bad)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="is damaged"):
        hx.checkpoint.read_header(truncated)


def test_checkpoints_without_a_checksum_still_load(tmp_path, search, reference):
    """Files of format 1 (no checksum) remain readable."""
    state, opt = search
    full = reference[0]
    hx.save_state(tmp_path / "s", full, opt)
    data = (tmp_path / "s").read_bytes()[: -hx.checkpoint._DIGEST_BYTES]
    magic = len(hx.checkpoint._MAGIC)
    size = int.from_bytes(data[magic : magic + 8], "little")
    header = json.loads(data[magic + 8 : magic + 8 + size])
    text = json.dumps(dict(header, format=1)).encode()
    old = tmp_path / "old"
    old.write_bytes(
        data[:magic] + len(text).to_bytes(8, "little") + text + data[magic + 8 + size :]
    )
    loaded = hx.load_state(old, state, opt)
    np.testing.assert_array_equal(loaded.y, full.y)


def test_an_equal_optimizer_made_elsewhere_loads_the_checkpoint(tmp_path, search, reference):
    """Optimizers are compared by their settings' values: a pickled copy of the one that
    saved (its defaults are equal, no longer the same objects, so its repr shows them) is
    the same search; a different setting is not."""
    state, opt = search
    hx.save_state(tmp_path / "s", reference[0], opt)
    copy = pickle.loads(pickle.dumps(opt))
    assert repr(copy) != repr(opt)  # what a comparison of reprs would have refused
    np.testing.assert_array_equal(hx.load_state(tmp_path / "s", state, copy).y, reference[0].y)
    other = pickle.loads(pickle.dumps(hx.BayesianSearch(**dict(CONFIG, n_hparam_steps=21))))
    with pytest.raises(ValueError, match="as configurations"):
        hx.load_state(tmp_path / "s", state, other)


def test_resume_refuses_another_starting_state(tmp_path, search):
    state, opt = search

    def crash(i, *_):
        if i == 1:
            raise KeyboardInterrupt

    ckpt = tmp_path / "c"
    with pytest.raises(KeyboardInterrupt):
        opt.optimize(state, KEY, branin, 4, checkpoint=ckpt, callback=crash)
    warm = opt.warm_start(state, np.array([[0.0, 1.0]]), np.array([3.0]))
    with pytest.raises(ValueError, match="started from another state"):
        opt.optimize(warm, KEY, branin, 4, checkpoint=ckpt)
    resumed, (_, rh) = opt.optimize(state, KEY, branin, 4, checkpoint=ckpt)
    assert len(rh) == 4 and int(resumed.mask.sum()) == 8


def test_unusable_checkpoint_location_fails_before_any_evaluation(tmp_path):
    state, opt = hx.RandomSearch.init(BRANIN_SPACE, n_parallel=2)
    calls = []

    def objective(config):
        calls.append(config)
        return config["x1"]

    (tmp_path / "file").write_text("")
    for bad in ["", tmp_path / "file" / "c", tmp_path, "/proc/hyperoptax-test.ckpt"]:
        with pytest.raises(ValueError, match="checkpoint"):
            opt.optimize_host(state, KEY, objective, 2, checkpoint=bad)
    assert calls == []


_SAVE_CATEGORICAL = """
import sys, jax, jax.numpy as jnp, hyperoptax as hx
space = {"act": hx.CategoricalSpace((jax.nn.relu, jnp.tanh, "linear")),
         "lr": hx.LogSpace(1e-4, 1e-1)}
state, opt = hx.BayesianSearch.init(space, n_max=4, n_parallel=2)
hx.save_state(sys.argv[1], state, opt)
"""


def test_functions_as_categorical_choices_resume_in_a_new_process(tmp_path):
    ckpt = tmp_path / "c"
    subprocess.run([sys.executable, "-c", _SAVE_CATEGORICAL, str(ckpt)], check=True)
    space = {
        "act": hx.CategoricalSpace((jax.nn.relu, jnp.tanh, "linear")),
        "lr": hx.LogSpace(1e-4, 1e-1),
    }
    state, opt = hx.BayesianSearch.init(space, n_max=4, n_parallel=2)
    hx.load_state(ckpt, state, opt)
    other = {
        "act": hx.CategoricalSpace((jnp.tanh, jax.nn.relu, "linear")),
        "lr": hx.LogSpace(1e-4, 1e-1),
    }
    with pytest.raises(ValueError, match="search space"):
        hx.load_state(ckpt, hx.BayesianSearch.init(other, n_max=4, n_parallel=2)[0], opt)


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
    with pytest.raises(
        ValueError, match=r"\['x1'\] of configuration 1 is 100.0, not a number in \[-5, 10\]"
    ):
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
    space = {
        "lr": hx.LogSpace(1e-4, 1e-1),
        "width": hx.QLogSpace(8, 512),
        "act": hx.DiscreteSpace((0, 1, 2)),
    }
    state, opt = hx.RandomSearch.init(space, n_parallel=3)
    params = opt.get_next_params(state, KEY)
    configs = hx.to_configs(params)
    assert (
        len(configs) == 3
        and isinstance(configs[0]["width"], int)
        and isinstance(configs[0]["lr"], float)
    )
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
    for a, b in zip(jax.tree_util.tree_leaves(ph2), jax.tree_util.tree_leaves(ph), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(
        jax.tree_util.tree_leaves(resumed), jax.tree_util.tree_leaves(full), strict=True
    ):
        np.testing.assert_array_equal(a, b)
