"""The suite's run plan: what every notebook of a profile trains, how much of it is cached, and how
long the rest takes on this machine, before anything is trained.

    python -m adagrpo_core.cli plan --profile paper      # or: bash reproduce.sh paper --plan

A notebook's runs are the ones its own calls plan (``plan_main_results``, ``plan_reward_sources``,
``plan_phase_runs``) with its parameters cell's defaults resolved against the profile
(``notebook.resolve_setup``), so the plan is the notebooks' and cannot drift from them (a test
records the keys the tiny notebooks train and compares). Runs share one folder per key under
``runs/<profile>/``: a run that two notebooks plan trains once, in the first, and the later one
counts it as shared.

The projection is a sum over what is not cached of a measured wall time per run class, per ranker
and per ensemble member, plus a fixed time per notebook pass (``pass_seconds``: the kernel, the
imports and the analysis, measured as the wall time of notebook 02, which trains nothing), read
from ``benchmarks/results/run_rates.json`` for this machine's kind (``common/machine.py``);
``benchmarks/run_rates.py`` measures a kind's run, ranker and member rates.

The notebook 07 lists (audit methods, reward sources) live here so that the notebook and the plan
read one definition.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..common.machine import kind_digest, kind_name
from ..common.paths import repo_root
from ..configs import Profile
from ..pipeline import ensemble_files, ranker_file
from ..reward.reward_model import RewardConfig
from ..runs import MethodSpec, RunSpec, reads_ensemble, spec_profile
from .experiments import control_methods, frontier_methods, plan_main_results, plan_reward_sources
from .notebook import notebook_defaults, notebook_file, resolve_setup
from .phase import answer_table, dial_reward, everywhere_methods, gate_set_methods, phase_methods, phase_plan, plan_phase_runs
from .sweeps import sensitivity_design

__all__ = ["NotebookPlan", "PAPER_RUN_CAP", "PASSES", "audit_methods", "notebook_plan", "plan_table", "profile_plan", "project",
           "source_methods", "source_rewards", "load_rates"]

PASSES = [("01_world_and_ranker", {}), ("02_stratified_analysis", {}), ("03_main_results", {}),
          ("04_controls", {}), ("05_sensitivity", {}), ("06_frontier", {}), ("07_ab_test_and_audit", {}),
          ("08_reward_phase_diagram", {}), ("08_reward_phase_diagram", {"gates": "reliability"})]
"""What ``reproduce.sh`` runs on the simulated world, in order: (notebook, papermill overrides).
The second pass of notebook 08 is its reliability set (answers (i) and (j)), on the paper and
full profiles only (:func:`passes`)."""

RATES_FILE = Path("benchmarks") / "results" / "run_rates.json"

PAPER_RUN_CAP = 1101
"""The most RL runs ``reproduce.sh paper`` may train from empty caches (tests/test_plan.py holds
the plan to it). Before any redesign the profile trained 1,524 (03 65, 04 18, 05 528, 07 88, 08
571 and its reliability set 254); notebook 05's configurations that lay on several sweeps now
train once (366), and notebook 08 trains the methods that no answer reads at its answer points
only (406 and 158): 1,101 (benchmarks/results/plan_paper.md). Lower it as runs are redesigned;
raise it only with a measured reason."""


def passes(profile: str) -> list[tuple[str, dict]]:
    """The notebook passes of ``reproduce.sh <profile>`` on the simulated world: every notebook,
    and notebook 08's reliability set on the paper and full profiles."""
    return [(nb, o) for nb, o in PASSES if not o.get("gates") or profile in ("paper", "full")]


# ---------------------------------------------------------------------------- notebook 07's lists


def audit_methods(reliability_methods) -> list[MethodSpec]:
    """Notebook 07's A/B test and audit: nll, mix(1), AdaGRPO, its controls, oracle, then each
    reliability gate beside its matched control (``phase_methods`` names: random[exposure] ...)."""
    methods = [MethodSpec("nll", "nll"), MethodSpec("mix(1)", "mix", grpo={"lam": 1.0}), MethodSpec("adagrpo", "adagrpo"),
               MethodSpec("random", "random"), MethodSpec("inverse", "inverse"), MethodSpec("difficulty-only", "difficulty"),
               MethodSpec("discriminability-only", "discriminability"), MethodSpec("oracle", "oracle")]
    return methods + phase_methods(["nll"] + list(reliability_methods))[1:]


def source_rewards(noise_levels) -> list[RewardConfig]:
    """Notebook 07's reward sources: the ranker, the truth, and the truth with noise on rare items."""
    return [RewardConfig(source="ranker"), RewardConfig(source="truth")] + \
           [RewardConfig(source="noisy_truth", noise=n) for n in noise_levels]


def source_methods(mix_lams) -> list[MethodSpec]:
    """Notebook 07's methods at every reward source: nll, the mixtures, AdaGRPO and random."""
    return [MethodSpec("nll", "nll")] + [MethodSpec(f"mix({lam:g})", "mix", grpo={"lam": lam}) for lam in mix_lams] + \
           [MethodSpec("adagrpo", "adagrpo"), MethodSpec("random", "random")]


def sasrec_methods() -> list[MethodSpec]:
    """Notebook 03 on real data: the methods trained again with SASRec's score as the reward."""
    return [MethodSpec("nll", "nll"), MethodSpec("mix(1)", "mix", grpo={"lam": 1.0}),
            MethodSpec("adagrpo", "adagrpo"), MethodSpec("random", "random")]


# ---------------------------------------------------------------------------- the plan


@dataclass
class NotebookPlan:
    """One notebook pass: its RL runs per profile (reward) and the rankers it needs."""

    notebook: str
    """The notebook, with ``[gates]`` for notebook 08's reliability pass."""
    plans: list = field(default_factory=list)
    """[(profile, [RunSpec])]: the runs, with the profile (reward) each trains with."""
    rankers: list = field(default_factory=list)
    """[(label, cache path)]: every ranker and ensemble member the pass reads."""
    jobs: int = 1
    """Runs in parallel (the notebook's ``jobs``: one per CPU core by default)."""

    @property
    def specs(self) -> list[RunSpec]:
        return list({s.out_dir: s for _, ps in self.plans for s in ps}.values())


def _ranker_label(rc: RewardConfig) -> str:
    if not rc.relogs:
        return "ranker"
    return f"ranker(log bias={rc.ranker_logging_bias}, share={rc.ranker_log_share:g})"


def _rankers(prof: Profile, plans, cache_dir, extra_rewards=()) -> list[tuple[str, Path]]:
    """The cached models a pass reads: the ranker of every ranker-rewarded run (a replicate's own
    where it has one), the retrained rankers of ``extra_rewards`` (placement, stratified
    analysis), and each ensemble a gate reads."""
    out = {}
    for rc in extra_rewards:
        if rc.source == "ranker":
            path = ranker_file(prof.world, prof.ranker, cache_dir, **rc.ranker_log)
            out[str(path)] = (_ranker_label(rc), path)
    for p, ps in plans:
        for s in ps:
            q = spec_profile(p, s)
            rep = "" if s.reward_seed is None else f" of replicate {s.reward_seed}"
            if q.reward.source == "ranker" and s.gate.method != "nll":
                path = ranker_file(q.world, q.ranker, cache_dir, **q.reward.ranker_log)
                out[str(path)] = (_ranker_label(q.reward) + rep, path)
            if reads_ensemble(s.gate):
                rc = q.reward if q.reward.source == "ranker" else RewardConfig()
                for k, path in enumerate(ensemble_files(q.world, q.ranker, q.ensemble, cache_dir, **rc.ranker_log)):
                    out[str(path)] = (f"ensemble member {k} of {_ranker_label(rc)}{rep}", path)
    return list(out.values())


def notebook_plan(notebook: str, profile: str = "quick", **overrides) -> NotebookPlan:
    """The runs and rankers of one notebook pass on ``profile`` with papermill ``overrides``
    (``seeds``, ``steps``, ``gates``, ``runs_dir``, ``cache_dir`` ...), none trained."""
    path = notebook_file(notebook)
    if path is None:
        raise ValueError(f"no notebook {notebook!r} in notebooks/ of this checkout")
    defaults = notebook_defaults(path)
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise ValueError(f"notebook {notebook} has no parameters {sorted(unknown)}; its parameters: {sorted(defaults)}")
    nb = resolve_setup(notebook, {**defaults, "profile": profile, **overrides})
    p, cache = nb.prof, nb.params.get("cache_dir")
    args = {"seeds": nb.params.get("seeds"), "out_root": nb.runs}
    plans, extra = [], []
    label = notebook + (f"[{overrides['gates']}]" if overrides.get("gates", "main") != "main" else "")
    if notebook in ("01_world_and_ranker", "02_stratified_analysis"):    # the ranker, no RL run
        extra = [RewardConfig()]
    elif notebook == "03_main_results":
        plans = [(p, plan_main_results(p, answer="nb03_headline", **args))]
        if not p.is_simulated:
            plans += plan_reward_sources(p, [RewardConfig(source="sasrec", output="logit")], sasrec_methods(), **args)
    elif notebook == "04_controls":
        plans = [(p, plan_main_results(p, control_methods(nb.oracle_thresholds, p.gate.oracle_threshold,
                                                          p.is_simulated), **args))]
    elif notebook == "05_sensitivity":
        prof, methods, *_ = sensitivity_design(p, nb.grids, tau=nb.tau, rho=nb.rho, lam=nb.lam,
                                               num_negatives=nb.num_negatives, num_generations=nb.num_generations)
        plans = [(prof, plan_main_results(prof, methods, **args))]
    elif notebook == "06_frontier":
        plans = [(p, plan_main_results(p, frontier_methods(nb.lams), **args))]
    elif notebook == "07_ab_test_and_audit":
        plans = [(p, plan_main_results(p, audit_methods(nb.reliability_methods), answer="nb07_audit", **args))]
        plans += plan_reward_sources(p, source_rewards(nb.noise_levels), source_methods(nb.mix_lams), **args)
    elif notebook == "08_reward_phase_diagram":
        gates, log_share = nb.gates, nb.log_share
        extra = [RewardConfig()] + [dial_reward("ranker_log", b, log_share) for b in nb.placement_logging_biases]
        for d, vals in phase_plan(p, nb.dial, nb.values, log_share, gates).items():
            raw = {**defaults, **overrides}["methods"]      # the notebook passes its raw parameter: None = the gate set's
            methods = phase_methods(gate_set_methods(p, gates, d, raw), nb.oracle_thresholds)
            plans += plan_phase_runs(p, d, vals, methods, nb.seeds, nb.runs, log_share, answer_table(d, gates),
                                     everywhere_methods(p, gates, raw))
            extra += [dial_reward(d, v, log_share) for v in vals if d == "ranker_log"]
    else:
        raise ValueError(f"the planner knows the simulated world's notebooks 01-08, got notebook={notebook!r}")
    return NotebookPlan(label, plans, _rankers(p, plans, cache, extra), nb.jobs)


def profile_plan(profile: str = "paper", **overrides) -> list[NotebookPlan]:
    """Every notebook pass of ``reproduce.sh <profile>`` (:func:`passes`), in order; ``overrides``
    go to every notebook that has the parameter (``runs_dir``, ``cache_dir``, ``seeds`` ...)."""
    out = []
    for nb, own in passes(profile):
        names = notebook_defaults(notebook_file(nb))
        out.append(notebook_plan(nb, profile, **{k: v for k, v in overrides.items() if k in names}, **own))
    return out


# ---------------------------------------------------------------------------- rates and projection


def run_class(spec: RunSpec) -> str:
    """What a run's cost follows: 'nll' (no rollouts), 'ungated' (every sample's rollouts pass
    the differentiable pass: mix and pure GRPO) or 'gated' (the gates and random controls)."""
    if spec.gate.method == "nll":
        return "nll"
    return "ungated" if spec.gate.method in ("mix", "grpo") else "gated"


def load_rates(path: Path | None = None) -> dict:
    """``benchmarks/results/run_rates.json`` of the checkout ({} when there is none)."""
    path = path or ((repo_root() or Path(".")) / RATES_FILE)
    return json.loads(Path(path).read_text()) if Path(path).is_file() else {}


def rate_for(rates: dict, profile: str, digest: str | None = None, name: str | None = None) -> tuple[dict | None, str]:
    """(the rates of ``profile`` on this machine kind, where they come from): this kind's digest,
    else a kind of the same short name, else none."""
    digest, name = digest or kind_digest(), name or kind_name()
    kinds = rates.get("kinds", {})
    if digest in kinds and profile in kinds[digest].get("profiles", {}):
        return kinds[digest]["profiles"][profile], f"measured on this kind ({kinds[digest]['name']}, {digest})"
    for d, k in kinds.items():
        if k.get("name") == name and profile in k.get("profiles", {}):
            return k["profiles"][profile], f"measured on another machine of this kind's name ({name}, {d})"
    return None, f"no rate for the {profile} profile on this kind ({name}, {digest}): run benchmarks/run_rates.py"


def run_seconds(spec: RunSpec, rate: dict) -> float:
    """Projected wall seconds of one run, ``jobs`` at a time: the class's measured time, its
    rollout part scaled by G over the measured G and the whole by steps over the measured steps."""
    base = rate["run_seconds"]
    cls = run_class(spec)
    t = base["nll"] if cls == "nll" else base["nll"] + (base[cls] - base["nll"]) * spec.grpo.num_generations / rate["G"]
    return t * spec.rl.steps / rate["steps"]


def _model_seconds(notebook: str, todo_models: list, rate: dict) -> float:
    """Projected seconds of the rankers a pass trains. Notebook 01 builds the world, the SFT base
    and the ranker side by side: its measured time, when they are not cached."""
    if notebook == "01_world_and_ranker":
        return rate["notebook_seconds"]["01_world_and_ranker"] if todo_models else 0.0
    members = sum("ensemble member" in lab for lab, _ in todo_models)
    return (len(todo_models) - members) * rate["ranker_seconds"] + members * rate["member_seconds"]


def plan_table(plans: list[NotebookPlan], rate: dict | None = None) -> pd.DataFrame:
    """One row per notebook pass: runs it plans, shared with an earlier pass, cached, to train;
    rankers (and ensemble members) it reads, cached; projected seconds (NaN without a rate);
    then a total row. A run or ranker counts once, in the first pass that plans it."""
    seen_runs, seen_models, rows = set(), set(), []
    for nbp in plans:
        specs = nbp.specs
        new = [s for s in specs if s.out_dir not in seen_runs]
        cached = [s for s in new if (Path(s.out_dir) / "results.csv").exists()]
        todo = [s for s in new if not (Path(s.out_dir) / "results.csv").exists()]
        models = [(lab, pth) for lab, pth in nbp.rankers if str(pth) not in seen_models]
        todo_models = [(lab, pth) for lab, pth in models if not Path(pth).exists()]
        seen_runs |= {s.out_dir for s in specs}
        seen_models |= {str(pth) for _, pth in nbp.rankers}
        secs = float("nan")
        if rate is not None:
            secs = (sum(run_seconds(s, rate) for s in todo) + _model_seconds(nbp.notebook, todo_models, rate)
                    + rate.get("pass_seconds", 0.0))
        rows.append({"notebook": nbp.notebook, "runs": len(specs), "shared": len(specs) - len(new),
                     "cached": len(cached), "to_train": len(todo),
                     "nll": sum(run_class(s) == "nll" for s in todo), "ungated": sum(run_class(s) == "ungated" for s in todo),
                     "gated": sum(run_class(s) == "gated" for s in todo),
                     "rankers": len(models), "rankers_cached": len(models) - len(todo_models), "projected_s": secs})
    df = pd.DataFrame(rows)
    total = {c: df[c].sum(min_count=1) for c in df.columns if c != "notebook"}
    return pd.concat([df, pd.DataFrame([{"notebook": "total", **total}])], ignore_index=True)


def project(profile: str = "paper", rates_path: Path | None = None, **overrides) -> tuple[pd.DataFrame, str]:
    """(:func:`plan_table` of ``reproduce.sh <profile>`` on this machine, where its rate comes from)."""
    rate, source = rate_for(load_rates(rates_path), profile)
    return plan_table(profile_plan(profile, **overrides), rate), source

