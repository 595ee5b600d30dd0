"""Shared fixtures: the repository root, Hydra composition into a temporary output folder, and
helpers that run the real ``train.py``."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

import lpc.resolvers  # noqa: F401 - the configs' ${lpc.*:} resolvers

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10" / "cifar10_jpeg.zip"
os.environ.setdefault("LPC_ROOT", str(ROOT))
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(2)


@pytest.fixture
def compose_cfg(tmp_path: Path):
    """compose_cfg(*overrides) -> the train config as `python train.py <overrides>` would see it,
    writing into tmp_path."""

    def _compose(*overrides: str) -> DictConfig:
        with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "configs")):
            cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
        OmegaConf.set_readonly(cfg.hydra, False)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(tmp_path)
            cfg.hydra.runtime.cwd = str(ROOT)
            cfg.hydra.job.num = 0
            cfg.paths.log_dir = str(tmp_path)
        HydraConfig.instance().set_config(cfg)
        return cfg

    return _compose


def run_train(tmp_path: Path, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python train.py <overrides>`` in the repository with its output folder at tmp_path."""
    cmd = [sys.executable, "train.py", *overrides, f"hydra.run.dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def read_metrics(run_dir: Path, key: str) -> list[float]:
    """The logged values of ``key`` in a run's csv/metrics.csv, in order."""
    with open(run_dir / "csv" / "metrics.csv") as f:
        return [float(row[key]) for row in csv.DictReader(f) if row.get(key)]
