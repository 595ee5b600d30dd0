"""The real trainer, end to end, through train.py and through lpc.jobs.train.train."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, SHARED_CIFAR, read_metrics, read_metrics_by_step, run_train

from lpc.config.compose import compose_config
from lpc.jobs.train import train
from lpc.methods.base import GenerativeModule

FAST = ["num_steps=10", "burn_in=4", "trainer.max_steps=30", "trainer.val_check_interval=15",
        "logger=csv"]


def without_clocks(metrics: dict[str, float]) -> dict[str, float]:
    """A run's final metrics but the wall-clock ones (``*_ms``), which no two runs share."""
    return {k: v for k, v in metrics.items() if not k.endswith("_ms")}


@pytest.mark.slow
def test_default_run_learns_and_writes_everything(tmp_path):
    """`python train.py` exactly as the README runs it: the embedded default, W&B offline + CSV."""
    run_train(tmp_path)
    recon = read_metrics(tmp_path, "train/recon_mse")
    assert len(recon) >= 50 and all(map(torch.isfinite, torch.tensor(recon)))
    first, last = sum(recon[:3]) / 3, sum(recon[-3:]) / 3
    assert last < 0.35 * first, f"reconstruction error did not fall clearly: {first:.4f} -> {last:.4f}"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["global_step"] == 800 and metrics["val/recon_mse"] < 0.35 * first
    assert {"train/energy", "train/energy_last", "train/elbo", "train/precond_scale", "cost/decoder_evals"} <= set(metrics)
    for kind in ("data", "recon", "samples"):
        assert (tmp_path / "images" / f"{kind}_step000000.png").exists()
        assert (tmp_path / "images" / f"{kind}_step000800.png").exists()
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 800 and ckpt["hyper_parameters"]["step_size"] == 0.2
    assert len(list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))) == 1


@pytest.mark.parametrize("precond", ["none", "adam"])
def test_train_py_runs_with_each_preconditioner(tmp_path, precond):
    run_train(tmp_path, "model=pc_langevin", f"precond={precond}", "step_size=0.02", *FAST,
              "callbacks.image_grids.every_n_steps=15")
    energy = read_metrics(tmp_path, "train/energy")
    scale = read_metrics(tmp_path, "train/precond_scale")
    assert energy[-1] < energy[0]
    assert all(s == 1.0 for s in scale) if precond == "none" else all(0 < s < 1.0 for s in scale)
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()


def test_same_seed_gives_identical_metrics(compose_cfg):
    runs = []
    for _ in range(2):
        cfg = compose_cfg("seed=7", "callbacks=none", *FAST)
        runs.append(without_clocks(train(cfg)))
    assert runs[0] == runs[1] and len(runs[0]) > 10
    other = train(compose_cfg("seed=8", "callbacks=none", *FAST))
    assert other["train/energy"] != runs[0]["train/energy"]


@pytest.mark.parametrize("model", ["warmstart=forward_kl", "model=vae"])
def test_metrics_are_made_on_logging_steps_only_and_leave_training_unchanged(tmp_path, monkeypatch, model):
    """With log_every_n_steps=7 over 30 steps, the train metrics are computed and logged on steps 7, 14,
    21, 28 (what Lightning writes) and the last, 30; the rows written, and the final metrics, are those
    of the run that logs every step (the metrics' draws do not touch the training stream)."""
    made, log_metrics = [], GenerativeModule.log_metrics

    def counted(self, stage: str, *args) -> None:
        if stage == "train":
            made.append(self.global_step)
        log_metrics(self, stage, *args)

    monkeypatch.setattr(GenerativeModule, "log_metrics", counted)
    runs = {}
    for every in (1, 7):
        made.clear()
        out = tmp_path / str(every)
        runs[every] = train(compose_config(["seed=3", model, "callbacks=none", *FAST,
                                            f"trainer.log_every_n_steps={every}"], out)), out
    # global_step is read after the decoder's optimizer step: step k logs with global_step == k
    assert made == [7, 14, 21, 28, 30]
    (every_step, dense), (sparse_metrics, sparse) = runs[1], runs[7]
    assert without_clocks(sparse_metrics) == without_clocks(every_step)
    for key in ("train/energy", "train/loss", "cost/decoder_evals"):
        written = read_metrics_by_step(sparse, key)
        assert sorted(written) == [6, 13, 20, 27]  # Lightning's 0-based step of the 7th, 14th, ... batch
        assert written == {step: v for step, v in read_metrics_by_step(dense, key).items() if step in written}


def test_missing_dataset_fails_at_start_with_the_fix(tmp_path):
    cmd = [sys.executable, "train.py", "data=mnist", f"data.root={tmp_path / 'nodata'}", "data.download=false",
           f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out
    assert "DatasetNotFoundError" in out and "MNIST/raw" in out and "data.root" in out
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.skipif(not SHARED_CIFAR.exists(), reason="needs ../shared/data/cifar10/cifar10_jpeg.zip")
def test_cifar10_from_the_folder_zip(tmp_path):
    run_train(tmp_path, "data=folder", f"data.root={SHARED_CIFAR}", "decoder=dcgan32", "decoder.widths=[32,16,16]",
              "batch_size=16", "latent_dim=32", "trainer.max_steps=3", "trainer.limit_val_batches=2", "num_steps=4", "burn_in=1",
              "logger=csv", "trainer.log_every_n_steps=1", "eval=fast", "eval.sample_quality.num_samples=100",
              "callbacks.image_grids.num_images=16")
    assert read_metrics(tmp_path, "train/energy")
    assert (tmp_path / "images" / "samples_step000003.png").exists()


def test_every_run_ends_with_a_validation(compose_cfg):
    """max_steps need not be a multiple of val_check_interval: the final val/ metrics are there."""
    metrics = train(compose_cfg("num_steps=7", "burn_in=1", "trainer.max_steps=7", "trainer.val_check_interval=400",
                                "logger=csv", "callbacks=evaluation", "eval=fast", "eval.sample_quality.enabled=false"))
    assert {"val/energy", "val/recon_mse", "val/elbo", "val/elbo_chain", "test/elbo_chain"} <= set(metrics)


def test_multirun_jobs_get_their_own_wandb_runs(tmp_path):
    cmd = [sys.executable, "train.py", "-m", "step_size=0.01,0.02", "num_steps=4", "burn_in=1", "trainer.max_steps=3", "trainer.limit_val_batches=2",
           "callbacks=none", f"hydra.sweep.dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job in ("0", "1"):
        assert len(list((tmp_path / job / "wandb").glob("offline-run-*/run-*.wandb"))) == 1, job


@pytest.mark.skipif(not SHARED_CIFAR.exists(), reason="needs ../shared/data/cifar10/cifar10_jpeg.zip")
def test_cifar10_preset_trains_the_paper_model_family_and_sigma_moves(tmp_path):
    """experiment=cifar10_lpc (Higgins nets, discretised Gaussian with learned scale, [-1, 1] pixels,
    Jeffreys warm-start), reading CIFAR-10 from the zip, with a cheap chain and evaluation."""
    run_train(tmp_path, "experiment=cifar10_lpc", f"data.root={SHARED_CIFAR}", "trainer.max_steps=6", "batch_size=16",
              "num_steps=3", "burn_in=1", "data.num_workers=0", "logger=csv", "trainer.log_every_n_steps=1",
              "callbacks=none")
    sigma = read_metrics(tmp_path, "train/sigma")
    # it starts at 1 and follows the RMS reconstruction error of each batch (sigma_mode=optimal)
    assert len(sigma) == 6 and max(sigma) < 0.9 and len(set(sigma)) == 6, sigma
    assert read_metrics(tmp_path, "train/encoder_loss")


def test_early_stopping_reads_the_validation_log_likelihood(compose_cfg, tmp_path):
    """'callbacks=[default,early_stopping]': asked for an impossible improvement, the run stops at its
    second validation, then scores the test split once, there."""
    train(compose_cfg("num_steps=4", "burn_in=2", "sampler.thin=1", "trainer.max_steps=30", "trainer.val_check_interval=5", "logger=csv",
                      "eval=fast", "eval.sample_quality.enabled=false", "callbacks=[default,early_stopping]",
                      "callbacks.early_stopping.patience=1", "callbacks.early_stopping.min_delta=1e9"))
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["global_step"] == 10 and "test/log_likelihood" in summary
    assert read_metrics_by_step(tmp_path, "test/log_likelihood").keys() == {10}


def test_the_best_checkpoint_is_chosen_on_the_validation_split(compose_cfg, tmp_path):
    """callbacks.model_checkpoint.monitor=val/log_likelihood: the checkpoint kept as best is the one whose
    validation log-likelihood (evaluated just before Lightning saves) was highest."""
    train(compose_cfg("num_steps=4", "burn_in=2", "sampler.thin=1", "trainer.max_steps=15", "trainer.val_check_interval=5",
                      "logger=csv", "eval=fast", "eval.sample_quality.enabled=false", "callbacks.image_grids.every_n_steps=0",
                      "callbacks.model_checkpoint.monitor=val/log_likelihood", "callbacks.model_checkpoint.mode=max"))
    by_step = read_metrics_by_step(tmp_path, "val/log_likelihood")
    assert set(by_step) == {5, 10, 15}
    best = max(by_step, key=by_step.get)
    assert [p.name for p in (tmp_path / "checkpoints").glob("step_*.ckpt")] == [f"step_{best:06d}.ckpt"]


def test_a_run_records_the_commit_of_the_code_it_loaded(compose_cfg, tmp_path, monkeypatch):
    """A multirun's jobs share one process: each records the commit read when lpc was loaded, not
    HEAD when it finishes (which later commits may have moved)."""
    import json

    import lpc.jobs.train
    import lpc.reporting.provenance

    monkeypatch.setattr(lpc.jobs.train, "CODE_COMMIT", "0123456789ab")
    monkeypatch.setattr(lpc.reporting.provenance, "commit", lambda *a: "moved-since")
    train(compose_cfg("callbacks=none", *FAST))
    assert json.loads((tmp_path / "metrics.json").read_text())["provenance"]["commit"] == "0123456789ab"
