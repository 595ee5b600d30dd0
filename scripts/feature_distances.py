"""Reference values of the offline feature-space metrics: FD and KID between the test split and
(a) the training split, (b) itself blurred and (c) with pixel noise at three levels each, and
(d) samples of an untrained decoder. Prints a table and writes JSON under ``outputs/``.

    python scripts/feature_distances.py                                   # the digits, digits_cnn
    python scripts/feature_distances.py data=folder data.root=../shared/data/cifar10/cifar10_jpeg.zip
"""

import json
import logging
import os
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torchvision.transforms.functional import gaussian_blur

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LPC_ROOT", str(ROOT))

from lpc.errors import exit_on_user_error  # noqa: E402
from lpc.evaluation.features import ClassifierFeatures  # noqa: E402
from lpc.evaluation.frechet import frechet_distance  # noqa: E402
from lpc.evaluation.kid import kernel_distance  # noqa: E402
from lpc.networks import ConvDecoder, MLPDecoder  # noqa: E402

log = logging.getLogger("feature_distances")


def spread(dataset, n: int) -> torch.Tensor:
    """n images taken evenly over the dataset (folders are sorted by class)."""
    step = max(1, len(dataset) // n)
    return torch.stack([dataset[i][0] for i in range(0, min(len(dataset), step * n), step)])


@hydra.main(version_base="1.3", config_path="../configs", config_name="feature_distances")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    torch.manual_seed(cfg.seed)
    dm = instantiate(cfg.data)
    dm.setup()
    net = ClassifierFeatures(cfg.classifier_path, dm.dataset_id, dm.image_shape)
    test, train = spread(dm.test_set, cfg.num_images), spread(dm.train_set, cfg.num_images)
    channels, size, _ = dm.image_shape
    kernel = 2 * (size // 8) + 3  # 5 for 8x8, 9 for 32x32
    sigma = size / 32 + 0.35  # blur levels sigma, 2 sigma, 4 sigma: 0.6/1.2/2.4 px at 8x8, 1.35/2.7/5.4 px at 32x32
    decoder = MLPDecoder(16, channels, size) if size < 16 else ConvDecoder(16, channels, size)
    with torch.no_grad():
        untrained = torch.sigmoid(decoder(torch.randn(len(test), 16)))
    comparisons = {"train split": train}
    comparisons.update({f"blur sigma={sigma * k:.2g}px": gaussian_blur(test, kernel, sigma * k) for k in (1, 2, 4)})
    comparisons.update({f"noise std={s}": (test + s * torch.randn_like(test)).clamp(0, 1) for s in (0.05, 0.1, 0.2)})
    comparisons["untrained decoder"] = untrained
    with torch.no_grad():
        real = net(test)
        rows = []
        for name, images in comparisons.items():
            fake = net(images)
            kid, kid_std = kernel_distance(real, fake, cfg.kid_subsets, cfg.kid_subset_size)
            rows.append({"against test split": name, f"fd_{net.name}": frechet_distance(real, fake),
                         f"kid_{net.name}": kid, f"kid_{net.name}_std": kid_std})
    header = list(rows[0])
    print(f"\n{dm.dataset_id}, {len(test)} test images, features: {net.name} ({net.path})\n")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(v) if isinstance(v, str) else f"{v:.4g}" for v in row.values()) + " |")
    out = Path(cfg.paths.output_dir) / "feature_distances.json"
    out.write_text(json.dumps({"dataset": dm.dataset_id, "features": net.card, "num_images": len(test), "rows": rows}, indent=2))
    log.info("written to %s", out)


if __name__ == "__main__":
    main()
