"""Where one RL run's time goes: exclusive wall time per part of a real run, one torch thread.

    python benchmarks/profile_run.py --profile paper --methods nll "mix(1)" adagrpo --out benchmarks/results/profile_run_cpu.md

Trains and evaluates each method once (seed 0, in a fresh folder) through the executor's own
``execute_run``, with timers wrapped around the parts of a run: the rollouts, the reward, the
diagnostics and gate, the differentiable passes, backward, clipping, the optimiser, checkpoint
writes, validation beam search, test beam search and the simulated A/B test. A part's time is
exclusive: a timer nested in another (the history encoding inside a beam search, say) is counted
once, in the inner part. What no timer covers is "other" (data batching, metrics, Python glue).

``--batching`` adds a second measurement: the policy's forward and backward for K runs' batches as K
separate calls of B contexts, as one call of K * B on one policy (what merging could save at most),
and as one call of the K policies stacked (``model/stacked.py``). On a GPU one big call fills the
device; on a CPU core it shows whether merging runs can pay at all.
"""
from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source tree, installed or not
import adagrpo_core.eval.evaluate as evaluate_mod  # noqa: E402
import adagrpo_core.rl.step as step_mod  # noqa: E402
import adagrpo_core.train.loop as loop_mod  # noqa: E402
from adagrpo_core.configs import get_profile  # noqa: E402
from adagrpo_core.suite.experiments import default_methods  # noqa: E402
from adagrpo_core.model.policy import SIDPolicy  # noqa: E402
from adagrpo_core.model.stacked import stack_policies  # noqa: E402
from adagrpo_core.reward.reward_model import RewardModel  # noqa: E402
from adagrpo_core.runs import MethodSpec, plan_runs  # noqa: E402
from adagrpo_core.execution import execute_run, prepare  # noqa: E402


class Timers:
    """Exclusive wall time per named part: a part's time minus that of the parts nested in it."""

    def __init__(self):
        self.total, self.calls, self.stack, self.names = defaultdict(float), defaultdict(int), [], []
        self.saved = []                     # (owner, attr, original) of every wrapped function

    @contextlib.contextmanager
    def part(self, name: str):
        t0 = time.perf_counter()
        self.stack.append(0.0)              # time of the children of this part
        self.names.append(name)
        try:
            yield
        finally:
            self.names.pop()
            children = self.stack.pop()
            dt = time.perf_counter() - t0
            self.total[name] += dt - children
            self.calls[name] += 1
            if self.stack:
                self.stack[-1] += dt

    def wrap(self, owner, attr: str, name: str):
        """Replace ``owner.attr`` (a function or method) by a timed call of it, named ``name`` (or
        ``name(parent)``, given the name of the part it is nested in)."""
        fn = getattr(owner, attr)
        self.saved.append((owner, attr, fn))

        def timed(*args, **kwargs):
            parent = self.names[-1] if self.names else "training step"
            with self.part(name(parent) if callable(name) else name):
                return fn(*args, **kwargs)
        setattr(owner, attr, timed)

    def restore(self) -> None:
        """Put every wrapped function back (last wrapped first)."""
        for owner, attr, fn in reversed(self.saved):
            setattr(owner, attr, fn)
        self.saved = []


def instrument(t: Timers) -> None:
    """Wrap the parts of a run (module attributes are replaced, so the run itself is unchanged)."""
    t.wrap(step_mod, "sample_rollouts", "rollouts (sampling)")
    t.wrap(RewardModel, "__call__", "reward of the rollouts")
    t.wrap(RewardModel, "score_items", "reward of y* and negatives")
    for f in ("difficulty", "discriminability", "exposure_share", "ensemble_agreement", "compute_gate",
              "group_advantages", "rank_agreement"):
        t.wrap(step_mod, f, "diagnostics, gate, advantages")
    t.wrap(step_mod, "_rollout_logprobs", "differentiable rollout pass")
    t.wrap(step_mod, "compute_loss", "loss")
    t.wrap(torch.Tensor, "backward", "backward")
    t.wrap(torch.nn.utils, "clip_grad_norm_", "gradient clipping")
    t.wrap(torch.optim.AdamW, "step", "optimiser step")
    t.wrap(loop_mod, "write_checkpoint", "checkpoint writes")
    t.wrap(loop_mod, "evaluate_policy", "validation beam search")
    t.wrap(evaluate_mod, "evaluate_runs", lambda parent: parent if parent == "validation beam search"
           else "test beam search")
    t.wrap(evaluate_mod, "slate_click_stats", "simulated A/B test (sim CTR)")
    t.wrap(evaluate_mod, "load_policy", "checkpoint loads")
    # the policy's two passes, named by where they run (training step, sampling, beam search)
    t.wrap(SIDPolicy, "tuple_logprobs", "target NLL pass (forward)")
    for attr, what in (("encode", "history encoding"), ("extend", "continuation tokens")):
        t.wrap(SIDPolicy, attr, lambda parent, what=what: f"{what} ({'training step' if parent in _TRAIN else parent})")


_TRAIN = ("training step", "target NLL pass (forward)")


def profile_runs(profile_name: str, methods: list[str], seed: int, steps: int | None) -> tuple[list, float]:
    prof = get_profile(profile_name)
    if steps:
        prof = prof.with_rl_steps(steps)
    prepare(prof, progress=False)
    known = {m.name: m for m in default_methods()}
    specs_by = [known.get(m) or MethodSpec(m, m) for m in methods]
    if any(m.method == "random" for m in specs_by) and not any(m.method == "adagrpo" for m in specs_by):
        specs_by.append(known["adagrpo"])
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        specs = plan_runs(prof, specs_by, [seed], tmp)
        for spec in specs:
            t = Timers()
            instrument(t)
            try:
                t0 = time.perf_counter()
                execute_run(spec, prof)
                wall = time.perf_counter() - t0
            finally:
                t.restore()
            out.append((spec.name, wall, dict(t.total), dict(t.calls)))
    return out, prof.rl.steps


def batching_check(prof_name: str, ks=(1, 2, 4, 8), repeats: int = 5) -> list[tuple[int, float, float, float]]:
    """(K, seconds for K policies called one after the other on B contexts each, for one policy
    called once on K * B, for the K policies stacked (model/stacked.py) called once on K * B) of
    the history encoding, the G-rollout extension and backward: the arithmetic a training step
    shares, at the profile's sizes, best of ``repeats``."""
    prof = get_profile(prof_name)
    B, G, H = prof.rl.batch_size, prof.grpo.num_generations, prof.policy.max_history
    Lp, V = prof.sid.num_levels + 1, prof.sid.codebook_size
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, V, (1500, Lp), generator=g)
    rows = []
    for K in ks:
        policies = [SIDPolicy(prof.policy, codes, V) for _ in range(K)]
        stacked = stack_policies(policies)
        hist = torch.randint(0, 1500, (K * B, H), generator=g)
        tok = torch.randint(0, V, (K * B, G, Lp - 1), generator=g)

        def one(model, h, tk):
            out, _ = model.extend(model.encode(h), tk, 0)
            out.logsumexp(-1).mean().backward()

        def separate():
            for k in range(K):
                one(policies[k], hist[k * B:(k + 1) * B], tok[k * B:(k + 1) * B])
        variants = {"separate": separate, "merged": lambda: one(policies[0], hist, tok),
                    "stacked": lambda: one(stacked, hist, tok)}
        best = {}
        for _ in range(repeats):
            for name, f in variants.items():
                t0 = time.perf_counter()
                f()
                best[name] = min(best.get(name, 1e9), time.perf_counter() - t0)
        rows.append((K, best["separate"], best["merged"], best["stacked"]))
    return rows


def report(runs, steps: int, profile: str, batching) -> str:
    parts = sorted({p for _, _, tot, _ in runs for p in tot}, key=lambda p: -max(r[2].get(p, 0) for r in runs))
    lines = [f"# Where a run's time goes ({profile} profile, {steps} RL steps, seed 0, one torch thread)", "",
             f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}; torch {torch.__version__}. "
             "Exclusive wall time per part (nested parts counted once, in the inner one).", "",
             "| part | " + " | ".join(f"{n} (s)" for n, *_ in runs) + " |",
             "| --- | " + " | ".join("---:" for _ in runs) + " |"]
    for p in parts:
        lines.append(f"| {p} | " + " | ".join(f"{tot.get(p, 0):.2f}" for _, _, tot, _ in runs) + " |")
    lines.append("| other (batching, metrics, glue) | " + " | ".join(
        f"{wall - sum(tot.values()):.2f}" for _, wall, tot, _ in runs) + " |")
    lines.append("| **whole run** | " + " | ".join(f"**{wall:.2f}**" for _, wall, _, _ in runs) + " |")
    if batching:
        lines += ["", "## Merging K runs into one call",
                  "", "History encoding, G-rollout extension and backward (the arithmetic a training step "
                  "shares), best of 5, one thread: K policies called one after the other on B contexts each; "
                  "one policy called once on K x B contexts (the most merging can save: no per-run weights); "
                  "the K policies stacked (`model/stacked.py`) and called once on K x B.", "",
                  "| K | K separate calls (s) | one policy, K*B (s) | K stacked, K*B (s) | separate / merged "
                  "| separate / stacked |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {k} | {s:.3f} | {m:.3f} | {st:.3f} | {s / m:.2f} | {s / st:.2f} |" for k, s, m, st in batching]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="paper")
    p.add_argument("--methods", nargs="+", default=["nll", "mix(1)", "adagrpo"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=0, help="RL steps (0 = the profile's)")
    p.add_argument("--batching", action="store_true", help="also time merged against separate policy calls")
    p.add_argument("--out", default=None, help="write the Markdown table here too")
    a = p.parse_args()
    torch.set_num_threads(1)
    runs, steps = profile_runs(a.profile, a.methods, a.seed, a.steps or None)
    text = report(runs, steps, a.profile, batching_check(a.profile) if a.batching else None)
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
