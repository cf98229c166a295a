"""Coat (Schnabel et al., ICML 2016): self-selected and randomly assigned ratings of the same users.

290 users rated coats from a catalogue of 300. ``train.ascii`` holds 24 ratings per user on coats
the user chose (missing not at random: the feedback a deployed recommender learns from);
``test.ascii`` 16 ratings per user on coats drawn uniformly at random (an unbiased sample of the
user's preferences). Both are dense ``users x items`` matrices of integers, 0 = not rated, 1-5
stars. ``propensities.ascii`` holds the dataset's estimated propensity P(O_ui = 1) of every
(user, item) rating being observed in the self-selected part; ``user_item_features/`` one-hot
user features (gender, age, location, fashion interest) and item features (gender, jacket type,
colour, on the front page). The files are never part of the project: :func:`load_coat` reads them
from a folder (a parameter, else ``$ADAGRPO_COAT_DIR``) and checks each file's sha256 first.

Ratings have no order within a user, so there are no sequences and no semantic-ID policy here:
Coat tests a reward learned from biased feedback and the reliability diagnostics against real,
randomised feedback. A rating r counts as *positive* when r >= ``positive_threshold`` (4 stars).

    data = load_coat()                         # $ADAGRPO_COAT_DIR, files checked by sha256
    data.train.shape, data.exposure()          # (290, 300), self-selected ratings per item
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.checks import check_int
from .files import read_text, verify

ENV_VAR = "ADAGRPO_COAT_DIR"
"""The environment variable that names the Coat folder when no folder is passed."""

SHAPE = (290, 300)
"""users x items of the published files."""

FILES = {
    "train.ascii": "a87bd9e7eaf3b89f976df3f25d4aa5d5d871be8a00b58947df9e6e015559bd37",
    "test.ascii": "de6714ab105a5e0be8166be7fd313901b29f9a09c3bea307901457d1d71847e6",
    "propensities.ascii": "d1b11b12465dc6e1df35eeed92dfec5e17a997f920d60777cc44571fe9b054e5",
    "user_item_features/item_features.ascii": "edea8217ec5606779b4d3bf819f7591dc63bcd5194d619e8048c2322d07630b1",
    "user_item_features/user_features.ascii": "d8f9531b601c54a7272602f8b21fa6cb4652cbf122e35d8615ea9645ebbf1b1f",
}
"""Relative path -> sha256 of the published bytes."""


@dataclass
class CoatData:
    """The Coat matrices, checked. Users index rows, items columns everywhere."""

    train: np.ndarray
    """[U, N] int64 self-selected ratings, 0 = not rated, else 1-5."""
    test: np.ndarray
    """[U, N] int64 randomly assigned ratings, 0 = not rated, else 1-5."""
    propensity: np.ndarray
    """[U, N] float64 in (0, 1]: the dataset's estimate of P(the rating is observed in ``train``)."""
    user_features: np.ndarray
    """[U, F_u] float32 one-hot user features."""
    item_features: np.ndarray
    """[N, F_i] float32 one-hot item features."""
    positive_threshold: int = 4
    """A rating r is positive when r >= this."""
    source: str = ""
    """Where the files came from (a folder name, for tables; never an absolute path)."""

    @property
    def n_users(self) -> int:
        return int(self.train.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.train.shape[1])

    def exposure(self) -> np.ndarray:
        """[N] int64: c_i = the number of self-selected (train) ratings of item i, the item's
        exposure in the data a reward is learned from."""
        return (self.train > 0).sum(0).astype(np.int64)

    def positive(self, ratings: np.ndarray) -> np.ndarray:
        """bool, same shape: rating >= ``positive_threshold`` (0 = unrated is never positive)."""
        return ratings >= self.positive_threshold

    def summary(self) -> dict:
        tr, te = self.train > 0, self.test > 0
        c = self.exposure()
        return {"dataset": "coat", "users": self.n_users, "items": self.n_items,
                "train_ratings": int(tr.sum()), "test_ratings": int(te.sum()),
                "train_positive_share": float(self.positive(self.train[tr]).mean()),
                "test_positive_share": float(self.positive(self.test[te]).mean()),
                "train_mean_rating": float(self.train[tr].mean()), "test_mean_rating": float(self.test[te].mean()),
                "test_also_in_train": int((tr & te).sum()),
                "min_exposure": int(c.min()), "median_exposure": float(np.median(c)), "max_exposure": int(c.max())}


def resolve_dir(data_dir=None) -> Path:
    """``data_dir``, else ``$ADAGRPO_COAT_DIR``; a clear error when neither names a folder."""
    d = data_dir if data_dir is not None else os.environ.get(ENV_VAR) or None
    if d is None:
        raise FileNotFoundError(f"data_dir: no Coat folder given; pass data_dir=... or set {ENV_VAR} "
                                "(the folder holding train.ascii, test.ascii, propensities.ascii, user_item_features/)")
    if not Path(d).is_dir():
        raise FileNotFoundError(f"data_dir: the Coat folder {d} does not exist")
    return Path(d)


def read_matrix(path: Path, name: str, shape: tuple | None = None) -> np.ndarray:
    """A whitespace-separated numeric matrix (one row per line) as float64, checked: every line
    has the same number of values, every value is a finite number and, when given, the shape is
    ``shape``; each failure raises a ValueError naming the file and the offending value."""
    rows = [line.split() for line in read_text(path).splitlines()]
    while rows and not rows[-1]:
        rows.pop()
    if not rows:
        raise ValueError(f"{name}: empty file")
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        ln = next(i for i, r in enumerate(rows, 1) if len(r) != len(rows[0]))
        raise ValueError(f"{name} line {ln}: {len(rows[ln - 1])} values, line 1 has {len(rows[0])} "
                         "(a matrix needs the same number of values on every line)")
    try:
        m = np.asarray(rows, dtype=np.float64)
    except ValueError:
        ln, tok = next((i, t) for i, r in enumerate(rows, 1) for t in r if not _is_number(t))
        raise ValueError(f"{name} line {ln}: value {tok!r} is not a number") from None
    if not np.isfinite(m).all():
        ln, col = (int(x) + 1 for x in np.argwhere(~np.isfinite(m))[0])
        raise ValueError(f"{name} line {ln}, column {col}: value {m[ln - 1, col - 1]} is not finite")
    if shape is not None and m.shape != tuple(shape):
        raise ValueError(f"{name}: shape {m.shape}, expected {tuple(shape)} (users x items)")
    return m


def _is_number(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def _ratings(m: np.ndarray, name: str) -> np.ndarray:
    """Ratings must be the integers 0 (not rated) to 5."""
    bad = (m != np.round(m)) | (m < 0) | (m > 5)
    if bad.any():
        ln, col = (int(x) + 1 for x in np.argwhere(bad)[0])
        raise ValueError(f"{name} line {ln}, column {col}: rating {m[ln - 1, col - 1]:g} is outside 0-5 "
                         "(0 = not rated, 1-5 stars, integers)")
    return m.astype(np.int64)


def load_coat(data_dir=None, positive_threshold: int = 4, verify_sha256: bool = True,
              shape: tuple | None | str = "auto") -> CoatData:
    """Read and check the Coat folder (``data_dir``, else ``$ADAGRPO_COAT_DIR``).

    Every file of :data:`FILES` must exist; with ``verify_sha256`` its sha256 must be the published
    one (a ValueError names the file, the expected and the found sum). Ratings must be integers
    0-5, the propensities in (0, 1], the features finite; every matrix must have ``shape`` (users x
    items; None: the shape of ``train.ascii``; "auto": the published :data:`SHAPE` when
    ``verify_sha256``, else None, as for the small matrices the tests build) and the feature files
    one row per user / item. Each user needs at least two self-selected ratings and one random
    rating.
    """
    check_int("positive_threshold", positive_threshold, lo=1, hi=5)
    if not isinstance(verify_sha256, bool):
        raise ValueError(f"verify_sha256 must be True or False, got verify_sha256={verify_sha256!r}")
    if isinstance(shape, str):
        if shape != "auto":
            raise ValueError(f"shape must be (users, items), None or 'auto', got shape={shape!r}")
        shape = SHAPE if verify_sha256 else None
    root = resolve_dir(data_dir)
    paths = {}
    for rel, sha in FILES.items():
        p = root / rel
        if not p.is_file():
            raise FileNotFoundError(f"{rel}: not found in the Coat folder {root.name}/ (expected {', '.join(FILES)})")
        paths[rel] = verify(p, sha if verify_sha256 else None)
    train = _ratings(read_matrix(paths["train.ascii"], "train.ascii", shape), "train.ascii")
    shape = train.shape
    test = _ratings(read_matrix(paths["test.ascii"], "test.ascii", shape), "test.ascii")
    prop = read_matrix(paths["propensities.ascii"], "propensities.ascii", shape)
    bad = (prop <= 0) | (prop > 1)
    if bad.any():
        ln, col = (int(x) + 1 for x in np.argwhere(bad)[0])
        raise ValueError(f"propensities.ascii line {ln}, column {col}: propensity {prop[ln - 1, col - 1]:g} "
                         "is outside (0, 1]")
    uf = read_matrix(paths["user_item_features/user_features.ascii"], "user_features.ascii")
    itf = read_matrix(paths["user_item_features/item_features.ascii"], "item_features.ascii")
    if uf.shape[0] != shape[0]:
        raise ValueError(f"user_features.ascii: {uf.shape[0]} rows, expected one per user ({shape[0]})")
    if itf.shape[0] != shape[1]:
        raise ValueError(f"item_features.ascii: {itf.shape[0]} rows, expected one per item ({shape[1]})")
    n_train, n_test = (train > 0).sum(1), (test > 0).sum(1)
    if n_train.min() < 2:
        u = int(np.argmin(n_train))
        raise ValueError(f"train.ascii line {u + 1}: user {u} has {int(n_train[u])} ratings; each user needs at least 2")
    if n_test.min() < 1:
        u = int(np.argmin(n_test))
        raise ValueError(f"test.ascii line {u + 1}: user {u} has no rating; each user needs at least 1")
    return CoatData(train, test, prop, uf.astype(np.float32), itf.astype(np.float32), positive_threshold, root.name)
