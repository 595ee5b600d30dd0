"""Train an in-domain feature network: ``python scripts/train_feature_net.py data=... name=...``.

See ``configs/train_feature_net.yaml`` for the options and the commands that made the shipped networks.
"""

import logging
import os
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LPC_ROOT", str(ROOT))

from lpc.errors import exit_on_user_error  # noqa: E402
from lpc.evaluation.domain_classifiers import (  # noqa: E402
    FEATURE_LAYER,
    accuracy,
    content_sha256,
    save_feature_net,
    stack_split,
    train_classifier,
)
from lpc.networks.classifier import ConvClassifier  # noqa: E402
from lpc.reporting.provenance import commit, machine  # noqa: E402

log = logging.getLogger("train_feature_net")


@hydra.main(version_base="1.3", config_path="../configs", config_name="train_feature_net")
@exit_on_user_error
def main(cfg: DictConfig) -> float:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    start = time.perf_counter()
    train_x, train_y = stack_split(datamodule.train_set)
    test_x, test_y = stack_split(datamodule.test_set)
    log.info("%s: %d train / %d test images %s, read in %.0f s", datamodule.dataset_id, len(train_x), len(test_x),
             tuple(train_x.shape[1:]), time.perf_counter() - start)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    net = ConvClassifier(train_x.shape[1:], num_classes, cfg.widths)
    start = time.perf_counter()
    train_classifier(net, train_x, train_y, cfg.epochs, cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.label_smoothing,
                     cfg.padding, cfg.flip, cfg.seed, log=log.info)
    seconds = time.perf_counter() - start
    test_accuracy = accuracy(net, test_x, test_y)
    card = {
        "name": cfg.name,
        "dataset": datamodule.dataset_id,
        "aliases": list(cfg.aliases),
        "image_shape": list(train_x.shape[1:]),
        "num_classes": num_classes,
        "data_sha256": {"train": content_sha256(train_x, train_y), "test": content_sha256(test_x, test_y)},
        "train_examples": len(train_x),
        "test_examples": len(test_x),
        "test_accuracy": round(test_accuracy, 4),
        "feature_layer": FEATURE_LAYER,
        "feature_dim": net.feature_dim,
        "architecture": f"ConvClassifier(widths={list(cfg.widths)})",
        "training": {k: cfg[k] for k in ("epochs", "batch_size", "lr", "weight_decay", "label_smoothing", "padding", "flip", "seed")},
        "train_seconds": round(seconds),
        "machine": machine(),
        "command": "python scripts/train_feature_net.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "commit": commit(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }
    path = Path(cfg.out_dir) / f"{cfg.name}.pt"
    save_feature_net(path, net.float(), card)
    log.info("test accuracy %.4f after %.0f s of training; wrote %s and its card %s", test_accuracy, seconds, path,
             path.with_suffix(".json"))
    return test_accuracy


if __name__ == "__main__":
    main()
