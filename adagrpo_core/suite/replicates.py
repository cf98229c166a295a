"""Where the spread of an answer comes from: a crossed design of reward-model replicates x policy
seeds at the headline, and its variance components.

Replicate r trains its own ranker (and ensemble) from seeds spawned from r
(``Profile.for_reward_seed``); each of R replicates is crossed with the same P policy seeds, so a
comparison's value per cell (r, p) is a paired difference of two methods trained with ranker r and
seed p. ``eval.stats.variance_components`` splits its variance into the ranker's, the policy
seed's and the residual (their interaction, not separable with one run per cell); the users'
share is the sampling variance of a cell's mean over its test users. The intervals over
replicates that an answer needs follow from the total (``replicates_needed``).

    python scripts/replicate_pilot.py --profile paper --rankers 10 --seeds 0 1
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..common.machine import check_one_kind, kind_digest, machine_kind
from ..configs import Profile
from ..eval.audit import load_audits
from ..eval.evaluate import ctr_path
from ..eval.stats import mean_ci, mixed_model_row_variance, replicates_needed, variance_components
from ..runs import RunSpec, plan_runs
from .analysis_plan import PLAN
from .comparisons import best_mixture, one_kind
from .phase import phase_methods
from .plots import save_figure
from .stratified import run_stratified
from .tables import save_table

HEADLINE = ["nll", "mix(0.1)", "mix(0.5)", "mix(1)", "adagrpo", "random"]
"""The headline's methods (notebook 03's answer point): every mixture the best one is chosen among."""

COMPARISONS = [("(c)", "adagrpo", "random", "sim_ctr"), ("(b)", "adagrpo", "mix(0.5)", "sim_ctr"),
               ("(b), best mixture", "adagrpo", "best mixture", "sim_ctr"), ("AdaGRPO - NLL", "adagrpo", "nll", "sim_ctr"),
               ("(c), HR@10", "adagrpo", "random", "HR@10"), ("(b), HR@10", "adagrpo", "mix(0.5)", "HR@10")]
"""(label, method, reference, metric): the paired differences decomposed; "best mixture" is the
mixture chosen on each cell's own validation HR@10."""


def crossed_plan(profile: Profile, rankers, seeds, out_root, methods=None) -> list[RunSpec]:
    """Every method x (ranker replicate, policy seed) cell; continued NLL, which reads no reward,
    once per seed."""
    methods = methods or phase_methods(HEADLINE)
    specs = [s for r in rankers for s in plan_runs(profile, methods, seeds, out_root, reward_seed=r)]
    return list({s.out_dir: s for s in specs}.values())


def cell_values(rows: pd.DataFrame, checkpoint: str = "best") -> pd.DataFrame:
    """One row per (ranker, seed) cell and comparison: the paired difference, the sampling variance
    of the cell's mean over its test users (sim CTR; NaN for HR@10), and which mixture the cell's
    validation chose. Continued NLL (one run per seed) is the reference of every ranker."""
    one_kind(rows, "cell_values")
    sub = rows[rows.checkpoint == checkpoint]
    nll = sub[sub.method == "nll"].set_index("seed")
    out = []
    for (r, p), g in sub[sub.reward_seed >= 0].groupby(["reward_seed", "seed"]):
        cell = pd.concat([g, nll.loc[[p]].reset_index()], ignore_index=True)
        by = cell.set_index("method")
        best = best_mixture(cell)
        for label, m, ref, metric in COMPARISONS:
            ref = best if ref == "best mixture" else ref
            diff = float(by.loc[m, metric] - by.loc[ref, metric])
            users = np.nan
            if metric == "sim_ctr":
                a, b = (np.load(ctr_path(by.loc[x, "run_dir"], checkpoint)) for x in (m, ref))
                users = float(np.var(a - b, ddof=1) / len(a))
            out.append({"comparison": label, "metric": metric, "ranker": int(r), "seed": int(p), "value": diff,
                        "users_var": users, "best_mixture": best})
    return pd.DataFrame(out)


def audit_cells(rows: pd.DataFrame) -> pd.DataFrame:
    """Answer (d) per cell: rank agreement with the truth of AdaGRPO's admitted minus rejected samples."""
    ada = rows[rows.method == "adagrpo"].drop_duplicates("run_dir")
    out = []
    for i in range(len(ada)):
        one = ada.iloc[[i]]
        a = load_audits(one)
        adm = a.gate.astype(bool)
        out.append({"comparison": "(d)", "metric": "agreement", "ranker": int(one.reward_seed.iloc[0]),
                    "seed": int(one.seed.iloc[0]), "value": float(a[adm].agreement.mean() - a[~adm].agreement.mean()),
                    "users_var": np.nan, "best_mixture": ""})
    return pd.DataFrame(out)


def variance_table(cells: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """Per comparison: the mean over cells with a t-interval over rankers (each ranker's mean over
    its seeds), the share of cells below 0, the variance components with bootstrap intervals
    (ANOVA estimator; the mixed model's ranker variance beside it), the mean users' variance, the
    ranker's share of one cell's variance, and the replicates the answer's smallest effect of
    interest needs (analysis_plan.py; one-sided 5%, power 0.8)."""
    out = []
    for (label, metric), g in cells.groupby(["comparison", "metric"], sort=False):
        y = g.pivot(index="ranker", columns="seed", values="value").dropna()
        if y.shape[0] < 2 or y.shape[1] < 2:     # a cell without a value (an audit with no admitted sample)
            out.append({"comparison": label, "metric": metric, "rankers": y.shape[0], "seeds": y.shape[1],
                        "estimator": "too few complete cells"})
            continue
        vc = variance_components(y.to_numpy(), n_boot=n_boot)
        mm, mm_resid, conv = mixed_model_row_variance(y.to_numpy())
        mean, ci = mean_ci(y.mean(axis=1))
        plan = PLAN.get(label.split(",")[0])
        delta = plan.delta if plan is not None and plan.delta and metric in ("sim_ctr", "agreement") else np.nan
        row = {"comparison": label, "metric": metric, "rankers": y.shape[0], "seeds": y.shape[1],
               "mean": float(g.value.mean()), "mean_ci_over_rankers": ci, "share_below_0": float((g.value < 0).mean())}
        for k in ("row", "col", "resid", "total", "share_row"):
            name = {"row": "var_ranker", "col": "var_seed", "resid": "var_resid", "total": "var_total",
                    "share_row": "ranker_share"}[k]
            row[name], row[name + "_low"], row[name + "_high"] = vc[k]
        row.update(var_users=float(g.users_var.mean()), var_ranker_mixedlm=mm, mixedlm_converged=conv,
                   estimator="ANOVA (method of moments); MixedLM REML beside it" + ("" if mm > 0 else ", at the boundary"),
                   delta=delta, replicates_needed=replicates_needed(vc["total"][0], delta) if delta == delta else np.nan)
        out.append(row)
    return pd.DataFrame(out)


def cells_figure(cells: pd.DataFrame):
    """One panel per comparison: every cell's difference against its ranker, one marker per policy
    seed, each ranker's mean as a bar, 0 dashed."""
    groups = list(cells.groupby(["comparison", "metric"], sort=False))
    fig, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups), 3.2), squeeze=False)
    for ax, ((label, metric), g) in zip(axes[0], groups):
        means = g.groupby("ranker").value.mean()
        ax.bar(means.index, means.values, color="0.85", width=0.7, label="ranker mean")
        for seed, s in g.groupby("seed"):
            ax.plot(s.ranker + (seed - g.seed.mean()) * 0.2, s.value, "o", ms=4, label=f"policy seed {seed}")
        ax.axhline(0, color="k", ls="--", lw=0.8)
        ax.set_title(f"{label}\n{metric}", fontsize=9)
        ax.set_xlabel("ranker replicate")
    axes[0][0].set_ylabel("paired difference")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def mixture_choices(cells: pd.DataFrame) -> pd.DataFrame:
    """How often each mixture is the one a cell's validation chose."""
    c = cells[cells.comparison == COMPARISONS[0][0]].best_mixture.value_counts()
    return pd.DataFrame({"mixture": c.index, "cells": c.values, "share": c.values / c.sum()})


def stratified_by_ranker(profile: Profile, rankers, cache_dir=None, where=(("difficulty_q", "Q2"), ("discrim_q", "Q2"))):
    """Answer (a) per reward-model replicate: the stratified analysis of the SFT base (notebook 02)
    with replicate r's ranker re-sorting the candidates, one row per ranker (the RM influence of the
    ``where`` cell of Table 3 with its bootstrap interval over samples), then a ``mean`` row: the
    mean over rankers with its t-interval, and the share of rankers below 0."""
    out = []
    for r in rankers:
        _, tables = run_stratified(profile.for_reward_seed(r), cache_dir=cache_dir, progress=False)
        t3 = tables["table3_difficulty_x_discriminability"]
        keep = np.ones(len(t3), bool)
        for col, want in where:
            keep &= t3[col].astype(str).str.startswith(want).to_numpy()
        row = t3[keep].iloc[0]
        out.append({"ranker": int(r), "n": int(row["n"]), "rm_influence": float(row["rm_influence"]),
                    "ci_low": float(row["ci_low"]), "ci_high": float(row["ci_high"])})
    df = pd.DataFrame(out).assign(machine_kind=kind_digest(machine_kind(threads=1)))   # the rankers trained here
    mean, ci = mean_ci(df.rm_influence)
    return pd.concat([df, pd.DataFrame([{"ranker": "mean", "n": int(df.n.mean()), "rm_influence": mean,
                                         "ci_low": mean - ci, "ci_high": mean + ci,
                                         "share_below_0": float((df.rm_influence < 0).mean()),
                                         "machine_kind": df.machine_kind.iloc[0]}])], ignore_index=True)


def write_outputs(rows: pd.DataFrame, out: Path, profile: str, n_boot: int = 2000) -> dict:
    """The pilot's tables and figure under ``out``; returns them."""
    cells = pd.concat([cell_values(rows), audit_cells(rows)], ignore_index=True)
    table, choices = variance_table(cells, n_boot), mixture_choices(cells)
    kind = check_one_kind(rows.get("machine_kind", pd.Series(dtype=str)), "the crossed design")
    for t in (cells, table, choices):
        t["machine_kind"] = kind or "not recorded"
    save_table(cells, out, f"replicates_cells_{profile}")
    save_table(table, out, f"replicates_variance_{profile}")
    save_table(choices, out, f"replicates_best_mixture_{profile}")
    save_figure(cells_figure(cells), out, f"replicates_cells_{profile}")
    return {"cells": cells, "variance": table, "choices": choices}


VARIANCE_START, VARIANCE_END = "<!-- replicates:start -->", "<!-- replicates:end -->"
VARIANCE_TABLE = "paper/replicates_variance_paper.csv"


def variance_block(figures) -> str:
    """RESULTS.md's generated block of the replicate pilot (``cli answers`` writes it): per
    comparison the mean over cells with its t-interval over rankers, the variance components with
    their intervals, the ranker's share and the replicates its smallest effect needs."""
    path = Path(figures) / VARIANCE_TABLE
    if not path.is_file():
        return f"(no {VARIANCE_TABLE} yet: python scripts/replicate_pilot.py --profile paper)"
    t = pd.read_csv(path)
    t = t[t.estimator != "too few complete cells"]
    head = ["comparison", "cells (rankers x seeds)", "mean ± t over rankers", "ranker share [95%]",
            "var ranker", "var seed", "var rest", "var users", "replicates for delta"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in t.itertuples():
        need = "" if pd.isna(r.replicates_needed) else f"{int(r.replicates_needed)} (delta {r.delta:g})"
        users = "" if pd.isna(r.var_users) else f"{r.var_users:.2e}"
        lines.append(f"| {r.comparison} ({r.metric}) | {int(r.rankers)} x {int(r.seeds)} | {r.mean:+.4f} ± "
                     f"{r.mean_ci_over_rankers:.4f} | {r.ranker_share:.2f} [{r.ranker_share_low:.2f}, "
                     f"{r.ranker_share_high:.2f}] | {r.var_ranker:.2e} | {r.var_seed:.2e} | {r.var_resid:.2e} | "
                     f"{users} | {need} |")
    return "\n".join(lines)
