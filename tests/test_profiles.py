"""What each profile runs: the reduced lists of the quick profile, the real-data method lists, the
notebooks' dataset parameters and where a dataset's tables go."""
from dataclasses import replace

import pandas as pd
import pytest

from adagrpo_core.configs import SuiteConfig, get_profile
from adagrpo_core.suite.notebook import check_notebook_params
from adagrpo_core.suite.experiments import control_methods, default_methods, sasrec_baseline
from adagrpo_core.suite.sweeps import default_grids, knob_table, sweep_methods
from adagrpo_core.suite.notebook import output_dir
from adagrpo_core.common.paths import default_figures_dir


def test_suite_defaults_by_profile():
    suite = lambda name: get_profile(name).suite      # noqa: E731
    assert suite("quick").default("oracle_thresholds") == [0.5]
    assert suite("paper").default("oracle_thresholds") == [0.5, 0.8, 0.9]
    assert suite("full").default("noise_levels") == [1.0, 3.0]
    assert suite("amazon").default("frontier_lams") == [0.1, 0.5, 1.0]       # real data: notebook 03's mixtures
    assert SuiteConfig.real().default("oracle_thresholds") == []             # no truth, no oracle
    assert suite("quick").default("mix_lams", [0.25]) == [0.25]              # an explicit value wins
    with pytest.raises(ValueError, match="'tau'"):
        suite("quick").default("tau")
    with pytest.raises(ValueError, match="main_seeds"):
        SuiteConfig(main_seeds=[0, 0])
    with pytest.raises(ValueError, match="oracle_thresholds"):
        SuiteConfig(oracle_thresholds=[1.5])


def test_notebook_03_runs_five_seeds_on_the_paper_profile_and_three_elsewhere():
    main = lambda name: get_profile(name).suite.default("main_seeds")      # noqa: E731
    assert main("paper") == main("full") == [0, 1, 2, 3, 4]
    assert main("quick") == main("amazon") == [0, 1, 2]
    assert get_profile("paper").suite.default("main_seeds", [7]) == [7]
    check_notebook_params(seeds=None)                   # None: the profile's seeds
    with pytest.raises(ValueError, match="seeds"):
        check_notebook_params(seeds=[])


def test_quick_sweep_reads_tau_and_rho_off_the_grid():
    grids, tau_rho, modes = default_grids(get_profile("quick"))
    assert "tau" not in grids and "rho" not in grids and tau_rho == ((0.25, 0.75), (0.25, 0.75))
    assert grids == {}                                  # quick sweeps neither lambda nor M nor G
    methods, points = sweep_methods(grids, tau_rho, modes)
    assert len(points) == 4 and len({m.name for m in methods}) == len(methods)
    methods, points = sweep_methods({"lam": [2.0], "num_negatives": [0]}, tau_rho, modes)   # as -y "grids: ..." adds
    assert len(points) == 6 and len({m.name for m in methods}) == len(methods)   # lambda under batch only
    table = pd.DataFrame([dict(p, HR=i) for i, p in enumerate(points)])
    tau = knob_table(table, "tau")
    assert len(tau) == 4 and list(tau.tau) == [0.25, 0.25, 0.75, 0.75] and list(tau.rho) == [0.25, 0.75, 0.25, 0.75]
    assert knob_table(table, "lam").lam.tolist() == [2.0]                      # a one-knob sweep stays itself
    assert knob_table(table, "num_negatives").num_negatives.tolist() == [0]
    assert knob_table(table, "num_generations").empty
    full, full_grid, full_modes = default_grids(get_profile("paper"))
    assert full["tau"] == [0.0, 0.25, 0.5, 0.75, 0.9] and len(full_grid[0]) * len(full_grid[1]) == 25
    assert full_modes == ("batch", "admitted")


def test_real_data_methods_have_no_oracle():
    sim = [m.method for m in default_methods()]
    real = [m.method for m in default_methods(simulated=False)]
    assert "oracle" in sim and "oracle" not in real
    assert {"difficulty", "discriminability", "inverse", "random", "adagrpo", "nll"} <= set(real)
    assert sum(m == "mix" for m in real) >= 3
    assert "oracle" not in {m.method for m in control_methods((0.5, 0.9), 0.5, simulated=False)}
    assert sasrec_baseline(get_profile("tiny"), None, None) is None          # not reported on the simulated world


def test_real_dataset_tables_go_to_their_own_folder():
    base = default_figures_dir()
    amazon = get_profile("amazon")
    assert output_dir("03_main_results", None, amazon, {}) == base / "amazon"
    assert output_dir("03_main_results", None, replace(amazon, name="MyShop"), {}) == base / "MyShop"
    assert output_dir("03_main_results", None, get_profile("quick"), {}) == base / "quick"
    assert output_dir("03_main_results", None, get_profile("paper"), {}) == base / "paper"


def test_dataset_parameters_are_checked(tmp_path):
    f = tmp_path / "shop.txt"
    f.write_text("1 1 2 3\n")
    check_notebook_params(sequences=str(f), jobs=0, lams=None, noise_levels=None)
    with pytest.raises(ValueError, match="sequences"):
        check_notebook_params(sequences=str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="jobs=-1"):
        check_notebook_params(jobs=-1)
    with pytest.raises(ValueError, match="noise_levels"):
        check_notebook_params(noise_levels=[-1.0])


def test_amazon_profile_uses_collaborative_ids_and_tests_every_user():
    prof = get_profile("amazon")
    assert prof.world.semantic_ids == "collaborative" and prof.rl.test_samples == 0
    assert not prof.is_simulated and prof.sasrec.n_layer >= 1
