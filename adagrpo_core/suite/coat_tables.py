"""Notebook 09's tables, from a :class:`~adagrpo_core.suite.coat_study.CoatStudy`.

* :func:`rewards_table`: per reward, AUC of "positive" over the pooled candidates, pairwise
  accuracy (concordant / pairs with different ratings, pooled over users), MSE and MAE of the
  rating model; mean and t-interval over seeds. :func:`ips_table`: IPS minus naive per seed
  (``eval.stats.seed_comparison``) and a user bootstrap of the difference with the seeds fixed.
* :func:`exposure_table`: pairwise accuracy within each exposure bucket (pooled pairs),
  :func:`ips_exposure_table` IPS minus naive in each bucket, :func:`rare_gap_table` the rarest
  bucket minus the most exposed one.
* :func:`diagnostic_auc_table`: ROC AUC of e, u, a and a_self for "agree_u > 0.5" (the naive
  reward), and :func:`gate_audit_table`: agreement of the users a gate admits (the top half by a
  diagnostic, the rule of ``rl.gate.reliability_gate`` at rate 0.5) minus that of the users it
  rejects, against a random half.

Intervals: ``_ci`` = t-interval half-width over seeds (the seeds are the replication unit of a
trained model); ``fixedseeds_boot_low/high`` = 95% percentile bootstrap over users with the seeds
held fixed (``eval.coat_reliability.user_bootstrap_ci``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .coat_study import DIAGNOSTICS, CoatStudy
from ..eval import coat_reliability as rel
from ..eval.metrics import auc
from ..eval.stats import mean_ci, seed_comparison


def _boot(st: CoatStudy, stat, n_users: int | None = None) -> tuple[float, float]:
    return rel.user_bootstrap_ci(stat, n_users or st.n_users, st.cfg.n_boot, 0.05, st.cfg.stat_seed)


def _per_seed(st: CoatStudy, values) -> str:
    return ";".join(f"{s}:{v:.6g}" for s, v in zip(st.cfg.seeds, values))


def _metrics(st: CoatStudy, key) -> dict:
    """{metric: (per-seed values [S], stat(idx) -> mean over seeds on users idx, or None)}."""
    valid = st.items >= 0
    pos = st.ratings >= st.threshold
    out = {"auc": (np.array([auc(pos[valid], s[valid]) for s in st.scores[key]]), None),
           "pair_acc": (st.conc[key].sum(1) / st.pairs.sum(),
                        lambda idx, c=st.conc[key]: (c[:, idx].sum(1) / st.pairs[idx].sum()).mean())}
    if key in st.sq:
        n = valid.sum(1)
        for name, arr in (("mse", st.sq[key]), ("mae", st.ab[key])):
            out[name] = (arr.sum(1) / n.sum(), lambda idx, a=arr: (a[:, idx].sum(1) / n[idx].sum()).mean())
    return out


def rewards_table(st: CoatStudy) -> pd.DataFrame:
    """One row per reward: AUC of 'positive', pairwise accuracy, MSE and MAE (rating model) on the
    random candidates; mean over seeds, its t-interval half-width ``_ci`` and the per-seed values."""
    rows = []
    for key in st.scores:
        r = {"kind": key[0], "weighting": key[1], "seeds": len(st.cfg.seeds)}
        for name, (vals, _) in _metrics(st, key).items():
            r[name], r[f"{name}_ci"] = mean_ci(vals)
            r[f"{name}_per_seed"] = _per_seed(st, vals)
        rows.append(r)
    return pd.DataFrame(rows)


def ips_table(st: CoatStudy) -> pd.DataFrame:
    """IPS minus naive per reward kind and metric: the per-seed differences (same seed, same split)
    through ``eval.stats.seed_comparison`` (mean, t-interval, share of seeds below 0, sign-flip p)
    and a user bootstrap of the difference with the seeds fixed (paired: the same users).
    ``better`` = the direction that favours IPS (below 0 for MSE and MAE)."""
    rows = []
    for kind, w in st.scores:
        if w == "naive":
            continue
        ips, base = _metrics(st, (kind, w)), _metrics(st, (kind, "naive"))
        for name in ips:
            diff = ips[name][0] - base[name][0]
            c = seed_comparison(dict(zip(st.cfg.seeds, diff)))
            lo = hi = np.nan
            if ips[name][1] is not None:
                lo, hi = _boot(st, lambda idx, f=ips[name][1], g=base[name][1]: f(idx) - g(idx))
            rows.append({"kind": kind, "weighting": w, "reference": "naive", "metric": name,
                         "better": "lower" if name in ("mse", "mae") else "higher",
                         **{k: c[k] for k in ("n_seeds", "mean", "ci", "share_below_0", "p_seed")},
                         "fixedseeds_boot_low": lo, "fixedseeds_boot_high": hi, "per_seed": c["per_seed"]})
    return pd.DataFrame(rows)


def _bucket_acc(st: CoatStudy, key, b: int, idx=slice(None)) -> np.ndarray:
    """[S] pooled pairwise accuracy within bucket b over the users ``idx``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return st.bconc[key][:, idx, b].sum(1) / st.bpairs[idx, b].sum()


def exposure_table(st: CoatStudy) -> pd.DataFrame:
    """Pairwise accuracy of each reward within each exposure bucket (pairs of two random
    candidates of one user, both in the bucket, with different ratings, pooled over users)."""
    rows = []
    for key in st.scores:
        for b in range(st.cfg.n_buckets):
            vals = _bucket_acc(st, key, b)
            m, ci = mean_ci(vals)
            lo, hi = _boot(st, lambda idx, k=key, b=b: _bucket_acc(st, k, b, idx).mean())
            members = st.exposure[st.bucket == b]
            rows.append({"kind": key[0], "weighting": key[1], "bucket": b, "min_exposure": int(members.min()),
                         "max_exposure": int(members.max()), "items": len(members), "pairs": int(st.bpairs[:, b].sum()),
                         "acc": m, "acc_ci": ci, "acc_fixedseeds_boot_low": lo, "acc_fixedseeds_boot_high": hi,
                         "per_seed": _per_seed(st, vals)})
    return pd.DataFrame(rows)


def _comparison(st: CoatStudy, per_seed, stat, n_users: int | None = None) -> dict:
    c = seed_comparison(dict(zip(st.cfg.seeds, per_seed)))
    lo, hi = _boot(st, stat, n_users)
    return {**{k: c[k] for k in ("n_seeds", "mean", "ci", "share_below_0", "p_seed")},
            "fixedseeds_boot_low": lo, "fixedseeds_boot_high": hi, "per_seed": c["per_seed"]}


def ips_exposure_table(st: CoatStudy) -> pd.DataFrame:
    """IPS minus naive pairwise accuracy within each exposure bucket (same seeds, same users)."""
    rows = []
    for kind, w in st.scores:
        if w == "naive":
            continue
        for b in range(st.cfg.n_buckets):
            diff = _bucket_acc(st, (kind, w), b) - _bucket_acc(st, (kind, "naive"), b)
            stat = lambda idx, k=kind, w=w, b=b: (_bucket_acc(st, (k, w), b, idx) - _bucket_acc(st, (k, "naive"), b, idx)).mean()
            rows.append({"kind": kind, "weighting": w, "reference": "naive", "bucket": b, **_comparison(st, diff, stat)})
    return pd.DataFrame(rows)


def rare_gap_table(st: CoatStudy) -> pd.DataFrame:
    """Per reward: pairwise accuracy in the rarest bucket minus the most exposed one (below 0: less
    accurate on rarely selected items), with both accuracies."""
    rows, top = [], st.cfg.n_buckets - 1
    for key in st.scores:
        rare, common = _bucket_acc(st, key, 0), _bucket_acc(st, key, top)
        stat = lambda idx, k=key: (_bucket_acc(st, k, 0, idx) - _bucket_acc(st, k, top, idx)).mean()
        rows.append({"kind": key[0], "weighting": key[1], "acc_rarest": rare.mean(), "acc_most_exposed": common.mean(),
                     **_comparison(st, rare - common, stat)})
    return pd.DataFrame(rows)


def _population(st: CoatStudy, kind: str) -> np.ndarray:
    """Users with a pair of different ratings, a liked candidate and a liked self-selected item: every
    diagnostic is defined."""
    d = st.diag[kind]
    return np.flatnonzero((st.pairs > 0) & np.isfinite(d["a"]).all(0) & np.isfinite(d["a_self"]).all(0))


def _diag_values(st: CoatStudy, kind: str, name: str, users: np.ndarray) -> np.ndarray:
    d = st.diag[kind]
    x = d[name] if d[name].ndim == 2 else np.broadcast_to(d[name], d["agree"].shape)
    return x[:, users]


def diagnostic_auc_table(st: CoatStudy) -> pd.DataFrame:
    """ROC AUC of e, u, a and a_self as predictors of "the naive reward orders the user's random
    candidates right" (agree_u > 0.5), per diagnostic kind, over the users where all are defined:
    mean over seeds, t-interval, user bootstrap with the seeds fixed and the per-seed values."""
    rows = []
    for kind in st.diag:
        users = _population(st, kind)
        y = st.diag[kind]["agree"][:, users] > 0.5                                   # [S, n]
        for name in DIAGNOSTICS:
            x = _diag_values(st, kind, name, users)
            per_seed = np.array([auc(y[k], x[k]) for k in range(len(y))])
            stat = lambda idx, x=x: np.nanmean([rel.auc_rows(y[k][idx], x[k][idx]) for k in range(len(y))], axis=0)
            lo, hi = rel.user_bootstrap_ci(stat, len(users), st.cfg.n_boot, 0.05, st.cfg.stat_seed, vectorised=True) \
                if len(users) else (np.nan, np.nan)
            m, ci = mean_ci(per_seed)
            rows.append({"kind": kind, "diagnostic": name, "users": len(users), "share_agreeing": float(y.mean()),
                         "auc": m, "auc_ci": ci, "auc_fixedseeds_boot_low": lo, "auc_fixedseeds_boot_high": hi,
                         "per_seed": _per_seed(st, per_seed)})
    return pd.DataFrame(rows)


def _gate_diffs(x: np.ndarray, agree: np.ndarray) -> np.ndarray:
    """[B]: per row of x, agree [B, n], the agreement of the admitted users (the top half by x,
    ``rl.gate.reliability_gate`` at rate 0.5, row by row) minus that of the rejected ones."""
    g = rel.half_gate_rows(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (agree * g).sum(1) / g.sum(1) - (agree * ~g).sum(1) / (~g).sum(1)


def gate_audit_table(st: CoatStudy) -> pd.DataFrame:
    """A gate admitting the top half of users by e, u, a or a_self (and a random half, the control):
    admitted-minus-rejected agreement of the naive reward, per seed then over seeds, its user
    bootstrap, and its difference to the random half of the same seed (``minus_random``)."""
    rows = []
    for kind in st.diag:
        users = _population(st, kind)
        if not len(users):
            continue
        agree = st.diag[kind]["agree"][:, users]                                      # [S, n]
        rnd = np.random.default_rng(st.cfg.stat_seed).random(agree.shape)
        rand = _gate_diffs(rnd, agree)
        for name, x in {**{n: _diag_values(st, kind, n, users) for n in DIAGNOSTICS}, "random": rnd}.items():
            per = _gate_diffs(x, agree)
            stat = lambda idx, x=x: np.mean([_gate_diffs(x[k][idx], agree[k][idx]) for k in range(len(agree))], axis=0)
            lo, hi = rel.user_bootstrap_ci(stat, len(users), st.cfg.n_boot, 0.05, st.cfg.stat_seed, vectorised=True)
            c, m = seed_comparison(dict(zip(st.cfg.seeds, per))), seed_comparison(dict(zip(st.cfg.seeds, per - rand)))
            adm = np.mean([agree[k][rel.half_gate_rows(x[k][None])[0]].mean() for k in range(len(agree))])
            rows.append({"kind": kind, "gate": name, "users": len(users), "agree_admitted": adm,
                         "diff": c["mean"], "diff_ci": c["ci"], "diff_fixedseeds_boot_low": lo,
                         "diff_fixedseeds_boot_high": hi, "share_below_0": c["share_below_0"], "p_seed": c["p_seed"],
                         "minus_random": m["mean"], "minus_random_ci": m["ci"], "minus_random_p_seed": m["p_seed"],
                         "per_seed": c["per_seed"]})
    return pd.DataFrame(rows)


def users_table(st: CoatStudy) -> pd.DataFrame:
    """One row per (diagnostic kind, seed, user): the naive reward's agreement, pairs, e, u, a, a_self."""
    parts = []
    for kind, d in st.diag.items():
        for si, seed in enumerate(st.cfg.seeds):
            parts.append(pd.DataFrame({"kind": kind, "seed": seed, "user": np.arange(st.n_users),
                                       "agreement": d["agree"][si], "pairs": st.pairs, "e": d["e"],
                                       **{n: d[n][si] for n in DIAGNOSTICS[1:]}}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def all_tables(st: CoatStudy, data=None) -> dict:
    """Every table of notebook 09, by its short name (the file is ``nb09_<name>``)."""
    out = {}
    if data is not None:
        out["data"] = pd.DataFrame([{**data.summary(), "candidates": int((st.items >= 0).sum()),
                                     "exclude_seen": st.cfg.exclude_seen, "seeds": len(st.cfg.seeds)}])
    out.update({"rewards": rewards_table(st), "ips_vs_naive": ips_table(st), "accuracy_by_exposure": exposure_table(st),
                "ips_by_exposure": ips_exposure_table(st), "rare_gap": rare_gap_table(st)})
    if st.diag:
        out.update({"diagnostic_auc": diagnostic_auc_table(st), "gate_audit": gate_audit_table(st),
                    "users": users_table(st)})
    out["runs"] = st.runs
    if st.selection is not None and len(st.selection):
        out["selection"] = st.selection
    return out
