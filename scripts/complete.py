"""Conditional generation (inpainting):
``python scripts/complete.py ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt mask=[half,centre,random]``.

The model and data come from the config saved in the checkpoint; the masks, the number of images
and draws and the sampler (``complete.*``) from the command line (configs/complete.yaml). Writes
images/complete_<mask>.png and metrics.json to outputs/complete/runs/<date>_<time>/.
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
from lpc.jobs.complete import complete_checkpoint  # noqa: E402


@hydra.main(version_base="1.3", config_path="../configs", config_name="complete")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    complete_checkpoint(cfg)


if __name__ == "__main__":
    main()
