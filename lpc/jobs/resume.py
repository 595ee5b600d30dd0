"""Which checkpoint a run continues from: ``ckpt_path=<file>``, ``resume=true`` for the last
checkpoint of the latest earlier run of the same command, or ``resume=auto`` for the last
checkpoint in the run's own output folder, if any (a job relaunched into its folder, as
``scripts/reproduce.py``'s fixed-folder grids do: an interrupted job continues, a new one starts)."""

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
    """``cfg.ckpt_path`` if given; else for ``resume=true`` the checkpoint ``find_resume_checkpoint``
    picks, for ``resume=auto`` ``<output_dir>/checkpoints/last.ckpt`` where it exists."""
    resume = cfg.get("resume", False)  # one of lpc.config.checks.RESUME_MODES (``lpc.config.build.build`` checks)
    if cfg.get("ckpt_path"):
        return str(cfg.ckpt_path)
    if resume == "auto":
        own = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        return str(own) if own.is_file() else None
    if not resume:
        return None
    task_dir = Path(cfg.paths.log_dir) / cfg.task_name
    return str(find_resume_checkpoint(task_dir, overrides, Path(cfg.paths.output_dir)))


def keep_csv_history(output_dir: Path) -> Path | None:
    """Before a run continues in its own folder: move ``csv/metrics.csv`` (the rows logged before
    the interruption, which the CSV logger would overwrite) to the next free ``csv/metrics.part<k>.csv``.
    Returns the new path, or None when there was none."""
    current = output_dir / "csv" / "metrics.csv"
    if not current.is_file():
        return None
    k = 0
    while (part := current.with_name(f"metrics.part{k}.csv")).exists():
        k += 1
    current.rename(part)
    return part
