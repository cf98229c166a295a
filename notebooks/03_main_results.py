# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Main results: every method from one SFT base, several seeds
#
# Continued NLL, fixed NLL-GRPO mixtures, AdaGRPO and its controls are trained from the same cached
# SFT base with the same cached ranker as reward, for several seeds. Each run keeps its best
# checkpoint (chosen on validation HR@10) and its final one, and both are evaluated on test. Cells
# are means over seeds with 95% t-intervals. Exact McNemar tests then compare per-user hits of two
# methods trained with the same seed, with a Holm correction over the comparisons. A run that has
# finished is reused, so re-running this notebook only trains what is missing.
#
# Run it with papermill: `papermill notebooks/03_main_results.ipynb out.ipynb -p profile tiny -y "seeds: [0]"`.

# %% tags=["parameters"]
profile = "quick"          # "tiny", "quick", "paper", "full" or "amazon" (Amazon Beauty)
sequences = None           # any user item item ... file instead: its path (the amazon profile's settings)
out_dir = None             # where tables and figures go; None means the checkout's figures/<profile>/ (coat/ for notebook 09)
cache_dir = None           # artefact cache; None means $ADAGRPO_CACHE, else .cache/ of the checkout
threads = 0                # torch CPU threads; 0 keeps the torch default
runs_dir = None            # run folders <runs_dir>/<profile>/seed<k>/<method>/; None means runs/ of the checkout
seeds = None               # training seeds; None means the profile's (suite.main_seeds): 5 on paper and full, else 3
steps = 0                  # RL steps; 0 keeps the profile default
jobs = 0                   # runs in parallel, one torch thread each; 0 means one per CPU core
scheduler = None           # a Dask scheduler address such as tcp://host:8786; None runs here
batch = 0                  # seeds of one method trained together on a stacked policy (train/batched.py); 0 means the profile's (1: each run alone, the CPU default)
reference_pairs = [["adagrpo", "random"], ["adagrpo", "nll"], ["adagrpo", "mix(0.5)"], ["adagrpo", "inverse"], ["adagrpo", "random(mean)"], ["exposure", "random[exposure]"]]   # paired tests [method, reference]; a pair with an untrained method is skipped (the last two: real data only)
hr_k = 10                  # K of the paired HR@K tests and the plots (5, 10 or 20)

# %%
from dataclasses import replace

from IPython.display import display

from adagrpo_core.suite import plots
from adagrpo_core.suite.experiments import (
    gain_headline,
    gains_over_base,
    main_results,
    paired_tests_both,
    read_steps,
    reward_sources,
    summarize,
)
from adagrpo_core.suite.notebook import setup
from adagrpo_core.suite.plan import sasrec_methods
from adagrpo_core.suite.plots import save_figure
from adagrpo_core.reward.reward_model import RewardConfig
from adagrpo_core.suite.tables import save_table
from adagrpo_core.suite.verdicts import main_results_verdict

nb = setup("03_main_results", globals())   # checks the parameters first; profile, output folder, runs, seeds
rows, summary = main_results(nb.prof, answer="nb03_headline", **nb.run_args)   # the headline's methods also at suite.answer_seeds
save_table(rows.drop(columns=["run_dir", "train_seconds"]), nb.out, f"nb03_main_results_rows_{nb.profile}", note=nb.table_note)   # no paths, no timings
save_table(summary, nb.out, f"nb03_main_results_{nb.profile}", note=nb.table_note)
cols = ["method", "checkpoint", "seeds"] + [c for m in (f"HR@{hr_k}", "NDCG@10", "halluc", "HR@10_constrained", "admission_rate")
                                            for c in (m, m + "_ci")]
summary[cols].round(4)

# %% [markdown]
# ## HR@K by method (mean ± 95% t-interval over seeds)

# %%
names = list(dict.fromkeys(summary.method))
save_figure(plots.metric_by_method(summary, rows, f"HR@{hr_k}"), nb.out, f"nb03_hr{hr_k}_by_method_{nb.profile}")

# %% [markdown]
# ## Training curves: admission rate, NLL and reward (mean over seeds)

# %%
logs = read_steps(rows)
save_figure(plots.training_curves(logs), nb.out, f"nb03_training_curves_{nb.profile}")

# %% [markdown]
# ## Paired tests: the same users, the same seed, two methods

# %%
pairs = [tuple(p) for p in reference_pairs if all(m in names for m in p)]
tests, pooled = paired_tests_both(nb.prof, rows, pairs, hr_k, cache_dir)
save_table(tests, nb.out, f"nb03_paired_tests_{nb.profile}", note=nb.table_note)
save_table(pooled, nb.out, f"nb03_paired_tests_pooled_holm_{nb.profile}", note=nb.table_note)
tests.round(4)

# %% [markdown]
# ## Gains over the SFT base
#
# Every run starts from the same SFT base, which is also its step-0 checkpoint candidate on the
# real-data profiles. The gain of each method is its test HR@10 (and NDCG@10) minus the base's on
# the same users, per seed, with a 95% t-interval over seeds; the exact McNemar test against the
# base pools the seeds (Holm over the methods), and so does the test against continued NLL. The
# headline keeps the base, continued NLL, the best mixture (chosen on validation), AdaGRPO and
# random gating at AdaGRPO's rate.

# %%
gains = gains_over_base(nb.prof, rows, cache_dir, k=hr_k)
save_table(gains, nb.out, f"nb03_gain_over_base_{nb.profile}", note=nb.table_note)
headline = gain_headline(gains, rows)
save_table(headline, nb.out, f"nb03_headline_{nb.profile}", note=nb.table_note)
headline.round(4)

# %% [markdown]
# ## What the numbers say
#
# The text below is generated from the tables above by `adagrpo_core.suite.verdicts`. Nothing in it is typed by hand.

# %%
print("\n".join(main_results_verdict(summary, pooled, hr_k, len(nb.seeds))))

# %% [markdown]
# ## Real data: a second reward, SASRec's score

# %%
# On a real dataset the ranker is a click model fit to semi-synthetic exposure. For contrast, the same
# gate with SASRec's next-item logit as the reward (as MiniOneRec's sasrec reward); nll is shared.
if not nb.prof.is_simulated:
    sasrec_reward = RewardConfig(source="sasrec", output="logit")
    srows = reward_sources(nb.prof, [sasrec_reward], sasrec_methods(), **nb.run_args)   # nll, mix(1), adagrpo, random
    ssum = summarize(srows)
    save_table(ssum, nb.out, f"nb03_sasrec_reward_{nb.profile}", note=nb.table_note)
    stests, spooled = paired_tests_both(replace(nb.prof, reward=sasrec_reward), srows,
                                        [("adagrpo", "random"), ("adagrpo", "nll"), ("adagrpo", "mix(1)")], hr_k, cache_dir)
    save_table(spooled, nb.out, f"nb03_sasrec_reward_paired_{nb.profile}", note=nb.table_note)
    sgains = gains_over_base(replace(nb.prof, reward=sasrec_reward), srows, cache_dir, k=hr_k)
    save_table(sgains, nb.out, f"nb03_sasrec_reward_gain_over_base_{nb.profile}", note=nb.table_note)
    display(sgains.round(4))
    display(ssum[["method", "checkpoint", "seeds", f"HR@{hr_k}", f"HR@{hr_k}_ci", "NDCG@10", "halluc", "admission_rate"]].round(4))
    display(spooled[["method", "reference", "checkpoint", "diff", "mcnemar_p", "p_holm"]].round(4))
else:
    print("The simulated world compares reward sources (ranker, truth, noisy truth) in notebook 07.")
