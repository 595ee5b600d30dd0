"""lpc.reporting.results_table: the README's results table is the committed reports' own numbers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT
from scipy import stats

from lpc.reporting.results_table import MARKERS, results_table, with_table


def test_the_readmes_results_table_is_drawn_from_the_committed_reports():
    proc = subprocess.run([sys.executable, "scripts/results_table.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def run(method: str, seed: int, log_likelihood: float, fd: float) -> dict:
    """A run of a report.json as scripts/reproduce.py writes it (its final metrics under test/)."""
    metrics = {"test/log_likelihood": log_likelihood, "test/ais_prior": log_likelihood, "test/bdmc_gap_prior": 0.2,
               "test/ais500_prior": log_likelihood - 0.1, "test/fd_digits_cnn": fd,
               "estimators": {"test/log_likelihood": "test/ais_prior"}}
    return {"overrides": {"method": method, "seed": str(seed)}, "metrics": metrics}


def test_a_report_gives_each_methods_paired_difference_to_lpc(tmp_path):
    lpc, vae = [-190.0, -188.5, -191.0], [-187.0, -186.9, -188.2]
    report = {"table": [{"keys": {"method": "lpc"}}, {"keys": {"method": "vae"}}],
              "runs": [run("lpc", s, ll, 4.0) for s, ll in enumerate(lpc)] + [run("vae", s, ll, 4.5) for s, ll in enumerate(vae)]}
    (tmp_path / "results" / "demo").mkdir(parents=True)
    (tmp_path / "results" / "demo" / "report.json").write_text(json.dumps(report))
    table = results_table(tmp_path / "results")
    ci = stats.ttest_rel(vae, lpc).confidence_interval(0.95)
    row = table.splitlines()[2]
    assert row.startswith("| [demo](results/demo/report.md) | digits | vae − lpc | ")
    assert f"+{sum(vae) / 3 - sum(lpc) / 3:.3g} [{ci.low:+.3g}, {ci.high:+.3g}], 3/3 > 0: significant" in row
    assert "| ais_prior | +0.5 [+0.5, +0.5], 3/3 > 0: significant | test split, sigma fitted on validation |" in row
    readme = f"intro\n{MARKERS[0]}\nold\n{MARKERS[1]}\nrest"
    assert with_table(readme, table) == f"intro\n{MARKERS[0]}\n{table}\n{MARKERS[1]}\nrest"
    with pytest.raises(ValueError):
        with_table("no markers", table)
