"""Sweeps through Hydra's own engines: multirun with W&B groups, the Optuna sweeper, the submitit
launcher, and jobs that diverge without stopping the sweep."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import ROOT
from wandb_records import run_info

TINY = ["trainer.max_steps=4", "trainer.val_check_interval=2", "burn_in=2", "eval=fast", "trainer.enable_progress_bar=false"]


def multirun(sweep_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "train.py", "-m", *overrides, f"hydra.sweep.dir={sweep_dir}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}"
    return proc


def test_a_2x2_multirun_is_four_runs_in_one_wandb_group(tmp_path):
    sweep = tmp_path / "sweep"
    multirun(sweep, "step_size=0.1,0.2", "precond=none,adam", "num_steps=4", *TINY)
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [j.name for j in jobs] == ["0", "1", "2", "3"]
    runs = []
    for job in jobs:
        assert json.loads((job / "metrics.json").read_text())["global_step"] == 4
        (run_file,) = job.glob("wandb/offline-run-*/run-*.wandb")
        runs.append(run_info(run_file))
    assert {r["group"] for r in runs} == {f"train_{sweep.name}"}
    assert len({r["id"] for r in runs}) == 4
    swept = {(r["config"]["step_size"], r["config"]["precond"]["_target_"].rsplit(".", 1)[-1]) for r in runs}
    assert swept == {(0.1, "IdentityPreconditioner"), (0.2, "IdentityPreconditioner"),
                     (0.1, "AdamPreconditioner"), (0.2, "AdamPreconditioner")}
    assert all("step_size=" in r["name"] and "precond=" in r["name"] for r in runs)


def test_a_diverging_job_fails_alone_and_the_sweep_keeps_the_others(tmp_path):
    sweep = tmp_path / "sweep"
    proc = multirun(sweep, "step_size=1e9,0.1", "precond=none", "model.on_divergence=raise", "num_steps=4",
                    "logger=csv", *TINY)
    assert "DivergenceError" in proc.stdout + proc.stderr
    assert not (sweep / "0" / "metrics.json").exists()
    assert json.loads((sweep / "1" / "metrics.json").read_text())["global_step"] == 4


def test_optuna_search_finishes_its_trials_and_reports_the_best(tmp_path):
    sweep = tmp_path / "optuna"
    multirun(sweep, "hparams_search=lpc_optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.n_startup_trials=2",
             "hydra.sweeper.params.num_steps='choice(12,14)'", "logger=csv", *TINY)
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(result["best_params"]) == {"step_size", "num_steps"}
    trials = [json.loads((sweep / str(i) / "metrics.json").read_text()) for i in range(3)]
    assert result["best_value"] == max(t["val/elbo"] for t in trials)


def test_submitit_local_launches_the_jobs(tmp_path):
    sweep = tmp_path / "submitit"
    multirun(sweep, "hydra/launcher=local", "step_size=0.1,0.2", "num_steps=4", "logger=csv", *TINY)
    for job in ("0", "1"):
        assert json.loads((sweep / job / "metrics.json").read_text())["global_step"] == 4
    assert list(sweep.glob(".submitit/*/*_submitted.pkl"))  # went through submitit, not the basic launcher
