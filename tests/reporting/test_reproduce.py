"""scripts/reproduce.py runs every experiment at --scale tiny end to end, and its report's tables
are the runs' own metrics."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, SHARED_CIFAR, SHARED_MNIST_T10K
from test_dashboards import load_script
from wandb_records import history_keys

from lpc.reporting.experiments import EXPERIMENTS as REGISTRY
from lpc.reporting.experiments import TINY  # TINY: the tiny scale's overrides, for the other scales' pipeline tests
from lpc.reporting.plots import mean_curve
from lpc.reporting.runs import read_curves
from lpc.reporting.tables import paired_differences, paired_markdown

EXPERIMENTS = ["lpc_vs_vae", "warmstart_objectives", "step_size_robustness", "ula_vs_mala", "tuned"]
FIGURES = {
    "lpc_vs_vae": {"iwae_curves.png", "fd_curves.png", "samples.png"},
    "warmstart_objectives": {"iwae_curves.png", "fd_curves.png", "samples.png"},
    "step_size_robustness": {"metrics_vs_step_size.png"},
    "ula_vs_mala": {"metrics_vs_step_size.png"},
    "tuned": set(),
}


def reproduce(name: str, out: Path, *extra: str, scale: str = "tiny") -> dict:
    cmd = [sys.executable, "scripts/reproduce.py", name, "--scale", scale, "--out", str(out), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "report.json").read_text())


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_runs_at_tiny_scale_and_writes_its_report(tmp_path, name):
    report = reproduce(name, tmp_path / name)
    assert {p.name for p in (tmp_path / name).glob("*.png")} == FIGURES[name]
    text = (tmp_path / name / "report.md").read_text()
    assert report["commit"] in text and "python train.py -m experiment=" + name in text
    # each run records the commit and machine it trained at, and the report names them beside its own
    assert all(run["metrics"]["provenance"]["commit"] == report["commit"] for run in report["runs"] if run["metrics"])
    assert f"- commit: the runs at {report['commit']}; the report drawn at {report['commit']}" in text
    assert f"- machine: the runs on {report['runs'][0]['metrics']['provenance']['machine']}" in text
    assert "digits_cnn features (offline, not FID)" in text  # no Inception weights here: named as what it is
    assert all(row["failed"] == 0 for row in report["table"])
    models = [row for row in report["table"] if not row.get("reference")]
    # the headline likelihood is AIS (run at the end) on the test split at the sigma fitted on validation, named,
    # with its checks, the IWAE bound, the training sigma's estimate and the validation split's beside it
    assert all(row[m] is not None for row in models for m in (
        "ais_prior", "ais_check", "bdmc_gap", "iwae", "sigma_fitted", "log_likelihood_trained_sigma", "val_log_likelihood"))
    assert all(row["estimator"] for row in models) and "| estimator |" in text
    assert "Splits: every number in the table is from the test split, scored once per run at its end" in text
    # the sample metrics' reference points: the untrained networks and the training images
    references = {row["group"]: row for row in report["table"] if row.get("reference")}
    assert set(references) == {"reference: the networks untrained", "reference: training images (the floor)"}
    assert references["reference: training images (the floor)"]["fd"] < references["reference: the networks untrained"]["fd"]
    if name == "ula_vs_mala":
        assert {r["sampler"] for r in report["exact_target_bias"]} == {"ula", "mala", "hmc"}
        assert all(r["accept_rate"] is not None for r in report["table"] if r["group"].startswith("sampler=mala"))
    if name == "step_size_robustness":
        assert "Best step_size of each line, chosen on the validation split" in text
    if name == "tuned":  # studies on the validation split, then each method retrained at its best setting
        assert [b["method"] for b in report["best_trials"]] == ["lpc", "vae"]
        assert all(b["best_value"] is not None for b in report["best_trials"])
        assert [row["group"] for row in models] == ["method=lpc", "method=vae"]
        trials = [json.loads(p.read_text()) for m in ("lpc", "vae") for p in (tmp_path / name / "runs" / m).glob("*/metrics.json")]
        assert len(trials) == 2 and not any(k.startswith("test/") for t in trials for k in t)  # trials never score test
        assert all("val/ais_prior" in t for t in trials)  # their objective includes AIS (full_val_at_end)
        best = {b["method"]: b["best_params"] for b in report["best_trials"]}
        for method in ("lpc", "vae"):
            (retrain,) = (tmp_path / name / "runs" / "best" / method).glob("*/.hydra/overrides.yaml")
            assert {f"{k}={v}" for k, v in best[method].items()} <= set(yaml.safe_load(retrain.read_text()))


def test_report_table_equals_the_metrics_in_the_runs_files(tmp_path):
    """Recomputed here from every job's .hydra/overrides.yaml and metrics.json: the report's mean of
    each metric per method equals the runs' own values (two seeds, so a spread too)."""
    report = reproduce("warmstart_objectives", tmp_path, "--", "method=lpc,lpc_jeffreys", "seed=0,1")
    by_method: dict[str, list[dict]] = {}
    for metrics_file in (tmp_path / "runs").rglob("metrics.json"):
        overrides = dict(o.split("=", 1) for o in yaml.safe_load((metrics_file.parent / ".hydra" / "overrides.yaml").read_text()))
        by_method.setdefault(overrides["method"], []).append(json.loads(metrics_file.read_text()))
    assert sorted(by_method) == ["lpc", "lpc_jeffreys"]
    rows = {row["group"]: row for row in report["table"]}
    for method, runs in by_method.items():
        row = rows[f"method={method}"]
        assert row["runs"] == len(runs) == 2
        for metric, key in [("log_likelihood", "test/log_likelihood"), ("bpd", "test/bpd"), ("fd", "test/fd_digits_cnn"),
                            ("val_log_likelihood", "val/log_likelihood"), ("sigma_fitted", "test/sigma_fitted"),
                            ("decoder_evals", "cost/decoder_evals"), ("recon_mse", "val/recon_mse")]:
            values = [r[key] for r in runs]
            assert row[metric] == pytest.approx(statistics.fmean(values), rel=1e-9), (method, metric)
            assert row[f"{metric}_std"] == pytest.approx(statistics.stdev(values), rel=1e-9, abs=1e-12), (method, metric)
    # and the markdown shows the same numbers
    text = (tmp_path / "report.md").read_text()
    assert f"| method=lpc | 2 (0) | {rows['method=lpc']['log_likelihood']:.4g} ± " in text
    # --wandb logs the same table and the figures to an (offline) W&B run
    reproduce("warmstart_objectives", tmp_path, "--report-only", "--wandb", "lpc-test", "--", "method=lpc,lpc_jeffreys", "seed=0,1")
    logged = history_keys(next(tmp_path.glob("wandb/offline-run-*/run-*.wandb")))
    assert {"report/table/_type", "report/iwae_curves/_type", "report/samples/_type"} <= logged


@pytest.mark.skipif(not SHARED_MNIST_T10K.exists(), reason="needs ../shared/data/mnist-t10k")
def test_an_experiment_runs_on_the_mnist_test_split(tmp_path):
    """The small scale's second dataset: the grid on MNIST's test split, measured by its own feature network."""
    report = reproduce("lpc_vs_vae", tmp_path, "--", "data=mnist_t10k", f"data.root={SHARED_MNIST_T10K}",
                       "method=lpc,vae")
    assert [row["group"] for row in report["table"] if not row.get("reference")] == ["method=lpc", "method=vae"]
    assert all(row["failed"] == 0 and row["fd"] > 0 for row in report["table"])
    assert "mnist_t10k_cnn features (offline, not FID)" in (tmp_path / "report.md").read_text()


@pytest.mark.skipif(not SHARED_CIFAR.exists(), reason="needs ../shared/data/cifar10/cifar10_jpeg.zip")
def test_the_medium_scale_runs_cifar10_with_the_conv_networks_one_multirun_per_seed(tmp_path):
    """--scale medium's pipeline at tiny sizes (the TINY overrides after --): CIFAR-10 from the zip, the
    paper's conv networks, one multirun per seed, two seeds per row, CIFAR-10 features, AIS, curves."""
    report = reproduce("lpc_vs_vae", tmp_path, "--", *TINY, "method=lpc_jeffreys,vae", "seed=0,1",
                       "callbacks.evaluation.every_n_steps=0", scale="medium")  # evaluated at the end only: conv nets on a CPU
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["seed0", "seed1"]
    config = yaml.safe_load((tmp_path / "runs" / "seed1" / "0" / ".hydra" / "config.yaml").read_text())
    assert config["seed"] == 1 and config["decoder"]["_target_"].endswith("ConvDecoder") and config["latent_dim"] == 32
    models = [row for row in report["table"] if not row.get("reference")]
    assert [(row["group"], row["runs"], row["failed"]) for row in models] == [("method=lpc_jeffreys", 2, 0), ("method=vae", 2, 0)]
    assert all(row[m] is not None for row in models for m in (
        "ais_prior", "ais_encoder", "ais_check", "bdmc_gap", "iwae", "fd", "kid", "precision", "recall", "density", "coverage"))
    assert all(row["ais_chain"] is None for row in models)  # the chain-fitted start is left out on CIFAR-10
    assert {"iwae_curves.png", "fd_curves.png", "samples.png"} <= {p.name for p in tmp_path.glob("*.png")}
    text = (tmp_path / "report.md").read_text()
    assert "cifar10_cnn features (offline, not FID)" in text and "--scale medium" in text
    assert text.count("python train.py -m experiment=lpc_vs_vae data=folder") == 2  # the two seeds' multiruns


@pytest.mark.skipif(not SHARED_MNIST_T10K.exists(), reason="needs ../shared/data/mnist-t10k")
def test_the_medium_mnist_scale_runs_on_the_mnist_test_split():
    """--scale medium_mnist: MNIST's test split from ../shared, lpc_vs_vae's five methods over three seeds."""
    cmds = load_script("reproduce").commands("lpc_vs_vae", "medium_mnist", [], Path("/out"))
    assert [c[-1] for c in cmds] == [f"hydra.sweep.dir=/out/runs/seed{s}" for s in range(3)]
    assert all("data=mnist_t10k" in c and "method=lpc,lpc_jeffreys,vae,pc,iwae" in c for c in cmds)


def test_a_report_lists_each_failed_run_with_its_error(tmp_path):
    """A job without metrics.json is counted as failed, and the report says why (its log's last error)."""
    reproduce("lpc_vs_vae", tmp_path, "--", "method=lpc,vae")
    job = tmp_path / "runs" / "1"
    (job / "metrics.json").unlink()
    (job / "lpc_vs_vae.log").write_text("[2026-12-01 15:19:58,571][lpc][ERROR] - DivergenceError: every Langevin chain diverged\n")
    (tmp_path / "runs" / "0" / "metrics.json").unlink()  # job 0 is still running (no error in its log): not counted
    report = reproduce("lpc_vs_vae", tmp_path, "--report-only", "--", "method=lpc,vae")
    assert [(row["runs"], row["failed"]) for row in report["table"]] == [(0, 0), (1, 1)]
    text = (tmp_path / "report.md").read_text()
    assert "- 1 (method=vae seed=0): DivergenceError: every Langevin chain diverged" in text
    assert "- runs: 1 (1 failed, e.g. diverged); 1 not finished" in text and "\n- 0 (method=lpc seed=0)\n" in text
    # the legend has the table's columns only: no AIS with both runs out, no completions
    assert "| ais_prior |" not in text and "| mse_half |" not in text


def test_a_relaunched_grid_runs_only_the_jobs_that_did_not_finish(tmp_path):
    """reproduce.py passes skip_finished=true: finished jobs (metrics.json) are kept, the others run again."""
    reproduce("lpc_vs_vae", tmp_path, "--", "method=lpc,vae")
    done = {p.parent.name: p for p in (tmp_path / "runs").glob("*/metrics.json")}
    assert sorted(done) == ["0", "1"]
    kept = done["1"].read_text()
    stamp = done["1"].stat().st_mtime_ns
    done["0"].unlink()  # job 0 was interrupted
    report = reproduce("lpc_vs_vae", tmp_path, "--long-ais", "8", "--", "method=lpc,vae")
    assert done["0"].exists() and done["1"].stat().st_mtime_ns == stamp and done["1"].read_text() == kept
    # --long-ais: the encoder-free run (LPC) evaluated again by AIS from the prior at K = 8 and 4, the VAE not
    rows = {row["group"]: row for row in report["table"]}
    assert rows["method=lpc"]["ais_long"] is not None and rows["method=lpc"]["ais_long_check"] is not None
    assert rows["method=vae"]["ais_long"] is None and not (tmp_path / "runs" / "1" / "ais_long_8").exists()
    assert "--long-ais 8" in report["commands"][0] and "| ais_long |" in (tmp_path / "report.md").read_text()
    # on the run's own test images (32 at --scale tiny) and chains, not the eval group's defaults
    command = load_script("reproduce").long_ais_command(tmp_path / "runs" / "0", 8)
    assert {"eval.likelihood.num_examples=32", "eval.ais.chains=2", "eval.ais.num_distributions=8"} <= set(command)
    assert "skip_finished=true: " in (tmp_path / "runs" / "1" / "lpc_vs_vae.log").read_text()
    assert [row["runs"] for row in report["table"] if not row.get("reference")] == [1, 1]


def test_kept_records_survive_a_fresh_clone_and_rebuild_the_report(tmp_path):
    """--keep-records: each finished job's record (no checkpoint) is copied into DIR/runs; a relaunch
    into an empty --out (a fresh clone) restores it, runs nothing again, and reports the same table,
    as does --report-only --out DIR."""
    out, keep = tmp_path / "out", tmp_path / "kept"
    first = reproduce("lpc_vs_vae", out, "--keep-records", str(keep), "--", "method=lpc,vae")
    assert sorted(p.parent.name for p in keep.glob("runs/*/metrics.json")) == ["0", "1"]
    assert not list(keep.rglob("*.ckpt")) and len(list(keep.glob("runs/*/images/samples_step*.png"))) == 2
    assert all((keep / "runs" / job / "csv" / "metrics.csv").exists() for job in ("0", "1"))
    shutil.rmtree(out)  # a fresh clone: the git-ignored outputs are gone, the committed records are not
    again = reproduce("lpc_vs_vae", out, "--keep-records", str(keep), "--", "method=lpc,vae")
    assert all("skip_finished=true: " in (out / "runs" / job / "lpc_vs_vae.log").read_text() for job in ("0", "1"))
    assert not list(out.rglob("*.ckpt"))  # nothing trained again
    assert again["table"] == first["table"] and "--keep-records" in again["commands"][0]
    assert [row["group"] for row in again["paired"]] == ["method=vae"] and again["paired"][0]["fd"]["pairs"] == 1
    assert "Differences to method=lpc, seed by seed" in (out / "report.md").read_text()
    assert "skip_finished" not in (keep / "runs" / "0" / "lpc_vs_vae.log").read_text()  # the record as it finished
    redrawn = reproduce("lpc_vs_vae", keep, "--report-only")
    assert redrawn["table"] == first["table"] and (keep / "samples.png").exists()


@pytest.mark.skipif(not SHARED_MNIST_T10K.exists(), reason="needs ../shared/data/mnist-t10k")
def test_the_hierarchical_report_runs_and_completes_every_run(tmp_path):
    """Three latent layers for LPC and the VAE on MNIST's test split: AIS from the hierarchy's prior
    in every row, and scripts/complete.py's errors and grids from every checkpoint."""
    report = reproduce("hierarchical", tmp_path, "--", f"data.root={SHARED_MNIST_T10K}", "prior.sizes=[20,128,128]")
    models = [row for row in report["table"] if not row.get("reference")]
    assert [row["group"] for row in models] == ["method=lpc prior.sizes=[20,128,128]", "method=vae prior.sizes=[20,128,128]"]
    assert all(row["failed"] == 0 and row["ais_prior"] is not None for row in models)
    assert all(0 < row[f"mse_{mask}"] < 1 for row in models for mask in ("half", "centre", "random"))
    assert len(list(tmp_path.glob("runs/*/completion/images/complete_half.png"))) == 2
    assert {"completions.png", "samples.png"} <= {p.name for p in tmp_path.glob("*.png")}
    assert "| mse_half |" in (tmp_path / "report.md").read_text()


def test_a_relaunched_grid_continues_an_interrupted_job_from_its_checkpoint(tmp_path):
    """reproduce.py passes resume=auto: a job with a checkpoint but no metrics.json (killed after its
    step-3 checkpoint) continues from it to the end; its curves keep the rows logged before."""
    reproduce("warmstart_objectives", tmp_path, "--", "method=lpc", "trainer.max_steps=3")
    job = tmp_path / "runs" / "0"
    assert json.loads((job / "metrics.json").read_text())["global_step"] == 3
    (job / "metrics.json").unlink()  # interrupted after its last checkpoint
    report = reproduce("warmstart_objectives", tmp_path, "--", "method=lpc")
    final = json.loads((job / "metrics.json").read_text())
    assert final["global_step"] == 6 and "continuing from" in (job / "warmstart_objectives.log").read_text()
    assert (job / "csv" / "metrics.part0.csv").exists()
    assert report["table"][0]["failed"] == 0
    curves = read_curves(job / "csv" / "metrics.csv", final)
    assert [point["step"] for point in curves] == [3, 6]  # one evaluation before the interruption, one after
    # killed during the final evaluation (after the last checkpoint): the relaunch restores the last
    # step, where Lightning runs no training, and still evaluates, as the uninterrupted run did
    (job / "metrics.json").unlink()
    logged = job / "csv" / "metrics.csv"  # the final evaluation's row was never flushed
    lines = logged.read_text().splitlines()
    header = lines[0].split(",")
    kept = [line for line in lines[1:] if not any(v and h.startswith("test/") for h, v in zip(header, line.split(",")))]
    logged.write_text("\n".join([lines[0], *kept]) + "\n")
    reproduce("warmstart_objectives", tmp_path, "--", "method=lpc")
    again = json.loads((job / "metrics.json").read_text())
    assert again["global_step"] == 6
    assert {k: again[k] for k in final if k.startswith("test/")} == {k: v for k, v in final.items() if k.startswith("test/")}
    # and its curves still end at that evaluation (the CSV logger is flushed after it)
    assert [point["step"] for point in read_curves(job / "csv" / "metrics.csv", again)] == [3, 6]


def test_a_curve_is_the_mean_over_repeats_with_a_band_of_one_standard_deviation():
    """Two seeds logged at steps 1 and 2, the second seed's step 2 missing: the mean and band at
    step 1 over both, at step 2 the one run alone (no band); the axes are the runs' mean."""
    point = lambda step, fd, seconds: {"step": step, "decoder_evals": 10 * step, "seconds": seconds, "fd": fd, "iwae": None}  # noqa: E731
    runs = [{"curves": [point(1, 4.0, 1.0), point(2, 3.0, 2.0)]}, {"curves": [point(1, 6.0, 3.0)]}]
    curve = mean_curve(runs, "fd")
    assert curve["step"] == [1, 2] and curve["decoder_evals"] == [10, 20] and curve["seconds"] == [2.0, 2.0]
    assert curve["mean"] == [5.0, 3.0] and curve["repeats"] == 2
    sd = 2 ** 0.5  # the sample standard deviation of 4 and 6
    assert curve["low"] == pytest.approx([5.0 - sd, 3.0]) and curve["high"] == pytest.approx([5.0 + sd, 3.0])
    assert mean_curve(runs, "iwae") is None


def test_paired_differences_compare_each_group_to_the_reference_seed_by_seed():
    """VAE − LPC on the seeds both finished (seed 2's LPC failed, seed 3 has no VAE): the mean and
    spread of the per-seed differences, how many are above 0, the paired-t interval and the verdict;
    a difference smaller than the AIS estimates' own error is marked so."""
    summary = lambda ll, fd: {"log_likelihood": ll, "ais_prior": ll - 1, "fd": fd, "kid": None,  # noqa: E731
                              "log_likelihood_error": 0.5, "ais_prior_error": 20.0 if ll < -115 else 9.0}
    run = lambda method, seed, s: {"overrides": {"method": method, "seed": seed}, "summary": s}  # noqa: E731
    runs = [run("lpc", "0", summary(-100.0, 5.0)), run("lpc", "1", summary(-120.0, 6.0)), run("lpc", "2", None),
            run("lpc", "3", summary(-90.0, 4.0)),
            run("vae", "0", summary(-90.0, 6.0)), run("vae", "1", summary(-114.0, 6.5)), run("vae", "2", summary(-80.0, 1.0))]
    experiment = REGISTRY["lpc_vs_vae"]
    (row,) = paired_differences(runs, experiment)
    assert row["group"] == "method=vae" and row["kid"] is None
    half = 12.7062047361747 * 2  # t_{0.975, 1} x sd / sqrt(2), sd = 2 sqrt(2)
    assert {k: row["log_likelihood"][k] for k in ("mean", "std", "pairs", "above", "low", "high", "estimator_error")} == \
        pytest.approx({"mean": 8.0, "std": 2 ** 0.5 * 2, "pairs": 2, "above": 2, "low": 8 - half, "high": 8 + half,
                       "estimator_error": 0.5})
    assert row["log_likelihood"]["verdict"] == "not significant"  # two pairs: the interval spans 0
    # AIS from the prior: each side's mean error over the pairs (VAE 9, LPC (9 + 20) / 2), the larger one counts
    assert row["ais_prior"]["estimator_error"] == 14.5 and row["ais_prior"]["verdict"] == "within the estimator's error"
    assert row["fd"]["mean"] == pytest.approx(0.75) and row["fd"]["estimator_error"] is None
    lines = "\n".join(paired_markdown([row], experiment.paired))
    assert "| method=vae | +8 ± 2.8 (2/2 > 0; 95% CI [-17.4, +33.4]; estimator error 0.5): not significant |" in lines
    assert "(2/2 > 0; 95% CI [-17.4, +33.4]; estimator error 14): within the estimator's error |" in lines
    assert "Δ kid" not in lines
