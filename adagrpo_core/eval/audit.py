"""The audit of admitted samples: are the samples a gate admits the ones whose reward is right?

Every gated RL run on the simulated world logs, per sample and step (``audit.npz``): the
diagnostics d and a, the gate, the **rank agreement** of the reward's order of the sample's
rollouts with the true utility's order (share of concordant pairs), the reward-truth correlation
over the rollouts, and the target item. Here:

* :func:`accuracy_table`: reward accuracy (rank agreement, correlation) of admitted against
  rejected samples, per method, as means over seeds with 95% t-intervals, and their paired
  difference;
* :func:`diagnostic_roc`: ROC curve and AUC of d, a, the AdaGRPO gate score and, where logged, the
  reliability diagnostics e (exposure) and u (ensemble) as predictors of "the reward orders this
  sample's rollouts like the truth" (agreement > 0.5);
* :func:`admission_by_bucket`: the admission rate by the target's train-exposure bucket.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .metrics import auc
from .stats import mean_ci


def load_audits(rows: pd.DataFrame) -> pd.DataFrame:
    """Every run's ``audit.npz`` in ``rows`` (a main_results frame), one row per sample and step,
    with ``method`` and ``seed``; samples without a comparable pair of rollouts are dropped."""
    parts = []
    for r in rows.drop_duplicates("run_dir").itertuples():
        f = Path(r.run_dir) / "audit.npz"
        if f.exists():
            with np.load(f) as z:
                df = pd.DataFrame({k: z[k] for k in z.files})
            parts.append(df[df.pairs > 0].assign(method=r.method, seed=r.seed))
    if not parts:
        return pd.DataFrame(columns=["method", "seed", "step", "d", "a", "gate", "agreement", "reward_truth_corr"])
    return pd.concat(parts, ignore_index=True)


def accuracy_table(audit: pd.DataFrame) -> pd.DataFrame:
    """Per method: admission rate, and the mean rank agreement and reward-truth correlation of
    admitted and of rejected samples (per-seed means, then mean and t-interval over seeds), with
    the admitted-minus-rejected difference paired per seed."""
    out = []
    for method, g in audit.groupby("method", sort=False):
        per_seed = []
        for seed, s in g.groupby("seed"):
            adm, rej = s[s.gate.astype(bool)], s[~s.gate.astype(bool)]
            per_seed.append({"seed": seed, "admitted": len(adm) / len(s),
                             "agree_adm": adm.agreement.mean(), "agree_rej": rej.agreement.mean(),
                             "corr_adm": adm.reward_truth_corr.mean(), "corr_rej": rej.reward_truth_corr.mean()})
        p = pd.DataFrame(per_seed)
        r = {"method": method, "seeds": len(p), "samples": len(g)}
        for c in ("admitted", "agree_adm", "agree_rej", "corr_adm", "corr_rej"):
            r[c], r[c + "_ci"] = mean_ci(p[c].dropna()) if p[c].notna().any() else (np.nan, np.nan)
        d = (p.agree_adm - p.agree_rej).dropna()
        r["agree_diff"], r["agree_diff_ci"] = mean_ci(d) if len(d) else (np.nan, np.nan)
        out.append(r)
    return pd.DataFrame(out)


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) over every threshold of ``scores`` (ties grouped)."""
    y = np.asarray(labels, bool)
    s = np.asarray(scores, float)
    order = np.argsort(-s, kind="stable")
    y, s = y[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]          # the end of each tie group
    tp, fp = np.cumsum(y)[last], np.cumsum(~y)[last]
    return np.r_[0.0, fp / max(1, (~y).sum())], np.r_[0.0, tp / max(1, y.sum())]


def diagnostic_roc(audit: pd.DataFrame, tau: float, rho: float) -> tuple[pd.DataFrame, dict]:
    """AUC of d, a, the gate score min(d - tau, a - rho) and, where the runs logged them, e and u as
    predictors of agreement > 0.5, on the samples of each method; returns (table, {(method,
    diagnostic): (fpr, tpr)})."""
    rows, curves = [], {}
    for method, g in audit.groupby("method", sort=False):
        y = (g.agreement > 0.5).to_numpy()
        scores = {"d": g.d.to_numpy(), "a": g.a.to_numpy(),
                  "gate score": np.minimum(g.d.to_numpy() - tau, g.a.to_numpy() - rho)}
        for rel in ("e", "u"):           # the reliability diagnostics, where the runs logged them
            if rel in g and g[rel].notna().all():
                scores[rel] = g[rel].to_numpy()
        r = {"method": method, "samples": len(g), "share_agreeing": y.mean()}
        for name, s in scores.items():
            r[f"auc_{name.replace(' ', '_')}"] = auc(y, s)
            curves[(method, name)] = roc_curve(y, s)
        rows.append(r)
    return pd.DataFrame(rows), curves


def admission_by_bucket(audit: pd.DataFrame, bucket: np.ndarray) -> pd.DataFrame:
    """Admission rate per method and the target's train-exposure bucket (0 = rarest), with the
    rank agreement of that bucket's samples."""
    a = audit.assign(bucket=bucket[audit.target.to_numpy()])
    t = a.groupby(["method", "bucket"], sort=False).agg(samples=("gate", "size"), admission_rate=("gate", "mean"),
                                                          agreement=("agreement", "mean")).reset_index()
    return t
