"""Is the fitted sigma the maximiser of the held-out log-likelihood? AIS on a checkpoint's validation
images at the sigma the EM fit finds (lpc.evaluation.scale_fit), at multiples of it and at the training
sigma: the fitted one should be at (or within AIS's noise of) the top of the curve.

    python scripts/sigma_scan.py <run>/checkpoints/last.ckpt [more checkpoints] [--factors 0.6 0.8 1 1.25 1.6]

AIS from the prior at eval=ais's settings (16 chains, K = 1,000; --chains, --distributions), on the
first --examples validation images. Prints a table per checkpoint; writes outputs/sigma_scan/sigma_scan.json
and .md (with the command, commit and machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LPC_ROOT", str(ROOT))

from lpc.config.build import instantiate_checked  # noqa: E402
from lpc.config.compose import compose_config  # noqa: E402
from lpc.data.base import stack_images  # noqa: E402
from lpc.jobs.checkpoints import read_checkpoint  # noqa: E402
from lpc.jobs.restore import restore, run_config  # noqa: E402
from lpc.reporting.markdown import markdown_table  # noqa: E402
from lpc.reporting.provenance import commit, machine  # noqa: E402


def scan(ckpt_path: Path, factors: list[float], examples: int, out: Path, ais: list[str]) -> list[dict]:
    """AIS from the prior on the validation images at each sigma, with the fit's own result."""
    ckpt = read_checkpoint(str(ckpt_path))
    run = run_config(compose_config([f"ckpt_path={ckpt_path}", "eval=ais", *ais], out, config_name="evaluate"), ckpt)
    datamodule, model = restore(run, ckpt, str(ckpt_path), torch.device("cpu"))
    evaluator = instantiate_checked(run.eval, "eval")
    evaluator.ais = replace(evaluator.ais, starts=["prior"], bdmc_examples=0, check_distributions=[], progress=False,
                            num_examples=examples)
    model.eval()
    torch.manual_seed(evaluator.seed)
    n = min(evaluator.sigma_fit.num_examples, len(datamodule.val_set))
    fit = evaluator.sigma_fit.fit(model.energy, stack_images(datamodule.val_set, 0, n))
    trained = float(model.likelihood.sigma)
    rows = []
    for name, sigma in [("trained", trained), *((f"fitted x {f:g}", fit.sigma * f) for f in factors)]:
        with model.likelihood.scale_at(sigma):
            torch.manual_seed(evaluator.seed)
            ais = evaluator.annealed_likelihood(model, datamodule.val_set)["ais_prior"]
        rows.append({"checkpoint": str(ckpt_path), "sigma": sigma, "which": name, "ais_prior_val": ais,
                     "fit_iterations": fit.iterations, "fit_converged": fit.converged})
        print(f"{ckpt_path.parent.parent.name}: sigma={sigma:.4g} ({name}): AIS {ais:.2f} nats", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ckpt_paths", nargs="+", type=Path)
    parser.add_argument("--factors", nargs="+", type=float, default=[0.6, 0.8, 1.0, 1.25, 1.6])
    parser.add_argument("--examples", type=int, default=100, help="validation images AIS runs on")
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--distributions", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "sigma_scan")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    ais = [f"eval.ais.chains={args.chains}", f"eval.ais.num_distributions={args.distributions}", "eval.ais.check_distributions=[]"]
    rows = [row for path in args.ckpt_paths for row in scan(path, args.factors, args.examples, args.out, ais)]
    table = markdown_table(["checkpoint", "sigma", "which", "AIS from the prior, validation (nats)"],
                           ([r["checkpoint"], f"{r['sigma']:.4g}", r["which"], f"{r['ais_prior_val']:.2f}"] for r in rows))
    meta = {"command": shlex.join(["python", "scripts/sigma_scan.py", *sys.argv[1:]]), "commit": commit(), "machine": machine()}
    (args.out / "sigma_scan.json").write_text(json.dumps({**meta, "rows": rows}, indent=2))
    (args.out / "sigma_scan.md").write_text("\n".join([f"- {k}: {v}" for k, v in meta.items()] + ["", table, ""]))
    print(table)


if __name__ == "__main__":
    main()
