"""The evaluation every method shares: sample quality (Frechet distance and precision, recall,
density, coverage of prior samples against the test split, in a feature network's space) and
likelihood bounds (ELBO and IWAE_k per proposal, bits per dimension). Used during training by
``lpc.callbacks.PeriodicEvaluation`` and standalone by ``scripts/evaluate.py``."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from lpc.methods.base import GenerativeModule
from lpc.metrics.elbo import bits_per_dim, importance_log_weights, iwae_bound
from lpc.metrics.features import FeaturesUnavailableError, InceptionFeatures
from lpc.metrics.frechet import frechet_distance
from lpc.metrics.prdc import prdc

log = logging.getLogger(__name__)


@dataclass
class SampleQuality:
    """Frechet distance and PRDC of ``num_samples`` prior samples (decoder means) against up to
    ``num_samples`` test images, in the space of ``features``: ``inception`` (Inception-v3, the
    network of standard FID, with ``weights_path``/``download`` as in
    ``lpc.metrics.features.InceptionFeatures``) or any factory () -> feature network."""

    features: str | Callable[[], nn.Module] = "inception"
    num_samples: int = 10000
    batch_size: int = 250
    prdc_k: int = 5
    weights_path: str | None = None
    download: bool = True
    enabled: bool = True

    def build_features(self) -> nn.Module:
        if callable(self.features):
            return self.features()
        if self.features == "inception":
            return InceptionFeatures(self.weights_path, self.download)
        raise ValueError(f"eval.fid.features must be 'inception' or a feature-network factory, got {self.features!r}")


@dataclass
class LikelihoodBounds:
    """ELBO and IWAE_k on the first ``num_examples`` test images, for every k in ``k`` and every
    proposal the method offers; bits/dim from the largest k."""

    num_examples: int = 1000
    k: Sequence[int] = (1, 10, 100)
    batch_size: int = 100
    enabled: bool = True


@dataclass
class EvalResult:
    metrics: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def to_unit(images: Tensor, pixel_range: tuple[float, float]) -> Tensor:
    """Pixels from ``pixel_range`` to [0, 1]."""
    low, high = pixel_range
    return ((images - low) / (high - low)).clamp(0, 1)


class Evaluator:
    """Evaluates a model on a test set. The feature network is built on first use; if it cannot be
    (e.g. no Inception weights offline) the sample-quality metrics are reported missing, with the
    reason, once, and every other metric goes on."""

    def __init__(self, fid: SampleQuality, likelihood: LikelihoodBounds, seed: int = 0):
        self.fid = fid
        self.likelihood = likelihood
        self.seed = seed
        self._features: nn.Module | None = None
        self._features_error: str | None = None
        self._real: Tensor | None = None  # test-set features, computed once

    def feature_network(self, device: torch.device) -> nn.Module:
        if self._features is None and self._features_error is None:
            try:
                self._features = self.fid.build_features().eval()
            except FeaturesUnavailableError as err:
                self._features_error = str(err)
                log.warning("%s", err)
        if self._features is None:
            raise FeaturesUnavailableError(self._features_error)
        return self._features.to(device)

    @torch.no_grad()
    def extract(self, net: nn.Module, batches: Sequence[Tensor], pixel_range: tuple[float, float]) -> Tensor:
        return torch.cat([net(to_unit(b, pixel_range)).flatten(1).double() for b in batches])

    def sample_quality(self, model: GenerativeModule, test_set: Dataset, pixel_range: tuple[float, float]) -> dict[str, float]:
        net = self.feature_network(model.device)
        n, bs = self.fid.num_samples, self.fid.batch_size
        if self._real is None:
            real_images = [stack_images(test_set, i, min(i + bs, n)) for i in range(0, min(n, len(test_set)), bs)]
            self._real = self.extract(net, [b.to(model.device) for b in real_images], pixel_range)
        fake = self.extract(net, [model.generate(min(bs, n - i)) for i in range(0, n, bs)], pixel_range)
        name = getattr(net, "name", "features")
        suffix = "" if name == "inception" else f"_{name}"
        metrics = {("fid" if name == "inception" else f"fd_{name}"): frechet_distance(self._real, fake)}
        metrics.update({f"{k}{suffix}": v for k, v in prdc(self._real, fake, self.fid.prdc_k).items()})
        return metrics

    def likelihood_bounds(self, model: GenerativeModule, test_set: Dataset, pixel_range: tuple[float, float]) -> dict[str, float]:
        settings = self.likelihood
        k_max = max(settings.k)
        n = min(settings.num_examples, len(test_set))
        log_w: dict[str, list[Tensor]] = {}
        for start in range(0, n, settings.batch_size):
            x = stack_images(test_set, start, min(start + settings.batch_size, n)).to(model.device)
            for name, (mean, log_std) in model.proposals(x).items():
                weights = importance_log_weights(lambda z: -model.energy(x, z), mean, log_std, k_max)
                log_w.setdefault(name, []).append(weights)
        num_dims = math.prod(test_set[0][0].shape)
        bin_width = None if model.likelihood.discrete else (pixel_range[1] - pixel_range[0]) / 256
        metrics = {}
        for name, parts in log_w.items():
            weights = torch.cat(parts, dim=1)  # (k_max, n)
            metrics[f"elbo_{name}"] = weights.mean().item()
            for k in sorted(set(settings.k) - {1}):
                metrics[f"iwae{k}_{name}"] = iwae_bound(weights, k).mean().item()
            best = iwae_bound(weights, k_max)
            metrics[f"bpd_{name}"] = bits_per_dim(best, num_dims, bin_width).mean().item()
        return metrics

    def evaluate(self, model: GenerativeModule, test_set: Dataset, pixel_range: tuple[float, float]) -> EvalResult:
        """All metrics, named without a prefix; the RNG state outside is left untouched."""
        result = EvalResult()
        was_training = model.training
        model.eval()
        devices = [model.device] if model.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(self.seed)
            if self.likelihood.enabled:
                bounds = self.likelihood_bounds(model, test_set, pixel_range)
                result.metrics.update(bounds)
                if not bounds:
                    result.errors["likelihood"] = (
                        "no proposal for likelihood bounds: the model has no encoder and its chain keeps fewer "
                        "than 2 samples (lower model.sampler.thin or burn_in)"
                    )
            if self.fid.enabled:
                try:
                    result.metrics.update(self.sample_quality(model, test_set, pixel_range))
                except FeaturesUnavailableError as err:
                    result.errors["fid"] = str(err)
        model.train(was_training)
        return result


def stack_images(dataset: Dataset, start: int, stop: int) -> Tensor:
    """Images start..stop-1 of a dataset of (image, label) pairs, stacked."""
    return torch.stack([dataset[i][0] for i in range(start, stop)])
