"""A report's tables from its runs: one row per group (mean ± sample std over seeds), the
sample-quality reference rows, the paired differences to a reference group, the metrics' legend,
and the lines that say where the numbers come from."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

from lpc.evaluation.names import LEGACY_SPLIT, METRICS, PAIRED, REFERENCE_LABELS, final_split
from lpc.reporting.experiments import Experiment
from lpc.reporting.markdown import markdown_table
from lpc.reporting.significance import compare_by_seed


def provenance_lines(runs: list[dict], report: dict) -> list[str]:
    """The report's commit and machine lines: the runs' own (their metrics.json's ``provenance``) beside
    the report's, which differ where a report is drawn later (--report-only) or from kept records."""
    recorded = [r["metrics"]["provenance"] for r in runs if r["metrics"] and "provenance" in r["metrics"]]
    unrecorded = f" ({n} runs without a record of theirs)" if (n := sum(bool(r["metrics"]) for r in runs) - len(recorded)) else ""
    if not recorded:
        return [f"- commit: {report['commit']}", f"- machine: {report['machine']} (the report's){unrecorded}"]
    listed = lambda key: "; ".join(sorted({p[key] for p in recorded}))  # noqa: E731
    return [f"- commit: the runs at {listed('commit')}{unrecorded}; the report drawn at {report['commit']}",
            f"- machine: the runs on {listed('machine')}{unrecorded}"]


def grouped(runs: list[dict], experiment: Experiment) -> dict[str, list[dict]]:
    """The runs by group, ``"key=value ..."`` over the experiment's ``group_by`` keys, in sweep order."""
    groups: dict[str, list[dict]] = {}
    for run in runs:
        name = " ".join(f"{k}={run['overrides'].get(k, '-')}" for k in experiment.group_by)
        groups.setdefault(name, []).append(run)
    return groups


def averaged(done: list[dict], source: Callable[[str], str]) -> dict[str, float | None]:
    """Mean and spread (sample standard deviation over the repeats, 0 for one) of every metric of
    the report (``METRICS``) over the summaries ``done``, each metric read from the summary's ``source(metric)``."""
    row: dict[str, float | None] = {}
    for metric in METRICS:
        values = [d[source(metric)] for d in done if d.get(source(metric)) is not None and math.isfinite(d[source(metric)])]
        row[metric] = statistics.fmean(values) if values else None
        row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else (0.0 if values else None)
    return row


def table_rows(runs: list[dict], experiment: Experiment) -> list[dict]:
    """One row per group: its keys, the number of runs, of failed runs, and mean and spread of every
    metric (``averaged``); sorted by ``x`` if numeric; then the sample-quality reference points (``reference_rows``)."""
    rows = []
    for name, members in grouped(runs, experiment).items():
        keys = {k: members[0]["overrides"].get(k) for k in experiment.group_by}
        members = [m for m in members if not m["unfinished"]]
        done = [m["summary"] for m in members if m["summary"] is not None]
        row = {"group": name, "keys": keys, "runs": len(members), "failed": len(members) - len(done),
               **averaged(done, lambda metric: metric)}
        for name in ("fd_space", "estimator"):
            row[name] = ", ".join(sorted({d[name] for d in done if d[name]})) or None
        rows.append(row)
    if experiment.x:
        rows.sort(key=lambda r: (line_name(r, experiment), float(r["keys"][experiment.x])))
    return rows + reference_rows(runs)


def reference_rows(runs: list[dict]) -> list[dict]:
    """The sample-quality reference points each run measured at its end (``lpc.evaluation.protocol``,
    ``SampleQuality.references``) as two rows, mean ± spread over the runs: where a model sits
    between "nothing learned" and "the data"."""
    done = [r["summary"] for r in runs if r["summary"]]
    rows = []
    for ref, label in REFERENCE_LABELS.items():
        row = {"group": label, "keys": {}, "runs": sum(d[f"fd_{ref}"] is not None for d in done), "failed": 0,
               "reference": True, "estimator": None, "fd_space": ", ".join(sorted({d["fd_space"] for d in done if d["fd_space"]})) or None,
               **averaged(done, lambda metric: f"{metric}_{ref}" if METRICS[metric].references else "-")}
        if row["runs"]:
            rows.append(row)
    return rows


def line_name(row: dict, experiment: Experiment) -> str:
    """The row's keys other than ``x``: one line of a plot against ``x``."""
    return " ".join(f"{k}={v}" for k, v in row["keys"].items() if k != experiment.x)


def table_columns(rows: list[dict]) -> list[str]:
    """The metrics some row has."""
    return [m for m in METRICS if any(r[m] is not None for r in rows)]


def legend(rows: list[dict]) -> str:
    """The report's legend: each column's metric and its meaning."""
    return markdown_table(["metric", "meaning"], ((m, METRICS[m].label) for m in table_columns(rows)))


def failures(runs: list[dict], experiment: Experiment) -> list[str]:
    """The report's list of failed runs (counted in the table, not averaged), each with its error."""
    keys = [*experiment.group_by, "seed"]
    named = lambda r: " ".join(f"{k}={r['overrides'][k]}" for k in keys if k in r["overrides"])  # noqa: E731
    failed = [f"- {r['job']} ({named(r)}): {r['error']}" for r in runs if r["error"]]
    unfinished = [f"- {r['job']} ({named(r)})" for r in runs if r["unfinished"]]
    return [*(["Failed runs (counted above, not averaged):", "", *failed, ""] if failed else []),
            *(["Not finished (interrupted or still running; not counted: a relaunch of the first command continues "
               "them):", "", *unfinished, ""] if unfinished else [])]


def report_table(rows: list[dict]) -> str:
    """The report's main table: each group's mean ± sample std of every metric some row has."""
    columns = table_columns(rows)

    def cell(r: dict, m: str) -> str:
        v, s = r[m], r[f"{m}_std"]
        value = f"{v:.1f}" if v is not None and abs(v) >= 1000 else f"{v:.4g}" if v is not None else ""  # nats to 0.1
        return "" if v is None else (value if not s else f"{value} ± {s:.2g}")

    if any(r["estimator"] for r in rows) and "log_likelihood" in columns:  # the estimate each log_likelihood is
        columns.insert(columns.index("log_likelihood") + 1, "estimator")
    cells = lambda r: [r["estimator"] or "" if m == "estimator" else cell(r, m) for m in columns]  # noqa: E731
    return markdown_table(["group", "runs (failed)", *columns], ([r["group"], f"{r['runs']} ({r['failed']})", *cells(r)] for r in rows))


def paired_differences(runs: list[dict], experiment: Experiment) -> list[dict]:
    """Each group against ``experiment.paired``, seed by seed: for every metric of PAIRED, the
    differences (group − reference) over the seeds both finished as a ``PairedComparison`` (mean,
    spread, sign count, the paired-t 95% interval, significance; for AIS estimates also the
    estimator's own error: the larger of the two groups' mean error, BDMC gap or move from K/2 to K).
    Runs with one seed share the data order and the seed of every random draw, so the spread of the
    differences is the seed-to-seed spread of the comparison itself."""
    groups = grouped(runs, experiment)
    reference = groups.get(experiment.paired, [])
    rows = []
    for name, members in groups.items():
        if name == experiment.paired or not any(r["summary"] for r in reference):
            continue
        comparisons = {metric: compare_by_seed(members, reference, metric, f"{metric}_error" if METRICS[metric].error else None)
                       for metric in PAIRED}
        rows.append({"group": name, **{m: c.as_dict() if c else None for m, c in comparisons.items()}})
    return rows


def paired_markdown(rows: list[dict], reference: str) -> list[str]:
    """The report's lines for ``paired_differences``: one row per group, a column per metric."""
    metrics = [m for m in PAIRED if any(r[m] for r in rows)]

    def cell(d: dict | None) -> str:
        if d is None:
            return ""
        interval = f"; 95% CI [{d['low']:+.3g}, {d['high']:+.3g}]" if d["low"] is not None else ""
        error = f"; estimator error {d['estimator_error']:.2g}" if d["estimator_error"] is not None else ""
        return f"{d['mean']:+.4g} ± {d['std']:.2g} ({d['above']}/{d['pairs']} > 0{interval}{error}): {d['verdict']}"

    return [f"Differences to {reference}, seed by seed (group − {reference}; mean ± sample standard deviation over "
            "the seeds both finished, how many of those differences are above 0, the 95% interval of the mean from the "
            "paired t distribution, and the verdict: significant only where the interval excludes 0, and 'within the "
            "estimator's error' wherever the mean difference is no larger than the AIS estimates' own error (the larger "
            "of the two groups' BDMC gap or move from K/2 to K distributions), whatever the test says; higher "
            "log-likelihoods and lower distances are better):", "",
            markdown_table(["group", *(f"Δ {m}" for m in metrics)], ([r["group"], *(cell(r[m]) for m in metrics)] for r in rows)), ""]


def protocol_lines(runs: list[dict]) -> list[str]:
    """Which split and scale the report's numbers come from (runs recorded before the validation
    split are said to be so)."""
    legacy = sum(1 for r in runs if r["metrics"] and final_split(r["metrics"]) == LEGACY_SPLIT)
    lines = ["Splits: every number in the table is from the test split, scored once per run at its end; every "
             "likelihood there is at the scale sigma fitted on the validation split by the same EM for every method "
             "(`sigma_fitted`; `log_likelihood_trained_sigma` is the same estimate at the sigma training left). The "
             "curves and every choice (a best setting, a tuned one) come from the validation split."]
    if legacy:
        lines = [f"Splits: {legacy} of these runs were recorded before lpc held out a validation split: their numbers are "
                 "on the test split, which their periodic evaluations (the curves) also scored, and their likelihoods at "
                 "the sigma their last training batch left (no fitted sigma)."]
    return [*lines, ""]


def best_by_validation(rows: list[dict], experiment: Experiment) -> list[str]:
    """For a grid over ``x``: each line's best ``x`` by the validation log-likelihood (mean over
    seeds), with the test log-likelihood of that setting."""
    if not experiment.x:
        return []
    best_of = max if METRICS["val_log_likelihood"].higher_is_better else min
    picks = []
    for line in dict.fromkeys(line_name(r, experiment) for r in model_rows(rows)):
        candidates = [r for r in model_rows(rows) if line_name(r, experiment) == line and r["val_log_likelihood"] is not None]
        if candidates:
            best = best_of(candidates, key=lambda r: r["val_log_likelihood"])
            test = f"{best['log_likelihood']:.1f} ± {best['log_likelihood_std']:.2g}" if best["log_likelihood"] is not None else "n/a"
            picks.append(f"- {line}: {experiment.x}={best['keys'][experiment.x]} (validation {best['val_log_likelihood']:.1f}; "
                         f"its test log_likelihood {test})")
    return [f"Best {experiment.x} of each line, chosen on the validation split (`val_log_likelihood`, mean over seeds):",
            "", *picks, ""] if picks else []


def model_rows(rows: list[dict]) -> list[dict]:
    """The table's rows of trained models (not the reference points)."""
    return [r for r in rows if not r.get("reference")]
