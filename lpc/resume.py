"""Which checkpoint a run continues from: ``ckpt_path=<file>``, or ``resume=true`` for the last
checkpoint of the latest earlier run of the same command."""

from __future__ import annotations

from pathlib import Path

import yaml
from omegaconf import DictConfig

from lpc.errors import CheckpointError

# overrides that may differ between a run and its continuation
RESUME_KEYS = ("resume", "ckpt_path", "trainer.max_steps", "trainer.max_epochs")


def comparable(overrides: list[str]) -> list[str]:
    """The command-line overrides that define a run: all but ``RESUME_KEYS`` and ``hydra.*``."""
    keys = [o.lstrip("+~").split("=", 1)[0] for o in overrides]
    return sorted(o for o, k in zip(overrides, keys) if k not in RESUME_KEYS and not k.startswith("hydra."))


def find_resume_checkpoint(task_dir: Path, overrides: list[str], current_dir: Path) -> Path:
    """The ``checkpoints/last.ckpt`` of the most recently written earlier run under ``task_dir``
    (its ``runs/*`` and ``multiruns/*/*`` folders) whose overrides (``.hydra/overrides.yaml``) are
    ``overrides``, up to ``RESUME_KEYS``. So ``python train.py -m a=1,2 resume=true`` continues
    each job of an interrupted sweep from its own checkpoint."""
    wanted = comparable(overrides)
    found = []
    for ckpt in [*task_dir.glob("runs/*/checkpoints/last.ckpt"), *task_dir.glob("multiruns/*/*/checkpoints/last.ckpt")]:
        run_dir = ckpt.parent.parent
        saved = run_dir / ".hydra" / "overrides.yaml"
        if run_dir.resolve() == current_dir.resolve() or not saved.is_file():
            continue
        if comparable(yaml.safe_load(saved.read_text()) or []) == wanted:
            found.append(ckpt)
    if not found:
        raise CheckpointError(
            f"resume=true found no earlier run with the overrides {wanted} and a checkpoints/last.ckpt under {task_dir}; "
            f"run it without resume=true first, or give the checkpoint itself: ckpt_path=<run dir>/checkpoints/last.ckpt"
        )
    return max(found, key=lambda p: p.stat().st_mtime)


def resume_checkpoint(cfg: DictConfig, overrides: list[str]) -> str | None:
    """``cfg.ckpt_path`` if given, else with ``cfg.resume`` the checkpoint ``find_resume_checkpoint`` picks."""
    if cfg.get("ckpt_path"):
        return str(cfg.ckpt_path)
    if not cfg.get("resume"):
        return None
    task_dir = Path(cfg.paths.log_dir) / cfg.task_name
    return str(find_resume_checkpoint(task_dir, overrides, Path(cfg.paths.output_dir)))
