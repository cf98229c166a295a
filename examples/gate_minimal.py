"""AdaGRPO's gate on a toy batch: diagnostics, gate, GRPO and NLL losses, the combined loss.

B = 4 samples, G = 4 rollouts each, item tuples of L = 3 tokens, M = 2 in-batch negatives. The
policy's log-probabilities and the reward model's scores are made up; in your trainer they come
from your policy and your reward model. Run: python examples/gate_minimal.py
"""
import torch

from adagrpo_core.rl.gate import adagrpo_gate, difficulty, discriminability, sample_inbatch_negatives
from adagrpo_core.rl.grpo import combine_losses, group_advantages, grpo_loss_per_sample, nll_per_sample

torch.manual_seed(0)
B, G, L, M = 4, 4, 3, 2
target = torch.tensor([10, 11, 12, 13])                     # [B] ground-truth item ids
rollouts = torch.tensor([[10, 20, 21, 22],                  # [B, G] sampled item ids; -1 = an invalid
                         [30, 31, 11, -1],                  #   tuple (a hallucination)
                         [12, 12, 12, 12],                  # every rollout is the target: no negative
                         [40, 41, 42, 43]])

# the policy: per-token log-probabilities of the target and of each rollout
logp_target_tok = torch.log(torch.rand(B, L) * 0.5 + 0.3)   # [B, L]
logp_roll_tok = torch.log(torch.rand(B, G, L) * 0.5 + 0.3)  # [B, G, L] (old = new on the first pass)
logp_target, logp_roll = logp_target_tok.sum(-1), logp_roll_tok.sum(-1)   # [B], [B, G] sequence log-likelihoods

# the reward model: a score per (sample, item); here one number per item
item_score = torch.rand(50) - 0.5                           # [n_items] in [-0.5, 0.5)
item_score[[10, 11]] = 1.0                                  # the reward can tell samples 0 and 1's targets apart;
item_score[13] = -1.0                                       # not sample 3's
score = lambda items: item_score[items.clamp(min=0)]        # noqa: E731  (invalid items: see rewards below)
score_target, score_roll = score(target), score(rollouts)   # [B], [B, G]
idx, mask = sample_inbatch_negatives(target, M)             # [B, M] other samples' targets as negatives
score_inbatch = score(target[idx])                          # [B, M]

# the two diagnostics and the gate
d = difficulty(logp_target, logp_roll, rollouts, target)    # [B] policy side: share of negatives it likes as much
a = discriminability(score_target, score_roll, rollouts, target,
                     score_inbatch=score_inbatch, inbatch_mask=mask)   # [B] reward side: AUC of the target
g = adagrpo_gate(d, a, tau=0.5, rho=0.5)                    # bool [B]

# the losses: GRPO per sample (clipped, token mean), NLL per sample, then the gated sum
rewards = torch.where(rollouts >= 0, score_roll, torch.tensor(-2.0))   # [B, G] invalid tuples penalised
adv = group_advantages(rewards)                             # [B, G] (r - mean) / (std + 1e-4) per group
logp_new = logp_roll_tok.clone().requires_grad_(True)       # [B, G, L] carries the gradient
grpo, _ = grpo_loss_per_sample(logp_new, logp_roll_tok, adv)   # [B]
nll = nll_per_sample(logp_target_tok)                       # [B]
loss = combine_losses(nll, grpo, g, w_nll=1.0, lam=1.0)     # scalar: mean(nll) + (1/B) sum over admitted grpo
loss.backward()

for i in range(B):
    print(f"sample {i}: d={d[i]:.2f} a={a[i]:.2f} -> {'admitted' if g[i] else 'rejected'}")
print(f"admitted {int(g.sum())} of {B}; loss {loss.item():.4f}; "
      f"gradient reaches the rollouts of admitted samples only: {bool((logp_new.grad.abs().sum((1, 2)) > 0).eq(g).all())}")
