# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · The retrieval-validity frontier: fixed mixtures over lambda against AdaGRPO
#
# A fixed NLL-GRPO mixture trades retrieval (HR@10) against validity (the hallucination rate of
# unconstrained beam search) through its weight lambda. The paper's claim is that gating moves past
# that trade-off: AdaGRPO should sit above the mixture curve. Each point is a mean over seeds with
# 95% t-intervals, at the best (validation-chosen) and the final checkpoint. Runs are shared with
# notebooks 03 and 04, so only new lambdas are trained.
#
# Run it with papermill: `papermill notebooks/06_frontier.ipynb out.ipynb -p profile tiny -y "seeds: [0]"`.

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
lams = None                # mixture weights of the GRPO term; None means the profile list: 0.1 0.25 0.5 1 2, real data 0.1 0.5 1
hr_k = 10                  # K of HR@K on the frontier (5, 10 or 20)

# %%
from adagrpo_core.suite import plots
from adagrpo_core.suite.experiments import frontier_methods, main_results
from adagrpo_core.suite.notebook import setup
from adagrpo_core.suite.plots import save_figure
from adagrpo_core.suite.tables import save_table
from adagrpo_core.suite.verdicts import add_mixture_lam, frontier_verdict

nb = setup("06_frontier", globals())   # checks the parameters first; profile, output folder, runs, lambdas
rows, summary = main_results(nb.prof, methods=frontier_methods(nb.lams), **nb.run_args)
summary = add_mixture_lam(summary)     # a last column lam: each mixture's lambda, NaN for nll and adagrpo
save_table(summary, nb.out, f"nb06_frontier_{nb.profile}", note=nb.table_note)
save_figure(plots.frontier(summary, f"HR@{hr_k}", rows=rows), nb.out, f"nb06_frontier_{nb.profile}")
if "sim_ctr" in summary:       # the simulated world: the same frontier for the simulated A/B test's CTR
    save_figure(plots.frontier(summary, "sim_ctr", rows=rows), nb.out, f"nb06_frontier_ctr_{nb.profile}")
summary[["method", "checkpoint", "seeds", f"HR@{hr_k}", f"HR@{hr_k}_ci", "halluc", "halluc_ci", "NDCG@10"]].round(4)

# %% [markdown]
# ## What the numbers say
#
# The text below is generated from the tables above by `adagrpo_core.suite.verdicts`. Nothing in it is typed by hand.

# %%
print("\n".join(frontier_verdict(summary, hr_k)))
