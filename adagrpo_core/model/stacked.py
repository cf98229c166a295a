"""K policies of one shape as one module: a leading run dimension on every weight.

:func:`stack_policies` turns K :class:`SIDPolicy` models (one per run: another seed, another
method, the same architecture and semantic IDs) into one ``SIDPolicy`` whose Linear, LayerNorm
and Embedding layers hold the K runs' weights stacked, ``[K, ...]``. Every method of the policy
(``encode``, ``extend``, ``tuple_logits``, and so ``sample_rollouts`` and ``beam_search``) then
advances the K runs at once on a batch of ``K * B`` rows, run-major: rows ``k*B .. (k+1)*B - 1``
are run k's. A weight layer reshapes its input to ``[K, rows of a run, features]`` and applies each
run's weights with one batched matmul; attention, masks, the trie and sampling carry no weights
and run on the merged batch as they are. Run k's outputs depend only on run k's rows and weights,
so a loss summed over the runs gives each run's gradient in its own slice, and an element-wise
optimiser (AdamW) over the stacked parameters is K independent optimisers.

The state dict has the names of a single policy with a leading K on every tensor:
:func:`unstack_state` gives run k's, loadable into a plain ``SIDPolicy`` (:func:`unstack_policies`).

What it is for: on a GPU one run of this size leaves the device idle and K runs in one call fill it.
On a CPU core the arithmetic is the cost and merging saves almost nothing (benchmarks/profile_run.py
measures both), so the per-run path stays the default there.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from .policy import SIDPolicy


def _runs(x: torch.Tensor, K: int) -> torch.Tensor:
    """[K*B, ..., C] (run-major rows) -> [K, B*..., C]."""
    if x.shape[0] % K:
        raise ValueError(f"a stacked policy of K={K} runs needs a batch of K * B rows, got {x.shape[0]} rows")
    return x.reshape(K, -1, x.shape[-1])


class RunLinear(nn.Module):
    """K linear layers: weight [K, out, in], bias [K, out] (or None); x [K*B, ..., in] -> [K*B, ..., out]."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = None if bias is None else nn.Parameter(bias)

    def forward(self, x):
        xk = _runs(x, self.weight.shape[0])                                    # [K, N, in]
        w = self.weight.transpose(1, 2)                                         # [K, in, out]
        y = torch.bmm(xk, w) if self.bias is None else torch.baddbmm(self.bias[:, None, :], xk, w)
        return y.reshape(*x.shape[:-1], y.shape[-1])


class RunLayerNorm(nn.Module):
    """K LayerNorms over the last dim: weight, bias [K, C]."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, eps: float):
        super().__init__()
        self.weight, self.bias, self.eps = nn.Parameter(weight), nn.Parameter(bias), eps

    def forward(self, x):
        y = _runs(F.layer_norm(x, x.shape[-1:], eps=self.eps), self.weight.shape[0])   # [K, N, C]
        return (y * self.weight[:, None] + self.bias[:, None]).reshape(x.shape)


class RunEmbedding(nn.Module):
    """K embedding tables: weight [K, N, C]; ids [K*B, ...] -> [K*B, ..., C] (run k reads table k)."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, ids):
        K, N, C = self.weight.shape
        if ids.shape[0] % K:
            raise ValueError(f"a stacked policy of K={K} runs needs a batch of K * B rows, got {ids.shape[0]} rows")
        offset = torch.arange(K, device=ids.device).view(K, *([1] * ids.dim())) * N       # [K, 1, ...]
        flat = ids.reshape(K, ids.shape[0] // K, *ids.shape[1:]) + offset                 # [K, B, ...]
        return F.embedding(flat.reshape(ids.shape), self.weight.reshape(K * N, C))


def _stacked_layer(mods: list[nn.Module]) -> nn.Module:
    """The run-stacked version of K same-shaped Linear, LayerNorm or Embedding layers."""
    first = mods[0]
    stack = lambda name: torch.stack([getattr(m, name).detach() for m in mods]).clone()   # noqa: E731
    if isinstance(first, nn.Linear):
        return RunLinear(stack("weight"), None if first.bias is None else stack("bias"))
    if isinstance(first, nn.LayerNorm):
        return RunLayerNorm(stack("weight"), stack("bias"), first.eps)
    return RunEmbedding(stack("weight"))


def stack_policies(policies: list[SIDPolicy]) -> SIDPolicy:
    """One policy advancing ``len(policies)`` runs at once (see the module docstring). The
    policies must share their config and semantic IDs; the stacked weights are copies."""
    if not policies:
        raise ValueError("stack_policies needs at least one policy, got none")
    first = policies[0]
    for i, p in enumerate(policies[1:], 1):
        if p.cfg != first.cfg or not torch.equal(p.item_codes, first.item_codes):
            raise ValueError(f"policies[{i}] has another config or other semantic IDs than policies[0] "
                             f"(cfg={p.cfg} vs {first.cfg}): only same-shaped runs can be stacked")
    stacked = copy.deepcopy(first)
    layers = (nn.Linear, nn.LayerNorm, nn.Embedding)
    names = [n for n, m in first.named_modules() if isinstance(m, layers)]
    for name in names:
        parent, _, child = name.rpartition(".")
        owner = stacked.get_submodule(parent) if parent else stacked
        setattr(owner, child, _stacked_layer([p.get_submodule(name) for p in policies]))
    stacked.n_runs = len(policies)
    stacked.train(first.training)
    return stacked


def unstack_state(stacked: SIDPolicy, k: int) -> dict:
    """Run k's state dict, as a plain policy's (every tensor's leading run dim indexed at k)."""
    K = stacked.n_runs
    if not 0 <= k < K:
        raise ValueError(f"run index k must be in [0, {K}), got k={k}")
    return {name: t[k].detach().clone() for name, t in stacked.state_dict().items()}


def unstack_policies(stacked: SIDPolicy, like: SIDPolicy) -> list[SIDPolicy]:
    """The K runs as plain policies (copies of ``like``'s structure with each run's weights)."""
    out = []
    for k in range(stacked.n_runs):
        p = copy.deepcopy(like)
        p.load_state_dict(unstack_state(stacked, k))
        out.append(p)
    return out
