"""Evaluate a checkpoint: ``python scripts/evaluate.py ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt``.

The model and data come from the config saved in the checkpoint; ``eval.*`` settings, loggers and
``data.*`` overrides (e.g. ``data.root=``) from the command line. Writes metrics.json and sample
grids to outputs/evaluate/runs/<date>_<time>/ and logs to W&B (offline) and CSV.
"""

import os
import sys

import hydra
from omegaconf import DictConfig

from lpc.config.checks import refuse_renamed_keys
from lpc.errors import exit_on_user_error
from lpc.jobs.evaluate import evaluate_checkpoint
from lpc.reporting.provenance import REPO as ROOT

os.environ.setdefault("LPC_ROOT", str(ROOT))  # the configs' paths.root_dir


@hydra.main(version_base="1.3", config_path="../configs", config_name="evaluate")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    evaluate_checkpoint(cfg)


if __name__ == "__main__":
    refuse_renamed_keys(sys.argv[1:])
    main()
