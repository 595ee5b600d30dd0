"""What annealed importance sampling costs beside IWAE_100, how far the project's AIS loop is from a
minimal one, and where its estimate converges (scripts/ais_benchmark.py draws the tables)."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch
from hydra.utils import instantiate

from lpc.benchmarks.timing import interleaved_ms, quartiles
from lpc.config.build import build
from lpc.config.compose import compose_config
from lpc.evaluation import names
from lpc.evaluation.protocol import (
    AnnealedLikelihood,
    Evaluator,
    LikelihoodBounds,
    SampleQuality,
)
from lpc.jobs.checkpoints import read_checkpoint
from lpc.jobs.restore import restore, run_config
from lpc.reporting.provenance import REPO as ROOT
from lpc.samplers.annealing import (
    Adaptation,
    DiagonalGaussian,
    anneal,
    anneal_stretch,
    annealed_state,
    sigmoid_schedule,
)
from lpc.samplers.chain import energy_and_grad
from lpc.samplers.compiled import CompiledAdvance

MNIST_T10K = ROOT.parent / "shared" / "data" / "mnist-t10k"


# the models of the committed reports (the paper's family at the small scale): MLPs, latent 16, discretised Gaussian
FAMILY = ["decoder=mlp", "encoder=mlp", "likelihood=discretized_gaussian", "latent_dim=16", "model=vae"]


DATA = {"digits": ["data=digits"], "mnist_t10k": ["data=mnist_t10k", f"data.root={MNIST_T10K}"]}


def preset(name: str, out: Path) -> AnnealedLikelihood:
    """The AIS settings of ``eval=<name>`` (from prior only, no BDMC, no progress bar)."""
    settings = instantiate(compose_config([f"eval={name}"], out).eval.ais)
    return replace(settings, starts=["prior"], bdmc_examples=0, check_distributions=[], progress=False)


def timed(evaluator: Evaluator, model, val_set, pixel_range) -> tuple[dict[str, float], float]:
    start = time.perf_counter()
    metrics = evaluator.evaluate(model, val_set, pixel_range).metrics
    return metrics, time.perf_counter() - start


def only_iwae(examples: int, batch: int) -> Evaluator:
    return Evaluator(SampleQuality(enabled=False), LikelihoodBounds(num_examples=examples, k=[100], batch_size=batch))


def only_ais(settings: AnnealedLikelihood) -> Evaluator:
    return Evaluator(SampleQuality(enabled=False), LikelihoodBounds(enabled=False), ais=settings)


def cost_rows(data: str, examples: int, batch: int, timed_at: dict[str, int | None], out: Path) -> list[dict]:
    """Seconds per example of IWAE_100, AIS at eval=ais and (scaled) eval=ais_paper, on data's model."""
    cfg = compose_config([*FAMILY, *DATA[data]], out)
    datamodule, model = build(cfg)
    datamodule.setup("test")
    val_set, pixel_range = datamodule.val_set, datamodule.pixel_range
    n = min(examples, len(val_set))
    rows = []
    _, seconds = timed(only_iwae(n, batch), model, val_set, pixel_range)
    rows.append({"data": data, "estimator": "IWAE_100", "settings": "k = 100", "work": "100 decoder passes, no gradient",
                 "s_per_example": seconds / n})
    for name in ("ais", "ais_paper"):
        settings = preset(name, out)
        measured = timed_at[name] or settings.num_distributions
        run = replace(settings, num_examples=n, batch_size=batch, num_distributions=measured)
        _, seconds = timed(only_ais(run), model, val_set, pixel_range)
        scale = (settings.num_distributions - 1) / max(measured - 1, 1)  # transitions: what the cost is linear in
        rows.append({
            "data": data, "estimator": f"AIS from the prior (eval={name})",
            "settings": f"K = {settings.num_distributions}, {settings.chains} chains, L = {settings.num_leapfrog}, "
                        f"{settings.passes} passes" + ("" if scale == 1 else f" (timed at K = {measured}, scaled)"),
            "work": f"{settings.passes * settings.chains * settings.grad_evals} energy gradients",
            "s_per_example": seconds * scale / n,
        })
    return rows


def minimal_ais(energy_fn, z: torch.Tensor, betas: list[float], step_size: torch.Tensor, num_leapfrog: int,
                adaptation: Adaptation) -> torch.Tensor:
    """The overhead table's reference: one adaptive AIS pass from N(0, I) (z its draw) on the geometric
    path, HMC with identity mass, written plainly; log w per row (float64)."""
    def at(z: torch.Tensor) -> tuple[torch.Tensor, ...]:  # E, grad E, U_0, grad U_0
        energy, grad = energy_and_grad(energy_fn, z)
        return energy, grad, 0.5 * z.square().sum(-1) + 0.5 * z.shape[-1] * math.log(2 * math.pi), z

    eps, state = step_size[:, None], at(z)
    log_w = torch.zeros(len(z), dtype=torch.float64)
    for k in range(1, len(betas)):
        energy, grad, u0, g0 = state
        log_w = log_w + (betas[k] - betas[k - 1]) * (u0 - energy)
        if k == len(betas) - 1:
            break
        beta = betas[k]
        p = torch.randn_like(z)
        h = (1 - beta) * u0 + beta * energy + 0.5 * p.square().sum(-1)
        new_z, new = z, state
        for _ in range(num_leapfrog):
            p = p - 0.5 * eps * ((1 - beta) * new[3] + beta * new[1])
            new_z = new_z + eps * p
            new = at(new_z)
            p = p - 0.5 * eps * ((1 - beta) * new[3] + beta * new[1])
        new_h = (1 - beta) * new[2] + beta * new[0] + 0.5 * p.square().sum(-1)
        accept_prob = torch.exp(torch.nan_to_num(h - new_h, nan=-torch.inf).clamp_max(0.0))
        move = torch.rand_like(accept_prob) < accept_prob
        z = torch.where(move[:, None], new_z, z)
        state = tuple(torch.where(move if a.dim() == 1 else move[:, None], a, b) for a, b in zip(new, state))
        factor = torch.where(accept_prob > adaptation.target, adaptation.factor, 1 / adaptation.factor)
        eps = (eps * factor[:, None]).clamp(adaptation.low, adaptation.high)
    return log_w


def overhead_rows(data: str, examples: int, chains: int, distributions: int, repeats: int, out: Path) -> list[dict]:
    """ms per transition of ``anneal`` (one adaptive pass from the prior) and of ``minimal_ais`` on
    data's model (eval=ais's chains, L and adaptation), interleaved; their median ratio."""
    cfg = compose_config([*FAMILY, *DATA[data]], out)
    datamodule, model = build(cfg)
    datamodule.setup("test")
    x = torch.stack([datamodule.val_set[i][0] for i in range(examples)]).repeat(chains, 1, 1, 1)
    settings = preset("ais", out)
    rows = len(x)
    start = DiagonalGaussian(torch.zeros(rows, model.latent_dim), torch.zeros(rows, model.latent_dim))
    z0, betas, eps = start.sample(), sigmoid_schedule(distributions, settings.schedule_delta), torch.full((rows,), settings.step_size)
    adaptation = Adaptation(settings.target_accept, settings.adapt_factor, settings.min_step_size, settings.max_step_size)
    energy_fn = partial(model.energy, x)
    with torch.no_grad():
        fns = {"minimal": partial(minimal_ais, energy_fn, z0, betas, eps, settings.num_leapfrog, adaptation),
               "anneal": partial(anneal, energy_fn, start, z0, betas, eps, settings.num_leapfrog, adaptation=adaptation),
               "compiled": partial(anneal, energy_fn, start, z0, betas, eps, settings.num_leapfrog, adaptation=adaptation,
                                   compiled=CompiledAdvance(anneal_stretch, {}, annealed_state), chunk=settings.compile_chunk)}
        times = interleaved_ms(fns, torch.device("cpu"), repeats, 1)
    per = distributions - 1  # transitions
    row = {"data": data, "rows": rows, "distributions": distributions, "num_leapfrog": settings.num_leapfrog, "repeats": repeats,
           **{f"{k}_ms": statistics.median(v) / per for k, v in times.items()}}
    for loop, key in (("anneal", "ratio"), ("compiled", "compiled_ratio")):
        q1, q2, q3 = quartiles([a / b for a, b in zip(times[loop], times["minimal"])])
        row[key], row[f"{key}_iqr"] = q2, [q1, q3]
    return [row]


def convergence_rows(ckpt_path: Path, lengths: list[int], examples: int, bdmc_examples: int, batch: int,
                     out: Path) -> list[dict]:
    """IWAE_100 and AIS (each start, ESS, BDMC gap) at each K on the checkpoint's model."""
    ckpt = read_checkpoint(str(ckpt_path))
    cfg = compose_config([f"ckpt_path={ckpt_path}"], out, config_name="evaluate")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    datamodule, model = restore(run_config(cfg, ckpt), ckpt, str(ckpt_path), device)
    val_set, pixel_range = datamodule.val_set, datamodule.pixel_range
    n = min(examples, len(val_set))
    metrics, seconds = timed(only_iwae(n, batch), model, val_set, pixel_range)
    iwae = max(names.iwae_bounds(metrics)[100].values())
    rows = [{"estimator": "IWAE_100 (best proposal)", "K": "", "ais_prior": iwae, "s": seconds}]
    for length in lengths:
        settings = replace(preset("ais", out), num_distributions=length, num_examples=n, batch_size=batch,
                           starts=["prior", "encoder"], bdmc_examples=bdmc_examples)
        metrics, seconds = timed(only_ais(settings), model, val_set, pixel_range)
        rows.append({"estimator": "AIS", "K": length, **{k: v for k, v in metrics.items() if k != "log_likelihood"},
                     "s": seconds})
    return rows
