"""AdaGRPO inside Hugging Face TRL: ``AdaGRPOConfig`` and ``AdaGRPOTrainer``, a ``GRPOTrainer``
subclass (the optional extra ``trl``; written and tested against the versions pinned in
requirements.txt: trl 1.16.0, transformers 5.23.0).

Each dataset row has a ``prompt`` (plain text, e.g. a user's history as semantic-ID tokens
``<a_12><b_3><c_7>...``) and a ``target``, the ground-truth completion. After TRL has sampled and
scored the G completions of every prompt (``_generate_and_score_completions``), the trainer

1. computes the policy's sequence log-likelihood of the target and of the G completions
   (temperature 1, no grad; a completion's EOS token is not counted, so a target and a rollout
   of the same item score alike);
2. scores the target and M other prompts' targets (in-batch negatives, ``rl.gate.
   sample_inbatch_negatives``) with the trainer's own reward functions, combined with
   ``reward_weights`` as TRL combines them;
3. computes d, a and the gate g with ``adagrpo_core.rl.gate`` (``difficulty``,
   ``discriminability``, ``compute_gate``), unchanged;
4. multiplies the advantages of every completion of prompt i by ``lam * g_i``, so a gated-out
   prompt's completions have zero advantage: no GRPO loss and no gradient;
5. and the loss (``_compute_loss``) adds ``nll_weight`` times the target's NLL, the mean over the
   prompts of -(1/L) sum_t log pi(y*_t | x, y*_<t) (``rl.grpo.nll_per_sample``), with
   ``nll_weight`` = ``rl.gate.METHODS[gate].w_nll``.

So the optimiser step sees L = (1/B) sum_i [ w_nll L_nll_i + lam g_i L_grpo_i ] with the GRPO term
normalised by B, not by the number admitted: the package's ``normalize="batch"``
(``rl.grpo.combine_losses``), for the loss types accepted here (see ``AdaGRPOConfig.loss_type``).
It logs ``gate/admission_rate``, ``gate/difficulty_mean``, ``gate/discriminability_mean`` and
``nll`` with TRL's other metrics.

Items. d and a compare *distinct valid* items. By default a completion's item is its token
sequence (EOS and padding removed) and every completion is valid. Pass ``item_ids`` (texts ->
ids, a negative id = no such item, a hallucination) to use a catalogue.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
from trl import GRPOConfig, GRPOTrainer
from trl.data_utils import is_conversational

from ..rl.gate import METHODS, GateConfig, compute_gate, difficulty, discriminability, sample_inbatch_negatives
from ..rl.grpo import GRPOConfig as _PackageGRPOConfig

GATES = ("adagrpo", "random", "mix", "nll", "difficulty", "discriminability", "inverse", "grpo")
"""The rl.gate methods this trainer runs: those computed from d and a alone (oracle and the
reliability gates need inputs that a TRL batch does not carry)."""
LOSS_TYPES = ("grpo", "dr_grpo")
"""TRL loss types whose GRPO term is (1/B) sum_i g_i L_grpo_i whatever the gate admits."""
TOKEN_NORMALISED = ("bnpo", "dapo", "cispo", "vespo")
"""TRL loss types that divide by the batch's token count (checked in TRL 1.16.0's _compute_loss)."""


@dataclass
class AdaGRPOConfig(GRPOConfig):
    r"""``trl.GRPOConfig`` plus the gate. The defaults of ``tau``, ``rho``, ``num_negatives`` and
    ``lam`` are the package's (``rl.gate.GateConfig``, ``rl.grpo.GRPOConfig``); the NLL weight is
    the gate's (``rl.gate.METHODS[gate].w_nll``: 1, or 0 for ``gate="grpo"``).

    ``loss_type`` defaults to ``"grpo"`` (TRL's default is ``"dapo"``). How each loss type
    normalises in TRL 1.16.0 (``GRPOTrainer._compute_loss``), with the gate zeroing advantages
    (gated-out completions keep their tokens in every count):

    * ``"grpo"``: each completion's token losses are averaged over its own tokens, then averaged
      over the completions (and divided by the accumulation steps): exactly
      (1/B) sum_i g_i L_grpo_i, the package's ``normalize="batch"``, for any lengths;
    * ``"dr_grpo"``: token losses summed, divided by (completions x ``max_completion_length``):
      the same when every completion has ``max_completion_length`` tokens (fixed-length semantic
      IDs), else each completion weighs by its length; never by the admission rate;
    * ``"bnpo"``, ``"dapo"``, ``"cispo"``, ``"vespo"`` (rejected): divided by the token count of
      the local or generation batch. With fixed-length completions that is again
      ``normalize="batch"``; with varying lengths a sample weighs by its token count, so they are
      not accepted. ``"sapo"`` and ``"luspo"`` (rejected) change the per-token objective.

    Also rejected: ``mask_truncated_completions`` (a fixed-length ID has no EOS: every completion
    would be masked), ``beta > 0`` (TRL adds the KL term to every completion's tokens, so it would
    still act on gated-out rows), ``entropy_coef != 0`` or ``use_adaptive_entropy`` (the same for
    the entropy bonus) and ``use_liger_kernel`` (deprecated in TRL 1.16, Triton-only, untested
    with the gate's extra forward passes; TRL versions before it sent the loss through Liger's
    fused GRPO loss, which never calls ``_compute_loss``).
    """

    gate: str = field(default="adagrpo", metadata={
        "help": "Which prompts get the GRPO term (rl.gate.METHODS): 'adagrpo' (d >= tau and a >= rho), 'random' "
                "(Bernoulli(random_rate)), 'mix' (all: the fixed NLL-GRPO mixture), 'nll' (none: continued SFT), "
                "'difficulty' (d >= tau), 'discriminability' (a >= rho), 'inverse' (what adagrpo rejects) or "
                "'grpo' (all, without the NLL term)."})
    tau: float = field(default=GateConfig.tau, metadata={
        "help": "Difficulty threshold in [0, 1]: admit when d >= tau, d = the share of distinct valid sampled "
                "negatives the policy likes at least as much as the target."})
    rho: float = field(default=GateConfig.rho, metadata={
        "help": "Discriminability threshold in [0, 1]: admit when a >= rho, a = the share of negatives (sampled "
                "plus num_negatives in-batch targets) that the reward scores strictly below the target."})
    num_negatives: int = field(default=GateConfig.num_negatives, metadata={
        "help": "M >= 0: other prompts' targets added to each prompt's negatives when computing a (the paper: 5)."})
    lam: float = field(default=_PackageGRPOConfig.lam, metadata={
        "help": "lambda >= 0: weight of the GRPO term (the admitted completions' advantages are multiplied by it)."})
    random_rate: float | None = field(default=None, metadata={
        "help": "Admission probability in [0, 1] of gate='random' (e.g. an adagrpo run's mean gate/admission_rate)."})
    loss_type: str = field(default="grpo", metadata={
        "help": "TRL loss type: 'grpo' (per-completion token mean, then mean: the package's normalize='batch' for "
                "any completion length) or 'dr_grpo' (the same for completions of max_completion_length tokens). "
                "Token-count-normalised types (bnpo, dapo, cispo, vespo), sapo and luspo are rejected."})

    def __post_init__(self):
        if self.gate not in GATES:
            raise ValueError(f"gate must be one of {list(GATES)}, got gate={self.gate!r}")
        self.gate_config()                          # checks tau, rho, num_negatives and random_rate
        if self.gate == "random" and self.random_rate is None:
            raise ValueError("gate='random' needs random_rate (its admission probability), got random_rate=None")
        if isinstance(self.lam, bool) or not isinstance(self.lam, (int, float)) or not 0 <= self.lam < float("inf"):
            raise ValueError(f"lam must be a finite number >= 0, got lam={self.lam!r}")
        if self.loss_type in TOKEN_NORMALISED:
            raise ValueError(
                f"loss_type={self.loss_type!r} is not supported: it divides the GRPO term by the batch's token count, "
                "which equals the package's normalize='batch' only when every completion has the same length (gated-"
                "out completions keep their tokens in the count); use loss_type='grpo', the same for fixed-length "
                "semantic IDs and exact for any length")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {list(LOSS_TYPES)}, got loss_type={self.loss_type!r}: "
                             "its per-token objective is not the clipped GRPO loss the gate was defined with")
        if self.beta != 0:
            raise ValueError(f"beta must be 0 with the gate, got beta={self.beta!r}: TRL adds beta * KL to the tokens "
                             "of every completion, so the KL term would still act on gated-out prompts")
        if self.entropy_coef != 0 or self.use_adaptive_entropy:
            raise ValueError(f"entropy_coef must be 0 and use_adaptive_entropy False with the gate, got entropy_coef="
                             f"{self.entropy_coef!r}, use_adaptive_entropy={self.use_adaptive_entropy!r}: the entropy "
                             "bonus acts on every completion, gated out or not")
        if self.mask_truncated_completions:
            raise ValueError("mask_truncated_completions must be False with the gate, got mask_truncated_completions="
                             "True: a semantic ID of max_completion_length tokens ends without EOS, so TRL would mask "
                             "every completion out of the loss (and d would see no tokens)")
        if self.use_liger_kernel:
            raise ValueError(f"use_liger_kernel must be False with the gate, got use_liger_kernel="
                             f"{self.use_liger_kernel!r}: untested with the gate's extra forward passes (and "
                             "deprecated in TRL 1.16)")
        super().__post_init__()

    @property
    def nll_weight(self) -> float:
        """The NLL term's weight: ``rl.gate.METHODS[gate].w_nll`` (0 for 'grpo', else 1)."""
        return METHODS[self.gate].w_nll

    def gate_config(self) -> GateConfig:
        """The ``rl.gate.GateConfig`` of this run (validates tau, rho, num_negatives, random_rate)."""
        return GateConfig(method=self.gate, tau=self.tau, rho=self.rho, num_negatives=self.num_negatives,
                          random_rate=self.random_rate, random_rate_mode="mean")


class AdaGRPOTrainer(GRPOTrainer):
    """``trl.GRPOTrainer`` with AdaGRPO's per-sample gate and NLL anchor (see the module docstring).

    Arguments are ``GRPOTrainer``'s, with ``args`` an :class:`AdaGRPOConfig`, reward functions
    that score any (prompt, completion) pair (they also score the targets), and ``item_ids``: an
    optional callable, list of completion texts -> list of item ids (negative = no such item).
    Single process only.
    """

    _tag_names = ["trl", "grpo", "adagrpo"]
    _name = "AdaGRPO"

    def __init__(self, *args, item_ids=None, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.args, AdaGRPOConfig):
            raise TypeError(f"args must be an AdaGRPOConfig, got {type(self.args).__name__}")
        if not self.reward_funcs:
            raise ValueError("AdaGRPOTrainer needs reward_funcs: they score the targets for the discriminability a")
        if self.accelerator.num_processes != 1:
            raise ValueError(f"AdaGRPOTrainer runs in one process, got num_processes={self.accelerator.num_processes}")
        for split, ds in (("train_dataset", self.train_dataset), ("eval_dataset", self.eval_dataset)):
            cols = getattr(ds, "column_names", None)
            if isinstance(cols, list) and "target" not in cols:
                raise ValueError(f"{split} needs a 'target' column (the ground-truth completion), got columns {cols}")
        self.item_ids = item_ids
        self.gate_config = self.args.gate_config()
        self._gate_generator = torch.Generator().manual_seed(self.args.seed)
        self._last_rewards_per_func = None
        self.last_gate: dict | None = None
        """The last generation batch's diagnostics (d, a, gate, items...), for inspection."""

    # ------------------------------------------------------------------------------------------
    # log-likelihoods

    def _token_logps(self, model, prompt_ids, prompt_mask, ids, mask) -> torch.Tensor:
        """log pi(ids_t | prompt, ids_<t) at temperature 1: [n, T] (0 where ``mask`` is 0).

        ``prompt_ids`` [n, P] left-padded (``prompt_mask``), ``ids`` [n, T] right-padded (``mask``).
        One forward of the model's own head over the last T + 1 positions (``logits_to_keep``).
        """
        T = ids.shape[1]
        input_ids = torch.cat([prompt_ids, ids], 1)                               # [n, P + T]
        attention = torch.cat([prompt_mask, mask], 1)
        chunk = self.args.per_device_train_batch_size
        out = []
        for s in range(0, input_ids.shape[0], chunk):
            with self.accelerator.autocast():
                logits = model(input_ids=input_ids[s:s + chunk], attention_mask=attention[s:s + chunk],
                               logits_to_keep=T + 1, use_cache=False).logits[:, :-1].float()   # [c, T, V]
            out.append(torch.log_softmax(logits, -1).gather(-1, ids[s:s + chunk, :, None]).squeeze(-1))
        logp = torch.cat(out) if out else torch.zeros(ids.shape, device=ids.device)
        return logp * mask

    def _tokenize_targets(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Target texts -> ids [n, T] right-padded and mask [n, T] (no special tokens added)."""
        ids = self.processing_class(text=texts, add_special_tokens=False)["input_ids"]
        if any(len(x) == 0 for x in ids):
            raise ValueError(f"every target must have at least one token, got targets {texts[:3]}...")
        T = max(len(x) for x in ids)
        pad = self._tokenizer.pad_token_id
        dev = self.accelerator.device
        tid = torch.tensor([x + [pad] * (T - len(x)) for x in ids], dtype=torch.long, device=dev)
        tmask = torch.tensor([[1] * len(x) + [0] * (T - len(x)) for x in ids], dtype=torch.long, device=dev)
        return tid, tmask

    def _items(self, completion_ids, keep, target_ids, target_mask, targets):
        """Item ids of the completions [rows] and of the targets [B] (see the module docstring)."""
        dev = completion_ids.device
        if self.item_ids is not None:
            texts = self.processing_class.batch_decode(completion_ids, skip_special_tokens=True)
            items = torch.as_tensor(list(self.item_ids(texts)), dtype=torch.long, device=dev)
            target = torch.as_tensor(list(self.item_ids(list(targets))), dtype=torch.long, device=dev)
            if bool((target < 0).any()):
                bad = targets[int((target < 0).nonzero()[0])]
                raise ValueError(f"item_ids maps a target to no item (a negative id): target={bad!r}")
            return items, target
        index: dict[tuple, int] = {}
        key = lambda ids, m: index.setdefault(tuple(ids[m.bool()].tolist()), len(index))  # noqa: E731
        target = [key(t, m) for t, m in zip(target_ids, target_mask)]
        items = [key(c, k) for c, k in zip(completion_ids, keep)]
        return torch.tensor(items, device=dev), torch.tensor(target, device=dev)

    # ------------------------------------------------------------------------------------------
    # the gate

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_rewards_per_func = rewards                                    # [rows, n_funcs]
        return rewards

    def _reward_sum(self, rewards_per_func: torch.Tensor) -> torch.Tensor:
        """TRL's combined reward: sum_k w_k r_k over the functions that scored (NaN if none did)."""
        w = self.reward_weights.to(rewards_per_func.device)
        total = (rewards_per_func * w).nansum(1)
        return torch.where(torch.isnan(rewards_per_func).all(1), torch.full_like(total, float("nan")), total)

    def _score_targets(self, inputs, G, targets, target_ids, target_mask, neg_idx) -> torch.Tensor:
        """Rewards [B, 1 + M] of each prompt's target and of the M in-batch targets ``neg_idx`` [B, M],
        from the trainer's reward functions, with prompt i's row (and its extra columns) as context."""
        B, K = len(targets), 1 + neg_idx.shape[1]
        cand = torch.cat([torch.arange(B, device=neg_idx.device)[:, None], neg_idx], 1).tolist()   # [B, K]
        rows = [dict(inputs[i * G]) for i in range(B) for _ in range(K)]
        texts = [targets[j] for c in cand for j in c]
        ids = [target_ids[j][target_mask[j].bool()].tolist() for c in cand for j in c]
        saved = self._pending_extra_logs, self._pending_metrics     # the targets are not completions: no logs
        self._pending_extra_logs, self._pending_metrics = defaultdict(list), defaultdict(list)
        try:
            rpf = self._calculate_rewards(rows, [r["prompt"] for r in rows], texts, ids)
        finally:
            self._pending_extra_logs, self._pending_metrics = saved
        return self._reward_sum(rpf).view(B, K)

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        return self._apply_gate(inputs, out, self._last_rewards_per_func)

    @torch.no_grad()
    def _apply_gate(self, inputs, out: dict, rewards_per_func: torch.Tensor) -> dict:
        """d, a and g of every prompt of a generation batch; gates its advantages and adds the
        target's ids and NLL row weights to ``out`` (see the module docstring)."""
        mode = "train" if self.model.training else "eval"
        G = self.num_generations if mode == "train" else self.num_generations_eval
        rows = len(inputs)
        if rows % G:
            raise ValueError(f"a generation batch of {rows} completions does not hold groups of num_generations={G}")
        B = rows // G
        if is_conversational(inputs[0]):
            raise ValueError("AdaGRPOTrainer reads plain-text prompts and targets, got a conversational prompt")
        if "target" not in inputs[0]:
            raise ValueError(f"each row needs a 'target' (the ground-truth completion), got keys {sorted(inputs[0])}")
        prompts = [x["prompt"] for x in inputs]
        if any(prompts[i] != prompts[(i // G) * G] for i in range(rows)):
            raise ValueError(f"expected each prompt repeated num_generations={G} times in a row (TRL's sampler)")
        targets = [inputs[i * G]["target"] for i in range(B)]
        dev = out["completion_ids"].device
        target_ids, target_mask = self._tokenize_targets(targets)                 # [B, T]
        prompt_ids, prompt_mask = out["prompt_ids"][::G], out["prompt_mask"][::G]
        cids, cmask = out["completion_ids"], out["completion_mask"]               # [rows, C]
        keep = cmask.bool() & ~torch.isin(cids, torch.tensor(self.eos_token_ids, device=dev))

        # 1. sequence log-likelihoods (temperature 1)
        logp_target = self._token_logps(self.model, prompt_ids, prompt_mask, target_ids, target_mask).sum(1)  # [B]
        logp_roll = (self._token_logps(self.model, out["prompt_ids"], out["prompt_mask"], cids, cmask)
                     * keep).sum(1).view(B, G)                                    # [B, G]
        items, target = self._items(cids, keep, target_ids, target_mask, targets)
        items = items.view(B, G)                                                  # [B, G]

        # 2. rewards of the completions (TRL's), of the targets and of M in-batch targets
        score_roll = self._reward_sum(rewards_per_func).view(B, G)                # [B, G]
        M = self.args.num_negatives
        if M > 0:
            neg_idx, neg_mask = sample_inbatch_negatives(target, M, generator=self._gate_generator)   # [B, M]
        else:
            neg_idx = torch.zeros(B, 0, dtype=torch.long, device=dev)
            neg_mask = None
        scores = self._score_targets(inputs, G, targets, target_ids, target_mask, neg_idx)          # [B, 1 + M]

        # 3. the diagnostics and the gate (rl.gate, unchanged)
        d = difficulty(logp_target, logp_roll, items, target)                     # [B]
        a = discriminability(scores[:, 0], score_roll, items, target,
                             scores[:, 1:] if M > 0 else None, neg_mask)          # [B]
        g = compute_gate(self.gate_config, d, a, generator=self._gate_generator)  # [B] bool

        # 4. gated advantages; 5. what the NLL term needs (one row per prompt carries it)
        out["advantages"] = out["advantages"] * (self.args.lam * g.float()).repeat_interleave(G)
        logged = self._logs["advantages"]                       # the completions table shows the gated values
        for _ in range(min(rows, len(logged))):
            logged.pop()
        logged.extend(out["advantages"].tolist())
        out["target_ids"] = target_ids.repeat_interleave(G, 0)
        out["target_mask"] = target_mask.repeat_interleave(G, 0)
        nll_rows = torch.zeros(rows, device=dev)
        nll_rows[::G] = 1.0 / B
        out["nll_weight"] = nll_rows

        self._metrics[mode]["gate/admission_rate"].append(g.float().mean().item())
        self._metrics[mode]["gate/difficulty_mean"].append(d.mean().item())
        self._metrics[mode]["gate/discriminability_mean"].append(a.mean().item())
        self.last_gate = {"d": d, "a": a, "gate": g, "items": items, "target": target, "logp_target": logp_target,
                          "logp_rollouts": logp_roll, "score_target": scores[:, 0], "score_rollouts": score_roll,
                          "score_inbatch": scores[:, 1:], "inbatch_idx": neg_idx, "inbatch_mask": neg_mask}
        return out

    # ------------------------------------------------------------------------------------------
    # the loss

    def _compute_loss(self, model, inputs):
        """TRL's GRPO loss of this micro-batch (gated advantages) + nll_weight * the target's NLL.

        The NLL rows carry 1/B each (B prompts of the generation batch), so over the micro-batches
        of one generation batch the term sums to the mean NLL over its prompts; it is scaled for
        gradient accumulation as TRL scales the "grpo" loss.
        """
        loss = super()._compute_loss(model, inputs)
        w_nll = self.args.nll_weight
        w = inputs["nll_weight"]
        sel = w > 0
        if w_nll == 0 or not bool(sel.any()):
            return loss
        mode = "train" if self.model.training else "eval"
        mask = inputs["target_mask"][sel]
        logp = self._token_logps(model, inputs["prompt_ids"][sel], inputs["prompt_mask"][sel],
                                 inputs["target_ids"][sel], mask)                 # [n, T]
        nll = -logp.sum(1) / mask.sum(1).clamp(min=1)                             # [n], rl.grpo.nll_per_sample
        scale = self.args.steps_per_generation / self.current_gradient_accumulation_steps if mode == "train" else 1.0
        self._metrics[mode]["nll"].append(nll.mean().item())
        return loss + w_nll * scale * (w[sel] * nll).sum()
