"""The stratified analysis of the paper's Tables 1-3: where does the ranker help?

From a trained SFT policy, each test sample gets the top-N valid candidates of trie-constrained
beam search in policy order ("LLM order"). The ranker re-sorts the same candidates ("RM order").
**RM influence** = HR@K(RM order) - HR@K(LLM order), per sample a value in {-1, 0, +1}. On the
simulated world the true utility re-sorts them too ("truth order"): what a perfect ranker could
add, which the paper could not measure.

* :func:`candidate_table`: one row per sample (target rank in LLM order, target log-likelihood,
  the ranker's AUC of the target against the other candidates, hits in each order).
* :func:`add_strata`: policy-difficulty strata (quantiles of the target's log-likelihood, and
  its rank in LLM order) and discriminability strata.
* :func:`influence_table`: per stratum (or cell) n, HR@K in each order, the influence with a
  bootstrap CI and an exact McNemar test on the paired hits.
* :func:`influence_regression`: linear-probability model of the hit change on difficulty,
  discriminability and their interaction (statsmodels OLS, HC3 standard errors).

The whole analysis of a profile's SFT base or of any run is :mod:`adagrpo_core.suite.stratified`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import statsmodels.formula.api as smf

from ..common.runtime import progress_bar
from ..data.interactions import Examples
from ..model.decoding import beam_search
from ..model.policy import SIDPolicy
from ..model.semantic_ids import SemanticIDs
from ..common.checks import check_int, check_range
from .metrics import target_auc
from .stats import bootstrap_ci, mcnemar_exact

RANK_BINS = (1, 5, 10, 20)   # LLM-order rank strata: 1, 2-5, 6-10, 11-20, then "absent"


@dataclass
class StrataConfig:
    """Settings of the stratified analysis."""

    top_n: int = 20
    """N: candidates per sample from trie-constrained beam search (beam width = N)."""
    k: int = 10
    """K of HR@K, the metric whose change is the RM influence (K <= N)."""
    difficulty_bins: int = 4
    """Quantile bins of the target's log-likelihood under the policy (Q1 easiest ... hardest)."""
    discrim_bins: int = 2
    """Quantile bins of discriminability (the ranker's AUC of the target vs the candidates)."""
    n_boot: int = 2000
    """Bootstrap resamples for the influence confidence intervals."""
    alpha: float = 0.05
    """1 - confidence level of the intervals."""
    seed: int = 0
    """Seed of the bootstrap."""
    batch_size: int = 256
    """Contexts per beam-search / scoring batch."""

    def __post_init__(self):
        check_int("top_n", self.top_n, lo=1)
        check_int("k", self.k, lo=1, hi=self.top_n)
        check_int("difficulty_bins", self.difficulty_bins, lo=1)
        check_int("discrim_bins", self.discrim_bins, lo=1)
        check_int("n_boot", self.n_boot, lo=10)
        check_range("alpha", self.alpha, 0, 1, lo_open=True, hi_open=True)
        check_int("batch_size", self.batch_size, lo=1)


def _hit_after_resort(cands: np.ndarray, scores: np.ndarray, target: np.ndarray, k: int) -> np.ndarray:
    """Re-sort each row's candidates by score (descending; ties keep LLM order) and test whether
    the target is in the first k. cands [n, N] (-1 = missing), scores [n, N] -> bool [n]."""
    s = np.where(cands >= 0, scores, -np.inf)
    order = np.argsort(-s, axis=1, kind="stable")
    resorted = np.take_along_axis(cands, order, 1)[:, :k]
    return (resorted == target[:, None]).any(1)


@torch.no_grad()
def candidate_table(model: SIDPolicy, reward, sids: SemanticIDs, examples: Examples,
                    cfg: StrataConfig = StrataConfig(), world=None, progress: bool = False) -> pd.DataFrame:
    """One row per sample: target, its rank in LLM order (0-based; -1 when it is not among the N
    candidates), its log-likelihood under the policy, the ranker's AUC of the target against the
    other candidates (``discriminability``), and hits@K in LLM, RM and (with ``world``) truth
    order. ``reward``: a :class:`~adagrpo_core.reward.reward_model.RewardModel` (any monotone score works).
    """
    if len(examples) == 0:
        raise ValueError("examples: no samples to analyse (len(examples)=0)")
    trie = sids.trie.to(model.device)
    was_training = model.training
    model.eval()
    codes = torch.as_tensor(sids.codes, device=model.device)
    rows = []
    rng = range(0, len(examples), cfg.batch_size)
    if progress:
        rng = progress_bar(rng, desc="candidates", leave=False)
    for s in rng:
        sl = slice(s, s + cfg.batch_size)
        hist = torch.as_tensor(examples.history[sl], device=model.device)
        target = torch.as_tensor(examples.target[sl], device=model.device)
        cache = model.encode(hist)                                              # shared by both passes
        beams = beam_search(model, None, cfg.top_n, trie=trie, constrained=True, cache=cache)
        cands = beams.items                                                     # [b, N], -1 = missing
        tgt = codes[target][:, None]                                            # [b, 1, Lp]
        lp = model.gather_logprobs(model.tuple_logits(None, tgt, cache), tgt).sum(-1)[:, 0]  # [b]
        scored = reward.score_items(hist, torch.cat([cands.clamp(min=0), target[:, None]], 1)).float()
        rows.append((cands.cpu().numpy(), lp.cpu().numpy(), scored.cpu().numpy()))
    model.train(was_training)
    cands = np.concatenate([r[0] for r in rows])
    logp = np.concatenate([r[1] for r in rows])
    scores = np.concatenate([r[2] for r in rows])
    rm_c, rm_t = scores[:, :-1], scores[:, -1]
    target = np.asarray(examples.target)
    is_t = cands == target[:, None]
    rank = np.where(is_t.any(1), is_t.argmax(1), -1)
    others = (cands >= 0) & ~is_t
    k = cfg.k
    df = pd.DataFrame({
        "user": examples.users, "target": target, "llm_rank": rank, "target_logp": logp,
        "n_candidates": (cands >= 0).sum(1),
        "discriminability": target_auc(rm_t, rm_c, others),
        "hit_llm": (rank >= 0) & (rank < k),
        "hit_rm": _hit_after_resort(cands, rm_c, target, k),
    })
    if world is not None:
        u = world.true_utility(world.states_for(examples), np.concatenate([np.maximum(cands, 0), target[:, None]], 1))
        df["truth_discriminability"] = target_auc(u[:, -1], u[:, :-1], others)
        df["hit_truth"] = _hit_after_resort(cands, u[:, :-1], target, k)
    df["delta"] = df["hit_rm"].astype(int) - df["hit_llm"].astype(int)
    return df


def _quantile_labels(x: pd.Series, bins: int, names: tuple[str, str]) -> pd.Series:
    """Equal-count bins of x (ranks break ties), labelled e.g. 'Q1 (easiest)' .. 'Q4 (hardest)'."""
    bins = min(bins, len(x))          # fewer samples than bins: one sample per bin
    if bins <= 1:
        return pd.Series(pd.Categorical(["all"] * len(x)), index=x.index)
    q = pd.qcut(x.rank(method="first"), bins, labels=False)
    labels = [f"Q{i + 1}" + (f" ({names[0]})" if i == 0 else f" ({names[1]})" if i == bins - 1 else "")
              for i in range(bins)]
    return pd.Series(pd.Categorical.from_codes(q.astype(int), labels), index=x.index)


def add_strata(df: pd.DataFrame, cfg: StrataConfig = StrataConfig()) -> pd.DataFrame:
    """Add ``difficulty`` (= -target_logp), ``difficulty_q`` (quantile bins, Q1 easiest),
    ``rank_stratum`` (target rank in LLM order: 1, 2-5, 6-10, 11-20, absent) and
    ``discrim_q`` (quantile bins of discriminability over samples where it is defined)."""
    df = df.copy()
    df["difficulty"] = -df["target_logp"]
    df["difficulty_q"] = _quantile_labels(df["difficulty"], cfg.difficulty_bins, ("easiest", "hardest"))
    edges = [b for b in RANK_BINS if b <= cfg.top_n]
    names, lo = [], 1
    for e in edges:
        names.append(f"{lo}" if e == lo else f"{lo}-{e}")
        lo = e + 1
    if lo <= cfg.top_n:
        names.append(f"{lo}-{cfg.top_n}")
        edges.append(cfg.top_n)
    names.append(f"absent from top-{cfg.top_n}")
    r = df["llm_rank"].to_numpy() + 1                                      # 1-based, 0 = absent
    codes = np.where(r == 0, len(names) - 1, np.searchsorted(np.asarray(edges), r, side="left"))
    df["rank_stratum"] = pd.Categorical.from_codes(codes, names)
    d = df["discriminability"]
    ok = d.notna()
    lab = _quantile_labels(d[ok], cfg.discrim_bins, ("least discriminable", "most discriminable")) \
        if ok.any() else None
    cats = (list(lab.cat.categories) if lab is not None else []) + ["undefined"]
    disc = pd.Series(pd.Categorical(["undefined"] * len(df), categories=cats), index=df.index)
    if lab is not None:
        disc.loc[ok] = lab.astype(str).to_numpy()
    df["discrim_q"] = disc
    return df


def influence_table(df: pd.DataFrame, by: list[str] | None = None,
                    cfg: StrataConfig = StrataConfig()) -> pd.DataFrame:
    """Per group of ``by`` (None = all samples): n, HR@K in LLM, RM (and truth) order, the RM
    influence with its bootstrap CI, and the exact McNemar test of LLM vs RM hits."""
    rng = np.random.default_rng(cfg.seed)
    groups = [((), df)] if not by else df.groupby(by, observed=True, sort=True)
    out = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        lo, hi = bootstrap_ci(g["delta"].to_numpy(), cfg.n_boot, cfg.alpha, rng)
        n01, n10, p = mcnemar_exact(g["hit_llm"].to_numpy(), g["hit_rm"].to_numpy())
        row = dict(zip(by or [], key))
        row.update({"n": len(g), f"HR@{cfg.k}_llm": g["hit_llm"].mean(), f"HR@{cfg.k}_rm": g["hit_rm"].mean(),
                    "rm_influence": g["delta"].mean(), "ci_low": lo, "ci_high": hi,
                    "llm_only_hits": n01, "rm_only_hits": n10, "mcnemar_p": p})
        if "hit_truth" in g:
            row[f"HR@{cfg.k}_truth"] = g["hit_truth"].mean()
            row["truth_influence"] = (g["hit_truth"].astype(int) - g["hit_llm"].astype(int)).mean()
        out.append(row)
    return pd.DataFrame(out)


def influence_regression(df: pd.DataFrame, only_candidates: bool = True) -> pd.DataFrame:
    """Linear-probability model delta ~ difficulty * discriminability (both standardised),
    OLS with HC3 standard errors. ``only_candidates``: fit on samples whose target is among the
    N candidates (elsewhere the re-sort cannot change the hit, delta = 0 by construction)."""
    d = df[df["discriminability"].notna()]
    if only_candidates:
        d = d[d["llm_rank"] >= 0]
    if len(d) < 10:
        raise ValueError(f"influence_regression: need at least 10 samples, got n={len(d)}")
    z = pd.DataFrame({"delta": d["delta"].astype(float)})
    for c in ("difficulty", "discriminability"):
        x = d[c] if c in d else -d["target_logp"]
        sd = x.std()
        z[c] = (x - x.mean()) / (sd if sd > 0 else 1.0)
    fit = smf.ols("delta ~ difficulty * discriminability", data=z).fit(cov_type="HC3")
    ci = fit.conf_int()
    # 12 significant digits: the linear algebra's last bits differ between CPUs, the table must not
    sig = np.vectorize(lambda x: float(f"{x:.12g}"))
    return pd.DataFrame({"term": fit.params.index, "coef": sig(fit.params.values), "se": sig(fit.bse.values),
                         "z": sig(fit.tvalues.values), "p": sig(fit.pvalues.values),
                         "ci_low": sig(ci[0].values), "ci_high": sig(ci[1].values), "n": int(fit.nobs)})
