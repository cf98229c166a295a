# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · The simulated world and how reliable its ranker is
#
# The world's exposure bias, the semantic IDs, and the SFT policy against the most-popular baseline.
# Then the ranker's reliability by item-exposure bucket: AUC on held-out impressions, and agreement
# with the true utility. Every computation is a call into `adagrpo_core`. This notebook only shows
# the results.
#
# Run it with papermill, e.g. `papermill notebooks/01_world_and_ranker.ipynb out.ipynb -p profile tiny`.

# %% tags=["parameters"]
profile = "quick"          # "tiny", "quick", "paper", "full" or "amazon" (Amazon Beauty)
sequences = None           # any user item item ... file instead: its path (the amazon profile's settings)
out_dir = None             # where tables and figures go; None means the checkout's figures/<profile>/ (coat/ for notebook 09)
cache_dir = None           # artefact cache; None means $ADAGRPO_CACHE, else .cache/ of the checkout
threads = 0                # torch CPU threads; 0 keeps the torch default
jobs = 0                   # processes that build the SFT base and the ranker (at once when 2 or more); 0 means one per CPU core

# %%
from adagrpo_core.suite import plots
from adagrpo_core.data.world import exposure_concentration
from adagrpo_core.suite.experiments import sft_reference
from adagrpo_core.suite.notebook import setup
from adagrpo_core.pipeline import get_ranker, get_sids, get_world
from adagrpo_core.suite.plots import save_figure
from adagrpo_core.reward.reliability import reliability_report
from adagrpo_core.execution import prepare
from adagrpo_core.common.storage import atomic_save_df

nb = setup("01_world_and_ranker", globals())   # checks the parameters first; profile, output folder, jobs
prepare(nb.prof, cache_dir, progress=False, jobs=nb.jobs)   # world, IDs, then SFT base and ranker side by side
world = get_world(nb.prof.world, cache_dir)
sids = get_sids(world, nb.prof.sid, cache_dir)
world.summary()

# %% [markdown]
# ## Exposure bias: impressions are far more concentrated than true demand

# %%
conc = exposure_concentration(world)
atomic_save_df(conc.reset_index(), nb.out / f"nb01_exposure_concentration_{nb.profile}.csv", index=False)
save_figure(plots.exposure_curve(world), nb.out, f"nb01_exposure_{nb.profile}")
conc.round(3)

# %% [markdown]
# ## Semantic IDs and the SFT policy

# %%
print(f"{sids.length} tokens per item, codebooks {sids.codebook_sizes}, "
      f"collisions before the uniqueness token: {sids.collisions_before_uniqueness}")
ref = sft_reference(nb.prof, cache_dir)
atomic_save_df(ref, nb.out / f"nb01_sft_vs_most_popular_{nb.profile}.csv", index=False)
ref[["method", "HR@5", "HR@10", "HR@20", "NDCG@10", "halluc"] + [c for c in ("HR@10_unc", "halluc_unc") if c in ref]].round(4)

# %% [markdown]
# ## Ranker reliability by item exposure (bucket 0 = rarest)

# %%
ranker = get_ranker(world, nb.prof.ranker, cache_dir)
report = reliability_report(world, ranker)
for name, df in report.items():
    atomic_save_df(df.reset_index() if df.index.name else df, nb.out / f"nb01_ranker_{name}_{nb.profile}.csv", index=False)
save_figure(plots.ranker_pairwise(report["pairwise"]), nb.out, f"nb01_ranker_pairwise_{nb.profile}")
report["truth"].round(3)

# %%
report["pairwise"].round(3)
