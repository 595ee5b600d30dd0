"""Paired comparisons of two methods over seeds, as a report states them: the mean difference, a
95% interval from the paired t distribution, the sign count, and whether the difference is
significant and whether it exceeds the estimator's own error."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats


def t_interval(mean: float, std: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """mean -/+ t_{(1 + level) / 2, n - 1} * std / sqrt(n): the ``level`` confidence interval of a
    mean of n >= 2 values with sample standard deviation ``std``."""
    if n < 2:
        raise ValueError(f"a paired interval needs at least 2 pairs, got {n}")
    half = stats.t.ppf((1 + level) / 2, n - 1) * std / math.sqrt(n)
    return mean - half, mean + half


def paired_t_interval(differences: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """The ``level`` confidence interval of the mean of paired differences d_1..d_n (n >= 2), from the
    t distribution (``t_interval``): what ``scipy.stats.ttest_rel(a, b).confidence_interval(level)``
    gives for d = a - b."""
    if len(differences) < 2:
        raise ValueError(f"a paired interval needs at least 2 pairs, got {len(differences)}")
    return t_interval(statistics.fmean(differences), statistics.stdev(differences), len(differences), level)


@dataclass(frozen=True)
class PairedComparison:
    """group − reference over the seeds both finished.

    ``estimator_error``: how far the estimator itself may be off (for AIS the larger of the two
    methods' mean BDMC gap and mean move from K/2 to K distributions); None where it has none."""

    differences: tuple[float, ...]
    estimator_error: float | None = None
    level: float = 0.95

    @property
    def pairs(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.differences)

    @property
    def std(self) -> float:
        return statistics.stdev(self.differences) if self.pairs > 1 else 0.0

    @property
    def above(self) -> int:
        """How many of the differences are above 0."""
        return sum(d > 0 for d in self.differences)

    @property
    def interval(self) -> tuple[float, float] | None:
        return paired_t_interval(self.differences, self.level) if self.pairs > 1 else None

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (never with fewer than 2 pairs)."""
        return self.interval is not None and (self.interval[0] > 0 or self.interval[1] < 0)

    @property
    def within_error(self) -> bool:
        """|mean| is no larger than the estimator's own error: not resolved, whatever the test says."""
        return self.estimator_error is not None and abs(self.mean) <= self.estimator_error

    @property
    def verdict(self) -> str:
        if self.within_error:
            return "within the estimator's error"
        if self.pairs < 2:
            return "one pair: no test"
        return "significant" if self.significant else "not significant"

    def as_dict(self) -> dict:
        interval = self.interval
        return {"mean": self.mean, "std": self.std, "pairs": self.pairs, "above": self.above,
                "low": interval[0] if interval else None, "high": interval[1] if interval else None,
                "estimator_error": self.estimator_error, "significant": self.significant,
                "within_error": self.within_error, "verdict": self.verdict}


def compare_by_seed(runs: Sequence[dict], reference: Sequence[dict], metric: str,
                    error: str | None = None) -> PairedComparison | None:
    """``metric`` of ``runs`` against ``reference`` on the seeds both finished: each run is
    ``{"overrides": {"seed": ..., ...}, "summary": {metric: ..., ...} or None}`` (a failed run has no
    summary). ``error`` names the summaries' estimator error of the metric: the comparison's is the
    larger of the two sides' mean over the pairs. None without a pair."""
    by_seed = {r["overrides"].get("seed"): r["summary"] for r in reference if r["summary"]}
    pairs = [(r["summary"], ref) for r in runs
             if r["summary"] and (ref := by_seed.get(r["overrides"].get("seed")))
             and r["summary"].get(metric) is not None and ref.get(metric) is not None]
    if not pairs:
        return None
    sides = [[s[error] for s in side if s.get(error) is not None] for side in zip(*pairs)] if error else []
    means = [statistics.fmean(errors) for errors in sides if errors]
    return PairedComparison(tuple(a[metric] - b[metric] for a, b in pairs), max(means) if means else None)
