"""The notebooks: every percent-format .py file and its paired .ipynb agree, the .ipynb files carry
no outputs, the shared set-up call checks its parameters before any work and resolves the
profile's lists, and every notebook runs end to end with papermill on the tiny profile and writes
the files it promises, with the columns the README and the later notebooks rely on."""
import os
import re
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import pandas as pd
import pytest

from adagrpo_core.suite import notebook as notebook_module
from adagrpo_core.configs import get_profile
from adagrpo_core.suite.notebook import notebook_defaults, output_dir, setup
from adagrpo_core.common.paths import default_figures_dir
from adagrpo_core.suite.report import broken_links, write_run_report
from adagrpo_core.suite.plan import notebook_plan
from adagrpo_core.execution import RUN_LOG_ENV

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
TEXT_NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.py"))
REAL_DATA_ONLY = {"09_real_users_coat.ipynb"}
"""Notebooks of a real dataset with no simulated profile (no ``profile`` parameter): tests/test_coat.py
runs notebook 09 on small matrices it builds."""
PROFILE_NOTEBOOKS = [nb for nb in NOTEBOOKS if nb.name not in REAL_DATA_ONLY]

# notebook -> {file written to out_dir: columns it must have (None for a figure: PNG and PDF)}
EXPECTED = {
    "01_world_and_ranker.ipynb": {
        "nb01_exposure_concentration_tiny.csv": ["distribution", "gini", "top10_share"],
        "nb01_sft_vs_most_popular_tiny.csv": ["method", "HR@5", "HR@10", "HR@20", "NDCG@10", "halluc",
                                              "HR@10_unc", "halluc_unc"],
        "nb01_ranker_auc_tiny.csv": ["bucket", "auc", "truth_auc", "impressions", "clicks"],
        "nb01_ranker_truth_tiny.csv": ["bucket", "spearman", "se", "users"],
        "nb01_ranker_pairwise_tiny.csv": ["bucket", "acc_random", "acc_popular", "truth_acc_random"],
        "nb01_exposure_tiny": None, "nb01_ranker_pairwise_tiny": None,
    },
    "02_stratified_analysis.ipynb": {
        "nb02_samples_tiny_test.csv": ["user", "target", "llm_rank", "target_logp", "discriminability",
                                       "hit_llm", "hit_rm", "hit_truth", "delta", "difficulty_q", "discrim_q"],
        "nb02_table1_aggregate_tiny_test.csv": ["n", "HR@10_llm", "HR@10_rm", "rm_influence", "ci_low",
                                                "ci_high", "mcnemar_p", "truth_influence"],
        "nb02_table2_difficulty_tiny_test.csv": ["difficulty_q", "n", "rm_influence", "mcnemar_p"],
        "nb02_table2_llm_rank_tiny_test.csv": ["rank_stratum", "n", "rm_influence"],
        "nb02_table3_difficulty_x_discriminability_tiny_test.csv": ["difficulty_q", "discrim_q", "n",
                                                                    "rm_influence", "ci_low", "ci_high"],
        "nb02_influence_by_difficulty_tiny_test": None, "nb02_influence_heatmap_tiny_test": None,
    },
    "03_main_results.ipynb": {
        "nb03_main_results_tiny.csv": ["method", "checkpoint", "seeds", "HR@10", "HR@10_ci", "halluc",
                                       "NDCG@10", "HR@10_constrained", "admission_rate"],
        "nb03_main_results_rows_tiny.csv": ["method", "seed", "checkpoint", "step", "HR@10", "halluc"],
        "nb03_paired_tests_tiny.csv": ["method", "reference", "seed", "n", "diff", "mcnemar_p", "checkpoint"],
        "nb03_paired_tests_pooled_holm_tiny.csv": ["method", "reference", "seeds", "mcnemar_p", "p_holm", "diff_seed_ci",
                                                   "diff_p_seed", "diff_p_seed_holm", "diff_hboot_low", "diff_per_seed"],
        "nb03_hr10_by_method_tiny": None, "nb03_training_curves_tiny": None,
    },
    "04_controls.ipynb": {
        "nb04_controls_tiny.csv": ["method", "checkpoint", "seeds", "HR@10", "admission_rate"],
        "nb04_paired_tests_tiny.csv": ["method", "reference", "seed", "mcnemar_p", "checkpoint"],
        "nb04_paired_tests_pooled_holm_tiny.csv": ["method", "reference", "p_holm", "diff_p_seed_holm"],
        "nb04_admission_rates_tiny": None, "nb04_hr10_vs_admission_tiny": None,
    },
    "05_sensitivity.ipynb": {
        "nb05_sensitivity_tau_tiny.csv": ["grid", "tau", "seeds", "admission_rate", "HR@10_ada", "HR@10_random",
                                          "HR@10_mixp", "gain_vs_random", "gain_vs_random_ci", "gain_vs_mixp"],
        "nb05_sensitivity_lam_tiny.csv": ["lam", "HR@10_ada", "gain_vs_mixp"],
        "nb05_sensitivity_lam_normalize_tiny.csv": ["lam", "normalize", "HR@10_ada"],
        "nb05_tau_rho_tiny.csv": ["tau", "rho", "admission_rate", "HR@10_ada", "gain_vs_random", "sim_ctr_ada",
                                  "ctr_gain_vs_random", "ctr_gain_vs_mixp"],
        "nb05_sensitivity_tau_tiny": None, "nb05_tau_rho_tiny": None, "nb05_gain_vs_admission_tiny": None,
    },
    "07_ab_test_and_audit.ipynb": {
        "nb07_ab_test_tiny.csv": ["policy", "kind", "sim_ctr", "dwell", "coverage", "tail_share"],
        "nb07_ab_paired_tiny.csv": ["method", "reference", "sim_ctr_diff", "sim_ctr_fixedseeds_boot_low",
                                    "sim_ctr_fixedseeds_boot_high", "sim_ctr_seed_ci", "sim_ctr_diff_p_seed_holm",
                                    "sim_ctr_diff_hboot_low", "sim_ctr_diff_hboot_high", "p_holm"],
        "nb07_rewards_tiny.csv": ["reward", "method", "checkpoint", "HR@10", "sim_ctr", "dwell", "admission_rate"],
        "nb07_noise_gap_tiny.csv": ["reward", "noise", "metric", "best_mixture", "gap", "gap_ci", "gap_p_seed_holm"],
        "nb07_audit_tiny.csv": ["method", "admitted", "agree_adm", "agree_rej", "agree_diff", "corr_adm"],
        "nb07_roc_tiny.csv": ["method", "auc_d", "auc_a", "auc_gate_score", "auc_e"],
        "nb07_admission_by_bucket_tiny.csv": ["method", "bucket", "admission_rate", "agreement"],
        "nb07_roc_tiny": None, "nb07_admission_by_bucket_tiny": None, "nb07_noise_gap_tiny": None,
    },
    "08_reward_phase_diagram.ipynb": {
        "nb08_phase_bias_tiny.csv": ["dial", "value", "reward", "method", "seeds", "sim_ctr_gain", "sim_ctr_gain_ci",
                                     "sim_ctr_gain_share_below_0", "sim_ctr_gain_p_seed", "sim_ctr_gain_p_seed_holm",
                                     "sim_ctr_gain_hboot_low", "sim_ctr_gain_hboot_high", "sim_ctr_gain_per_seed",
                                     "sim_ctr_fixedseeds_boot_low", "sim_ctr_fixedseeds_boot_high", "HR@10_gain",
                                     "HR@10_gain_ci", "HR@10_gain_per_seed", "HR@10_fixedseeds_boot_low",
                                     "HR@10_fixedseeds_boot_high", "admission_rate", "halluc", "coverage",
                                     "tail_share", "agree_diff", "effective_bias", "effective_noise"],
        "nb08_crossovers_bias_tiny.csv": ["metric", "side", "method", "crossover", "largest_run"],
        "nb08_vs_random_bias_tiny.csv": ["value", "method", "reference", "seeds", "sim_ctr_gain", "sim_ctr_gain_ci",
                                         "sim_ctr_gain_share_below_0", "sim_ctr_gain_p_seed_holm", "HR@10_gain"],
        "nb08_mixture_gap_bias_tiny.csv": ["reward", "value", "metric", "best_mixture", "gap", "gap_ci"],
        "nb08_disagreement_bias_tiny.csv": ["value", "methods", "kendall_tau", "best_by_sim_ctr", "best_by_HR@10"],
        "nb08_ranker_placement_tiny.csv": ["reward", "effective_bias", "effective_noise", "intercept", "truth_corr"],
        "nb08_diagnostic_auc_bias_tiny.csv": ["value", "method", "auc_d", "auc_a", "auc_gate_score", "auc_e"],
        "nb08_phase_bias_tiny": None, "nb08_admission_bias_tiny": None,
    },
    "06_frontier.ipynb": {
        "nb06_frontier_tiny.csv": ["method", "checkpoint", "lam", "HR@10", "HR@10_ci", "halluc", "halluc_ci"],
        "nb06_frontier_tiny": None, "nb06_frontier_ctr_tiny": None,
    },
}


def test_every_notebook_has_expectations():
    assert NOTEBOOKS, "no notebooks found"
    assert {nb.name for nb in PROFILE_NOTEBOOKS} == set(EXPECTED)
    assert REAL_DATA_ONLY <= {nb.name for nb in NOTEBOOKS}


# ------------------------------------------------------------------ text notebooks and their pairs
def test_every_notebook_has_its_pair():
    assert {p.stem for p in NOTEBOOKS} == {p.stem for p in TEXT_NOTEBOOKS}, \
        "every notebooks/NN_*.ipynb needs its NN_*.py and vice versa (jupytext --sync pairs them)"


def _cells(nb) -> list[tuple[str, str, bool]]:
    return [(c.cell_type, c.source.strip("\n"), "parameters" in c.get("metadata", {}).get("tags", []))
            for c in nb.cells]


@pytest.mark.parametrize("text", TEXT_NOTEBOOKS, ids=lambda p: p.name)
def test_text_notebook_and_ipynb_agree(text):
    jupytext = pytest.importorskip("jupytext")
    ipynb = nbformat.read(text.with_suffix(".ipynb"), as_version=4)
    paired = jupytext.read(text)
    assert _cells(paired) == _cells(ipynb), \
        f"{text.name} and its .ipynb differ: run jupytext --sync notebooks/{text.name}"
    assert sum(has_params for *_, has_params in _cells(ipynb)) == 1, "exactly one cell tagged parameters"
    assert ipynb.metadata["kernelspec"]["name"] == "python3" == paired.metadata["kernelspec"]["name"]
    assert notebook_defaults(text) == notebook_defaults(text.with_suffix(".ipynb"))


def _parameter_lines(path: Path) -> dict[str, str]:
    """{parameter: its whole line (value and comment)} of a text notebook's parameters cell."""
    lines, inside = {}, False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# %%"):
            if inside:
                break
            inside = 'tags=["parameters"]' in line
        elif inside and "=" in line and not line.startswith("#"):
            lines[line.split("=")[0].strip()] = line
    return lines


def test_shared_parameters_read_the_same_in_every_notebook():
    """A papermill parameters cell holds its own literals, so the parameters every notebook shares
    (where things go, threads, seeds, jobs ...) repeat; they must repeat identically."""
    shared = {}
    for path in TEXT_NOTEBOOKS:
        for name, line in _parameter_lines(path).items():
            shared.setdefault(name, {}).setdefault(line, []).append(path.stem)
    for name in ("profile", "sequences", "out_dir", "cache_dir", "threads", "runs_dir", "steps", "scheduler"):
        assert len(shared[name]) == 1, f"parameter {name} differs between notebooks: {shared[name]}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_has_no_outputs(nb):
    cells = nbformat.read(nb, as_version=4).cells
    assert all(c.outputs == [] and c.execution_count is None for c in cells if c.cell_type == "code"), \
        f"{nb.name} carries outputs: regenerate it from its .py (jupytext --to ipynb --update)"
    assert len({c.id for c in cells}) == len(cells)


def test_a_disagreement_between_the_pair_is_detected(tmp_path):
    jupytext = pytest.importorskip("jupytext")
    text = (NB_DIR / "06_frontier.py").read_text(encoding="utf-8")
    edited = tmp_path / "06_frontier.py"
    edited.write_text(text.replace("hr_k = 10 ", "hr_k = 20 "), encoding="utf-8")
    assert _cells(jupytext.read(edited)) != _cells(nbformat.read(NB_DIR / "06_frontier.ipynb", as_version=4))


# ------------------------------------------------------------------ the set-up call
def _params(name: str, **overrides) -> dict:
    return {**notebook_defaults(NB_DIR / f"{name}.ipynb"), **overrides}


def test_setup_rejects_a_bad_parameter_before_any_work(tmp_path, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the profile was built before the parameters were checked")
    monkeypatch.setattr(notebook_module, "notebook_profile", no_work)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="profile='nope'"):
        setup("04_controls", _params("04_controls", profile="nope", out_dir=str(out)))
    with pytest.raises(ValueError, match=r"seeds=\[0, 0\]"):
        setup("06_frontier", _params("06_frontier", seeds=[0, 0], out_dir=str(out)))
    with pytest.raises(ValueError, match="hr_k=7"):
        setup("03_main_results", _params("03_main_results", hr_k=7, out_dir=str(out)))
    assert not out.exists()


def test_setup_resolves_the_profile_lists(tmp_path):
    namespace = {**_params("04_controls", out_dir=str(tmp_path / "out"), runs_dir=str(tmp_path / "runs")),
                 "In": ["junk"], "_private": 1}      # the rest of a notebook's globals is ignored
    nb = setup("04_controls", namespace)
    assert nb.profile == nb.prof.name == "quick" and nb.out == tmp_path / "out" and nb.out.is_dir()
    assert nb.runs == tmp_path / "runs" / "quick" and nb.jobs == (os.cpu_count() or 1)
    assert nb.seeds == [0, 1, 2] and nb.oracle_thresholds == [0.5] and "In" not in nb.params
    assert nb.run_args == {"seeds": [0, 1, 2], "out_root": nb.runs, "cache_dir": None, "jobs": nb.jobs,
                           "scheduler": None}
    with pytest.raises(AttributeError, match="no parameter or attribute 'lams'"):
        _ = nb.lams
    paper = setup("03_main_results", _params("03_main_results", profile="paper", out_dir=str(tmp_path), jobs=3,
                                             steps=7))
    assert paper.seeds == [0, 1, 2, 3, 4] and paper.jobs == 3 and paper.prof.rl.steps == 7   # suite.main_seeds
    frontier = setup("06_frontier", _params("06_frontier", profile="tiny", out_dir=str(tmp_path), seeds=[4]))
    assert frontier.lams == get_profile("tiny").suite.frontier_lams and frontier.seeds == [4]
    sens = setup("05_sensitivity", _params("05_sensitivity", out_dir=str(tmp_path), rho=0.75))
    gate, grpo = sens.prof.gate, sens.prof.grpo
    assert (sens.tau, sens.rho, sens.lam) == (gate.tau, 0.75, grpo.lam)
    assert (sens.num_negatives, sens.num_generations) == (gate.num_negatives, grpo.num_generations)
    assert sens.grids == get_profile("quick").suite.sweep_grids and sens.grids is not sens.prof.suite.sweep_grids


def test_a_parameter_at_the_profile_value_writes_the_default_tables():
    root, quick = default_figures_dir(), get_profile("quick")
    base = root / "quick"                                      # figures/<profile>/
    defaults = _params("05_sensitivity")
    assert output_dir("05_sensitivity", None, quick, defaults) == base
    assert output_dir("05_sensitivity", None, quick, {**defaults, "tau": quick.gate.tau, "seeds": [0, 1, 2]}) == base
    moved = output_dir("05_sensitivity", None, quick, {**defaults, "tau": 0.75})
    assert moved == base / "sweeps" / "05_sensitivity" / "tau=0.75"
    assert output_dir("05_sensitivity", None, get_profile("tiny"), {**defaults, "tau": 0.75}) == root / "smoke"
    # notebook 08's dial picks which default tables a run writes (each named after its dial): no move
    phase = _params("08_reward_phase_diagram")
    assert output_dir("08_reward_phase_diagram", None, quick, {**phase, "dial": "bias"}) == base
    assert output_dir("08_reward_phase_diagram", None, quick, {**phase, "dial": "bias", "values": [0, 8]}) == \
        base / "sweeps" / "08_reward_phase_diagram" / "values=_0,_8_"


# ------------------------------------------------------------------ papermill runs


@pytest.fixture(scope="module")
def shared_tiny(tmp_path_factory):
    """One artefact cache and one run root for every tiny notebook run of this module: the world,
    SFT base and ranker are built once, and a run that two notebooks share (03's in 04 and 06)
    trains once, as in reproduce.sh. Cached artefacts and runs are keyed by their configs, so a
    notebook reads the same files whichever ran first."""
    root = tmp_path_factory.mktemp("tiny_suite")
    return {"cache_dir": str(root / "cache"), "runs_dir": str(root / "runs")}


def _planned_and_trained(nb: Path, params: dict, log: Path) -> tuple[set, set]:
    """(the run folders the planner lists for this notebook pass, the ones its run calls planned)."""
    plan = notebook_plan(nb.stem, params["profile"], **{k: v for k, v in params.items() if k != "profile"})
    trained = set(log.read_text().split()) if log.exists() else set()
    missing = [lab for lab, path in plan.rankers if not Path(path).exists()]
    assert not missing, f"the planner lists rankers the notebook did not build: {missing}"
    return {s.out_dir for s in plan.specs}, trained


@pytest.mark.parametrize("nb", PROFILE_NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_on_tiny_profile(nb, tmp_path, monkeypatch, shared_tiny):
    papermill = pytest.importorskip("papermill")
    out = tmp_path / "figures"
    log = tmp_path / "runs.log"
    monkeypatch.setenv(RUN_LOG_ENV, str(log))     # the kernel appends every run its calls execute
    # every notebook takes these; only the ones a notebook declares are passed (one job: tiny runs
    # gain nothing from a process pool, whose path tests/test_experiments.py covers)
    params = {"profile": "tiny", "out_dir": str(out), "threads": 1, "seeds": [0, 1], "jobs": 1, **shared_tiny}
    declared = papermill.inspect_notebook(str(nb))
    missing = {"profile", "out_dir", "cache_dir", "threads"} - set(declared)
    assert not missing, f"papermill cannot see the parameters {missing} (a comment it cannot parse?)"
    params = {k: v for k, v in params.items() if k in declared}
    papermill.execute_notebook(str(nb), str(tmp_path / nb.name), kernel_name="python3", parameters=params,
                               cwd=str(nb.parent), progress_bar=False)
    planned, trained = _planned_and_trained(nb, params, log)
    assert planned == trained, f"planner and notebook disagree: only planned {sorted(planned - trained)[:3]}, " \
                               f"only trained {sorted(trained - planned)[:3]}"
    for name, columns in EXPECTED[nb.name].items():
        if columns is None:
            for ext in ("png", "pdf"):
                assert (out / f"{name}.{ext}").stat().st_size > 0, f"{name}.{ext}"
            continue
        df = pd.read_csv(out / name)
        assert len(df) > 0, name
        missing = [c for c in columns if c not in df.columns]
        assert not missing, f"{name} lacks columns {missing}; has {list(df.columns)}"
    # the run's page (what reproduce.sh writes last): the notebook as HTML, its key figures, no broken link
    page = write_run_report(tmp_path, "tiny", figures_dir=out)
    assert (tmp_path / nb.with_suffix(".html").name).stat().st_size > 0
    assert not broken_links(page), broken_links(page)
    text = page.read_text()
    assert f'href="{nb.with_suffix(".html").name}"' in text and "<table>" in text
    for src in re.findall(r'<img src="([^"]+)"', text):
        assert plt.imread(tmp_path / src).size > 0, src          # every image loads


def test_phase_diagram_runs_the_reliability_gates(tmp_path, monkeypatch, shared_tiny):
    """Notebook 08 with gates="reliability" writes its own tables (beside, not over, the main
    set's): each reliability gate against its matched control and the difficulty-and-reliability
    gate against its check alone, the gap of every gate to the best mixture, and the diagnostics'
    AUC on each gate's samples."""
    papermill = pytest.importorskip("papermill")
    nb = NB_DIR / "08_reward_phase_diagram.ipynb"
    out = tmp_path / "figures"
    log = tmp_path / "runs.log"
    monkeypatch.setenv(RUN_LOG_ENV, str(log))
    methods = ["nll", "mix(1)", "exposure", "random[exposure]", "difficulty_and_reliability", "soft", "mix[soft]"]
    params = {"profile": "tiny", "out_dir": str(out), "threads": 1, "seeds": [0], "jobs": 1, "gates": "reliability",
              "methods": methods, "dial": "bias", "values": [4], **shared_tiny}
    papermill.execute_notebook(str(nb), str(tmp_path / nb.name), kernel_name="python3", cwd=str(nb.parent),
                               parameters=params, progress_bar=False)
    planned, trained = _planned_and_trained(nb, params, log)
    assert planned == trained and len(planned) == 7
    assert not (out / "nb08_phase_bias_tiny.csv").exists()
    phase = pd.read_csv(out / "nb08_phase_bias_reliability_tiny.csv")
    assert set(phase.method) == set(methods) - {"nll"} and set(phase.value) == {4.0}
    vs = pd.read_csv(out / "nb08_vs_random_bias_reliability_tiny.csv")
    assert set(zip(vs.method, vs.reference)) == {("exposure", "random[exposure]"), ("soft", "mix[soft]"),
                                                 ("difficulty_and_reliability", "exposure")}
    gap = pd.read_csv(out / "nb08_mixture_gap_bias_reliability_tiny.csv")
    assert set(gap.gate) == {"exposure", "difficulty_and_reliability", "soft"} and set(gap.best_mixture) == {"mix(1)"}
    auc = pd.read_csv(out / "nb08_diagnostic_auc_bias_reliability_tiny.csv")
    assert set(auc.method) == {"exposure", "difficulty_and_reliability", "soft"} and (auc.auc_e.between(0, 1) | (auc.share_agreeing % 1 == 0)).all()   # NaN only where all samples agree (or none)
