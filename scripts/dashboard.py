"""W&B dashboards defined in code (lpc/reporting/dashboards.py): the project's workspace, or an experiment's report.

    python scripts/dashboard.py --entity E --project P                           # the workspace
    python scripts/dashboard.py --entity E --project P --experiment lpc_vs_vae   # the experiment's report
    python scripts/dashboard.py --entity E --project P --dry-run                 # JSON under outputs/dashboards/
    python scripts/dashboard.py --publish outputs/dashboards/workspace_P.json    # publish a written one later
    python scripts/dashboard.py --list                                           # the sections and panels

Publishes where the W&B server answers and a login is there; otherwise (and with --dry-run) writes the
specification as JSON under --out and says how to publish it later. A report shows the runs of the W&B
groups given by --group (default: every run tagged with the experiment) and the tables of --report
(default: the report.md of `python scripts/reproduce.py <experiment>`, if there).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lpc.errors import exit_on_user_error
from lpc.reporting import dashboards
from lpc.reporting.provenance import REPO as ROOT


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entity", help="W&B entity (default: the login's default entity)")
    parser.add_argument("--project", default="lpc", help="W&B project (default: lpc, the runs' default)")
    parser.add_argument("--experiment", choices=sorted(dashboards.REPORTS), help="the report of this experiment")
    parser.add_argument("--group", action="append", default=[], help="a W&B group of the report's runs (repeatable)")
    parser.add_argument("--report", type=Path, help="the experiment's report.md, whose tables the report shows")
    parser.add_argument("--dry-run", action="store_true", help="write the JSON specification, do not publish")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "dashboards", help="where the JSON goes")
    parser.add_argument("--publish", type=Path, metavar="JSON", help="publish a specification written before")
    parser.add_argument("--list", action="store_true", help="print the sections and panels (markdown)")
    args = parser.parse_args(argv)
    if args.list:
        print(dashboards.outline())
    elif args.publish:
        print(f"published {args.publish}: {dashboards.publish_file(args.publish, args.entity)}")
    elif args.experiment:
        default = ROOT / "outputs" / "reproduce" / args.experiment / "small" / "report.md"
        report = args.report or (default if default.exists() else None)
        report_md = report.read_text() if report else ""
        dashboards.publish_experiment_report(args.experiment, args.entity, args.project, args.group, report_md,
                                             args.out, args.dry_run)
    else:
        dashboards.publish_or_write(dashboards.workspace(args.entity or "", args.project),
                                    f"workspace_{args.project}", args.out, args.dry_run)


if __name__ == "__main__":
    main()
