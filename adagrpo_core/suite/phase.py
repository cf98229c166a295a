"""The reward-error phase diagram (notebook 08): the main methods trained with rewards along one
error dial, their gains over continued NLL, the crossovers, and where each reward sits.

Dials (:data:`DIALS`), each a way to build the reward's :class:`RewardConfig` from a value:

* ``bias``: the truth shifted by ``bias * z_i`` (systematic exposure bias; 0 is the truth);
* ``noise``: noisy_truth, zero-mean error on rarely shown items (0 is the truth);
* ``ranker_log``: the ranker retrained on the world's slates re-logged at this exposure bias
  (``share`` of them); the world's own bias is the dial's origin.

Every reward is placed on one axis by :func:`~adagrpo_core.reward.reliability.place_reward`:
its effective bias (slope of reward logit - truth on z_i) and effective noise (residual std).
"""
from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pandas as pd

from .answers import answer_methods, with_answer_seeds
from ..common.checks import check_choice
from ..configs import ANSWER_TABLES, Profile
from ..eval.audit import accuracy_table, diagnostic_roc, load_audits
from ..eval.evaluate import ctr_path, run_hits
from .comparisons import add_seed_holm, one_kind, seed_columns, users_crossed, with_provenance
from ..eval.stats import kendall_tau, paired_bootstrap_ci
from .experiments import gap_to_best_mixture, plan_replicates, reward_label
from ..pipeline import get_ranker, get_sids, get_world
from ..reward.reliability import place_reward
from ..reward.reward_model import RewardConfig
from ..reward.sources import build_reward
from ..rl.gate import RELIABILITY_METHODS
from ..runs import MethodSpec
from ..execution import build_rankers, execute_planned
from ..common.runtime import torch_threads

__all__ = ["DIALS", "GATE_SETS", "METRICS", "answer_plans", "answer_table", "crossovers", "diagnostic_auc", "dial_origin", "dial_reward",
           "gate_set_methods", "metric_disagreement", "phase_diagram", "phase_gains", "phase_methods", "phase_plan",
           "phase_runs", "placement"]

DIALS = {"bias": "exposure bias of the truth reward (utility + bias * z_i)",
         "noise": "noisy_truth: std of the utility error on the rarest items",
         "ranker_log": "the ranker retrained on slates re-logged at this exposure bias"}
"""The dials of the phase diagram, with what their value means."""

METRICS = ("sim_ctr", "HR@10")
"""The two outcomes of the diagram: online (simulated CTR) and offline (test HR@10)."""

GATE_SETS = ("main", "reliability")
"""Notebook 08's method sets: the main methods (``suite.phase_methods`` at ``suite.phase_values``)
or the reliability gates with their controls (``suite.reliability_phase_methods`` at
``suite.reliability_values``)."""

VARIANTS = {"difficulty_and_ensemble": ("difficulty_and_reliability", {"reliability": "ensemble"})}
"""Named gate variants: display name -> (gate method, GateConfig overrides). ``difficulty_and_ensemble``
is difficulty_and_reliability with the ensemble check u instead of the default exposure check e."""

GATED = ("adagrpo",) + RELIABILITY_METHODS + tuple(VARIANTS)
"""Methods whose admitted samples the diagram audits and compares with the best mixture."""

_PLAIN = {"nll": "nll", "adagrpo": "adagrpo", "random": "random", "inverse": "inverse", "grpo": "grpo",
          "difficulty-only": "difficulty", "discriminability-only": "discriminability", "exposure": "exposure",
          "ensemble": "ensemble", "difficulty_and_reliability": "difficulty_and_reliability", "soft": "soft"}


def dial_reward(dial: str, value: float, log_share: float = 1.0) -> RewardConfig:
    """The reward at ``value`` of ``dial`` (see :data:`DIALS`). The origin of ``bias`` and
    ``noise`` (0) is exactly the truth reward, shared with notebook 07's runs."""
    check_choice("dial", dial, tuple(DIALS))
    v = float(value)
    if dial == "bias":
        return RewardConfig(source="truth", bias=v)
    if dial == "noise":
        return RewardConfig(source="noisy_truth", noise=v) if v != 0 else RewardConfig(source="truth")
    return RewardConfig(source="ranker", ranker_logging_bias=v, ranker_log_share=log_share)


def dial_origin(dial: str, profile: Profile) -> float:
    """The dial value of the unbiased (or the world's own) reward: 0, or the world's exposure bias."""
    check_choice("dial", dial, tuple(DIALS))
    return float(profile.world.exposure_bias) if dial == "ranker_log" else 0.0


def phase_plan(profile: Profile, dial: str | None = None, values=None, log_share: float = 1.0,
               gates: str = "main") -> dict:
    """{dial: [values]} to run: every dial of the profile's suite with its values (``dial`` None),
    or one dial with ``values`` (None: the suite's values of that dial). ``gates`` picks the value
    lists (:data:`GATE_SETS`). Checked before any work, with ``log_share`` (the retrained rankers'
    share of the log)."""
    RewardConfig(ranker_log_share=log_share)     # (0, 1]
    check_choice("gates", gates, GATE_SETS)
    table = profile.suite.phase_values if gates == "main" else profile.suite.reliability_values
    if dial is None:
        if values is not None:
            raise ValueError(f"values are one dial's values: set dial too, got dial=None and values={values!r}")
        return {d: list(table[d]) for d in profile.suite.phase_dials if d in table}
    check_choice("dial", dial, tuple(DIALS))
    if values is None:
        values = table.get(dial)
        if not values:
            raise ValueError(f"the profile {profile.name!r} has no values for dial={dial!r}: pass values")
    if not isinstance(values, (list, tuple)) or not values or len(set(values)) != len(values):
        raise ValueError(f"values must be a non-empty list of distinct numbers, got values={values!r}")
    for v in values:
        dial_reward(dial, v)            # checks the range (noise >= 0, a logging bias in [0, 1])
    return {dial: [float(v) for v in values]}


def answer_table(dial: str, gates: str = "main") -> str | None:
    """The ``suite.answer_points`` table of one dial's diagram (``nb08_bias``, ``nb08_bias_reliability``),
    or None where no answer is decided on that dial."""
    name = f"nb08_{dial}" + ("" if gates == "main" else f"_{gates}")
    return name if name in ANSWER_TABLES else None


def gate_set_methods(profile: Profile, gates: str, dial: str, methods=None) -> list:
    """The method names of one dial's diagram: ``methods`` when given, else the suite's list of the
    gate set (:data:`GATE_SETS`); the reliability set adds the ensemble gate and its control on the
    ranker_log dial, the one whose rewards are learned rankers (an ensemble describes a ranker)."""
    check_choice("gates", gates, GATE_SETS)
    if methods is not None:
        return list(methods)
    if gates == "main":
        return list(profile.suite.phase_methods)
    extra = ["ensemble", "random[ensemble]"] if dial == "ranker_log" else []
    return list(profile.suite.reliability_phase_methods) + extra


def phase_methods(names, oracle_thresholds=(0.5,)) -> list[MethodSpec]:
    """MethodSpecs of method names: nll, mix(<lambda>), adagrpo, random (at AdaGRPO's rate per step),
    inverse, grpo, difficulty-only, discriminability-only, the reliability gates (exposure,
    ensemble, difficulty_and_reliability, soft; difficulty_and_ensemble, difficulty_and_reliability
    with the ensemble check: :data:`VARIANTS`), a control matched to a named gate
    (``random[exposure]``: random at that gate's rate per step; ``mix[soft]``: the mixture at
    lambda x the soft variant's mean weight), and oracle (one run per threshold of
    ``oracle_thresholds``: ``oracle`` at 0.5, else ``oracle(<t>)``). Unknown names raise ValueError."""
    specs = []
    for name in names:
        mix = re.fullmatch(r"mix\(([0-9.eE+-]+)\)", str(name))
        matched = re.fullmatch(r"(random|mix)\[([a-z_-]+)\]", str(name))
        if mix:
            specs.append(MethodSpec(name, "mix", grpo={"lam": float(mix.group(1))}))
        elif matched:                # random[exposure]: at that gate's rate; mix[soft]: lambda x its mean weight
            specs.append(MethodSpec(name, matched.group(1), match=matched.group(2)))
        elif name == "oracle":
            specs += [MethodSpec("oracle" if t == 0.5 else f"oracle({t:g})", "oracle", gate={"oracle_threshold": t})
                      for t in oracle_thresholds]
        elif name in _PLAIN:
            specs.append(MethodSpec(name, _PLAIN[name]))
        elif name in VARIANTS:
            specs.append(MethodSpec(name, VARIANTS[name][0], gate=VARIANTS[name][1]))
        else:
            raise ValueError(f"unknown phase-diagram method {name!r}; known: {sorted(_PLAIN) + sorted(VARIANTS)} + "
                             f"['mix(<lambda>)', 'oracle', 'random[<gate>]', 'mix[<gate>]']")
    if "nll" not in [s.name for s in specs]:
        raise ValueError(f"the phase diagram measures gains over continued NLL: include 'nll', got methods={list(names)}")
    return specs


HIGHLIGHT = {"main": ["mix(1)", "adagrpo", "random"],
             "reliability": ["mix(1)", "exposure", "random[exposure]", "difficulty_and_reliability"]}
"""The methods notebook 08's phase figure draws in full, per gate set: those answers (e)-(g) and
(i)-(j) read; the others are faded."""


def everywhere_methods(profile: Profile, gates: str, methods=None) -> list | None:
    """The methods a dial's diagram trains at every value; the others train only where an answer is
    decided (``suite.answer_points``). The suite's list of the gate set (``phase_everywhere``,
    ``reliability_everywhere``; None: every method everywhere), or None when ``methods`` names the
    methods (a sweep runs what it asks for)."""
    check_choice("gates", gates, GATE_SETS)
    if methods is not None:
        return None
    return profile.suite.phase_everywhere if gates == "main" else profile.suite.reliability_everywhere


def plan_phase_runs(profile: Profile, dial: str, values, methods: list[MethodSpec], seeds, out_root,
                    log_share: float = 1.0, answer: str | None = None, everywhere=None) -> list[tuple[Profile, list]]:
    """The runs :func:`phase_runs` trains, planned and checked, none trained: [(the profile with
    the reward at each dial value, its run specs)], the answer point's methods also at the
    suite's ``answer_seeds``. With ``everywhere`` (method names, :func:`everywhere_methods`), a
    value that is no answer point trains only those."""
    if not profile.is_simulated:
        raise ValueError("the phase diagram needs the simulated world's true utility; real datasets have none")
    plans = []
    for v in values:
        prof = replace(profile, reward=dial_reward(dial, v, log_share))
        point = answer is not None and bool(answer_methods(profile, answer, v))
        ms = methods if everywhere is None or point else [m for m in methods if m.name in set(everywhere)]
        groups = with_answer_seeds(prof, ms, seeds, answer, v) if answer else [(ms, seeds)]
        specs = [s for ms, ss in groups for s in plan_replicates(prof, ms, ss, out_root)]
        plans.append((prof, list({s.out_dir: s for s in specs}.values())))
    return plans


def phase_runs(profile: Profile, dial: str, values, methods: list[MethodSpec], seeds, out_root, cache_dir=None,
               jobs: int = 1, scheduler: str | None = None, log_share: float = 1.0,
               progress: bool = True, answer: str | None = None, everywhere=None) -> pd.DataFrame:
    """Train ``methods`` x ``seeds`` with the reward at each dial value, through one executor (all
    planned before any work). With ``answer`` (a ``suite.answer_points`` table, :func:`answer_table`)
    the methods listed there at a value also run at the suite's ``answer_seeds``. Result rows with
    ``dial``, ``value`` and ``reward`` columns; continued NLL never reads the reward, so its runs
    are shared by every value."""
    plans = plan_phase_runs(profile, dial, values, methods, seeds, out_root, log_share, answer, everywhere)   # before any work
    labels = [(float(v), reward_label(prof.reward)) for v, (prof, _) in zip(values, plans)]
    rows = execute_planned(plans, cache_dir, jobs=jobs, scheduler=scheduler, progress=progress)
    plan = rows.pop("plan").to_numpy()
    return rows.assign(dial=dial, value=[labels[i][0] for i in plan], reward=[labels[i][1] for i in plan])


def placement(profile: Profile, rewards: list[RewardConfig], cache_dir=None, n_states: int = 500,
              jobs: int = 1) -> pd.DataFrame:
    """Where each reward sits: effective bias and noise (and intercept, correlation with the truth),
    over ``n_states`` test user states x every item, one row per reward (``reward`` its label).
    Retrained rankers missing from the cache are trained first, ``jobs`` at a time."""
    build_rankers([replace(profile, reward=rc) for rc in rewards], cache_dir, jobs)
    world = get_world(profile.world, cache_dir)
    sids = get_sids(world, profile.sid, cache_dir)
    out = []
    with torch_threads(1):
        for rc in rewards:
            ranker = get_ranker(world, profile.ranker, cache_dir, progress=False, **rc.ranker_log) \
                if rc.source == "ranker" else None
            reward = build_reward(world, sids, ranker, replace(rc, output="logit"))
            out.append({"reward": reward_label(rc), **place_reward(world, reward, n_states, 0,
                                                                  profile.policy.max_history)})
    return pd.DataFrame(out)


def _per_user(run_dir, metric, world, sids, rl, kind):
    if metric == "sim_ctr":
        return np.load(ctr_path(run_dir, kind))
    return run_hits(run_dir, world, sids, rl, kind, 10).astype(np.float64)


def phase_gains(profile: Profile, rows: pd.DataFrame, cache_dir=None, checkpoint: str = "best",
                reference: str = "nll") -> pd.DataFrame:
    """Per (dial value, method other than ``reference``): the gain in sim CTR and HR@10 over
    ``reference``, paired per seed on the seeds both ran (``seeds``): for each metric the mean gain
    and its 95% t-interval half-width over seeds (``_gain``, ``_gain_ci``), the share of seeds below
    0, the exact sign-flip p over seeds with Holm over the table's rows (``_gain_p_seed``,
    ``_gain_p_seed_holm``), the hierarchical bootstrap over seeds then users (``_gain_hboot_low`` /
    ``_high``), the per-seed gains (``_gain_per_seed``) and, holding the seeds fixed, a paired
    bootstrap over the users pooled over seeds (``_fixedseeds_boot_low`` / ``_high``); the method's
    admission, hallucination, coverage and tail share; and the audit (agreement with the truth of
    admitted minus rejected samples, against the reward used at that value)."""
    one_kind(rows, "phase_gains")
    world = get_world(profile.world, cache_dir)
    sids = get_sids(world, profile.sid, cache_dir)
    sub = rows[rows.checkpoint == checkpoint]
    out = []
    for value, g in sub.groupby("value", sort=True):
        ref = g[g.method == reference].set_index("seed")
        audit = accuracy_table(load_audits(g[g.method != reference])).set_index("method")
        for method, m in g[g.method != reference].groupby("method", sort=False):
            m = m.set_index("seed")
            seeds = [s for s in m.index if s in ref.index]
            r = {"value": value, "reward": m.reward.iloc[0], "method": method, "seeds": len(seeds)}
            for metric in METRICS:
                per_user = {}
                for s in seeds:
                    rl = replace(profile.rl, seed=int(s))
                    per_user[int(s)] = (_per_user(m.loc[s, "run_dir"], metric, world, sids, rl, checkpoint)
                                        - _per_user(ref.loc[s, "run_dir"], metric, world, sids, rl, checkpoint))
                r.update(seed_columns(f"{metric}_gain", {int(s): m.loc[s, metric] - ref.loc[s, metric] for s in seeds},
                                      per_user, crossed=users_crossed(profile)))
                pooled = np.concatenate(list(per_user.values())) if per_user else np.zeros(0)
                _, r[f"{metric}_fixedseeds_boot_low"], r[f"{metric}_fixedseeds_boot_high"] = \
                    paired_bootstrap_ci(pooled, np.zeros_like(pooled))
            for c in ("admission_rate", "halluc", "coverage", "tail_share", "val_HR@10"):
                if c in m:
                    r[c] = float(m.loc[seeds, c].mean())
            r["agree_diff"] = audit["agree_diff"].get(method, np.nan) if "agree_diff" in audit else np.nan
            r["agree_diff_ci"] = audit["agree_diff_ci"].get(method, np.nan) if "agree_diff_ci" in audit else np.nan
            out.append(r)
    return with_provenance(add_seed_holm(pd.DataFrame(out), [f"{m}_gain" for m in METRICS]), rows)


def crossovers(gains: pd.DataFrame, origin: float = 0.0, method: str = "mix(1)") -> pd.DataFrame:
    """On each side of the dial's ``origin``, the value nearest to it at which ``method``'s gain
    interval (t over seeds) lies wholly below 0, for sim CTR and HR@10; NaN where no value run on
    that side gets there (``largest_run``: the farthest value run on that side)."""
    g = gains[gains.method == method]
    out = []
    for metric in METRICS:
        for side, sign in (("above", 1), ("below", -1)):
            s = g[(g.value - origin) * sign > 0].assign(dist=lambda t: (t.value - origin).abs()).sort_values("dist")
            if s.empty:
                continue
            below = s[s[f"{metric}_gain"] + s[f"{metric}_gain_ci"] < 0]
            out.append({"metric": metric, "side": side, "method": method,
                        "crossover": float(below.value.iloc[0]) if len(below) else np.nan,
                        "largest_run": float(s.value.iloc[-1])})
    return pd.DataFrame(out, columns=["metric", "side", "method", "crossover", "largest_run"])


def metric_disagreement(rows: pd.DataFrame, checkpoint: str = "best") -> pd.DataFrame:
    """Per dial value: how offline HR@10 and online sim CTR rank the methods (seed means, NLL
    included): Kendall's tau between the two orders, and each metric's best method."""
    sub = rows[rows.checkpoint == checkpoint]
    out = []
    for value, g in sub.groupby("value", sort=True):
        means = g.groupby("method")[list(METRICS)].mean()
        out.append({"value": value, "methods": len(means), "kendall_tau": kendall_tau(means.sim_ctr, means["HR@10"]),
                    "best_by_sim_ctr": means.sim_ctr.idxmax(), "best_by_HR@10": means["HR@10"].idxmax()})
    return pd.DataFrame(out)


def diagnostic_auc(profile: Profile, rows: pd.DataFrame, methods=GATED) -> pd.DataFrame:
    """Per dial value and gated method run (of ``methods``), on that method's logged samples: the
    ROC AUC of d, a, the gate score and the reliability diagnostics (e; u where logged) as
    predictors of "the reward used at that value orders the rollouts like the truth" (agreement
    > 0.5)."""
    out = []
    for value, g in rows[rows.method.isin(methods)].groupby("value", sort=True):
        roc, _ = diagnostic_roc(load_audits(g), profile.gate.tau, profile.gate.rho)
        out.append(roc.assign(value=value))
    if not out:
        return pd.DataFrame()
    t = pd.concat(out, ignore_index=True)
    return t[["value"] + [c for c in t.columns if c != "value"]]


def _pairs(names: set, profile: Profile) -> list[tuple[str, str]]:
    """(gate, control) pairs of the diagram's methods: adagrpo - random, X - random[X], X - mix[X],
    and difficulty_and_reliability (or difficulty_and_ensemble) minus its reliability check alone
    (answer (j))."""
    pairs = [("adagrpo", "random")] + [(n[len(k) + 1:-1], n) for n in sorted(names)
                                       for k in ("random", "mix") if n.startswith(k + "[")]
    checks = {"difficulty_and_reliability": profile.gate.reliability,
              **{n: gate.get("reliability", profile.gate.reliability) for n, (_, gate) in VARIANTS.items()}}
    pairs += list(checks.items())
    return [(m, c) for m, c in pairs if m in names and c in names]


def phase_diagram(profile: Profile, dial: str, values, methods: list[MethodSpec], seeds, out_root, cache_dir=None,
                  jobs: int = 1, scheduler: str | None = None, log_share: float = 1.0, n_states: int = 500,
                  progress: bool = True, answer: str | None = None, everywhere=None) -> dict:
    """One dial's diagram: the runs (:func:`phase_runs`; ``everywhere``: the methods trained at
    every value, the rest at answer points only) and the tables read off them. Returns
    {"rows", "phase" (gains over NLL with each value's effective bias and noise), "crossovers",
    "vs_random" (each gate minus its matched control: adagrpo - random, X - random[X], X - mix[X];
    and difficulty_and_reliability minus its reliability check alone), "mixture_gap" (each gated
    method, column ``gate``, minus the best mixture chosen on validation HR@10), "disagreement"
    (:func:`metric_disagreement`), "diagnostic_auc" (:func:`diagnostic_auc`), "placement"}."""
    rows = phase_runs(profile, dial, values, methods, seeds, out_root, cache_dir, jobs, scheduler, log_share, progress,
                      answer, everywhere)
    gains = phase_gains(profile, rows, cache_dir)
    place = placement(profile, [dial_reward(dial, v, log_share) for v in values], cache_dir, n_states, jobs)
    table = gains.merge(place[["reward", "effective_bias", "effective_noise", "truth_corr"]], on="reward", how="left")
    table.insert(0, "dial", dial)
    parts = [phase_gains(profile, rows[rows.method.isin([m, c])], cache_dir, reference=c).assign(reference=c)
             for m, c in _pairs(set(rows.method), profile)]
    vs_random = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if len(vs_random):                   # Holm over this table's comparisons, not each pair's own
        vs_random = add_seed_holm(vs_random, [f"{m}_gain" for m in METRICS])
    gaps = [gap_to_best_mixture(rows.assign(noise=rows.value), method=m).rename(columns={"noise": "value"}).assign(gate=m)
            for m in GATED if m in set(rows.method)]
    gap = pd.concat(gaps, ignore_index=True) if gaps else pd.DataFrame()
    return {"rows": rows, "phase": table, "crossovers": crossovers(gains, dial_origin(dial, profile)),
            "vs_random": vs_random, "mixture_gap": gap, "disagreement": metric_disagreement(rows),
            "diagnostic_auc": diagnostic_auc(profile, rows), "placement": place}


def answer_plans(profile: Profile, seeds, out_root) -> list[tuple[str, float | None, Profile, list]]:
    """Every answer point's runs at ``seeds``: [(table, dial value or None, its profile, run specs)],
    planned (and so checked) before any work. Keys and folders are the notebooks' own."""
    out = []
    oracle_first = profile.suite.oracle_thresholds[:1] or [0.5]
    for table, point in profile.suite.answer_points.items():
        methods = phase_methods(point["methods"], oracle_first)
        if table.startswith("nb08_bias"):
            for v in point["values"]:
                p = replace(profile, reward=dial_reward("bias", v))
                out.append((table, float(v), p, plan_replicates(p, methods, seeds, out_root)))
        else:
            out.append((table, None, profile, plan_replicates(profile, methods, seeds, out_root)))
    return out
