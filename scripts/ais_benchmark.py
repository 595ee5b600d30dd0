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
import sys
from dataclasses import asdict
from pathlib import Path

from lpc.benchmarks.ais_cost import (
    DATA,
    MNIST_T10K,
    convergence_rows,
    cost_rows,
    overhead_rows,
    preset,
)
from lpc.reporting.markdown import markdown_table
from lpc.reporting.provenance import REPO as ROOT
from lpc.reporting.provenance import commit, machine


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
