"""A grid's runs as its report reads them: every job's overrides, final metrics, summary, curves and
sample grid (``collect_runs``), and the records a report keeps of them (no checkpoints) so a grid
survives a fresh clone."""

from __future__ import annotations

import csv
import json
import math
import shutil
import statistics
from pathlib import Path

import yaml

from lpc.evaluation.names import LEGACY_SPLIT, final_split, key, long
from lpc.reporting.summaries import summarise

CURVE = "iwae"  # the likelihood the curves show: every evaluation has it (AIS may run at the end only)


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
        references = job / REFERENCES_FILE
        if metrics and references.exists() and not has_reference_points(metrics):  # add_reference_points
            split = final_split(metrics)
            metrics = {**metrics, **{key(split, k): v for k, v in json.loads(references.read_text())["metrics"].items()}}
        long_ais = sorted(job.glob("ais_long_*/metrics.json"), key=lambda p: int(p.parent.name.rsplit("_", 1)[1]))
        if metrics and long_ais:  # --long-ais K (the longest there is): scripts/evaluate.py on the run's checkpoint
            metrics = {**metrics, **{long(k): v for k, v in json.loads(long_ais[-1].read_text())["metrics"].items()}}
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
    split = LEGACY_SPLIT if any(k.startswith(key(LEGACY_SPLIT, "")) for r in rows for k in r) else "val"  # records before 2026-12
    by_step: dict[int, dict[str, float]] = {}  # a step's evaluation, also one logged again after a resume, counts once
    for r in rows:
        values = {k: float(v) for k, v in r.items() if k.startswith(key(split, "")) and v not in ("", None)}
        if values:
            by_step.setdefault(int(r["step"]), {}).update(values)  # evaluations are logged at the updates done so far
    curve = []
    for step in sorted(by_step):
        s = summarise(by_step[step], split)
        if s[CURVE] is not None or s["fd"] is not None:  # an evaluation (not only Lightning's val/ diagnostics)
            curve.append({"step": step, "decoder_evals": step * per_step, "seconds": step * ms / 1e3, CURVE: s[CURVE], "fd": s["fd"]})
    return curve


def finished_jobs(out: Path) -> list[Path]:
    """Every job folder of the grid (``.hydra/overrides.yaml``, also nested, e.g. tuned's studies) with a metrics.json."""
    return sorted(p.parent.parent for p in (out / "runs").rglob(".hydra/overrides.yaml") if (p.parent.parent / "metrics.json").exists())


# a finished job's files that its report reads (the last sample grid besides): no checkpoint
RECORD_FILES = (".hydra/*.yaml", "metrics.json", "*.log", "csv/*.csv", "completion/metrics.json", "completion/images/*.png",
                "ais_long_*/metrics.json", "references/metrics.json")
REFERENCES_FILE = Path("references") / "metrics.json"  # the reference points computed for a record without them


def record_files(job: Path) -> list[Path]:
    """The files of a finished job that make up its record: RECORD_FILES and its last sample grid."""
    grids = sorted((job / "images").glob("samples_step*.png"))
    return [f for pattern in RECORD_FILES for f in sorted(job.glob(pattern))] + grids[-1:]


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


def encoder_free(job: Path) -> bool:
    """Whether the job's method is LPC or PC without an encoder (its saved config: no amortised warm-start)."""
    cfg = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
    return cfg["model"]["_target_"].endswith("LangevinPC") and not cfg["warmstart"]["_target_"].endswith("AmortisedInit")


def tuned_best(out: Path, methods: list[str]) -> list[dict]:
    """Each method's best trial by the validation split (optimization_results.yaml of its study)."""
    best = []
    for method in methods:
        path = out / "runs" / method / "optimization_results.yaml"
        if path.exists():
            found = yaml.safe_load(path.read_text())
            best.append({"method": method, "best_value": found.get("best_value"), "best_params": found.get("best_params")})
    return best


def has_reference_points(metrics: dict) -> bool:
    return any(name.split("/", 1)[-1].startswith("reference/") for name in metrics)


def add_reference_points(out: Path) -> int:
    """Write ``<job>/references/metrics.json`` for every finished job of ``<out>/runs`` whose metrics
    have no sample-quality reference points (records from before them), from its overrides alone
    (``lpc.jobs.restore.reference_points``: no checkpoint needed). The points depend on the networks'
    architecture, the likelihood, the data and the evaluation, not on the weights, the method's
    training or the seed (a fresh initialisation seeded by the evaluation), so they are computed once
    per distinct setting and written to each of its jobs. Returns how many jobs got them."""
    from lpc.jobs.restore import reference_points
    from lpc.reporting.provenance import commit

    computed: dict[tuple, dict[str, float]] = {}
    done = 0
    for job in finished_jobs(out):
        if has_reference_points(json.loads((job / "metrics.json").read_text())) or (job / REFERENCES_FILE).exists():
            continue
        overrides = [f"{k}={v}" for k, v in read_overrides(job).items() if k not in ("skip_finished", "resume")]
        setting = tuple(o for o in overrides if o.split("=", 1)[0] not in ("method", "seed"))
        if setting not in computed:
            computed[setting] = reference_points(overrides, out / "references")
        (job / REFERENCES_FILE).parent.mkdir(parents=True, exist_ok=True)
        (job / REFERENCES_FILE).write_text(json.dumps({"metrics": computed[setting], "commit": commit(),
                                                       "from": "lpc.reporting.runs.add_reference_points"}, indent=2))
        done += 1
    return done
