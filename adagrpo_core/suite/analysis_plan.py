"""The frozen analysis plan: for every answer, the comparison, the direction of its question, the
smallest effect of interest, the checkpoint, the replicates and the multiplicity correction.

It is fixed before a regeneration and read by ``cli answers`` (``glance.py``) and ``cli check
--answers``: the words of an answer follow from its plan and its table (``verdicts.planned_words``),
never from what a run happened to show. ``PLAN_DIGEST`` pins it: changing a line changes the
digest, which a test compares, so an edit is a deliberate, visible commit of its own.

Directions. ``greater``: "is it above?" (a one-sided 95% lower bound above 0 says yes; otherwise
the answer is "not above it: at most <upper bound>"); ``less``: the mirror; ``two-sided``: the
sign of the 95% interval. Where ``delta`` is given, a "no" whose 90% interval lies inside
[-delta, +delta] is worded "equivalent within ±delta" (two one-sided tests at 5%).

Smallest effects of interest, in the units of the answer's number: 0.005 sim CTR (about 1.6% of
the SFT base's 0.31, a third of what uniform RL loses where the reward over-credits rare items);
0.01 rank agreement; 0.05 AUC above chance; 0.02 pairwise accuracy on Coat. They were set after
the earlier tables had been seen and before the regeneration that this plan governs.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

DIRECTIONS = ("greater", "less", "two-sided")


@dataclass(frozen=True)
class PlannedAnswer:
    """One answer's plan."""

    answer: str
    """The answer's letter, "(a)" ... "(m)"."""
    comparison: str
    """What is compared, and on which table."""
    direction: str
    """"greater", "less" or "two-sided" (the question's direction, :data:`DIRECTIONS`)."""
    delta: float | None
    """The smallest effect of interest (its number's units), or None: no equivalence claim."""
    checkpoint: str | None
    """"best" (chosen on validation) or "final"; None where no RL run is involved."""
    replicates: int
    """How many (reward model, policy) replicates the answer needs."""
    correction: str
    """The multiplicity correction its p-values carry."""

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got direction={self.direction!r} for {self.answer}")
        if self.delta is not None and not self.delta > 0:
            raise ValueError(f"delta must be > 0 or None, got delta={self.delta!r} for {self.answer}")
        if self.checkpoint not in ("best", "final", None):
            raise ValueError(f"checkpoint must be 'best', 'final' or None, got checkpoint={self.checkpoint!r}")


_HOLM_TABLE = "Holm over the rows of its table (seed-level sign-flip p)"
_ONE = "none: the one planned comparison of its question"

PLAN = {a.answer: a for a in [
    PlannedAnswer("(a)", "RM influence (HR@10, RM order - LLM order), difficulty Q2 x most discriminable stratum, "
                  "notebook 02", "greater", None, None, 10, _ONE),
    PlannedAnswer("(b)", "AdaGRPO - mix(0.5), sim CTR, notebook 03's paired tests (the frontier's middle mixture)",
                  "greater", 0.005, "best", 10, "Holm over the table's pairs"),
    PlannedAnswer("(c)", "AdaGRPO - random at AdaGRPO's rate per step, sim CTR, notebook 03's paired tests", "greater",
                  0.005, "best", 10, "Holm over the table's pairs"),
    PlannedAnswer("(d)", "rank agreement with the truth, admitted - rejected samples of AdaGRPO, notebook 07's audit",
                  "greater", 0.01, "best", 10, _ONE),
    PlannedAnswer("(e)", "mix(1) - continued NLL, sim CTR, truth reward at exposure bias -4, notebook 08", "less",
                  0.005, "best", 10, _HOLM_TABLE),
    PlannedAnswer("(f)", "AdaGRPO - random at its rate, sim CTR, exposure bias -4, notebook 08", "greater", 0.005,
                  "best", 10, _HOLM_TABLE),
    PlannedAnswer("(g)", "mix(1) - continued NLL, HR@10 (and sim CTR falling), exposure bias +4, notebook 08",
                  "two-sided", None, "best", 10, _HOLM_TABLE),
    PlannedAnswer("(h)", "AUC of the ensemble diagnostic u for the reward's rank agreement, notebook 07", "greater",
                  0.05, "best", 10, _ONE),
    PlannedAnswer("(i)", "exposure gate - random at its rate, sim CTR, exposure bias -4, notebook 08's reliability set",
                  "greater", 0.005, "best", 10, _HOLM_TABLE),
    PlannedAnswer("(j)", "difficulty_and_reliability - exposure gate, sim CTR, exposure bias -2, notebook 08's "
                  "reliability set", "greater", 0.005, "best", 10, _HOLM_TABLE),
    PlannedAnswer("(k)", "Coat: pairwise accuracy on the random ratings, rarest - most selected quintile, the ranker "
                  "learned from self-selected ratings", "less", 0.02, None, 10, _ONE),
    PlannedAnswer("(l)", "Coat: AUC of u for pairwise accuracy on the random ratings", "greater", 0.05, None, 10, _ONE),
    PlannedAnswer("(m)", "Coat: IPS - naive pairwise accuracy in the rarest quintile, the ranker", "greater", 0.02,
                  None, 10, _ONE),
]}

PLAN_DIGEST = "70ae9796af6a"
"""sha256 (12 hex digits) of :data:`PLAN`; tests/test_verdicts.py compares it with :func:`plan_digest`."""


def plan_digest(plan: dict | None = None) -> str:
    """The digest of the plan's entries (their fields, in order)."""
    plan = PLAN if plan is None else plan
    text = json.dumps([asdict(a) for a in plan.values()], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def planned(answer: str) -> PlannedAnswer:
    """The plan of one answer; ValueError naming the known ones."""
    if answer not in PLAN:
        raise ValueError(f"no planned answer {answer!r}; planned: {sorted(PLAN)}")
    return PLAN[answer]
