"""The evaluation every method shares, of one split (validation during training, test once at the
end): sample quality (Frechet distance and precision, recall, density, coverage of prior samples
against the split's images, in a feature network's space, with reference points), likelihood
bounds (ELBO and IWAE_k per proposal, bits per dimension) and annealed importance sampling (AIS
from the prior and the encoder, with the BDMC gap), which judges every method's model by the same
estimator whatever proposal the method has; every likelihood at the scale sigma fitted on the
validation split by the same rule for every method (``lpc.evaluation.scale_fit``). Used during
training by ``lpc.callbacks.PeriodicEvaluation`` and standalone by ``scripts/evaluate.py``."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from lpc.data.base import stack_images
from lpc.errors import ConfigError
from lpc.evaluation import names
from lpc.evaluation.ais import AIS
from lpc.evaluation.elbo import bits_per_dim, importance_log_weights, iwae_bound
from lpc.evaluation.features import (
    ClassifierFeatures,
    FeaturesUnavailableError,
    InceptionFeatures,
)
from lpc.evaluation.frechet import frechet_distance
from lpc.evaluation.kid import kernel_distance
from lpc.evaluation.names import AIS_STARTS, SPLITS
from lpc.evaluation.prdc import prdc
from lpc.evaluation.scale_fit import ScaleFit, fits_scale
from lpc.methods.base import GenerativeModule, repeat_batch
from lpc.samplers.annealing import DiagonalGaussian, StartDensity

log = logging.getLogger(__name__)


Generator = Callable[[int], Tensor]  # n -> a batch of n images in the data's pixel range


@dataclass
class SampleQuality:
    """Frechet distance, kernel distance (KID) and PRDC of ``num_samples`` prior samples (decoder
    means) against up to ``num_samples`` images of the evaluated split, in the space of each of
    ``features`` (one or a list; the same samples for all):

    - ``inception``: Inception-v3, the network of standard FID (``weights_path``/``download`` as in
      ``lpc.evaluation.features.InceptionFeatures``); metrics ``fid``, ``kid``, ``precision``, ...
    - ``classifier``: an in-domain classifier (``classifier_path``, default the shipped one that
      fits the data; ``lpc.evaluation.features.ClassifierFeatures``); metrics ``fd_<name>``,
      ``kid_<name>``, ``precision_<name>``, ... after the network's card name;
    - or any factory () -> feature network (named by its ``name`` attribute).

    ``references``: the final evaluation also scores two reference points with the same metrics,
    so that a model's distance reads between "nothing learned" and "the data":
    ``reference/untrained_decoder/<metric>`` (the model's architecture at a fresh initialisation)
    and ``reference/training_images/<metric>`` (images of the training split in place of samples: the floor).
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
    references: bool = True

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
    """ELBO and IWAE_k on the first ``num_examples`` images of the split, for every k in ``k`` and
    every proposal the method offers; bits/dim from the largest k."""

    num_examples: int = 1000
    k: Sequence[int] = (1, 10, 100)
    batch_size: int = 100
    enabled: bool = True


@dataclass
class AnnealedLikelihood(AIS):
    """AIS estimates of log p(x) (``lpc.evaluation.ais``) on the first ``num_examples`` images of the split,
    from each start in ``starts``: ``prior`` (p(z), every method), ``encoder`` (the method's
    q(z | x), where it has one) and ``chain`` (the diagonal Gaussian moment-matched to a Langevin
    chain's kept samples for x, where the method has chains: a start near the posterior for
    encoder-free methods); metrics ``ais_<start>`` with the chains' weight ESS and acceptance.
    The estimator's own checks: AIS from each start again at each length K of ``check_distributions``
    (``ais<K>_<start>``: a converged estimate has stopped moving with K), and, with
    ``bdmc_examples`` > 0, BDMC on that many examples simulated from the model
    (``bdmc_lower_<start>``, ``bdmc_upper_<start>``, ``bdmc_gap_<start>``). ``batch_size`` examples
    (times ``chains`` rows) go through the annealing at once. ``at_end_only``: skip AIS in the
    periodic (validation) evaluations during training, run it at the end on the test split (and in
    ``scripts/evaluate.py``).
    ``progress``: a progress bar (on a terminal)."""

    enabled: bool = False
    num_examples: int = 1000
    batch_size: int = 100
    starts: Sequence[str] = ("prior", "encoder")
    check_distributions: Sequence[int] = ()
    bdmc_examples: int = 100
    at_end_only: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = set(self.starts) - set(AIS_STARTS)
        if unknown or not self.starts:
            raise ValueError(f"eval.ais.starts must be a non-empty list of {list(AIS_STARTS)}, got {list(self.starts)}")
        for name in ("num_examples", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"eval.ais.{name} must be >= 1, got {getattr(self, name)}")
        if self.bdmc_examples < 0:
            raise ValueError(f"eval.ais.bdmc_examples must be >= 0, got {self.bdmc_examples}")
        if any(k < 1 or k == self.num_distributions for k in self.check_distributions):
            raise ValueError(f"eval.ais.check_distributions must be >= 1 and differ from num_distributions="
                             f"{self.num_distributions}, got {list(self.check_distributions)}")


@dataclass
class EvalResult:
    metrics: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    estimators: dict[str, str] = field(default_factory=dict)  # headline metric -> the estimate it is (e.g. ais_prior)


def to_unit(images: Tensor, pixel_range: tuple[float, float]) -> Tensor:
    """Pixels from ``pixel_range`` to [0, 1]."""
    low, high = pixel_range
    return ((images - low) / (high - low)).clamp(0, 1)


class Evaluator:
    """Evaluates a model on one split of its data (``evaluate_split``: validation during training,
    the test split once at the end; ``evaluate``: any dataset). Each feature network is built on
    first use (or by ``prepare``); one that cannot be (no Inception weights offline, no classifier
    for the data) is reported missing, with the reason, once, and every other metric goes on. A
    classifier made for other data is refused (``ConfigError``). ``features`` (``eval.features``:
    ``inception``, ``classifier`` or both) sets ``sample_quality.features`` when given. ``sigma_fit``: how the
    likelihood's scale is fitted on validation images before any likelihood is estimated."""

    def __init__(
        self, sample_quality: SampleQuality, likelihood: LikelihoodBounds, seed: int = 0,
        features: str | Sequence[str] | None = None, ais: AnnealedLikelihood | None = None,
        sigma_fit: ScaleFit | None = None,
    ):
        if features is not None:
            sample_quality.features = features if isinstance(features, str) else list(features)
        self.sample_quality = sample_quality
        self.likelihood = likelihood
        self.ais = ais or AnnealedLikelihood(enabled=False)
        self.sigma_fit = sigma_fit or ScaleFit()
        if self.ais.enabled and likelihood.enabled and self.ais.num_examples != likelihood.num_examples:
            raise ValueError(
                f"eval.ais.num_examples={self.ais.num_examples} and eval.likelihood.num_examples={likelihood.num_examples} "
                f"must be equal: log_likelihood picks the tightest of their estimates, which must be on the same images")
        self.seed = seed
        self._features: dict[int, nn.Module] = {}  # by position in sample_quality.spaces
        self._features_error: dict[int, str] = {}
        self._real: dict[tuple[int, int], Tensor] = {}  # (space, id of the split) -> the split's features, computed once

    def prepare(self, dataset: str, image_shape: tuple[int, ...]) -> None:
        """Build the feature networks for this data now, so that a classifier made for other data
        fails before training (missing ones are only reported, as on first use)."""
        if self.sample_quality.enabled:
            for i in range(len(self.sample_quality.spaces)):
                try:
                    self.feature_network(i, torch.device("cpu"), dataset, image_shape)
                except FeaturesUnavailableError:
                    pass

    def feature_network(self, i: int, device: torch.device, dataset: str = "", image_shape: tuple[int, ...] = ()) -> nn.Module:
        """The network of feature space ``sample_quality.spaces[i]``."""
        if i not in self._features and i not in self._features_error:
            try:
                self._features[i] = self.sample_quality.build_features(self.sample_quality.spaces[i], dataset, tuple(image_shape)).eval()
            except FeaturesUnavailableError as err:
                self._features_error[i] = str(err)
                log.warning("%s", err)
        if i not in self._features:
            raise FeaturesUnavailableError(self._features_error[i])
        return self._features[i].to(device)

    @torch.no_grad()
    def extract(self, net: nn.Module, batches: Sequence[Tensor], pixel_range: tuple[float, float]) -> Tensor:
        return torch.cat([net(to_unit(b, pixel_range)).flatten(1).double() for b in batches])

    def measure_sample_quality(
        self, generate: Generator, device: torch.device, images: Dataset, pixel_range: tuple[float, float],
        dataset: str = "", num_samples: int | None = None,
    ) -> tuple[dict[str, float], dict[str, str]]:
        """The metrics of ``num_samples`` (default ``sample_quality.num_samples``) images from ``generate``
        against up to ``sample_quality.num_samples`` of the split's ``images`` in every feature space that is
        available, and why the others are missing (keyed ``fid`` for Inception, ``fd_<space>`` otherwise)."""
        shape = tuple(images[0][0].shape)
        nets: dict[int, nn.Module] = {}
        errors: dict[str, str] = {}
        for i, space in enumerate(self.sample_quality.spaces):
            try:
                nets[i] = self.feature_network(i, device, dataset, shape)
            except FeaturesUnavailableError as err:
                errors[names.sample("fd", getattr(space, "__name__", space))] = str(err)
        if not nets:
            return {}, errors
        n, bs = num_samples or self.sample_quality.num_samples, self.sample_quality.batch_size
        samples = [generate(min(bs, n - i)) for i in range(0, n, bs)]  # the same samples in every space
        metrics: dict[str, float] = {}
        for i, net in nets.items():
            if (i, id(images)) not in self._real:
                stop = min(self.sample_quality.num_samples, len(images))
                real_images = [stack_images(images, j, min(j + bs, stop)).to(device) for j in range(0, stop, bs)]
                self._real[i, id(images)] = self.extract(net, real_images, pixel_range)
            real, fake = self._real[i, id(images)], self.extract(net, samples, pixel_range)
            space = getattr(net, "name", "features")
            metrics[names.sample("fd", space)] = frechet_distance(real, fake)
            kid, kid_std = kernel_distance(real, fake, self.sample_quality.kid_subsets, self.sample_quality.kid_subset_size)
            metrics.update({names.sample("kid", space): kid, names.std(names.sample("kid", space)): kid_std})
            metrics.update({names.sample(k, space): v for k, v in prdc(real, fake, self.sample_quality.prdc_k).items()})
        return metrics, errors

    def reference_points(self, model: GenerativeModule, images: Dataset, training: Dataset,
                         pixel_range: tuple[float, float], dataset: str) -> dict[str, float]:
        """Sample quality of the two reference points (``SampleQuality.references``), as
        ``reference/<name>/<metric>``: the model's networks at a fresh initialisation (seeded by the
        evaluation's seed) and up to ``sample_quality.num_samples`` images of the training split, spread evenly
        over it (fewer where it has fewer: the Frechet distance's small-sample bias then raises the floor)."""
        untrained = copy.deepcopy(model.energy)
        torch.manual_seed(self.seed)
        for module in untrained.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        count = min(len(training), self.sample_quality.num_samples)
        spread = iter(range(0, len(training) // count * count, len(training) // count))
        generators: dict[str, tuple[Generator, int]] = {
            "untrained_decoder": (lambda n: untrained.likelihood.mean(untrained.decode(untrained.prior.sample(n, model.device))),
                                  self.sample_quality.num_samples),
            "training_images": (lambda n: torch.stack([training[next(spread)][0] for _ in range(n)]).to(model.device), count),
        }
        metrics = {}
        for name, (generate, n) in generators.items():
            found, _ = self.measure_sample_quality(generate, model.device, images, pixel_range, dataset, n)
            metrics.update({names.reference(name, k): v for k, v in found.items()})
        return metrics

    def likelihood_bounds(self, model: GenerativeModule, images: Dataset, pixel_range: tuple[float, float]) -> dict[str, float]:
        settings = self.likelihood
        k_max = max(settings.k)
        n = min(settings.num_examples, len(images))
        log_w: dict[str, list[Tensor]] = {}
        for start in range(0, n, settings.batch_size):
            x = stack_images(images, start, min(start + settings.batch_size, n)).to(model.device)
            for name, (mean, log_std) in model.proposals(x).items():
                weights = importance_log_weights(lambda z: -model.energy(x, z), mean, log_std, k_max)
                log_w.setdefault(name, []).append(weights)
        metrics = {}
        for name, parts in log_w.items():
            weights = torch.cat(parts, dim=1)  # (k_max, n)
            metrics[names.elbo(name)] = weights.mean().item()
            for k in sorted(set(settings.k) - {1}):
                metrics[names.iwae(k, name)] = iwae_bound(weights, k).mean().item()
            best = iwae_bound(weights, k_max)
            metrics[names.bpd(name)] = bits_per_dim_of(model, images, pixel_range, best).mean().item()
        return metrics

    def annealed_likelihood(self, model: GenerativeModule, images: Dataset) -> dict[str, float]:
        """AIS from each start the method offers on the test images (also at each length of
        ``check_distributions``), and BDMC on data simulated from the model."""
        settings = self.ais
        n = min(settings.num_examples, len(images))
        offered = {"prior": True, "encoder": model.amortised_encoder is not None, "chain": model.has_chain_proposal}
        starts = [s for s in settings.starts if offered[s]]
        runs = [(length, name) for length in [settings.num_distributions, *settings.check_distributions] for name in starts]
        batches = -(-n // settings.batch_size)
        metrics: dict[str, float] = {}
        with self.progress_bar("AIS", settings.passes * sum(k for k, _ in runs) * batches) as progress:
            for length, name in runs:
                ais = replace(settings, num_distributions=length, check_distributions=())
                parts = [self.ais_batch(model, ais, stack_images(images, i, min(i + ais.batch_size, n)).to(model.device),
                                        name, progress) for i in range(0, n, ais.batch_size)]
                log_px, ess, accept = (torch.cat(t) for t in zip(*parts))
                if length != settings.num_distributions:
                    metrics[names.ais(name, length)] = log_px.mean().item()
                    continue
                metrics.update({names.ais(name): log_px.mean().item(), names.ais_ess(name): ess.mean().item(),
                                names.ais_accept(name): accept.mean().item()})
        if settings.bdmc_examples:
            batches = -(-settings.bdmc_examples // settings.batch_size)
            with self.progress_bar("BDMC", (settings.passes + 1) * settings.num_distributions * len(starts) * batches) as progress:
                bounds = list(zip(*self.bdmc(model, starts, progress)))  # per start: (lower, upper) per batch
            for name, parts in zip(starts, bounds):
                lower, upper = (torch.cat(t) for t in zip(*parts))
                metrics.update({names.bdmc_lower(name): lower.mean().item(), names.bdmc_upper(name): upper.mean().item(),
                                names.bdmc_gap(name): (upper - lower).mean().item()})
        return metrics

    def start_density(self, model: GenerativeModule, x: Tensor, name: str) -> StartDensity:
        """p_0 over the ``chains`` x B rows: the prior (N(0, I), or a hierarchy drawn ancestrally),
        the method's q(z | x), or the Gaussian fitted to its chain for x."""
        if name == "prior":
            return model.prior.start_density(self.ais.chains * len(x), x.device)
        mean, log_std = model.amortised_encoder(x) if name == "encoder" else model.proposals(x)["chain"]
        return DiagonalGaussian(repeat_batch(mean, self.ais.chains), repeat_batch(log_std, self.ais.chains))

    def ais_batch(self, model: GenerativeModule, ais: AIS, x: Tensor, name: str,
                  progress: Callable[[int], None]) -> tuple[Tensor, ...]:
        """log p_hat(x), the weights' ESS and the mean acceptance per example of the batch x."""
        xs = repeat_batch(x, ais.chains)
        estimate = ais.estimate(lambda z: model.energy(xs, z), self.start_density(model, x, name), progress)
        return estimate.log_px, estimate.ess, estimate.accept_rate.mean(0)

    def bdmc(self, model: GenerativeModule, starts: list[str],
             progress: Callable[[int], None]) -> Iterator[list[tuple[Tensor, Tensor]]]:
        """Per batch of examples simulated from the model (z* ~ p(z), x ~ p(x | z*)): (lower, upper)
        of each start, every start on the same simulated examples."""
        settings = self.ais
        for i in range(0, settings.bdmc_examples, settings.batch_size):
            z_star = model.prior.sample(min(settings.batch_size, settings.bdmc_examples - i), model.device)
            x = model.likelihood.sample(model.energy.decode(z_star))
            xs = repeat_batch(x, settings.chains)
            yield [tuple(settings.bdmc(lambda z: model.energy(xs, z), self.start_density(model, x, name),
                                       repeat_batch(z_star, settings.chains), progress)) for name in starts]

    @contextmanager
    def progress_bar(self, what: str, total: int) -> Iterator[Callable[[int], None]]:
        """A callback for ``lpc.evaluation.ais`` that advances a bar of ``total`` distributions (shown on a terminal)."""
        with tqdm(total=total, desc=what, unit="dist", disable=None if self.ais.progress else True, leave=False) as bar:
            yield lambda k: bar.update(1)

    def evaluate_split(self, model: GenerativeModule, datamodule, split: str, final: bool) -> EvalResult:
        """The evaluation of ``split`` (``val`` or ``test``) of a set-up ``lpc.data.ImageDataModule``:
        sigma fitted on its validation split and, in a ``final`` evaluation, the reference points
        from its training split."""
        if split not in SPLITS:
            raise ValueError(f"an evaluation scores one of {list(SPLITS)}, got {split!r}")
        return self.evaluate(model, datamodule.split(split), datamodule.pixel_range, datamodule.dataset_id, final=final,
                             validation=datamodule.val_set, training=datamodule.train_set if final else None)

    def evaluate(
        self, model: GenerativeModule, images: Dataset, pixel_range: tuple[float, float], dataset: str = "",
        final: bool = True, validation: Dataset | None = None, training: Dataset | None = None,
    ) -> EvalResult:
        """All metrics of the model on ``images``, named without a prefix; the RNG state outside is
        left untouched. ``dataset`` names the data (``ImageDataModule.dataset_id``) for a classifier's
        card check. ``validation``: images to fit the likelihood's sigma on (``lpc.evaluation.scale_fit``;
        ``sigma_fitted``, ``sigma_trained``), at which every likelihood is then estimated. ``final``
        (the end of training, or a checkpoint's evaluation; False: a periodic one) also runs what
        runs only there: AIS with ``eval.ais.at_end_only``, every likelihood again at the training
        sigma (``trained_sigma/<name>``, with ``eval.sigma_fit.report_trained``) and, given the
        ``training`` images, the sample-quality reference points (``reference/...``)."""
        result = EvalResult()
        was_training = model.training
        model.eval()
        devices = [model.device] if model.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            fitted = self.fit_scale(model, validation, result) if validation is not None else None
            with model.likelihood.scale_at(fitted) if fitted is not None else nullcontext():
                self.likelihoods(result, model, images, pixel_range, final)
            if fitted is not None and final and self.sigma_fit.report_trained:
                trained = EvalResult()
                self.likelihoods(trained, model, images, pixel_range, final)
                result.metrics.update({names.trained_sigma(k): v for k, v in trained.metrics.items()})
                result.estimators.update({names.trained_sigma(k): names.trained_sigma(v) for k, v in trained.estimators.items()})
            if self.sample_quality.enabled:
                torch.manual_seed(self.seed)
                metrics, errors = self.measure_sample_quality(model.generate, model.device, images, pixel_range, dataset)
                result.metrics.update(metrics)
                result.errors.update(errors)
                if final and training is not None and self.sample_quality.references and metrics:
                    result.metrics.update(self.reference_points(model, images, training, pixel_range, dataset))
        model.train(was_training)
        return result

    def fit_scale(self, model: GenerativeModule, validation: Dataset, result: EvalResult) -> float | None:
        """sigma fitted on the first ``eval.sigma_fit.num_examples`` validation images (None where the
        likelihood has no scale to fit, or the fit is off); records it and the training sigma."""
        if not (self.sigma_fit.enabled and fits_scale(model.energy)):
            return None
        torch.manual_seed(self.seed)
        n = min(self.sigma_fit.num_examples, len(validation))
        fit = self.sigma_fit.fit(model.energy, stack_images(validation, 0, n).to(model.device))
        result.metrics.update({names.SIGMA_FITTED: fit.sigma, names.SIGMA_TRAINED: float(model.likelihood.sigma),
                               names.SIGMA_FIT_ITERATIONS: float(fit.iterations), names.SIGMA_FIT_CONVERGED: float(fit.converged)})
        return fit.sigma

    def likelihoods(self, result: EvalResult, model: GenerativeModule, images: Dataset, pixel_range: tuple[float, float],
                    final: bool) -> None:
        """The likelihood bounds, AIS (where configured) and the headline ``log_likelihood``, each
        from the evaluation's seed, at the likelihood's current sigma."""
        torch.manual_seed(self.seed)
        if self.likelihood.enabled:
            bounds = self.likelihood_bounds(model, images, pixel_range)
            result.metrics.update(bounds)
            if not bounds:
                result.errors["likelihood"] = (
                    "no proposal for likelihood bounds: the model has no encoder and its chain keeps fewer "
                    "than 2 samples (lower sampler.thin or burn_in)"
                )
        if self.ais.enabled and (final or not self.ais.at_end_only):
            result.metrics.update(self.annealed_likelihood(model, images))
        self.headline(result, model, images, pixel_range)

    def headline(self, result: EvalResult, model: GenerativeModule, images: Dataset, pixel_range: tuple[float, float]) -> None:
        """``log_likelihood``: the tightest (largest) of the estimates, all lower bounds in expectation
        (AIS from each start, IWAE_kmax, or the ELBO for k = 1, of each proposal), and ``bpd`` from it;
        ``bdmc_gap``: the BDMC gap of the best AIS start. ``result.estimators`` names the estimate
        ``log_likelihood`` is."""
        metrics = result.metrics
        k_max = max(self.likelihood.k)
        starts = [start for start in AIS_STARTS if names.ais(start) in metrics]
        if starts and names.bdmc_gap(best_start := max(starts, key=lambda s: metrics[names.ais(s)])) in metrics:
            metrics[names.bdmc_gap()] = metrics[names.bdmc_gap(best_start)]
        candidates = [names.ais(s) for s in starts] + [names.iwae(k_max, p) for p in names.iwae_bounds(metrics).get(k_max, {})]
        if not candidates:
            return
        best = max(candidates, key=metrics.__getitem__)
        metrics[names.LOG_LIKELIHOOD] = metrics[best]
        metrics[names.bpd()] = bits_per_dim_of(model, images, pixel_range, torch.tensor(metrics[best])).item()
        result.estimators[names.LOG_LIKELIHOOD] = best


def bits_per_dim_of(model: GenerativeModule, images: Dataset, pixel_range: tuple[float, float], log_px: Tensor) -> Tensor:
    """Bits per dimension of the images from log p(x) (``lpc.evaluation.elbo.bits_per_dim``): 8-bit
    bins of the pixel range for a density, none for a discrete likelihood."""
    bin_width = None if model.likelihood.discrete else (pixel_range[1] - pixel_range[0]) / 256
    return bits_per_dim(log_px, math.prod(images[0][0].shape), bin_width)
