"""lpc.evaluation.names: every metric key is built there with today's exact strings, the keys whose
parameters a report does not know are found there, the committed records still read, and a metric
registered there reaches the report's table, its legend and the W&B workspace with no other edit."""

from __future__ import annotations

import json
import re

from conftest import ROOT
from test_dashboards import read_back

from lpc.evaluation import names
from lpc.reporting import dashboards
from lpc.reporting.experiments import EXPERIMENTS
from lpc.reporting.summaries import summarise
from lpc.reporting.tables import legend, report_table, table_rows


def test_every_key_is_built_with_the_names_the_records_hold():
    assert names.key("test", names.ais("prior")) == "test/ais_prior"
    assert names.ais("chain", 500) == "ais500_chain"
    assert (names.ais_ess("prior"), names.ais_accept("encoder")) == ("ais_prior_ess", "ais_encoder_accept")
    assert (names.bdmc_lower("prior"), names.bdmc_upper("prior")) == ("bdmc_lower_prior", "bdmc_upper_prior")
    assert (names.bdmc_gap("prior"), names.bdmc_gap()) == ("bdmc_gap_prior", "bdmc_gap")
    assert (names.iwae(100, "encoder"), names.iwae(1, "chain"), names.elbo("chain")) == ("iwae100_encoder", "elbo_chain",
                                                                                          "elbo_chain")
    assert (names.bpd(), names.bpd("chain")) == ("bpd", "bpd_chain")
    assert [names.sample(m, "inception") for m in ("fd", "kid", "precision")] == ["fid", "kid", "precision"]
    assert [names.sample(m, "digits_cnn") for m in ("fd", "kid", "coverage")] == ["fd_digits_cnn", "kid_digits_cnn",
                                                                                  "coverage_digits_cnn"]
    assert names.std(names.sample("kid", "digits_cnn")) == "kid_digits_cnn_std"
    assert names.reference("training_images", "fd_digits_cnn") == "reference/training_images/fd_digits_cnn"
    assert names.key("test", names.trained_sigma(names.LOG_LIKELIHOOD)) == "test/trained_sigma/log_likelihood"
    assert names.key(names.long("test"), names.ais("prior")) == names.long("test/ais_prior") == "long/test/ais_prior"
    assert names.key(None, "bpd") == "bpd"


METRICS = {"test/ais_prior": -90.0, "test/ais500_prior": -91.5, "test/ais250_prior": -93.0, "test/ais500_encoder": -95.0,
           "test/ais_prior_ess": 3.0, "test/trained_sigma/ais400_prior": -99.0, "long/test/ais2000_prior": -89.0,
           "test/elbo_chain": -120.0, "test/elbo_encoder": -110.0, "test/iwae10_chain": -105.0,
           "test/iwae100_chain": -101.0, "test/iwae100_encoder": -100.0, "test/fd_digits_cnn": 5.0, "test/fd_a": 6.0,
           "test/kid_digits_cnn_std": 0.1, "test/reference/untrained_decoder/fd_digits_cnn": 50.0,
           "val/iwae": -3.0, "val/elbo": -4.0, "estimators": {"test/log_likelihood": "test/ais_prior"}}


def test_the_keys_a_report_does_not_know_are_found():
    assert names.ais_checks(METRICS, "test", "prior") == {500: -91.5, 250: -93.0}
    assert names.ais_checks(METRICS, "test", "encoder") == {500: -95.0}
    assert names.ais_checks(METRICS, names.long("test"), "prior") == {2000: -89.0}
    assert names.iwae_bounds(METRICS, "test") == {1: {"chain": -120.0, "encoder": -110.0}, 10: {"chain": -105.0},
                                                  100: {"chain": -101.0, "encoder": -100.0}}
    assert names.iwae_bounds(METRICS, "val") == {}  # the methods' own val/iwae and val/elbo are no bounds of a proposal
    assert names.iwae_bounds({"iwae10_chain": 1.0}) == {10: {"chain": 1.0}}  # an evaluation's own, unprefixed
    assert names.feature_spaces(METRICS, "test") == ["a", "digits_cnn"]
    assert names.feature_spaces({"val/fid": 1.0, "val/fd_b": 2.0}, "val") == ["inception", "b"]
    assert names.estimator(METRICS, "test") == "ais_prior" and names.estimator(METRICS, "val") is None
    assert names.final_split(METRICS) == "test" and names.final_split({"eval/fid": 1.0}) == names.LEGACY_SPLIT


def test_the_dashboards_regexes_match_the_keys_the_names_build():
    fd, kid = names.spaces_regex("val", "fd"), names.spaces_regex("val", "kid")
    assert all(re.search(fd, names.key("val", names.sample("fd", s))) for s in ("inception", "digits_cnn"))
    assert re.search(kid, "val/kid_digits_cnn_std") and not re.search(fd, "val/kid_digits_cnn")
    assert re.search(names.spaces_regex("test", "fd", references=True), "test/reference/training_images/fid")
    checks = names.ais_checks_regex("val", "prior")
    assert re.search(checks, names.key("val", names.ais("prior", 500))) and not re.search(checks, "val/ais_prior")
    assert re.search(names.proposals_regex("val", names.bpd()), names.key("val", names.bpd("chain")))


def test_every_committed_record_still_reads():
    for path in sorted((ROOT / "results").glob("*/report.json")):
        for run in json.loads(path.read_text())["runs"]:
            if run["metrics"]:
                metrics, split = run["metrics"], names.final_split(run["metrics"])
                summary = summarise(metrics)
                assert summary["log_likelihood"] == metrics[names.key(split, names.LOG_LIKELIHOOD)], path
                assert summary["fd"] is not None and summary["iwae"] is not None and summary["estimator"], path


def test_a_registered_metric_reaches_the_report_table_its_legend_and_the_workspace(monkeypatch):
    label = "a toy score of the samples (higher is better)"
    monkeypatch.setitem(names.METRICS, "toy", names.Metric("toy", label, True, panel=names.Panel("evaluation")))
    runs = [{"job": f"{i}", "overrides": {"method": method, "seed": str(seed)}, "metrics": metrics,
             "summary": summarise(metrics), "unfinished": False, "error": None}
            for i, (method, seed, metrics) in enumerate([("lpc", 0, {"test/log_likelihood": -100.0, "test/toy": 0.25}),
                                                         ("lpc", 1, {"test/log_likelihood": -101.0, "test/toy": 0.75}),
                                                         ("vae", 0, {"test/log_likelihood": -99.0})])]
    rows = table_rows(runs, EXPERIMENTS["lpc_vs_vae"])
    assert [(r["group"], r["toy"], r["toy_std"]) for r in rows] == [("method=lpc", 0.5, 0.25 * 2 ** 0.5),
                                                                     ("method=vae", None, None)]
    table = report_table(rows).splitlines()
    assert table[0] == "| group | runs (failed) | log_likelihood | toy |"
    assert table[2] == "| method=lpc | 2 (0) | -100.5 ± 0.71 | 0.5 ± 0.35 |"
    assert f"| toy | {label} |" in legend(rows)

    evaluation = next(s for s in read_back(dashboards.workspace("e", "p")).sections if s.name == "evaluation")
    shown = {panel.title: dashboards.panel_refs(panel) for panel in evaluation.panels}
    assert ("metric", "val/toy") in shown[label]
    assert next(c for c in dashboards.sections()["evaluation"] if c.title == label).logged_by == dashboards.ALL
