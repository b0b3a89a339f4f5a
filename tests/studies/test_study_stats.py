"""Mean, spread, interval and the verdict against the best setting on synthetic repeats."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from trainlab.studies.stats import holm, spread, verdicts, welch_p


def test_spread_is_the_t_interval() -> None:
    values = [0.81, 0.84, 0.80, 0.83, 0.82]
    s = spread(values)
    low, high = sps.t.interval(0.95, 4, loc=np.mean(values), scale=sps.sem(values))
    assert s.n == 5 and math.isclose(s.mean, 0.82) and math.isclose(s.sd, np.std(values, ddof=1))
    assert math.isclose(s.ci_low, low) and math.isclose(s.ci_high, high)
    one = spread([0.5])
    assert one.n == 1 and one.mean == 0.5 and math.isnan(one.sd)


def test_a_large_difference_is_real_and_a_zero_difference_is_not() -> None:
    rng = np.random.default_rng(0)
    best = list(0.90 + 0.01 * rng.standard_normal(5))
    far = list(0.60 + 0.01 * rng.standard_normal(5))  # 30 sd below
    same = list(0.90 + 0.01 * rng.standard_normal(5))  # the same distribution as best
    result = verdicts([best, far, same], maximize=True)
    by_mean = sorted(zip([np.mean(best), np.mean(far), np.mean(same)], result, strict=True), reverse=True)
    assert by_mean[0][1].verdict == "best"
    assert result[1].verdict == "worse" and result[1].p_value < 1e-6
    assert "Welch's t-test" in result[1].text
    other = result[2] if result[0].verdict == "best" else result[0]
    assert other.verdict == "tie" and other.p_value > 0.05


def test_welch_p_uses_unequal_variances_and_the_satterthwaite_df() -> None:
    """Ten tight repeats of the best against four widely spread ones: Welch's test weighs
    each mean by its own variance, where a pooled (Student) test lends the small group the
    large one's tightness and calls the gap real."""
    best = [0.90, 0.91, 0.89, 0.905, 0.895, 0.90, 0.91, 0.89, 0.90, 0.90]
    spread_out = [0.70, 0.95, 0.60, 0.85]
    n1, n2 = len(best), len(spread_out)
    m1, m2 = np.mean(best), np.mean(spread_out)
    v1, v2 = np.var(best, ddof=1), np.var(spread_out, ddof=1)
    se1, se2 = v1 / n1, v2 / n2
    t = (m1 - m2) / math.sqrt(se1 + se2)
    df = (se1 + se2) ** 2 / (se1**2 / (n1 - 1) + se2**2 / (n2 - 1))  # Welch–Satterthwaite
    welch = 2 * sps.t.sf(abs(t), df)
    pooled_var = ((n1 - 1) * v1 + (n2 - 1) * v2) / (n1 + n2 - 2)
    t_pooled = (m1 - m2) / math.sqrt(pooled_var * (1 / n1 + 1 / n2))
    student = 2 * sps.t.sf(abs(t_pooled), n1 + n2 - 2)
    assert 3 < df < 3.2 and welch > 0.1 and student < 0.03  # the two tests disagree here
    assert welch_p(spread_out, best) == pytest.approx(welch, rel=1e-9)
    assert welch_p(best, spread_out) == pytest.approx(welch, rel=1e-9)  # two-sided
    # one comparison, so Holm leaves p as it is: a tie, which the pooled test would call worse
    result = verdicts([best, spread_out], maximize=True)
    assert [v.verdict for v in result] == ["best", "tie"]
    assert result[1].raw_p == pytest.approx(welch, rel=1e-9)
    assert result[1].p_value == pytest.approx(welch, rel=1e-9)


def test_minimize_and_edge_cases() -> None:
    result = verdicts([[1.0, 1.1, 0.9], [2.0, 2.1, 1.9], [5.0]], maximize=False)
    assert [v.verdict for v in result] == ["best", "worse", "n/a"]
    assert "repeats >= 2" in result[2].text
    assert welch_p([1.0, 1.0], [1.0, 1.0]) == 1.0 and welch_p([1.0, 1.0], [2.0, 2.0]) == 0.0
    assert welch_p([1.0], [1.0, 2.0]) is None


def test_holm_adjustment() -> None:
    assert holm([0.01, None, 0.04, 0.03]) == [0.03, None, 0.06, 0.06]
