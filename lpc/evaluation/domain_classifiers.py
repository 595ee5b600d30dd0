"""Training, saving and finding the in-domain feature networks (``ConvClassifier``) that give
sample-quality metrics without Inception weights (``scripts/train_feature_net.py``).

A feature network is saved as ``<name>.pt`` (half-precision weights, the network's shape and its
card) with the card also beside it as ``<name>.json``: what it was trained on (dataset name and
the sha256 of the decoded training and test images), its test accuracy, the feature layer and
dimension, and the command and commit that made it.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from lpc.networks.classifier import ConvClassifier

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "assets" / "feature_nets"
FEATURE_LAYER = "global average pool of the last conv stage (the input of the linear head)"


def stack_split(dataset: Dataset) -> tuple[Tensor, Tensor]:
    """Every (image in [0, 1], label) of a dataset as uint8 images (N, C, H, W) and labels (N,)."""
    images, labels = zip(*(dataset[i] for i in range(len(dataset))))
    return (torch.stack(images) * 255).round().to(torch.uint8), torch.tensor(labels)


def content_sha256(images: Tensor, labels: Tensor) -> str:
    """sha256 of the decoded 8-bit images and their labels: names the data, whatever its file format."""
    digest = hashlib.sha256(images.contiguous().numpy().tobytes())
    digest.update(labels.to(torch.int64).numpy().tobytes())
    return digest.hexdigest()


def augment(x: Tensor, padding: int, flip: bool, generator: torch.Generator) -> Tensor:
    """The standard augmentation: a random crop of the zero-padded image (shift by up to
    ``padding`` pixels) and, with ``flip``, a random horizontal flip. x: (B, C, H, W)."""
    if padding > 0:
        batch, _, height, width = x.shape
        padded = F.pad(x, (padding,) * 4)
        dy, dx = torch.randint(0, 2 * padding + 1, (2, batch), generator=generator)
        x = torch.stack([padded[i, :, dy[i]:dy[i] + height, dx[i]:dx[i] + width] for i in range(batch)])
    if flip:
        mirror = torch.rand(x.shape[0], generator=generator) < 0.5
        x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
    return x


@torch.no_grad()
def accuracy(net: ConvClassifier, images: Tensor, labels: Tensor, batch_size: int = 500) -> float:
    net.eval()
    correct = sum(
        (net(images[i:i + batch_size].float() / 255).argmax(1) == labels[i:i + batch_size]).sum().item()
        for i in range(0, len(images), batch_size)
    )
    return correct / len(images)


def train_classifier(
    net: ConvClassifier, images: Tensor, labels: Tensor, epochs: int, batch_size: int = 128, lr: float = 0.1,
    weight_decay: float = 5e-4, label_smoothing: float = 0.1, padding: int = 4, flip: bool = True, seed: int = 0,
    log: Any = print,
) -> None:
    """SGD with Nesterov momentum and a one-cycle learning rate over ``epochs`` passes of the
    uint8 training ``images`` (N, C, H, W) with ``augment``; sets the input standardisation first."""
    x_all = images.float() / 255
    net.mean.copy_(x_all.mean(dim=(0, 2, 3), keepdim=True))
    net.std.copy_(x_all.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-3))
    steps_per_epoch = math.ceil(len(images) / batch_size)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.25)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        net.train()
        start, total = time.perf_counter(), 0.0
        order = torch.randperm(len(images), generator=generator)
        for i in range(0, len(images), batch_size):
            index = order[i:i + batch_size]
            x = augment(x_all[index], padding, flip, generator)
            loss = F.cross_entropy(net(x), labels[index], label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(index)
        log(f"epoch {epoch + 1}/{epochs}: loss {total / len(images):.4f} ({time.perf_counter() - start:.0f} s)")


def save_feature_net(path: Path, net: ConvClassifier, card: dict[str, Any]) -> None:
    """``path`` (.pt: fp16 weights, shape, card) and the card as ``path`` with suffix .json."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = {"in_shape": list(net.in_shape), "num_classes": net.num_classes, "widths": list(net.widths)}
    state = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "shape": shape, "card": card}, path)
    path.with_suffix(".json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")


def load_feature_net(path: str | Path) -> tuple[ConvClassifier, dict[str, Any]]:
    """The network (float32, eval mode) and its card."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    net = ConvClassifier(**saved["shape"])
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in saved["state_dict"].items()})
    return net.eval(), saved["card"]


def card_fits(card: dict[str, Any], dataset: str, image_shape: Sequence[int]) -> bool:
    """Whether a card's network was trained on ``dataset`` (by name or alias) at ``image_shape``."""
    names = {card["dataset"], *card.get("aliases", [])}
    return dataset in names and list(card["image_shape"]) == list(image_shape)


def shipped_feature_net(dataset: str, image_shape: Sequence[int]) -> Path | None:
    """The shipped network whose card fits the data, if there is one."""
    for card_path in sorted(SHIPPED_DIR.glob("*.json")):
        if card_fits(json.loads(card_path.read_text()), dataset, image_shape):
            return card_path.with_suffix(".pt")
    return None
