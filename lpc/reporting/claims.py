"""The paper's claims and the reviewers' questions, each decided by the committed reports' numbers.

A claim is a paired comparison of two methods on one metric over the seeds both finished (or of a
method against a reference point its own runs measured), read from a report's records
(``results/<report>/report.json``). Its verdict follows one rule (``verdict``):

- ``supported`` / ``not supported``: at least ``SEEDS`` seeds, every run under the protocol
  (validation split, fitted sigma), and the paired 95% interval excludes 0 by more than the
  estimator's own error, in the claim's direction or against it;
- ``open``, with the reason, otherwise: not run, run before the protocol, too few seeds, not
  significant, or within the estimator's error.

``scripts/results_table.py`` writes the table into the README (``claims_table``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lpc.reporting.markdown import markdown_table
from lpc.reporting.significance import PairedComparison, compare_by_seed
from lpc.reporting.summaries import split_prefix, summarise

SEEDS = 5  # the seeds a verdict needs (the protocol's)
DATASETS = {"lpc_vs_vae": "digits", "lpc_vs_vae_medium_mnist": "MNIST test split"}  # the reports each claim is read from
MARKERS = ("<!-- claims table: drawn from results/*/report.json by scripts/results_table.py; do not edit -->",
           "<!-- end of the claims table -->")


@dataclass(frozen=True)
class Claim:
    """``method`` against ``against`` on ``metric`` (a run summary's key, ``lpc.reporting.summaries``):
    the claim holds where ``method`` is better, i.e. higher (``higher=True``) or lower. ``against`` may
    name a reference point of ``method``'s own runs (``reference:<summary key>``) instead of a method.
    ``error``: the summaries' key of the estimator's own error of ``metric``."""

    text: str
    method: str
    against: str
    metric: str
    higher: bool = True
    error: str | None = None
    reports: tuple[str, ...] = tuple(DATASETS)


LIKELIHOOD = {"metric": "log_likelihood", "error": "log_likelihood_error"}
CLAIMS = (
    Claim("LPC's model is at least as good as the like-for-like VAE's", "lpc", "vae", **LIKELIHOOD),
    Claim("LPC's samples are better than the VAE's", "lpc", "vae", "fd", higher=False),
    Claim("encoder-free LPC learns: its samples are better than its untrained networks'", "lpc",
          "reference:fd_untrained_decoder", "fd", higher=False),
    Claim("a warm-start (Jeffreys) gives a better model than none", "lpc_jeffreys", "lpc", **LIKELIHOOD),
    Claim("a warm-start (Jeffreys) gives better samples than none", "lpc_jeffreys", "lpc", "fd", higher=False),
    Claim("reviewer: the Langevin noise matters (LPC's model against plain PC's)", "lpc", "pc", **LIKELIHOOD),
    Claim("reviewer: LPC against a stronger baseline, IWAE (K = 5)", "lpc", "iwae", **LIKELIHOOD),
    Claim("reviewer: LPC against Hoffman's HMC from an encoder", "lpc", "hoffman", **LIKELIHOOD),
    Claim("reviewer: an LPC update costs more decoder passes than a VAE update", "vae", "lpc", "decoder_evals",
          higher=False),
)
# claims whose experiment is not yet a paired comparison in a report: open until it runs (issue #35)
NOT_RUN = (
    "LPC needs fewer SGD iterations than the VAE (iterations to the VAE's final FD)",
    "the preconditioner widens the range of usable step sizes (step_size_robustness, widened to 0.001)",
    "the comparisons above with each method tuned on validation (tuned)",
    "the comparisons above at equal decoder evaluations and equal wall-clock",
    "warm-starts shorten the chains (warm-started LPC at T = 5, 10, 20 against encoder-free at T = 20, 50)",
)


def verdict(comparison: PairedComparison | None, legacy: bool, higher: bool, ran: bool = True) -> str:
    """The claim's verdict from ``method − against`` (see the module's docstring); ``ran``: whether
    the claim's report exists (a report without the pair says so)."""
    if comparison is None:
        return "open: not in the report's runs" if ran else "open: not run"
    if legacy:
        return "open: run before the protocol"
    if comparison.pairs < SEEDS:
        return f"open: {comparison.pairs} of {SEEDS} seeds"
    if comparison.within_error or not comparison.significant:
        return f"open: {comparison.verdict}"
    return "supported" if (comparison.mean > 0) == higher else "not supported"


def runs_of(report: dict) -> list[dict]:
    """The report's runs as ``compare_by_seed`` reads them, each marked ``legacy`` if it ran before the protocol."""
    return [{"overrides": r["overrides"], "summary": summarise(r["metrics"]) if r["metrics"] else None,
             "legacy": bool(r["metrics"]) and split_prefix(r["metrics"]) == "eval/"} for r in report["runs"]]


def compare(claim: Claim, runs: list[dict]) -> tuple[PairedComparison | None, bool]:
    """``claim.method − claim.against`` over the seeds, and whether any run compared ran before the protocol."""
    def method(name: str) -> list[dict]:
        return [r for r in runs if r["overrides"].get("method") == name]

    ours = method(claim.method)
    if claim.against.startswith("reference:"):
        reference = claim.against.removeprefix("reference:")
        pairs = [(s[claim.metric], s[reference]) for r in ours if (s := r["summary"])
                 and s.get(claim.metric) is not None and s.get(reference) is not None]
        comparison = PairedComparison(tuple(a - b for a, b in pairs)) if pairs else None
        return comparison, any(r["legacy"] for r in ours)
    theirs = method(claim.against)
    return compare_by_seed(ours, theirs, claim.metric, claim.error), any(r["legacy"] for r in ours + theirs)


def evidence(comparison: PairedComparison | None) -> str:
    if comparison is None:
        return ""
    interval = f" [{comparison.interval[0]:+.3g}, {comparison.interval[1]:+.3g}]" if comparison.interval else ""
    error = f"; estimator error {comparison.estimator_error:.2g}" if comparison.estimator_error is not None else ""
    return f"{comparison.mean:+.3g}{interval}, {comparison.above}/{comparison.pairs} > 0{error}"


def claim_rows(results: Path) -> list[list[str]]:
    """One row per claim: the claim, the comparison, and per data set its numbers and verdict (with the report's link)."""
    rows = []
    for claim in CLAIMS:
        cells = []
        for name in claim.reports:
            path = results / name / "report.json"
            comparison, legacy = compare(claim, runs_of(json.loads(path.read_text()))) if path.exists() else (None, False)
            link = f" ([report]({path.parent.relative_to(results.parent).as_posix()}/report.md))" if path.exists() else ""
            numbers = evidence(comparison)
            cells.append(f"{numbers + ': ' if numbers else ''}**{verdict(comparison, legacy, claim.higher, path.exists())}**{link}")
        against = claim.against.removeprefix("reference:")
        rows.append([claim.text, f"{claim.method} − {against}: {claim.metric}, {'higher' if claim.higher else 'lower'} is the claim",
                     *cells])
    rows += [[text, "", *["**open: not run**"] * len(DATASETS)] for text in NOT_RUN]
    return rows


def claims_table(results: Path) -> str:
    """The markdown table of every claim (``claim_rows``)."""
    return markdown_table(["claim", "comparison", *(f"{data}: mean [95% CI], sign count: verdict" for data in DATASETS.values())],
                          claim_rows(results))
