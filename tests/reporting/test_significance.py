"""lpc.reporting.significance: the paired interval is scipy's, and the verdict follows the interval and the estimator's error."""

from __future__ import annotations

import pytest
from scipy import stats

from lpc.reporting.significance import PairedComparison, paired_t_interval

A = [-181.2, -183.9, -180.4, -182.7, -181.9]  # e.g. a method's test log-likelihood over five seeds
B = [-183.0, -184.1, -182.6, -185.2, -182.5]  # the reference method's, seed by seed


def test_the_paired_interval_matches_scipy():
    differences = [a - b for a, b in zip(A, B)]
    expected = stats.ttest_rel(A, B).confidence_interval(0.95)
    assert paired_t_interval(differences) == pytest.approx((expected.low, expected.high), rel=1e-12)
    expected = stats.ttest_rel(A, B).confidence_interval(0.9)
    assert paired_t_interval(differences, 0.9) == pytest.approx((expected.low, expected.high), rel=1e-12)
    with pytest.raises(ValueError, match="at least 2 pairs"):
        paired_t_interval([1.0])


def test_the_verdict_reads_the_interval_and_the_estimators_error():
    differences = tuple(a - b for a, b in zip(A, B))  # all five above 0, interval above 0
    assert PairedComparison(differences).verdict == "significant"
    assert PairedComparison(differences, estimator_error=0.5).verdict == "significant"
    # the same difference, smaller than the estimator's own error (e.g. a BDMC gap of 3 nats): not resolved
    assert PairedComparison(differences, estimator_error=3.0).verdict == "within the estimator's error"
    mixed = PairedComparison((1.0, -0.5, 0.7, -0.9, 0.2))
    assert mixed.above == 3 and not mixed.significant and mixed.verdict == "not significant"
    assert PairedComparison((4.0,)).verdict == "one pair: no test" and PairedComparison((4.0,)).interval is None
