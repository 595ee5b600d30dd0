"""What annealed importance sampling costs beside IWAE_100, and where its estimate converges.

    python scripts/ais_benchmark.py                       # cost on the digits and the MNIST test split (if found)
    python scripts/ais_benchmark.py --ckpt-path <run>/checkpoints/last.ckpt --lengths 100 250 500 1000 2000

cost         seconds per test example of IWAE_100 (the evaluation's bound: 100 decoder passes per
             example, no gradient) and of AIS from the prior at the eval=ais and eval=ais_paper settings
             (chains x (K - 1) x L energy gradients per pass, two passes), with the energy gradients per
             example, on each data set's model (untrained: the cost does not depend on the weights).
             ais_paper is timed at --paper-distributions distributions and scaled to 10,000 (the cost
             of a pass is linear in K; the table says so), eval=ais likewise with --ais-distributions.
overhead     one adaptive AIS pass of the project's ``anneal`` against ``minimal_ais`` (the same algorithm
             written plainly: autograd on E, HMC with L leapfrog steps, the weight sum, the per-chain
             step adaptation) on the same model, data, start noise and K, timed interleaved
             (--overhead-repeats rounds); the median ratio of adjacent calls and its interquartile range;
             and the same pass compiled (``eval.ais.compile=torch_compile``: compile_chunk transitions per call).
convergence  (--ckpt-path) on a trained run: IWAE_100, AIS from each start at every K of --lengths,
             the weights' ESS and the BDMC gap at each K, with their seconds. An estimate has
             converged where it stops moving with K and the BDMC gap is small.

Examples go through in batches of --batch-size (times the chains for AIS), as the evaluation runs
them. Writes <out>/ais_benchmark.json and ais_benchmark.md (tables, machine, commit, command).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

import torch
from hydra.utils import instantiate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("LPC_ROOT", str(ROOT))

from benchmark import interleaved_ms, quartiles  # noqa: E402

from lpc.config.build import build  # noqa: E402
from lpc.config.compose import compose_config  # noqa: E402
from lpc.evaluation.evaluator import (  # noqa: E402
    AnnealedLikelihood,
    Evaluator,
    LikelihoodBounds,
    SampleQuality,
)
from lpc.jobs.checkpoints import read_checkpoint  # noqa: E402
from lpc.jobs.restore import restore, run_config  # noqa: E402
from lpc.reporting.markdown import markdown_table  # noqa: E402
from lpc.reporting.provenance import commit, machine  # noqa: E402
from lpc.samplers.annealing import (  # noqa: E402
    Adaptation,
    DiagonalGaussian,
    anneal,
    anneal_stretch,
    annealed_state,
    sigmoid_schedule,
)
from lpc.samplers.chain import energy_and_grad  # noqa: E402
from lpc.samplers.compiled import CompiledAdvance  # noqa: E402

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
    iwae = max(v for k, v in metrics.items() if k.startswith("iwae100_"))
    rows = [{"estimator": "IWAE_100 (best proposal)", "K": "", "ais_prior": iwae, "s": seconds}]
    for length in lengths:
        settings = replace(preset("ais", out), num_distributions=length, num_examples=n, batch_size=batch,
                           starts=["prior", "encoder"], bdmc_examples=bdmc_examples)
        metrics, seconds = timed(only_ais(settings), model, val_set, pixel_range)
        rows.append({"estimator": "AIS", "K": length, **{k: v for k, v in metrics.items() if k != "log_likelihood"},
                     "s": seconds})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=[d for d in DATA if d != "mnist_t10k" or MNIST_T10K.exists()])
    parser.add_argument("--examples", type=int, default=100, help="test examples per measurement (100)")
    parser.add_argument("--batch-size", type=int, default=100, help="examples per batch (100, the evaluation's)")
    parser.add_argument("--paper-distributions", type=int, default=200,
                        help="K at which eval=ais_paper is timed, then scaled to its 10,000 (200)")
    parser.add_argument("--ais-distributions", type=int, help="K at which eval=ais is timed, then scaled (its own K)")
    parser.add_argument("--ckpt-path", type=Path, help="a trained run's checkpoint: also the convergence table")
    parser.add_argument("--lengths", nargs="+", type=int, default=[100, 250, 500, 1000, 2000])
    parser.add_argument("--bdmc-examples", type=int, default=100)
    parser.add_argument("--overhead-distributions", type=int, default=50, help="K of the overhead table (50)")
    parser.add_argument("--overhead-repeats", type=int, default=15, help="interleaved rounds of the overhead table (15)")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "ais_benchmark")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    timed_at = {"ais": args.ais_distributions, "ais_paper": args.paper_distributions}
    cost = [row for data in args.data for row in cost_rows(data, args.examples, args.batch_size, timed_at, args.out)]
    overhead = [row for data in args.data for row in overhead_rows(
        data, args.examples, preset("ais", args.out).chains, args.overhead_distributions, args.overhead_repeats, args.out)]
    convergence = [] if args.ckpt_path is None else convergence_rows(
        args.ckpt_path, args.lengths, args.examples, args.bdmc_examples, args.batch_size, args.out)
    iwae_s = {row["data"]: row["s_per_example"] for row in cost if row["estimator"] == "IWAE_100"}
    lines = [
        f"# AIS against IWAE_100 ({dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC)",
        "", f"- commit: {commit()}", f"- machine: {machine()}",
        f"- command: `python scripts/ais_benchmark.py {' '.join(sys.argv[1:])}`", "",
        "## Cost per test example", "",
        markdown_table(["data", "estimator", "settings", "work / example", "s / example", "x IWAE_100"],
                       [[r["data"], r["estimator"], r["settings"], r["work"],
                         f"{r['s_per_example']:.4g}", f"{r['s_per_example'] / iwae_s[r['data']]:.3g}"] for r in cost]),
    ]
    lines += ["", "## The AIS loop against a minimal one", "",
              f"ms per transition of one adaptive pass from the prior (the project's `anneal` and `minimal_ais`), "
              f"median over {args.overhead_repeats} interleaved rounds; the ratio: median of adjacent calls (IQR).", "",
              markdown_table(["data", "rows (examples x chains)", "K", "L", "minimal ms", "anneal ms", "anneal / minimal",
                              "compiled ms (eval.ais.compile=torch_compile)", "compiled / minimal"],
                             [[r["data"], str(r["rows"]), str(r["distributions"]), str(r["num_leapfrog"]), f"{r['minimal_ms']:.3g}",
                               f"{r['anneal_ms']:.3g}", f"{r['ratio']:.3g} ({r['ratio_iqr'][0]:.3g}-{r['ratio_iqr'][1]:.3g})",
                               f"{r['compiled_ms']:.3g}",
                               f"{r['compiled_ratio']:.3g} ({r['compiled_ratio_iqr'][0]:.3g}-{r['compiled_ratio_iqr'][1]:.3g})"]
                              for r in overhead])]
    if convergence:
        keys = [k for k in ("ais_prior", "ais_encoder", "ais_prior_ess", "bdmc_gap_prior", "bdmc_gap_encoder")
                if any(k in row for row in convergence)]
        fmt = lambda v: "" if v in (None, "") else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
        lines += ["", f"## Convergence on `{args.ckpt_path}`", "",
                  f"{args.examples} test examples; BDMC on {args.bdmc_examples} examples simulated from the model. "
                  f"The IWAE row's value is under ais_prior.", "",
                  markdown_table(["estimator", "K", *keys, "s"],
                                 [[r["estimator"], r["K"], *(fmt(r.get(k)) for k in keys), f"{r['s']:.1f}"] for r in convergence])]
    text = "\n".join(lines) + "\n"
    print(text)
    (args.out / "ais_benchmark.md").write_text(text)
    (args.out / "ais_benchmark.json").write_text(json.dumps({
        "commit": commit(), "machine": machine(), "argv": sys.argv[1:], "cost": cost, "overhead": overhead, "convergence": convergence,
        "settings": {f"eval={name}": asdict(preset(name, args.out)) for name in ("ais", "ais_paper")},
    }, indent=2, default=str))


if __name__ == "__main__":
    main()
