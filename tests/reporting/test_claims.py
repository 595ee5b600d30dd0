"""lpc.reporting.claims: each claim's verdict follows the one rule, from the report's own runs."""

from __future__ import annotations

import json

import pytest
from test_results_table import run

from lpc.reporting.claims import CLAIMS, NOT_RUN, SEEDS, claim_rows, verdict
from lpc.reporting.significance import PairedComparison

MODEL = next(c for c in CLAIMS if (c.method, c.against, c.metric) == ("lpc", "vae", "log_likelihood"))
SAMPLES = next(c for c in CLAIMS if (c.method, c.against, c.metric) == ("lpc", "vae", "fd"))


@pytest.mark.parametrize("differences,error,legacy,higher,want", [
    ((1.0, 1.2, 0.9, 1.1, 1.0), None, False, True, "supported"),
    ((1.0, 1.2, 0.9, 1.1, 1.0), None, False, False, "not supported"),  # significant, against the claim's direction
    ((1.0, 1.2, 0.9, 1.1, 1.0), 2.0, False, True, "open: within the estimator's error"),
    ((1.0, -1.2, 0.9, -1.1, 0.3), None, False, True, "open: not significant"),
    ((1.0, 1.2, 0.9), None, False, True, f"open: 3 of {SEEDS} seeds"),
    ((1.0, 1.2, 0.9, 1.1, 1.0), None, True, True, "open: run before the protocol"),
])
def test_the_verdict_needs_five_seeds_under_the_protocol_and_an_interval_beyond_the_error(differences, error, legacy,
                                                                                         higher, want):
    assert verdict(PairedComparison(differences, error), legacy, higher) == want


def test_without_a_comparison_the_claim_is_open_and_says_why():
    assert verdict(None, False, True, ran=False) == "open: not run"
    assert verdict(None, False, True, ran=True) == "open: not in the report's runs"


def test_claims_are_decided_from_the_reports_runs(tmp_path):
    """Five seeds where LPC's model is 2 nats above the VAE's (AIS error 0.2) and its samples worse:
    the model claim is supported, the samples claim is not; a data set without a report is open."""
    runs = [run("lpc", s, -180.0 + 0.1 * s, 5.0 + 0.01 * s) for s in range(5)]
    runs += [run("vae", s, -182.0 - 0.05 * s, 4.0) for s in range(5)]
    (tmp_path / "results" / "lpc_vs_vae").mkdir(parents=True)
    (tmp_path / "results" / "lpc_vs_vae" / "report.json").write_text(json.dumps({"runs": runs}))
    rows = {row[0]: row for row in claim_rows(tmp_path / "results")}
    digits, mnist = rows[MODEL.text][2], rows[MODEL.text][3]
    assert digits.startswith("+2.") and "5/5 > 0; estimator error 0.2: **supported**" in digits
    assert "([report](results/lpc_vs_vae/report.md))" in digits and mnist == "**open: not run**"
    assert "5/5 > 0: **not supported**" in rows[SAMPLES.text][2]
    assert all(rows[text][2:] == ["**open: not run**"] * 2 for text in NOT_RUN)
