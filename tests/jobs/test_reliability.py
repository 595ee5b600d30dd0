"""Bad input of every kind: each fails with a message that names the fix, and nothing finished is lost."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import zipfile

import pytest
import torch
from conftest import ROOT, read_metrics
from lightning import Callback
from test_data import write_images, zip_folder
from test_train import FAST

from lpc.config.build import build
from lpc.config.checks import validate_config
from lpc.data import DatasetNotFoundError, FolderDataModule
from lpc.errors import CheckpointError, ConfigError, CorruptDataError, DivergenceError
from lpc.jobs.checkpoints import AtomicCheckpointIO, check_resumable, read_checkpoint
from lpc.jobs.loggers import wandb_logger
from lpc.jobs.train import train

BAD_CONFIGS = [
    (["step_size=0"], "step_size must be > 0, got 0"),
    (["step_size=-0.1"], "step_size must be > 0"),
    (["step_size=fast"], "sampler.step_size='fast': expected a number"),
    (["num_steps=0"], "num_steps (T) must be >= 1, got 0"),
    (["burn_in=50"], "burn_in must be in [0, num_steps=50), got 50"),
    (["batch_size=0"], "data.batch_size must be >= 1, got 0"),
    (["latent_dim=0"], "latent_dim must be >= 1"),
    (["prior=hierarchical", "prior.sizes=[8,16]", "latent_dim=32"], "set latent_dim to the last of prior.sizes"),
    (["prior=hierarchical", "+prior.size=[8,16]"], "unknown key prior.size (did you mean sizes?)"),
    (["prior=hierarchical", "prior.sigma=[1.0,2.0]"], "prior.sigma must be one number > 0 or 1 of them"),
    (["+data.batchsize=4"], "unknown key data.batchsize (did you mean batch_size?)"),
    (["+sampler.stepsize=0.1"], "unknown key sampler.stepsize (did you mean step_size?)"),
    (["trainer.max_steps=many"], "trainer.max_steps='many': expected an integer"),
    (["data.channels=2"], "data.channels must be 1 or 3, got 2"),
    (["data.binarize=sometimes"], "data.binarize must be one of ['none', 'dynamic', 'fixed']"),
    (["likelihood.sigma=0"], "likelihood.sigma must be > 0, got 0"),
    (["likelihood=discretized_gaussian", "likelihood.sigma_mode=learned"],
     "likelihood.sigma_mode must be one of ['fixed', 'param', 'optimal', 'ema'], got 'learned'"),
    (["precond.beta=1.0"], "precond.beta must be in [0, 1), got 1.0"),
    (["model.on_divergence=ignore"], "model.on_divergence must be one of ['raise', 'reset', 'backoff']"),
    (["model.grad_from=first"], "model.grad_from must be one of ['chain_mean', 'last']"),
    (["sampler.thin=0"], "thin must be >= 1, got 0"),
    (["decoder.act=swish"], "activation must be one of"),
    (["decoder=dcgan32"], "the decoder outputs images of shape (1, 32, 32) but data=digits gives (1, 8, 8)"),
    (["warmstart=jeffreys", "encoder=higgins32"], "the encoder reads images of shape (1, 32, 32)"),
    (["likelihood=discretized_gaussian", "data.pixel_range=[0.0,1.0]"], "expects pixels in [-1.0, 1.0]"),
    (["likelihood=bernoulli", "data.binarize=none"], "needs binarised pixels but data.binarize=none"),
    (["warmstart=jeffreys", "warmstart.objective=kl"], "warmstart objective must be one of"),
    (["data=folder"], "data.root is required: set data.root=<value>"),
    (["likelihood=gaussian_learned", "likelihood.min_sigma=0"], "likelihood.min_sigma must be > 0, got 0"),
    (["trainer.precision=16-mixed"], "trainer.precision=16-mixed is not supported"),
    (["+logger.wandb.ofline=true"], "unknown key logger.wandb.ofline (did you mean offline?)"),
    (["resume=sometimes"], "resume='sometimes': expected true, false or auto"),
]


@pytest.mark.parametrize("overrides,message", BAD_CONFIGS, ids=[" ".join(o) for o, _ in BAD_CONFIGS])
def test_bad_config_is_refused_naming_the_key_and_value(compose_cfg, overrides, message):
    with pytest.raises(ConfigError) as err:
        build(compose_cfg(*overrides))
    assert message in str(err.value)


class Broken:
    """A target whose constructor has a bug (not a refused value)."""

    def __init__(self):
        raise KeyError("a bug")


def test_a_bug_in_a_constructor_keeps_its_traceback(compose_cfg):
    with pytest.raises(Exception) as err:
        build(compose_cfg("sampler._target_=test_reliability.Broken", "~sampler.step_size",
                          "~sampler.num_steps", "~sampler.burn_in", "~sampler.thin", "~sampler.chains",
                          "~sampler.preconditioner", "~sampler.freeze_precond", "~sampler.max_latent_norm",
                          "~sampler.compile", "~sampler.compile_options", "~sampler.compile_chunk"))
    assert not isinstance(err.value, ConfigError) and "a bug" in str(err.value)


@pytest.mark.parametrize("added,message", [
    ("+num_step=10", "unknown key num_step: nothing reads it, so it would train with the setting ignored; did you mean num_steps?"),
    ("+nonexistent_key=1", "unknown key nonexistent_key: nothing reads it"),
    ("+eval.fid_samples=5", "unknown key eval.fid_samples"),  # inside a _target_ node: its arguments are listed
    ("+callbacks.every=3", "unknown key callbacks.every: nothing reads it"),
])
def test_a_key_added_that_nothing_reads_is_refused_with_the_closest_real_one(compose_cfg, added, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(compose_cfg(added))


def test_added_keys_that_something_reads_are_allowed(compose_cfg):
    validate_config(compose_cfg("+extra.note=hello", "+extra.n=1",
                                "+callbacks.calm._target_=lightning.pytorch.callbacks.Timer",
                                "+sampler.compile_options.backend=aot_eager"))


def test_a_typo_on_the_command_line_exits_within_seconds_naming_the_real_key(tmp_path):
    proc = subprocess.run([sys.executable, "train.py", "+step_sizes=0.1", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown key step_sizes" in proc.stderr + proc.stdout
    assert "did you mean step_size?" in proc.stderr + proc.stdout and not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize("script", ["train.py", "scripts/evaluate.py", "scripts/complete.py"])
def test_a_renamed_key_is_refused_naming_the_new_one(script, tmp_path):
    """eval.fid holds every sample-quality setting and is now eval.sample_quality."""
    proc = subprocess.run([sys.executable, script, "eval.fid.num_samples=100", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and not (tmp_path / "run").exists()
    assert "eval.fid is now eval.sample_quality: write eval.sample_quality.num_samples=100" in proc.stderr


def test_callback_settings_are_checked_before_the_data_is_read(compose_cfg, tmp_path):
    with pytest.raises(ConfigError, match="callbacks.evaluation.every_n_steps must be a whole number of steps"):
        train(compose_cfg("trainer.val_check_interval=0.5"))
    assert not any(tmp_path.iterdir())


def test_bad_config_on_the_command_line_is_one_line_and_writes_nothing(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "train.py", "burn_in=80", f"hydra.run.dir={run}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "ConfigError: sampler: burn_in must be in [0, num_steps=50), got 80" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    assert not (run / "checkpoints").exists() and not (run / "metrics.json").exists() and not (run / "csv").exists()


DIVERGING = ["precond=none", "step_size=3.0", "callbacks=model_checkpoint", *FAST, "trainer.log_every_n_steps=1"]


def test_divergence_raise_stops_with_the_step_size_and_the_fix(compose_cfg):
    with pytest.raises(DivergenceError, match=r"chains diverged at step 0 with step_size=3: use precond=adam or a smaller"):
        train(compose_cfg(*DIVERGING, "model.on_divergence=raise"))


def test_divergence_reset_leaves_diverged_chains_out_and_learns_from_the_rest(compose_cfg, tmp_path):
    """A small max_latent_norm makes part of every batch 'diverge': those chains are left out, the
    others teach the decoder, and the weights stay finite."""
    metrics = train(compose_cfg("precond=none", "step_size=0.02", "sampler.max_latent_norm=1.5", *FAST,
                                "callbacks=model_checkpoint", "trainer.log_every_n_steps=1"))
    frac = read_metrics(tmp_path, "train/diverged_frac")
    assert len(frac) == 30 and any(0 < f < 1 for f in frac)
    updated = read_metrics(tmp_path, "train/updated")  # a step whose chains all diverged learns nothing
    assert updated == [float(f < 1) for f in frac] and sum(updated) >= 20
    assert metrics["train/diverged_total"] == pytest.approx(64 * sum(frac))
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values()) and ckpt["diverged_total"] > 0


def test_divergence_backoff_shrinks_the_step_until_chains_hold(compose_cfg, tmp_path):
    metrics = train(compose_cfg(*DIVERGING, "model.on_divergence=backoff"))
    assert metrics["train/step_size"] == pytest.approx(1.5)
    frac = read_metrics(tmp_path, "train/diverged_frac")
    assert frac[0] == 1.0 and frac[-1] == 0.0
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values())
    assert ckpt["sampler_step_size"] == pytest.approx(1.5)  # kept, so a resumed run continues with it


def test_divergence_reset_stops_when_nothing_is_learned(compose_cfg):
    with pytest.raises(DivergenceError, match="every Langevin chain diverged on 6 consecutive steps .*nothing is being learned"):
        train(compose_cfg(*DIVERGING, "model.on_divergence=reset", "model.max_all_diverged_steps=5"))


class PoisonDecoder(Callback):
    """Turns a decoder weight into NaN before training step ``at``."""

    def __init__(self, at: int):
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at:
            with torch.no_grad():
                next(pl_module.decoder.parameters()).fill_(float("nan"))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(compose_cfg, tmp_path):
    cfg = compose_cfg("model=vae", "callbacks=model_checkpoint", "callbacks.model_checkpoint.every_n_train_steps=5",
                      "+callbacks.poison._target_=test_reliability.PoisonDecoder", "+callbacks.poison.at=12", *FAST)
    with pytest.raises(DivergenceError, match="non-finite training loss or gradient at step 12.*last good one"):
        train(cfg)
    ckpt = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 10 and all(torch.isfinite(t).all() for t in ckpt["state_dict"].values())
    assert not (tmp_path / "metrics.json").exists()


KILLED_SAVE = """
import os, sys, time, torch
from lpc.jobs.checkpoints import AtomicCheckpointIO
real_save = torch.save
def slow_save(obj, f):
    f.write(b"partial checkpoint bytes")
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
torch.save = slow_save
AtomicCheckpointIO().save_checkpoint({"new": 1}, sys.argv[1])
"""


def test_sigkill_while_saving_leaves_the_last_checkpoint_loadable(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    good = {"state_dict": {"w": torch.arange(3.0)}, "hyper_parameters": {"model": {"_target_": "x"}}, "global_step": 7}
    AtomicCheckpointIO().save_checkpoint(good, path)
    child = subprocess.Popen([sys.executable, "-c", KILLED_SAVE, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"  # the child is in the middle of writing
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    kept = read_checkpoint(path)
    assert kept["global_step"] == 7 and torch.equal(kept["state_dict"]["w"], torch.arange(3.0))
    AtomicCheckpointIO().save_checkpoint({**good, "global_step": 8}, path)  # the next save replaces the leftover
    assert read_checkpoint(path)["global_step"] == 8 and not path.with_name("last.ckpt.tmp").exists()


def test_corrupt_truncated_and_incompatible_checkpoints_are_refused(compose_cfg, tmp_path):
    train(compose_cfg("callbacks=model_checkpoint", *FAST))
    real = tmp_path / "checkpoints" / "last.ckpt"
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00" * 100)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(real.read_bytes()[: real.stat().st_size // 2])
    _, model = build(compose_cfg(*FAST))
    for bad in (garbage, cut):
        with pytest.raises(CheckpointError, match="is not a readable checkpoint.*use the run's checkpoints/last.ckpt"):
            check_resumable(bad, model)
    _, other = build(compose_cfg("latent_dim=8"))
    with pytest.raises(CheckpointError, match=r"does not fit this model \(other shapes: energy.decoder.net.0.weight\).*latent_dim=16"):
        check_resumable(real, other)
    with pytest.raises(CheckpointError, match="no checkpoint at ckpt_path="):
        train(compose_cfg(f"ckpt_path={tmp_path / 'missing.ckpt'}", *FAST))


def test_corrupt_datasets_fail_with_the_path(tmp_path):
    src = tmp_path / "src"
    write_images(src, {"train/a": 3, "test/a": 2})
    # 1. a zip whose member is damaged: fails its CRC check at setup, naming the member
    damaged = zip_folder(src, tmp_path / "damaged.zip")
    data = bytearray(damaged.read_bytes())
    with zipfile.ZipFile(damaged) as zf:
        info = zf.getinfo("train/a/1.png")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 20 : start + 40] = bytes(20)
    damaged.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match=r"damaged.zip is a damaged zip file: member train/a/1.png fails its CRC"):
        FolderDataModule(root=damaged, batch_size=2).setup()
    # 2. a truncated image: reading it names the file, nothing is skipped
    (src / "train" / "a" / "2.png").write_bytes((src / "train" / "a" / "2.png").read_bytes()[:60])
    dm = FolderDataModule(root=src, image_size=8, channels=3, batch_size=2)
    dm.setup()
    with pytest.raises(CorruptDataError, match=r"cannot read image train/a/2.png in .*never skipped silently"):
        [dm.split(split)[i] for split in ("train", "val") for i in range(len(dm.split(split)))]
    # 3. the wrong layout: no test/ folder
    write_images(tmp_path / "no_test", {"train/a": 2})
    with pytest.raises(DatasetNotFoundError, match=r"no images in a test/ folder of .*expected layout: <root>/train/<class>/<image>"):
        FolderDataModule(root=tmp_path / "no_test", batch_size=2).setup()
    # 3b. a compressed (deflated) zip whose data is damaged
    deflated = tmp_path / "deflated.zip"
    with zipfile.ZipFile(deflated, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(src.rglob("*.png")):
            zf.write(p, p.relative_to(src).as_posix())
    data = bytearray(deflated.read_bytes())
    with zipfile.ZipFile(deflated) as zf:
        info = zf.getinfo("test/a/0.png")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start : start + 30] = bytes(range(30))
    deflated.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match="deflated.zip is a damaged zip file"):
        FolderDataModule(root=deflated, batch_size=2).setup()
    # 4. a zip cut short
    cut = tmp_path / "cut.zip"
    cut.write_bytes(zip_folder(src, tmp_path / "whole.zip").read_bytes()[:200])
    with pytest.raises(DatasetNotFoundError, match="is neither a directory nor a readable zip file"):
        FolderDataModule(root=cut, batch_size=2).setup()


def test_offline_wandb_does_not_try_the_network(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("offline W&B must not try to connect")

    monkeypatch.setattr("lpc.jobs.loggers.reachable", no_network)
    monkeypatch.setattr("socket.create_connection", no_network)
    assert wandb_logger(offline=True, save_dir=str(tmp_path), project="lpc")._offline


def test_a_corrupt_image_read_in_a_worker_is_reported_in_one_line(tmp_path):
    src = tmp_path / "src"
    write_images(src, {"train/a": 4, "test/a": 2})
    (src / "train" / "a" / "3.png").write_bytes(b"\x89PNG not really")
    cmd = [sys.executable, "train.py", "data=folder", f"data.root={src}", "data.image_size=8", "data.channels=1",
           "data.num_workers=1", "batch_size=2", "trainer.max_steps=4", "num_steps=3", "burn_in=1", "logger=csv",
           "callbacks=none", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "CorruptDataError" in line]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert "cannot read image train/a/3.png" in errors[0] and "Original Traceback" not in errors[0]


def test_online_wandb_without_a_network_falls_back_to_offline(compose_cfg, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    start = time.monotonic()
    with caplog.at_level(logging.WARNING):
        logger = wandb_logger(offline=False, connect_timeout=2.0, save_dir=str(tmp_path / "w"), project="lpc")
    assert time.monotonic() - start < 10
    assert logger._offline and sum("not reachable" in r.getMessage() for r in caplog.records) == 1
    fast = [o for o in FAST if not o.startswith("logger=")]
    metrics = train(compose_cfg("logger=wandb", "logger.wandb.offline=false", "logger.wandb.connect_timeout=2",
                                "callbacks=none", *fast))
    assert metrics["train/energy"] < 1e6
    assert len(list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))) == 1
