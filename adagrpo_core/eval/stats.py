"""Every statistic of the package, from scipy and statsmodels: the t-interval over seeds, the
percentile bootstrap (one sample and paired), the exact McNemar test, the Holm correction and the
simple least-squares line."""
from __future__ import annotations

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests


def mean_ci(x, level: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its t-interval: t_{(1+level)/2, n-1} * s / sqrt(n) (NaN for n < 2)."""
    x = np.asarray(x, dtype=float)
    m = float(x.mean())
    if len(x) < 2:
        return m, float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return m, float(half)


def bootstrap_ci(x, n_boot: int, alpha: float, rng: np.random.Generator) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of x: the alpha/2 and 1 - alpha/2 quantiles of the means
    of n_boot resamples with replacement (vectorised over resamples)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return float("nan"), float("nan")
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def paired_bootstrap_ci(a, b, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """Mean of the paired differences a_i - b_i (the same users) and its percentile bootstrap CI."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same shape, got {a.shape} and {b.shape}")
    diff = a - b
    lo, hi = bootstrap_ci(diff, n_boot, alpha, np.random.default_rng(seed))
    return float(diff.mean()) if len(diff) else float("nan"), lo, hi


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
    """Holm-adjusted p-values (family-wise error control; statsmodels' multipletests)."""
    p = np.asarray(pvalues, dtype=float)
    return multipletests(p, method="holm")[1] if len(p) else p


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
