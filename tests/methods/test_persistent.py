"""Persistent chains (warmstart=persistent): each training example's chain starts where its last
one ended, also after resuming from a checkpoint."""

from __future__ import annotations

import pytest
import torch
from conftest import NoHostSync

from lpc.config.build import build
from lpc.errors import ConfigError
from lpc.jobs.train import train
from lpc.methods.warmstart import PersistentInit


def test_chains_restart_from_the_stored_latents():
    init = PersistentInit(latent_dim=3, scale=0.0)  # fresh starts are 0, so stored ones stand out
    x = torch.zeros(4, 1, 2, 2)
    index = torch.tensor([5, 0, 9, 2])
    init.reserve(10, x.device)  # the training set's size
    assert (init(x, index).z0 == 0).all()  # first visit
    z = torch.randn(4, 3)
    with NoHostSync():  # a training step reads and writes the buffer without waiting for the device
        init.store(index, z, keep=torch.tensor([True, True, False, True]))  # example 9's chain diverged
        z0 = init(x[:3], torch.tensor([9, 2, 5])).z0
    assert (z0[0] == 0).all() and torch.equal(z0[1], z[3]) and torch.equal(z0[2], z[0])
    assert (init(x, None).z0 == 0).all()  # validation passes no index
    restored = PersistentInit(latent_dim=3, scale=0.0)
    restored.load_state_dict(init.state_dict())  # the buffer travels in the module's state (checkpoints)
    assert torch.equal(restored(x[:3], torch.tensor([9, 2, 5])).z0, z0)


def test_persistent_chains_refuse_several_chains_before_training(compose_cfg):
    with pytest.raises(ConfigError, match="model: warmstart=persistent keeps one chain per example: set sampler.chains=1"):
        build(compose_cfg("warmstart=persistent", "sampler.chains=2"))


def test_persistent_chains_continue_after_a_resume(compose_cfg, tmp_path):
    """25 steps, then a resume to 50, ends where 50 uninterrupted steps do: the resumed half (a
    second epoch over the 1,350 training digits) starts its chains from the checkpointed buffer."""
    args = ["warmstart=persistent", "num_steps=10", "burn_in=5", "trainer.val_check_interval=25", "eval=fast",
            "eval.sample_quality.enabled=false", "logger=csv", "callbacks=model_checkpoint", "trainer.enable_progress_bar=false"]
    whole = train(compose_cfg(*args, "trainer.max_steps=50", f"paths.output_dir={tmp_path / 'whole'}"))
    train(compose_cfg(*args, "trainer.max_steps=25", f"paths.output_dir={tmp_path / 'first'}"))
    ckpt = tmp_path / "first" / "checkpoints" / "last.ckpt"
    buffer = torch.load(ckpt, weights_only=False)["state_dict"]["warmstart._extra_state"]
    assert buffer["stored"].sum() > 1340 and buffer["latents"].abs().sum() > 0  # 25 x 64 visits of 1,350 examples
    resumed = train(compose_cfg(*args, "trainer.max_steps=50", f"ckpt_path={ckpt}", f"paths.output_dir={tmp_path / 'resumed'}"))
    compared = [k for k in whole if k.split("/")[0] in ("train", "val", "test")]
    assert len(compared) > 10
    for key in compared:
        assert resumed[key] == pytest.approx(whole[key], rel=1e-5, abs=1e-6), key
    # a chain that starts from its example's last latent starts far nearer the posterior than one from the prior
    assert whole["train/energy_init"] < 0.5 * whole["val/energy_init"]
