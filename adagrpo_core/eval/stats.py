"""Every statistic of the package, from scipy and statsmodels: the t-interval over seeds, the
seed-level comparison (per-seed values, share of seeds below 0, the exact sign-flip test over seeds
and the hierarchical bootstrap over seeds, then users), the percentile bootstrap over users (one
sample and paired; it holds the seeds fixed), the exact McNemar test, the Holm correction, the
simple least-squares line, one-sided bounds and equivalence, and the variance components of a
crossed (reward model x policy seed) design.

Seeds are the unit of replication: two runs of one method that differ only in their seed can land
far apart (on the simulated world's harmful regime they fall into two groups), so a comparison's
interval and p-value are over seeds; a bootstrap over users alone holds the seeds fixed and says so
in its name."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats
from scipy.stats import rankdata
from statsmodels.stats.multitest import multipletests


def mean_ci(x, level: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its t-interval: t_{(1+level)/2, n-1} * s / sqrt(n) (NaN for n < 2)."""
    x = np.asarray(x, dtype=float)
    m = float(x.mean())
    if len(x) < 2:
        return m, float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return m, float(half)


def one_sided_bounds(mean: float, half_width: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """(lower, upper) one-sided ``level`` bounds of a mean over n replicates, from the half-width of
    its two-sided 95% t-interval: se = half_width / t_{0.975, n-1}, bound = mean -/+ t_{level, n-1} se.
    (lower > 0 answers "is it above 0?" at 1 - level; so does upper < 0 for "below?")."""
    if n < 2 or not np.isfinite(half_width):
        return float("nan"), float("nan")
    se = half_width / stats.t.ppf(0.975, n - 1)
    q = stats.t.ppf(level, n - 1) * se
    return float(mean - q), float(mean + q)


def equivalent(mean: float, half_width: float, n: int, delta: float, alpha: float = 0.05) -> bool:
    """Two one-sided tests at ``alpha``: both one-sided 1 - alpha bounds inside (-delta, +delta)."""
    lo, hi = one_sided_bounds(mean, half_width, n, 1 - alpha)
    return bool(-delta < lo and hi < delta)


def detectable_effect(half_width: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true difference that a one-sided t-test at ``alpha`` over n replicates finds
    with probability ``power``: (t_{1-alpha, n-1} + t_{power, n-1}) se, se from the two-sided 95%
    half-width. What a tie can be said to rule out."""
    if n < 2 or not np.isfinite(half_width):
        return float("nan")
    se = half_width / stats.t.ppf(0.975, n - 1)
    return float((stats.t.ppf(1 - alpha, n - 1) + stats.t.ppf(power, n - 1)) * se)


def bootstrap_ci(x, n_boot: int, alpha: float, rng: np.random.Generator) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of x: the alpha/2 and 1 - alpha/2 quantiles of the means
    of n_boot resamples with replacement (vectorised over resamples)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return float("nan"), float("nan")
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def paired_bootstrap_ci(a, b, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """Mean of the paired differences a_i - b_i (the same users) and its percentile bootstrap CI
    over users. Pooled over seeds it holds the seeds fixed: it leaves out the runs' own randomness,
    so name its columns as such (``*_fixedseeds_boot_*``)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same shape, got {a.shape} and {b.shape}")
    diff = a - b
    lo, hi = bootstrap_ci(diff, n_boot, alpha, np.random.default_rng(seed))
    return float(diff.mean()) if len(diff) else float("nan"), lo, hi


def sign_flip_p(x, max_exact: int = 16, n_perm: int = 100_000, seed: int = 0) -> float:
    """Two-sided paired sign-flip permutation p-value of mean(x) = 0 over seeds: the share of the
    2^n sign patterns s in {-1, +1}^n with |mean(s * x)| >= |mean(x)| (exact for n <= ``max_exact``,
    else ``n_perm`` random patterns, the observed one counted). The smallest possible value is
    2 / 2^n: three seeds can never give p < 0.25, ten never below 0.002. NaN for n < 1."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n == 0:
        return float("nan")
    if n <= max_exact:
        signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)       # (2^n, n) all patterns
        stat = np.abs(signs @ x) / n
        return float(np.mean(stat >= abs(x.mean()) - 1e-12))
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(n_perm, n))
    stat = np.abs(signs @ x) / n
    return float((1 + np.sum(stat >= abs(x.mean()) - 1e-12)) / (n_perm + 1))


def crossed_bootstrap_ci(per_seed_users, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile CI of the mean over seeds of the per-seed mean when every seed is tested on the
    same users (users crossed with seeds): each draw resamples the S seeds and, once for all of
    them, the n users, both with replacement; the statistic is the mean of x[s, u] over the drawn
    seeds and users. With weights w (seed counts / S) and v (user counts / n) it is w^T X v,
    vectorised over draws. ``per_seed_users``: one array per seed, the same users in the same order."""
    arrays = [np.asarray(a, dtype=np.float64).reshape(-1) for a in per_seed_users]
    if not arrays or len({len(a) for a in arrays}) != 1 or len(arrays[0]) == 0:
        raise ValueError(f"crossed users need one equal-length array of the same users per seed, got lengths "
                         f"{[len(a) for a in arrays]}")
    X = np.stack(arrays)
    rng = np.random.default_rng(seed)
    S, n = X.shape
    w = np.stack([np.bincount(r, minlength=S) for r in rng.integers(0, S, size=(n_boot, S))]) / S   # (B, S)
    v = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot) / n                                    # (B, n)
    stat = ((w @ X) * v).sum(1)
    return float(np.quantile(stat, alpha / 2)), float(np.quantile(stat, 1 - alpha / 2))


def hierarchical_bootstrap_ci(per_seed_users, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0,
                              chunk: int = 256) -> tuple[float, float]:
    """Percentile CI of the mean over seeds of the per-seed mean, by a two-level bootstrap: draw S
    seeds with replacement from the S seeds, then, for every drawn seed independently, its users
    with replacement; the statistic is the mean over the drawn seeds of their resampled user means.
    ``per_seed_users``: one 1-d array per seed (the per-user paired differences of that seed). It
    carries both the seed-to-seed and the user-to-user variation; with one seed it is the user
    bootstrap. (NaN, NaN) without seeds or with an empty seed."""
    arrays = [np.asarray(a, dtype=np.float64).reshape(-1) for a in per_seed_users]
    if not arrays or any(len(a) == 0 for a in arrays):
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    n_seeds = len(arrays)
    picks = rng.integers(0, n_seeds, size=(n_boot, n_seeds))         # (B, S) the drawn seeds
    draws = np.empty((n_boot, n_seeds))
    for s, a in enumerate(arrays):                                   # a fresh user resample per draw
        where = np.flatnonzero(picks.reshape(-1) == s)
        means = np.empty(len(where))
        for i in range(0, len(where), chunk):
            k = min(chunk, len(where) - i)
            means[i:i + k] = a[rng.integers(0, len(a), size=(k, len(a)))].mean(1)
        draws.reshape(-1)[where] = means
    stat = draws.mean(1)
    return float(np.quantile(stat, alpha / 2)), float(np.quantile(stat, 1 - alpha / 2))


def seed_comparison(per_seed, per_user=None, level: float = 0.95, n_boot: int = 2000, seed: int = 0,
                    crossed: bool = False) -> dict:
    """A paired comparison (method minus reference) over seeds. ``per_seed``: {seed: difference}
    (the run-level metric of the method minus that of the reference trained with the same seed);
    ``per_user``: optionally {seed: per-user differences} for the two-level bootstrap, over seeds
    and users: users nested in seeds (each seed its own draw of users,
    :func:`hierarchical_bootstrap_ci`) or, with ``crossed``, the same users in every seed
    (:func:`crossed_bootstrap_ci`). Returns
    ``n_seeds``, ``mean`` and ``ci`` (its t-interval half-width over seeds), ``share_below_0`` (of
    the seeds), ``p_seed`` (:func:`sign_flip_p`), ``hboot_low`` / ``hboot_high``
    (:func:`hierarchical_bootstrap_ci`; NaN without ``per_user``) and ``per_seed``: the values as
    'seed:value' pairs joined by ';' (sorted by seed), so a table cell keeps them."""
    keys = sorted(per_seed)
    x = np.array([per_seed[k] for k in keys], dtype=np.float64)
    if len(x) == 0:
        return {"n_seeds": 0, "mean": np.nan, "ci": np.nan, "share_below_0": np.nan, "p_seed": np.nan,
                "hboot_low": np.nan, "hboot_high": np.nan, "per_seed": ""}
    m, half = mean_ci(x, level)
    lo = hi = np.nan
    if per_user is not None:
        boot = crossed_bootstrap_ci if crossed else hierarchical_bootstrap_ci
        lo, hi = boot([per_user[k] for k in keys], n_boot, 1 - level, seed)
    return {"n_seeds": len(x), "mean": m, "ci": half, "share_below_0": float(np.mean(x < 0)), "p_seed": sign_flip_p(x),
            "hboot_low": lo, "hboot_high": hi, "per_seed": ";".join(f"{k}:{v:.6g}" for k, v in zip(keys, x))}


def parse_per_seed(cell) -> dict:
    """{seed: value} from a ``per_seed`` cell of :func:`seed_comparison` ('0:-0.04;1:0.003')."""
    if not isinstance(cell, str) or not cell:
        return {}
    return {int(k): float(v) for k, v in (pair.split(":") for pair in cell.split(";"))}


def user_bootstrap_ci(stat, n_users: int, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
                      vectorised: bool = False) -> tuple[float, float]:
    """Percentile bootstrap over users that holds the training seeds fixed: ``stat(idx)`` (a float
    computed on the users ``idx``, e.g. a mean over seeds of a per-seed statistic) for ``n_boot``
    draws of ``n_users`` users with replacement; the alpha/2 and 1 - alpha/2 quantiles of the
    finite draws ((NaN, NaN) when none is finite). ``vectorised``: ``stat`` takes every draw at
    once (idx [n_boot, n_users]) and returns [n_boot] values."""
    if int(n_users) < 1 or int(n_boot) < 1 or not 0 < alpha < 1:
        raise ValueError(f"user_bootstrap_ci needs n_users >= 1, n_boot >= 1 and 0 < alpha < 1, got "
                         f"n_users={n_users}, n_boot={n_boot}, alpha={alpha}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_users, (n_boot, n_users))
    draws = np.asarray(stat(idx) if vectorised else [stat(i) for i in idx], dtype=np.float64)
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        return float("nan"), float("nan")
    return float(np.quantile(draws, alpha / 2)), float(np.quantile(draws, 1 - alpha / 2))


def auc_rows(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC of each row of (labels [B, n] bool, scores [B, n]) by the rank formula of
    ``eval.metrics.auc`` (ties averaged); NaN for a row with one class only."""
    y = np.asarray(labels, dtype=np.float64)
    r = rankdata(np.asarray(scores, dtype=np.float64), axis=1)
    npos = y.sum(1)
    nneg = y.shape[1] - npos
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((npos > 0) & (nneg > 0), ((r * y).sum(1) - npos * (npos + 1) / 2) / (npos * nneg), np.nan)


def variance_components(values, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Variance components of a crossed two-way design without replication, ``values[r, c]`` (rows:
    reward models, columns: policy seeds), by the ANOVA (method of moments) estimator of the
    random-effects model y_rc = mu + a_r + b_c + e_rc:

        MS_r = C * var(row means), MS_c = R * var(column means), MS_e = residual mean square
        sigma2_row = (MS_r - MS_e) / C,  sigma2_col = (MS_c - MS_e) / R,  sigma2_resid = MS_e

    (negative estimates are set to 0: the boundary). The residual holds the row x column
    interaction, which one value per cell cannot separate from noise. Intervals: percentile
    bootstrap over the rows (the reward models, each resample recomputes the estimator), the
    columns kept: with two policy seeds a resample of columns is degenerate half the time.
    Returns {name: (estimate, low, high)} for "row", "col", "resid", "total", and "share_row",
    the share of the total variance of one cell that is between rows."""
    y = np.asarray(values, dtype=np.float64)
    if y.ndim != 2 or min(y.shape) < 2 or not np.isfinite(y).all():
        raise ValueError(f"values must be a finite (rows x columns) array with at least 2 of each, got shape {y.shape}")

    def estimate(v):
        R, C = v.shape
        rm, cm, g = v.mean(1), v.mean(0), v.mean()
        ms_r = C * ((rm - g) ** 2).sum() / (R - 1)
        ms_c = R * ((cm - g) ** 2).sum() / (C - 1)
        resid = v - rm[:, None] - cm[None, :] + g
        ms_e = (resid ** 2).sum() / ((R - 1) * (C - 1))
        row, col = max((ms_r - ms_e) / C, 0.0), max((ms_c - ms_e) / R, 0.0)
        total = row + col + ms_e
        return np.array([row, col, ms_e, total, row / total if total > 0 else np.nan])

    point = estimate(y)
    rng = np.random.default_rng(seed)
    R, C = y.shape
    boots = np.array([estimate(y[rng.integers(0, R, R)]) for _ in range(n_boot)])
    a = (1 - level) / 2
    lo, hi = np.nanquantile(boots, a, axis=0), np.nanquantile(boots, 1 - a, axis=0)
    names = ("row", "col", "resid", "total", "share_row")
    return {n: (float(point[i]), float(lo[i]), float(hi[i])) for i, n in enumerate(names)}


def mixed_model_row_variance(values) -> tuple[float, float, bool]:
    """(between-row variance, residual variance, converged) of ``values[r, c]`` by statsmodels'
    linear mixed model (REML) with a random intercept per row and a fixed effect per column: the
    check of :func:`variance_components`' row component. On the boundary (the row variance
    estimated at 0) the ANOVA estimator is the one to report."""
    y = np.asarray(values, dtype=np.float64)
    df = pd.DataFrame([(r, c, y[r, c]) for r in range(y.shape[0]) for c in range(y.shape[1])],
                      columns=["row", "col", "y"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = smf.mixedlm("y ~ C(col)", df, groups=df["row"]).fit(reml=True)
    return float(fit.cov_re.iloc[0, 0]), float(fit.scale), bool(fit.converged)


def replicates_needed(sigma2_total: float, delta: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Replicates (each a new reward model and policy seed) for a one-sided test at ``alpha`` to find
    a true difference ``delta`` with probability ``power``, when one replicate's value varies by
    ``sigma2_total``: the smallest n >= 2 with (t_{1-alpha, n-1} + t_{power, n-1}) sqrt(sigma2/n) <= delta."""
    if not delta > 0:
        raise ValueError(f"delta must be > 0, got delta={delta!r}")
    for n in range(2, 10_000):
        if (stats.t.ppf(1 - alpha, n - 1) + stats.t.ppf(power, n - 1)) * np.sqrt(sigma2_total / n) <= delta:
            return n
    return 10_000


def mcnemar_p(a_only: int, b_only: int) -> float:
    """Exact (two-sided binomial) McNemar p-value from the two discordant counts:
    P(|X - n/2| >= |b_only - n/2|), X ~ Binomial(n = a_only + b_only, 1/2)."""
    n = a_only + b_only
    return float(stats.binomtest(b_only, n, 0.5).pvalue) if n else 1.0


def mcnemar_exact(hit_a, hit_b) -> tuple[int, int, float]:
    """Exact McNemar test on paired hits: (a hit & b miss, a miss & b hit, two-sided p)."""
    a, b = np.asarray(hit_a, bool), np.asarray(hit_b, bool)
    n01, n10 = int((a & ~b).sum()), int((~a & b).sum())
    return n01, n10, mcnemar_p(n01, n10)


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p-values (family-wise error control; statsmodels' multipletests). NaN entries
    stay NaN and do not count in the family."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def holm_columns(table, columns, mask=None):
    """``table`` (in place, and returned) with a ``<column>_holm`` right after each p-value column of
    ``columns`` present: Holm over the rows in ``mask`` (all by default; one family per column;
    NaN p-values stay NaN and do not count)."""
    mask = np.ones(len(table), bool) if mask is None else np.asarray(mask, bool)
    for col in columns:
        if col not in table:
            continue
        out = f"{col}_holm"
        if out not in table:
            table.insert(table.columns.get_loc(col) + 1, out, np.nan)
        table.loc[mask, out] = holm(table.loc[mask, col].to_numpy(dtype=float))
    return table


def simple_ols(y, x) -> dict:
    """Least-squares line y = intercept + slope x over paired samples (any shape, flattened):
    slope = cov(x, y) / var(x), intercept = mean y - slope mean x, and the residual standard
    deviation sqrt(sum r^2 / (n - 2)) (scipy.stats.linregress; NaN slope when x is constant)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.shape != y.shape or len(x) < 3:
        raise ValueError(f"simple_ols needs at least 3 paired samples, got x of {x.shape} and y of {y.shape}")
    if np.ptp(x) == 0:
        return {"slope": float("nan"), "intercept": float(y.mean()), "resid_std": float(y.std(ddof=1)), "n": len(x)}
    fit = stats.linregress(x, y)
    resid = y - (fit.intercept + fit.slope * x)
    return {"slope": float(fit.slope), "intercept": float(fit.intercept),
            "resid_std": float(np.sqrt((resid ** 2).sum() / (len(x) - 2))), "n": len(x)}


def kendall_tau(a, b) -> float:
    """Kendall's tau-b between two scorings of the same items (NaN for fewer than 2 items)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"kendall_tau needs two scorings of the same items, got shapes {a.shape} and {b.shape}")
    return float(stats.kendalltau(a, b).statistic) if len(a) >= 2 else float("nan")
