"""Comparison tables of trained runs, paired per seed: the paired tests (exact McNemar per user,
plus the seed-level comparison), the gains over the SFT base and the gap to the best mixture.

Seeds are the unit of replication, so every comparison P (a column such as ``diff``,
``sim_ctr_diff``, ``gain_HR@10`` or ``gap``) reports, from :func:`~adagrpo_core.eval.stats.seed_comparison`:
P itself (the mean over seeds of the per-seed difference), its t-interval half-width over seeds
(the column name each table already used), ``P_share_below_0``, ``P_p_seed`` (the exact sign-flip
test over seeds), ``P_p_seed_holm`` (Holm over the table's comparisons of that metric),
``P_hboot_low`` / ``P_hboot_high`` (the hierarchical bootstrap, seeds then users, where per-user
values are loaded) and ``P_per_seed`` ('seed:value;...'). A method and its reference are paired on
the seeds both have (the answer points run more seeds than the rest), and a ``seeds`` column says
how many a row used. The McNemar columns stay as per-user evidence; the seed-level p is the one to
read. Re-exported by :mod:`adagrpo_core.suite.experiments`.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from ..configs import Profile
from ..eval.evaluate import ctr_path, run_hits, start_ranked
from ..eval.metrics import ranking_metrics
from ..eval.stats import holm, holm_columns, mcnemar_exact, mcnemar_p, paired_bootstrap_ci, seed_comparison
from ..pipeline import get_sft, get_sids, get_world
from ..common.machine import check_one_kind
from ..common.runtime import torch_threads

__all__ = ["add_seed_holm", "best_mixture", "gain_headline", "gains_over_base", "gap_to_best_mixture",
           "paired_tests", "paired_tests_both", "seed_columns"]


def seed_columns(name: str, per_seed: dict, per_user: dict | None = None, ci: str | None = None,
                 crossed: bool = False) -> dict:
    """The columns of one comparison ``name`` over seeds (``per_seed``: {seed: difference};
    ``per_user``: {seed: per-user differences}, for the hierarchical bootstrap): ``name`` (mean
    over seeds), ``ci`` (its t half-width; default ``name_ci``), ``name_share_below_0``,
    ``name_p_seed``, ``name_hboot_low`` / ``name_hboot_high`` (with ``per_user`` only) and
    ``name_per_seed``. :func:`add_seed_holm` adds ``name_p_seed_holm`` once the table is built.
    ``crossed``: every seed was tested on the same users (:func:`users_crossed`), so the bootstrap
    resamples them jointly across seeds."""
    c = seed_comparison(per_seed, per_user, crossed=crossed)
    out = {name: c["mean"], ci or f"{name}_ci": c["ci"], f"{name}_share_below_0": c["share_below_0"],
           f"{name}_p_seed": c["p_seed"]}
    if per_user is not None:
        out[f"{name}_hboot_low"], out[f"{name}_hboot_high"] = c["hboot_low"], c["hboot_high"]
    out[f"{name}_per_seed"] = c["per_seed"] or np.nan       # NaN, not '', without seeds
    return out


def users_crossed(profile: Profile) -> bool:
    """Whether every seed of a profile is tested on the same users: all of them (``test_samples``
    0), rather than a draw of its own per seed."""
    return not profile.rl.test_samples


def add_seed_holm(table: pd.DataFrame, names, mask=None) -> pd.DataFrame:
    """``name_p_seed_holm`` for each comparison in ``names`` (:func:`~adagrpo_core.eval.stats.holm_columns`
    on the ``name_p_seed`` columns, over the rows in ``mask``). In place."""
    return holm_columns(table, [f"{name}_p_seed" for name in names], mask)


def best_mixture(rows: pd.DataFrame) -> str | None:
    """The ``mix(...)`` method of ``rows`` (one checkpoint) with the highest mean validation HR@10
    on the seeds every mixture has (all of each one's seeds when they share none), so a mixture
    run at the answer seeds is not chosen on other seeds than the rest; None without mixtures."""
    mixes = rows[rows.method.str.startswith("mix(")]
    if mixes.empty:
        return None
    common = set.intersection(*(set(g.seed) for _, g in mixes.groupby("method")))
    if common:
        mixes = mixes[mixes.seed.isin(common)]
    return mixes.groupby("method")["val_HR@10"].mean().idxmax()


PROVENANCE = ("machine_kind", "commit", "sft_hash")
"""The run rows' provenance columns a table built from them carries (``execution.provenance``)."""


def with_provenance(table: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the provenance of the run rows it was read from, on every row: the machine
    kind, the commit and the SFT base digest ('; '-joined where several), and ``reward_models``,
    the number of distinct reward-model digests (0: no reward read). Rows made before runs
    recorded their provenance add nothing."""
    if "machine_kind" not in rows or table.empty:
        return table
    out = table.copy()
    for c in PROVENANCE:
        out[c] = "; ".join(sorted(map(str, rows[c].dropna().unique())))
    out["reward_models"] = int(rows.reward_hash[rows.reward_hash != "none"].nunique())
    return out


def one_kind(rows: pd.DataFrame, what: str) -> None:
    """Refuse to pair runs of two machine kinds (``common/machine.py``): the same seed trains a
    different model on each, so their difference is not the methods'. Rows made before runs
    recorded their kind pass."""
    if "machine_kind" in rows:
        check_one_kind(rows["machine_kind"], what)


def _seeds_of(rows: pd.DataFrame) -> dict:
    return {m: set(int(s) for s in g.seed) for m, g in rows.groupby("method", sort=False)}


def paired_tests(profile: Profile, rows: pd.DataFrame, pairs, kind: str = "best", k: int = 10,
                 cache_dir=None) -> pd.DataFrame:
    """Paired comparisons of two methods trained with the same seed (same SFT base, same test
    users), on the seeds both have. ``rows``: a main_results frame (its ``run_dir`` column finds the
    runs); ``pairs``: [(method, reference), ...]; a pair without a common seed is left out. One row
    per (pair, seed) with the exact McNemar test of per-user hits and (simulated world) the
    simulated-CTR difference with a bootstrap over users at that seed
    (``sim_ctr_fixedseeds_boot_low/high``); then a ``pooled`` row per pair with the seed-level
    comparison (module docstring) of ``diff`` (HR@k; t half-width ``diff_seed_ci``) and
    ``sim_ctr_diff`` (``sim_ctr_seed_ci``), the hierarchical bootstrap over the per-user hits and
    CTRs, Holm over the pairs, the McNemar test that pools the discordant pairs over seeds (the
    seeds share test users: indicative) and the user bootstrap of the pooled users, which holds the
    seeds fixed (``sim_ctr_fixedseeds_boot_low/high``)."""
    one_kind(rows, "paired_tests")
    world = get_world(profile.world, cache_dir)
    sids = get_sids(world, profile.sid, cache_dir)
    where = rows.drop_duplicates(["method", "seed"]).set_index(["method", "seed"])["run_dir"]
    have = _seeds_of(rows)
    out = []
    for method, ref in pairs:
        seeds = sorted(have.get(method, set()) & have.get(ref, set()))
        if not seeds:
            continue
        pooled, sub, hit_users, ctr_users = [0, 0], [], {}, {}
        for seed in seeds:
            tcfg = replace(profile.rl, seed=int(seed))
            a = run_hits(where[(method, seed)], world, sids, tcfg, kind, k)
            b = run_hits(where[(ref, seed)], world, sids, tcfg, kind, k)
            n_ref_only, n_method_only, p = mcnemar_exact(b, a)
            pooled[0] += n_ref_only
            pooled[1] += n_method_only
            hit_users[seed] = a.astype(np.float64) - b.astype(np.float64)
            row = {"method": method, "reference": ref, "seed": str(seed), "seeds": 1, "n": len(a),
                   f"HR@{k}_method": a.mean(), f"HR@{k}_reference": b.mean(), "diff": a.mean() - b.mean(),
                   "method_only_hits": n_method_only, "reference_only_hits": n_ref_only, "mcnemar_p": p}
            ca, cb = ctr_path(where[(method, seed)], kind), ctr_path(where[(ref, seed)], kind)
            if ca.exists() and cb.exists():        # the simulated A/B test: paired bootstrap over users
                d = np.load(ca) - np.load(cb)
                ctr_users[seed] = d
                row["sim_ctr_diff"], row["sim_ctr_fixedseeds_boot_low"], row["sim_ctr_fixedseeds_boot_high"] = \
                    paired_bootstrap_ci(d, np.zeros_like(d), seed=int(seed))
            sub.append(row)
        out += sub
        pooled_row = {"method": method, "reference": ref, "seed": "pooled", "seeds": len(seeds),
                      "n": sum(r["n"] for r in sub),
                      f"HR@{k}_method": np.mean([r[f"HR@{k}_method"] for r in sub]),
                      f"HR@{k}_reference": np.mean([r[f"HR@{k}_reference"] for r in sub]),
                      "method_only_hits": pooled[1], "reference_only_hits": pooled[0], "mcnemar_p": mcnemar_p(*pooled)}
        pooled_row.update(seed_columns("diff", {s: r["diff"] for s, r in zip(seeds, sub)}, hit_users, "diff_seed_ci",
                                       users_crossed(profile)))
        if len(ctr_users) == len(seeds):
            d = np.concatenate([ctr_users[s] for s in seeds])
            _, pooled_row["sim_ctr_fixedseeds_boot_low"], pooled_row["sim_ctr_fixedseeds_boot_high"] = \
                paired_bootstrap_ci(d, np.zeros_like(d))
            pooled_row.update(seed_columns("sim_ctr_diff", {s: ctr_users[s].mean() for s in seeds}, ctr_users,
                                           "sim_ctr_seed_ci", users_crossed(profile)))
        out.append(pooled_row)
    table = pd.DataFrame(out)
    if not table.empty:
        add_seed_holm(table, ("diff", "sim_ctr_diff"), table.seed == "pooled")
    return with_provenance(table, rows)


def paired_tests_both(profile: Profile, rows: pd.DataFrame, pairs, k: int = 10,
                      cache_dir=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`paired_tests` at the best and the final checkpoint (a ``checkpoint`` column), and
    the pooled rows, with Holm over all of them (both checkpoints): ``p_holm`` of the McNemar
    p-values, ``diff_p_seed_holm`` and ``sim_ctr_diff_p_seed_holm`` of the seed-level ones (the
    same in both returned tables)."""
    tests = pd.concat([paired_tests(profile, rows, pairs, kind=kind, k=k, cache_dir=cache_dir).assign(checkpoint=kind)
                       for kind in ("best", "final")],
                      ignore_index=True)
    add_seed_holm(tests, ("diff", "sim_ctr_diff"), tests.seed == "pooled")
    pooled = tests[tests.seed == "pooled"].copy()
    pooled["p_holm"] = holm(pooled.mcnemar_p.to_numpy())
    return tests, pooled


def gains_over_base(profile: Profile, rows: pd.DataFrame, cache_dir=None, kind: str = "best", k: int = 10,
                    reference: str = "nll") -> pd.DataFrame:
    """Each method's test HR@k and NDCG@10 minus the SFT base every run starts from (its step 0;
    the same test users), paired per seed over the method's seeds (``seeds``): the seed-level
    comparison (module docstring) of ``gain_HR@k`` (hierarchical bootstrap over the per-user hits)
    and ``gain_NDCG@10`` (no per-user values: no bootstrap), Holm over the methods, and the exact
    McNemar test of per-user hits against the base, pooled over seeds (``p_vs_base``, Holm
    ``holm_vs_base``). The same against ``reference`` (continued NLL) on the seeds both have
    (``seeds_vs_<reference>``) in the ``diff_HR@k_vs_<reference>*`` and ``*_vs_<reference>``
    columns. The first row is the base itself, at every seed of any method. Unconstrained beam
    search, as the main table reports."""
    one_kind(rows, "gains_over_base")
    world = get_world(profile.world, cache_dir)
    sids = get_sids(world, profile.sid, cache_dir)
    sft = get_sft(world, sids, profile.policy, profile.sft, cache_dir, progress=False) / "best.pt"
    sub = rows[rows.checkpoint == kind]
    where = sub.set_index(["method", "seed"])["run_dir"]
    have = {m: sorted(s) for m, s in _seeds_of(sub).items()}
    seeds = sorted(set().union(*have.values())) if have else []
    base, base_ndcg = {}, {}
    with torch_threads(1):
        for s in seeds:
            ranked, target = start_ranked(world, sids, sft, replace(profile.rl, seed=s), k)
            base[s] = (ranked[:, :k] == target[:, None]).any(1)
            base_ndcg[s] = ranking_metrics(ranked, target, (10,))["NDCG@10"] if k >= 10 else float("nan")
    hits = {(m, s): run_hits(where[(m, s)], world, sids, replace(profile.rl, seed=s), kind, k)
            for m in have for s in have[m]}
    ndcg = sub.set_index(["method", "seed"])["NDCG@10"]

    def versus(m, ref_hits, ref_ndcg, on, hr_name, ndcg_name=None):
        cols = seed_columns(hr_name, {s: hits[(m, s)].mean() - ref_hits[s].mean() for s in on},
                            {s: hits[(m, s)].astype(np.float64) - ref_hits[s].astype(np.float64) for s in on},
                            crossed=users_crossed(profile))
        if ndcg_name:
            cols.update(seed_columns(ndcg_name, {s: ndcg[(m, s)] - ref_ndcg[s] for s in on}))
        ref_only = sum(int((ref_hits[s] & ~hits[(m, s)]).sum()) for s in on)
        m_only = sum(int((hits[(m, s)] & ~ref_hits[s]).sum()) for s in on)
        return cols, m_only, ref_only, mcnemar_p(ref_only, m_only)

    out = [{"method": "SFT base", "seeds": len(seeds), f"HR@{k}": np.mean([b.mean() for b in base.values()]),
            "NDCG@10": np.mean(list(base_ndcg.values()))}]
    has_ref = reference in have
    for m, on in have.items():
        r = {"method": m, "seeds": len(on), f"HR@{k}": np.mean([hits[(m, s)].mean() for s in on]),
             "NDCG@10": np.mean([ndcg[(m, s)] for s in on])}
        cols, r["method_only_hits"], r["base_only_hits"], r["p_vs_base"] = versus(m, base, base_ndcg, on,
                                                                                  f"gain_HR@{k}", "gain_NDCG@10")
        r.update(cols)
        common = [s for s in on if s in have.get(reference, [])]
        if has_ref and m != reference and common:
            cols, *_, r[f"p_vs_{reference}"] = versus(m, {s: hits[(reference, s)] for s in common}, None, common,
                                                      f"diff_HR@{k}_vs_{reference}")
            r[f"seeds_vs_{reference}"] = len(common)
            r.update(cols)
        out.append(r)
    table = pd.DataFrame(out)
    for col in ("p_vs_base", f"p_vs_{reference}"):
        if col in table:
            ok = table[col].notna()
            table.loc[ok, col.replace("p_", "holm_", 1)] = holm(table.loc[ok, col].to_numpy())
    return with_provenance(add_seed_holm(table, (f"gain_HR@{k}", "gain_NDCG@10", f"diff_HR@{k}_vs_{reference}")), rows)


def gain_headline(gains: pd.DataFrame, rows: pd.DataFrame, kind: str = "best") -> pd.DataFrame:
    """The headline rows of :func:`gains_over_base`, with all of its columns (the seed-level ones
    and their Holm over every method of that table): the SFT base, continued NLL, the best fixed
    mixture (:func:`best_mixture`: highest mean validation HR@10 on the mixtures' common seeds;
    never chosen on test), AdaGRPO and random gating at AdaGRPO's rate, each with a ``row`` label."""
    best_mix = best_mixture(rows[rows.checkpoint == kind])
    labels = {"SFT base": "SFT base (step 0)", "nll": "continued NLL",
              best_mix: "best mixture (on validation)", "adagrpo": "AdaGRPO", "random": "random at AdaGRPO's rate"}
    head = gains[gains.method.isin([m for m in labels if m is not None])].copy()
    head.insert(0, "row", head.method.map(labels))
    return head.reset_index(drop=True)


def gap_to_best_mixture(rows: pd.DataFrame, metrics=("sim_ctr", "HR@10"), checkpoint: str = "best",
                        method: str = "adagrpo") -> pd.DataFrame:
    """Per reward: ``method`` minus the best fixed mixture (:func:`best_mixture`, chosen on
    validation HR@10), paired on the seeds both have (``seeds``; ``method`` and ``mixture`` are
    the means over those seeds): the seed-level comparison (module docstring) of ``gap`` (t
    half-width ``gap_ci``; no per-user values here, so no bootstrap), Holm over the rewards of
    each metric."""
    one_kind(rows, "gap_to_best_mixture")
    out = []
    sub = rows[rows.checkpoint == checkpoint]
    for (reward, noise), g in sub.groupby(["reward", "noise"], sort=False):
        best = best_mixture(g)
        if best is None or method not in set(g.method):
            continue
        for m in metrics:
            if m not in g:
                continue
            piv = g.pivot_table(index="seed", columns="method", values=m).reindex(columns=[method, best]).dropna()
            r = {"reward": reward, "noise": noise, "metric": m, "best_mixture": best,
                 "method": piv[method].mean(), "mixture": piv[best].mean()}
            r.update(seed_columns("gap", (piv[method] - piv[best]).to_dict()))
            out.append({**r, "seeds": len(piv)})
    table = pd.DataFrame(out)
    for m in dict.fromkeys(table.metric) if not table.empty else ():
        add_seed_holm(table, ("gap",), table.metric == m)
    return with_provenance(table, rows)
