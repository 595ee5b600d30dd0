"""A run's final metrics (its metrics.json) summarised as the reports read them: every metric of the
report's registry (``lpc.evaluation.names.METRICS``: the test split's headline log-likelihood and the
validation split's beside it, the fitted and training sigma, AIS with its checks, sample quality
with its reference points, cost, ...), each estimate's own error, the estimate the headline is and
the feature space of sample quality."""

from __future__ import annotations

from lpc.evaluation.names import (
    INCEPTION,
    METRICS,
    REFERENCES,
    RunMetrics,
    estimator,
    feature_spaces,
    final_split,
    key,
)


def split_prefix(metrics: dict) -> str:
    """Where a run's test-split evaluation is: ``test/``, or ``eval/`` in records from before the
    validation split (then the periodic evaluation also scored the test split, as ``eval/``)."""
    return key(final_split(metrics), "")


def space_label(space: str | None) -> str | None:
    """The report's name of a feature space."""
    if space is None:
        return None
    return "inception (FID)" if space == INCEPTION else f"{space} features (offline, not FID)"


def summarise(metrics: dict, split: str | None = None) -> dict[str, float | str | None]:
    """The report's metrics of one run, from its final metrics (metrics.json): those of ``split``'s
    evaluation (by default ``final_split``'s), each metric of ``METRICS`` under its name, its error as
    ``<name>_error`` and its reference points' as ``<name>_<reference>`` where it has them."""
    split = split or final_split(metrics)
    run = RunMetrics(metrics, split)
    summary: dict[str, float | str | None] = {name: metric.value(run) for name, metric in METRICS.items()}
    summary.update({f"{name}_error": metric.error(run) for name, metric in METRICS.items() if metric.error})
    summary.update({f"{name}_{ref}": metric.value(RunMetrics(metrics, split, ref))
                    for name, metric in METRICS.items() if metric.references for ref in REFERENCES})
    spaces = feature_spaces(metrics, split)
    return {**summary, "estimator": estimator(metrics, split), "fd_space": space_label(spaces[0] if spaces else None)}
