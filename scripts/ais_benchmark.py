"""What annealed importance sampling costs beside IWAE_100, and where its estimate converges.

    python scripts/ais_benchmark.py                       # cost on the digits and the MNIST test split (if found)
    python scripts/ais_benchmark.py --ckpt-path <run>/checkpoints/last.ckpt --lengths 100 250 500 1000 2000

cost         seconds per test example of IWAE_100 (the evaluation's bound: 100 decoder passes per
             example, no gradient) and of AIS from the prior at the eval=ais and eval=ais_paper settings
             (chains x (K - 1) x L energy gradients per pass, two passes), with the energy gradients per
             example, on each data set's model (untrained: the cost does not depend on the weights).
             ais_paper is timed at --paper-distributions distributions and scaled to 10,000 (the cost
             of a pass is linear in K; the table says so), eval=ais likewise with --ais-distributions.
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
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from hydra.utils import instantiate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LPC_ROOT", str(ROOT))

from lpc.build import build  # noqa: E402
from lpc.checkpoints import read_checkpoint  # noqa: E402
from lpc.compose import compose_config  # noqa: E402
from lpc.evaluating import restore, run_config  # noqa: E402
from lpc.evaluation import AnnealedLikelihood, Evaluator, LikelihoodBounds, SampleQuality  # noqa: E402
from lpc.markdown import markdown_table  # noqa: E402
from lpc.provenance import commit, machine  # noqa: E402

MNIST_T10K = ROOT.parent / "shared" / "data" / "mnist-t10k"
# the models of the committed reports (the paper's family at the small scale): MLPs, latent 16, discretised Gaussian
FAMILY = ["decoder=mlp", "encoder=mlp", "likelihood=discretized_gaussian", "latent_dim=16", "model=vae"]
DATA = {"digits": ["data=digits"], "mnist_t10k": ["data=mnist_t10k", f"data.root={MNIST_T10K}"]}


def preset(name: str, out: Path) -> AnnealedLikelihood:
    """The AIS settings of ``eval=<name>`` (from prior only, no BDMC, no progress bar)."""
    settings = instantiate(compose_config([f"eval={name}"], out).eval.ais)
    return replace(settings, starts=["prior"], bdmc_examples=0, check_distributions=[], progress=False)


def timed(evaluator: Evaluator, model, test_set, pixel_range) -> tuple[dict[str, float], float]:
    start = time.perf_counter()
    metrics = evaluator.evaluate(model, test_set, pixel_range).metrics
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
    test_set, pixel_range = datamodule.val_set, datamodule.pixel_range
    n = min(examples, len(test_set))
    rows = []
    _, seconds = timed(only_iwae(n, batch), model, test_set, pixel_range)
    rows.append({"data": data, "estimator": "IWAE_100", "settings": "k = 100", "work": "100 decoder passes, no gradient",
                 "s_per_example": seconds / n})
    for name in ("ais", "ais_paper"):
        settings = preset(name, out)
        measured = timed_at[name] or settings.num_distributions
        run = replace(settings, num_examples=n, batch_size=batch, num_distributions=measured)
        _, seconds = timed(only_ais(run), model, test_set, pixel_range)
        scale = (settings.num_distributions - 1) / max(measured - 1, 1)  # transitions: what the cost is linear in
        rows.append({
            "data": data, "estimator": f"AIS from the prior (eval={name})",
            "settings": f"K = {settings.num_distributions}, {settings.chains} chains, L = {settings.num_leapfrog}, "
                        f"{settings.passes} passes" + ("" if scale == 1 else f" (timed at K = {measured}, scaled)"),
            "work": f"{settings.passes * settings.chains * settings.grad_evals} energy gradients",
            "s_per_example": seconds * scale / n,
        })
    return rows


def convergence_rows(ckpt_path: Path, lengths: list[int], examples: int, bdmc_examples: int, batch: int,
                     out: Path) -> list[dict]:
    """IWAE_100 and AIS (each start, ESS, BDMC gap) at each K on the checkpoint's model."""
    ckpt = read_checkpoint(str(ckpt_path))
    cfg = compose_config([f"ckpt_path={ckpt_path}"], out, config_name="evaluate")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    datamodule, model = restore(run_config(cfg, ckpt), ckpt, str(ckpt_path), device)
    test_set, pixel_range = datamodule.val_set, datamodule.pixel_range
    n = min(examples, len(test_set))
    metrics, seconds = timed(only_iwae(n, batch), model, test_set, pixel_range)
    iwae = max(v for k, v in metrics.items() if k.startswith("iwae100_"))
    rows = [{"estimator": "IWAE_100 (best proposal)", "K": "", "ais_prior": iwae, "s": seconds}]
    for length in lengths:
        settings = replace(preset("ais", out), num_distributions=length, num_examples=n, batch_size=batch,
                           starts=["prior", "encoder"], bdmc_examples=bdmc_examples)
        metrics, seconds = timed(only_ais(settings), model, test_set, pixel_range)
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
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "ais_benchmark")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    timed_at = {"ais": args.ais_distributions, "ais_paper": args.paper_distributions}
    cost = [row for data in args.data for row in cost_rows(data, args.examples, args.batch_size, timed_at, args.out)]
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
        "commit": commit(), "machine": machine(), "argv": sys.argv[1:], "cost": cost, "convergence": convergence,
        "settings": {f"eval={name}": asdict(preset(name, args.out)) for name in ("ais", "ais_paper")},
    }, indent=2, default=str))


if __name__ == "__main__":
    main()
