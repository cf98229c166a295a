# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Where does the ranker help? The stratified analysis (paper Tables 1-3)
#
# For every test sample, trie-constrained beam search returns the policy's top-N valid candidates
# ("LLM order"). The ranker re-sorts the same candidates ("RM order"). **RM influence** is the change
# in HR@K from that re-sort: +1 when the re-sort brings the target into the top K, -1 when it pushes
# it out. On the simulated world the true utility can re-sort them as well ("truth order"). That
# shows what a perfect ranker would add, which the paper could not measure.
#
# * **Table 1**: the aggregate influence. The paper reports it near zero.
# * **Table 2**: influence by policy difficulty: quantiles of the target's log-likelihood under the
#   policy, and the target's rank in LLM order.
# * **Table 3**: influence by difficulty × discriminability. Discriminability is the ranker's AUC
#   of the target against the other candidates. The paper finds the gain concentrated in the
#   hard-and-discriminable cells.
#
# Every cell reports n, a bootstrap CI and an exact McNemar test on the paired hits. A
# linear-probability model adds the interaction. Discriminability uses the same ranker scores that
# do the re-sort, so influence and discriminability are linked by construction. The paper defines
# the strata the same way. The policy is the SFT base by default; `run_dir` stratifies any run's
# checkpoint instead (e.g. `-p run_dir ../runs/quick/seed0/adagrpo-<key>`, the folder of a run). The per-sample frame is saved
# too, and the stratum explorer at the end shows a few samples of one cell.
#
# Run it with papermill: `papermill notebooks/02_stratified_analysis.ipynb out.ipynb -p profile tiny`.

# %% tags=["parameters"]
profile = "quick"          # "tiny", "quick", "paper", "full" or "amazon" (Amazon Beauty)
sequences = None           # any user item item ... file instead: its path (the amazon profile's settings)
out_dir = None             # where tables and figures go; None means the checkout's figures/<profile>/ (coat/ for notebook 09)
cache_dir = None           # artefact cache; None means $ADAGRPO_CACHE, else .cache/ of the checkout
threads = 0                # torch CPU threads; 0 keeps the torch default
run_dir = None             # a run folder holding best.pt / final.pt; None means the SFT base
checkpoint = "best"        # "best" (chosen on validation) or "final"
split = "test"             # "test" or "valid"
top_n = 20                 # candidates per sample (beam width)
k = 10                     # HR@k
difficulty_bins = 4        # quantile bins of the target's log-likelihood
discrim_bins = 2           # quantile bins of discriminability
n_boot = 2000              # bootstrap resamples
seed = 0                   # bootstrap seed
explore_difficulty_q = 2   # stratum explorer: difficulty bin, 1 is the easiest
explore_discrim_q = 2      # stratum explorer: discriminability bin, 1 is the least discriminable
n_examples = 3             # stratum explorer: samples shown

# %%
from pathlib import Path

import torch
from IPython.display import display

from adagrpo_core.suite import plots
from adagrpo_core.eval.strata import StrataConfig
from adagrpo_core.suite.notebook import setup
from adagrpo_core.suite.plots import save_figure
from adagrpo_core.common.storage import atomic_save_df
from adagrpo_core.suite.stratified import explore_stratum, run_stratified
from adagrpo_core.suite.tables import save_table
from adagrpo_core.suite.verdicts import stratified_verdict

nb = setup("02_stratified_analysis", globals())   # checks the parameters first; profile, output folder
torch.manual_seed(seed)
cfg = StrataConfig(top_n=top_n, k=k, difficulty_bins=difficulty_bins, discrim_bins=discrim_bins,
                   n_boot=n_boot, seed=seed)
df, tables = run_stratified(nb.prof, cfg, cache_dir, split, checkpoint, run_dir)
tag = f"{nb.profile}_{split}" + ("" if run_dir is None else f"_{Path(run_dir).parent.name}_{Path(run_dir).name}")
atomic_save_df(df, nb.out / f"nb02_samples_{tag}.csv", index=False)
print(f"{len(df)} {split} samples; target among the top-{top_n} candidates for {(df.llm_rank >= 0).mean():.1%}")
if "hit_truth" not in df:
    print("This dataset has no true utility: the truth-order columns are absent. Its ranker learned from "
          "semi-synthetic exposure (observed clicks against popularity-biased negatives).")

# %% [markdown]
# ## Table 1: aggregate RM influence

# %%
t1 = tables["table1_aggregate"]
save_table(t1, nb.out, f"nb02_table1_aggregate_{tag}", note=nb.table_note)
t1.round(4)

# %% [markdown]
# ## Table 2: RM influence by policy difficulty

# %%
t2, t2r = tables["table2_difficulty"], tables["table2_llm_rank"]
save_table(t2, nb.out, f"nb02_table2_difficulty_{tag}", note=nb.table_note)
save_table(t2r, nb.out, f"nb02_table2_llm_rank_{tag}", note=nb.table_note)
save_figure(plots.influence_by_difficulty(t2, t2r, k), nb.out, f"nb02_influence_by_difficulty_{tag}")
display(t2.round(4))
t2r.round(4)

# %% [markdown]
# ## Table 3: RM influence by difficulty × discriminability

# %%
t3 = tables["table3_difficulty_x_discriminability"]
save_table(t3, nb.out, f"nb02_table3_difficulty_x_discriminability_{tag}", note=nb.table_note)
save_figure(plots.influence_heatmap(t3, k), nb.out, f"nb02_influence_heatmap_{tag}")
t3.round(4)

# %% [markdown]
# ## Linear-probability model of the hit change
#
# `delta ~ difficulty * discriminability`, both standardised, on the samples whose target is among the candidates (OLS, HC3 standard errors).

# %%
reg = tables["regression"]   # empty when there are too few samples (a tiny world)
if len(reg):
    save_table(reg, nb.out, f"nb02_regression_{tag}", note=nb.table_note)
reg.round(4)

# %% [markdown]
# ## Stratum explorer
#
# A few samples of the cell (`explore_difficulty_q`, `explore_discrim_q`): the history (item ids with
# their category), the target, and the candidates in LLM order with the policy's log-likelihood, the
# ranker's score and rank (RM order) and, on the simulated world, the true click probability.

# %%
for ex in explore_stratum(nb.prof, df, explore_difficulty_q, explore_discrim_q, n_examples, cfg, cache_dir,
                          split, checkpoint, run_dir, seed):
    print(f"sample {ex['sample']} (user {ex['user']}): target {ex['target']}; history: {', '.join(ex['history'])}")
    display(ex["candidates"].round(4))

# %% [markdown]
# ## What the numbers say
#
# The text below is generated from the tables above by `adagrpo_core.suite.verdicts`. Nothing in it is typed by hand.

# %%
print("\n".join(stratified_verdict(t1, t3, k)))
