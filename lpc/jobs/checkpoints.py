"""Checkpoints: written atomically, read back with clear errors, checked against the model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn

from lpc.errors import CheckpointError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to ``<path>.tmp`` next to it, flushes it to disk, then renames it over
    ``path`` (``os.replace``, atomic on POSIX), so a process killed while saving leaves the previous
    checkpoint at ``path`` intact and never a partial file there."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        if "://" in str(path):  # a remote filesystem (s3://, gs://, ...): Lightning's fsspec writer
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO writes local files and takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)  # e.g. a full disk: leave no half-written file behind
            raise
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself reaches the disk
        finally:
            os.close(directory)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's contents; it must hold the run's config (saved by train.py) and weights."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at ckpt_path={path}; runs keep theirs in <run dir>/checkpoints/last.ckpt")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
        raise CheckpointError(
            f"ckpt_path={path} is not a readable checkpoint ({type(err).__name__}: {err}); it may have been cut "
            f"short: use the run's checkpoints/last.ckpt or another step_*.ckpt"
        ) from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "model" not in ckpt.get("hyper_parameters", {}):
        raise CheckpointError(f"ckpt_path={path} was not written by lpc's train.py (no saved config or weights)")
    ckpt["hyper_parameters"] = moved_targets(ckpt["hyper_parameters"])
    return ckpt


# Modules that moved when the package was grouped by role (2026-12): a checkpoint's saved config
# names its classes by the old paths, which are rewritten on reading.
MOVED_MODULES = {
    "lpc.evaluation": "lpc.evaluation.protocol",
    "lpc.metrics": "lpc.evaluation",
    "lpc.energy": "lpc.model.energy",
    "lpc.gaussian": "lpc.model.gaussian",
    "lpc.likelihoods": "lpc.model.likelihoods",
    "lpc.priors": "lpc.model.priors",
    "lpc.warmstart": "lpc.methods.warmstart",
    "lpc.checkpoints": "lpc.jobs.checkpoints",
    "lpc.loggers": "lpc.jobs.loggers",
}


def moved_targets(config: Any) -> Any:
    """``config`` with every ``_target_`` that names a moved module rewritten to its new path."""
    if isinstance(config, dict):
        return {key: moved_target(value) if key == "_target_" else moved_targets(value) for key, value in config.items()}
    if isinstance(config, list):
        return [moved_targets(value) for value in config]
    return config


def moved_target(target: str) -> str:
    """``lpc.likelihoods.GaussianLikelihood`` -> ``lpc.model.likelihoods.GaussianLikelihood``;
    ``lpc.metrics.scale_fit.ScaleFit`` -> ``lpc.evaluation.scale_fit.ScaleFit``; others unchanged."""
    module, _, name = target.rpartition(".")
    for old, new in MOVED_MODULES.items():
        if module == old or module.startswith(old + ".") and old != "lpc.evaluation":
            return new + module[len(old):] + "." + name
    return target


def check_state_dict(model: nn.Module, ckpt: dict[str, Any], path: str | os.PathLike) -> None:
    """Refuse a checkpoint whose weights do not fit ``model`` (another architecture or size)."""
    own = model.state_dict()
    theirs = ckpt["state_dict"]
    missing = sorted(set(own) - set(theirs))
    unexpected = sorted(set(theirs) - set(own))
    mismatched = sorted(k for k in set(own) & set(theirs) if getattr(own[k], "shape", None) != getattr(theirs[k], "shape", None))
    if missing or unexpected or mismatched:
        details = "; ".join(
            f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("other shapes", mismatched))
            if keys
        )
        saved = ckpt["hyper_parameters"]
        raise CheckpointError(
            f"ckpt_path={path} does not fit this model ({details}). It was trained with model={saved['model'].get('_target_')}, "
            f"decoder={saved.get('decoder', {}).get('_target_')}, latent_dim={saved.get('latent_dim')}, prior.sizes="
            f"{saved.get('prior', {}).get('sizes', [saved.get('latent_dim')])}: use the same model, networks, latent_dim "
            f"and prior to resume it"
        )


def check_resumable(path: str | os.PathLike, model: nn.Module) -> dict[str, Any]:
    """The checkpoint's contents; fails before training if ``ckpt_path`` is unreadable, not lpc's,
    or does not fit the model."""
    ckpt = read_checkpoint(path)
    check_state_dict(model, ckpt, path)
    return ckpt
