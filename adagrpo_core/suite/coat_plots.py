"""Notebook 09's figures (Coat), from the tables of :mod:`adagrpo_core.suite.coat_tables`.

Every mean is drawn with its 95% user-bootstrap interval (seeds held fixed) and every seed as a
faint point beside it; the figures are saved with ``plots.save_figure`` (PNG and PDF).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from ..eval.stats import parse_per_seed

_WEIGHTING_LABEL = {"naive": "naive", "ips": "IPS (dataset propensities)", "ips_pop": "IPS (item popularity)"}


def _seeds(ax, x, cell, color) -> int:
    """The per-seed values of a ``per_seed`` cell as faint points at x; returns how many."""
    v = np.array(list(parse_per_seed(cell).values()), dtype=float)
    v = v[np.isfinite(v)]
    if len(v):
        ax.scatter(np.full(len(v), x), v, s=10, color=color, alpha=0.35, linewidths=0, zorder=1.5)
    return len(v)


def _err(mean, low, high) -> np.ndarray:
    """Asymmetric error bars [2, n] from an interval (0 where it is missing)."""
    m, lo, hi = (np.asarray(a, dtype=float) for a in (mean, low, high))
    return np.nan_to_num(np.vstack([m - lo, hi - m]))


def _legend(ax, seeds: bool) -> None:
    h, lab = ax.get_legend_handles_labels()
    if seeds:
        h, lab = h + [Line2D([], [], ls="", marker="o", ms=3.5, color="0.3", alpha=0.35)], lab + ["one seed"]
    ax.legend(h, lab, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))


def _grouped_bars(table: pd.DataFrame, group: str, value: str, low: str, high: str, labels: dict, width_per: float):
    """Bars of ``value`` per ``group`` (x) and reward kind (colour), ``low``-``high`` error bars and
    each seed's value (the ``per_seed`` cell) as a point beside its bar. Returns (fig, ax, drawn)."""
    kinds = list(dict.fromkeys(table.kind))
    groups = list(dict.fromkeys(table[group]))
    width = 0.8 / max(len(kinds), 1)
    fig, ax = plt.subplots(figsize=(1.6 + width_per * len(groups), 3.2))
    x, drawn = np.arange(len(groups)), 0
    for j, kind in enumerate(kinds):
        t = table[table.kind == kind].set_index(group).reindex(groups)
        off = x - 0.4 + width * (j + 0.5)
        ax.bar(off, t[value], width * 0.9, color=f"C{j}", alpha=0.8, capsize=3, label=labels.get(kind, kind),
               yerr=_err(t[value], t[low], t[high]))
        for xi, cell in zip(off, t.per_seed):
            drawn += _seeds(ax, xi + width * 0.3, cell, "0.2")
    ax.set_xticks(x); ax.set_xticklabels(groups)
    return fig, ax, drawn


def diagnostic_auc(table: pd.DataFrame):
    """ROC AUC of each diagnostic for "the naive reward orders the user's random items right",
    one group of bars per reward kind; 0.5 = no better than chance."""
    users = table.groupby("kind").users.max()
    fig, ax, drawn = _grouped_bars(table, "diagnostic", "auc", "auc_fixedseeds_boot_low", "auc_fixedseeds_boot_high",
                                   {k: f"{k} (n={int(n)} users)" for k, n in users.items()}, 1.3)
    ax.axhline(0.5, color="k", lw=0.8, ls="--")
    ax.set_ylim(0.3, 1.0); ax.set_ylabel("ROC AUC for agreement > 0.5")
    ax.set_title("which diagnostic finds the users the reward orders right\n(95% user bootstrap, seeds fixed)",
                 fontsize=9)
    _legend(ax, drawn > 0)
    fig.tight_layout()
    return fig


def accuracy_by_exposure(table: pd.DataFrame):
    """Pairwise accuracy within each exposure bucket of the random items, naive against IPS, one
    panel per reward kind; tick labels give the bucket's range of self-selected ratings per item."""
    kinds = list(dict.fromkeys(table.kind))
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.4 * len(kinds) + 1.6, 3.2), sharey=True, squeeze=False)
    drawn = 0
    for ax, kind in zip(axes[0], kinds):
        t = table[table.kind == kind]
        ws = list(dict.fromkeys(t.weighting))
        for j, w in enumerate(ws):
            s = t[t.weighting == w].sort_values("bucket")
            x = s.bucket.to_numpy() + (j - (len(ws) - 1) / 2) * 0.12
            ax.errorbar(x, s.acc, yerr=_err(s.acc, s.acc_fixedseeds_boot_low, s.acc_fixedseeds_boot_high),
                        fmt="o-", ms=4, capsize=2, color=f"C{j}", label=_WEIGHTING_LABEL.get(w, w))
            for xi, cell in zip(x, s.per_seed):
                drawn += _seeds(ax, xi + 0.04, cell, f"C{j}")
        s = t.drop_duplicates("bucket").sort_values("bucket")
        ax.set_xticks(s.bucket)
        ax.set_xticklabels([f"{b}\n{lo}-{hi}" for b, lo, hi in zip(s.bucket, s.min_exposure, s.max_exposure)],
                           fontsize=7)
        ax.axhline(0.5, color="k", lw=0.6, ls="--")
        ax.set_title(kind, fontsize=9); ax.set_xlabel("exposure bucket (0 = rarest)\nself-selected ratings per item",
                                                      fontsize=8)
    axes[0][0].set_ylabel("pairwise accuracy on random ratings")
    _legend(axes[0][-1], drawn > 0)
    fig.tight_layout()
    return fig


def gate_audit(table: pd.DataFrame):
    """Agreement of the users a gate admits (the top half by a diagnostic) minus the users it
    rejects, against a random half; one group per reward kind."""
    fig, ax, drawn = _grouped_bars(table, "gate", "diff", "diff_fixedseeds_boot_low", "diff_fixedseeds_boot_high", {},
                                   1.2)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel("agreement: admitted - rejected")
    ax.set_title("gate admitting the top half of users by each diagnostic\n(95% user bootstrap, seeds fixed)",
                 fontsize=9)
    _legend(ax, drawn > 0)
    fig.tight_layout()
    return fig
