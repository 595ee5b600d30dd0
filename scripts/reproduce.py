"""Run one of the paper's experiments as a Hydra multirun and write its report.

    python scripts/reproduce.py lpc_vs_vae                      # --scale small: MLPs on the digits, CPU
    python scripts/reproduce.py step_size_robustness --scale tiny
    python scripts/reproduce.py lpc_vs_vae --scale medium                   # CIFAR-10, conv nets, 3 seeds, CPU
    python scripts/reproduce.py lpc_vs_vae --scale paper -- hydra/launcher=slurm hydra.launcher.partition=gpu
    python scripts/reproduce.py warmstart_objectives --report-only outputs/reproduce/warmstart_objectives/small

Experiments (configs/experiment/<name>.yaml holds each grid): lpc_vs_vae, warmstart_objectives,
step_size_robustness, ula_vs_mala, tuned, hierarchical (MNIST's test split: ``-- data.root=<folder>``).
Scales: ``tiny`` (the pipeline's test: minutes on 2 CPU cores), ``small`` (the experiment as configured:
a real result on a CPU machine in about an hour), ``medium`` (CIFAR-10 with the paper's conv networks
and likelihood, cut to a CPU: MEDIUM below; lpc_vs_vae runs 4 methods x 3 seeds), ``medium_mnist``
(MNIST's test split with MLPs; lpc_vs_vae: 5 methods x 3 seeds), ``paper`` (CIFAR-10 with the paper's
networks; for a GPU). Arguments after ``--`` go to train.py (any launcher, any override).

Writes <out> (default outputs/reproduce/<name>/<scale>/): runs/ (one folder per job), report.md,
report.json (every run's metrics and the tables), and PNG figures. With --wandb the figures and
tables are also logged to W&B (offline unless WANDB_MODE/--wandb-online say otherwise).

Runs live in <out>, which is not under version control. ``--keep-records DIR`` copies each finished
job's records (RECORD_FILES: configs, metrics, logs, logged rows, the last sample grid; no checkpoint)
into DIR/runs/ and, on a relaunch, restores the kept jobs into <out> first, so they are not run again:
commit DIR and a grid survives a fresh clone (``--report-only --out DIR`` redraws its report).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import matplotlib
import yaml

matplotlib.use("Agg")  # files only, no display
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]  # this checkout's lpc (not an installed one) and its scripts

from sampler_bias import markdown as bias_markdown  # noqa: E402
from sampler_bias import measure

from lpc.reporting.markdown import markdown_table  # noqa: E402
from lpc.reporting.provenance import commit, machine  # noqa: E402
from lpc.reporting.significance import compare_by_seed  # noqa: E402
from lpc.reporting.summaries import SAMPLE_METRICS, split_prefix, summarise  # noqa: E402
from lpc.samplers.targets import Banana  # noqa: E402

TRAIN = [sys.executable, str(ROOT / "train.py")]
COMPLETE = [sys.executable, str(ROOT / "scripts" / "complete.py")]
EVALUATE = [sys.executable, str(ROOT / "scripts" / "evaluate.py")]

# Settings of each scale, on top of the experiment's own (which are the `small` scale).
TINY = ["trainer.max_steps=6", "trainer.val_check_interval=3", "num_steps=4", "burn_in=2", "sampler.thin=1",
        "eval=fast", "eval.fid.num_samples=100", "eval.likelihood.num_examples=32", "callbacks.image_grids.every_n_steps=3",
        "trainer.limit_val_batches=2", "logger=csv", "trainer.enable_progress_bar=false",
        "eval.ais.num_distributions=6", "eval.ais.chains=2", "eval.ais.bdmc_examples=4",
        "eval.ais.check_distributions=[3]", "eval.sigma_fit.num_examples=16", "eval.sigma_fit.burn_in=20",
        "eval.sigma_fit.num_steps=5", "eval.sigma_fit.num_samples=2", "eval.sigma_fit.max_iterations=4",
        "eval.sigma_fit.polish=1"]
# --scale medium: CIFAR-10 with the paper's networks (higgins32, full width) and likelihood, cut to what 2 CPU cores
# finish: latent 32, T = 20 (burn-in 10) for every chain, 1,500 iterations; AIS from the prior and the encoder on 50
# test images with 4 chains at K = 500 (the K = 250 check, BDMC on 10 simulated images). AIS costs 0.4 ms per chain,
# distribution and leapfrog step here (x2 passes, 1 CPU thread), so K = 500 is what fits, and it is far from
# converged from the prior (62 nats from K = 250, BDMC gap 38 on encoder-free LPC). The chain-fitted start, which
# converges on MNIST, was worse here (7 nats below the prior's at K = 500 on that run, BDMC gap 1,305: a T = 20
# chain's Gaussian misses the posterior in 3,072 dimensions) and is left out. An LPC update takes 640 ms at 1
# thread: about 20 minutes of training and 5 of AIS per encoder-free run. The sigma fit uses 50 validation images.
MEDIUM = ["data=folder", "data.root=../shared/data/cifar10/cifar10_jpeg.zip", "decoder=higgins32", "encoder=higgins32",
          "latent_dim=32", "num_steps=20", "burn_in=10", "trainer.max_steps=1500", "trainer.val_check_interval=300",
          "trainer.limit_val_batches=10", "callbacks.image_grids.every_n_steps=1500", "eval.fid.num_samples=2000",
          "eval.likelihood.num_examples=50", "eval.ais.chains=4", "eval.ais.num_distributions=500",
          "eval.ais.check_distributions=[250]", "eval.ais.bdmc_examples=10", "eval.ais.starts=[prior,encoder]",
          "eval.sigma_fit.num_examples=50"]
# --scale medium_mnist: the small scale's networks and settings on MNIST's test split (9,000 / 1,000 images; T = 50,
# 1,500 iterations); AIS from the prior and the encoder on 100 test images, 8 chains, K = 1,000 with the K = 500
# check, BDMC on 10. From the prior K = 1,000 has not converged on encoder-free models here (11 nats from K = 500,
# BDMC gap 9-11 on the first run): `--long-ais` measures how far. The chain-fitted start converged on 20 images
# but not on 100 (its K = 1,000 estimate 16 nats below its K = 500 one: a few images' fits miss the posterior; docs/ais.md).
# Measured at 1 CPU thread: an LPC update 318 ms (about 8 minutes of training per encoder-free run), AIS 80 us per
# chain, distribution and leapfrog step (x2 passes): about 7 minutes per start.
MEDIUM_MNIST = ["data=mnist_t10k", "data.root=../shared/data/mnist-t10k", "eval.fid.num_samples=1000",
                "eval.ais.chains=8", "eval.ais.bdmc_examples=10", "eval.ais.starts=[prior,encoder]"]
PAPER = ["data=folder", "data.root=../shared/data/cifar10/cifar10_jpeg.zip", "decoder=higgins32", "encoder=higgins32",
         "latent_dim=64", "trainer.max_steps=50000", "trainer.val_check_interval=5000", "trainer=gpu"]
# the grid each experiment keeps at --scale tiny (a few cells of each axis, one seed)
TINY_GRIDS = {
    "lpc_vs_vae": {"method": "lpc,hoffman,pc,vae", "seed": "0"},
    "warmstart_objectives": {"seed": "0"},
    "step_size_robustness": {"step_size": "0.05,1.0", "seed": "0"},
    "ula_vs_mala": {"step_size": "0.05,1.0", "seed": "0"},
    "tuned": {"hydra.sweeper.n_trials": "1"},
    "hierarchical": {"method": "lpc,vae", "prior.sizes": "[128],[20,128,128]", "seed": "0"},
}
# the grid each experiment runs at the medium scales (where it differs from the experiment's own)
MEDIUM_GRIDS = {
    "medium": {"lpc_vs_vae": {"seed": "0,1,2", "method": "lpc,lpc_jeffreys,vae,pc"}},
    "medium_mnist": {"lpc_vs_vae": {"seed": "0,1,2", "method": "lpc,lpc_jeffreys,vae,pc,iwae"}},
}
SCALES = {"tiny": TINY, "small": [], "medium": MEDIUM, "medium_mnist": MEDIUM_MNIST, "paper": PAPER}
GRIDS = {"tiny": TINY_GRIDS, **MEDIUM_GRIDS}
TINY_METHODS = ["lpc", "vae"]  # tuned at --scale tiny: two studies


@dataclass
class Experiment:
    """How an experiment's runs are grouped and drawn: ``group_by`` names the swept keys that make
    a table row (the rest, e.g. seed, are repeats); ``x`` a numeric key to plot metrics against."""

    group_by: list[str]
    x: str | None = None
    curves: bool = False  # metric vs SGD iterations, decoder-gradient evaluations and wall-clock
    samples: bool = False  # a sample grid per group
    methods: list[str] = field(default_factory=list)  # tuned: one Optuna study per method, then its best setting retrained
    seeds: str = "0,1"  # tuned: the seeds of each method's retrain at its best setting (--scale tiny: 0)
    bias_table: bool = False  # ula_vs_mala: the exact-target bias of scripts/sampler_bias.py
    completions: list[str] = field(default_factory=list)  # masks: scripts/complete.py on every finished run
    paired: str | None = None  # a group, e.g. "method=lpc": every other group's differences to it, seed by seed


EXPERIMENTS = {
    "lpc_vs_vae": Experiment(["method"], curves=True, samples=True, paired="method=lpc"),
    "warmstart_objectives": Experiment(["method"], curves=True, samples=True, paired="method=lpc"),
    "step_size_robustness": Experiment(["precond", "step_size"], x="step_size"),
    "ula_vs_mala": Experiment(["sampler", "step_size"], x="step_size", bias_table=True),
    "tuned": Experiment(["method"], methods=["lpc", "lpc_jeffreys", "pc", "vae", "iwae"], paired="method=lpc"),
    "hierarchical": Experiment(["method", "prior.sizes"], curves=True, samples=True, completions=["half", "centre", "random"]),
}

# The report's metrics: name -> (how to read it from a run's final metrics, direction, label)
LABELS = {
    "log_likelihood": "the tightest estimate of log p(x) on the test split, at the sigma fitted on the validation split "
                      "(nats, higher is better): the `estimator` column names it",
    "val_log_likelihood": "the same on the validation split, at the end of training (what choices are made on)",
    "log_likelihood_trained_sigma": "log_likelihood at the sigma training left instead of the fitted one (nats)",
    "sigma_fitted": "the likelihood's sigma fitted on the validation split (the same EM for every method)",
    "sigma_trained": "the sigma training left (sigma-VAE: the last batch's reconstruction error)",
    "ais_prior": "AIS from the prior, log p(x) (nats; every method alike)",
    "ais_encoder": "AIS from the method's encoder q(z|x) (nats; methods with an encoder)",
    "ais_chain": "AIS from a Gaussian fitted to the method's Langevin chain for x (nats; LPC and PC)",
    "ais_check": "AIS from the best start at a shorter schedule (nats): close to it if AIS converged",
    "bdmc_gap": "BDMC gap of the best AIS on data simulated from the model (nats): AIS's error bar",
    "ais_long": "AIS from the prior at the long schedule of --long-ais (nats; encoder-free runs): the convergence check",
    "ais_long_check": "the same at half that schedule",
    "bdmc_gap_long": "BDMC gap at the long schedule (25 simulated images)",
    "iwae": "IWAE bound, largest k, best proposal (nats)",
    "elbo": "ELBO (nats, higher is better)",
    "bpd": "bits/dim of log_likelihood (lower is better)",
    "fd": "Frechet distance of samples (lower is better)",
    "kid": "kernel (MMD) distance of samples, the FD's features (lower is better)",
    "precision": "share of samples within the test images' k-NN balls (fidelity; PRDC, higher is better)",
    "recall": "share of test images within the samples' k-NN balls (diversity; higher is better)",
    "density": "PRDC density (fidelity, counting ball overlaps; about 1 for a match)",
    "coverage": "share of test images whose k-NN ball holds a sample (diversity; higher is better)",
    "recon_mse": "val reconstruction MSE",
    "accept_rate": "acceptance rate",
    "diverged_frac": "share of diverged chains (val)",
    "decoder_evals": "decoder evals per update",
    "decoder_evals_total": "decoder evals over the run (what budget.decoder_evals limits)",
    "step_ms": "ms per update",
    "mse_half": "completion: squared error on the missing pixels, bottom half missing (scripts/complete.py; lower is better)",
    "mse_centre": "completion: the same, a centre square missing",
    "mse_random": "completion: the same, half the pixels missing at random",
}
# the figures' axis labels (the table's legend, LABELS, says more)
AXES = {"log_likelihood": "log p(x) (nats)", "iwae": "IWAE bound on log p(x) (nats)", "fd": "Frechet distance of samples",
        "accept_rate": "acceptance rate", "diverged_frac": "share of diverged chains (val)"}
# scripts/complete.py's settings per scale (the test images it completes, the draws per image)
COMPLETION = {"tiny": ["num_images=8", "num_draws=2", "grid_images=4"], "small": ["num_images=200", "num_draws=4"],
              "medium": ["num_images=200", "num_draws=4"], "medium_mnist": ["num_images=200", "num_draws=4"],
              "paper": ["num_images=1000", "num_draws=4"]}
CURVE = "iwae"  # the likelihood the curves show: every evaluation has it (AIS may run at the end only)


def provenance_lines(runs: list[dict], report: dict) -> list[str]:
    """The report's commit and machine lines: the runs' own (their metrics.json's ``provenance``) beside
    the report's, which differ where a report is drawn later (--report-only) or from kept records."""
    recorded = [r["metrics"]["provenance"] for r in runs if r["metrics"] and "provenance" in r["metrics"]]
    unrecorded = f" ({n} runs without a record of theirs)" if (n := sum(bool(r["metrics"]) for r in runs) - len(recorded)) else ""
    if not recorded:
        return [f"- commit: {report['commit']}", f"- machine: {report['machine']} (the report's){unrecorded}"]
    listed = lambda key: "; ".join(sorted({p[key] for p in recorded}))  # noqa: E731
    return [f"- commit: the runs at {listed('commit')}{unrecorded}; the report drawn at {report['commit']}",
            f"- machine: the runs on {listed('machine')}{unrecorded}"]


def read_overrides(job: Path) -> dict[str, str]:
    path = job / ".hydra" / "overrides.yaml"
    items = yaml.safe_load(path.read_text()) if path.exists() else []
    return dict(item.split("=", 1) for item in items if "=" in item)


def collect_runs(runs_dir: Path) -> list[dict]:
    """Every job below ``runs_dir``: its overrides, final metrics (None if it failed, e.g. diverged)
    and summary, its curves (csv/metrics.csv) and its last sample grid."""
    def sweep_order(job: Path) -> list:  # job numbers as numbers: 2 before 10
        return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in job.relative_to(runs_dir).parts]

    jobs = sorted({p.parent.parent for p in runs_dir.rglob(".hydra/overrides.yaml")}, key=sweep_order)
    runs = []
    for job in jobs:
        metrics_file, completion = job / "metrics.json", job / "completion" / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else None
        if metrics and completion.exists():  # scripts/complete.py on the run's checkpoint
            metrics = {**metrics, **json.loads(completion.read_text())["metrics"]}
        long_ais = sorted(job.glob("ais_long_*/metrics.json"), key=lambda p: int(p.parent.name.rsplit("_", 1)[1]))
        if metrics and long_ais:  # --long-ais K (the longest there is): scripts/evaluate.py on the run's checkpoint
            metrics = {**metrics, **{f"long/{k}": v for k, v in json.loads(long_ais[-1].read_text())["metrics"].items()}}
        if metrics and "cost/step_ms" not in metrics:  # resumed at its last step: no update since, the cost as logged before
            metrics = {**metrics, **last_logged(job / "csv" / "metrics.csv", ("cost/step_ms", "cost/decoder_evals"))}
        grids = sorted((job / "images").glob("samples_step*.png"))
        error = None if metrics else failure(job)
        runs.append({
            "job": str(job.relative_to(runs_dir)),
            "overrides": read_overrides(job),
            "metrics": metrics,
            "summary": summarise(metrics) if metrics else None,
            "curves": read_curves(job / "csv" / "metrics.csv", metrics),
            "samples": str(grids[-1]) if grids else None,
            "error": error,
            "unfinished": metrics is None and error is None,  # interrupted or still running: not counted
        })
    return runs


def failure(job: Path) -> str | None:
    """Why a job has no metrics.json: the last error its log names (e.g. a DivergenceError); None if
    it names none (the job was interrupted or is still running)."""
    errors = [line.split("[ERROR] - ", 1)[1].strip() for log in sorted(job.glob("*.log"))
              for line in log.read_text(errors="replace").splitlines() if "[ERROR] - " in line]
    return errors[-1] if errors else None


def csv_rows(csv_file: Path) -> list[dict]:
    """The rows a run logged, over its interruptions too (``csv/metrics.part<k>.csv`` first, resume=auto)."""
    parts = sorted((p for p in csv_file.parent.glob("metrics.part*.csv") if p.stem.removeprefix("metrics.part").isdigit()),
                   key=lambda p: int(p.stem.removeprefix("metrics.part")))
    return [row for part in [*parts, csv_file] if part.exists() for row in csv.DictReader(part.open())]


def last_logged(csv_file: Path, keys: tuple[str, ...]) -> dict[str, float]:
    """The last value the run logged of each of ``keys`` (those it logged)."""
    found = {}
    for row in csv_rows(csv_file):
        found.update({k: float(row[k]) for k in keys if row.get(k)})
    return found


def read_curves(csv_file: Path, final: dict | None) -> list[dict]:
    """(step, decoder evaluations, seconds, log-likelihood bound, FD) at every evaluation of the
    validation split during a run (the test split's before 2026-12, when runs had no validation
    split), over the rows logged before each interruption too (``csv/metrics.part<k>.csv``, resume=auto).
    Gradient evaluations are step x the run's decoder evaluations per update, seconds step x its
    median update time (from the logged cost/ metrics, else the final ones)."""
    rows = csv_rows(csv_file)
    if not rows:
        return []
    final = final or {}
    step_ms = [float(r["cost/step_ms"]) for r in rows if r.get("cost/step_ms")] or [final.get("cost/step_ms", math.nan)]
    evals = [float(r["cost/decoder_evals"]) for r in rows if r.get("cost/decoder_evals")] or [final.get("cost/decoder_evals", math.nan)]
    ms = statistics.median(step_ms)
    per_step = evals[-1]
    prefix = "eval/" if any(k.startswith("eval/") for r in rows for k in r) else "val/"  # eval/: records from before 2026-12
    by_step: dict[int, dict[str, float]] = {}  # a step's evaluation, also one logged again after a resume, counts once
    for r in rows:
        values = {k: float(v) for k, v in r.items() if k.startswith(prefix) and v not in ("", None)}
        if values:
            by_step.setdefault(int(r["step"]), {}).update(values)  # evaluations are logged at the updates done so far
    curve = []
    for step in sorted(by_step):
        s = summarise(by_step[step], prefix)
        if s[CURVE] is not None or s["fd"] is not None:  # an evaluation (not only Lightning's val/ diagnostics)
            curve.append({"step": step, "decoder_evals": step * per_step, "seconds": step * ms / 1e3, CURVE: s[CURVE], "fd": s["fd"]})
    return curve


def grouped(runs: list[dict], experiment: Experiment) -> dict[str, list[dict]]:
    """The runs by group, ``"key=value ..."`` over the experiment's ``group_by`` keys, in sweep order."""
    groups: dict[str, list[dict]] = {}
    for run in runs:
        name = " ".join(f"{k}={run['overrides'].get(k, '-')}" for k in experiment.group_by)
        groups.setdefault(name, []).append(run)
    return groups


def averaged(done: list[dict], source: Callable[[str], str]) -> dict[str, float | None]:
    """Mean and spread (sample standard deviation over the repeats, 0 for one) of every metric of
    LABELS over the summaries ``done``, each metric read from the summary's ``source(metric)``."""
    row: dict[str, float | None] = {}
    for metric in LABELS:
        values = [d[source(metric)] for d in done if d.get(source(metric)) is not None and math.isfinite(d[source(metric)])]
        row[metric] = statistics.fmean(values) if values else None
        row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else (0.0 if values else None)
    return row


def table_rows(runs: list[dict], experiment: Experiment) -> list[dict]:
    """One row per group: its keys, the number of runs, of failed runs, and mean and spread of every
    metric (``averaged``); sorted by ``x`` if numeric; then the sample-quality reference points (``reference_rows``)."""
    rows = []
    for name, members in grouped(runs, experiment).items():
        keys = {k: members[0]["overrides"].get(k) for k in experiment.group_by}
        members = [m for m in members if not m["unfinished"]]
        done = [m["summary"] for m in members if m["summary"] is not None]
        row = {"group": name, "keys": keys, "runs": len(members), "failed": len(members) - len(done),
               **averaged(done, lambda metric: metric)}
        for name in ("fd_space", "estimator"):
            row[name] = ", ".join(sorted({d[name] for d in done if d[name]})) or None
        rows.append(row)
    if experiment.x:
        rows.sort(key=lambda r: (line_name(r, experiment), float(r["keys"][experiment.x])))
    return rows + reference_rows(runs)


REFERENCE_LABELS = {"untrained_decoder": "reference: the networks untrained",
                    "training_images": "reference: training images (the floor)"}


def reference_rows(runs: list[dict]) -> list[dict]:
    """The sample-quality reference points each run measured at its end (``lpc.evaluation.evaluator``,
    ``SampleQuality.references``) as two rows, mean ± spread over the runs: where a model sits
    between "nothing learned" and "the data"."""
    done = [r["summary"] for r in runs if r["summary"]]
    rows = []
    for ref, label in REFERENCE_LABELS.items():
        row = {"group": label, "keys": {}, "runs": sum(d[f"fd_{ref}"] is not None for d in done), "failed": 0,
               "reference": True, "estimator": None, "fd_space": ", ".join(sorted({d["fd_space"] for d in done if d["fd_space"]})) or None,
               **averaged(done, lambda metric: f"{metric}_{ref}" if metric in SAMPLE_METRICS else "-")}
        if row["runs"]:
            rows.append(row)
    return rows


def line_name(row: dict, experiment: Experiment) -> str:
    """The row's keys other than ``x``: one line of a plot against ``x``."""
    return " ".join(f"{k}={v}" for k, v in row["keys"].items() if k != experiment.x)


def table_columns(rows: list[dict]) -> list[str]:
    """The metrics some row has."""
    return [m for m in LABELS if any(r[m] is not None for r in rows)]


def failures(runs: list[dict], experiment: Experiment) -> list[str]:
    """The report's list of failed runs (counted in the table, not averaged), each with its error."""
    keys = [*experiment.group_by, "seed"]
    named = lambda r: " ".join(f"{k}={r['overrides'][k]}" for k in keys if k in r["overrides"])  # noqa: E731
    failed = [f"- {r['job']} ({named(r)}): {r['error']}" for r in runs if r["error"]]
    unfinished = [f"- {r['job']} ({named(r)})" for r in runs if r["unfinished"]]
    return [*(["Failed runs (counted above, not averaged):", "", *failed, ""] if failed else []),
            *(["Not finished (interrupted or still running; not counted: a relaunch of the first command continues "
               "them):", "", *unfinished, ""] if unfinished else [])]


def report_table(rows: list[dict]) -> str:
    """The report's main table: each group's mean ± sample std of every metric some row has."""
    columns = table_columns(rows)

    def cell(r: dict, m: str) -> str:
        v, s = r[m], r[f"{m}_std"]
        value = f"{v:.1f}" if v is not None and abs(v) >= 1000 else f"{v:.4g}" if v is not None else ""  # nats to 0.1
        return "" if v is None else (value if not s else f"{value} ± {s:.2g}")

    if any(r["estimator"] for r in rows) and "log_likelihood" in columns:  # the estimate each log_likelihood is
        columns.insert(columns.index("log_likelihood") + 1, "estimator")
    cells = lambda r: [r["estimator"] or "" if m == "estimator" else cell(r, m) for m in columns]  # noqa: E731
    return markdown_table(["group", "runs (failed)", *columns], ([r["group"], f"{r['runs']} ({r['failed']})", *cells(r)] for r in rows))


PAIRED = ("log_likelihood", "ais_prior", "fd", "kid")  # the metrics compared seed by seed
ERRORS = {"log_likelihood": "log_likelihood_error", "ais_prior": "ais_prior_error"}  # each estimate's own error, per run


def paired_differences(runs: list[dict], experiment: Experiment) -> list[dict]:
    """Each group against ``experiment.paired``, seed by seed: for every metric of PAIRED, the
    differences (group − reference) over the seeds both finished as a ``PairedComparison`` (mean,
    spread, sign count, the paired-t 95% interval, significance; for AIS estimates also the
    estimator's own error: the larger of the two groups' mean error, BDMC gap or move from K/2 to K).
    Runs with one seed share the data order and the seed of every random draw, so the spread of the
    differences is the seed-to-seed spread of the comparison itself."""
    groups = grouped(runs, experiment)
    reference = groups.get(experiment.paired, [])
    rows = []
    for name, members in groups.items():
        if name == experiment.paired or not any(r["summary"] for r in reference):
            continue
        comparisons = {metric: compare_by_seed(members, reference, metric, ERRORS.get(metric)) for metric in PAIRED}
        rows.append({"group": name, **{m: c.as_dict() if c else None for m, c in comparisons.items()}})
    return rows


def paired_markdown(rows: list[dict], reference: str) -> list[str]:
    """The report's lines for ``paired_differences``: one row per group, a column per metric."""
    metrics = [m for m in PAIRED if any(r[m] for r in rows)]

    def cell(d: dict | None) -> str:
        if d is None:
            return ""
        interval = f"; 95% CI [{d['low']:+.3g}, {d['high']:+.3g}]" if d["low"] is not None else ""
        error = f"; estimator error {d['estimator_error']:.2g}" if d["estimator_error"] is not None else ""
        return f"{d['mean']:+.4g} ± {d['std']:.2g} ({d['above']}/{d['pairs']} > 0{interval}{error}): {d['verdict']}"

    return [f"Differences to {reference}, seed by seed (group − {reference}; mean ± sample standard deviation over "
            "the seeds both finished, how many of those differences are above 0, the 95% interval of the mean from the "
            "paired t distribution, and the verdict: significant only where the interval excludes 0, and 'within the "
            "estimator's error' wherever the mean difference is no larger than the AIS estimates' own error (the larger "
            "of the two groups' BDMC gap or move from K/2 to K distributions), whatever the test says; higher "
            "log-likelihoods and lower distances are better):", "",
            markdown_table(["group", *(f"Δ {m}" for m in metrics)], ([r["group"], *(cell(r[m]) for m in metrics)] for r in rows)), ""]


def plot_curves(runs: list[dict], experiment: Experiment, out: Path) -> list[Path]:
    """Log-likelihood bound and FD against SGD iterations, decoder-gradient evaluations and
    wall-clock, one line per group (mean over repeats at each evaluation, a band of ± one sample
    standard deviation where there are several)."""
    figures = []
    for metric in (CURVE, "fd"):
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        drawn = False
        for name, members in grouped(runs, experiment).items():
            curve = mean_curve(members, metric)
            if curve is None:
                continue
            label = f"{name} ({curve['repeats']} run{'s' * (curve['repeats'] > 1)})"
            for ax, axis in zip(axes, ("step", "decoder_evals", "seconds")):
                line, = ax.plot(curve[axis], curve["mean"], marker="o", label=label)
                if curve["repeats"] > 1:
                    ax.fill_between(curve[axis], curve["low"], curve["high"], color=line.get_color(), alpha=0.15, linewidth=0)
            drawn = True
        if not drawn:
            plt.close(fig)
            continue
        for ax, label in zip(axes, ("SGD iterations", "decoder forward+backward passes", "wall-clock (s, median step time)")):
            ax.set_xlabel(label)
            ax.set_ylabel(AXES[metric])
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        path = out / f"{metric}_curves.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        figures.append(path)
    return figures


def mean_curve(members: list[dict], metric: str) -> dict[str, list[float] | int] | None:
    """One group's curve of ``metric``: at each evaluation step the mean over its repeats, the band
    mean ± one sample standard deviation (the mean alone at a step with one repeat), and the mean
    step, decoder evaluations and seconds; ``repeats`` is the most repeats at any step. None if no run has it."""
    points: dict[int, list[dict]] = {}
    for run in members:
        for p in run["curves"]:
            if p[metric] is not None:
                points.setdefault(p["step"], []).append(p)
    if not points:
        return None
    steps = sorted(points)
    mean = [statistics.fmean(p[metric] for p in points[s]) for s in steps]
    sd = [statistics.stdev(p[metric] for p in points[s]) if len(points[s]) > 1 else 0.0 for s in steps]
    return {"mean": mean, "low": [m - d for m, d in zip(mean, sd)], "high": [m + d for m, d in zip(mean, sd)],
            "repeats": max(len(points[s]) for s in steps),
            **{axis: [statistics.fmean(p[axis] for p in points[s]) for s in steps] for axis in ("step", "decoder_evals", "seconds")}}


def plot_against_x(rows: list[dict], experiment: Experiment, out: Path) -> list[Path]:
    """Each metric against the swept ``x`` (log axis), one line per value of the other key;
    groups whose runs all failed are marked with an x at the bottom."""
    line_key = next(k for k in experiment.group_by if k != experiment.x)
    rows = model_rows(rows)
    metrics = [m for m in ("log_likelihood", "fd", "accept_rate", "diverged_frac") if any(r[m] is not None for r in rows)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
    lines: dict[str, list[dict]] = {}
    for r in rows:
        lines.setdefault(line_name(r, experiment), []).append(r)
    for ax, metric in zip(axes[0], metrics):
        for name, members in lines.items():
            xs = [float(r["keys"][experiment.x]) for r in members]
            ys = [r[metric] if r[metric] is not None else math.nan for r in members]
            errs = [r[f"{metric}_std"] or 0.0 for r in members]
            ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=name)
            failed = [x for x, r in zip(xs, members) if r["failed"] == r["runs"]]
            if failed:
                ax.plot(failed, [ax.get_ylim()[0]] * len(failed), "x", color="red", markersize=10)
        ax.set_xscale("log")
        ax.set_xlabel(experiment.x)
        estimators = sorted({r["estimator"] for r in rows if r["estimator"]}) if metric == "log_likelihood" else []
        ax.set_ylabel(AXES[metric] + (f": {', '.join(estimators)}" if estimators else ""))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, title=line_key)
    fig.tight_layout()
    path = out / f"metrics_vs_{experiment.x}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def side_by_side(runs: list[dict], experiment: Experiment, image: Callable[[dict], Path | str | None], path: Path,
                 title: str | None = None, height: float = 3.4) -> list[Path]:
    """The image ``image(run)`` of each group's first run that has one, side by side, saved to ``path``."""
    picks = [(name, next((p for r in members if (p := image(r))), None)) for name, members in grouped(runs, experiment).items()]
    picks = [(n, p) for n, p in picks if p]
    if not picks:
        return []
    fig, axes = plt.subplots(1, len(picks), figsize=(3.2 * len(picks), height), squeeze=False)
    for ax, (name, image_path) in zip(axes[0], picks):
        ax.imshow(mpimg.imread(image_path), cmap="gray")
        ax.set_title(name.replace("method=", ""), fontsize=8 if len(name) > 30 else 9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def plot_samples(runs: list[dict], experiment: Experiment, out: Path) -> list[Path]:
    """The last prior-sample grid of each group's first run, side by side."""
    return side_by_side(runs, experiment, lambda r: r["samples"], out / "samples.png")


def commands(name: str, scale: str, extra: list[str], out: Path) -> list[list[str]]:
    """The train.py multiruns that make up the experiment. At the medium scales one multirun per seed
    (runs/seed<s>/, the seeds of the command line's ``seed=`` if it has one): a grid stopped midway
    holds whole seeds of every method, and the seeds' multiruns can run side by side."""
    settings = SCALES[scale]
    grid = dict(GRIDS.get(scale, {}).get(name, {}))  # the command line wins over the sweeper's params
    experiment = EXPERIMENTS[name]
    # a re-launched grid runs only the jobs that did not finish, each interrupted one from its last checkpoint
    base = [*TRAIN, "-m", f"experiment={name}", *settings, "skip_finished=true", "resume=auto"]
    if experiment.methods:  # one study per method on the validation split, each with the same budget
        return [[*base[:4], "hparams_search=tuned", f"method={m}", *base[4:], *overrides(grid), *extra,
                 f"hydra.sweep.dir={out / 'runs' / m}"] for m in study_methods(experiment, scale)]
    if scale in MEDIUM_GRIDS and "seed" in grid:
        seeds = [o.split("=", 1)[1] for o in [f"seed={grid.pop('seed')}", *extra] if o.startswith("seed=")][-1]
        extra = [o for o in extra if not o.startswith("seed=")]
        return [[*base, *overrides(grid), f"seed={s}", *extra, f"hydra.sweep.dir={out / 'runs' / f'seed{s}'}"]
                for s in seeds.split(",")]
    return [[*base, *overrides(grid), *extra, f"hydra.sweep.dir={out / 'runs'}"]]


def retrain_commands(name: str, scale: str, extra: list[str], out: Path) -> list[list[str]]:
    """After the studies: each method retrained at its study's best setting (``tuned_best``) on the
    experiment's seeds, into runs/best/<method>/; these runs score the test split, once."""
    experiment = EXPERIMENTS[name]
    base = [*TRAIN, "-m", f"experiment={name}", *SCALES[scale], "skip_finished=true", "resume=auto"]
    seeds = "0" if scale == "tiny" else experiment.seeds
    return [[*base, f"method={best['method']}", *(f"{k}={v}" for k, v in best["best_params"].items()), f"seed={seeds}",
             *extra, f"hydra.sweep.dir={out / 'runs' / 'best' / best['method']}"]
            for best in tuned_best(out, study_methods(experiment, scale)) if best["best_params"]]


def overrides(grid: dict[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in grid.items()]


def study_methods(experiment: Experiment, scale: str) -> list[str]:
    return TINY_METHODS if scale == "tiny" else experiment.methods


def run(cmds: list[list[str]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LPC_ROOT": str(ROOT), "WANDB_SILENT": "true"}
    for cmd in cmds:
        print("$", shlex.join(cmd[1:]), flush=True)
        with (out / "train.log").open("a") as log:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            raise SystemExit(f"the multirun failed (exit {proc.returncode}); its log: {out / 'train.log'}")


def finished_jobs(out: Path) -> list[Path]:
    """Every job folder of the grid (``.hydra/overrides.yaml``, also nested, e.g. tuned's studies) with a metrics.json."""
    return sorted(p.parent.parent for p in (out / "runs").rglob(".hydra/overrides.yaml") if (p.parent.parent / "metrics.json").exists())


# a finished job's files that its report reads (the last sample grid besides): no checkpoint
RECORD_FILES = (".hydra/*.yaml", "metrics.json", "*.log", "csv/*.csv", "completion/metrics.json", "completion/images/*.png",
                "ais_long_*/metrics.json")


def record_files(job: Path) -> list[Path]:
    """The files of a finished job that make up its record: RECORD_FILES and its last sample grid."""
    grids = sorted((job / "images").glob("samples_step*.png"))
    return [f for pattern in RECORD_FILES for f in sorted(job.glob(pattern))] + grids[-1:]


def default_records(name: str, scale: str) -> Path | None:
    """Where a report keeps its runs' records unless told otherwise: docs/results/<name> (small),
    docs/results/<name>_<scale> (medium, medium_mnist, paper); none for the tiny pipeline check."""
    return None if scale == "tiny" else ROOT / "docs" / "results" / (name if scale == "small" else f"{name}_{scale}")


STUDY_FILES = "*/optimization_results.yaml"  # a tuning study's result (its best trial), beside its trials' folders


def save_records(out: Path, keep: Path) -> None:
    """Copy the record of every finished job of <out>/runs into <keep>/runs, unless <keep> holds it
    already (every file there, the same metrics.json): a relaunch's log lines are not kept again."""
    for job in finished_jobs(out):
        files, kept = record_files(job), keep / "runs" / job.relative_to(out / "runs")
        if all((kept / f.relative_to(job)).exists() for f in files) and \
                (kept / "metrics.json").read_bytes() == (job / "metrics.json").read_bytes():
            continue
        for source in files:
            (kept / source.relative_to(job)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, kept / source.relative_to(job))
    for study in (out / "runs").glob(STUDY_FILES):
        (keep / "runs" / study.relative_to(out / "runs")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(study, keep / "runs" / study.relative_to(out / "runs"))


def restore_records(keep: Path, out: Path) -> list[Path]:
    """Copy every kept job into <out>/runs where <out> has no finished run of it (a relaunch then
    skips it: skip_finished); returns the jobs restored."""
    restored = []
    for job in finished_jobs(keep):
        target = out / "runs" / job.relative_to(keep / "runs")
        if not (target / "metrics.json").exists():
            shutil.copytree(job, target, dirs_exist_ok=True)
            restored.append(target)
    for study in (keep / "runs").glob(STUDY_FILES):
        target = out / "runs" / study.relative_to(keep / "runs")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(study, target)
    return restored


def for_each_finished_job(out: Path, sub: str, command: Callable[[Path], list[str] | None], log_name: str) -> list[str]:
    """Run ``command(job)`` (a script's arguments; None skips the job) for every finished job of the
    grid that has no <job>/<sub>/metrics.json yet, writing into <job>/<sub>/: a relaunch runs only the
    rest. A job on which it fails is reported and left out (its cells stay empty); returns those."""
    env = {**os.environ, "LPC_ROOT": str(ROOT), "WANDB_SILENT": "true"}
    failed = []
    for job in finished_jobs(out):
        args = command(job)
        if args is None or (job / sub / "metrics.json").exists() or not (job / "checkpoints" / "last.ckpt").exists():
            continue
        cmd = [*args, f"hydra.run.dir={job / sub}", "hydra.output_subdir=null"]
        print("$", shlex.join(cmd[1:]), flush=True)
        with (out / log_name).open("a") as log:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            failed.append(f"{Path(cmd[1]).name} failed on {job} (exit {proc.returncode}); its log: {out / log_name}")
            print(failed[-1], flush=True)
    return failed


def complete_runs(experiment: Experiment, scale: str, out: Path) -> list[str]:
    """scripts/complete.py on the last checkpoint of every finished run, into <job>/completion/ (the data are the run's own)."""
    masks = f"mask=[{','.join(experiment.completions)}]"
    return for_each_finished_job(out, "completion", lambda job: [*COMPLETE, f"ckpt_path={job / 'checkpoints' / 'last.ckpt'}",
                                                                 masks, *COMPLETION[scale]], "complete.log")


def encoder_free(job: Path) -> bool:
    """Whether the job's method is LPC or PC without an encoder (its saved config: no amortised warm-start)."""
    cfg = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
    return cfg["model"]["_target_"].endswith("LangevinPC") and not cfg["warmstart"]["_target_"].endswith("AmortisedInit")


def long_ais_runs(num_distributions: int, where: list[str], out: Path) -> list[str]:
    """AIS from the prior at K = ``num_distributions`` (with the K/2 check and BDMC on 25 simulated
    images) on the checkpoint of every finished encoder-free run whose overrides include every
    ``key=value`` of ``where``, into <job>/ais_long_<K>/: the check that the grid's own AIS (from the
    prior, at the experiment's K) has converged where no encoder gives a better start."""
    if any("=" not in item for item in where):
        raise SystemExit(f"--long-ais-where takes key=value items, got {where}")
    wanted = dict(item.split("=", 1) for item in where)

    def command(job: Path) -> list[str] | None:
        overrides = read_overrides(job)
        if not encoder_free(job) or any(overrides.get(k) != v for k, v in wanted.items()):
            return None
        return long_ais_command(job, num_distributions)

    return for_each_finished_job(out, f"ais_long_{num_distributions}", command, "ais_long.log")


def long_ais_command(job: Path, num_distributions: int) -> list[str]:
    """scripts/evaluate.py's AIS from the prior at K = ``num_distributions`` on the job's checkpoint,
    on the run's own test images and with its own chains (from its saved config), BDMC on 25 images."""
    saved = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["eval"]
    return [*EVALUATE, f"ckpt_path={job / 'checkpoints' / 'last.ckpt'}", "eval=ais", "eval.fid.enabled=false",
            f"eval.likelihood.num_examples={saved['likelihood']['num_examples']}", f"eval.ais.chains={saved['ais']['chains']}",
            f"eval.ais.num_distributions={num_distributions}", f"eval.ais.check_distributions=[{num_distributions // 2}]",
            "eval.ais.starts=[prior]", "eval.ais.bdmc_examples=25", "eval.ais.progress=false", "logger=csv"]


def plot_completions(runs: list[dict], experiment: Experiment, out: Path) -> list[Path]:
    """Each group's first run's completion grid of the first mask, side by side."""
    mask = experiment.completions[0]

    def grid(run: dict) -> Path | None:
        path = out / "runs" / run["job"] / "completion" / "images" / f"complete_{mask}.png"
        return path if path.exists() else None

    return side_by_side(runs, experiment, grid, out / "completions.png", height=4.2,
                        title=f"mask={mask}: masked input, completions, their mean, the truth (top to bottom)")


def tuned_best(out: Path, methods: list[str]) -> list[dict]:
    """Each method's best trial by the validation split (optimization_results.yaml of its study)."""
    best = []
    for method in methods:
        path = out / "runs" / method / "optimization_results.yaml"
        if path.exists():
            found = yaml.safe_load(path.read_text())
            best.append({"method": method, "best_value": found.get("best_value"), "best_params": found.get("best_params")})
    return best


def protocol_lines(runs: list[dict]) -> list[str]:
    """Which split and scale the report's numbers come from (runs recorded before the validation
    split are said to be so)."""
    legacy = sum(1 for r in runs if r["metrics"] and split_prefix(r["metrics"]) == "eval/")
    lines = ["Splits: every number in the table is from the test split, scored once per run at its end; every "
             "likelihood there is at the scale sigma fitted on the validation split by the same EM for every method "
             "(`sigma_fitted`; `log_likelihood_trained_sigma` is the same estimate at the sigma training left). The "
             "curves and every choice (a best setting, a tuned one) come from the validation split."]
    if legacy:
        lines = [f"Splits: {legacy} of these runs were recorded before lpc held out a validation split: their numbers are "
                 "on the test split, which their periodic evaluations (the curves) also scored, and their likelihoods at "
                 "the sigma their last training batch left (no fitted sigma)."]
    return [*lines, ""]


def best_by_validation(rows: list[dict], experiment: Experiment) -> list[str]:
    """For a grid over ``x``: each line's best ``x`` by the validation log-likelihood (mean over
    seeds), with the test log-likelihood of that setting."""
    if not experiment.x:
        return []
    picks = []
    for line in dict.fromkeys(line_name(r, experiment) for r in model_rows(rows)):
        candidates = [r for r in model_rows(rows) if line_name(r, experiment) == line and r["val_log_likelihood"] is not None]
        if candidates:
            best = max(candidates, key=lambda r: r["val_log_likelihood"])
            test = f"{best['log_likelihood']:.1f} ± {best['log_likelihood_std']:.2g}" if best["log_likelihood"] is not None else "n/a"
            picks.append(f"- {line}: {experiment.x}={best['keys'][experiment.x]} (validation {best['val_log_likelihood']:.1f}; "
                         f"its test log_likelihood {test})")
    return [f"Best {experiment.x} of each line, chosen on the validation split (`val_log_likelihood`, mean over seeds):",
            "", *picks, ""] if picks else []


def model_rows(rows: list[dict]) -> list[dict]:
    """The table's rows of trained models (not the reference points)."""
    return [r for r in rows if not r.get("reference")]


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
                     *(shlex.join(["python", *(a.replace(f"{ROOT}/", "") for a in c[1:])]) for c in cmds)],
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
        markdown_table(["metric", "meaning"], ((m, LABELS[m]) for m in table_columns(rows))), "",
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
    columns = ["group", "runs", "failed", *LABELS]
    run.log({"report/table": wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows]),
             **{f"report/{f.stem}": wandb.Image(str(f)) for f in figures}})
    run.finish()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(EXPERIMENTS))
    parser.add_argument("--scale", choices=list(SCALES), default="small")
    parser.add_argument("--out", type=Path, help="report folder (default outputs/reproduce/<name>/<scale>)")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the runs already in --out")
    parser.add_argument("--wandb", metavar="PROJECT", help="also log the figures and tables to this W&B project")
    parser.add_argument("--long-ais", type=int, default=0, metavar="K",
                        help="also evaluate every encoder-free run by AIS from the prior at K distributions (and K/2)")
    parser.add_argument("--long-ais-where", nargs="*", default=[], metavar="KEY=VALUE",
                        help="only the runs with these overrides, e.g. seed=0 precond=adam")
    parser.add_argument("--keep-records", type=Path, metavar="DIR",
                        help="keep each finished job's records in DIR/runs (no checkpoints; commit DIR) and restore them on a "
                             "relaunch (default, without --out: docs/results/<name> at --scale small, "
                             "docs/results/<name>_<scale> at the larger scales, none at tiny)")
    parser.add_argument("--no-keep-records", action="store_true", help="keep no records (the runs stay in --out only)")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []  # for train.py
    args = parser.parse_args(argv[: len(argv) - len(extra) - (1 if extra or "--" in argv else 0)])
    out = (args.out or ROOT / "outputs" / "reproduce" / args.name / args.scale).resolve()
    cmds = commands(args.name, args.scale, extra, out)
    keep = None if args.no_keep_records else args.keep_records or (default_records(args.name, args.scale) if not args.out else None)
    keep = keep.resolve() if keep else None
    if keep and keep != out:
        print(f"{len(restore_records(keep, out))} finished jobs restored from {keep / 'runs'}", flush=True)
    failed = []
    try:
        if not args.report_only:
            run(cmds, out)
        if EXPERIMENTS[args.name].methods:  # tuned: each method's best setting, retrained on the seeds
            retrains = retrain_commands(args.name, args.scale, extra, out)
            if not args.report_only:
                run(retrains, out)
            cmds += retrains
        if not args.report_only and EXPERIMENTS[args.name].completions:
            failed += complete_runs(EXPERIMENTS[args.name], args.scale, out)
        if not args.report_only and args.long_ais:
            failed += long_ais_runs(args.long_ais, args.long_ais_where, out)
    finally:  # the jobs that finished are kept also when a later one failed
        if keep and keep != out:
            save_records(out, keep)
    flags = [*(["--long-ais", str(args.long_ais)] if args.long_ais else []),
             *(["--long-ais-where", *args.long_ais_where] if args.long_ais_where else []),
             *(["--keep-records", str(keep.relative_to(ROOT) if keep.is_relative_to(ROOT) else keep)] if keep else [])]
    write_report(args.name, args.scale, cmds, extra, out, args.wandb, flags)
    print((out / "report.md").read_text())
    print(f"report written to {out / 'report.md'}")
    if failed:
        raise SystemExit("left out of the report (relaunch to retry them):\n" + "\n".join(failed))


if __name__ == "__main__":
    main()
