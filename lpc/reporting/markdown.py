"""Markdown tables for the reports (lpc.reporting.report) and the benchmarks (scripts/benchmark.py, sampler_bias.py)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table: the header, its rule, one line per row (cells as str())."""
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)])
