# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Sensitivity: tau, rho, lambda, M and G, each point against its matched controls
#
# One knob at a time moves away from the operating point (`tau`, `rho`, `lam`, `num_negatives`,
# `num_generations`), and a tau x rho grid moves both thresholds. Every point trains AdaGRPO, the
# random gate at the same per-step admission rates, and the fixed mixture with lambda x p (p =
# AdaGRPO's mean admission rate: with `normalize="batch"` that is the GRPO weight AdaGRPO actually
# put on a batch). Lambda is swept again with `normalize="admitted"`. Gains are paired per seed
# (same SFT base, same test users) with 95% t-intervals over seeds.
#
# The quick and tiny profiles use reduced grids (every table says which grid it used); the paper
# profile uses the full ones. The operating point is the profile's own gate and GRPO config unless
# a parameter moves it. Every knob is a papermill parameter, e.g.
# `papermill notebooks/05_sensitivity.ipynb out.ipynb -p tau 0.75`; runs that exist are reused.

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
tau = None                 # operating point: difficulty threshold; None means the profile's gate.tau (0.5)
rho = None                 # operating point: discriminability threshold; None means the profile's gate.rho (0.5)
lam = None                 # operating point: weight of the GRPO term; None means the profile's grpo.lam (1.0)
num_negatives = None       # operating point: M in-batch negatives; None means the profile's gate.num_negatives (5)
num_generations = None     # operating point: G rollouts per sample; None means the profile's grpo.num_generations (8, tiny 4)
grids = None               # one-at-a-time grids {knob: [values]}; None means the profile grids
hr_k = 10                  # K of HR@K (5, 10 or 20)

# %%
from IPython.display import display

from adagrpo_core.suite import plots
from adagrpo_core.suite.experiments import main_results
from adagrpo_core.suite.notebook import setup
from adagrpo_core.suite.plots import save_figure
from adagrpo_core.suite.sweeps import (
    knob_table,
    sensitivity_design,
    sweep_table,
)
from adagrpo_core.suite.tables import save_table
from adagrpo_core.suite.verdicts import sensitivity_verdict

nb = setup("05_sensitivity", globals())   # checks the parameters first; profile, output folder, runs, grids
one_at_a_time = nb.grids
prof, methods, points, tau_rho, modes = sensitivity_design(nb.prof, one_at_a_time, tau=nb.tau, rho=nb.rho, lam=nb.lam,
                                                           num_negatives=nb.num_negatives, num_generations=nb.num_generations)
print(f"{len(points)} points, {len(methods)} methods x {len(nb.seeds)} seeds; grids: {one_at_a_time}, "
      f"tau x rho {tau_rho}, lambda also under normalize={modes}")
rows, summary = main_results(prof, methods=methods, **nb.run_args)
table = sweep_table(rows, points, f"HR@{hr_k}")
grid_note = prof.suite.grid
table.insert(0, "grid", grid_note)

# %% [markdown]
# ## One knob at a time

# %%
for knob in ["tau", "rho"] + [k for k in one_at_a_time if k not in ("tau", "rho")]:
    t = knob_table(table, knob)   # tau and rho read off the tau x rho grid when the profile has no one-knob sweep of them
    if t.empty:
        continue
    save_table(t, nb.out, f"nb05_sensitivity_{knob}_{nb.profile}")
    save_figure(plots.sweep_curve(t, knob, f"HR@{hr_k}"), nb.out, f"nb05_sensitivity_{knob}_{nb.profile}")
    display(t.round(4))
lam_norm = table[table.sweep == "lam_normalize"].drop(columns=["sweep"]).dropna(axis=1, how="all")
if len(lam_norm):
    save_table(lam_norm, nb.out, f"nb05_sensitivity_lam_normalize_{nb.profile}")
    display(lam_norm.round(4))

# %% [markdown]
# ## tau x rho

# %%
grid = table[table.sweep == "tau_rho"].drop(columns=["sweep"]).dropna(axis=1, how="all")
save_table(grid, nb.out, f"nb05_tau_rho_{nb.profile}")
panels = ("admission_rate", f"HR@{hr_k}_ada", "gain_vs_random") + (("sim_ctr_ada", "ctr_gain_vs_random") if "sim_ctr_ada" in table else ())
save_figure(plots.tau_rho_heatmaps(table, panels), nb.out, f"nb05_tau_rho_{nb.profile}")
grid.round(4)

# %% [markdown]
# ## Selective RL or less RL? The gain over random gating at the same rate, across every point

# %%
save_figure(plots.gain_vs_admission(table, f"HR@{hr_k}"), nb.out, f"nb05_gain_vs_admission_{nb.profile}")
if "ctr_gain_vs_random" in table:
    save_figure(plots.gain_vs_admission(table, "simulated CTR", column="ctr_gain_vs_random"), nb.out,
                f"nb05_ctr_gain_vs_admission_{nb.profile}")

# %% [markdown]
# ## What the numbers say
#
# The text below is generated from the tables above by `adagrpo_core.suite.verdicts`. Nothing in it is typed by hand.

# %%
print("\n".join(sensitivity_verdict(table, len(nb.seeds), grid_note)))
