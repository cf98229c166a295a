"""Sensitivity sweeps: the methods of each point, shared points, and the paired gains."""
import numpy as np
import pandas as pd
import pytest

from adagrpo_core.configs import get_profile
from adagrpo_core.runs import plan_runs
from adagrpo_core.suite.sweeps import (default_grids, operating_point, point_methods, sensitivity_design, sweep_methods,
                                       sweep_table)


def test_point_methods_match_random_and_mixture_to_their_adagrpo():
    ada, rnd, mixp = point_methods({"tau": 0.25, "num_negatives": 0})
    assert (ada.method, rnd.method, mixp.method) == ("adagrpo", "random", "mix")
    assert rnd.match == ada.name and mixp.match == ada.name
    assert dict(ada.gate) == {"tau": 0.25, "num_negatives": 0} and dict(rnd.gate) == dict(ada.gate)
    with pytest.raises(ValueError, match="cannot sweep"):
        point_methods({"temperature": 2.0})


def test_sweep_methods_share_points_and_add_mixtures_per_lambda():
    methods, points = sweep_methods({"tau": [0.25, 0.5], "lam": [0.5]}, ([0.25], [0.5]), ("admitted",))
    names = [m.name for m in methods]
    assert len(names) == len(set(names))
    assert "nll" in names and "mix(0.5)" in names
    assert len(points) == 2 + 1 + 1 + 1
    assert {p["sweep"] for p in points} == {"tau", "lam", "tau_rho", "lam_normalize"}
    # matched methods point at their own point's AdaGRPO run in the plan
    specs = plan_runs(get_profile("tiny"), methods, [0], "runs")
    by_name = {s.name: s for s in specs}
    assert by_name["random[tau=0.25]"].reference == by_name["ada[tau=0.25]"].out_dir
    assert by_name["mixp[lam=0.5,normalize=admitted]"].reference == by_name["ada[lam=0.5,normalize=admitted]"].out_dir


def test_sweep_table_pairs_gains_per_seed():
    rows = []
    for seed, (a, r, m, n) in enumerate([(0.50, 0.40, 0.45, 0.30), (0.52, 0.41, 0.44, 0.31), (0.51, 0.42, 0.46, 0.29)]):
        for name, v in (("ada[tau=0.25]", a), ("random[tau=0.25]", r), ("mixp[tau=0.25]", m), ("nll", n)):
            rows.append({"method": name, "seed": seed, "checkpoint": "best", "HR@10": v, "sim_ctr": v / 2,
                         "admission_rate": 0.3 if name.startswith(("ada", "random")) else 1.0})
    t = sweep_table(pd.DataFrame(rows), [{"sweep": "tau", "tau": 0.25}])
    r = t.iloc[0]
    assert r.seeds == 3 and r.admission_rate == pytest.approx(0.3)
    assert r.gain_vs_random == pytest.approx(np.mean([0.10, 0.11, 0.09]))
    assert r.gain_vs_mixp == pytest.approx(np.mean([0.05, 0.08, 0.05]))
    assert r.ctr_gain_vs_nll == pytest.approx(np.mean([0.10, 0.105, 0.11]))
    assert r.gain_vs_random_ci > 0


def test_grids_and_operating_point():
    full, grid, modes = default_grids(get_profile("paper"))
    assert full["tau"] == [0.0, 0.25, 0.5, 0.75, 0.9] and modes == ("batch", "admitted") and len(grid[0]) == 5
    quick, _, _ = default_grids(get_profile("quick"))
    assert all(len(v) <= len(full[k]) for k, v in quick.items())
    p = operating_point(get_profile("tiny"), tau=0.75, lam=2.0)
    assert p.gate.tau == 0.75 and p.grpo.lam == 2.0
    kept = operating_point(get_profile("tiny"), tau=None, rho=0.25)        # None: the profile's own value
    assert kept.gate.tau == get_profile("tiny").gate.tau and kept.gate.rho == 0.25
    with pytest.raises(ValueError, match="unknown knobs"):
        operating_point(get_profile("tiny"), temperature=2.0)


def test_a_configuration_on_several_sweeps_trains_once(tmp_path):
    """The operating point lies on every one-knob sweep and in the tau x rho grid, and lambda under
    the default normalize mode is the lambda sweep again: each configuration gets one name, so one
    key and one run (the paper grid's 540 runs were 378, 162 of them a configuration twice)."""
    p = get_profile("paper")
    prof, methods, points, _, _ = sensitivity_design(p, p.suite.sweep_grids)
    specs = plan_runs(prof, methods, [0], tmp_path)
    keys = [s.key for s in specs]
    assert len(keys) == len(set(keys)), "two method names train one configuration"
    labels = {(pt["sweep"], pt.get("tau"), pt.get("rho")): pt["label"] for pt in points}
    assert labels[("tau", 0.5, None)] == labels[("tau_rho", 0.5, 0.5)] == labels[("rho", None, 0.5)] == "op"
    assert labels[("tau_rho", 0.9, 0.5)] == "tau=0.9"
    rows = pd.DataFrame({"method": [m.name for m in methods if m.name.startswith("ada[")], "checkpoint": "best",
                         "seed": 0, "HR@10": 0.1, "admission_rate": 0.3})
    table = sweep_table(rows, points)
    assert "label" not in table.columns and len(table) == len(points) and table.seeds.eq(1).all()
