"""``figures/README.md``: one line for every committed table and figure (what it shows, what makes
it, how many seeds), generated from the folder so that it cannot drift from it.

    python -m adagrpo_core.cli index            # rewrites figures/README.md

A table's files (``.csv``, ``.md``, ``.png``, ``.pdf`` of one stem) share a line. The seeds are
read from the table's ``seeds`` column where it has one. A stem no rule below describes raises
ValueError, so a new kind of table has to be described here before the index can be written.
"""
from __future__ import annotations

import re
import subprocess
from collections import defaultdict
from pathlib import Path

import pandas as pd

from ..common.storage import atomic_write_text
from .glance import ANSWERS

NOTEBOOKS = {"01": "01_world_and_ranker", "02": "02_stratified_analysis", "03": "03_main_results",
             "04": "04_controls", "05": "05_sensitivity", "06": "06_frontier", "07": "07_ab_test_and_audit",
             "08": "08_reward_phase_diagram", "09": "09_real_users_coat"}

DIAL = r"(?P<dial>bias|noise|ranker_log)(?P<rel>_reliability)?"
KINDS = [   # (stem without its profile suffix, what it shows); the first match wins
    (r"nb01_exposure_concentration", "exposure concentration of the logged slates against true demand"),
    (r"nb01_exposure", "figure: item exposure against true demand"),
    (r"nb01_ranker_(auc|truth|pairwise)", "the learned ranker's reliability by item exposure ({0})"),
    (r"nb01_sft_vs_most_popular", "the SFT base against most-popular and the other reference baselines"),
    (r"nb02_table1_aggregate", "the paper's Table 1: influence of each sample, aggregated"),
    (r"nb02_table2_(difficulty|llm_rank)", "the paper's Table 2: influence by {0} stratum"),
    (r"nb02_table3_difficulty_x_discriminability", "the paper's Table 3: difficulty x discriminability"),
    (r"nb02_regression", "regression of a sample's influence on its strata"),
    (r"nb02_samples", "the per-sample frame the stratified tables are read from"),
    (r"nb02_influence_(by_difficulty|heatmap)", "figure: influence {0}"),
    (r"nb03_headline", "the headline: each answer method against the SFT base and continued NLL, seed-level statistics"),
    (r"nb03_main_results_rows", "every run of the main comparison (methods x seeds, best and final checkpoint)"),
    (r"nb03_main_results", "the main comparison: HR, NDCG, hallucination, sim CTR, dwell, admission per method"),
    (r"nb03_gain_over_base", "each method's gain over the SFT base"),
    (r"nb03_paired_tests_pooled_holm", "paired tests of the main comparison, Holm over the pooled table"),
    (r"nb03_paired_tests", "paired tests of the main comparison"),
    (r"nb03_sasrec_reward_gain_over_base", "SASRec's score as the reward: gain over the SFT base"),
    (r"nb03_sasrec_reward_paired", "SASRec's score as the reward: paired tests"),
    (r"nb03_sasrec_reward", "SASRec's score as the reward"),
    (r"nb03_hr10_by_method", "figure: HR@10 by method, each seed a point"),
    (r"nb03_training_curves", "figure: validation curves of the RL runs"),
    (r"nb04_controls", "AdaGRPO against its controls (random, inverse, difficulty-only, discriminability-only, oracle)"),
    (r"nb04_paired_tests_pooled_holm", "paired tests of the controls, Holm over the pooled table"),
    (r"nb04_paired_tests", "paired tests of the controls"),
    (r"nb04_admission_rates", "figure: admission rate per method over training"),
    (r"nb04_hr10_vs_admission", "figure: HR@10 against the admission rate"),
    (r"nb05_sensitivity_(.+)", "sensitivity to {0}"),
    (r"nb05_tau_rho", "the tau x rho grid (table and heat map)"),
    (r"nb05_(ctr_)?gain_vs_admission", "figure: gain against the admission rate over the sweeps"),
    (r"nb06_frontier_ctr", "the retrieval-validity frontier in sim CTR"),
    (r"nb06_frontier", "the retrieval-validity frontier: mixtures over lambda against AdaGRPO"),
    (r"nb07_ab_test", "the simulated A/B test, with the logging policy and reference rows"),
    (r"nb07_ab_paired", "the A/B test's paired comparisons, seed-level statistics"),
    (r"nb07_rewards", "methods x reward sources (ranker, truth, truth with known noise)"),
    (r"nb07_noise_gap", "each gate minus the best mixture against the reward's noise"),
    (r"nb07_audit", "the audit: reward accuracy of admitted against rejected samples"),
    (r"nb07_roc", "ROC of the truth-free diagnostics at finding the accurate rewards"),
    (r"nb07_admission_by_bucket", "what each gate admits, by exposure bucket"),
    (rf"nb08_phase_{DIAL}", "the phase diagram along the {dial} dial ({set}): gain over continued NLL per value"),
    (rf"nb08_crossovers_{DIAL}", "where each method crosses continued NLL along the {dial} dial ({set})"),
    (rf"nb08_vs_random_{DIAL}", "each gate minus its matched control along the {dial} dial ({set})"),
    (rf"nb08_mixture_gap_{DIAL}", "each gate minus the best mixture on validation along the {dial} dial ({set})"),
    (rf"nb08_disagreement_{DIAL}", "where HR@10 and sim CTR disagree along the {dial} dial ({set})"),
    (rf"nb08_diagnostic_auc_{DIAL}", "AUC of the diagnostics d, a, e, u on each gate's samples ({dial} dial, {set})"),
    (rf"nb08_admission_{DIAL}", "figure: admission rate along the {dial} dial ({set})"),
    (r"nb08_ranker_placement", "the default and retrained rankers on the reward-error axes"),
    (r"nb09_(.+)", "Coat, real users: {0}"),
    (r"world_calibration", "the simulated world's calibration"),
    (r"world_exposure_concentration", "exposure concentration of the simulated world"),
    (r"sft_vs_most_popular", "the SFT base against most-popular"),
    (r"ranker_reliability_(auc|truth|pairwise)", "the ranker's reliability by exposure bias ({0})"),
    (r"semantic_ids(_beauty)?", "semantic IDs compared (Beauty: this project's against published ones)"),
    (r"sasrec_beauty", "SASRec on Beauty, the reference sequential recommender"),
    (r"rl_lr_grid_curves", "the RL learning-rate grid: validation curves"),
    (r"rl_lr_grid_vs_base", "the RL learning-rate grid against the SFT base"),
    (r"rl_lr_grid", "the RL learning-rate grid, chosen on validation"),
    (r"sft_large_grid", "the larger SFT decoder's grid (GPU)"),
    (r"sft_(curve|test|validation_curve)(.*)", "SFT {0}{1}"),
    (r"replicates_variance", "variance components of (b), (c), (d): reward-model replicates x policy seeds, crossed"),
    (r"replicates_cells", "every (reward-model replicate, policy seed) cell's paired difference"),
    (r"replicates_best_mixture", "how often each mixture is the one a replicate's validation chose"),
    (r"replicates_stratified", "answer (a) per reward-model replicate: RM influence in the hard, discriminable cell"),
    (r"README", "notes on this folder"),
]
SCRIPTS = {"ranker_reliability": "scripts/ranker_report.py", "semantic_ids": "scripts/compare_semantic_ids.py",
           "sasrec_beauty": "scripts/sasrec_beauty.py", "rl_lr_grid": "scripts/rl_lr_grid.py",
           "sft_": "scripts/sft_amazon.py", "world_": "python -m adagrpo_core.cli reproduce",
           "sft_vs_most_popular": "python -m adagrpo_core.cli reproduce", "replicates_": "scripts/replicate_pilot.py"}
_LONGEST_FIRST = sorted(SCRIPTS, key=len, reverse=True)   # a stem's maker is its longest matching prefix
STUDIES = {"nb07_10seeds": "ten-seed runs of the audit's methods (one noise level; command in RESULTS)",
           "nb08_10seeds": "ten-seed runs at the answer values of the bias dial (command in RESULTS)",
           "nb08_5seeds": "five seeds of the reliability set on the 2-core AVX2 machine (another CPU kind)",
           "nb08_combined_ensemble": "the combined gate with the ensemble check (ranker_log dial)",
           "gpu": "runs on one GPU", "sweeps": "non-default notebook parameters (the folder names them)"}
PROFILE_SUFFIX = re.compile(r"_(quick|paper|full|tiny|amazon)(_test|_val)?(?=(_large.*)?$)")


def describe(stem: str) -> tuple[str, str]:
    """(what the table or figure shows, what makes it) of a file stem; ValueError when unknown."""
    base = PROFILE_SUFFIX.sub("", stem, count=1)
    for pattern, text in KINDS:
        m = re.fullmatch(pattern, base)
        if m:
            named = m.groupdict()
            words = text.format(*[g.replace("_", " ") if g else "" for g in m.groups()],
                                dial=named.get("dial", ""), set="reliability gates" if named.get("rel") else "main set")
            nb = re.match(r"nb(\d\d)_", base)
            maker = f"notebook {NOTEBOOKS[nb.group(1)]}" if nb else \
                next((SCRIPTS[k] for k in _LONGEST_FIRST if base.startswith(k)), "")
            return words, maker
    raise ValueError(f"figures: no description of the file stem {stem!r}; add a rule to figure_index.KINDS")


def _range(values) -> str:
    """'3' or '3-10': the range of the whole numbers in ``values`` ('' without any)."""
    n = pd.to_numeric(pd.Series(values), errors="coerce").dropna().astype(int)
    if n.empty:
        return ""
    return f"{n.min()}" if n.min() == n.max() else f"{n.min()}-{n.max()}"


def seeds_of(csv: Path) -> str:
    """The seed counts of a table's rows ('3', '3-10'), or '' when it has no ``seeds`` column."""
    try:
        return _range(pd.read_csv(csv, usecols=["seeds"]).seeds)
    except (ValueError, pd.errors.EmptyDataError):
        return ""


NO_RL = ("nb01_", "nb02_", "world_", "sft_", "ranker_reliability", "semantic_ids", "sasrec", "rl_lr_grid_curves")
"""Stems of tables that involve no RL run: their intervals resample samples, users or items."""


POOLED = [(r"nb0[78]_(roc|diagnostic_auc|admission_by_bucket)", "samples pooled over the runs' seeds"),
          (r"nb08_crossovers", "read off the phase table's means over seeds"),
          (r"nb08_disagreement", "the methods' means over seeds"),
          (r"nb08_ranker_placement", "no RL: user states x items"),
          (r"replicates_best_mixture", "the crossed design's cells"),
          (r"nb09_selection", "no RL: chosen on validation ratings")]
"""What a table without a seed column replicates over, by its stem."""


def replicates_of(df: pd.DataFrame, stem: str) -> str:
    """What a table's intervals replicate over, read from the table: its rankers x seeds, its
    ``seeds`` (or ``n_seeds``) counts, the seeds of its ``per_seed`` cells, the distinct values of
    its ``seed`` column; a table of no RL run, or of pooled samples, names its unit instead."""
    if {"rankers", "seeds"} <= set(df.columns):
        return f"{int(df.rankers.max())} rankers x {int(df.seeds.max())} seeds"
    if {"ranker", "seed"} <= set(df.columns):
        return f"{df.ranker.nunique()} rankers x {df.seed.nunique()} seeds"
    for col in ("seeds", "n_seeds"):
        if col in df and _range(df[col]):
            return _range(df[col])
    if "per_seed" in df and df.per_seed.notna().any():     # 'seed:value;...' cells of seed_comparison
        return _range(df.per_seed.dropna().astype(str).map(lambda c: len(c.split(";"))))
    if "seed" in df:
        return str(df.seed.nunique())
    if "ranker" in df:
        return f"{pd.to_numeric(df.ranker, errors='coerce').nunique()} rankers"
    if stem.startswith(NO_RL):
        return "no RL: bootstrap over samples"
    return next((unit for pattern, unit in POOLED if re.match(pattern, stem)), "")


def machine_of(df: pd.DataFrame) -> str:
    """The machine-kind digest a table's run rows recorded (``machine_kind``), or 'not recorded'
    (tables made before runs recorded their kind, or made of no run)."""
    kinds = df["machine_kind"].dropna().unique() if "machine_kind" in df else []
    return ", ".join(sorted(map(str, kinds))) or "not recorded"


def answers_of(rel: str) -> str:
    """The answers (RESULTS.md, (a)-(m)) a file supports: the tables and figures they are read from."""
    stem = Path(rel).with_suffix("").as_posix()
    got = [a.answer for a in ANSWERS if stem in (Path(a.table).with_suffix("").as_posix(),
                                                  Path(a.figure).with_suffix("").as_posix())]
    if Path(stem).name.startswith("replicates_") and stem.startswith("paper/"):
        got += ["(b)", "(c)", "(d)"] if "stratified" not in stem else ["(a)"]
    return ", ".join(dict.fromkeys(got))


def tracked_files(folder: Path) -> list[Path]:
    """The files git tracks under ``folder`` (every file when it is not in a checkout)."""
    folder = Path(folder)
    try:
        out = subprocess.run(["git", "ls-files", "."], cwd=folder, capture_output=True, text=True, check=True).stdout
        files = [folder / line for line in out.splitlines() if line]
    except (subprocess.CalledProcessError, FileNotFoundError):
        files = [p for p in folder.rglob("*") if p.is_file()]
    return sorted(f for f in files if f.name != "README.md" or f.parent != folder)


FOLDER_ORDER = {"paper": 0, "coat": 1, "quick": 2, "amazon": 3}
"""The order of the folders in the index: the paper profile, where the answers live, first."""
LINK_ORDER = ["png", "csv", "md", "pdf"]
"""What a line links: the picture where there is one, else the table."""


def index_text(folder) -> str:
    """The Markdown of ``figures/README.md`` for the files under ``folder``."""
    folder = Path(folder)
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for f in tracked_files(folder):
        rel = f.relative_to(folder)
        groups[(rel.parent.as_posix(), f.stem)].append(f.suffix.lstrip(".") or f.name)
    lines = ["# Tables and figures", "",
             "Generated by `python -m adagrpo_core.cli index` from the files in this folder: one line per table "
             "or figure (its CSV, Markdown, PNG and PDF share the line; the link opens the picture where there is "
             "one), what it shows, the answers of RESULTS.md it supports, what makes it, what its intervals "
             "replicate over (seeds, rankers, or for a table of no RL run its resampling unit) and the machine "
             "kind its run rows recorded. A folder per profile (`paper/` first, `quick/`, `amazon/`) and `coat/` "
             "(notebook 09, real users); sub-studies in named subfolders. A notebook's tables are made by "
             "`bash reproduce.sh <profile>` or by papermill with `-p profile <profile>`.", ""]
    current = None
    order = lambda kv: (FOLDER_ORDER.get(kv[0][0].split("/")[0], len(FOLDER_ORDER)), kv[0])   # noqa: E731
    for (sub, stem), exts in sorted(groups.items(), key=order):
        if sub != current:
            current = sub
            head = sub.split("/")
            study = next((STUDIES[h] for h in reversed(head) if h in STUDIES), "")
            lines += ["", f"## `{sub}/`" + (f": {study}" if study else ""), "",
                      "| file | what it shows | answers | made by | replicates | machine kind |",
                      "| --- | --- | --- | --- | --- | --- |"]
        words, maker = describe(stem)
        exts = sorted(set(exts))
        name = f"{stem}.{exts[0]}" if len(exts) == 1 else f"{stem}.{{{','.join(exts)}}}"
        link = f"{sub}/{stem}.{next(e for e in LINK_ORDER + exts if e in exts)}"
        reps = kind = ""
        if "csv" in exts:
            try:
                df = pd.read_csv(folder / sub / f"{stem}.csv")
            except (ValueError, pd.errors.EmptyDataError):
                df = pd.DataFrame()
            reps, kind = replicates_of(df, stem), machine_of(df)
        lines.append(f"| [{name}]({link}) | {words} | {answers_of(f'{sub}/{stem}')} | {maker} | {reps} | {kind} |")
    return "\n".join(lines) + "\n"


def write_index(folder) -> Path:
    """Write ``<folder>/README.md`` (atomically); returns its path."""
    path = Path(folder) / "README.md"
    atomic_write_text(path, index_text(folder))
    return path
