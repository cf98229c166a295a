"""Training the Coat rewards on the self-selected ratings only: naive or propensity-weighted (IPS).

Three reward kinds (:data:`KINDS`): ``ranker``, the project's ranker as a click model of "positive"
over the user's other self-selected items as an unordered history (:mod:`.coat_models`); ``lmf``,
logistic matrix factorisation with user and item features (the same click model without the
ranker's history); ``mf``, the same factorisation as a rating model (squared error). Each is fit
with one of three weightings (:data:`WEIGHTINGS`) of the loss over the fit rows R::

    L = sum_{(u,i) in R} w_ui l(s_ui, y_ui) / sum_{(u,i) in R} w_ui   (+ the model's L2 penalty)

* ``naive``: w_ui = 1, every self-selected rating counts the same;
* ``ips``: w_ui = 1 / p_ui, p_ui the dataset's propensity of the rating being observed
  (``propensities.ascii``): inverse propensity scoring, an unbiased estimate of the loss over all
  (user, item) pairs when p is right (Schnabel et al., 2016), self-normalised as above;
* ``ips_pop``: w_ui = 1 / p_i with p_i = c_i / U, the item's share of users who rated it among the
  self-selected ratings (c_i its exposure): a propensity estimated from the training data alone.

Early stopping (and the L2 choice of the caller's model selection) reads the same weighted loss on a
validation split of the self-selected ratings (:func:`split_ratings`); the randomly assigned
ratings are never used here. With ``max_weight`` > 0 the normalised weights are clipped there.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..common.checks import check_choice, check_int, check_range
from ..model.early_stopping import EarlyStopping
from ..common.runtime import seed_everything, torch_threads
from .coat_models import MatrixFactorization, MFConfig, ranker_scores, row_histories, user_histories
from .ranker import Ranker, RankerConfig

KINDS = ("ranker", "lmf", "mf")
WEIGHTINGS = ("naive", "ips", "ips_pop")


def _default_ranker() -> RankerConfig:
    return RankerConfig(embed_dim=16, attention_hidden=16, mlp_hidden=(32,), dropout=0.1, max_history=24, lr=3e-3,
                        weight_decay=1e-4, batch_size=256, group_size=1, max_epochs=40, patience=4, device="cpu")


@dataclass
class CoatRewardConfig:
    """One Coat reward: its kind, its weighting and its model's config."""

    kind: str = "ranker"
    """'ranker' (the project's ranker, click model of "positive"), 'lmf' (logistic MF with features)
    or 'mf' (rating MF with features, squared error)."""
    weighting: str = "naive"
    """'naive' (w = 1), 'ips' (w = 1 / the dataset's propensity) or 'ips_pop' (w = 1 / (c_i / U),
    the item's rating popularity among the self-selected ratings)."""
    history: str = "liked"
    """The ranker's history of a user: 'liked' (the user's other positive fit ratings) or 'rated'
    (all the user's other fit ratings)."""
    max_weight: float = 0.0
    """Clip the self-normalised weights at this value (0 = no clipping)."""
    ranker: RankerConfig = field(default_factory=_default_ranker)
    """The ranker's config (kind 'ranker'); max_history must cover a user's ratings."""
    mf: MFConfig = field(default_factory=MFConfig)
    """The factorisation's config (kinds 'lmf' and 'mf'; its loss is set by the kind)."""

    def __post_init__(self):
        check_choice("kind", self.kind, KINDS)
        check_choice("weighting", self.weighting, WEIGHTINGS)
        check_choice("history", self.history, ("liked", "rated"))
        check_range("max_weight", self.max_weight, lo=0)
        loss = {"lmf": "logistic", "mf": "squared"}.get(self.kind)
        if loss is not None and self.mf.loss != loss:
            self.mf = replace(self.mf, loss=loss)

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.weighting}"


def split_ratings(train: np.ndarray, valid_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit [U, N] bool, valid [U, N] bool): per user, round(valid_share * n_u) of the user's
    self-selected ratings (at least 1 when valid_share > 0, never all) drawn with ``seed`` go to
    validation, the rest is fit on."""
    check_range("valid_share", valid_share, 0, 1, hi_open=True)
    check_int("seed", seed, lo=0)
    rated = train > 0
    rng = np.random.default_rng(seed)
    valid = np.zeros_like(rated)
    for u in range(len(train)):
        its = np.flatnonzero(rated[u])
        k = min(len(its) - 1, max(1 if valid_share > 0 else 0, int(round(valid_share * len(its)))))
        valid[u, rng.choice(its, k, replace=False)] = True
    return rated & ~valid, valid


def rating_weights(data, weighting: str) -> np.ndarray:
    """[U, N] unnormalised weights w_ui of the weighting (module docstring)."""
    check_choice("weighting", weighting, WEIGHTINGS)
    if weighting == "naive":
        return np.ones(data.train.shape)
    if weighting == "ips":
        return 1.0 / data.propensity
    p = np.maximum(data.exposure(), 1) / data.n_users                        # [N] estimated P(observed)
    return np.broadcast_to(1.0 / p, data.train.shape).copy()


def _normalised(w: np.ndarray, max_weight: float) -> np.ndarray:
    w = w / w.mean()
    return np.minimum(w, max_weight) if max_weight > 0 else w


@dataclass
class CoatReward:
    """A fitted Coat reward: ``score(users, items)`` gives its score (logit, or predicted rating)
    of (user, item) pairs of any shape."""

    cfg: CoatRewardConfig
    model: object
    hist: np.ndarray | None
    history: pd.DataFrame
    seconds: float

    def score(self, users, items) -> np.ndarray:
        if self.cfg.kind == "ranker":
            return ranker_scores(self.model, self.hist, users, items)
        return self.model.score(users, items)


def fit_reward(data, cfg: CoatRewardConfig, fit: np.ndarray, valid: np.ndarray, seed: int,
               resample: np.ndarray | None = None) -> CoatReward:
    """Fit one reward on the ``fit`` ratings ([U, N] bool), early-stopping on ``valid``; ``seed``
    seeds the model; ``resample``: optional row indices into the fit rows (in ``np.nonzero(fit)``
    order, repeats allowed: a bootstrap member). One torch thread."""
    check_int("seed", seed, lo=0)
    if fit.shape != data.train.shape or valid.shape != data.train.shape:
        raise ValueError(f"fit and valid must be [U, N] = {data.train.shape}, got {fit.shape} and {valid.shape}")
    t0 = time.perf_counter()
    w_all = rating_weights(data, cfg.weighting)
    fu, fi = np.nonzero(fit)
    if resample is not None:
        fu, fi = fu[resample], fi[resample]
    vu, vi = np.nonzero(valid)
    target = data.positive(data.train).astype(np.float64) if cfg.kind != "mf" else data.train.astype(np.float64)
    rows = (fu, fi, target[fu, fi], _normalised(w_all[fu, fi], cfg.max_weight))
    vrows = (vu, vi, target[vu, vi], _normalised(w_all[vu, vi], cfg.max_weight))
    with torch_threads(1):
        seed_everything(seed)
        if cfg.kind == "ranker":
            model, hist, records = _fit_ranker(data, cfg, rows, vrows, seed)
        else:
            model, records = _fit_mf(data, replace(cfg.mf, seed=seed), rows, vrows)
            hist = None
    return CoatReward(cfg, model, hist, pd.DataFrame(records), time.perf_counter() - t0)


def _weighted_loss(kind: str, s: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    el = (s - y).pow(2) if kind == "squared" else F.binary_cross_entropy_with_logits(s, y, reduction="none")
    return (w * el).sum() / w.sum()


def _tensors(rows):
    u, i, y, w = rows
    return (torch.as_tensor(u, dtype=torch.long), torch.as_tensor(i, dtype=torch.long),
            torch.as_tensor(y, dtype=torch.float32), torch.as_tensor(w, dtype=torch.float32))


def _fit_mf(data, mcfg: MFConfig, rows, vrows):
    u, i, y, w = _tensors(rows)
    vu, vi, vy, vw = _tensors(vrows)
    mu = float((w * y).sum() / w.sum())
    if mcfg.loss == "logistic":
        mu = float(np.log(np.clip(mu, 1e-4, 1 - 1e-4) / (1 - np.clip(mu, 1e-4, 1 - 1e-4))))
    model = MatrixFactorization(mcfg, data.user_features, data.item_features, mu)
    opt = torch.optim.AdamW(model.parameters(), lr=mcfg.lr, weight_decay=mcfg.weight_decay)
    gen = torch.Generator().manual_seed(mcfg.seed)
    stopper, records = EarlyStopping(mcfg.patience), []
    has_valid = len(vu) > 0
    for epoch in range(mcfg.max_epochs):
        model.train()
        perm = torch.randperm(len(u), generator=gen)
        for s in range(0, len(u), mcfg.batch_size):
            b = perm[s:s + mcfg.batch_size]
            loss = _weighted_loss(mcfg.loss, model(u[b], i[b]), y[b], w[b]) + mcfg.l2 * model.penalty(u[b], i[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if (epoch + 1) % mcfg.eval_every and epoch + 1 < mcfg.max_epochs:
            continue
        with torch.no_grad():
            v = float(_weighted_loss(mcfg.loss, model(vu, vi), vy, vw)) if has_valid else float("nan")
        improved = stopper.update(model, -v if has_valid else None)
        records.append({"epoch": epoch + 1, "train_loss": loss.item(), "valid_loss": v, "best": improved})
        if stopper.stop:
            break
    stopper.finish(model, records)
    return model, records


def _fit_ranker(data, cfg: CoatRewardConfig, rows, vrows, seed: int):
    rcfg = replace(cfg.ranker, seed=seed)
    u, i, y, w = rows
    keep = y > 0 if cfg.history == "liked" and cfg.kind == "ranker" else np.ones(len(u), bool)
    lists = [np.unique(i[keep & (u == k)]) for k in range(data.n_users)]
    hist = user_histories(lists, width=rcfg.max_history)
    h = torch.as_tensor(row_histories(hist, u, i))                           # [R, H] own item masked
    it, yt, wt = torch.as_tensor(i)[:, None], torch.as_tensor(y, dtype=torch.float32), torch.as_tensor(w, dtype=torch.float32)
    vu, vi, vy, vw = vrows
    model = Ranker(rcfg, data.item_features)
    opt = torch.optim.AdamW(model.parameters(), lr=rcfg.lr, weight_decay=rcfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    stopper, records = EarlyStopping(rcfg.patience), []
    has_valid = len(vu) > 0
    vyt, vwt = torch.as_tensor(vy, dtype=torch.float32), torch.as_tensor(vw, dtype=torch.float32)
    for epoch in range(rcfg.max_epochs):
        model.train()
        perm = torch.randperm(len(u), generator=gen)
        total = 0.0
        for s in range(0, len(u), rcfg.batch_size):
            b = perm[s:s + rcfg.batch_size]
            loss = _weighted_loss("logistic", model(h[b], it[b])[:, 0], yt[b], wt[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        v = float("nan")
        if has_valid:
            sv = torch.as_tensor(ranker_scores(model, hist, vu, vi), dtype=torch.float32)
            v = float(_weighted_loss("logistic", sv, vyt, vwt))
        improved = stopper.update(model, -v if has_valid else None)
        records.append({"epoch": epoch + 1, "train_loss": total / len(u), "valid_loss": v, "best": improved})
        if stopper.stop:
            break
    stopper.finish(model, records)
    return model, hist, records


def with_overrides(cfg: CoatRewardConfig, **overrides) -> CoatRewardConfig:
    """``cfg`` with fields replaced: a name of :class:`CoatRewardConfig` (``history``,
    ``max_weight`` ...), else of its ranker's or factorisation's config, by kind (``dim``, ``l2``,
    ``embed_dim`` ...)."""
    top = {k: v for k, v in overrides.items() if k in CoatRewardConfig.__dataclass_fields__}
    inner = {k: v for k, v in overrides.items() if k not in top}
    sub = "ranker" if cfg.kind == "ranker" else "mf"
    unknown = [k for k in inner if k not in type(getattr(cfg, sub)).__dataclass_fields__]
    if unknown:
        raise ValueError(f"overrides: {unknown} are fields of neither CoatRewardConfig nor its {sub} config")
    return replace(cfg, **top, **({sub: replace(getattr(cfg, sub), **inner)} if inner else {}))


def select_config(data, cfg: CoatRewardConfig, grid: list[dict], fit: np.ndarray, valid: np.ndarray,
                  seed: int) -> tuple[CoatRewardConfig, pd.DataFrame]:
    """Model selection on the validation split of the self-selected ratings: fit ``cfg`` with each
    override of ``grid`` (:func:`with_overrides`) and keep the lowest validation loss (the
    weighting's own loss, as in early stopping). Returns (the chosen config, one row per candidate)."""
    if not grid:
        return cfg, pd.DataFrame()
    rows, best = [], None
    for g in grid:
        c = with_overrides(cfg, **g)
        r = fit_reward(data, c, fit, valid, seed)
        loss = float(r.history.valid_loss.min())
        rows.append({"kind": cfg.kind, "weighting": cfg.weighting, **{k: str(v) for k, v in g.items()},
                     "valid_loss": loss, "epochs": int(r.history.epoch.max())})
        if best is None or loss < best[0]:
            best = (loss, c)
    table = pd.DataFrame(rows)
    table["chosen"] = table.valid_loss == best[0]
    return best[1], table


def fit_ensemble(data, cfg: CoatRewardConfig, fit: np.ndarray, valid: np.ndarray, members: int, seed: int,
                 sample_share: float = 1.0) -> list[CoatReward]:
    """K = ``members`` rewards of ``cfg``, member k fit on a bootstrap resample (with replacement,
    ``sample_share`` of the fit rows) drawn with seed ``seed * 1000 + k`` and seeded the same way:
    where they disagree on how to order a user's items, the self-selected ratings do not pin the
    order down (the ensemble diagnostic u)."""
    check_int("members", members, lo=2)
    check_range("sample_share", sample_share, 0, 1, lo_open=True)
    n = int(fit.sum())
    out = []
    for k in range(members):
        s = seed * 1000 + k
        pick = np.sort(np.random.default_rng(s).integers(0, n, max(1, int(round(sample_share * n)))))
        out.append(fit_reward(data, cfg, fit, valid, s, resample=pick))
    return out
