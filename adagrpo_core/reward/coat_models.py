"""Reward models for ratings without order (Coat): a matrix-factorisation model with user and item
features, and the inputs of the project's ranker built from a user's unordered ratings.

The project's ranker (:class:`~adagrpo_core.reward.ranker.Ranker`) fits a rating matrix where its
inputs fit: its target attention pools an unordered set (softmax weights, no positions), so a user's
*other* self-selected items serve as the history (:func:`user_histories`, :func:`row_histories`),
and Coat's one-hot item features as its content features. It has no input for user features; the
plain model that takes them is :class:`MatrixFactorization`, named by its loss:

* ``"logistic"``: logistic matrix factorisation, a click model of "positive" (rating >= 4)::

      s_ui = mu + b_u + b_i + w_U . x_u + w_I . y_i + (P_u + A x_u) . (Q_i + B y_i),
      p(positive | u, i) = sigmoid(s_ui)

  with x_u, y_i the one-hot user and item features (Johnson, 2014, with feature terms);
* ``"squared"``: the same score as a predicted rating (1-5 stars), fit by squared error.

Training (naive or propensity-weighted, early stopping on a validation split of the self-selected
ratings) is in :mod:`adagrpo_core.reward.coat_training`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from ..common.checks import check_choice, check_int, check_range, check_training

LOSSES = ("logistic", "squared")


@dataclass
class MFConfig:
    """Matrix factorisation with user and item features and its full-batch training."""

    loss: str = "logistic"
    """'logistic' (click model of "positive", BCE) or 'squared' (rating model, squared error)."""
    dim: int = 8
    """D: size of the user and item factors P_u, Q_i."""
    l2: float = 1e-2
    """L2 penalty on the factors and the feature maps: l2 * mean over the batch rows of
    (||P_u + A x_u||^2 + ||Q_i + B y_i||^2)."""
    init_std: float = 0.1
    """Std of the factors and feature maps at initialisation."""
    lr: float = 0.03
    """Adam learning rate."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay (the L2 penalty above is the usual one; this stays 0)."""
    batch_size: int = 100_000
    """Rows per step; larger than the data = full-batch gradient steps."""
    max_epochs: int = 400
    """Most passes over the fit rows (a pass is one step when full batch)."""
    patience: int = 10
    """Early stopping: stop after this many validations without a better validation loss."""
    eval_every: int = 2
    """Validate every this many epochs."""
    seed: int = 0
    """Seed of the initialisation."""
    device: str = "cpu"
    """A torch device string."""

    def __post_init__(self):
        check_choice("loss", self.loss, LOSSES)
        check_int("dim", self.dim, lo=1)
        check_range("l2", self.l2, lo=0)
        check_range("init_std", self.init_std, lo=0)
        check_int("eval_every", self.eval_every, lo=1)
        check_training(self, epochs="max_epochs")


class MatrixFactorization(nn.Module):
    """s_ui = mu + b_u + b_i + w_U . x_u + w_I . y_i + (P_u + A x_u) . (Q_i + B y_i)  (module docstring).

    Args:
        cfg: the config.
        user_features: [U, F_u] one-hot user features (a buffer).
        item_features: [N, F_i] one-hot item features (a buffer).
        mu: the initial global offset (the weighted mean label or rating of the fit rows).
    """

    def __init__(self, cfg: MFConfig, user_features, item_features, mu: float = 0.0):
        super().__init__()
        self.cfg = cfg
        x = torch.as_tensor(np.asarray(user_features, dtype=np.float32))
        y = torch.as_tensor(np.asarray(item_features, dtype=np.float32))
        if x.ndim != 2 or y.ndim != 2:
            raise ValueError(f"user_features and item_features must be 2-d, got {tuple(x.shape)} and {tuple(y.shape)}")
        self.register_buffer("x", x)                                         # [U, F_u]
        self.register_buffer("y", y)                                         # [N, F_i]
        U, N, D = x.shape[0], y.shape[0], cfg.dim
        g = torch.Generator().manual_seed(cfg.seed)
        init = lambda *shape: nn.Parameter(torch.randn(*shape, generator=g) * cfg.init_std)
        self.mu = nn.Parameter(torch.tensor(float(mu)))
        self.b_u, self.b_i = nn.Parameter(torch.zeros(U)), nn.Parameter(torch.zeros(N))
        self.w_u, self.w_i = nn.Parameter(torch.zeros(x.shape[1])), nn.Parameter(torch.zeros(y.shape[1]))
        self.P, self.Q = init(U, D), init(N, D)                              # [U, D], [N, D]
        self.A, self.B = init(x.shape[1], D), init(y.shape[1], D)            # [F_u, D], [F_i, D]

    def factors(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(P_u + A x_u [n, D], Q_i + B y_i [n, D]) of the rows."""
        return self.P[users] + self.x[users] @ self.A, self.Q[items] + self.y[items] @ self.B

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users [n], items [n] -> s [n] (a logit for 'logistic', a rating for 'squared')."""
        pu, qi = self.factors(users, items)
        return (self.mu + self.b_u[users] + self.b_i[items] + self.x[users] @ self.w_u + self.y[items] @ self.w_i
                + (pu * qi).sum(-1))

    def penalty(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """mean over the rows of ||P_u + A x_u||^2 + ||Q_i + B y_i||^2 (times ``cfg.l2`` in the loss)."""
        pu, qi = self.factors(users, items)
        return (pu.pow(2).sum(-1) + qi.pow(2).sum(-1)).mean()

    @torch.no_grad()
    def score(self, users, items) -> np.ndarray:
        """Scores of (user, item) pairs given as integer arrays of one shape (any shape)."""
        u = torch.as_tensor(np.array(users, dtype=np.int64))
        i = torch.as_tensor(np.array(items, dtype=np.int64))
        return self(u.reshape(-1), i.reshape(-1)).reshape(u.shape).numpy().astype(np.float64)


def user_histories(items_by_user: list[np.ndarray], width: int | None = None) -> np.ndarray:
    """[U, H] int64: row u holds the items of ``items_by_user[u]`` (any order), padded with -1 (the
    ranker's padding id); H = ``width`` or the longest list."""
    H = max([len(x) for x in items_by_user] + [1]) if width is None else width
    out = np.full((len(items_by_user), H), -1, dtype=np.int64)
    for u, its in enumerate(items_by_user):
        if len(its) > H:
            raise ValueError(f"user {u} has {len(its)} history items, more than width={H}")
        out[u, :len(its)] = its
    return out


def row_histories(hist: np.ndarray, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """[n, H]: the history of each row's user with the row's own item masked (-1), so a rating is
    never scored with itself in the history (it would see its own label when the history holds
    the liked items, and a test item is never in it)."""
    h = hist[users].copy()                                                   # [n, H]
    h[h == np.asarray(items)[:, None]] = -1
    return h


@torch.no_grad()
def ranker_scores(ranker, hist: np.ndarray, users, items, batch_size: int = 2048) -> np.ndarray:
    """The ranker's logits of (user, item) pairs (integer arrays of one shape), each scored with
    its user's history ``hist`` [U, H] less the item itself (:func:`row_histories`)."""
    u = np.asarray(users, dtype=np.int64).reshape(-1)
    i = np.asarray(items, dtype=np.int64).reshape(-1)
    h = row_histories(hist, u, i)
    s = ranker.score(h, i[:, None], batch_size=batch_size)[:, 0]
    return s.astype(np.float64).reshape(np.shape(users))
