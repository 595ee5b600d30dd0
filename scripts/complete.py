"""Conditional generation (inpainting):
``python scripts/complete.py ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt mask=[half,centre,random]``.

The model and data come from the config saved in the checkpoint; the masks, the number of images
and draws and the sampler (``complete.*``) from the command line (configs/complete.yaml). Writes
images/complete_<mask>.png and metrics.json to outputs/complete/runs/<date>_<time>/.
"""

import os
import sys

import hydra
from omegaconf import DictConfig

from lpc.config.checks import refuse_renamed_keys
from lpc.errors import exit_on_user_error
from lpc.jobs.complete import complete_checkpoint
from lpc.reporting.provenance import REPO as ROOT

os.environ.setdefault("LPC_ROOT", str(ROOT))  # the configs' paths.root_dir


@hydra.main(version_base="1.3", config_path="../configs", config_name="complete")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    complete_checkpoint(cfg)


if __name__ == "__main__":
    refuse_renamed_keys(sys.argv[1:])
    main()
