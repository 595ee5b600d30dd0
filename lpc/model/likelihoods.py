"""Observation models log p(x | z) given the decoder's output f_theta(z).

Every likelihood maps the decoder output ``out`` (B, C, H, W) to a per-example log-probability
summed over pixels (B,), an image-space mean and a sample, and states the pixel range it expects
(``data_range``) and whether the data must be binarised, which the data module must match.

The Gaussian likelihoods share one scale sigma over all pixels, fixed or learned
(``sigma_mode``, see ``LocationScaleLikelihood``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

UNIT = (0.0, 1.0)
SYMMETRIC = (-1.0, 1.0)
_SQUASH = {"none": (lambda t: t, None), "sigmoid": (torch.sigmoid, UNIT), "tanh": (torch.tanh, SYMMETRIC)}
SIGMA_MODES = ("fixed", "param", "optimal", "ema")


def sum_per_example(t: Tensor) -> Tensor:
    """Sum over every dimension but the first: (B, ...) -> (B,)."""
    return t.flatten(1).sum(1)


class Likelihood(nn.Module):
    """Interface: elementwise_log_prob(x, out) -> like x, log_prob(x, out) -> (B,) (its sum per
    example), mean(out), sample(out), data_range, fit_scale."""

    data_range: tuple[float, float] | None = None  # None: any real-valued data
    discrete = False  # True: log_prob is a log-probability of the (8-bit or binary) data, not a density
    binary = False  # True: the data must be binarised

    def elementwise_log_prob(self, x: Tensor, out: Tensor) -> Tensor:
        """log p(x_i | z) of every pixel, (B, C, H, W): pixels are independent given z."""
        raise NotImplementedError

    def log_prob(self, x: Tensor, out: Tensor) -> Tensor:
        """log p(x | z) = sum_i log p(x_i | z), (B,)."""
        return sum_per_example(self.elementwise_log_prob(x, out))

    def mean(self, out: Tensor) -> Tensor:
        raise NotImplementedError

    def sample(self, out: Tensor) -> Tensor:
        raise NotImplementedError

    def fit_scale(self, x: Tensor, out: Tensor) -> None:
        """Called by the methods on each training batch's learning pass, before its loss (no-op here)."""


class BernoulliLikelihood(Likelihood):
    """p(x | z) = prod_i Bernoulli(x_i; sigmoid(l_i)) with logits l = f_theta(z), for binarised x.

        log p(x | z) = sum_i [ x_i * l_i - log(1 + exp(l_i)) ]
    """

    data_range = UNIT
    discrete = True
    binary = True

    def mean(self, out: Tensor) -> Tensor:
        return torch.sigmoid(out)

    def elementwise_log_prob(self, x: Tensor, out: Tensor) -> Tensor:
        return -F.binary_cross_entropy_with_logits(out, x, reduction="none")

    def sample(self, out: Tensor) -> Tensor:
        return torch.bernoulli(self.mean(out))


class LocationScaleLikelihood(Likelihood):
    """Pixels around mean = squash(f_theta(z)) with one scale sigma shared by all pixels.

    ``sigma_mode`` says where sigma comes from (``sigma`` is its initial or fixed value):

    - ``fixed``: sigma stays as given.
    - ``param``: a learned log-sigma parameter, trained with the decoder by the decoder's optimizer:
      the gradient of the decoder's loss flows into it.
    - ``optimal``: the sigma-VAE's closed form (Rybkin et al. 2021): on each training batch, before
      the loss, sigma^2 = the mean squared error between x and the mean over the batch and pixels
      (detached: no gradient flows into sigma, and the loss uses this sigma).
    - ``ema``: the same estimate averaged over batches, sigma <- d sigma + (1 - d) sigma_batch
      (d = ``ema_decay``), then used by the loss.

    In every mode sigma is a constant during a Langevin chain: the inner loop's energy sees the value
    left by the previous training batch, and gradients there are taken w.r.t. z only. sigma never
    falls below ``min_sigma``.
    """

    def __init__(
        self,
        sigma: float = 0.1,
        squash: str = "none",
        sigma_mode: str = "fixed",
        ema_decay: float = 0.99,
        min_sigma: float = 1e-3,
    ):
        super().__init__()
        if not sigma > 0:
            raise ValueError(f"likelihood.sigma must be > 0, got {sigma}")
        if squash not in _SQUASH:
            raise ValueError(f"likelihood.squash must be one of {sorted(_SQUASH)}, got {squash!r}")
        if sigma_mode not in SIGMA_MODES:
            raise ValueError(f"likelihood.sigma_mode must be one of {list(SIGMA_MODES)}, got {sigma_mode!r}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"likelihood.ema_decay must be in [0, 1), got {ema_decay}")
        if not min_sigma > 0:
            raise ValueError(f"likelihood.min_sigma must be > 0, got {min_sigma}")
        self.squash = squash
        self._squash_fn, self.data_range = _SQUASH[squash]
        self.sigma_mode = sigma_mode
        self.ema_decay = ema_decay
        self.min_sigma = min_sigma
        log_sigma = torch.tensor(math.log(sigma))
        if sigma_mode == "param":
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)

    @property
    def sigma(self) -> Tensor:
        return self.log_sigma.exp().clamp_min(self.min_sigma)

    def mean(self, out: Tensor) -> Tensor:
        return self._squash_fn(out)

    def pixel_log_prob(self, x: Tensor, mean: Tensor, sigma: Tensor) -> Tensor:
        raise NotImplementedError

    def elementwise_log_prob(self, x: Tensor, out: Tensor) -> Tensor:
        return self.pixel_log_prob(x, self.mean(out), self.sigma)

    @torch.no_grad()
    def fit_scale(self, x: Tensor, out: Tensor) -> None:
        """``optimal``/``ema``: sigma from the root-mean-square error of this batch (see the class)."""
        if self.sigma_mode not in ("optimal", "ema"):
            return
        rmse = (x - self.mean(out)).square().mean().sqrt().clamp_min(self.min_sigma)
        if self.sigma_mode == "ema":
            rmse = self.ema_decay * self.sigma + (1.0 - self.ema_decay) * rmse
        self.log_sigma.copy_(rmse.log())

    def sample(self, out: Tensor) -> Tensor:
        return self.mean(out) + self.sigma * torch.randn_like(out)

    @torch.no_grad()
    def best_scale(self, x: Tensor, mean: Tensor) -> Tensor:
        """The sigma >= ``min_sigma`` that maximises sum_i log p(x_i | mean_i, sigma) over every pixel
        of the given pairs (x and mean alike shaped): a golden-section search on log sigma over
        [rmse / 30, 3 rmse], where the maximum of a unimodal scale likelihood lies for data whose bins
        are narrow against sigma. Subclasses with a closed form override it."""
        rmse = (x - mean).square().mean().sqrt().clamp_min(self.min_sigma)
        low, high = (rmse / 30).clamp_min(self.min_sigma).log(), (3 * rmse).log()
        total = lambda log_sigma: self.pixel_log_prob(x, mean, log_sigma.exp()).sum()  # noqa: E731
        ratio = (math.sqrt(5) - 1) / 2
        for _ in range(40):  # the bracket shrinks to 0.618^40 of its width (about 1e-8 in log sigma)
            a, b = high - ratio * (high - low), low + ratio * (high - low)
            low, high = (a, high) if total(a) < total(b) else (low, b)
        return ((low + high) / 2).exp().clamp_min(self.min_sigma)

    @contextmanager
    def scale_at(self, sigma: Tensor | float) -> Iterator[None]:
        """Evaluate with sigma set to ``sigma`` (e.g. one fitted on held-out images); the scale the
        model had is put back afterwards, whatever its ``sigma_mode``."""
        saved = self.log_sigma.detach().clone()
        with torch.no_grad():
            self.log_sigma.copy_(torch.as_tensor(sigma, dtype=saved.dtype).log())
        try:
            yield
        finally:
            with torch.no_grad():
                self.log_sigma.copy_(saved)


def normal_log_pdf(x: Tensor, mean: Tensor, sigma: Tensor) -> Tensor:
    """log N(x; mean, sigma^2) = -((x - mean) / sigma)^2 / 2 - log sigma - log(2 pi) / 2, elementwise."""
    return -0.5 * ((x - mean) / sigma).square() - sigma.log() - 0.5 * math.log(2 * math.pi)


class GaussianLikelihood(LocationScaleLikelihood):
    """p(x | z) = N(x; mean, sigma^2 I), mean = squash(f_theta(z)):

        log p(x | z) = sum_i [ -(x_i - mean_i)^2 / (2 sigma^2) - log sigma - log(2 pi) / 2 ]

    ``squash``: ``none`` (any data range), ``sigmoid`` (data in [0, 1]) or ``tanh`` ([-1, 1]).
    """

    def pixel_log_prob(self, x: Tensor, mean: Tensor, sigma: Tensor) -> Tensor:
        return normal_log_pdf(x, mean, sigma)

    @torch.no_grad()
    def best_scale(self, x: Tensor, mean: Tensor) -> Tensor:
        """The maximiser in closed form: sigma^2 = the mean squared error over every pixel."""
        return (x - mean).square().mean().sqrt().clamp_min(self.min_sigma)


_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
# below these, erfc's tail leaves the dtype's normal range and log Phi switches to the series
_TAIL = {torch.float16: -3.5, torch.bfloat16: -10.0, torch.float32: -10.0, torch.float64: -30.0}


def log_ndtr(t: Tensor) -> Tensor:
    """log Phi(t) (standard normal CDF), elementwise: log(erfc(-t / sqrt 2) / 2) down to the dtype's tail point t0,
    below it the asymptotic series (Abramowitz & Stegun 26.2.12, relative error < 1e-7 at t0 = -10)

        log Phi(t) = -t^2/2 - log(-t) - log(2 pi)/2 + log(1 - 1/t^2 + 3/t^4 - 15/t^6 + 105/t^8).

    ``torch.special.log_ndtr``'s values to float precision in absolute terms (relatively too, except
    in the right tail, t > 5 in float32, where log Phi(t) ~ -Phi(-t) rounds to 0) at a tenth of its
    cost on the CPU (its erfcx is not vectorised there); not to be differentiated by itself
    (``discretized_gaussian_log_prob`` has its own backward)."""
    tail = t.clamp_max(_TAIL[t.dtype])
    s = tail.square().reciprocal()
    series = torch.log1p(s * (-1 + s * (3 + s * (-15 + 105 * s))))
    return torch.where(t > _TAIL[t.dtype], torch.log(0.5 * torch.special.erfc(-t * math.sqrt(0.5))),
                       -0.5 * tail.square() - torch.log(-tail) - _LOG_SQRT_2PI + series)


def log_normal_interval(lower: Tensor, upper: Tensor) -> Tensor:
    """log(Phi(upper) - Phi(lower)) for lower < upper (either may be infinite), stable everywhere:
    computed on whichever side of 0 keeps the interval's midpoint <= 0 (so that neither CDF is near 1),
    i.e. on (a, b) = (min(lower, -upper), min(upper, -lower)), as

        log Phi(b) + log(1 - exp(log Phi(a) - log Phi(b))),

    the last term by -expm1 (accurate to float precision in absolute terms, which is what a sum of
    log-probabilities needs)."""
    a = torch.minimum(lower, -upper)
    b = torch.minimum(upper, -lower)
    log_b = log_ndtr(b)
    # the gap is < 0 for a < b; the bound keeps the log finite where float precision rounds it to 0
    gap = (log_ndtr(a) - log_b).clamp_max(-torch.finfo(a.dtype).eps)
    return log_b + torch.log(-torch.expm1(gap))


class _DiscretizedGaussianLogProb(torch.autograd.Function):
    """Forward ``log_normal_interval`` of the bin's standardised edges; backward from the closed form
    (one pass over the saved tensors instead of autograd through the CDFs). With the standardised
    edges u = (x - mean + w/2) / sigma, l = (x - mean - w/2) / sigma and P = Phi(u) - Phi(l),
    p_u = phi(u) / P and p_l = phi(l) / P (0 at an open edge):

        d log P / d mean = (p_l - p_u) / sigma,   d log P / d x = -d log P / d mean,
        d log P / d sigma = (l p_l - u p_u) / sigma.

    (p_l - p_u loses relative precision where the bin is narrow against sigma, w / sigma < 1e-3, a
    scale far above the learned ones; first derivatives only.)
    """

    @staticmethod
    def forward(ctx, x: Tensor, mean: Tensor, sigma: Tensor, half: float) -> Tensor:
        upper = (x - mean + half) / sigma
        lower = (x - mean - half) / sigma
        bottom, top = x < -1.0 + half, x > 1.0 - half  # the open edge bins
        logp = log_normal_interval(lower.masked_fill(bottom, -math.inf), upper.masked_fill(top, math.inf))
        ctx.save_for_backward(x, mean, sigma, upper, lower, logp, bottom, top)
        return logp

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, mean, sigma, upper, lower, logp, bottom, top = ctx.saved_tensors
        p_upper = torch.exp(-0.5 * upper.square() - _LOG_SQRT_2PI - logp).masked_fill(top, 0.0)
        p_lower = torch.exp(-0.5 * lower.square() - _LOG_SQRT_2PI - logp).masked_fill(bottom, 0.0)
        d_mean = grad * (p_lower - p_upper) / sigma
        need_x, need_mean, need_sigma, _ = ctx.needs_input_grad
        return (
            (-d_mean).sum_to_size(x.shape) if need_x else None,
            d_mean.sum_to_size(mean.shape) if need_mean else None,
            (grad * (lower * p_lower - upper * p_upper) / sigma).sum_to_size(sigma.shape) if need_sigma else None,
            None,
        )


def discretized_gaussian_log_prob(x: Tensor, mean: Tensor, sigma: Tensor, bins: int = 256) -> Tensor:
    """log P(x) for x on the ``bins`` equally spaced values of [-1, 1] (bin width w = 2 / (bins - 1)):

        P(x) = Phi((x + w/2 - mean) / sigma) - Phi((x - w/2 - mean) / sigma)    inside,
        P(-1) = Phi((-1 + w/2 - mean) / sigma),  P(1) = 1 - Phi((1 - w/2 - mean) / sigma)    (open edge bins),

    so the probabilities of the bins sum to 1 for any mean and sigma. Elementwise, broadcasting.
    """
    return _DiscretizedGaussianLogProb.apply(x, mean, sigma, 1.0 / (bins - 1))


class DiscretizedGaussianLikelihood(LocationScaleLikelihood):
    """The paper's likelihood: a Gaussian with mean tanh(f_theta(z)) and a shared scale sigma,
    discretised to the 256 pixel values of 8-bit images scaled to [-1, 1] (bins of width 2/255,
    the first and last open to -inf/+inf; ``discretized_gaussian_log_prob``). A probability, not a
    density: bits per dimension are exact. Typically with a learned ``sigma_mode``."""

    discrete = True

    def __init__(self, sigma: float = 1.0, sigma_mode: str = "optimal", ema_decay: float = 0.99, min_sigma: float = 1e-3):
        super().__init__(sigma=sigma, squash="tanh", sigma_mode=sigma_mode, ema_decay=ema_decay, min_sigma=min_sigma)

    def pixel_log_prob(self, x: Tensor, mean: Tensor, sigma: Tensor) -> Tensor:
        return discretized_gaussian_log_prob(x, mean, sigma)

    def sample(self, out: Tensor) -> Tensor:
        """A draw rounded to the 256 pixel values (the edge bins take everything beyond)."""
        return (((super().sample(out) + 1) * 127.5).round().clamp(0, 255) / 127.5) - 1
