# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 09 · Real users: is a reward learned from biased feedback less reliable where exposure is low, and do the diagnostics find it? (Coat)
#
# Coat (Schnabel, Swaminathan, Singh, Chandak, Joachims, "Recommendations as Treatments: Debiasing
# Learning and Evaluation", ICML 2016): 290 users rated coats from a catalogue of 300. Each user
# rated 24 coats of their own choosing (self-selected, missing not at random: the feedback a
# deployed recommender learns from) and 16 coats drawn uniformly at random (an unbiased sample of
# the user's preferences). The files are read from a folder (`data_dir`, else `$ADAGRPO_COAT_DIR`)
# and checked by sha256; they are not part of the project. Tables and figures go to `figures/coat/`.
#
# **What this notebook tests, and what it does not.** Coat's ratings have no order within a user:
# there are no sequences, so no semantic-ID policy and no RL here. It tests the premise of AdaGRPO's
# gate on real users: the *reward* and the *reliability diagnostics*, against randomised truth.
#
# * **Rewards**, learned from the self-selected ratings only: the project's ranker (a click model
#   of "positive" = rating >= 4, the user's other self-selected items as an unordered history, the
#   item features as content), `lmf` (logistic matrix factorisation with user and item features)
#   and `mf` (the same factorisation as a rating model). Each naive, and propensity-weighted (IPS)
#   with the dataset's propensities (`ips`) or with item popularity among the self-selected ratings
#   as the propensity (`ips_pop`). Model selection and early stopping read a validation split of the
#   self-selected ratings; the random ratings are never used to fit or select anything.
# * **Candidates**: each user's random items, less those the user also chose to rate (the reward saw
#   those ratings; in Coat they are identical, and they sit on popular items).
# * **Agreement** of a user: pairwise accuracy, the share of the candidates' pairs with different
#   ratings that the reward orders like the ratings (a reward tie counts as wrong).
# * **Accuracy by exposure**: the same pairwise accuracy over pairs whose two items lie in one
#   bucket of exposure (equal-sized buckets of the catalogue by the item's number of self-selected
#   ratings, 0 = rarest), pooled over users.
# * **Diagnostics**, computed as AdaGRPO computes them for a sample's rollouts: **e** the candidates'
#   mean exposure percentile; **u** the mean pairwise Spearman of a K-member bootstrap ensemble of
#   the naive reward over the candidates; **a** for each liked random item as the target (averaged
#   over them), the share of negatives (the other candidates plus M = 5 liked items of other users)
#   the reward scores strictly below it. There is no **d** (no policy). a's targets are the user's
#   liked *random* items, so a reads the ratings that define the agreement; **a_self** is the same
#   share with the user's liked *self-selected* items as targets: truth-free, as AdaGRPO's target
#   is the logged item.
# * **Intervals**: `_ci` is the 95% t-interval half-width over training seeds (a trained model's
#   unit of replication); `fixedseeds_boot_low/high` is a 95% bootstrap over users with the seeds
#   held fixed (the user bootstrap). Sign-flip p-values over n seeds cannot go below 2 / 2^n (0.002 at ten).
#
# Run it with papermill: `ADAGRPO_COAT_DIR=<folder> papermill notebooks/09_real_users_coat.ipynb out.ipynb --cwd notebooks`.

# %% tags=["parameters"]
data_dir = None            # the Coat folder; None means $ADAGRPO_COAT_DIR
verify_sha256 = True       # check every file's sha256 (only the tests' small matrices switch it off)
positive_threshold = 4     # a rating >= this is "positive" (liked)
seeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]   # training seeds (ten: the unit of replication): every reward and ensemble is trained once per seed
members = 5                # K: bootstrap members of the naive reward's ensemble (the diagnostic u)
n_boot = 1000              # draws of every user bootstrap
out_dir = None             # where tables and figures go; None means the checkout's figures/<profile>/ (coat/ for notebook 09)
jobs = 0                   # runs in parallel, one torch thread each; 0 means one per CPU core

# %%
import time

from IPython.display import display

from adagrpo_core.suite import coat_plots
from adagrpo_core.suite.coat_study import notebook_setup, run_study
from adagrpo_core.suite.coat_tables import all_tables
from adagrpo_core.suite.plots import save_figure
from adagrpo_core.suite.tables import save_table
from adagrpo_core.suite.verdicts import coat_verdict

start = time.perf_counter()
data, cfg, out = notebook_setup(data_dir, verify_sha256, positive_threshold, seeds, members, n_boot, out_dir)
study = run_study(data, cfg, jobs=jobs)   # seeds in parallel processes; the same numbers as one process
tables = all_tables(study, data)
for name, table in tables.items():
    if name != "users":        # one row per user and seed: kept in memory, not written
        save_table(table, out, f"nb09_{name}")
print(f"trained {len(tables['runs'])} rewards and {len(cfg.seeds) * len(cfg.diagnostic_kinds) * cfg.members} "
      f"ensemble members in {time.perf_counter() - start:.0f} s")
tables["data"].T

# %% [markdown]
# ## 1. The rewards on the random ratings: naive against IPS

# %%
cols = ["kind", "weighting", "seeds", "auc", "auc_ci", "pair_acc", "pair_acc_ci", "mse", "mse_ci", "mae", "mae_ci"]
display(tables["rewards"][cols].round(4))
tables["ips_vs_naive"].drop(columns="per_seed").round(4)

# %% [markdown]
# ## 2. Accuracy by exposure: where is the reward wrong, and does IPS help there?

# %%
save_figure(coat_plots.accuracy_by_exposure(tables["accuracy_by_exposure"]), out, "nb09_accuracy_by_exposure")
display(tables["rare_gap"].drop(columns="per_seed").round(4))
tables["ips_by_exposure"].drop(columns="per_seed").round(4)

# %% [markdown]
# ## 3. Which diagnostic finds the users the reward orders right?

# %%
save_figure(coat_plots.diagnostic_auc(tables["diagnostic_auc"]), out, "nb09_diagnostic_auc")
save_figure(coat_plots.gate_audit(tables["gate_audit"]), out, "nb09_gate_audit")
display(tables["diagnostic_auc"].drop(columns="per_seed").round(4))
tables["gate_audit"].drop(columns="per_seed").round(4)

# %% [markdown]
# ## What the numbers say
#
# The text below is generated from the tables above by `adagrpo_core.suite.verdicts.coat_verdict`. Nothing in it is typed by hand.

# %%
print("\n".join(coat_verdict(tables)))
