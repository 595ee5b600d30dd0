"""DDP on CPU (2 gloo processes) reaches what one process reaches on the same global batches."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_train

# deterministic chains (plain PC from z0 = 0, no preconditioner, at a step size where that gradient descent is
# stable: at 0.2 it is chaotic on some digits and amplifies float rounding) and SGD, so that the two runs can
# differ only through how the gradient of the global batch is computed; 296 test images split evenly
SAME = ["model=pc", "precond=none", "step_size=0.05", "warmstart.scale=0", "model.optimizer._target_=torch.optim.SGD",
        "model.optimizer.lr=0.001", "trainer.max_steps=12", "trainer.val_check_interval=6", "num_steps=10",
        "burn_in=5", "eval=fast", "logger=csv", "seed=1", "data.test_size=296", "trainer.enable_progress_bar=false",
        "callbacks.image_grids.every_n_steps=0", "callbacks.model_checkpoint.save_top_k=-1"]


@pytest.mark.parametrize("prior", [[], ["prior=hierarchical", "prior.sizes=[6,16]", "prior.learn_sigma=true"]],
                         ids=["standard_normal", "hierarchical"])
def test_ddp_with_two_processes_matches_one_process_on_the_global_batch(tmp_path, prior):
    run_train(tmp_path / "ddp", *SAME, *prior, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "batch_size=32")
    run_train(tmp_path / "one", *SAME, *prior, "batch_size=64")
    ddp = torch.load(tmp_path / "ddp" / "checkpoints" / "last.ckpt", weights_only=False)
    one = torch.load(tmp_path / "one" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ddp["global_step"] == one["global_step"] == 12
    start = torch.load(tmp_path / "one" / "checkpoints" / "step_000006.ckpt", weights_only=False)["state_dict"]
    for key, weight in one["state_dict"].items():
        moved = (weight - start[key]).abs().max()  # over the last 6 steps
        assert (ddp["state_dict"][key] - weight).abs().max() <= 1e-3 * moved + 1e-7, key
    assert max((w - start[k]).abs().max() for k, w in one["state_dict"].items()) > 1e-4
    # validation metrics are averaged over the ranks' shards: those of the whole test split
    ddp_metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    one_metrics = json.loads((tmp_path / "one" / "metrics.json").read_text())
    for key in ("val/energy", "val/recon_mse", "val/energy_init"):
        assert abs(ddp_metrics[key] - one_metrics[key]) <= 1e-5 * abs(one_metrics[key]), key
