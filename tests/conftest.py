"""Shared fixtures (the repository root, Hydra composition into a temporary output folder), helpers
that run the real ``train.py``, and ``NoHostSync``, a guard against host synchronisation."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig
from torch.utils._python_dispatch import TorchDispatchMode

from lpc.config.compose import compose_config

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10" / "cifar10_jpeg.zip"
SHARED_MNIST_T10K = ROOT.parent / "shared" / "data" / "mnist-t10k"
os.environ.setdefault("LPC_ROOT", str(ROOT))
os.environ.setdefault("WANDB_SILENT", "true")
# Under pytest-xdist (the README's `-n 2`: one worker per core) each worker, and each train.py it
# starts, uses one thread: two workers of two threads each on two cores slow each other's OpenMP
# down many times over. Run alone, the tests use both cores.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1 if "PYTEST_XDIST_WORKER" in os.environ else 2)


@pytest.fixture
def compose_cfg(tmp_path: Path):
    """compose_cfg(*overrides) -> the train config as `python train.py <overrides>` would see it,
    writing into tmp_path."""

    def _compose(*overrides: str) -> DictConfig:
        return compose_config(list(overrides), tmp_path)

    return _compose


def run_train(tmp_path: Path, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python train.py <overrides>`` in the repository with its output folder at tmp_path."""
    cmd = [sys.executable, "train.py", *overrides, f"hydra.run.dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def metric_rows(run_dir: Path, key: str) -> list[dict[str, str]]:
    """The rows of a run's csv/metrics.csv that hold a value of ``key``, in order."""
    with open(run_dir / "csv" / "metrics.csv") as f:
        return [row for row in csv.DictReader(f) if row.get(key)]


def read_metrics(run_dir: Path, key: str) -> list[float]:
    """The logged values of ``key`` in a run's csv/metrics.csv, in order."""
    return [float(row[key]) for row in metric_rows(run_dir, key)]


def read_metrics_by_step(run_dir: Path, key: str) -> dict[int, float]:
    """The logged values of ``key`` in a run's csv/metrics.csv, by the step they were written at."""
    return {int(row["step"]): float(row[key]) for row in metric_rows(run_dir, key)}


aten = torch.ops.aten
SYNCING = {aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default,
           aten.equal.default, aten._unique2.default, aten.repeat_interleave.Tensor}


class NoHostSync(TorchDispatchMode):
    """Fails on every op that makes the host wait for the device: a value read into Python (.item(),
    bool(), int(), float()), a data-dependent shape (nonzero, boolean-mask indexing, masked_select,
    unique). On a GPU each is a synchronisation per step, and inside a CUDA-graph capture an error;
    on a CPU this finds them before a GPU does."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        boolean_index = func in (aten.index.Tensor, aten.index_put_.default, aten.index_put.default) and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] if i is not None)
        if func in SYNCING or boolean_index:
            raise AssertionError(f"{func} waits for the device")
        return func(*args, **(kwargs or {}))
