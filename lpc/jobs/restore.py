"""Restoring a finished run from its checkpoint: the config to rebuild it with, and its datamodule
and trained model (used by the evaluate and complete jobs and by the benchmarks); and what a kept
run's record alone rebuilds: its sample-quality reference points."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from lpc.config.build import build, instantiate_checked
from lpc.config.checks import RENAMED_KEYS
from lpc.config.compose import compose_config
from lpc.jobs.checkpoints import check_state_dict


def key_overrides(task_overrides: list[str], roots: tuple[str, ...]) -> list[str]:
    """The command-line ``key=value`` overrides whose key starts with one of ``roots``."""
    return [o for o in task_overrides if "=" in o and o.split("=", 1)[0].split(".")[0] in roots]


def run_config(cfg: DictConfig, ckpt: dict[str, Any]) -> DictConfig:
    """The config to evaluate with: the run's saved config (model, data, networks, likelihood),
    with ``eval``, ``logger``, ``paths`` and ``task_name`` from this command, and the command's
    ``data.*``/``seed`` overrides on top (e.g. ``data.root=`` when the data moved)."""
    run = OmegaConf.create(ckpt["hyper_parameters"])
    for key in ("eval", "logger", "paths", "task_name"):
        run[key] = cfg[key]
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    for item in key_overrides(list(overrides), ("data", "seed")):
        key, value = item.split("=", 1)
        OmegaConf.update(run, key, yaml.safe_load(value), force_add=True)
    return run


def restore(run: DictConfig, ckpt: dict[str, Any], ckpt_path: str, device: torch.device) -> tuple[Any, Any]:
    """The datamodule (its splits set up) and the trained model of a checkpoint, on ``device``,
    built from ``run`` (its saved config, e.g. from ``run_config``)."""
    datamodule, model = build(run)
    check_state_dict(model, ckpt, ckpt_path)
    model.load_state_dict(ckpt["state_dict"])
    model.on_load_checkpoint(ckpt)  # what the method keeps beside its weights (e.g. a backed-off step size)
    datamodule.setup("test")
    return datamodule, model.to(device)


def renamed(override: str) -> str:
    """A recorded command-line override with a since-renamed key (``RENAMED_KEYS``) in its new name."""
    for old, new in RENAMED_KEYS.items():
        key = override.split("=", 1)[0]
        if key == old or key.startswith(old + "."):
            return new + override[len(old):]
    return override


def reference_points(overrides: list[str], out: Path) -> dict[str, float]:
    """The sample-quality reference points (``Evaluator.reference_points``: the networks at a fresh
    initialisation, and training images) of the run that ``python train.py <overrides>`` trained, on
    its test split and in its evaluation's feature space. They depend on its config alone, not on its
    weights, so a run kept without a checkpoint (a record from before the reference points) gets them
    too; keys named ``reference/<point>/<metric>``."""
    cfg = compose_config([renamed(o) for o in overrides], out)
    datamodule, model = build(cfg)
    datamodule.setup()
    evaluator = instantiate_checked(cfg.eval, "eval")
    evaluator.prepare(datamodule.dataset_id, datamodule.image_shape)  # as in the run: no network built after the seed
    return evaluator.reference_points(model, datamodule.test_set, datamodule.train_set, datamodule.pixel_range,
                                      datamodule.dataset_id)
