"""lpc.reporting.runs: a record kept without reference points gets them from its config alone, equal
to what the run measured itself, and its report reads them."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import run_train

from lpc.reporting.runs import REFERENCES_FILE, add_reference_points, collect_runs

TINY = ["trainer.max_steps=4", "trainer.val_check_interval=4", "num_steps=4", "burn_in=2", "eval=fast",
        "eval.sample_quality.num_samples=100", "eval.likelihood.num_examples=16", "eval.sigma_fit.enabled=false",
        "logger=csv", "callbacks=evaluation", "trainer.enable_progress_bar=false"]


def test_reference_points_of_a_record_without_them_equal_the_runs_own(tmp_path):
    job = tmp_path / "runs" / "0"
    run_train(job, "method=lpc", "seed=0", *TINY)
    metrics = json.loads((job / "metrics.json").read_text())
    own = {k: v for k, v in metrics.items() if k.startswith("test/reference/")}
    assert own, "the run measured no reference points"
    # the record as one kept before the reference points: no such metrics, no checkpoint
    (job / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if k not in own}))
    shutil.rmtree(job / "checkpoints", ignore_errors=True)
    assert add_reference_points(tmp_path) == 1
    written = json.loads((job / REFERENCES_FILE).read_text())["metrics"]
    assert {f"test/{k}": v for k, v in written.items()} == pytest.approx(own, rel=1e-6)  # metrics.json holds float32 values
    (run,) = collect_runs(tmp_path / "runs")
    assert run["summary"]["fd_untrained_decoder"] == pytest.approx(own[next(k for k in own if "untrained_decoder/fd_" in k)])
    assert add_reference_points(tmp_path) == 0  # done once
