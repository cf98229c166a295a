"""Every notebook runs end to end with papermill on the tiny profile and writes the files it
promises, with the columns the README and the later notebooks rely on."""
from pathlib import Path

import pandas as pd
import pytest

papermill = pytest.importorskip("papermill")

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))

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
        "nb03_paired_tests_pooled_holm_tiny.csv": ["method", "reference", "mcnemar_p", "p_holm"],
        "nb03_hr10_by_method_tiny": None, "nb03_training_curves_tiny": None,
    },
    "04_controls.ipynb": {
        "nb04_controls_tiny.csv": ["method", "checkpoint", "seeds", "HR@10", "admission_rate"],
        "nb04_paired_tests_tiny.csv": ["method", "reference", "seed", "mcnemar_p", "checkpoint"],
        "nb04_paired_tests_pooled_holm_tiny.csv": ["method", "reference", "p_holm"],
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
        "nb07_ab_paired_tiny.csv": ["method", "reference", "sim_ctr_diff", "sim_ctr_ci_low", "sim_ctr_ci_high", "p_holm"],
        "nb07_rewards_tiny.csv": ["reward", "method", "checkpoint", "HR@10", "sim_ctr", "dwell", "admission_rate"],
        "nb07_noise_gap_tiny.csv": ["reward", "noise", "metric", "best_mixture", "gap", "gap_ci"],
        "nb07_audit_tiny.csv": ["method", "admitted", "agree_adm", "agree_rej", "agree_diff", "corr_adm"],
        "nb07_roc_tiny.csv": ["method", "auc_d", "auc_a", "auc_gate_score"],
        "nb07_admission_by_bucket_tiny.csv": ["method", "bucket", "admission_rate", "agreement"],
        "nb07_roc_tiny": None, "nb07_admission_by_bucket_tiny": None, "nb07_noise_gap_tiny": None,
    },
    "06_frontier.ipynb": {
        "nb06_frontier_tiny.csv": ["method", "checkpoint", "lam", "HR@10", "HR@10_ci", "halluc", "halluc_ci"],
        "nb06_frontier_tiny": None, "nb06_frontier_ctr_tiny": None,
    },
}


def test_every_notebook_has_expectations():
    assert NOTEBOOKS, "no notebooks found"
    assert {nb.name for nb in NOTEBOOKS} == set(EXPECTED)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_on_tiny_profile(nb, tmp_path):
    out = tmp_path / "figures"
    # every notebook takes these; only the ones a notebook declares are passed
    params = {"profile": "tiny", "out_dir": str(out), "cache_dir": str(tmp_path / "cache"), "threads": 1,
              "runs_dir": str(tmp_path / "runs"), "seeds": [0, 1]}
    declared = papermill.inspect_notebook(str(nb))
    missing = {"profile", "out_dir", "cache_dir", "threads"} - set(declared)
    assert not missing, f"papermill cannot see the parameters {missing} (a comment it cannot parse?)"
    papermill.execute_notebook(str(nb), str(tmp_path / nb.name), kernel_name="python3",
                               parameters={k: v for k, v in params.items() if k in declared},
                               cwd=str(nb.parent), progress_bar=False)
    for name, columns in EXPECTED[nb.name].items():
        if columns is None:
            for ext in ("png", "pdf"):
                assert (out / f"{name}.{ext}").stat().st_size > 0, f"{name}.{ext}"
            continue
        df = pd.read_csv(out / name)
        assert len(df) > 0, name
        missing = [c for c in columns if c not in df.columns]
        assert not missing, f"{name} lacks columns {missing}; has {list(df.columns)}"
