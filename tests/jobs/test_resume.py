"""Resuming: the data order and the random streams continue where a killed run stopped, so the
resumed run ends exactly where an uninterrupted one does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_train

from lpc.data.sampling import EpochSampler
from lpc.errors import CheckpointError
from lpc.jobs.resume import find_resume_checkpoint

FAST = ["trainer.max_steps=60", "trainer.val_check_interval=30", "callbacks.model_checkpoint.every_n_train_steps=20",
        "eval=fast", "num_steps=10", "burn_in=5", "seed=3", "trainer.enable_progress_bar=false"]


def test_ranks_together_read_the_batches_of_one_process():
    single = list(EpochSampler(10, seed=1))
    ranks = [list(EpochSampler(10, seed=1, num_replicas=2, rank=r)) for r in range(2)]
    for j in range(0, 5, 2):  # batch of 2 per rank = batch of 4 of one process
        assert sorted(ranks[0][j:j + 2] + ranks[1][j:j + 2]) == sorted(single[2 * j:2 * j + 4])
    assert sorted(ranks[0] + ranks[1]) == sorted(single)


def test_order_follows_seed_and_epoch_and_resumes_mid_epoch():
    sampler = EpochSampler(20, seed=5)
    first = list(sampler)
    assert list(EpochSampler(20, seed=5)) == first and list(EpochSampler(20, seed=6)) != first
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(second) == list(range(20)) and second != first
    sampler.resume_at(1, 8)
    assert list(sampler) == second[8:]  # the first pass after a checkpoint starts where it stopped
    assert list(sampler) == second  # later passes read whole epochs again
    assert list(EpochSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]


def wait_for(pattern: str, root: Path, proc: subprocess.Popen, timeout: float = 300) -> Path:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        found = list(root.glob(pattern))
        if found:
            return found[0]
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {pattern} appeared:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"no {pattern} after {timeout} s")


def test_a_killed_run_resumes_to_the_same_final_metrics(tmp_path):
    run_train(tmp_path / "whole", *FAST, "logger=csv")
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())

    logs = tmp_path / "logs"
    cmd = [sys.executable, "train.py", *FAST, f"paths.log_dir={logs}"]
    # each run its own W&B service, as separate jobs have (not one inherited from this test process)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_SERVICE")}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    wait_for("train/runs/*/checkpoints/last.ckpt", logs, proc)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    killed_dir = next(logs.glob("train/runs/*"))
    assert not (killed_dir / "metrics.json").exists()
    saved = torch.load(killed_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert 0 < saved["global_step"] < 60 and saved["train_rng"] is not None and saved["wandb_run_id"]

    time.sleep(1.1)  # the resumed run gets its own (per-second) folder
    resumed = subprocess.run([*cmd, "resume=true"], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    out = resumed.stdout + resumed.stderr
    assert "continuing from" in out and f"resuming W&B run {saved['wandb_run_id']}" in out
    new_dir = next(d for d in logs.glob("train/runs/*") if d != killed_dir)
    final = json.loads((new_dir / "metrics.json").read_text())
    assert final["global_step"] == whole["global_step"] == 60
    compared = [k for k in whole if k.split("/")[0] in ("train", "val", "eval")]
    assert len(compared) > 10
    for key in compared:
        assert final[key] == pytest.approx(whole[key], rel=1e-5, abs=1e-6), key
    # the resumed run logs on to the killed run's W&B run
    assert list(new_dir.glob(f"wandb/offline-run-*-{saved['wandb_run_id']}"))


def test_resume_finds_the_latest_run_of_the_same_command(tmp_path):
    def fake_run(name: str, overrides: list[str]) -> Path:
        run = tmp_path / "train" / name
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
        return run / "checkpoints" / "last.ckpt"

    old = fake_run("runs/a", ["step_size=0.1"])
    fake_run("runs/b", ["step_size=0.2"])
    job = fake_run("multiruns/m/0", ["step_size=0.1", "trainer.max_steps=10"])
    current = tmp_path / "train" / "runs" / "now"
    assert find_resume_checkpoint(tmp_path / "train", ["step_size=0.1", "resume=true"], current) in (old, job)
    job.touch()
    assert find_resume_checkpoint(tmp_path / "train", ["step_size=0.1", "trainer.max_steps=99"], current) == job
    with pytest.raises(CheckpointError, match="resume=true found no earlier run with the overrides"):
        find_resume_checkpoint(tmp_path / "train", ["step_size=0.3"], current)
