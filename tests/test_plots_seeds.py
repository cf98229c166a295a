"""The figures of means over seeds draw every seed as its own point (plots._seed_points)."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402

from adagrpo_core.suite import plots# noqa: E402
from adagrpo_core.suite.experiments import summarize  # noqa: E402

TWO_GROUPS = {0: -0.0425, 1: -0.0393, 3: 0.004, 4: 0.001}   # the bimodal seeds of one setting


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _points(ax) -> np.ndarray:
    """The (x, y) of every scatter point on the axes (only the seeds are scatter points)."""
    offs = [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]
    return np.concatenate(offs) if offs else np.empty((0, 2))


def _cell(d: dict) -> str:
    return ";".join(f"{k}:{v}" for k, v in d.items())


def _gains(per_seed: bool = True) -> pd.DataFrame:
    out = []
    for value in (-2.0, 0.0, 4.0):
        for method, seeds in (("mix(1)", TWO_GROUPS), ("adagrpo", {0: 0.01, 1: 0.012, 2: 0.008})):
            ctr = {s: v + value / 1000 for s, v in seeds.items()}
            hr = {s: 0.5 * v for s, v in ctr.items()}
            r = {"value": value, "method": method, "seeds": len(seeds),
                 "sim_ctr_gain": np.mean(list(ctr.values())), "sim_ctr_gain_ci": 0.01,
                 "HR@10_gain": np.mean(list(hr.values())), "HR@10_gain_ci": np.nan}
            if per_seed:
                r |= {"sim_ctr_gain_per_seed": _cell(ctr), "HR@10_gain_per_seed": _cell(hr)}
            out.append(r)
    return pd.DataFrame(out)


def _rows() -> pd.DataFrame:
    """10 seeds of adagrpo (two groups in HR@10), 3 of nll and of two mixtures, both checkpoints."""
    out = []
    for method, n in (("adagrpo", 10), ("nll", 3), ("mix(0.5)", 3), ("mix(1)", 3)):
        for seed in range(n):
            for ckpt in ("best", "final"):
                hr = (-0.04 if seed % 2 else 0.0) if method == "adagrpo" else 0.1 + 0.001 * seed
                out.append({"method": method, "seed": seed, "checkpoint": ckpt, "HR@10": hr,
                            "halluc": 0.02 + 0.001 * seed, "admission_rate": 0.3 + 0.01 * seed,
                            "sim_ctr": 0.1})
    return pd.DataFrame(out)


def _summary(rows):
    s = summarize(rows)
    s["lam"] = s.method.map({"mix(0.5)": 0.5, "mix(1)": 1.0})
    return s


def test_phase_diagram_one_point_per_seed_and_both_groups():
    gains = _gains()
    fig = plots.phase_diagram(gains, "dial", pd.DataFrame(
        [{"metric": "sim_ctr", "side": "below", "method": "mix(1)", "crossover": -2.0, "largest_run": -2.0}]))
    for ax, metric in zip(fig.axes, ("sim_ctr", "HR@10")):
        pts = _points(ax)
        want = sum(len(plots.parse_per_seed(c)) for c in gains[f"{metric}_gain_per_seed"])
        assert len(pts) == want == 3 * (4 + 3)
        # both groups of mix(1)'s seeds at value 0 are among the points, not just their mean
        ys = pts[:, 1]
        for v in TWO_GROUPS.values():
            target = v if metric == "sim_ctr" else 0.5 * v
            assert np.isclose(ys, target).any()
    # the seeds sit beside their method's mean, methods dodged apart, all near their dial value
    xs = _points(fig.axes[0])[:, 0]
    assert len(np.unique(np.round(xs, 9))) == 6 and np.all(np.abs(xs - np.round(xs / 2) * 2) < 1)
    labels = fig.axes[1].get_legend().get_texts()
    assert {"mix(1) (n=4)", "adagrpo (n=3)", "one seed"} <= {t.get_text() for t in labels}


def test_phase_diagram_without_per_seed_columns_still_plots():
    fig = plots.phase_diagram(_gains(per_seed=False), "dial")
    for ax in fig.axes:
        assert len(_points(ax)) == 0 and len(ax.lines) > 0
    assert "one seed" not in {t.get_text() for t in fig.axes[-1].get_legend().get_texts()}
    fig.canvas.draw()


def test_metric_by_method_one_point_per_seed_and_n_in_ticks():
    rows = _rows()
    fig = plots.metric_by_method(_summary(rows), rows, "HR@10")
    ax = fig.axes[0]
    pts = _points(ax)
    assert len(pts) == len(rows)                                # every (method, seed, checkpoint)
    assert np.isclose(pts[:, 1], -0.04).sum() == 10 and np.isclose(pts[:, 1], 0.0).sum() == 10
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[:2] == ["adagrpo (n=10)", "nll (n=3)"]


def test_metric_vs_admission_seed_points_only_with_rows():
    rows = _rows()
    summary = _summary(rows)
    assert len(_points(plots.metric_vs_admission(summary, "HR@10").axes[0])) == 0   # the old call still works
    fig = plots.metric_vs_admission(summary, "HR@10", rows=rows)
    pts = _points(fig.axes[0])
    best = rows[rows.checkpoint == "best"]
    assert len(pts) == len(best)
    assert set(map(tuple, np.round(pts, 9))) == set(map(tuple, np.round(best[["admission_rate", "HR@10"]].to_numpy(), 9)))
    # each seed in its method's colour
    coll = [c for c in fig.axes[0].collections if isinstance(c, PathCollection)]
    ada = next(c for c in coll if len(c.get_offsets()) == 10)
    eb = next(c for c in fig.axes[0].containers if c.get_label() == "adagrpo (n=10)")
    assert np.allclose(ada.get_facecolor()[0][:3], matplotlib.colors.to_rgb(eb[0].get_color()))


def test_frontier_seed_points_both_checkpoints():
    rows = _rows()
    summary = _summary(rows)
    assert all(len(_points(ax)) == 0 for ax in plots.frontier(summary, "HR@10").axes)
    fig = plots.frontier(summary, "HR@10", rows=rows)
    for ax, ckpt in zip(fig.axes, ("best", "final")):
        pts = _points(ax)
        assert len(pts) == (rows.checkpoint == ckpt).sum()
        assert np.isclose(pts[:, 1], -0.04).sum() == 5 and np.isclose(pts[:, 1], 0.0).sum() == 5
    assert "adagrpo (n=10)" in {t.get_text() for t in fig.axes[1].get_legend().get_texts()}


def test_seed_points_drops_non_finite():
    fig, ax = plt.subplots()
    assert plots._seed_points(ax, [0.0, 1.0, np.nan], [1.0, np.nan, 2.0], "C0") == 1
    assert plots._seed_points(ax, 0.5, [], "C0") == 0
    assert len(_points(ax)) == 1


def test_phase_diagram_fades_the_methods_no_answer_reads():
    """With ``highlight`` the answer's methods keep their seeds' points and full colour; the others
    are drawn faded, without their points."""
    gains = _gains()
    fig = plots.phase_diagram(gains, "dial", highlight=["mix(1)"])
    want = sum(len(plots.parse_per_seed(c)) for c in gains[gains.method == "mix(1)"]["sim_ctr_gain_per_seed"])
    assert len(_points(fig.axes[0])) == want == 3 * 4
    alphas = {c.get_label(): c.lines[0].get_alpha() for c in fig.axes[0].containers}     # each method's errorbar
    assert alphas["mix(1) (n=4)"] == 1.0 and alphas["adagrpo (n=3)"] == 0.25
