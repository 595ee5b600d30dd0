"""scripts/gpu_check.py --dry: every step of the GPU acceptance command runs at toy sizes on any
machine and lands in the two files the device tool brings back."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT


def test_the_gpu_check_runs_every_step_dry_and_writes_its_report(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "scripts/gpu_check.py", str(out), "--dry", "--work", str(tmp_path / "work")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["dry"] is True and report["commit"]
    assert [(s["name"], s["status"]) for s in report["steps"]] == [
        (name, "ok") for name in ("tests", "inner", "inner_tf32", "ais", "train")]
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["inner"]["results"]["benchmark.json"]["overhead"]  # each benchmark's JSON is kept
    assert steps["inner_tf32"]["results"]["benchmark.json"]["settings"]["tf32"] is True
    assert "ais_benchmark.json" in steps["ais"]["results"]
    assert (tmp_path / "work" / "train" / "metrics.json").exists()
    table = (out / "gpu_check.md").read_text()
    assert "| train | ok |" in table and "## inner" in table and "## ais" in table


def test_without_a_gpu_the_full_check_says_how_to_run_it(tmp_path):
    import torch

    if torch.cuda.is_available():
        return
    proc = subprocess.run([sys.executable, "scripts/gpu_check.py", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and "--dry" in proc.stderr
