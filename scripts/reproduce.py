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
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from lpc.reporting.experiments import (
    COMPLETION,
    EXPERIMENTS,
    GRIDS,
    MEDIUM_GRIDS,
    SCALES,
    Experiment,
    study_methods,
)
from lpc.reporting.provenance import REPO as ROOT
from lpc.reporting.report import write_report
from lpc.reporting.runs import (
    add_reference_points,
    encoder_free,
    finished_jobs,
    read_overrides,
    restore_records,
    save_records,
    tuned_best,
)

TRAIN = [sys.executable, str(ROOT / "train.py")]


COMPLETE = [sys.executable, str(ROOT / "scripts" / "complete.py")]


EVALUATE = [sys.executable, str(ROOT / "scripts" / "evaluate.py")]


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


def run(cmds: list[list[str]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LPC_ROOT": str(ROOT), "WANDB_SILENT": "true"}
    for cmd in cmds:
        print("$", shlex.join(cmd[1:]), flush=True)
        with (out / "train.log").open("a") as log:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            raise SystemExit(f"the multirun failed (exit {proc.returncode}); its log: {out / 'train.log'}")


def default_records(name: str, scale: str) -> Path | None:
    """Where a report keeps its runs' records unless told otherwise: results/<name> (small),
    results/<name>_<scale> (medium, medium_mnist, paper); none for the tiny pipeline check."""
    return None if scale == "tiny" else ROOT / "results" / (name if scale == "small" else f"{name}_{scale}")


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
    return [*EVALUATE, f"ckpt_path={job / 'checkpoints' / 'last.ckpt'}", "eval=ais", "eval.sample_quality.enabled=false",
            f"eval.likelihood.num_examples={saved['likelihood']['num_examples']}", f"eval.ais.chains={saved['ais']['chains']}",
            f"eval.ais.num_distributions={num_distributions}", f"eval.ais.check_distributions=[{num_distributions // 2}]",
            "eval.ais.starts=[prior]", "eval.ais.bdmc_examples=25", "eval.ais.progress=false", "logger=csv"]


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
    parser.add_argument("--references", action="store_true",
                        help="add the sample-quality reference points to finished runs recorded without them (from their "
                             "configs: no checkpoint needed), also with --report-only")
    parser.add_argument("--keep-records", type=Path, metavar="DIR",
                        help="keep each finished job's records in DIR/runs (no checkpoints; commit DIR) and restore them on a "
                             "relaunch (default, without --out: results/<name> at --scale small, "
                             "results/<name>_<scale> at the larger scales, none at tiny)")
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
        if args.references:
            print(f"reference points added to {add_reference_points(out)} runs", flush=True)
    finally:  # the jobs that finished are kept also when a later one failed
        if keep and keep != out:
            save_records(out, keep)
    flags = [*(["--long-ais", str(args.long_ais)] if args.long_ais else []), *(["--references"] if args.references else []),
             *(["--long-ais-where", *args.long_ais_where] if args.long_ais_where else []),
             *(["--keep-records", str(keep.relative_to(ROOT) if keep.is_relative_to(ROOT) else keep)] if keep else [])]
    write_report(args.name, args.scale, cmds, extra, out, args.wandb, flags)
    print((out / "report.md").read_text())
    print(f"report written to {out / 'report.md'}")
    if failed:
        raise SystemExit("left out of the report (relaunch to retry them):\n" + "\n".join(failed))


if __name__ == "__main__":
    main()
