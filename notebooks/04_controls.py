# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Controls: is it the gate's choice of samples, or just how many it admits?
#
# AdaGRPO admits a sample to the GRPO term only when the policy finds it hard and the ranker can
# tell its target from the negatives. The controls separate *which* samples are admitted from *how
# many*:
#
# * **random (per step)**: Bernoulli gate at AdaGRPO's admission rate of the same step.
# * **random (mean)**: at AdaGRPO's overall mean rate.
# * **inverse**: exactly the samples AdaGRPO rejects.
# * **difficulty-only** and **discriminability-only**: one diagnostic each (ablations).
# * **oracle(t)**: admit when the ranker orders the sample's rollouts like the true utility does
#   (rank agreement >= t), which only the simulated world allows.
# * **grpo**: pure GRPO, no NLL term.
#
# Runs share the folder of notebook 03, so AdaGRPO, random (per step), inverse and oracle(0.5) are
# reused from there when they exist.
#
# Run it with papermill: `papermill notebooks/04_controls.ipynb out.ipynb -p profile tiny -y "seeds: [0]"`.

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
oracle_thresholds = None   # None means the profile list: quick 0.5 only, paper 0.5 0.8 0.9
hr_k = 10                  # K of the paired HR@K tests and the plots (5, 10 or 20)

# %%
from adagrpo_core.suite import plots
from adagrpo_core.suite.experiments import (
    control_methods,
    main_results,
    paired_tests_both,
    read_steps,
)
from adagrpo_core.suite.notebook import setup
from adagrpo_core.suite.plots import save_figure
from adagrpo_core.suite.tables import save_table
from adagrpo_core.suite.verdicts import controls_verdict

nb = setup("04_controls", globals())   # checks the parameters first; profile, output folder, runs, lists
methods = control_methods(nb.oracle_thresholds, nb.prof.gate.oracle_threshold, nb.prof.is_simulated)   # no oracle on real data
rows, summary = main_results(nb.prof, methods=methods, **nb.run_args)
save_table(summary, nb.out, f"nb04_controls_{nb.profile}")
names = [m.name for m in methods]
cols = ["method", "checkpoint", "seeds"] + [c for m in (f"HR@{hr_k}", "NDCG@10", "halluc", "admission_rate")
                                            for c in (m, m + "_ci")]
summary[cols].round(4)

# %% [markdown]
# ## The random controls track AdaGRPO's admission rate

# %%
logs = read_steps(rows)
save_figure(plots.admission_rates(logs), nb.out, f"nb04_admission_rates_{nb.profile}")

# %% [markdown]
# ## HR@K against admission rate

# %%
save_figure(plots.metric_vs_admission(summary, f"HR@{hr_k}", rows=rows), nb.out, f"nb04_hr{hr_k}_vs_admission_{nb.profile}")

# %% [markdown]
# ## Paired tests: AdaGRPO against each control

# %%
pairs = [("adagrpo", n) for n in names if n != "adagrpo"]
tests, pooled = paired_tests_both(nb.prof, rows, pairs, hr_k, cache_dir)
save_table(tests, nb.out, f"nb04_paired_tests_{nb.profile}")
save_table(pooled, nb.out, f"nb04_paired_tests_pooled_holm_{nb.profile}")
pooled.round(4)

# %% [markdown]
# ## What the numbers say
#
# The text below is generated from the tables above by `adagrpo_core.suite.verdicts`. Nothing in it is typed by hand.

# %%
print("\n".join(controls_verdict(summary, pooled, names, hr_k)))
