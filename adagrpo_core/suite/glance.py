"""The answers at a glance: one row per answer of RESULTS.md, its short answer worded by the sign of
the seed-level interval, its key number, its seeds and its figure, read from the committed tables.

    python -m adagrpo_core.cli answers           # rewrites the block in RESULTS.md and README.md
    python -m adagrpo_core.cli answers --check   # exits 1 when a block differs from the tables

The block sits between ``<!-- answers:start -->`` and ``<!-- answers:end -->``; a test checks that
it matches the tables, so the words and numbers cannot drift from them. The wording rule is the
one of ``verdicts.py``: a question the frozen analysis plan (``analysis_plan.py``) calls one-sided
is answered by its one-sided 95% bound over replicates (``planned_words``: "not above it: at most
+0.0004", "equivalent within ±delta"); a two-sided one by the sign of its 95% interval over seeds;
the bootstrap over users never decides.
"""
from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .analysis_plan import PLAN
from .regeneration import git_root, committed_text
from .verdicts import planned_words

START, END = "<!-- answers:start -->", "<!-- answers:end -->"


@dataclass(frozen=True)
class Answer:
    """One answer: the question, the table row that decides it and how to word each side."""
    answer: str                 # "(e)"
    question: str
    table: str                  # CSV under figures/
    where: dict                 # column -> value that picks the row (strings match as prefixes)
    value: str                  # the key number's column
    ci: str | None              # its 95% half-width over seeds; None: low/high columns below
    words: tuple                # (interval above ref, covering ref, below ref)
    figure: str                 # PNG under figures/
    label: str = ""             # what the number is
    ref: float = 0.0            # the value a tie is measured against (0 for a difference, 0.5 for an AUC)
    low_high: tuple = ()        # (low, high) columns when the table gives an interval, not a half-width
    seeds: str = "seeds"        # the seed-count column ('' where the number has no seeds)
    share: str | None = None    # the share-of-seeds-below-0 column
    seeds_text: str = ""        # what the seeds column says where the number has no seed count
    falls_too: tuple = ()       # (column, half-width column) that must lie below ref for words[0] to hold


P, C = "paper/", "coat/"
ANSWERS = [
    Answer("(a)", "Does RM influence concentrate in hard-and-discriminable strata?",
           P + "nb02_table3_difficulty_x_discriminability_paper_test.csv", {"difficulty_q": "Q2", "discrim_q": "Q2"},
           "rm_influence", None, ("yes, where the target is a candidate at all", "no", "no, the opposite"),
           P + "nb02_influence_heatmap_paper_test.png", "RM influence, difficulty Q2 x most discriminable",
           low_high=("ci_low", "ci_high"), seeds="", seeds_text="no RL: one SFT base"),
    Answer("(b)", "Is AdaGRPO above the fixed-mixture frontier?",
           P + "nb03_paired_tests_pooled_holm_paper.csv",
           {"method": "adagrpo", "reference": "mix(0.5)", "checkpoint": "best", "seed": "pooled"},
           "sim_ctr_diff", "sim_ctr_seed_ci", ("above it", "not above it", "below it"),
           P + "nb06_frontier_ctr_paper.png", "sim CTR, AdaGRPO - mix(0.5)", share="sim_ctr_diff_share_below_0"),
    Answer("(c)", "Does AdaGRPO beat random gating at its admission rate?",
           P + "nb03_paired_tests_pooled_holm_paper.csv",
           {"method": "adagrpo", "reference": "random", "checkpoint": "best", "seed": "pooled"},
           "sim_ctr_diff", "sim_ctr_seed_ci", ("yes", "no", "no: it loses"),
           P + "nb03_hr10_by_method_paper.png", "sim CTR, AdaGRPO - random", share="sim_ctr_diff_share_below_0"),
    Answer("(d)", "Are the admitted samples the ones with the more accurate reward?",
           P + "nb07_audit_paper.csv", {"method": "adagrpo"}, "agree_diff", "agree_diff_ci",
           ("yes", "no difference", "no, the opposite: they are less accurate"),
           P + "nb07_admission_by_bucket_paper.png", "rank agreement, admitted - rejected"),
    Answer("(e)", "Is there a dial value where uniform RL lowers sim CTR below continued NLL?",
           P + "nb08_phase_bias_paper.csv", {"value": -4.0, "method": "mix(1)"}, "sim_ctr_gain", "sim_ctr_gain_ci",
           ("no: it gains there", "not shown", "yes: at exposure bias -4"),
           P + "nb08_phase_bias_paper.png", "sim CTR, mix(1) - NLL at bias -4", share="sim_ctr_gain_share_below_0"),
    Answer("(f)", "There, does AdaGRPO beat random gating at its rate?",
           P + "nb08_vs_random_bias_paper.csv", {"value": -4.0, "method": "adagrpo", "reference": "random"}, "sim_ctr_gain",
           "sim_ctr_gain_ci", ("yes", "no", "no: it loses"),
           P + "nb08_admission_bias_paper.png", "sim CTR, AdaGRPO - random at bias -4",
           share="sim_ctr_gain_share_below_0"),
    Answer("(g)", "Do HR@10 and sim CTR rank the methods differently?",
           P + "nb08_phase_bias_paper.csv", {"value": 4.0, "method": "mix(1)"}, "HR@10_gain", "HR@10_gain_ci",
           ("yes: at +4 uniform RL raises HR@10 while its sim CTR falls", "not at +4", "no: HR@10 falls too"),
           P + "nb08_phase_bias_paper.png", "HR@10, mix(1) - NLL at bias +4", share="HR@10_gain_share_below_0",
           falls_too=("sim_ctr_gain", "sim_ctr_gain_ci")),
    Answer("(h)", "Does a truth-free diagnostic predict reward accuracy (simulated world)?",
           P + "nb07_roc_paper.csv", {"method": "ensemble"}, "auc_u", None,
           ("yes: u (and e) above chance", "no", "no: below chance"), P + "nb07_roc_paper.png",
           "AUC of u, default ranker", ref=0.5, seeds="", seeds_text="the ensemble gate's runs, pooled"),
    Answer("(i)", "At bias -4, does the exposure gate beat random gating at its rate?",
           P + "nb08_vs_random_bias_reliability_paper.csv", {"value": -4.0, "method": "exposure", "reference": "random[exposure]"}, "sim_ctr_gain",
           "sim_ctr_gain_ci", ("yes, by a little", "no", "no: it loses"),
           P + "nb08_phase_bias_reliability_paper.png", "sim CTR, exposure - random[exposure] at -4",
           share="sim_ctr_gain_share_below_0"),
    Answer("(j)", "Does combining the exposure gate with difficulty help?",
           P + "nb08_vs_random_bias_reliability_paper.csv", {"value": -2.0, "method": "difficulty_and_reliability", "reference": "exposure"},
           "sim_ctr_gain", "sim_ctr_gain_ci", ("yes", "no difference", "no: it costs CTR"),
           P + "nb08_admission_bias_reliability_paper.png", "sim CTR, difficulty_and_reliability - exposure at -2",
           share="sim_ctr_gain_share_below_0"),
    Answer("(k)", "Real users (Coat): is a learned reward less accurate on rarely selected items?",
           C + "nb09_rare_gap.csv", {"kind": "ranker", "weighting": "naive"}, "mean", "ci",
           ("no: more accurate", "no difference", "yes"), C + "nb09_accuracy_by_exposure.png",
           "pairwise accuracy, rarest - most exposed quintile", seeds="n_seeds", share="share_below_0"),
    Answer("(l)", "Real users (Coat): does a truth-free diagnostic find the accurate rewards?",
           C + "nb09_diagnostic_auc.csv", {"kind": "ranker", "diagnostic": "u"}, "auc", "auc_ci",
           ("barely: u above chance (e is not)", "no", "no: below chance"), C + "nb09_diagnostic_auc.png",
           "AUC of u on the random ratings", ref=0.5, seeds=""),
    Answer("(m)", "Real users (Coat): does propensity weighting make the reward more accurate where exposure is low?",
           C + "nb09_ips_by_exposure.csv", {"kind": "ranker", "weighting": "ips", "bucket": 0}, "mean", "ci",
           ("yes, for the ranker", "no difference", "no: less accurate"), C + "nb09_accuracy_by_exposure.png",
           "pairwise accuracy in the rarest quintile, IPS - naive", seeds="n_seeds", share="share_below_0"),
]


def _row(df: pd.DataFrame, a: Answer) -> pd.Series:
    keep = pd.Series(True, index=df.index)
    for col, want in a.where.items():
        if col not in df.columns:
            raise ValueError(f"{a.answer}: {a.table} has no column {col!r}")
        if isinstance(want, str):        # an exact match where there is one, else a prefix
            text = df[col].astype(str)
            keep &= (text == want) if (text == want).any() else text.str.startswith(want)
        else:
            keep &= df[col] == want
    rows = df[keep]
    if len(rows) != 1:
        raise ValueError(f"{a.answer}: {a.table} has {len(rows)} rows where {a.where}, expected 1")
    return rows.iloc[0]


def glance_row(a: Answer, figures: Path) -> dict:
    """The table row of one answer, read from its committed table."""
    r = _row(pd.read_csv(Path(figures) / a.table), a)
    v = float(r[a.value])
    if a.low_high:
        lo, hi = float(r[a.low_high[0]]), float(r[a.low_high[1]])
        number = f"{v:+.3f} [{lo:+.3f}, {hi:+.3f}] (bootstrap over samples)"
    elif a.ci and pd.notna(r.get(a.ci)):
        lo, hi = v - float(r[a.ci]), v + float(r[a.ci])
        number = f"{v:+.4f} ± {float(r[a.ci]):.4f}" if a.ref == 0 else f"{v:.2f} ± {float(r[a.ci]):.2f}"
    else:
        lo = hi = v
        number = f"{v:.2f}"
    words = a.words[0] if lo > a.ref else a.words[2] if hi < a.ref else a.words[1]
    if a.falls_too and lo > a.ref and not float(r[a.falls_too[0]]) + float(r[a.falls_too[1]]) < a.ref:
        words = a.words[1]
    plan = PLAN.get(a.answer)
    if plan is not None and plan.direction != "two-sided" and a.ci and a.seeds and pd.notna(r.get(a.ci)):
        # a one-sided question gets a one-sided bound (analysis_plan.py, verdicts.planned_words); a
        # "no" whose 95% interval lies wholly on the other side keeps the two-sided table's words
        greater = plan.direction == "greater"
        other_side = hi < a.ref if greater else lo > a.ref
        yes, no = (a.words[0], a.words[1]) if greater else (a.words[2], a.words[1])
        words, bound = planned_words(plan.direction, v, float(r[a.ci]), int(r[a.seeds]), plan.delta, yes,
                                     a.words[2 if greater else 0] if other_side else no, a.ref)
        number += f"; one-sided 95%: {bound}"
    seeds = a.seeds_text if not a.seeds else str(int(r[a.seeds]))
    if a.share and a.share in r and pd.notna(r[a.share]) and a.seeds:
        seeds += f" ({round(float(r[a.share]) * int(r[a.seeds]))} below 0)"
    if not a.seeds and "per_seed" in r and isinstance(r["per_seed"], str):
        seeds = str(len(r["per_seed"].split(";")))
    name = Path(a.figure).stem
    return {"answer": a.answer, "question": a.question, "short answer": words,
            "key number": f"{a.label}: {number}", "seeds": seeds, "figure": f"[{name}](figures/{a.figure})"}


def glance_table(figures) -> str:
    """The Markdown table of every answer (paths relative to the checkout's root)."""
    rows = [glance_row(a, Path(figures)) for a in ANSWERS]
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in rows]
    return "\n".join(lines)


def replace_block(text: str, block: str, where: str, start: str = START, end: str = END) -> str:
    """``text`` with the part between the markers replaced by ``block``; ValueError without them."""
    pat = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pat.search(text):
        raise ValueError(f"{where} has no {start} ... {end} block")
    return pat.sub(lambda _: f"{start}\n{block}\n{end}", text, count=1)


def answer_changes(figures, against=None) -> pd.DataFrame:
    """Each answer's words and key number read from the tables under ``figures`` beside those read
    from ``against`` (a folder of the same layout: ``paper/``, ``coat/``), by default the committed
    (git HEAD) versions of the same files; ``changed`` says whether the words differ. A side that
    lacks the answer's table says 'no table', one whose table lacks its row 'no row'."""
    figures = Path(figures)
    with tempfile.TemporaryDirectory() as tmp:
        if against is None:
            repo = git_root(figures)
            for a in ANSWERS:
                text = committed_text(figures / a.table, repo)
                if text is not None:
                    (Path(tmp) / a.table).parent.mkdir(parents=True, exist_ok=True)
                    (Path(tmp) / a.table).write_text(text)
            against = Path(tmp)
        rows = []
        for a in ANSWERS:
            new, old = (_safe_row(a, root) for root in (figures, Path(against)))
            rows.append({"answer": a.answer, "before": old[0], "after": new[0], "changed": old[0] != new[0],
                         "number before": old[1], "number after": new[1]})
    return pd.DataFrame(rows)


def _safe_row(a: Answer, root: Path) -> tuple[str, str]:
    if not (root / a.table).is_file():
        return "no table", ""
    try:
        r = glance_row(a, root)
    except ValueError as e:                  # the table lacks the answer's row (or a column)
        return "no row", str(e)
    return r["short answer"], r["key number"].split(": ", 1)[1]


FINDINGS_START, FINDINGS_END = "<!-- findings:start -->", "<!-- findings:end -->"
AMAZON_HEADLINE = "amazon/nb03_headline_amazon.csv"


def findings(figures) -> str:
    """README's front page: the findings in five lines, each an answer's words and key number from
    the answers table (``glance_row``), and Amazon Beauty's headline gain; ``cli answers`` writes it."""
    figures = Path(figures)
    r = {a.answer: glance_row(a, figures) for a in ANSWERS}
    say = lambda k: f"{r[k]['short answer']} ({r[k]['key number'].split(': ', 1)[1].split(';')[0]})"   # noqa: E731
    lines = [f"- **The gate.** Does AdaGRPO beat random gating at its own rate? {say('(c)')}. Is it above the "
             f"fixed-mixture frontier? {say('(b)')}. Are the samples it admits the accurately rewarded ones? "
             f"{say('(d)')}.",
             f"- **Where the reward hurts.** Does uniform RL fall below continued NLL where the reward over-credits "
             f"rare items? {say('(e)')}. Does AdaGRPO beat random gating there? {say('(f)')}. Do HR@10 and sim CTR "
             f"disagree? {say('(g)')}.",
             f"- **Reliability diagnostics and gates.** Does a truth-free diagnostic predict reward accuracy? "
             f"{say('(h)')}. Does the exposure gate beat random at its rate where uniform RL hurts? {say('(i)')}. "
             f"Does adding difficulty help it? {say('(j)')}.",
             f"- **Real users (Coat).** Is a reward learned from self-selected ratings less accurate on rarely "
             f"chosen items? {say('(k)')}. Does a diagnostic find the accurate rewards? {say('(l)')}. Does "
             f"propensity weighting help there? {say('(m)')}."]
    path = figures / AMAZON_HEADLINE
    if path.is_file():
        h = pd.read_csv(path).set_index("method")
        ada = h.loc["adagrpo"]
        lines.append(f"- **Amazon Beauty** (offline HR@10 only; exposure simulated for the ranker): AdaGRPO's HR@10 "
                     f"gain over the SFT base is {ada['gain_HR@10']:+.4f} ± {ada['gain_HR@10_ci']:.4f} over "
                     f"{int(ada['seeds'])} seeds, against {h.loc['random', 'gain_HR@10']:+.4f} for random gating "
                     f"at its rate.")
    return "\n".join(lines)
