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
from lpc.errors import ConfigError
from lpc.metrics.features import ClassifierFeatures, FeaturesUnavailableError, InceptionFeatures
from lpc.metrics.frechet import frechet_distance
from lpc.metrics.kid import kernel_distance
from lpc.metrics.prdc import prdc

log = logging.getLogger(__name__)


@dataclass
class SampleQuality:
    """Frechet distance, kernel distance (KID) and PRDC of ``num_samples`` prior samples (decoder
    means) against up to ``num_samples`` test images, in the space of each of ``features`` (one or a
    list; the same samples for all):

    - ``inception``: Inception-v3, the network of standard FID (``weights_path``/``download`` as in
      ``lpc.metrics.features.InceptionFeatures``); metrics ``fid``, ``kid``, ``precision``, ...
    - ``classifier``: an in-domain classifier (``classifier_path``, default the shipped one that
      fits the data; ``lpc.metrics.features.ClassifierFeatures``); metrics ``fd_<name>``,
      ``kid_<name>``, ``precision_<name>``, ... after the network's card name;
    - or any factory () -> feature network (named by its ``name`` attribute).
    """

    features: str | Callable[[], nn.Module] | Sequence[str | Callable[[], nn.Module]] = "inception"
    num_samples: int = 10000
    batch_size: int = 250
    prdc_k: int = 5
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    weights_path: str | None = None
    download: bool = True
    classifier_path: str | None = None
    enabled: bool = True

    def build_features(self, space: str | Callable[[], nn.Module], dataset: str, image_shape: tuple[int, ...]) -> nn.Module:
        if callable(space):
            return space()
        if space == "inception":
            return InceptionFeatures(self.weights_path, self.download)
        if space == "classifier":
            return ClassifierFeatures(self.classifier_path, dataset, image_shape)
        raise ConfigError(f"eval.features must be inception and/or classifier, got {self.features!r}")

    @property
    def spaces(self) -> list[str | Callable[[], nn.Module]]:
        return [self.features] if isinstance(self.features, str) or callable(self.features) else list(self.features)


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
    """Evaluates a model on a test set. Each feature network is built on first use (or by
    ``prepare``); one that cannot be (no Inception weights offline, no classifier for the data)
    is reported missing, with the reason, once, and every other metric goes on. A classifier made
    for other data is refused (``ConfigError``). ``features`` (``eval.features``: ``inception``,
    ``classifier`` or both) sets ``fid.features`` when given."""

    def __init__(
        self, fid: SampleQuality, likelihood: LikelihoodBounds, seed: int = 0,
        features: str | Sequence[str] | None = None,
    ):
        if features is not None:
            fid.features = features if isinstance(features, str) else list(features)
        self.fid = fid
        self.likelihood = likelihood
        self.seed = seed
        self._features: dict[int, nn.Module] = {}  # by position in fid.spaces
        self._features_error: dict[int, str] = {}
        self._real: dict[int, Tensor] = {}  # test-set features, computed once per space

    def prepare(self, dataset: str, image_shape: tuple[int, ...]) -> None:
        """Build the feature networks for this data now, so that a classifier made for other data
        fails before training (missing ones are only reported, as on first use)."""
        if self.fid.enabled:
            for i in range(len(self.fid.spaces)):
                try:
                    self.feature_network(i, torch.device("cpu"), dataset, image_shape)
                except FeaturesUnavailableError:
                    pass

    def feature_network(self, i: int, device: torch.device, dataset: str = "", image_shape: tuple[int, ...] = ()) -> nn.Module:
        """The network of feature space ``fid.spaces[i]``."""
        if i not in self._features and i not in self._features_error:
            try:
                self._features[i] = self.fid.build_features(self.fid.spaces[i], dataset, tuple(image_shape)).eval()
            except FeaturesUnavailableError as err:
                self._features_error[i] = str(err)
                log.warning("%s", err)
        if i not in self._features:
            raise FeaturesUnavailableError(self._features_error[i])
        return self._features[i].to(device)

    @torch.no_grad()
    def extract(self, net: nn.Module, batches: Sequence[Tensor], pixel_range: tuple[float, float]) -> Tensor:
        return torch.cat([net(to_unit(b, pixel_range)).flatten(1).double() for b in batches])

    def sample_quality(
        self, model: GenerativeModule, test_set: Dataset, pixel_range: tuple[float, float], dataset: str = ""
    ) -> tuple[dict[str, float], dict[str, str]]:
        """The metrics of every feature space that is available, and why the others are missing
        (keyed ``fid`` for Inception, ``fd_<space>`` otherwise)."""
        shape = tuple(test_set[0][0].shape)
        nets: dict[int, nn.Module] = {}
        errors: dict[str, str] = {}
        for i, space in enumerate(self.fid.spaces):
            try:
                nets[i] = self.feature_network(i, model.device, dataset, shape)
            except FeaturesUnavailableError as err:
                errors["fid" if space == "inception" else f"fd_{getattr(space, '__name__', space)}"] = str(err)
        if not nets:
            return {}, errors
        n, bs = self.fid.num_samples, self.fid.batch_size
        samples = [model.generate(min(bs, n - i)) for i in range(0, n, bs)]  # the same samples in every space
        metrics: dict[str, float] = {}
        for i, net in nets.items():
            if i not in self._real:
                stop = min(n, len(test_set))
                real_images = [stack_images(test_set, j, min(j + bs, stop)).to(model.device) for j in range(0, stop, bs)]
                self._real[i] = self.extract(net, real_images, pixel_range)
            real, fake = self._real[i], self.extract(net, samples, pixel_range)
            name = getattr(net, "name", "features")
            suffix = "" if name == "inception" else f"_{name}"
            metrics["fid" if name == "inception" else f"fd_{name}"] = frechet_distance(real, fake)
            kid, kid_std = kernel_distance(real, fake, self.fid.kid_subsets, self.fid.kid_subset_size)
            metrics.update({f"kid{suffix}": kid, f"kid{suffix}_std": kid_std})
            metrics.update({f"{k}{suffix}": v for k, v in prdc(real, fake, self.fid.prdc_k).items()})
        return metrics, errors

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
        if log_w:  # the tightest of the method's bounds: one name to compare (and tune) methods by
            best_name = max(log_w, key=lambda name: metrics[f"iwae{k_max}_{name}" if k_max > 1 else f"elbo_{name}"])
            metrics["log_likelihood"] = metrics[f"iwae{k_max}_{best_name}" if k_max > 1 else f"elbo_{best_name}"]
            metrics["bpd"] = metrics[f"bpd_{best_name}"]
        return metrics

    def evaluate(
        self, model: GenerativeModule, test_set: Dataset, pixel_range: tuple[float, float], dataset: str = ""
    ) -> EvalResult:
        """All metrics, named without a prefix; the RNG state outside is left untouched. ``dataset``
        names the data (``ImageDataModule.dataset_id``) for a classifier's card check."""
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
                        "than 2 samples (lower sampler.thin or burn_in)"
                    )
            if self.fid.enabled:
                metrics, errors = self.sample_quality(model, test_set, pixel_range, dataset)
                result.metrics.update(metrics)
                result.errors.update(errors)
        model.train(was_training)
        return result


def stack_images(dataset: Dataset, start: int, stop: int) -> Tensor:
    """Images start..stop-1 of a dataset of (image, label) pairs, stacked."""
    return torch.stack([dataset[i][0] for i in range(start, stop)])
