"""An experiment's report: report.md, report.json and its figures, drawn from the runs of a grid
(and logged to W&B on request)."""

from __future__ import annotations

import json
import os
import shlex
from datetime import datetime, timezone
from pathlib import Path

from lpc.benchmarks.sampler_bias import markdown as bias_markdown
from lpc.benchmarks.sampler_bias import measure
from lpc.evaluation.names import METRICS
from lpc.reporting.experiments import EXPERIMENTS, study_methods
from lpc.reporting.markdown import markdown_table
from lpc.reporting.plots import (
    plot_against_x,
    plot_completions,
    plot_curves,
    plot_samples,
)
from lpc.reporting.provenance import REPO, commit, machine
from lpc.reporting.runs import collect_runs, tuned_best
from lpc.reporting.tables import (
    best_by_validation,
    failures,
    legend,
    model_rows,
    paired_differences,
    paired_markdown,
    protocol_lines,
    provenance_lines,
    report_table,
    table_rows,
)
from lpc.samplers.targets import Banana


def write_report(name: str, scale: str, cmds: list[list[str]], extra: list[str], out: Path, wandb_project: str | None,
                 flags: list[str] | None = None) -> dict:
    experiment = EXPERIMENTS[name]
    runs = collect_runs(out / "runs" / "best" if experiment.methods else out / "runs")  # tuned: the retrains, not the trials
    if not runs:
        raise SystemExit(f"no runs below {out / 'runs'}")
    rows = table_rows(runs, experiment)
    figures = []
    if experiment.curves:
        figures += plot_curves(runs, experiment, out)
    if experiment.x:
        figures += plot_against_x(rows, experiment, out)
    if experiment.samples:
        figures += plot_samples(runs, experiment, out)
    if experiment.completions:
        figures += plot_completions(runs, experiment, out)
    best = tuned_best(out, study_methods(experiment, scale)) if experiment.methods else []
    bias = exact_target_bias(rows, scale) if experiment.bias_table else []
    paired = paired_differences(runs, experiment) if experiment.paired else []
    report = {
        "experiment": name, "scale": scale, "commit": commit(), "machine": machine(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commands": [shlex.join(["python", "scripts/reproduce.py", name, "--scale", scale, *(flags or []),
                                 *(["--", *extra] if extra else [])]),
                     *(shlex.join(["python", *(a.replace(f"{REPO}/", "") for a in c[1:])]) for c in cmds)],
        "table": rows, "paired": paired, "best_trials": best, "exact_target_bias": bias, "figures": [f.name for f in figures],
        "runs": [{k: v for k, v in r.items() if k != "curves"} for r in runs],
    }
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    spaces = sorted({r["fd_space"] for r in rows if r["fd_space"]})
    lines = [
        f"# {name} ({scale} scale)", "",
        f"- date: {report['date']}", *provenance_lines(runs, report),
        f"- runs: {sum(not r['unfinished'] for r in runs)} ({sum(r['error'] is not None for r in runs)} failed, e.g. "
        f"diverged){f'; {n} not finished' if (n := sum(r['unfinished'] for r in runs)) else ''}", "",
        "Commands (from the repository root; the first runs the rest and writes this report):", "", "```bash",
        *report["commands"], "```", "",
        *protocol_lines(runs),
        "Mean ± sample standard deviation over the repeats (seeds) of each group; failed runs are counted, not averaged.",
        f"`fd` (the Frechet distance), `kid` and PRDC (precision, recall, density, coverage) are in: {', '.join(spaces) or 'n/a'}.", "",
        report_table(rows), "",
        *failures(runs, experiment),
        *best_by_validation(rows, experiment),
        *(paired_markdown(paired, experiment.paired) if paired else []),
        legend(rows), "",
    ]
    if best:
        lines += ["Best trial of each method's study, on the validation split (the same number of trials and steps for "
                  "each; trials never score the test split); the table above is each method retrained at that setting "
                  f"on seeds {'0' if scale == 'tiny' else experiment.seeds}:", "",
                  markdown_table(["method", "best val/log_likelihood", "parameters"],
                                 ([b["method"], f"{b['best_value']:.4g}", b["best_params"]] for b in best if b["best_value"] is not None)), ""]
    if bias:
        lines += ["The samplers alone on a banana whose moments are known (scripts/sampler_bias.py, chains started from "
                  "exact draws, so a deviation is the sampler's stationary bias):", "", bias_markdown(bias), ""]
    lines += [f"![{f.stem}]({f.name})" for f in figures]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    if wandb_project:
        log_to_wandb(wandb_project, name, scale, out, rows, figures)
        from lpc.reporting.dashboards import (
            publish_experiment_report,  # wandb-workspaces: only with --wandb
        )

        groups = [f"{name}_{m}" for m in study_methods(experiment, scale)] if experiment.methods else [f"{name}_runs"]
        publish_experiment_report(name, None, wandb_project, groups, (out / "report.md").read_text(), out)
    return report


def exact_target_bias(rows: list[dict], scale: str) -> list[dict]:
    """scripts/sampler_bias.py at the experiment's step sizes (fewer chains at --scale tiny)."""
    steps = sorted({float(r["keys"]["step_size"]) for r in model_rows(rows)})
    chains, num_steps = (2000, 20) if scale == "tiny" else (100_000, 100)
    return [row for eta in steps for row in measure(Banana(), eta, num_steps, chains, seed=0)]


def log_to_wandb(project: str, name: str, scale: str, out: Path, rows: list[dict], figures: list[Path]) -> None:
    import wandb

    run = wandb.init(project=project, name=f"report_{name}_{scale}", job_type="report", dir=str(out),
                     mode=os.environ.get("WANDB_MODE", "offline"), config={"experiment": name, "scale": scale})
    columns = ["group", "runs", "failed", *METRICS]
    run.log({"report/table": wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows]),
             **{f"report/{f.stem}": wandb.Image(str(f)) for f in figures}})
    run.finish()
