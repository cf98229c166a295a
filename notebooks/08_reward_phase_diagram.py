# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · Where the reward hurts: a reward-error phase diagram
#
# Notebooks 03-07 measured the gate where the reward never hurts: uniform RL with the ranker, the
# truth or the noisy truth all raise the simulated CTR over continued NLL. The paper's premise is
# the other regime, where the reward is "negligible or detrimental" on part of the samples. This
# notebook moves the reward's error along a dial and trains the main methods at each value:
#
# * **bias**: the truth shifted by `bias * z_i`, z_i the item's standardised log train exposure
#   (a systematic popularity error; > 0 over-credits often shown items, < 0 rarely shown ones);
# * **noise**: the truth with zero-mean error on rarely shown items (notebook 07's noisy truth);
# * **ranker_log**: the project's ranker retrained on the same user states' slates re-logged by a
#   logging policy with another exposure bias, on a share of them (users, clicks, SFT base and
#   truth unchanged).
#
# Every reward is placed on one axis: regress (reward logit - true utility) on z_i over test user
# states x all items; the slope is its **effective bias**, the residual std its **effective
# noise**. Gains are over continued NLL, paired per seed: the mean with its t-interval over seeds,
# the share of seeds below 0 and the exact sign-flip p over seeds (Holm over the table). Seeds are
# the unit of replication; `seeds` says how many each row has (the answer points, where an answer
# is decided, run `suite.answer_seeds`: ten on the paper profile, the other rows `suite.seeds`).
#
# Run it with papermill: `papermill notebooks/08_reward_phase_diagram.ipynb out.ipynb -p profile tiny -p dial bias`.

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
dial = None                # "bias", "noise" or "ranker_log"; None means every dial of the profile (quick: bias)
values = None              # the dial's values; None means the profile's (quick bias: 0 and 4)
methods = None             # None means the profile's list of the gate set (quick main: nll, mix(1), adagrpo, random)
gates = "main"             # "main" (AdaGRPO and its controls) or "reliability" (the reliability gates and theirs)
oracle_thresholds = None   # the oracle's rank-agreement thresholds; None means the profile's
log_share = 0.5            # ranker_log: share of the logged slates each retrained ranker learns from
placement_logging_biases = None   # retrained rankers placed beside the default one; None means the profile's
placement_states = 500     # test user states of the placement regression (x every item)

# %%
from IPython.display import display

from adagrpo_core.suite import plots
from adagrpo_core.suite.notebook import setup
from adagrpo_core.suite.phase import DIALS, HIGHLIGHT, answer_table, dial_reward, everywhere_methods, gate_set_methods, phase_diagram, phase_methods, phase_plan, placement
from adagrpo_core.suite.plots import save_figure
from adagrpo_core.reward.reward_model import RewardConfig
from adagrpo_core.suite.tables import save_table
from adagrpo_core.suite.verdicts import phase_verdict, placement_verdict, reliability_verdict

nb = setup("08_reward_phase_diagram", globals())   # checks the parameters first; profile, output folder, runs, lists
if not nb.prof.is_simulated:
    raise SystemExit("notebook 08 needs the simulated world's true utility; real datasets have none")
plan = phase_plan(nb.prof, dial, values, log_share, gates)   # {dial: [values]}, checked before any work
specs = {d: phase_methods(gate_set_methods(nb.prof, gates, d, methods), nb.oracle_thresholds) for d in plan}
sfx = "" if gates == "main" else f"_{gates}"          # nb08_phase_bias_reliability_paper: the reliability set's tables
for d in plan:
    print(f"dial {d}: values {plan[d]}; methods {[m.name for m in specs[d]]}; seeds {nb.seeds} "
          f"(answer points: {nb.prof.suite.answer_seeds})")

# %% [markdown]
# ## Where the rewards sit: the default ranker and retrained rankers

# %%
rankers = [RewardConfig()] + [dial_reward("ranker_log", b, log_share) for b in nb.placement_logging_biases]
place = placement(nb.prof, rankers, cache_dir, placement_states, nb.jobs)
save_table(place, nb.out, f"nb08_ranker_placement_{nb.profile}")
place.round(4)

# %% [markdown]
# ## The diagram, one dial at a time

# %%
results = {}
for d, vals in plan.items():
    t = phase_diagram(nb.prof, d, vals, specs[d], log_share=log_share, n_states=placement_states,
                      answer=answer_table(d, gates), everywhere=everywhere_methods(nb.prof, gates, methods),
                      **nb.run_args)   # the answer points also at suite.answer_seeds; some methods only there
    results[d] = t
    save_table(t["phase"], nb.out, f"nb08_phase_{d}{sfx}_{nb.profile}")
    for name in ("crossovers", "vs_random", "mixture_gap", "disagreement", "diagnostic_auc"):
        if len(t[name]):
            save_table(t[name], nb.out, f"nb08_{name}_{d}{sfx}_{nb.profile}")
    save_figure(plots.phase_diagram(t["phase"], DIALS[d], t["crossovers"], highlight=HIGHLIGHT[gates]), nb.out,
                f"nb08_phase_{d}{sfx}_{nb.profile}")   # the answers' methods in full, the rest faded
    save_figure(plots.phase_admission(t["phase"], DIALS[d]), nb.out, f"nb08_admission_{d}{sfx}_{nb.profile}")
    cols = ["value", "method", "seeds", "sim_ctr_gain", "sim_ctr_gain_ci", "sim_ctr_gain_share_below_0",
            "sim_ctr_gain_p_seed_holm", "HR@10_gain", "HR@10_gain_ci", "admission_rate", "agree_diff", "effective_bias"]
    display(t["phase"][cols].round(4))

# %% [markdown]
# ## What the numbers say
#
# The text below is generated from the tables above by `adagrpo_core.suite.verdicts`. Nothing in it is typed by hand.

# %%
print("\n".join(placement_verdict(place)))
for d, t in results.items():
    print("\n".join(phase_verdict(d, t) + reliability_verdict(d, t)))
