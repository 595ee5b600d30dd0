"""Evaluate a checkpoint: ``python scripts/evaluate.py ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt``.

The model and data come from the config saved in the checkpoint; ``eval.*`` settings, loggers and
``data.*`` overrides (e.g. ``data.root=``) from the command line. Writes metrics.json and sample
grids to outputs/evaluate/runs/<date>_<time>/ and logs to W&B (offline) and CSV.
"""

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LPC_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT))

from lpc.errors import exit_on_user_error  # noqa: E402
from lpc.jobs.evaluate import evaluate_checkpoint  # noqa: E402


@hydra.main(version_base="1.3", config_path="../configs", config_name="evaluate")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    evaluate_checkpoint(cfg)


if __name__ == "__main__":
    main()
