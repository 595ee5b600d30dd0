"""Collect the final metrics of a multirun into one table.

    python scripts/collect_runs.py outputs/train/multiruns/<date>_<time> [--metrics val/iwae100_chain val/recon_mse]

Reads every job's .hydra/overrides.yaml and metrics.json below the folder, prints a markdown table
(one row per job: its overrides and the chosen metrics) and writes the rows as JSON to
outputs/collected/<folder name>.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

DEFAULT_METRICS = ["val/iwae100_chain", "val/elbo_chain", "val/bpd_chain", "val/recon_mse", "cost/step_ms"]


def collect(folder: Path) -> list[dict]:
    """One dict per job folder holding metrics.json: {"job", "overrides", "metrics"}."""
    rows = []
    for metrics_file in sorted(folder.rglob("metrics.json"), key=lambda p: p.parent.name.zfill(6)):
        job = metrics_file.parent
        overrides_file = job / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
        rows.append({"job": job.name, "overrides": overrides, "metrics": json.loads(metrics_file.read_text())})
    return rows


def table(rows: list[dict], metrics: list[str]) -> str:
    lines = ["| job | overrides | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 2) + "|"]
    for row in rows:
        values = [row["metrics"].get(m) for m in metrics]
        cells = ["" if v is None else f"{v:.4g}" for v in values]
        lines.append(f"| {row['job']} | {' '.join(row['overrides'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--metrics", nargs="+", default=DEFAULT_METRICS)
    parser.add_argument("--out", type=Path, default=Path("outputs/collected"))
    args = parser.parse_args()
    rows = collect(args.folder)
    if not rows:
        raise SystemExit(f"no metrics.json below {args.folder}: is it a (multi)run output folder?")
    print(table(rows, args.metrics))
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"{args.folder.name}.json"
    out.write_text(json.dumps(rows, indent=2))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
