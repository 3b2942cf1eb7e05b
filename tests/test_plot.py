"""hyperoptax.plot: the figures show the search's data, on the right axes, and nothing leaks."""

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

import hyperoptax as hx
from hyperoptax import plot
from hyperoptax._targets import model_targets, results_from_model
from hyperoptax.checkpoint import rebuild_search
from hyperoptax.plot.__main__ import main as plot_main

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CHOICES = ("adam", "sgd", "lion")
SPACE = {
    "lr": hx.LogSpace(1e-4, 1e-1),
    "width": hx.QLinearSpace(8, 64),
    "optimizer": hx.CategoricalSpace(CHOICES),
    "unused": hx.LinearSpace(0.0, 1.0),
}
N = 32


def _loss(lr, width, opt):
    # Minimised: a valley in log(lr), a slope in width, a penalty per optimizer; `unused`
    # does nothing.
    return (np.log10(lr) + 2.5) ** 2 + ((width - 40) / 30) ** 2 + np.array([0, 0.6, 0.3])[opt]


@pytest.fixture(scope="module")
def search():
    rng = np.random.default_rng(0)
    params = {
        "lr": 10 ** rng.uniform(-4, -1, N),
        "width": rng.integers(8, 65, N),
        "optimizer": rng.integers(0, 3, N),
        "unused": rng.uniform(0, 1, N),
    }
    y = _loss(params["lr"], params["width"], params["optimizer"])
    y[5] = np.nan  # a failed evaluation
    state, opt = hx.BayesianSearch.init(SPACE, n_max=N, maximize=False, n_parallel=4)
    params = {k: jnp.asarray(v) for k, v in params.items()}
    state = opt.update_state(state, None, jnp.asarray(y, jnp.float32), params)
    return state, opt, y


@pytest.fixture(autouse=True)
def no_open_figures():
    yield
    assert plt.get_fignums() == [], "a plot left a figure open in pyplot"


def test_model_scale_maps_back_to_results():
    y = jnp.asarray([3.0, 1.0, jnp.nan, 2.5, 0.2, 7.0])
    mask = jnp.arange(6) < 5
    for maximize in (True, False):
        z, unit = model_targets(y, mask, maximize, 3)
        back = results_from_model(z / unit, y, mask, maximize, 3)
        finite = np.asarray(mask & jnp.isfinite(y))
        np.testing.assert_allclose(np.asarray(back)[finite], np.asarray(y)[finite], rtol=1e-5)


def test_history_shows_every_result_the_best_so_far_and_the_failures(search):
    state, opt, y = search
    fig = plot.history(state, opt)
    assert fig._repr_png_().startswith(b"\x89PNG")  # a notebook shows it as an image
    ax = fig.axes[0]
    points, failed = ax.collections[0], ax.collections[-1]
    index = np.arange(1, N + 1)
    ok = np.isfinite(y)
    np.testing.assert_allclose(points.get_offsets(), np.c_[index[ok], y[ok]], rtol=1e-6)
    best = np.fmin.accumulate(np.where(ok, y, np.inf))  # minimised: the running minimum
    np.testing.assert_allclose(ax.lines[0].get_ydata(), best, rtol=1e-6)
    assert failed.get_label() == "failed (1)"
    np.testing.assert_array_equal(failed.get_offsets()[:, 0], [6])
    # Batches of four shaded every other one.
    assert len(ax.patches) == N // 4 // 2


def test_history_of_a_random_search_takes_the_evaluations_optimize_returned():
    state, opt = hx.RandomSearch.init({"x": hx.LinearSpace(-1.0, 1.0)}, n_parallel=2)
    with pytest.raises(TypeError, match="evaluations="):
        plot.history(state, opt)
    with pytest.raises(TypeError, match=r"first argument is the search's state.*RandomSearch"):
        plot.parallel(opt, state)
    _, (params, results) = opt.optimize(state, jax.random.key(0), lambda k, p: p["x"] ** 2, 5)
    scanned = (
        jax.tree_util.tree_map(lambda *a: jnp.stack(a), *params),
        jnp.stack(results),
    )
    for evaluations in [(params, results), scanned]:
        ax = plot.history(state, opt, evaluations=evaluations).axes[0]
        values = np.concatenate([np.asarray(r) for r in results])
        np.testing.assert_allclose(ax.collections[0].get_offsets()[:, 1], values)
        # No direction of its own: larger is better, unless told otherwise.
        np.testing.assert_allclose(ax.lines[0].get_ydata(), np.maximum.accumulate(values))
    ax = plot.history(state, opt, evaluations=(params, results), maximize=False).axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.minimum.accumulate(values))


def test_parallel_draws_one_line_per_evaluation(search):
    state, opt, y = search
    fig = plot.parallel(state, opt)
    ax = fig.axes[0]
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(ax.lines) == N and len(dashed) == 1  # the failure: grey and dashed
    assert [t.get_text() for t in ax.get_xticklabels()] == ["lr", "optimizer", "unused", "width"]
    assert {t.get_text() for t in ax.texts} >= set(CHOICES)


def test_importance_ranks_a_parameter_that_does_nothing_last_and_sums_to_one(search):
    state, opt, _ = search
    shares = plot.parameter_importance(state, opt)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert min(shares, key=shares.get) == "unused"
    assert max(shares, key=shares.get) == "lr"
    bars = plot.importance(state, opt).axes[0]
    assert bars.get_yticklabels()[-1].get_text() == "lr"  # the most important on top


def test_slices_use_log_axes_integers_and_the_choice_names(search):
    state, opt, y = search
    fig = plot.slices(state, opt)
    axes = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert sorted(axes) == ["lr", "optimizer", "unused", "width"]
    assert axes["lr"].get_xscale() == "log" and axes["width"].get_xscale() == "linear"
    assert isinstance(axes["width"].xaxis.get_major_locator(), matplotlib.ticker.MaxNLocator)
    labels = [t.get_text() for t in fig.axes[3].get_xticklabels()]  # optimizer's acquisition
    assert labels == list(CHOICES)
    # The finite observations projected on each slice.
    for ax in axes.values():
        assert len(ax.collections[-1].get_offsets()) == np.isfinite(y).sum()
    # The model's median in the objective's units lies among the results.
    band = axes["lr"].lines[0].get_ydata()
    assert np.nanmin(y) - 1.0 < band.min() < np.nanmax(y)


def test_contour_shows_the_two_parameters_asked_for(search):
    state, opt, _ = search
    ax = plot.contour(state, opt, ["width", "lr"]).axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("width", "lr")
    assert ax.get_yscale() == "log"
    default = plot.contour(state, opt).axes[0]
    shares = plot.parameter_importance(state, opt)
    top = sorted(shares, key=shares.get)[-2:]  # by default, the two most important
    assert {default.get_xlabel(), default.get_ylabel()} == set(top)
    with pytest.raises(ValueError, match="two parameters"):
        plot.contour(state, opt, ["lr", "depth"])
    with pytest.raises(TypeError, match="BayesianSearch"):
        plot.contour(state, hx.RandomSearch())


def test_the_command_line_writes_every_plot_from_a_checkpoint(search, tmp_path, capsys):
    state, opt, _ = search
    hx.save_state(tmp_path / "search.ckpt", state, opt)
    assert plot_main([str(tmp_path / "search.ckpt"), "--out", str(tmp_path / "figs")]) == 0
    names = {"history", "parallel", "importance", "slices", "contour"}
    assert {p.stem for p in (tmp_path / "figs").glob("*.png")} == names

    # A random search's running checkpoint: its history, no model.
    rstate, ropt = hx.RandomSearch.init({"x": hx.LinearSpace(-1.0, 1.0)})
    ropt.optimize(rstate, jax.random.key(0), lambda k, p: p["x"], 4, checkpoint=tmp_path / "r")
    assert plot_main([str(tmp_path / "r"), "--out", str(tmp_path / "rand")]) == 0
    assert {p.stem for p in (tmp_path / "rand").glob("*.png")} == {"history", "parallel"}

    # A multi-fidelity search's running checkpoint: every evaluation is in its state.
    hstate, hopt = hx.Hyperband.init({"x": hx.LinearSpace(-1.0, 1.0)}, min_budget=1, max_budget=3)
    done, _ = hopt.optimize(
        hstate, jax.random.key(0), lambda k, p, b: p["x"] / b, checkpoint=tmp_path / "h"
    )
    assert plot_main([str(tmp_path / "h"), "--out", str(tmp_path / "hb")]) == 0
    assert {p.stem for p in (tmp_path / "hb").glob("*.png")} == {"history", "parallel"}
    again, hb_opt, evaluations = rebuild_search(tmp_path / "h")
    assert evaluations is None and hb_opt == hopt
    np.testing.assert_array_equal(again.y, done.y)
    # Every evaluation, coloured by its budget; the best so far only among the full
    # trainings (a short run's result is not comparable), as `best_result` reports.
    ax = plot.history(again, hb_opt).axes[0]
    points = ax.collections[0]
    y, budget = np.asarray(done.y), np.asarray(done.budget)
    np.testing.assert_allclose(points.get_offsets()[:, 1], y, rtol=1e-6)
    np.testing.assert_array_equal(points.get_array(), budget)
    full = np.where(budget == 3, y, -np.inf)
    best = np.maximum.accumulate(full)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.where(np.isinf(best), np.nan, best))
    assert ax.lines[0].get_ydata()[-1] == pytest.approx(float(hopt.best_result(done)))
    assert plot_main([str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "missing" in capsys.readouterr().err
