"""Collect the final metrics of a multirun into one table.

    python scripts/collect_runs.py outputs/train/multiruns/<date>_<time> [--metrics val/iwae100_chain val/recon_mse]

Reads every job's .hydra/overrides.yaml and metrics.json below the folder (``lpc.reporting.runs``), prints a markdown table
(one row per job: its overrides and the chosen metrics) and writes the rows as JSON to
outputs/collected/<folder name>.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lpc.reporting.markdown import markdown_table
from lpc.reporting.runs import collect_runs

DEFAULT_METRICS = ["val/iwae100_chain", "val/elbo_chain", "val/bpd_chain", "val/recon_mse", "cost/step_ms"]


def table(rows: list[dict], metrics: list[str]) -> str:
    cell = lambda v: "" if v is None else f"{v:.4g}"  # noqa: E731
    return markdown_table(["job", "overrides", *metrics], ([row["job"], " ".join(f"{k}={v}" for k, v in row["overrides"].items()),
                                                           *(cell(row["metrics"].get(m)) for m in metrics)] for row in rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--metrics", nargs="+", default=DEFAULT_METRICS)
    parser.add_argument("--out", type=Path, default=Path("outputs/collected"))
    args = parser.parse_args()
    rows = [{k: run[k] for k in ("job", "overrides", "metrics")} for run in collect_runs(args.folder) if run["metrics"]]
    if not rows:
        raise SystemExit(f"no metrics.json below {args.folder}: is it a (multi)run output folder?")
    print(table(rows, args.metrics))
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"{args.folder.name}.json"
    out.write_text(json.dumps(rows, indent=2))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
