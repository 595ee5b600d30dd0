"""The README's results table, drawn from the committed reports' JSON (``results/*/report.json``)
so that it cannot drift from them: in every report with encoder-free LPC (``method=lpc``), each other
method's difference to it, paired by seed, with its 95% interval and verdict (``lpc.reporting.significance``),
and the protocol its runs followed. ``scripts/results_table.py`` writes it between ``MARKERS``."""

from __future__ import annotations

import json
from pathlib import Path

from lpc.reporting.markdown import markdown_table
from lpc.reporting.significance import PairedComparison, compare_by_seed
from lpc.reporting.summaries import split_prefix, summarise

MARKERS = ("<!-- results table: drawn from results/*/report.json by scripts/results_table.py; do not edit -->",
           "<!-- end of the results table -->")
REFERENCE = "lpc"  # the method every other is compared with
DATA = {"digits_cnn": "digits", "mnist_t10k_cnn": "MNIST test split", "cifar10_cnn": "CIFAR-10", "inception": "(FID)"}


def comparisons(report: dict) -> list[dict]:
    """Each (method, setting) of the report's runs against ``method=lpc`` in the same setting: the
    setting is the values of the report's other grouping keys (its table's ``keys``, e.g. ``prior.sizes``)."""
    runs = [{"overrides": r["overrides"], "summary": summarise(r["metrics"]) if r["metrics"] else None,
             "legacy": bool(r["metrics"]) and split_prefix(r["metrics"]) == "eval/"} for r in report["runs"]]
    keys = sorted({k for row in report["table"] for k in row.get("keys", {})} - {"method"})
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        if "method" in run["overrides"]:
            where = tuple((k, run["overrides"].get(k, "-")) for k in keys)
            groups.setdefault((run["overrides"]["method"], where), []).append(run)
    rows = []
    for (method, where), members in groups.items():
        reference = groups.get((REFERENCE, where))
        if method == REFERENCE or not reference:
            continue
        done = [r["summary"] for r in members + reference if r["summary"]]
        rows.append({
            "method": method, "setting": " ".join(f"{k}={v}" for k, v in where),
            "log_likelihood": compare_by_seed(members, reference, "log_likelihood", "log_likelihood_error"),
            "fd": compare_by_seed(members, reference, "fd"),
            "estimators": sorted({s["estimator"] for s in done if s["estimator"]}),
            "data": sorted({DATA.get((s["fd_space"] or "").split(" ")[0], "?") for s in done if s["fd_space"]}),
            "legacy": any(r["legacy"] for r in members + reference),
        })
    return rows


def cell(comparison: PairedComparison | None) -> str:
    if comparison is None:
        return ""
    interval = f" [{comparison.interval[0]:+.3g}, {comparison.interval[1]:+.3g}]" if comparison.interval else ""
    return f"{comparison.mean:+.3g}{interval}, {comparison.above}/{comparison.pairs} > 0: {comparison.verdict}"


def results_table(results: Path) -> str:
    """The markdown table of every report below ``results`` (its folders' report.json)."""
    lines = []
    for path in sorted(results.glob("*/report.json")):
        report = json.loads(path.read_text())
        link = f"[{path.parent.name}]({path.parent.relative_to(results.parent).as_posix()}/report.md)"
        for row in comparisons(report):
            protocol = ("before the validation split: test split, sigma of the last training batch" if row["legacy"]
                        else "test split, sigma fitted on validation")
            lines.append([link, ", ".join(row["data"]), f"{row['method']} − lpc{' (' + row['setting'] + ')' if row['setting'] else ''}",
                          cell(row["log_likelihood"]), ", ".join(e for e in row["estimators"]), cell(row["fd"]), protocol])
    return markdown_table(["report", "data", "difference", "Δ log p(x), nats: mean [95% CI], sign count: verdict",
                           "estimator", "Δ FD (lower is better)", "protocol"], lines)


def with_table(text: str, table: str, markers: tuple[str, str] = MARKERS) -> str:
    """``text`` (the README) with ``table`` between ``markers``."""
    start, end = text.index(markers[0]) + len(markers[0]), text.index(markers[1])
    return text[:start] + "\n" + table + "\n" + text[end:]
