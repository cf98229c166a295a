"""Per-user reliability of a Coat reward against the randomly assigned ratings, and the diagnostics
e, u and a computed as AdaGRPO computes them for a sample's rollouts.

For user u the *candidates* C_u are the user's random test items (by default less the ones the user
also chose to rate: the reward saw those ratings, identical in Coat, and they sit on popular items);
they play the part of a sample's rollouts. With s the reward's scores and r the true ratings:

* agreement (pairwise accuracy, a Kendall-style statistic; ``rl.gate.rank_agreement``)::

      agree_u = #{(i, j) in C_u^2 : r_i > r_j, s_i > s_j} / #{(i, j) in C_u^2 : r_i > r_j}

  over the pairs with different ratings; a tie of the reward is not concordant. "The reward is
  right for u" = agree_u > 0.5.
* e (``rl.gate.exposure_share``): the mean exposure percentile of the candidates, exposure c_i =
  the item's self-selected ratings, the percentile among the catalogue's counts.
* u (``rl.gate.ensemble_agreement``): the mean pairwise Spearman correlation of K bootstrap
  members of the reward over the candidates.
* a (``rl.gate.discriminability``): for each liked candidate t (r_t >= the positive threshold) as
  the target, the share of negatives scored strictly below it, negatives = the other candidates
  plus M liked test items of other users that u never rated (the in-batch negatives); a_u is the
  mean over u's liked candidates (undefined for a user without one). Its targets come from the
  random ratings, so a reads part of the truth the agreement is measured on (its pairs (t, j) are
  agreement pairs), whereas AdaGRPO's target is the logged item, known at training time.
* a_self: the same share with the user's liked *self-selected* items as targets (truth-free, the
  closer analogue of the gate's a).
  e, u and a_self read only the self-selected ratings, the reward and the candidates' identities.
* accuracy by exposure bucket: the same pairwise accuracy over the pairs whose two items both lie
  in the bucket (equal-sized buckets of the catalogue sorted by c_i, ties by item id, bucket 0 =
  the rarest: the rule of ``data.impressions.exposure_buckets``).

:func:`~adagrpo_core.eval.stats.user_bootstrap_ci` (re-exported here) is the percentile bootstrap
over users that holds the training seeds fixed, for any statistic of the users (a diagnostic's ROC
AUC for "agree_u > 0.5", a pooled accuracy, a difference of two rewards on the same users).
"""
from __future__ import annotations

import numpy as np
import torch

from ..common.checks import check_int
from ..rl.gate import discriminability, ensemble_agreement, exposure_percentile, exposure_share, rank_agreement
from .stats import auc_rows, user_bootstrap_ci  # noqa: F401  (re-exported: the study reads them from here)

__all__ = ["auc_rows", "bucket_pairs", "candidate_items", "discriminability_diagnostic", "ensemble_diagnostic",
           "exposure_buckets_of", "exposure_diagnostic", "half_gate_rows", "inbatch_negatives", "liked_targets",
           "user_agreement", "user_bootstrap_ci"]


def candidate_items(data, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(items [U, C] int64, ratings [U, C] int64): each user's random test items in item order,
    padded with -1 (rating 0) to the longest row; ``exclude_seen`` drops the items the user also
    rated among the self-selected ratings."""
    keep = data.test > 0
    if exclude_seen:
        keep &= data.train == 0
    C = max(int(keep.sum(1).max()), 1)
    items = np.full((data.n_users, C), -1, dtype=np.int64)
    ratings = np.zeros((data.n_users, C), dtype=np.int64)
    for u in range(data.n_users):
        its = np.flatnonzero(keep[u])
        items[u, :len(its)], ratings[u, :len(its)] = its, data.test[u, its]
    return items, ratings


def exposure_buckets_of(counts: np.ndarray, n_buckets: int) -> np.ndarray:
    """[N] bucket of each item: equal-sized groups of the items sorted by count (ties by item id),
    0 = the rarest (the rule of ``data.impressions.exposure_buckets``)."""
    counts = np.asarray(counts)
    check_int("n_buckets", n_buckets, lo=1, hi=len(counts))
    bucket = np.empty(len(counts), dtype=np.int64)
    bucket[np.argsort(counts, kind="stable")] = np.arange(len(counts)) * n_buckets // len(counts)
    return bucket


def inbatch_negatives(data, items: np.ndarray, ratings: np.ndarray, M: int, seed: int) -> np.ndarray:
    """[U, M] int64: for each user, M distinct candidates liked by other users (their liked
    candidates) that the user never rated (neither self-selected nor random), drawn uniformly with
    ``seed``; -1 where fewer exist."""
    check_int("M", M, lo=0)
    rng = np.random.default_rng(seed)
    liked = data.positive(ratings) & (items >= 0)
    owner = np.repeat(np.arange(len(items)), items.shape[1])[liked.reshape(-1)]
    pool = items[liked]
    out = np.full((len(items), M), -1, dtype=np.int64)
    for u in range(len(items)):
        ok = (owner != u) & (data.train[u, pool] == 0) & (data.test[u, pool] == 0)
        cand = np.unique(pool[ok])
        pick = rng.permutation(cand)[:M]
        out[u, :len(pick)] = pick
    return out


def user_agreement(scores: np.ndarray, ratings: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(agree [U], pairs [U]): the pairwise accuracy of ``scores`` [U, C] against ``ratings`` over
    the valid candidates (``items`` >= 0) and the number of pairs with different ratings."""
    agree, n = rank_agreement(torch.as_tensor(scores), torch.as_tensor(ratings, dtype=torch.float64),
                              torch.as_tensor(items >= 0))
    return agree.double().numpy(), n.numpy()


def exposure_diagnostic(items: np.ndarray, exposure: np.ndarray) -> np.ndarray:
    """e [U]: the candidates' mean exposure percentile (``rl.gate.exposure_share``)."""
    it = torch.as_tensor(items)
    pct = exposure_percentile(torch.as_tensor(exposure))
    return exposure_share(it[:, 1:], it[:, 0], pct).double().numpy()


def ensemble_diagnostic(member_scores: np.ndarray, items: np.ndarray) -> np.ndarray:
    """u [U]: the K members' mean pairwise Spearman over the candidates (``member_scores`` [K, U, C])."""
    return ensemble_agreement(torch.as_tensor(member_scores), torch.as_tensor(items)).double().numpy()


def discriminability_diagnostic(targets: np.ndarray, target_scores: np.ndarray, items: np.ndarray,
                                scores: np.ndarray, negatives: np.ndarray, neg_scores: np.ndarray) -> np.ndarray:
    """a [U]: the mean over the user's targets t (``targets`` [U, T], -1 = none, scored
    ``target_scores``) of the share of negatives scored strictly below t (``rl.gate.discriminability``),
    negatives = the candidates ``items`` [U, C] other than t (scored ``scores``) plus the in-batch
    ``negatives`` [U, M] (scored ``neg_scores``); NaN for a user without a target."""
    uu, tt = np.nonzero(targets >= 0)
    if len(uu) == 0:
        return np.full(len(items), np.nan)
    t = torch.as_tensor
    a = discriminability(t(target_scores[uu, tt]), t(scores[uu]), t(items[uu]), t(targets[uu, tt]),
                         t(neg_scores[uu]), t(negatives[uu] >= 0)).double().numpy()
    n = np.bincount(uu, minlength=len(items))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.bincount(uu, weights=a, minlength=len(items)) / n, np.nan)


def liked_targets(ratings: np.ndarray, items: np.ndarray, threshold: int) -> np.ndarray:
    """[U, T] the items of each row rated >= ``threshold`` (left-aligned, -1 padded): the targets of a
    (the liked candidates) or of a_self (the liked self-selected items: ``ratings`` = the train
    matrix, ``items`` = its column ids)."""
    liked = (ratings >= threshold) & (items >= 0)
    T = max(int(liked.sum(1).max()), 1)
    out = np.full((len(items), T), -1, dtype=np.int64)
    for u in range(len(items)):
        its = items[u][liked[u]]
        out[u, :len(its)] = its
    return out


def bucket_pairs(scores: np.ndarray, ratings: np.ndarray, items: np.ndarray, bucket: np.ndarray,
                 n_buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """(concordant [U, B], pairs [U, B]): per user and exposure bucket b, the ordered pairs (i, j) of
    valid candidates both in bucket b with r_i > r_j, and those the scores order the same way
    (s_i > s_j). Their ratio is the bucket's pairwise accuracy of the user."""
    valid = items >= 0
    b = np.where(valid, bucket[np.maximum(items, 0)], -1)                         # [U, C]
    pair = (ratings[:, :, None] > ratings[:, None, :]) & valid[:, :, None] & valid[:, None, :]
    conc = pair & (scores[:, :, None] > scores[:, None, :])
    same = b[:, :, None] == b[:, None, :]                                         # [U, C, C]
    onehot = b[:, :, None] == np.arange(n_buckets)                                # [U, C, B]
    P = np.einsum("ucd,ucb->ub", (pair & same).astype(np.int64), onehot.astype(np.int64))
    K = np.einsum("ucd,ucb->ub", (conc & same).astype(np.int64), onehot.astype(np.int64))
    return K, P


def half_gate_rows(x: np.ndarray) -> np.ndarray:
    """bool [B, n]: ``rl.gate.reliability_gate`` at rate 0.5 applied to each row of x [B, n]: admit
    x > q or (x == q and q > the row's minimum), q = the row's median computed in float32 (linear
    interpolation, as the gate's torch.quantile of r.float())."""
    x = np.asarray(x, dtype=np.float64)
    q = np.quantile(x.astype(np.float32), 0.5, axis=1, keepdims=True).astype(np.float64)   # the gate's float32 q
    return (x > q) | ((x == q) & (q > x.min(1, keepdims=True)))
