"""Is a difference real? Mean, spread and 95 % interval over repeats, and a verdict per setting.

Each setting is compared with the best one by Welch's t-test (unequal variances, two-sided,
scipy), which needs at least two repeats of both. p-values are Holm-adjusted over the
settings compared, so that a study of nine optimizers does not call one of them "worse" by
the chance of running nine tests.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

TEST_NAME = "Welch's t-test"


@dataclass
class Spread:
    """Mean, sample standard deviation and 95 % t-interval of a setting's repeats."""

    n: int
    mean: float
    sd: float
    ci_low: float
    ci_high: float


@dataclass
class Verdict:
    """How a setting compares with the best one."""

    p_value: float | None  # Holm-adjusted; None when the test cannot run
    raw_p: float | None
    verdict: str  # "best", "worse", "tie", or "n/a"
    text: str


def spread(values: Sequence[float], confidence: float = 0.95) -> Spread:
    """Mean, sd (n-1) and a t-based confidence interval (the mean alone for one value)."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return Spread(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Spread(1, mean, math.nan, math.nan, math.nan)
    sd = float(x.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return Spread(n, mean, sd, mean - half, mean + half)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of Welch's t-test; None with fewer than two values on a side.

    With no spread on either side the test is undefined: equal means give 1, different 0.
    """
    if len(a) < 2 or len(b) < 2:
        return None
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.std() == 0 and y.std() == 0:
        return 1.0 if x.mean() == y.mean() else 0.0
    with warnings.catch_warnings():  # identical repeats (e.g. always at chance) warn, yet give a p-value
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(sps.ttest_ind(x, y, equal_var=False).pvalue)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (None stays None)."""
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(present)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def verdicts(groups: Sequence[Sequence[float]], maximize: bool, alpha: float = 0.05) -> list[Verdict]:
    """A verdict for each group of repeats against the group with the best mean.

    Args:
        groups: the objective values of each setting's repeats.
        maximize: whether higher is better.
        alpha: significance level. Default 0.05.
    """
    means = [float(np.mean(g)) if len(g) else math.nan for g in groups]
    ranked = [i for i in range(len(groups)) if not math.isnan(means[i])]
    if not ranked:
        return [Verdict(None, None, "n/a", "no finished runs") for _ in groups]
    best = (max if maximize else min)(ranked, key=lambda i: means[i])
    raw = [None if i == best else welch_p(g, groups[best]) for i, g in enumerate(groups)]
    adjusted = holm(raw)
    out: list[Verdict] = []
    for i, group in enumerate(groups):
        p = adjusted[i]
        if i == best:
            out.append(Verdict(None, None, "best", "best mean"))
        elif p is None:
            need = "needs repeats >= 2" if len(group) else "no finished runs"
            out.append(Verdict(None, None, "n/a", f"n/a ({need})"))
        elif p < alpha:
            out.append(Verdict(p, raw[i], "worse", f"worse than best ({TEST_NAME}, Holm p = {p:.2g})"))
        else:
            out.append(Verdict(p, raw[i], "tie", f"not distinguishable from best ({TEST_NAME}, "
                                                f"Holm p = {p:.2g})"))
    return out
