"""Click sequences with a leave-one-out split, shared by every world (simulated or real).

Sequences are stored ragged: ``seq_items[seq_offsets[u]:seq_offsets[u+1]]`` is user u's
chronological click sequence. For a user with n clicks: the last click is the test target,
the second-to-last the validation target, and every click from the second to the
third-to-last is a training target (each prefix of the training sequence is a sample).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..common.checks import check_choice, check_int

SPLITS = ("train", "valid", "test")
NO_ITEM = -1  # the one "no item" id: history padding, an invalid (hallucinated) tuple, a missing beam


@dataclass
class Examples:
    """A batch of (history, target) samples. history is left-padded with -1, most recent last."""

    users: np.ndarray        # [n] user index
    history: np.ndarray      # [n, H] item ids, -1 = padding
    target: np.ndarray       # [n] ground-truth next item
    click_index: np.ndarray  # [n] index of the target click in the flat sequence arrays

    def __len__(self) -> int:
        return len(self.target)

    @property
    def hist_len(self) -> np.ndarray:
        return (self.history >= 0).sum(1)

    def subset(self, idx) -> "Examples":
        idx = np.asarray(idx)
        return Examples(self.users[idx], self.history[idx], self.target[idx], self.click_index[idx])

    @staticmethod
    def concat(parts: list) -> "Examples":
        """The examples of ``parts`` one after the other (their histories must have one width)."""
        return Examples(*(np.concatenate([getattr(p, f) for p in parts])
                          for f in ("users", "history", "target", "click_index")))


@dataclass
class Interactions:
    """Ragged click sequences over a catalogue of ``n_items`` items."""

    seq_items: np.ndarray    # [total_clicks] int64 item ids, users concatenated
    seq_offsets: np.ndarray  # [n_users + 1] int64
    n_items: int

    def __post_init__(self):
        self.seq_items = np.asarray(self.seq_items, dtype=np.int64)
        self.seq_offsets = np.asarray(self.seq_offsets, dtype=np.int64)
        off = self.seq_offsets
        if off.ndim != 1 or len(off) == 0 or off[0] != 0 or off[-1] != len(self.seq_items):
            raise ValueError("seq_offsets must start at 0 and end at len(seq_items)")
        lens = np.diff(self.seq_offsets)
        if (lens < 3).any():
            u = int(np.flatnonzero(lens < 3)[0])
            raise ValueError(f"every user needs at least 3 clicks for the leave-one-out split; "
                             f"user {u} has history length {int(lens[u])}")
        if len(self.seq_items) and (self.seq_items.min() < 0 or self.seq_items.max() >= self.n_items):
            raise ValueError(f"item ids must be in [0, {self.n_items}), got range "
                             f"[{self.seq_items.min()}, {self.seq_items.max()}]")

    @property
    def n_users(self) -> int:
        return len(self.seq_offsets) - 1

    @property
    def seq_lengths(self) -> np.ndarray:
        return np.diff(self.seq_offsets)

    def sequence(self, user: int) -> np.ndarray:
        return self.seq_items[self.seq_offsets[user]:self.seq_offsets[user + 1]]

    def train_positions(self) -> np.ndarray:
        """Boolean mask over ``seq_items``: the clicks of the training part (all but the last two
        clicks of each user, histories included). Whatever learns from "training data only"
        (popularity, item embeddings) reads exactly these clicks."""
        return self._position_mask("train_all")

    def train_item_counts(self) -> np.ndarray:
        """Clicks per item in the training part (all but the last two clicks of each user)."""
        return np.bincount(self.seq_items[self.train_positions()], minlength=self.n_items)

    def _position_mask(self, kind: str) -> np.ndarray:
        lens = self.seq_lengths
        pos = np.arange(len(self.seq_items)) - np.repeat(self.seq_offsets[:-1], lens)
        n = np.repeat(lens, lens)
        if kind == "train_all":      # every click of the training part (histories included)
            return pos < n - 2
        if kind == "train":          # training targets: 2nd .. (n-2)th click
            return (pos >= 1) & (pos < n - 2)
        if kind == "valid":
            return pos == n - 2
        if kind == "test":
            return pos == n - 1
        raise ValueError(kind)

    def examples(self, split: str, max_history: int) -> Examples:
        """All (history, target) samples of a split, histories truncated to the last max_history items."""
        check_choice("split", split, SPLITS)
        check_int("max_history", max_history, lo=1)
        idx = np.flatnonzero(self._position_mask(split))          # flat indices of targets
        lens = self.seq_lengths
        users = np.repeat(np.arange(self.n_users), lens)[idx]
        start = self.seq_offsets[users]
        # history window [max(start, idx - H), idx), left-padded
        offs = np.arange(-max_history, 0)[None, :] + idx[:, None]   # [n, H]
        valid = offs >= start[:, None]
        history = np.where(valid, self.seq_items[np.clip(offs, 0, None)], NO_ITEM)
        return Examples(users=users, history=history, target=self.seq_items[idx], click_index=idx)

    def train_windows(self, max_len: int) -> np.ndarray:
        """Training sequences cut into windows of at most max_len items, for causal (teacher-forced)
        training where every position predicts the next: [n_windows, max_len] right-aligned, -1 pad.

        Each training target appears exactly once as a predicted position (windows overlap by one
        item so that the first item of a window serves only as history).
        """
        check_int("max_len", max_len, lo=2)
        rows = []
        for u in range(self.n_users):
            s = self.sequence(u)[:-2]                 # training part
            end = len(s)
            while end >= 2:
                begin = max(0, end - max_len)
                w = np.full(max_len, NO_ITEM, dtype=np.int64)
                w[max_len - (end - begin):] = s[begin:end]
                rows.append(w)
                end = begin + 1
        return np.stack(rows) if rows else np.zeros((0, max_len), dtype=np.int64)
