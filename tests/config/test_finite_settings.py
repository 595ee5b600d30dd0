"""inf and nan are refused in every setting before anything runs, and a run that never updates
the decoder (every chain diverged on every step) ends with an error after writing its results."""

from __future__ import annotations

import json
import logging
import math
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from conftest import ROOT
from lightning import Callback
from omegaconf import OmegaConf

from lpc.config.checks import validate_config
from lpc.config.compose import compose_config
from lpc.errors import ConfigError
from lpc.jobs.train import train

NON_FINITE = ["inf", "nan"]
# (group choices, key): the float settings of the shipped configs, each where a user sets it, and two of
# the Trainer's that take a float
FLOAT_SETTINGS = [
    ([], "step_size"),
    ([], "sampler.step_size"),
    ([], "sampler.max_latent_norm"),
    (["sampler=mala"], "sampler.target_accept"),
    (["sampler=hmc"], "sampler.target_accept"),
    ([], "precond.beta"),
    ([], "precond.eps"),
    ([], "precond.max_scale"),
    ([], "likelihood.sigma"),
    (["likelihood=gaussian_learned"], "likelihood.ema_decay"),
    (["likelihood=gaussian_learned"], "likelihood.min_sigma"),
    (["likelihood=discretized_gaussian"], "likelihood.sigma"),
    ([], "model.optimizer.lr"),
    (["model=vae"], "model.optimizer.lr"),
    ([], "model.backoff_factor"),
    ([], "warmstart.scale"),
    (["warmstart=jeffreys"], "warmstart.optimizer.lr"),
    ([], "logger.wandb.connect_timeout"),
    ([], "trainer.val_check_interval"),
    ([], "+trainer.gradient_clip_val"),
]
# every option of these groups is searched for float settings (test_every_float_setting_of_every_group_option_is_refused)
GROUPS = ["sampler", "likelihood", "model", "precond", "warmstart", "eval", "logger", "callbacks", "trainer"]


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize("groups,key", FLOAT_SETTINGS, ids=[" ".join([*g, k]) for g, k in FLOAT_SETTINGS])
def test_a_non_finite_setting_is_refused_before_anything_runs(compose_cfg, tmp_path, groups, key, value):
    with pytest.raises(ConfigError) as err:
        train(compose_cfg(*groups, f"{key}={value}"))
    name = key.lstrip("+")
    assert str(err.value) == f"{name}={value}: expected a finite number, not inf or nan; set {name} to a finite number"
    assert not any(tmp_path.iterdir())


def test_a_non_finite_list_element_is_refused(compose_cfg):
    with pytest.raises(ConfigError, match=r"data.pixel_range\[1\]=inf: expected a finite number"):
        validate_config(compose_cfg("data.pixel_range=[0.0,inf]"))


def float_leaves(node: Any, path: str = "") -> Iterator[str]:
    """The dotted paths (list items as ``.i``) of the float values of a config as written
    (interpolations are strings here), outside Hydra's own node."""
    if isinstance(node, dict):
        for key, value in node.items():
            if not (path == "" and key == "hydra"):
                yield from float_leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from float_leaves(value, f"{path}.{i}")
    elif isinstance(node, float):
        yield path


def test_every_float_setting_of_every_group_option_is_refused(tmp_path):
    """Whatever settings the configs hold: every float of every option of GROUPS (each key once), set to
    inf or nan."""
    checked = set()
    for group in GROUPS:
        for option in sorted(p.stem for p in (ROOT / "configs" / group).glob("*.yaml")):
            cfg = compose_config([f"{group}={option}"], tmp_path)
            for path in float_leaves(OmegaConf.to_container(cfg, resolve=False)):
                shown = re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", path)  # data.pixel_range.1 -> data.pixel_range[1]
                if shown in checked:
                    continue
                good = OmegaConf.select(cfg, path)
                for value in (math.inf, math.nan):
                    OmegaConf.update(cfg, path, value)
                    with pytest.raises(ConfigError, match=f"^{re.escape(shown)}={value}: expected a finite number"):
                        validate_config(cfg)
                OmegaConf.update(cfg, path, good)
                checked.add(shown)
    assert {"step_size", "data.pixel_range[1]", "precond.max_scale", "sampler.target_accept", "likelihood.min_sigma",
            "warmstart.optimizer.lr"} <= checked


@pytest.mark.parametrize("value", ["inf", "nan"])
def test_train_py_refuses_a_non_finite_step_size_in_one_line(tmp_path, value):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "train.py", f"step_size={value}", f"hydra.run.dir={run}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert f"ConfigError: step_size={value}: expected a finite number, not inf or nan; set step_size to a finite number" in out
    assert "Traceback" not in out
    assert not (run / "checkpoints").exists() and not (run / "metrics.json").exists() and not (run / "csv").exists()


TINY = ["precond=none", "num_steps=4", "burn_in=2", "trainer.max_steps=5", "trainer.val_check_interval=5",
        "logger=csv", "callbacks=model_checkpoint", "eval=fast", "trainer.enable_progress_bar=false"]


def test_a_run_that_never_updates_the_decoder_fails_after_writing_its_results(tmp_path):
    """step_size=1e9 (inf is refused at start-up) diverges every chain on every step."""
    proc = subprocess.run([sys.executable, "train.py", "step_size=1e9", *TINY, f"hydra.run.dir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert ("DivergenceError: nothing was learned: every Langevin chain diverged on every one of the 5 steps with "
            "step_size=1e+09, so the decoder was never updated. Use precond=adam or a smaller step_size") in out
    assert "Traceback" not in out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["global_step"] == 5 and metrics["updates"] == 0 and metrics["skipped_updates"] == 5
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 5 and ckpt["skipped_steps"] == 5  # kept, so a resumed run counts on


class CalmDown(Callback):
    """Sets the sampler's step size to ``step_size`` before training step ``at``."""

    def __init__(self, at: int, step_size: float):
        self.at, self.step_size = at, step_size

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at:
            pl_module.sampler.step_size = self.step_size


def test_a_run_that_skips_most_updates_says_so_at_the_end(compose_cfg, tmp_path, caplog):
    cfg = compose_cfg("step_size=1e9", *TINY, "+callbacks.calm._target_=test_finite_settings.CalmDown",
                      "+callbacks.calm.at=3", "+callbacks.calm.step_size=0.02")
    with caplog.at_level(logging.INFO):
        train(cfg)
    assert caplog.records[-1].levelname == "WARNING"
    assert caplog.records[-1].getMessage().startswith("3 of 5 updates were skipped (every chain of the batch diverged")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["updates"] == 2 and metrics["skipped_updates"] == 3


def test_a_vae_run_updates_on_every_step(compose_cfg, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        train(compose_cfg("model=vae", *TINY))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["updates"] == 5 and metrics["skipped_updates"] == 0
    assert not any("skipped" in r.getMessage() for r in caplog.records)
