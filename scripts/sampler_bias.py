"""The bias of ULA, MALA and HMC on a banana whose moments are known exactly, over step sizes.

Prints a markdown table and writes JSON to outputs/sampler_bias/banana.json.

    python scripts/sampler_bias.py                       # eta in 0.01 0.03 0.1 0.3, 100,000 chains
    python scripts/sampler_bias.py --steps 0.05 0.2 --chains 20000

The method: lpc/benchmarks/sampler_bias.py.
"""

from __future__ import annotations

import argparse
import json

from lpc.benchmarks.sampler_bias import markdown, measure
from lpc.reporting.provenance import REPO as ROOT
from lpc.reporting.provenance import commit, machine
from lpc.samplers.targets import Banana


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3], help="Langevin step sizes eta")
    parser.add_argument("--num-steps", type=int, default=100, help="ULA/MALA transitions per chain (HMC: a fifth)")
    parser.add_argument("--chains", type=int, default=100_000, help="independent chains")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    target = Banana()
    rows = [row for eta in args.steps for row in measure(target, eta, args.num_steps, args.chains, args.seed)]
    print(markdown(rows))
    out = ROOT / "outputs" / "sampler_bias" / "banana.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"target": "banana(bend=0.5, sigma=0.5)", "chains": args.chains, "num_steps": args.num_steps,
                               "seed": args.seed, "commit": commit(), "machine": machine(), "rows": rows}, indent=2))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
