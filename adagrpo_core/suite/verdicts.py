"""What the numbers say: the text of each notebook's summary cell, computed from its tables.

One function per notebook (02 to 08) takes the tables the notebook computed and returns the
lines it prints; nothing in them is typed by hand. The verdicts themselves (which interval
excludes 0, which tests pass Holm, which mixture dominates AdaGRPO) are separate functions, so
that they can be tested on small tables. Two table fixes the notebooks apply before saving live
here too: :func:`add_mixture_lam` (notebook 06) and :func:`zero_truth_noise` (notebook 07).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..common.checks import check_choice
from ..eval.stats import detectable_effect, equivalent, one_sided_bounds
from ..rl.gate import RELIABILITY_METHODS

__all__ = ["ab_audit_verdict", "add_mixture_lam", "coat_verdict", "controls_verdict", "dominating_mixtures", "frontier_verdict",
           "harmful_values", "holm_significant", "interval_excludes_zero", "main_results_verdict", "phase_verdict",
           "placement_verdict", "planned_words", "reliability_verdict", "seed_level", "sensitivity_verdict", "stratified_verdict", "zero_truth_noise"]

_MIXTURE = re.compile(r"^mix\(([^()]*)\)$")


# ---------------------------------------------------------------------------------- table fixes
def add_mixture_lam(summary: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with a last column ``lam``: the fixed mixture's lambda read off its method name
    (``mix(0.5)`` -> 0.5), NaN for every other method (notebook 06's frontier)."""
    def lam(name):
        m = _MIXTURE.match(str(name))
        return float(m.group(1)) if m else np.nan
    out = summary.copy()
    out["lam"] = out.method.map(lam).astype(float)
    return out


def zero_truth_noise(gaps: pd.DataFrame) -> pd.DataFrame:
    """``gaps`` (``experiments.gap_to_best_mixture``) with ``noise`` 0 on the noise-free truth
    reward, so that the noise curve of notebook 07 starts at the truth."""
    out = gaps.copy()
    out["noise"] = np.where(out.reward == "truth", 0.0, out.noise).astype(float)
    return out


# ---------------------------------------------------------------------------------- verdicts
def planned_words(direction: str, mean: float, half_width: float, n: int, delta: float | None = None,
                  yes: str = "yes", no: str = "no", ref: float = 0.0) -> tuple[str, str]:
    """(short answer, its bound) of a planned question (``analysis_plan.py``) from the mean of a
    difference over n replicates and the half-width of its two-sided 95% t-interval.

    ``greater`` ("is it above ``ref``?"): yes when the one-sided 95% lower bound is above ``ref``
    ("at least <lower>"); else no, "at most <upper>", or with ``delta``, "equivalent within
    ±delta" when two one-sided tests put it inside; a no also gives the smallest effect the
    replicates could detect (one-sided 5%, power 0.8). ``less`` mirrors it. ``two-sided``: yes
    when the 95% interval excludes ``ref``. Without an interval (n < 2) nothing is decided."""
    check_choice("direction", direction, ("greater", "less", "two-sided"))
    d = mean - ref
    if n < 2 or not np.isfinite(half_width):
        return "not decided: no interval over replicates", f"{mean:+.4f} (one replicate)"
    if direction == "two-sided":
        side = yes if abs(d) > half_width else no
        return side, f"{mean:+.4f} ± {half_width:.4f}"
    lo, hi = one_sided_bounds(d, half_width, n)
    bound, beyond = (lo, lo > 0) if direction == "greater" else (hi, hi < 0)
    if beyond:
        return yes, f"{'at least' if direction == 'greater' else 'at most'} {bound + ref:+.4f}"
    far = hi if direction == "greater" else lo
    text = f"{'at most' if direction == 'greater' else 'at least'} {far + ref:+.4f}; " \
           f"detectable {detectable_effect(half_width, n):.4f}"
    if delta is not None and equivalent(d, half_width, n, delta):
        return f"{no}: equivalent within ±{delta:g}", text
    return no, text


def holm_significant(pooled: pd.DataFrame, alpha: float = 0.05, column: str = "diff_p_seed_holm") -> pd.DataFrame:
    """The rows of a pooled paired-test table whose Holm-adjusted seed-level p-value (the sign-flip
    test over seeds; ``column``) is below ``alpha``."""
    return pooled[pooled[column] < alpha]


def seed_level(r, col: str, ci_col: str | None = None) -> str:
    """'mean ± t half-width over seeds (n seeds, k below 0, Holm p over seeds)' of the comparison
    ``col`` of one table row (its ``<col>_ci`` or ``ci_col``, ``<col>_share_below_0``,
    ``<col>_p_seed_holm`` and ``seeds`` columns, where present)."""
    ci = r.get(ci_col or f"{col}_ci", np.nan)
    text = f"{r[col]:+.4f}" + (f" ± {ci:.4f}" if pd.notna(ci) else " (one seed)")
    n, share, p = r.get("seeds"), r.get(f"{col}_share_below_0"), r.get(f"{col}_p_seed_holm")
    parts = ([f"{int(n)} seeds"] if pd.notna(n) else []) + \
            ([f"{round(share * n):d} below 0"] if pd.notna(share) and pd.notna(n) else []) + \
            ([f"Holm p {p:.2g}"] if pd.notna(p) else [])
    return text + (f" ({', '.join(parts)})" if parts else "")


def interval_excludes_zero(df: pd.DataFrame, column: str) -> tuple[pd.Series, pd.Series]:
    """(above, below): masks of the rows whose 95% interval ``column`` ± ``column_ci`` lies
    entirely above 0, or entirely below. A missing half-width (one seed) excludes nothing."""
    ci = df[column + "_ci"].fillna(np.inf)
    return (df[column] - ci) > 0, (df[column] + ci) < 0


def dominating_mixtures(summary: pd.DataFrame, metric: str, checkpoint: str, method: str = "adagrpo") -> list[str]:
    """The fixed mixtures (rows with a ``lam``, see :func:`add_mixture_lam`) that beat ``method``
    at ``checkpoint`` on both axes of the frontier: a higher ``metric`` and a lower hallucination
    rate (point estimates)."""
    s = summary[summary.checkpoint == checkpoint].set_index("method")
    mix, a = s[s.lam.notna()], s.loc[method]
    return list(mix[(mix[metric] > a[metric]) & (mix.halluc < a.halluc)].index)


# ---------------------------------------------------------------------------------- 02
def stratified_verdict(t1: pd.DataFrame, t3: pd.DataFrame, k: int, min_n: int = 20) -> list[str]:
    """Notebook 02: the aggregate RM influence (Table 1), what a perfect ranker would change, and
    the cells of Table 3 (with at least ``min_n`` samples) with the largest gain and loss."""
    a = t1.iloc[0]
    lines = [(f"Aggregate: HR@{k} {a[f'HR@{k}_llm']:.4f} in LLM order vs {a[f'HR@{k}_rm']:.4f} after the ranker's "
              f"re-sort; influence {a.rm_influence:+.4f} [{a.ci_low:+.4f}, {a.ci_high:+.4f}], McNemar p = "
              f"{a.mcnemar_p:.3g} ({int(a.llm_only_hits)} hits lost, {int(a.rm_only_hits)} gained).")]
    if "truth_influence" in a:
        lines.append(f"A perfect ranker (true utility) would change HR@{k} by {a.truth_influence:+.4f}.")
    cells = t3[t3.n >= min_n]
    if len(cells):
        best, worst = cells.loc[cells.rm_influence.idxmax()], cells.loc[cells.rm_influence.idxmin()]
        for name, c in (("largest gain", best), ("largest loss", worst)):
            lines.append(f"{name}: difficulty {c.difficulty_q}, discriminability {c.discrim_q}: {c.rm_influence:+.4f} "
                         f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}], n = {int(c.n)}, McNemar p = {c.mcnemar_p:.3g}")
    return lines


# ---------------------------------------------------------------------------------- 03
def main_results_verdict(summary: pd.DataFrame, pooled: pd.DataFrame, hr_k: int, n_seeds: int,
                         alpha: float = 0.05) -> list[str]:
    """Notebook 03: the method with the highest best-checkpoint HR@K, the range over methods, and
    each pooled paired test with its Holm-adjusted verdict at ``alpha``."""
    best = summary[summary.checkpoint == "best"].set_index("method")
    m = f"HR@{hr_k}"
    top = best[m].idxmax()
    lines = [(f"Best-checkpoint {m}: highest {top} {best.loc[top, m]:.4f} ± {best.loc[top, m + '_ci']:.4f}; "
              f"range over methods {best[m].min():.4f} to {best[m].max():.4f} ({n_seeds} seeds).")]
    for _, r in pooled.iterrows():
        verdict = "significant" if r.diff_p_seed_holm < alpha else "not significant"
        lines.append(f"{r.method} vs {r.reference} ({r.checkpoint}): HR@{hr_k} diff {seed_level(r, 'diff', 'diff_seed_ci')}: "
                     f"{verdict} over seeds at {alpha:g} after Holm over {len(pooled)} tests (per-user evidence: "
                     f"discordant hits {int(r.method_only_hits)}/{int(r.reference_only_hits)}, pooled McNemar p = "
                     f"{r.mcnemar_p:.3g})")
    return lines


# ---------------------------------------------------------------------------------- 04
def controls_verdict(summary: pd.DataFrame, pooled: pd.DataFrame, names: list[str], hr_k: int,
                     alpha: float = 0.05) -> list[str]:
    """Notebook 04: AdaGRPO's best-checkpoint HR@K and admission rate, each control's (``names``
    after the first, AdaGRPO), and the pooled comparisons significant after Holm correction."""
    m = f"HR@{hr_k}"
    b = summary[summary.checkpoint == "best"].set_index("method")
    lines = [(f"AdaGRPO best-checkpoint {m} {b.loc['adagrpo', m]:.4f} ± {b.loc['adagrpo', m + '_ci']:.4f} "
              f"at admission rate {b.loc['adagrpo', 'admission_rate']:.3f}.")]
    for n in names[1:]:
        if n in b.index:
            lines.append(f"  {n:<22} {m} {b.loc[n, m]:.4f} ± {b.loc[n, m + '_ci']:.4f}, "
                         f"admission {b.loc[n, 'admission_rate']:.3f}")
    sig = holm_significant(pooled, alpha)
    lines.append(f"{len(sig)} of {len(pooled)} paired comparisons are significant over seeds (sign-flip test, Holm)"
                 + (": " + "; ".join(f"adagrpo vs {r.reference} ({r.checkpoint}, diff {seed_level(r, 'diff', 'diff_seed_ci')})"
                                     for _, r in sig.iterrows()) if len(sig) else "."))
    return lines


# ---------------------------------------------------------------------------------- 05
def sensitivity_verdict(table: pd.DataFrame, n_seeds: int, grid_note: str) -> list[str]:
    """Notebook 05: at how many sweep points AdaGRPO's gain over the random gate at the same rate
    has a 95% interval above 0 (and which), below 0, and the same counts against the rate-matched
    mixture and, on the simulated world, for the simulated CTR."""
    ok = table.dropna(subset=["gain_vs_random"])
    above, below = interval_excludes_zero(ok, "gain_vs_random")
    win, lose = ok[above], ok[below]
    lines = [f"{len(ok)} points with a matched random control ({n_seeds} seeds, {grid_note}).",
             f"AdaGRPO beats random gating at the same rate (95% CI above 0) at {len(win)} points"
             + (": " + "; ".join(f"{r.sweep} {r.get('tau', '')} {r.get('rho', '')} gain {r.gain_vs_random:+.4f}"
                                 for _, r in win.iterrows()) if len(win) else "")
             + f"; loses at {len(lose)}; the rest are within noise."]
    mp = ok.dropna(subset=["gain_vs_mixp"])
    up, down = interval_excludes_zero(mp, "gain_vs_mixp")
    lines.append(f"Against the rate-matched mixture: above at {int(up.sum())} of {len(mp)} points, "
                 f"below at {int(down.sum())}.")
    if "ctr_gain_vs_random" in ok:
        c = ok.dropna(subset=["ctr_gain_vs_random"])
        up, down = interval_excludes_zero(c, "ctr_gain_vs_random")
        lines.append(f"Simulated CTR: AdaGRPO above random gating at the same rate at {int(up.sum())} of {len(c)} "
                     f"points, below at {int(down.sum())}.")
    return lines


# ---------------------------------------------------------------------------------- 06
def frontier_verdict(summary: pd.DataFrame, hr_k: int) -> list[str]:
    """Notebook 06: per metric (HR@K, and the simulated CTR where present) and checkpoint,
    AdaGRPO's point against the span of the mixtures, and which mixtures dominate it
    (:func:`dominating_mixtures`). ``summary`` carries ``lam`` (:func:`add_mixture_lam`)."""
    lines = []
    for m in [f"HR@{hr_k}"] + (["sim_ctr"] if "sim_ctr" in summary else []):
        for ckpt in ("best", "final"):
            s = summary[summary.checkpoint == ckpt].set_index("method")
            mix, a = s[s.lam.notna()], s.loc["adagrpo"]
            dominating = dominating_mixtures(summary, m, ckpt)
            lines.append(f"{m}, {ckpt}: AdaGRPO {m} {a[m]:.4f} ± {a[m + '_ci']:.4f}, hallucination {a.halluc:.4f}; "
                         f"mixtures span {m} {mix[m].min():.4f}-{mix[m].max():.4f} and hallucination "
                         f"{mix.halluc.min():.4f}-{mix.halluc.max():.4f}. "
                         + ("AdaGRPO is dominated by " + ", ".join(dominating) if dominating
                            else "No mixture beats AdaGRPO on both axes (point estimates; the intervals overlap)."))
    return lines


# ---------------------------------------------------------------------------------- 07
def ab_audit_verdict(ref: pd.DataFrame, pooled: pd.DataFrame, gaps: pd.DataFrame, acc: pd.DataFrame,
                     roc: pd.DataFrame | None = None) -> list[str]:
    """Notebook 07: the reference policies' simulated CTR, each method against nll (best
    checkpoint; the CTR difference and its share of the SFT-to-ceiling gap), each reliability gate
    against its matched control, AdaGRPO minus the best fixed mixture per reward source, each
    gate's rank agreement admitted vs rejected, and (``roc``) the diagnostics' ROC AUC."""
    t = ref.set_index("policy")["sim_ctr"]
    lines = [(f"Simulated CTR: logging {t['logging']:.4f}, most popular {t['most-popular']:.4f}, SFT {t['sft']:.4f}, "
              f"ranker top-10 {t['ranker top-10']:.4f}, ceiling {t['ceiling (true utility)']:.4f}.")]
    gap = t["ceiling (true utility)"] - t["sft"]
    for _, r in pooled[(pooled.checkpoint == "best") & (pooled.reference == "nll")].iterrows():
        if "sim_ctr_diff" in r and pd.notna(r.sim_ctr_diff):
            lines.append(f"  {r.method:<22} sim CTR vs nll {seed_level(r, 'sim_ctr_diff', 'sim_ctr_seed_ci')} "
                         f"(a gain worth {r.sim_ctr_diff / gap:.1%} of the SFT-to-ceiling gap)")
    matched = pooled[(pooled.checkpoint == "best") & pooled.reference.str.contains(r"\[")]
    for _, r in matched.iterrows():
        lines.append(f"  {r.method:<22} sim CTR vs {r.reference} {seed_level(r, 'sim_ctr_diff', 'sim_ctr_seed_ci')}; "
                     f"HR@10 {seed_level(r, 'diff', 'diff_seed_ci')}")
    for _, r in (roc.iterrows() if roc is not None else []):
        diag = ", ".join(f"{k} {r[f'auc_{k}']:.3f}" for k in ("d", "a", "gate_score", "e", "u") if pd.notna(r.get(f"auc_{k}")))
        lines.append(f"ROC AUC for agreement > 0.5 on {r.method}'s {int(r.samples)} samples ({r.share_agreeing:.1%} agree): {diag}")
    for _, r in gaps.iterrows():
        lines.append(f"reward {r.reward}: {r.metric} AdaGRPO - {r.best_mixture} = {seed_level(r, 'gap')}")
    a = acc.set_index("method")
    for m in a.index:
        lines.append(f"{m:<22} admits {a.loc[m, 'admitted']:.3f}; rank agreement admitted {a.loc[m, 'agree_adm']:.3f} "
                     f"vs rejected {a.loc[m, 'agree_rej']:.3f} (difference {a.loc[m, 'agree_diff']:+.3f} "
                     f"± {a.loc[m, 'agree_diff_ci']:.3f})")
    return lines


def _gain(r, metric: str) -> str:
    """'mean ± t half-width over seeds [n seeds, k below 0, Holm p over seeds]' of a gain row: the
    seed-level reading (the seeds are the unit of replication; a user bootstrap is never quoted)."""
    ci = r[f"{metric}_gain_ci"]
    if pd.isna(ci):
        return f"{r[f'{metric}_gain']:+.4f} (one seed)"
    text = f"{r[f'{metric}_gain']:+.4f} ± {ci:.4f}"
    share, n = r.get(f"{metric}_gain_share_below_0"), r.get("seeds")
    if pd.notna(share) and pd.notna(n):
        text += f" [{int(n)} seeds, {round(share * n):d} below 0"
        p = r.get(f"{metric}_gain_p_seed_holm")
        text += f", Holm p {p:.2g}]" if pd.notna(p) else "]"
    return text


def _side(gain: float, ci: float) -> str:
    """Where an interval lies against 0: 'above', 'below' or 'contains 0'."""
    if pd.isna(ci):
        return "one seed, no interval"
    return "above 0" if gain - ci > 0 else "below 0" if gain + ci < 0 else "contains 0"


def harmful_values(phase: pd.DataFrame, method: str = "mix(1)", metric: str = "sim_ctr") -> list[float]:
    """Dial values at which ``method``'s gain over NLL has its whole interval below 0."""
    m = phase[(phase.method == method) & (phase[f"{metric}_gain"] + phase[f"{metric}_gain_ci"] < 0)]
    return sorted(m.value.tolist())


def phase_verdict(dial: str, tables: dict, uniform: str = "mix(1)") -> list[str]:
    """Notebook 08, one dial: (e) where uniform RL (``uniform``) lowers sim CTR below continued NLL,
    and where each reward sits; (f) in that regime, AdaGRPO against NLL, random at its rate, the
    best mixture chosen on validation, and the oracle; (g) where HR@10 and sim CTR disagree."""
    phase, cross, vsr, gap, dis = (tables[k] for k in ("phase", "crossovers", "vs_random", "mixture_gap", "disagreement"))
    lines = [f"Dial {dial}: each value's reward sits at (effective bias, effective noise):"]
    for _, r in phase.drop_duplicates("value").sort_values("value").iterrows():
        lines.append(f"  {r.value:g}: {r.reward} at ({r.effective_bias + 0.0:+.3f}, {r.effective_noise:.3f})")
    u = phase[phase.method == uniform].sort_values("value")
    lines.append(f"(e) {uniform}'s gain over continued NLL (mean ± t-interval over seeds [seeds, how many below 0, "
                 "sign-flip p over seeds with Holm]), sim CTR | HR@10:")
    for _, r in u.iterrows():
        lines.append(f"  {r.value:g}: {_gain(r, 'sim_ctr')} ({_side(r.sim_ctr_gain, r.sim_ctr_gain_ci)}) "
                     f"| {_gain(r, 'HR@10')} ({_side(r['HR@10_gain'], r['HR@10_gain_ci'])})")
    for _, c in cross.iterrows():
        where = f"at {c.crossover:g}" if pd.notna(c.crossover) else f"none up to {c.largest_run:g}"
        lines.append(f"  crossover of {c.metric} {c.side} the origin: {where}")
    harmful = harmful_values(phase, uniform)
    if not harmful:
        lines.append(f"(f) {uniform} never lowers sim CTR below NLL with its interval on this dial: the harmful regime "
                     "is not reached, so (f) does not arise here.")
    for v in harmful:
        at = phase[phase.value == v].set_index("method")
        lines.append(f"(f) at {v:g}, where {uniform} hurts:" + ("" if "adagrpo" in at.index else
                                                                 " (no AdaGRPO run in this method set)"))
        for m in [m for m in at.index if m == "adagrpo" or m.startswith("oracle")]:
            r = at.loc[m]
            lines.append(f"  {m} vs NLL: sim CTR {_gain(r, 'sim_ctr')} ({_side(r.sim_ctr_gain, r.sim_ctr_gain_ci)}), "
                         f"HR@10 {_gain(r, 'HR@10')}; admits {r.admission_rate:.2f}")
        ar = vsr[(vsr.value == v) & (vsr.method == "adagrpo") & (vsr.reference == "random")] if len(vsr) else vsr
        for _, r in ar.iterrows():
            lines.append(f"  adagrpo - random at its rate: sim CTR {_gain(r, 'sim_ctr')} "
                         f"({_side(r.sim_ctr_gain, r.sim_ctr_gain_ci)}), HR@10 {_gain(r, 'HR@10')}")
        ag = gap[(gap.value == v) & (gap.metric == "sim_ctr") & (gap.gate == "adagrpo")] if len(gap) else gap
        for _, g in ag.iterrows():
            lines.append(f"  adagrpo - best mixture on validation ({g.best_mixture}): sim CTR {seed_level(g, 'gap')}")
    lines.append("(g) offline HR@10 against online sim CTR, per value (Kendall's tau of the two method orders):")
    for _, d in dis.iterrows():
        lines.append(f"  {d.value:g}: tau {d.kendall_tau:+.2f}; best by sim CTR {d.best_by_sim_ctr}, "
                     f"by HR@10 {d['best_by_HR@10']}")
    split = u[((u.sim_ctr_gain + u.sim_ctr_gain_ci < 0) & (u["HR@10_gain"] > 0))
              | ((u.sim_ctr_gain > 0) & (u["HR@10_gain"] + u["HR@10_gain_ci"] < 0))]
    for _, r in split.iterrows():
        lines.append(f"  at {r.value:g} {uniform} moves them apart: sim CTR {_gain(r, 'sim_ctr')}, HR@10 {_gain(r, 'HR@10')}")
    return lines


def reliability_verdict(dial: str, tables: dict, uniform: str = "mix(1)") -> list[str]:
    """Notebook 08, the reliability gates on one dial: (h) the ROC AUC of the truth-free
    diagnostics e (exposure) and u (ensemble) for "the reward orders the rollouts like the truth";
    (i) where ``uniform`` lowers sim CTR below NLL, each gate against NLL, its matched control and
    the best mixture chosen on validation; (j) difficulty_and_reliability minus its check alone."""
    phase, vsr, gap, auc = (tables[k] for k in ("phase", "vs_random", "mixture_gap", "diagnostic_auc"))
    gates = [m for m in RELIABILITY_METHODS if m in set(phase.method)]
    if not gates:
        return []
    lines = [f"(h) dial {dial}: ROC AUC of the truth-free diagnostics for agreement > 0.5, on each gate's samples "
             "(above 0.6 counts as predictive):"]
    for _, r in auc.iterrows() if len(auc) else []:
        diag = ", ".join(f"{k} {r[f'auc_{k}']:.3f}" for k in ("e", "u", "d", "a") if pd.notna(r.get(f"auc_{k}")))
        lines.append(f"  {r.value:g}, {r.method} ({r.share_agreeing:.0%} of {r.samples} samples agree): "
                     f"{diag or 'no AUC (one class only)'}")
    harmful = harmful_values(phase, uniform)
    if not harmful:
        lines.append(f"(i) {uniform} never lowers sim CTR below NLL with its interval on this dial: (i) does not arise.")
    for v in harmful:
        at = phase[phase.value == v].set_index("method")
        lines.append(f"(i) at {v:g}, where {uniform} hurts ({_gain(at.loc[uniform], 'sim_ctr')} sim CTR):")
        for m in gates:
            r = at.loc[m]
            lines.append(f"  {m} vs NLL: sim CTR {_gain(r, 'sim_ctr')} ({_side(r.sim_ctr_gain, r.sim_ctr_gain_ci)}), "
                         f"HR@10 {_gain(r, 'HR@10')}; admits {r.admission_rate:.2f}")
            c = vsr[(vsr.value == v) & (vsr.method == m) & vsr.reference.str.contains(r"\[")] if len(vsr) else vsr
            for _, x in c.iterrows():
                lines.append(f"    - {x.reference}: sim CTR {_gain(x, 'sim_ctr')} ({_side(x.sim_ctr_gain, x.sim_ctr_gain_ci)})")
            gp = gap[(gap.value == v) & (gap.metric == "sim_ctr") & (gap.gate == m)] if len(gap) else gap
            for _, g in gp.iterrows():
                lines.append(f"    - best mixture on validation ({g.best_mixture}): sim CTR {seed_level(g, 'gap')}")
    j = vsr[vsr.method == "difficulty_and_reliability"] if len(vsr) else vsr
    j = j[~j.reference.str.contains(r"\[")] if len(j) else j
    if len(j):
        lines.append("(j) difficulty_and_reliability minus its reliability check alone, per value, sim CTR | HR@10:")
        for _, x in j.iterrows():
            lines.append(f"  {x.value:g} (- {x.reference}): {_gain(x, 'sim_ctr')} ({_side(x.sim_ctr_gain, x.sim_ctr_gain_ci)})"
                         f" | {_gain(x, 'HR@10')} ({_side(x['HR@10_gain'], x['HR@10_gain_ci'])})")
    return lines


def placement_verdict(place: pd.DataFrame) -> list[str]:
    """Where the default ranker and the retrained rankers sit on the reward-error axes."""
    return [f"{r.reward}: effective bias {r.effective_bias:+.3f}, effective noise {r.effective_noise:.3f}, "
            f"correlation with the truth {r.truth_corr:.3f}" for r in place.itertuples()]


def coat_verdict(tables: dict) -> list[str]:
    """Notebook 09 (Coat, real users, randomly assigned ratings): (k) is the naive reward less
    accurate on rarely selected items (pairwise accuracy in the rarest exposure bucket minus the most
    exposed one, ``rare_gap``); (l) which diagnostic predicts where it is right (ROC AUC of e, u, a,
    a_self for agreement > 0.5, ``diagnostic_auc``; the top-half gates, ``gate_audit``); (m) does
    propensity weighting raise the accuracy where exposure is low (IPS minus naive in the rarest
    bucket, ``ips_by_exposure``; overall, ``ips_vs_naive``). Each difference is read twice: the
    t-interval over seeds and the user bootstrap with the seeds fixed."""
    def side(lo, hi):
        return "above 0" if lo > 0 else "below 0" if hi < 0 else "contains 0"

    def both(r, mean="mean", ci="ci"):
        n, below = int(r["n_seeds"]), int(round(r["share_below_0"] * r["n_seeds"]))
        return (f"{r[mean]:+.4f} ± {r[ci]:.4f} over {n} seeds ({below} below 0; {side(r[mean] - r[ci], r[mean] + r[ci])}), "
                f"user bootstrap [{r.fixedseeds_boot_low:+.4f}, {r.fixedseeds_boot_high:+.4f}] "
                f"({side(r.fixedseeds_boot_low, r.fixedseeds_boot_high)})")

    lines = ["(k) pairwise accuracy on the random ratings, rarest exposure bucket minus the most exposed one:"]
    gap = tables["rare_gap"]
    for _, r in gap[gap.weighting == "naive"].iterrows():
        lines.append(f"  {r.kind} (naive): {r.acc_rarest:.3f} vs {r.acc_most_exposed:.3f}, difference {both(r)}")
    auc = tables.get("diagnostic_auc")
    for kind, g in (auc.groupby("kind", sort=False) if auc is not None else []):
        parts = ", ".join(f"{r.diagnostic} {r.auc:.3f} [{r.auc_fixedseeds_boot_low:.3f}, {r.auc_fixedseeds_boot_high:.3f}]"
                          for r in g.itertuples())
        lines.append(f"(l) {kind} (naive): ROC AUC for agreement > 0.5 over {int(g.users.max())} users "
                     f"({g.share_agreeing.max():.0%} agree), user bootstrap: {parts}")
        free = g[g.diagnostic != "a"]
        if len(free):
            b = free.loc[free.auc.idxmax()]
            where = "above 0.5" if b.auc_fixedseeds_boot_low > 0.5 else "its interval contains 0.5"
            lines.append(f"  best truth-free diagnostic: {b.diagnostic} ({b.auc:.3f}, {where}); a takes the user's "
                         "liked random items as targets, so it reads the random ratings that define the agreement")
    gates = tables.get("gate_audit")
    for kind, g in (gates.groupby("kind", sort=False) if gates is not None else []):
        parts = ", ".join(f"{r.gate} {r.diff:+.3f} [{r.diff_fixedseeds_boot_low:+.3f}, {r.diff_fixedseeds_boot_high:+.3f}]"
                          for r in g.itertuples())
        lines.append(f"  {kind}: admitted-minus-rejected agreement of the top half, user bootstrap: {parts}")
    ipsb, ips = tables["ips_by_exposure"], tables["ips_vs_naive"]
    top = ipsb.bucket.max() if len(ipsb) else 0
    for _, r in ipsb[ipsb.bucket == 0].iterrows():
        t = ipsb[(ipsb.kind == r.kind) & (ipsb.weighting == r.weighting) & (ipsb.bucket == top)].iloc[0]
        lines.append(f"(m) {r.kind} {r.weighting} - naive, pairwise accuracy in the rarest bucket: {both(r)}; "
                     f"in the most exposed: {t['mean']:+.4f} ± {t['ci']:.4f}")
    for _, r in ips[ips.metric.isin(["pair_acc", "mse", "mae"])].iterrows():
        if pd.notna(r.fixedseeds_boot_low):
            lines.append(f"  {r.kind} {r.weighting} - naive, {r.metric} over all random items ({r.better} is better): {both(r)}")
    return lines
