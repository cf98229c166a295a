# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · The simulated A/B test, reward sources and the audit of admitted samples
#
# Three questions the paper could not answer with its proprietary data, answered here with the
# simulated world's known truth:
#
# 1. **The simulated A/B test.** Each policy's top 10 (trie-constrained beams, as they would be
#    served) is shown as a slate to every test user state under the world's own cascade click
#    model: expected CTR (exact, no sampling), a dwell proxy (the expected true utility of the
#    clicked item, given a click), catalogue coverage and the share of tail items. Reference rows:
#    the logging policy (Monte Carlo), most popular, SFT, the ranker's own top 10 and the top 10 by
#    true utility (the ceiling). Differences between methods are paired per seed and compared over
#    seeds (t-interval, share of seeds below 0, exact sign-flip test with Holm, and a bootstrap over
#    seeds then users); the bootstrap over users alone (`sim_ctr_fixedseeds_boot_*`) holds the seeds fixed.
# 2. **Reward sources.** The same methods with the ranker's reward, the true click probability
#    (noise-free) and the truth with known noise on rarely exposed items: is the AdaGRPO minus
#    best-fixed-mixture gap larger where the reward is noisier?
# 3. **The audit.** Do the gates admit the samples whose reward orders the rollouts like the
#    truth? Reward accuracy of admitted against rejected samples, the ROC of d, a and the gate as
#    predictors, and admission by the target's exposure bucket. The reliability gates
#    (`reliability_methods`: exposure, ensemble, difficulty_and_reliability, soft, each beside its
#    matched control) are audited the same way, with the ROC of their truth-free diagnostics e
#    (the candidates' exposure in the ranker's training log) and u (a ranker ensemble's agreement).
#
# Run it with papermill: `papermill notebooks/07_ab_test_and_audit.ipynb out.ipynb -p profile tiny -y "seeds: [0]"`.

# %% tags=["parameters"]
profile = "quick"          # "tiny", "quick", "paper", "full" or "amazon" (Amazon Beauty)
sequences = None           # any user item item ... file instead: its path (the amazon profile's settings)
out_dir = None             # where tables and figures go; None means the checkout's figures/<profile>/ (coat/ for notebook 09)
cache_dir = None           # artefact cache; None means $ADAGRPO_CACHE, else .cache/ of the checkout
threads = 0                # torch CPU threads; 0 keeps the torch default
runs_dir = None            # run folders <runs_dir>/<profile>/seed<k>/<method>/; None means runs/ of the checkout
seeds = None               # training seeds; None means the profile's (suite.seeds: 0, 1, 2)
steps = 0                  # RL steps; 0 keeps the profile default
jobs = 0                   # runs in parallel, one torch thread each; 0 means one per CPU core
scheduler = None           # a Dask scheduler address such as tcp://host:8786; None runs here
batch = 0                  # seeds of one method trained together on a stacked policy (train/batched.py); 0 means the profile's (1: each run alone, the CPU default)
noise_levels = None        # noisy_truth: std of the utility error on the rarest items; None means quick 3 only, paper 1 and 3
mix_lams = None            # the fixed mixtures of the reward-source comparison; None means quick 1 only, paper 0.5 and 1
logging_samples = 20       # Monte Carlo slates per user for the logging policy
reliability_methods = None # reliability gates beside their controls (random[X], mix[soft]); None means the profile's (quick: exposure)

# %%
import pandas as pd
from IPython.display import display

from adagrpo_core.suite import plots
from adagrpo_core.data.impressions import exposure_buckets
from adagrpo_core.eval.audit import (
    accuracy_table,
    admission_by_bucket,
    diagnostic_roc,
    load_audits,
)
from adagrpo_core.suite.experiments import (
    ab_reference,
    gap_to_best_mixture,
    main_results,
    paired_tests_both,
    reward_sources,
    summarize,
)
from adagrpo_core.suite.notebook import setup
from adagrpo_core.suite.plan import audit_methods, source_methods, source_rewards
from adagrpo_core.pipeline import get_world
from adagrpo_core.suite.plots import save_figure
from adagrpo_core.suite.tables import save_table
from adagrpo_core.suite.verdicts import ab_audit_verdict, zero_truth_noise

nb = setup("07_ab_test_and_audit", globals())   # checks the parameters first; profile, output folder, runs, lists
if not nb.prof.is_simulated:
    raise SystemExit("notebook 07 needs the simulated world's true utility; real datasets have none")
methods = audit_methods(nb.reliability_methods)   # AdaGRPO, its controls, oracle; each reliability gate beside its matched control
rows, summary = main_results(nb.prof, methods=methods, answer="nb07_audit", **nb.run_args)   # the audit's methods also at suite.answer_seeds

# %% [markdown]
# ## 1. The simulated A/B test (reward: the ranker)

# %%
ref, ref_ctr = ab_reference(nb.prof, cache_dir, logging_samples)
best = summary[summary.checkpoint == "best"]
runs = best[["method", "seeds", "sim_ctr", "sim_ctr_ci", "dwell", "dwell_ci", "coverage", "tail_share", "HR@10", "halluc"]]
ab = pd.concat([ref.assign(kind="reference"), runs.rename(columns={"method": "policy"}).assign(kind="RL, best checkpoint")],
               ignore_index=True)
save_table(ab, nb.out, f"nb07_ab_test_{nb.profile}")
pairs = [(m.name, "nll") for m in methods if m.name != "nll"] + [("adagrpo", "random"), ("adagrpo", "mix(1)")] + \
        [(m.match, m.name) for m in methods if m.match]        # each reliability gate minus its matched control
tests, pooled = paired_tests_both(nb.prof, rows, pairs, 10, cache_dir)
save_table(pooled, nb.out, f"nb07_ab_paired_{nb.profile}")
ab.round(4)

# %%
pooled[["method", "reference", "checkpoint", "seeds", "sim_ctr_diff", "sim_ctr_seed_ci", "sim_ctr_diff_share_below_0",
        "sim_ctr_diff_p_seed_holm", "sim_ctr_diff_hboot_low", "sim_ctr_diff_hboot_high", "sim_ctr_fixedseeds_boot_low",
        "sim_ctr_fixedseeds_boot_high", "diff", "diff_p_seed_holm", "p_holm"]].round(4)

# %% [markdown]
# ## 2. Reward sources: the ranker, the truth, and the truth with known noise on rare items

# %%
sources = source_rewards(nb.noise_levels)    # the ranker, the truth, the truth with noise on rare items
rmethods = source_methods(nb.mix_lams)       # nll, the mixtures, adagrpo, random
rrows = reward_sources(nb.prof, sources, rmethods, **nb.run_args)
rsum = pd.concat([summarize(g).assign(reward=r) for r, g in rrows.groupby("reward", sort=False)], ignore_index=True)
cols = ["reward", "method", "checkpoint", "seeds"] + [c for m in ("HR@10", "NDCG@10", "halluc", "sim_ctr", "dwell", "admission_rate")
                                                     for c in (m, m + "_ci")]
save_table(rsum[cols], nb.out, f"nb07_rewards_{nb.profile}")
gaps = zero_truth_noise(gap_to_best_mixture(rrows))   # the truth reward has noise 0
noise_curve = gaps[gaps.reward != "ranker"]
save_table(gaps, nb.out, f"nb07_noise_gap_{nb.profile}")
save_figure(plots.noise_gap(noise_curve), nb.out, f"nb07_noise_gap_{nb.profile}")
rsum[cols][rsum.checkpoint == "best"].round(4)

# %% [markdown]
# ## 3. The audit: reward accuracy of admitted against rejected samples (reward: the ranker)

# %%
audit = load_audits(rows)
acc = accuracy_table(audit)
save_table(acc, nb.out, f"nb07_audit_{nb.profile}")
roc, curves = diagnostic_roc(audit[audit.method.isin(["adagrpo", "ensemble"])], nb.prof.gate.tau, nb.prof.gate.rho)
save_table(roc, nb.out, f"nb07_roc_{nb.profile}")
save_figure(plots.roc_curves(curves, "adagrpo"), nb.out, f"nb07_roc_{nb.profile}")
bucket, _ = exposure_buckets(get_world(nb.prof.world, cache_dir))
adm = admission_by_bucket(audit, bucket)
save_table(adm, nb.out, f"nb07_admission_by_bucket_{nb.profile}")
save_figure(plots.admission_by_bucket(adm), nb.out, f"nb07_admission_by_bucket_{nb.profile}")
display(roc.round(4))
acc.round(4)

# %% [markdown]
# ## What the numbers say
#
# The text below is generated from the tables above by `adagrpo_core.suite.verdicts`. Nothing in it is typed by hand.

# %%
print("\n".join(ab_audit_verdict(ref, pooled, gaps, acc, roc)))
