"""The notebooks' figures: each function takes tables the package computed and returns a figure.

Labels never sit on top of each other: points that need a name get a legend entry, not an
annotation next to the point.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from ..eval.stats import parse_per_seed
from ..common.storage import atomic_write_bytes


def save_figure(fig, out_dir: str | os.PathLike, name: str, dpi: int = 120) -> None:
    """Save a matplotlib figure as ``name.png`` and ``name.pdf`` in out_dir, each atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for fmt in ("png", "pdf"):
        buf = io.BytesIO()
        meta = {"CreationDate": None} if fmt == "pdf" else None   # reproducible bytes
        fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight", metadata=meta)
        atomic_write_bytes(out / f"{name}.{fmt}", buf.getvalue())


def _ci(x) -> np.ndarray:
    return np.nan_to_num(np.asarray(x, dtype=float))


def _seed_points(ax, x, values, color) -> int:
    """Each seed as a small faint point in ``color`` at ``x`` (one x for all the values, or one x
    per value), beneath the means (seeds are the unit of replication: every figure of a mean over
    seeds shows them); non-finite pairs dropped. Returns the number of points drawn."""
    y = np.asarray(values, dtype=float).ravel()
    x = np.broadcast_to(np.asarray(x, dtype=float), y.shape)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.any():
        ax.scatter(x[keep], y[keep], s=12, color=color, alpha=0.35, linewidths=0, zorder=1.5, gid="seeds")
    return int(keep.sum())


def _legend(ax, seeds: bool, handles=None, **kw):
    """A compact legend outside the axes on the right, with a "one seed" entry when seeds were drawn."""
    h, lab = ax.get_legend_handles_labels() if handles is None else handles
    if seeds:
        h, lab = h + [Line2D([], [], ls="", marker="o", ms=3.5, color="0.3", alpha=0.35)], lab + ["one seed"]
    ax.legend(h, lab, fontsize=7, **({"loc": "center left", "bbox_to_anchor": (1.01, 0.5)} | kw))


def _n(summary: pd.DataFrame, method) -> str:
    """' (n=10)': the method's number of seeds (its largest over checkpoints), '' without a seeds column."""
    n = summary.loc[summary.method == method, "seeds"] if "seeds" in summary else pd.Series(dtype=float)
    return f" (n={int(n.max())})" if len(n) and n.notna().any() else ""


def exposure_curve(world):
    """Impressions per item, items sorted by impressions (log-log)."""
    imp = np.sort(np.bincount(world.impressions["item"], minlength=world.n_items))[::-1]
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.loglog(np.arange(1, len(imp) + 1), np.maximum(imp, 1))
    ax.set_xlabel("item rank by impressions"); ax.set_ylabel("impressions")
    ax.set_title(f"exposure, exposure_bias={world.cfg.exposure_bias}")
    fig.tight_layout()
    return fig


def ranker_pairwise(pw: pd.DataFrame):
    """Pairwise accuracy (ground truth vs random negatives) by exposure bucket, ranker vs truth."""
    pw = pw[pw["bucket"].astype(str) != "all"]
    x = np.arange(len(pw))
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(x, pw["acc_random"], "o-", label="ranker")
    if "truth_acc_random" in pw:
        ax.plot(x, pw["truth_acc_random"], "s--", label="true utility")
    ax.set_xticks(x); ax.set_xlabel("exposure bucket (0 = rarest)"); ax.set_ylabel("pairwise accuracy vs random negatives")
    ax.legend(); fig.tight_layout()
    return fig


def influence_by_difficulty(t2: pd.DataFrame, t2r: pd.DataFrame, k: int):
    """RM (and true-utility) influence on HR@k by difficulty quantile and by LLM-order rank."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, t, col, title in ((axes[0], t2, "difficulty_q", "by difficulty (log-likelihood quantile)"),
                              (axes[1], t2r, "rank_stratum", "by target rank in LLM order")):
        x = np.arange(len(t))
        err = np.vstack([t.rm_influence - t.ci_low, t.ci_high - t.rm_influence])
        ax.bar(x - 0.2, t.rm_influence, 0.4, yerr=err, capsize=3, label="ranker re-sort")
        if "truth_influence" in t:
            ax.bar(x + 0.2, t.truth_influence, 0.4, color="0.7", label="true-utility re-sort")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(x); ax.set_xticklabels(t[col].astype(str), rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(f"change in HR@{k}"); ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def influence_heatmap(t3: pd.DataFrame, k: int):
    """RM influence per (difficulty, discriminability) cell, with the cell's n."""
    grid = t3.pivot(index="difficulty_q", columns="discrim_q", values="rm_influence")
    counts = t3.pivot(index="difficulty_q", columns="discrim_q", values="n")
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * grid.shape[1], 1.2 + 0.6 * grid.shape[0]))
    lim = max(float(np.nanmax(np.abs(grid.to_numpy()))), 1e-3)
    im = ax.imshow(grid.to_numpy(dtype=float), cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            v, n = grid.iat[i, j], counts.iat[i, j]
            if not np.isnan(v):
                ax.text(j, i, f"{v:+.3f}\nn={int(n)}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(grid.shape[1])); ax.set_xticklabels(grid.columns.astype(str), fontsize=8)
    ax.set_yticks(range(grid.shape[0])); ax.set_yticklabels(grid.index.astype(str), fontsize=8)
    ax.set_xlabel("discriminability (ranker AUC of the target)"); ax.set_ylabel("policy difficulty")
    fig.colorbar(im, ax=ax, label=f"RM influence on HR@{k}")
    fig.tight_layout()
    return fig


def metric_by_method(summary: pd.DataFrame, rows: pd.DataFrame, metric: str = "HR@10"):
    """Mean ± 95% t-interval of a metric per method, best and final checkpoints, each seed a faint
    point beside its mean; the tick labels give each method's number of seeds."""
    fig, ax = plt.subplots(figsize=(8.5, 3.4))
    names, drawn = list(dict.fromkeys(summary.method)), 0
    x = np.arange(len(names))
    for off, ckpt, color in ((-0.2, "best", "C0"), (0.2, "final", "C1")):
        s = summary[summary.checkpoint == ckpt].set_index("method").reindex(names)
        ax.errorbar(x + off, s[metric], yerr=_ci(s[metric + "_ci"]), fmt="o", ms=5, color=color, capsize=3,
                    label=f"{ckpt} checkpoint: mean ± 95% t-interval")
        for i, n in enumerate(names):   # the individual seeds, just right of the mean
            drawn += _seed_points(ax, i + off + 0.09, rows.loc[(rows.method == n) & (rows.checkpoint == ckpt), metric],
                                  color)
    ax.set_xticks(x); ax.set_xticklabels([n + _n(summary, n) for n in names], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(f"test {metric} (unconstrained)"); _legend(ax, seeds=drawn > 0)
    fig.tight_layout()
    return fig


def training_curves(logs: pd.DataFrame, window: int = 10):
    """Admission rate, target NLL and mean rollout reward per step (mean over seeds, rolling mean)."""
    cols = [c for c in ("admission_rate", "nll", "reward") if c in logs]
    curves = logs.groupby(["method", "step"], sort=False)[cols].mean().reset_index()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3))
    for n, g in curves.groupby("method", sort=False):
        for ax, c in zip(axes, ("admission_rate", "nll", "reward")):
            if c in g and g[c].notna().any():
                ax.plot(g.step, g[c].rolling(window, min_periods=1).mean(), label=n)
    for ax, t in zip(axes, ("admission rate", "NLL of the target", "mean rollout reward")):
        ax.set_title(t, fontsize=10); ax.set_xlabel("RL step")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def admission_rates(logs: pd.DataFrame, names=("adagrpo", "random", "random(mean)"), window: int = 10):
    """Per-step admission rate of a few methods (mean over seeds, rolling mean)."""
    rate = logs.groupby(["method", "step"], sort=False)["admission_rate"].mean().reset_index()
    fig, ax = plt.subplots(figsize=(6, 3))
    for n in names:
        g = rate[rate.method == n]
        ax.plot(g.step, g.admission_rate.rolling(window, min_periods=1).mean(), label=n)
    ax.set_xlabel("RL step"); ax.set_ylabel(f"admission rate ({window}-step mean)"); ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def metric_vs_admission(summary: pd.DataFrame, metric: str = "HR@10", checkpoint: str = "best",
                        exclude=("grpo",), rows: pd.DataFrame | None = None):
    """A metric against the admission rate, one legend entry per method (no overlapping labels);
    with ``rows`` (one per run), each seed's (admission rate, metric) as a faint point in its
    method's colour."""
    s = summary[(summary.checkpoint == checkpoint) & ~summary.method.isin(exclude)].sort_values("admission_rate")
    fig, ax = plt.subplots(figsize=(7.5, 4))
    markers, drawn = "osD^v<>pPX*h", 0
    for i, (_, r) in enumerate(s.iterrows()):
        ax.errorbar(r.admission_rate, r[metric], yerr=_ci(r[metric + "_ci"]), xerr=_ci(r.admission_rate_ci),
                    fmt=markers[i % len(markers)], ms=5, color=f"C{i % 10}", capsize=3,
                    label=r.method + _n(s, r.method))
        if rows is not None:
            g = rows[(rows.method == r.method) & (rows.checkpoint == checkpoint)]
            drawn += _seed_points(ax, g.admission_rate, g[metric], f"C{i % 10}")
    ax.set_xlabel("admission rate (share of samples in the GRPO term)"); ax.set_ylabel(f"test {metric}, {checkpoint} checkpoint")
    ax.set_title("NLL + gated GRPO: mean ± 95% t-interval over seeds"
                 + (f" ({', '.join(exclude)} omitted)" if exclude else ""), fontsize=9)
    _legend(ax, seeds=drawn > 0)
    fig.tight_layout()
    return fig


def frontier(summary: pd.DataFrame, metric: str = "HR@10", points=(("adagrpo", "r*"), ("nll", "bs")),
             rows: pd.DataFrame | None = None):
    """The metric against hallucination: the fixed mixture over lambda (a line, each lambda its own
    legend entry) against single methods, at the best and the final checkpoint; with ``rows`` (one
    per run), each seed's (hallucination, metric) as a faint point in its method's colour."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    drawn = 0
    for ax, ckpt in zip(axes, ("best", "final")):
        s = summary[summary.checkpoint == ckpt]
        mix = s[s.lam.notna()].sort_values("lam")
        ax.plot(mix.halluc, mix[metric], "-", color="0.6", zorder=1)
        shown = [(r, "o", plt.cm.Greys(0.45 + 0.5 * i / max(1, len(mix) - 1)), 6, f"mix, lambda={r.lam:g}")
                 for i, (_, r) in enumerate(mix.iterrows())]
        shown += [(s[s.method == name].iloc[0], style, None, 10 if name == "adagrpo" else 7, name)
                  for name, style in points if (s.method == name).any()]
        for r, fmt, color, ms, label in shown:
            eb = ax.errorbar(r.halluc, r[metric], xerr=_ci(r.halluc_ci), yerr=_ci(r[metric + "_ci"]), fmt=fmt,
                             color=color, ms=ms, capsize=2, label=label + _n(s, r.method))
            if rows is not None:
                g = rows[(rows.method == r.method) & (rows.checkpoint == ckpt)]
                drawn += _seed_points(ax, g.halluc, g[metric], eb[0].get_color())
        ax.set_xlabel("hallucination rate (unconstrained top-20)"); ax.set_title(f"{ckpt} checkpoint", fontsize=10)
    axes[0].set_ylabel(f"test {metric} (unconstrained)")
    _legend(axes[1], seeds=drawn > 0)
    fig.tight_layout()
    return fig


def sweep_curve(t: pd.DataFrame, knob: str, metric: str = "HR@10"):
    """One knob's points (``sweeps.knob_table``): AdaGRPO and its matched controls against the
    knob's value (and the other threshold's, when the points come from the tau x rho grid)."""
    other = {"tau": "rho", "rho": "tau"}.get(knob)
    varies = other is not None and other in t and t[other].nunique() > 1
    if not varies:
        t = t.sort_values(knob)
    x = np.arange(len(t))
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for off, tag, label, fmt in ((-0.12, "ada", "AdaGRPO", "o-"), (0.0, "random", "random, same rates", "s--"),
                                 (0.12, "mixp", "mix(lambda x p)", "^:")):
        ax.errorbar(x + off, t[f"{metric}_{tag}"], yerr=_ci(t[f"{metric}_{tag}_ci"]), fmt=fmt, capsize=3, label=label)
    fmt_v = lambda v: f"{v:g}" if isinstance(v, float) else str(v)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{fmt_v(v)}\n{other} {fmt_v(o)}" for v, o in zip(t[knob], t[other])] if varies
                       else [fmt_v(v) for v in t[knob]])
    ax.set_xlabel(knob + (" (points of the tau x rho grid)" if varies else ""))
    ax.set_ylabel(f"test {metric}, best checkpoint")
    ax.legend(fontsize=7); fig.tight_layout()
    return fig


def tau_rho_heatmaps(table: pd.DataFrame, columns=("admission_rate", "HR@10_ada", "gain_vs_random")):
    """The tau x rho grid: one heat map per column, the value written in each cell."""
    t = table[table.sweep == "tau_rho"]
    cols = [c for c in columns if c in t]
    fig, axes = plt.subplots(1, len(cols), figsize=(3.6 * len(cols), 3.2), squeeze=False)
    for ax, c in zip(axes[0], cols):
        grid = t.pivot_table(index="tau", columns="rho", values=c)
        im = ax.imshow(grid.to_numpy(dtype=float), cmap="RdBu" if c.startswith("gain") else "viridis", aspect="auto",
                       origin="lower")
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                ax.text(j, i, f"{grid.iat[i, j]:.3f}", ha="center", va="center", fontsize=7, color="w")
        ax.set_xticks(range(grid.shape[1])); ax.set_xticklabels([f"{v:g}" for v in grid.columns])
        ax.set_yticks(range(grid.shape[0])); ax.set_yticklabels([f"{v:g}" for v in grid.index])
        ax.set_xlabel("rho"); ax.set_ylabel("tau"); ax.set_title(c, fontsize=9)
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


def gain_vs_admission(table: pd.DataFrame, metric: str = "HR@10", column: str = "gain_vs_random"):
    """AdaGRPO's paired gain over the random gate at the same rates, against the admission rate,
    for every swept point: does any (tau, rho, ...) beat random gating at a matched rate?"""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for i, (sweep, g) in enumerate(table.groupby("sweep", sort=False)):
        ax.errorbar(g.admission_rate, g[column], yerr=_ci(g[column + "_ci"]), fmt="osD^v<>"[i % 7],
                    capsize=2, label=f"sweep: {sweep}")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("AdaGRPO admission rate"); ax.set_ylabel(f"{metric}: AdaGRPO - random (same rates)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5)); fig.tight_layout()
    return fig


def roc_curves(curves: dict, method: str):
    """ROC of each diagnostic of one method as a predictor of "the reward orders the rollouts right"."""
    fig, ax = plt.subplots(figsize=(4.2, 4))
    for (m, name), (fpr, tpr) in curves.items():
        if m == method:
            ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], ":", color="0.5")
    ax.set_xlabel("false positive rate"); ax.set_ylabel("true positive rate")
    ax.set_title(f"{method}: predicting rank agreement > 0.5", fontsize=9); ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def admission_by_bucket(table: pd.DataFrame):
    """Admission rate by the target's exposure bucket, one line per method."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for i, (m, g) in enumerate(table.groupby("method", sort=False)):
        ax.plot(g.bucket, g.admission_rate, "osD^v<>p"[i % 8] + "-", label=m)
    ax.set_xlabel("exposure bucket of the target (0 = rarest)"); ax.set_ylabel("admission rate")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5)); fig.tight_layout()
    return fig


def noise_gap(table: pd.DataFrame, metrics=("sim_ctr", "HR@10")):
    """AdaGRPO minus the best fixed mixture against the reward's noise level (0 = the truth)."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.2), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        t = table[table.metric == m].sort_values("noise")
        ax.errorbar(t.noise, t.gap, yerr=_ci(t.gap_ci), fmt="o-", capsize=3)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel("noise on the rarest items (std of the utility error)"); ax.set_ylabel(f"{m}: AdaGRPO - best mixture")
    fig.tight_layout()
    return fig


def phase_diagram(gains: pd.DataFrame, dial_label: str, crossovers: pd.DataFrame | None = None,
                  metrics=("sim_ctr", "HR@10"), highlight=None):
    """Gain over continued NLL against the dial's value, one line per method with its 95% t-interval
    over seeds (error bars), sim CTR and HR@10 side by side; each seed's gain (``*_gain_per_seed``,
    when the table has it) a faint point just right of its method's mean. The methods are dodged
    along x by a fixed offset each so they do not overlap. Dashed lines mark the crossovers (where
    mix(1)'s interval first lies below 0), one legend entry each. ``highlight``: the methods an
    answer reads, drawn in full; the others faded, without their seeds' points (None: all in full)."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.6 * len(metrics), 3.8), squeeze=False, sharex=True)
    methods = list(dict.fromkeys(gains.method))
    vals = np.unique(gains.value.to_numpy(float))
    step = 0.6 * (np.diff(vals).min() if len(vals) > 1 else 1.0) / max(len(methods), 1)   # one method's slot
    handles, drawn = {}, 0
    for ax, metric in zip(axes[0], metrics):
        for i, method in enumerate(methods):
            t = gains[gains.method == method].sort_values("value")
            x = t.value.to_numpy(float) + (i - (len(methods) - 1) / 2) * step
            n = sorted(set(t.seeds.dropna().astype(int))) if "seeds" in t else []
            label = method + (f" (n={n[0]})" if len(n) == 1 else f" (n={n[0]}-{n[-1]})" if n else "")
            faded = highlight is not None and method not in highlight
            eb = ax.errorbar(x, t[f"{metric}_gain"], yerr=_ci(t[f"{metric}_gain_ci"]), fmt="osD^v<>p"[i % 8] + "-",
                             ms=4, lw=1, elinewidth=0.8, capsize=2, label=label, alpha=0.25 if faded else 1.0)
            for b in eb[1] + eb[2]:   # lighter interval bars: the seeds stay visible
                b.set_alpha(0.15 if faded else 0.6)
            if f"{metric}_gain_per_seed" in t and not faded:
                for xv, cell in zip(x, t[f"{metric}_gain_per_seed"]):
                    drawn += _seed_points(ax, xv + 0.4 * step, list(parse_per_seed(cell).values()), eb[0].get_color())
        if crossovers is not None:
            for c in crossovers[(crossovers.metric == metric) & crossovers.crossover.notna()].itertuples():
                ax.axvline(c.crossover, ls="--", color="0.3", lw=1,
                           label=f"{metric}: {c.method} crossover ({c.side}): {c.crossover:g}")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel(dial_label); ax.set_ylabel(f"{metric} gain over continued NLL")
        handles.update(zip(*ax.get_legend_handles_labels()[::-1]))
    labels = sorted(handles, key=lambda lab: " crossover (" in lab)   # the methods first, then the crossovers
    _legend(axes[0][-1], seeds=drawn > 0, handles=([handles[lab] for lab in labels], labels))
    fig.tight_layout()
    return fig


def phase_admission(gains: pd.DataFrame, dial_label: str):
    """Admission rate against the dial's value, one line per gated method."""
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    g = gains[gains.admission_rate.notna()] if "admission_rate" in gains else gains.iloc[:0]
    for i, (method, t) in enumerate(g.groupby("method", sort=False)):
        t = t.sort_values("value")
        ax.plot(t.value, t.admission_rate, "osD^v<>p"[i % 8] + "-", ms=4, label=method)
    ax.set_xlabel(dial_label); ax.set_ylabel("admission rate"); ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5)); fig.tight_layout()
    return fig


def sft_validation_curve(history: pd.DataFrame, n_val: int, select: str = "HR@10", title: str = ""):
    """SFT validation HR@10 and NDCG@10 per checkpoint (HR@10 with its 95% binomial band over the
    ``n_val`` validation users), the training loss and the learning rate; the best checkpoint on
    ``select`` marked."""
    h = history.sort_values("step")
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    hr = h["val_HR@10"].to_numpy(float)
    se = np.sqrt(hr * (1 - hr) / max(n_val, 1))
    ax.plot(h.step, hr, "o-", label="valid HR@10")
    ax.fill_between(h.step, hr - 1.96 * se, hr + 1.96 * se, alpha=0.2, label="HR@10 95% band")
    if "val_NDCG@10" in h:
        ax.plot(h.step, h["val_NDCG@10"], "s--", label="valid NDCG@10")
    best = h.loc[h[f"val_{select}"].idxmax()]
    ax.axvline(best.step, color="grey", ls=":", label=f"best on {select} (step {int(best.step)})")
    ax.set_xlabel("SFT step"); ax.set_title(f"validation ({n_val:,} users)", fontsize=10)
    ax.legend(fontsize=7)
    lines = ax2.plot(h.step, h.train_loss, "o-", color="C3", label="train NLL (mean since the last validation)")
    ax2.set_xlabel("SFT step"); ax2.set_ylabel("train NLL")
    if "lr" in h:
        ax3 = ax2.twinx()
        lines += ax3.plot(h.step, h.lr, "--", color="C2", label="lr at the validation")
        ax3.set_ylabel("lr")
    ax2.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
