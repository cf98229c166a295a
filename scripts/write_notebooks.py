"""Write the thin notebooks of notebooks/ (committed without outputs): python scripts/write_notebooks.py"""
import nbformat as nbf
from pathlib import Path

NB = Path(__file__).resolve().parents[1] / "notebooks"

def md(s): return nbf.v4.new_markdown_cell(s.strip("\n"))
def code(s, params=False):
    c = nbf.v4.new_code_cell(s.strip("\n"))
    if params:
        c.metadata["tags"] = ["parameters"]
    return c

def write(name, cells):
    for i, c in enumerate(cells):
        c.source = c.source.replace("__NB__", name[:-len(".ipynb")])
        c.id = f"cell-{i:02d}"            # stable ids: regenerating changes only what changed
    nb = nbf.v4.new_notebook()
    nb.cells = cells
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    nbf.write(nb, NB / name)

COMMON = '''
profile = "quick"          # "tiny", "quick", "paper", "full" or "amazon" (Amazon Beauty)
sequences = None           # any user item item ... file instead: its path (the amazon profile's settings)
out_dir = None             # where tables and figures go; None means figures/ of the checkout
cache_dir = None           # artefact cache; None means $ADAGRPO_CACHE, else .cache/ of the checkout
threads = 0                # torch CPU threads; 0 keeps the torch default
'''
RUNS_TEMPLATE = '''runs_dir = None            # run folders <runs_dir>/<profile>/seed<k>/<method>/; None means runs/ of the checkout
{seeds}
steps = 0                  # RL steps; 0 keeps the profile default
jobs = 0                   # runs in parallel, one torch thread each; 0 means one per CPU core
scheduler = None           # a Dask scheduler address such as tcp://host:8786; None runs here
'''
RUNS = RUNS_TEMPLATE.format(seeds="seeds = [0, 1, 2]          # training seeds")
# notebook 03: the profile's seeds (experiments.SUITE_DEFAULTS["main_seeds"])
RUNS_PROFILE_SEEDS = RUNS_TEMPLATE.format(
    seeds="seeds = None               # training seeds; None means the profile's: 5 on paper and full, else 3")
SAYS = md('''
## What the numbers say

The text below is generated from the tables above. Nothing in it is typed by hand.
''')

# ------------------------------------------------------------------ 01
write("01_world_and_ranker.ipynb", [
    md('''
# 01 · The simulated world and how reliable its ranker is

The world's exposure bias, the semantic IDs, and the SFT policy against the most-popular baseline.
Then the ranker's reliability by item-exposure bucket: AUC on held-out impressions, and agreement
with the true utility. Every computation is a call into `adagrpo_core`. This notebook only shows
the results.

Run it with papermill, e.g. `papermill notebooks/01_world_and_ranker.ipynb out.ipynb -p profile tiny`.
'''),
    code(COMMON + '''jobs = 0                   # processes that build the SFT base and the ranker (at once when 2 or more); 0 means one per CPU core
''', params=True),
    code('''
import os
from pathlib import Path
import torch
from adagrpo_core import plots
from adagrpo_core.configs import check_notebook_params
from adagrpo_core.data.world import exposure_concentration
from adagrpo_core.experiments import sft_reference
from adagrpo_core.pipeline import get_ranker, get_sids, get_world, notebook_profile
from adagrpo_core.reward.reliability import reliability_report
from adagrpo_core.notebook import output_dir
from adagrpo_core.plots import save_figure
from adagrpo_core.storage import atomic_save_df

check_notebook_params(**{k: v for k, v in globals().items() if not k.startswith("_")})   # before any work
if threads:
    torch.set_num_threads(threads)
prof = notebook_profile(profile, sequences, cache_dir)   # sequences: a file, the amazon settings
profile = prof.name          # tables under figures/<dataset name>/ on real data
out = output_dir("__NB__", out_dir, profile, globals())   # sweeps and smoke runs get their own folder
out.mkdir(parents=True, exist_ok=True)
from adagrpo_core.runs import prepare
prepare(prof, cache_dir, progress=False, jobs=jobs or os.cpu_count())   # world, IDs, then SFT base and ranker side by side
world = get_world(prof.world, cache_dir)
sids = get_sids(world, prof.sid, cache_dir)
world.summary()
'''),
    md("## Exposure bias: impressions are far more concentrated than true demand"),
    code('''
conc = exposure_concentration(world)
atomic_save_df(conc.reset_index(), out / f"nb01_exposure_concentration_{profile}.csv", index=False)
save_figure(plots.exposure_curve(world), out, f"nb01_exposure_{profile}")
conc.round(3)
'''),
    md("## Semantic IDs and the SFT policy"),
    code('''
print(f"{sids.length} tokens per item, codebooks {sids.codebook_sizes}, "
      f"collisions before the uniqueness token: {sids.collisions_before_uniqueness}")
ref = sft_reference(prof, cache_dir)
atomic_save_df(ref, out / f"nb01_sft_vs_most_popular_{profile}.csv", index=False)
ref[["method", "HR@5", "HR@10", "HR@20", "NDCG@10", "halluc"] + [c for c in ("HR@10_unc", "halluc_unc") if c in ref]].round(4)
'''),
    md("## Ranker reliability by item exposure (bucket 0 = rarest)"),
    code('''
ranker = get_ranker(world, prof.ranker, cache_dir)
report = reliability_report(world, ranker)
for name, df in report.items():
    atomic_save_df(df.reset_index() if df.index.name else df, out / f"nb01_ranker_{name}_{profile}.csv", index=False)
save_figure(plots.ranker_pairwise(report["pairwise"]), out, f"nb01_ranker_pairwise_{profile}")
report["truth"].round(3)
'''),
    code('report["pairwise"].round(3)'),
])

# ------------------------------------------------------------------ 02
write("02_stratified_analysis.ipynb", [
    md('''
# 02 · Where does the ranker help? The stratified analysis (paper Tables 1-3)

For every test sample, trie-constrained beam search returns the policy's top-N valid candidates
("LLM order"). The ranker re-sorts the same candidates ("RM order"). **RM influence** is the change
in HR@K from that re-sort: +1 when the re-sort brings the target into the top K, -1 when it pushes
it out. On the simulated world the true utility can re-sort them as well ("truth order"). That
shows what a perfect ranker would add, which the paper could not measure.

* **Table 1**: the aggregate influence. The paper reports it near zero.
* **Table 2**: influence by policy difficulty: quantiles of the target's log-likelihood under the
  policy, and the target's rank in LLM order.
* **Table 3**: influence by difficulty × discriminability. Discriminability is the ranker's AUC
  of the target against the other candidates. The paper finds the gain concentrated in the
  hard-and-discriminable cells.

Every cell reports n, a bootstrap CI and an exact McNemar test on the paired hits. A
linear-probability model adds the interaction. Discriminability uses the same ranker scores that
do the re-sort, so influence and discriminability are linked by construction. The paper defines
the strata the same way. The policy is the SFT base by default; `run_dir` stratifies any run's
checkpoint instead (e.g. `-p run_dir ../runs/quick/seed0/adagrpo-<key>`, the folder of a run). The per-sample frame is saved
too, and the stratum explorer at the end shows a few samples of one cell.

Run it with papermill: `papermill notebooks/02_stratified_analysis.ipynb out.ipynb -p profile tiny`.
'''),
    code(COMMON + '''run_dir = None             # a run folder holding best.pt / final.pt; None means the SFT base
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
''', params=True),
    code('''
from pathlib import Path
import torch
from adagrpo_core import plots
from adagrpo_core.configs import check_notebook_params
from adagrpo_core.pipeline import notebook_profile
from adagrpo_core.eval.strata import StrataConfig
from adagrpo_core.stratified import explore_stratum, run_stratified
from adagrpo_core.notebook import output_dir
from adagrpo_core.plots import save_figure
from adagrpo_core.storage import atomic_save_df
from adagrpo_core.tables import save_table

check_notebook_params(**{k: v for k, v in globals().items() if not k.startswith("_")})   # before any work
if threads:
    torch.set_num_threads(threads)
torch.manual_seed(seed)
cfg = StrataConfig(top_n=top_n, k=k, difficulty_bins=difficulty_bins, discrim_bins=discrim_bins,
                   n_boot=n_boot, seed=seed)
prof = notebook_profile(profile, sequences, cache_dir)   # sequences: a file, the amazon settings
profile = prof.name          # tables under figures/<dataset name>/ on real data
out = output_dir("__NB__", out_dir, profile, globals())   # sweeps and smoke runs get their own folder
df, tables = run_stratified(prof, cfg, cache_dir, split, checkpoint, run_dir)
tag = f"{profile}_{split}" + ("" if run_dir is None else f"_{Path(run_dir).parent.name}_{Path(run_dir).name}")
atomic_save_df(df, out / f"nb02_samples_{tag}.csv", index=False)
print(f"{len(df)} {split} samples; target among the top-{top_n} candidates for {(df.llm_rank >= 0).mean():.1%}")
if "hit_truth" not in df:
    print("This dataset has no true utility: the truth-order columns are absent. Its ranker learned from "
          "semi-synthetic exposure (observed clicks against popularity-biased negatives).")
'''),
    md("## Table 1: aggregate RM influence"),
    code('''
t1 = tables["table1_aggregate"]
save_table(t1, out, f"nb02_table1_aggregate_{tag}")
t1.round(4)
'''),
    md("## Table 2: RM influence by policy difficulty"),
    code('''
t2, t2r = tables["table2_difficulty"], tables["table2_llm_rank"]
save_table(t2, out, f"nb02_table2_difficulty_{tag}")
save_table(t2r, out, f"nb02_table2_llm_rank_{tag}")
save_figure(plots.influence_by_difficulty(t2, t2r, k), out, f"nb02_influence_by_difficulty_{tag}")
display(t2.round(4))
t2r.round(4)
'''),
    md("## Table 3: RM influence by difficulty × discriminability"),
    code('''
t3 = tables["table3_difficulty_x_discriminability"]
save_table(t3, out, f"nb02_table3_difficulty_x_discriminability_{tag}")
save_figure(plots.influence_heatmap(t3, k), out, f"nb02_influence_heatmap_{tag}")
t3.round(4)
'''),
    md('''
## Linear-probability model of the hit change

`delta ~ difficulty * discriminability`, both standardised, on the samples whose target is among the candidates (OLS, HC3 standard errors).
'''),
    code('''
reg = tables["regression"]   # empty when there are too few samples (a tiny world)
if len(reg):
    save_table(reg, out, f"nb02_regression_{tag}")
reg.round(4)
'''),
    md('''
## Stratum explorer

A few samples of the cell (`explore_difficulty_q`, `explore_discrim_q`): the history (item ids with
their category), the target, and the candidates in LLM order with the policy's log-likelihood, the
ranker's score and rank (RM order) and, on the simulated world, the true click probability.
'''),
    code('''
for ex in explore_stratum(prof, df, explore_difficulty_q, explore_discrim_q, n_examples, cfg, cache_dir,
                          split, checkpoint, run_dir, seed):
    print(f"sample {ex['sample']} (user {ex['user']}): target {ex['target']}; history: {', '.join(ex['history'])}")
    display(ex["candidates"].round(4))
'''),
    SAYS,
    code('''
a = t1.iloc[0]
print(f"Aggregate: HR@{k} {a[f'HR@{k}_llm']:.4f} in LLM order vs {a[f'HR@{k}_rm']:.4f} after the ranker's re-sort; "
      f"influence {a.rm_influence:+.4f} [{a.ci_low:+.4f}, {a.ci_high:+.4f}], McNemar p = {a.mcnemar_p:.3g} "
      f"({int(a.llm_only_hits)} hits lost, {int(a.rm_only_hits)} gained).")
if "truth_influence" in a:
    print(f"A perfect ranker (true utility) would change HR@{k} by {a.truth_influence:+.4f}.")
cells = t3[t3.n >= 20]
if len(cells):
    best, worst = cells.loc[cells.rm_influence.idxmax()], cells.loc[cells.rm_influence.idxmin()]
    for name, c in (("largest gain", best), ("largest loss", worst)):
        print(f"{name}: difficulty {c.difficulty_q}, discriminability {c.discrim_q}: {c.rm_influence:+.4f} "
              f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}], n = {int(c.n)}, McNemar p = {c.mcnemar_p:.3g}")
'''),
])

SETUP_RL = '''
import os
from pathlib import Path
import numpy as np
import pandas as pd
import torch
from adagrpo_core import plots
from adagrpo_core.configs import check_notebook_params
from adagrpo_core.experiments import {imports}
from adagrpo_core.pipeline import notebook_profile
from adagrpo_core.notebook import output_dir
from adagrpo_core.paths import default_runs_dir
from adagrpo_core.plots import save_figure
from adagrpo_core.tables import save_table

check_notebook_params(**{{k: v for k, v in globals().items() if not k.startswith("_")}})   # before any work
if threads:
    torch.set_num_threads(threads)
prof = notebook_profile(profile, sequences, cache_dir).with_rl_steps(steps)   # sequences: a file, the amazon settings
profile = prof.name          # tables under figures/<dataset name>/ on real data
jobs = jobs or os.cpu_count()
out = output_dir("__NB__", out_dir, profile, globals())   # sweeps and smoke runs get their own folder
root = (Path(runs_dir) if runs_dir else default_runs_dir()) / profile
'''

# ------------------------------------------------------------------ 03
write("03_main_results.ipynb", [
    md('''
# 03 · Main results: every method from one SFT base, several seeds

Continued NLL, fixed NLL-GRPO mixtures, AdaGRPO and its controls are trained from the same cached
SFT base with the same cached ranker as reward, for several seeds. Each run keeps its best
checkpoint (chosen on validation HR@10) and its final one, and both are evaluated on test. Cells
are means over seeds with 95% t-intervals. Exact McNemar tests then compare per-user hits of two
methods trained with the same seed, with a Holm correction over the comparisons. A run that has
finished is reused, so re-running this notebook only trains what is missing.

Run it with papermill: `papermill notebooks/03_main_results.ipynb out.ipynb -p profile tiny -y "seeds: [0]"`.
'''),
    code(COMMON + RUNS_PROFILE_SEEDS + '''reference_pairs = [["adagrpo", "random"], ["adagrpo", "nll"], ["adagrpo", "mix(0.5)"], ["adagrpo", "inverse"]]
hr_k = 10                  # K of the paired HR@K tests and the plots (5, 10 or 20)
''', params=True),
    code(SETUP_RL.format(imports="main_results, paired_tests_both, read_steps, suite_default") + '''
seeds = suite_default(profile, "main_seeds", seeds)
rows, summary = main_results(prof, seeds=seeds, out_root=root, cache_dir=cache_dir, jobs=jobs, scheduler=scheduler)
save_table(rows.drop(columns=["run_dir", "train_seconds"]), out, f"nb03_main_results_rows_{profile}")   # no paths, no timings
save_table(summary, out, f"nb03_main_results_{profile}")
cols = ["method", "checkpoint", "seeds"] + [c for m in (f"HR@{hr_k}", "NDCG@10", "halluc", "HR@10_constrained", "admission_rate")
                                            for c in (m, m + "_ci")]
summary[cols].round(4)
'''),
    md("## HR@K by method (mean ± 95% t-interval over seeds)"),
    code('''
names = list(dict.fromkeys(summary.method))
save_figure(plots.metric_by_method(summary, rows, f"HR@{hr_k}"), out, f"nb03_hr{hr_k}_by_method_{profile}")
'''),
    md("## Training curves: admission rate, NLL and reward (mean over seeds)"),
    code('''
logs = read_steps(rows)
save_figure(plots.training_curves(logs), out, f"nb03_training_curves_{profile}")
'''),
    md("## Paired tests: the same users, the same seed, two methods"),
    code('''
pairs = [tuple(p) for p in reference_pairs if all(m in names for m in p)]
tests, pooled = paired_tests_both(prof, rows, pairs, hr_k, cache_dir)
save_table(tests, out, f"nb03_paired_tests_{profile}")
save_table(pooled, out, f"nb03_paired_tests_pooled_holm_{profile}")
tests.round(4)
'''),
    SAYS,
    code('''
best = summary[summary.checkpoint == "best"].set_index("method")
m = f"HR@{hr_k}"
top = best[m].idxmax()
print(f"Best-checkpoint {m}: highest {top} {best.loc[top, m]:.4f} ± {best.loc[top, m + '_ci']:.4f}; "
      f"range over methods {best[m].min():.4f} to {best[m].max():.4f} ({len(seeds)} seeds).")
for _, r in pooled.iterrows():
    verdict = "significant" if r.p_holm < 0.05 else "not significant"
    print(f"{r.method} vs {r.reference} ({r.checkpoint}): diff {r['diff']:+.4f}, discordant hits "
          f"{int(r.method_only_hits)}/{int(r.reference_only_hits)}, pooled McNemar p = {r.mcnemar_p:.3g}, "
          f"Holm-adjusted over {len(pooled)} tests {r.p_holm:.3g} ({verdict} at 0.05)")
'''),
    md("## Real data: a second reward, SASRec's score"),
    code('''
# On a real dataset the ranker is a click model fit to semi-synthetic exposure. For contrast, the same
# gate with SASRec's next-item logit as the reward (as MiniOneRec's sasrec reward); nll is shared.
if not prof.is_simulated:
    from dataclasses import replace
    from adagrpo_core.experiments import MethodSpec, reward_sources, summarize
    from adagrpo_core.reward.reward_model import RewardConfig
    sasrec_reward = RewardConfig(source="sasrec", output="logit")
    smethods = [MethodSpec("nll", "nll"), MethodSpec("mix(1)", "mix", grpo={"lam": 1.0}),
                MethodSpec("adagrpo", "adagrpo"), MethodSpec("random", "random")]
    srows = reward_sources(prof, [sasrec_reward], smethods, seeds, root, cache_dir, jobs, scheduler)
    ssum = summarize(srows)
    save_table(ssum, out, f"nb03_sasrec_reward_{profile}")
    stests, spooled = paired_tests_both(replace(prof, reward=sasrec_reward), srows,
                                        [("adagrpo", "random"), ("adagrpo", "nll"), ("adagrpo", "mix(1)")], hr_k, cache_dir)
    save_table(spooled, out, f"nb03_sasrec_reward_paired_{profile}")
    display(ssum[["method", "checkpoint", "seeds", f"HR@{hr_k}", f"HR@{hr_k}_ci", "NDCG@10", "halluc", "admission_rate"]].round(4))
    display(spooled[["method", "reference", "checkpoint", "diff", "mcnemar_p", "p_holm"]].round(4))
else:
    print("The simulated world compares reward sources (ranker, truth, noisy truth) in notebook 07.")
'''),
])

# ------------------------------------------------------------------ 04
write("04_controls.ipynb", [
    md('''
# 04 · Controls: is it the gate's choice of samples, or just how many it admits?

AdaGRPO admits a sample to the GRPO term only when the policy finds it hard and the ranker can
tell its target from the negatives. The controls separate *which* samples are admitted from *how
many*:

* **random (per step)**: Bernoulli gate at AdaGRPO's admission rate of the same step.
* **random (mean)**: at AdaGRPO's overall mean rate.
* **inverse**: exactly the samples AdaGRPO rejects.
* **difficulty-only** and **discriminability-only**: one diagnostic each (ablations).
* **oracle(t)**: admit when the ranker orders the sample's rollouts like the true utility does
  (rank agreement >= t), which only the simulated world allows.
* **grpo**: pure GRPO, no NLL term.

Runs share the folder of notebook 03, so AdaGRPO, random (per step), inverse and oracle(0.5) are
reused from there when they exist.

Run it with papermill: `papermill notebooks/04_controls.ipynb out.ipynb -p profile tiny -y "seeds: [0]"`.
'''),
    code(COMMON + RUNS + '''oracle_thresholds = None    # None means the profile list: quick 0.5 only, paper 0.5 0.8 0.9
hr_k = 10                  # K of the paired HR@K tests and the plots (5, 10 or 20)
''', params=True),
    code(SETUP_RL.format(imports="control_methods, main_results, paired_tests_both, read_steps, suite_default") + '''
oracle_thresholds = suite_default(profile, "oracle_thresholds", oracle_thresholds)
methods = control_methods(oracle_thresholds, prof.gate.oracle_threshold, prof.is_simulated)   # no oracle on real data
rows, summary = main_results(prof, methods=methods, seeds=seeds, out_root=root, cache_dir=cache_dir,
                             jobs=jobs, scheduler=scheduler)
save_table(summary, out, f"nb04_controls_{profile}")
names = [m.name for m in methods]
cols = ["method", "checkpoint", "seeds"] + [c for m in (f"HR@{hr_k}", "NDCG@10", "halluc", "admission_rate")
                                            for c in (m, m + "_ci")]
summary[cols].round(4)
'''),
    md("## The random controls track AdaGRPO's admission rate"),
    code('''
logs = read_steps(rows)
save_figure(plots.admission_rates(logs), out, f"nb04_admission_rates_{profile}")
'''),
    md("## HR@K against admission rate"),
    code('''
save_figure(plots.metric_vs_admission(summary, f"HR@{hr_k}"), out, f"nb04_hr{hr_k}_vs_admission_{profile}")
'''),
    md("## Paired tests: AdaGRPO against each control"),
    code('''
pairs = [("adagrpo", n) for n in names if n != "adagrpo"]
tests, pooled = paired_tests_both(prof, rows, pairs, hr_k, cache_dir)
save_table(tests, out, f"nb04_paired_tests_{profile}")
save_table(pooled, out, f"nb04_paired_tests_pooled_holm_{profile}")
pooled.round(4)
'''),
    SAYS,
    code('''
m = f"HR@{hr_k}"
b = summary[summary.checkpoint == "best"].set_index("method")
print(f"AdaGRPO best-checkpoint {m} {b.loc['adagrpo', m]:.4f} ± {b.loc['adagrpo', m + '_ci']:.4f} "
      f"at admission rate {b.loc['adagrpo', 'admission_rate']:.3f}.")
for n in names[1:]:
    if n in b.index:
        print(f"  {n:<22} {m} {b.loc[n, m]:.4f} ± {b.loc[n, m + '_ci']:.4f}, admission {b.loc[n, 'admission_rate']:.3f}")
sig = pooled[pooled.p_holm < 0.05]
print(f"{len(sig)} of {len(pooled)} pooled paired comparisons are significant after Holm correction"
      + (": " + "; ".join(f"adagrpo vs {r.reference} ({r.checkpoint}, diff {r['diff']:+.4f})" for _, r in sig.iterrows())
         if len(sig) else "."))
'''),
])

# ------------------------------------------------------------------ 06
write("06_frontier.ipynb", [
    md('''
# 06 · The retrieval-validity frontier: fixed mixtures over lambda against AdaGRPO

A fixed NLL-GRPO mixture trades retrieval (HR@10) against validity (the hallucination rate of
unconstrained beam search) through its weight lambda. The paper's claim is that gating moves past
that trade-off: AdaGRPO should sit above the mixture curve. Each point is a mean over seeds with
95% t-intervals, at the best (validation-chosen) and the final checkpoint. Runs are shared with
notebooks 03 and 04, so only new lambdas are trained.

Run it with papermill: `papermill notebooks/06_frontier.ipynb out.ipynb -p profile tiny -y "seeds: [0]"`.
'''),
    code(COMMON + RUNS + '''lams = None                # mixture weights of the GRPO term; None means the profile list: 0.1 0.25 0.5 1 2, real data 0.1 0.5 1
hr_k = 10                  # K of HR@K on the frontier (5, 10 or 20)
''', params=True),
    code(SETUP_RL.format(imports="frontier_methods, main_results, suite_default") + '''
lams = suite_default(profile, "frontier_lams", lams)
rows, summary = main_results(prof, methods=frontier_methods(lams), seeds=seeds, out_root=root, cache_dir=cache_dir,
                             jobs=jobs, scheduler=scheduler)
summary["lam"] = summary.method.map({f"mix({lam:g})": lam for lam in lams})
save_table(summary, out, f"nb06_frontier_{profile}")
save_figure(plots.frontier(summary, f"HR@{hr_k}"), out, f"nb06_frontier_{profile}")
if "sim_ctr" in summary:       # the simulated world: the same frontier for the simulated A/B test's CTR
    save_figure(plots.frontier(summary, "sim_ctr"), out, f"nb06_frontier_ctr_{profile}")
summary[["method", "checkpoint", "seeds", f"HR@{hr_k}", f"HR@{hr_k}_ci", "halluc", "halluc_ci", "NDCG@10"]].round(4)
'''),
    SAYS,
    code('''
for m, ckpt in [(m, c) for m in [f"HR@{hr_k}"] + (["sim_ctr"] if "sim_ctr" in summary else []) for c in ("best", "final")]:
    s = summary[summary.checkpoint == ckpt].set_index("method")
    mix = s[s.lam.notna()]
    a = s.loc["adagrpo"]
    # dominated: some mixture has both a higher HR@K and a lower hallucination rate (point estimates)
    dominating = mix[(mix[m] > a[m]) & (mix.halluc < a.halluc)]
    print(f"{m}, {ckpt}: AdaGRPO {m} {a[m]:.4f} ± {a[m + '_ci']:.4f}, hallucination {a.halluc:.4f}; "
          f"mixtures span {m} {mix[m].min():.4f}-{mix[m].max():.4f} and hallucination "
          f"{mix.halluc.min():.4f}-{mix.halluc.max():.4f}. "
          + ("AdaGRPO is dominated by " + ", ".join(dominating.index) if len(dominating)
             else "No mixture beats AdaGRPO on both axes (point estimates; the intervals overlap)."))
'''),
])
print("ok")

# ------------------------------------------------------------------ 05
write("05_sensitivity.ipynb", [
    md('''
# 05 · Sensitivity: tau, rho, lambda, M and G, each point against its matched controls

One knob at a time moves away from the operating point (`tau`, `rho`, `lam`, `num_negatives`,
`num_generations`), and a tau x rho grid moves both thresholds. Every point trains AdaGRPO, the
random gate at the same per-step admission rates, and the fixed mixture with lambda x p (p =
AdaGRPO's mean admission rate: with `normalize="batch"` that is the GRPO weight AdaGRPO actually
put on a batch). Lambda is swept again with `normalize="admitted"`. Gains are paired per seed
(same SFT base, same test users) with 95% t-intervals over seeds.

The quick and tiny profiles use reduced grids (every table says which grid it used); the paper
profile uses the full ones. Every knob is a papermill parameter, e.g.
`papermill notebooks/05_sensitivity.ipynb out.ipynb -p tau 0.75`; runs that exist are reused.
'''),
    code(COMMON + RUNS + '''tau = 0.5                  # operating point: difficulty threshold
rho = 0.5                  # operating point: discriminability threshold
lam = 1.0                  # operating point: weight of the GRPO term
num_negatives = 5          # operating point: M in-batch negatives
num_generations = 8        # operating point: G rollouts per sample
grids = None               # one-at-a-time grids {knob: [values]}; None means the profile grids
hr_k = 10                  # K of HR@K (5, 10 or 20)
''', params=True),
    code(SETUP_RL.format(imports="main_results") + '''
from adagrpo_core.sweeps import default_grids, knob_table, operating_point, sweep_methods, sweep_table
prof = operating_point(prof, tau=tau, rho=rho, lam=lam, num_negatives=num_negatives, num_generations=num_generations)
one_at_a_time, tau_rho, modes = default_grids(profile)
if grids is not None:
    one_at_a_time = grids
methods, points = sweep_methods(one_at_a_time, tau_rho, modes)
print(f"{len(points)} points, {len(methods)} methods x {len(seeds)} seeds; grids: {one_at_a_time}, "
      f"tau x rho {tau_rho}, lambda also under normalize={modes}")
rows, summary = main_results(prof, methods=methods, seeds=seeds, out_root=root, cache_dir=cache_dir,
                             jobs=jobs, scheduler=scheduler)
table = sweep_table(rows, points, f"HR@{hr_k}")
grid_note = "reduced grid" if profile in ("quick", "tiny") else "full grid"
table.insert(0, "grid", grid_note)
'''),
    md("## One knob at a time"),
    code('''
for knob in ["tau", "rho"] + [k for k in one_at_a_time if k not in ("tau", "rho")]:
    t = knob_table(table, knob)   # tau and rho read off the tau x rho grid when the profile has no one-knob sweep of them
    if t.empty:
        continue
    save_table(t, out, f"nb05_sensitivity_{knob}_{profile}")
    save_figure(plots.sweep_curve(t, knob, f"HR@{hr_k}"), out, f"nb05_sensitivity_{knob}_{profile}")
    display(t.round(4))
lam_norm = table[table.sweep == "lam_normalize"].drop(columns=["sweep"]).dropna(axis=1, how="all")
if len(lam_norm):
    save_table(lam_norm, out, f"nb05_sensitivity_lam_normalize_{profile}")
    display(lam_norm.round(4))
'''),
    md("## tau x rho"),
    code('''
grid = table[table.sweep == "tau_rho"].drop(columns=["sweep"]).dropna(axis=1, how="all")
save_table(grid, out, f"nb05_tau_rho_{profile}")
panels = ("admission_rate", f"HR@{hr_k}_ada", "gain_vs_random") + (("sim_ctr_ada", "ctr_gain_vs_random") if "sim_ctr_ada" in table else ())
save_figure(plots.tau_rho_heatmaps(table, panels), out, f"nb05_tau_rho_{profile}")
grid.round(4)
'''),
    md("## Selective RL or less RL? The gain over random gating at the same rate, across every point"),
    code('''
save_figure(plots.gain_vs_admission(table, f"HR@{hr_k}"), out, f"nb05_gain_vs_admission_{profile}")
if "ctr_gain_vs_random" in table:
    save_figure(plots.gain_vs_admission(table, "simulated CTR", column="ctr_gain_vs_random"), out,
                f"nb05_ctr_gain_vs_admission_{profile}")
'''),
    SAYS,
    code('''
ok = table.dropna(subset=["gain_vs_random"])
lo, hi = ok.gain_vs_random - ok.gain_vs_random_ci.fillna(np.inf), ok.gain_vs_random + ok.gain_vs_random_ci.fillna(np.inf)
win, lose = ok[lo > 0], ok[hi < 0]
print(f"{len(ok)} points with a matched random control ({len(seeds)} seeds, {grid_note}).")
print(f"AdaGRPO beats random gating at the same rate (95% CI above 0) at {len(win)} points"
      + (": " + "; ".join(f"{r.sweep} {r.get('tau', '')} {r.get('rho', '')} gain {r.gain_vs_random:+.4f}" for _, r in win.iterrows()) if len(win) else "")
      + f"; loses at {len(lose)}; the rest are within noise.")
mp = ok.dropna(subset=["gain_vs_mixp"])
print(f"Against the rate-matched mixture: above at {int(((mp.gain_vs_mixp - mp.gain_vs_mixp_ci.fillna(np.inf)) > 0).sum())} "
      f"of {len(mp)} points, below at {int(((mp.gain_vs_mixp + mp.gain_vs_mixp_ci.fillna(np.inf)) < 0).sum())}.")
if "ctr_gain_vs_random" in ok:
    c = ok.dropna(subset=["ctr_gain_vs_random"])
    up = c[(c.ctr_gain_vs_random - c.ctr_gain_vs_random_ci.fillna(np.inf)) > 0]
    down = c[(c.ctr_gain_vs_random + c.ctr_gain_vs_random_ci.fillna(np.inf)) < 0]
    print(f"Simulated CTR: AdaGRPO above random gating at the same rate at {len(up)} of {len(c)} points, below at {len(down)}.")
'''),
])

# ------------------------------------------------------------------ 07
write("07_ab_test_and_audit.ipynb", [
    md('''
# 07 · The simulated A/B test, reward sources and the audit of admitted samples

Three questions the paper could not answer with its proprietary data, answered here with the
simulated world's known truth:

1. **The simulated A/B test.** Each policy's top 10 (trie-constrained beams, as they would be
   served) is shown as a slate to every test user state under the world's own cascade click
   model: expected CTR (exact, no sampling), a dwell proxy (the expected true utility of the
   clicked item, given a click), catalogue coverage and the share of tail items. Reference rows:
   the logging policy (Monte Carlo), most popular, SFT, the ranker's own top 10 and the top 10 by
   true utility (the ceiling). Differences between methods are paired bootstrap CIs over users.
2. **Reward sources.** The same methods with the ranker's reward, the true click probability
   (noise-free) and the truth with known noise on rarely exposed items: is the AdaGRPO minus
   best-fixed-mixture gap larger where the reward is noisier?
3. **The audit.** Do the gates admit the samples whose reward orders the rollouts like the
   truth? Reward accuracy of admitted against rejected samples, the ROC of d, a and the gate as
   predictors, and admission by the target's exposure bucket.

Run it with papermill: `papermill notebooks/07_ab_test_and_audit.ipynb out.ipynb -p profile tiny -y "seeds: [0]"`.
'''),
    code(COMMON + RUNS + '''noise_levels = None        # noisy_truth: std of the utility error on the rarest items; None means quick 3 only, paper 1 and 3
mix_lams = None            # the fixed mixtures of the reward-source comparison; None means quick 1 only, paper 0.5 and 1
logging_samples = 20       # Monte Carlo slates per user for the logging policy
''', params=True),
    code(SETUP_RL.format(imports="MethodSpec, ab_reference, gap_to_best_mixture, main_results, paired_tests_both, reward_sources, suite_default") + '''
from dataclasses import replace
from adagrpo_core.data.impressions import exposure_buckets
from adagrpo_core.eval.audit import accuracy_table, admission_by_bucket, diagnostic_roc, load_audits
from adagrpo_core.pipeline import get_world
from adagrpo_core.reward.reward_model import RewardConfig
if not prof.is_simulated:
    raise SystemExit("notebook 07 needs the simulated world's true utility; real datasets have none")
methods = [MethodSpec("nll", "nll"), MethodSpec("mix(1)", "mix", grpo={"lam": 1.0}), MethodSpec("adagrpo", "adagrpo"),
           MethodSpec("random", "random"), MethodSpec("inverse", "inverse"), MethodSpec("difficulty-only", "difficulty"),
           MethodSpec("discriminability-only", "discriminability"), MethodSpec("oracle", "oracle")]
rows, summary = main_results(prof, methods=methods, seeds=seeds, out_root=root, cache_dir=cache_dir,
                             jobs=jobs, scheduler=scheduler)
'''),
    md("## 1. The simulated A/B test (reward: the ranker)"),
    code('''
ref, ref_ctr = ab_reference(prof, cache_dir, logging_samples)
best = summary[summary.checkpoint == "best"]
runs = best[["method", "seeds", "sim_ctr", "sim_ctr_ci", "dwell", "dwell_ci", "coverage", "tail_share", "HR@10", "halluc"]]
ab = pd.concat([ref.assign(kind="reference"), runs.rename(columns={"method": "policy"}).assign(kind="RL, best checkpoint")],
               ignore_index=True)
save_table(ab, out, f"nb07_ab_test_{profile}")
pairs = [(m.name, "nll") for m in methods if m.name != "nll"] + [("adagrpo", "random"), ("adagrpo", "mix(1)")]
tests, pooled = paired_tests_both(prof, rows, pairs, 10, cache_dir)
save_table(pooled, out, f"nb07_ab_paired_{profile}")
ab.round(4)
'''),
    code('''
pooled[["method", "reference", "checkpoint", "sim_ctr_diff", "sim_ctr_ci_low", "sim_ctr_ci_high", "diff", "p_holm"]].round(4)
'''),
    md("## 2. Reward sources: the ranker, the truth, and the truth with known noise on rare items"),
    code('''
noise_levels = suite_default(profile, "noise_levels", noise_levels)
mix_lams = suite_default(profile, "mix_lams", mix_lams)
sources = [RewardConfig(source="ranker"), RewardConfig(source="truth")] + \\
          [RewardConfig(source="noisy_truth", noise=n) for n in noise_levels]
rmethods = [MethodSpec("nll", "nll")] + [MethodSpec(f"mix({l:g})", "mix", grpo={"lam": l}) for l in mix_lams] + \\
           [MethodSpec("adagrpo", "adagrpo"), MethodSpec("random", "random")]
rrows = reward_sources(prof, sources, rmethods, seeds, root, cache_dir, jobs, scheduler)
from adagrpo_core.experiments import summarize
rsum = pd.concat([summarize(g).assign(reward=r) for r, g in rrows.groupby("reward", sort=False)], ignore_index=True)
cols = ["reward", "method", "checkpoint", "seeds"] + [c for m in ("HR@10", "NDCG@10", "halluc", "sim_ctr", "dwell", "admission_rate")
                                                     for c in (m, m + "_ci")]
save_table(rsum[cols], out, f"nb07_rewards_{profile}")
gaps = gap_to_best_mixture(rrows)
gaps["noise"] = gaps.apply(lambda r: 0.0 if r.reward == "truth" else r.noise, axis=1)
noise_curve = gaps[gaps.reward != "ranker"]
save_table(gaps, out, f"nb07_noise_gap_{profile}")
save_figure(plots.noise_gap(noise_curve), out, f"nb07_noise_gap_{profile}")
rsum[cols][rsum.checkpoint == "best"].round(4)
'''),
    md("## 3. The audit: reward accuracy of admitted against rejected samples (reward: the ranker)"),
    code('''
audit = load_audits(rows)
acc = accuracy_table(audit)
save_table(acc, out, f"nb07_audit_{profile}")
roc, curves = diagnostic_roc(audit[audit.method == "adagrpo"], prof.gate.tau, prof.gate.rho)
save_table(roc, out, f"nb07_roc_{profile}")
save_figure(plots.roc_curves(curves, "adagrpo"), out, f"nb07_roc_{profile}")
bucket, _ = exposure_buckets(get_world(prof.world, cache_dir))
adm = admission_by_bucket(audit, bucket)
save_table(adm, out, f"nb07_admission_by_bucket_{profile}")
save_figure(plots.admission_by_bucket(adm), out, f"nb07_admission_by_bucket_{profile}")
display(roc.round(4))
acc.round(4)
'''),
    SAYS,
    code('''
t = ref.set_index("policy")["sim_ctr"]
print(f"Simulated CTR: logging {t['logging']:.4f}, most popular {t['most-popular']:.4f}, SFT {t['sft']:.4f}, "
      f"ranker top-10 {t['ranker top-10']:.4f}, ceiling {t['ceiling (true utility)']:.4f}.")
for _, r in pooled[(pooled.checkpoint == "best") & (pooled.reference == "nll")].iterrows():
    if "sim_ctr_diff" in r and pd.notna(r.sim_ctr_diff):
        gap = t["ceiling (true utility)"] - t["sft"]
        print(f"  {r.method:<22} sim CTR vs nll {r.sim_ctr_diff:+.4f} [{r.sim_ctr_ci_low:+.4f}, {r.sim_ctr_ci_high:+.4f}]"
              f" over users, ± {r.sim_ctr_seed_ci:.4f} over seeds (a gain worth {r.sim_ctr_diff / gap:.1%} of the "
              f"SFT-to-ceiling gap)")
for _, r in gaps.iterrows():
    print(f"reward {r.reward}: {r.metric} AdaGRPO - {r.best_mixture} = {r.gap:+.4f} ± {r.gap_ci:.4f} ({int(r.seeds)} seeds)")
a = acc.set_index("method")
for m in a.index:
    print(f"{m:<22} admits {a.loc[m, 'admitted']:.3f}; rank agreement admitted {a.loc[m, 'agree_adm']:.3f} vs rejected "
          f"{a.loc[m, 'agree_rej']:.3f} (difference {a.loc[m, 'agree_diff']:+.3f} ± {a.loc[m, 'agree_diff_ci']:.3f})")
'''),
])
