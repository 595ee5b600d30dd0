"""scripts/benchmark.py end to end at tiny sizes: every table filled, the JSON and markdown written."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

from conftest import ROOT

from lpc.benchmarks.inner_loop import OVERHEAD_MODELS


def test_benchmark_runs_end_to_end_at_tiny_sizes(tmp_path):
    cmd = [sys.executable, "scripts/benchmark.py", "--tiny", "--decoders", "mlp", "--batch-sizes", "4",
           "--outer-steps", "2", "4", "--repeats", "2", "--warmup", "1", "--compile-backend", "aot_eager",
           "--overhead-batch", "4", "--overhead-steps", "4", "--overhead-repeats", "3", "--overhead-modes", "eager",
           "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "benchmark.json").read_text())
    cuda = result["device"].startswith("cuda")
    jax = importlib.util.find_spec("jax") is not None  # the JAX reference column (the jax extra), on a CPU
    fast = "cuda_graph" if cuda else "torch_compile"
    assert result["settings"]["modes"] == [fast]
    assert [r["model"] for r in result["overhead"]] == list(OVERHEAD_MODELS)
    for row in result["overhead"]:  # the minimal loop beside the project's, both preconditioners
        assert row["minimal_ms"] > 0 and row["none_ms"] > 0 and row["adam_ms"] > 0
        assert row["none_ratio_iqr"][0] <= row["none_ratio"] <= row["none_ratio_iqr"][1]
        assert ("jax_ms" in row) == (jax and not cuda) and ("none_ratio_jax" in row) == (jax and not cuda)
    [inner] = result["inner"]
    assert inner["eager_ms"] > 0 and inner[f"{fast}_ms"] > 0 and inner["minimal_ms"] > 0
    assert inner[f"{fast}_speedup"] == inner["eager_ms"] / inner[f"{fast}_ms"]
    assert (inner["raw_graph_ms"] is not None) == cuda
    assert [(r["steps"], r["mode"]) for r in result["outer"]] == [(2, "eager"), (2, fast), (4, "eager"), (4, fast)]
    for row in result["outer"]:
        assert row["lpc_ms"] > 0 and row["lpc_over_vae"] == row["lpc_ms"] / row["vae_ms"]
        assert row["lpc_ms"] * 2 < row["fit_ms"]  # the median of 2 timed steps is their mean, and they lie inside the fit
    assert [r["mode"] for r in result["memory"]] == ["eager", fast]
    assert all((r["peak_ratio"] is not None) == (r["reserved_ratio"] is not None) == cuda for r in result["memory"])
    [match] = result["match"]
    assert match["max_abs_diff"] < 1e-4  # the fast chain is eager's for the same noise
    [precision] = result["precision"]
    assert 0 < precision["bf16"]["grad_rel_err"] < 0.1  # bf16 differs from fp32, but not wildly
    report = (tmp_path / "benchmark.md").read_text()
    assert "| mlp z8-512-64, Bernoulli | 4 | 4 |" in report and "| mlp | 4 | 2 | eager |" in report and "logged every 10 steps" in report and result["commit"] in report
