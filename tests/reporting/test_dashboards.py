"""The W&B dashboards of lpc/reporting/dashboards.py, with no network: the workspace and each experiment's
report are built and validated by wandb-workspaces' own models and read back equal from their JSON;
every key every panel reads is logged by a real tiny run of each method the panel shows; and
scripts/dashboard.py writes the JSON, saying how to publish it, where it does not publish."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import wandb_workspaces.reports.v2 as wr
import wandb_workspaces.workspaces as ws
from conftest import ROOT
from google.protobuf.message import DecodeError
from wandb_records import records, run_info
from wandb_workspaces.reports.v2 import interface as report_interface

from lpc.config.compose import compose_config
from lpc.errors import LpcError
from lpc.jobs.train import train
from lpc.reporting import dashboards
from lpc.reporting.markdown import markdown_table

# Tiny runs that keep the default metric names: S = 4 kept samples (the chain ELBO and R-hat need >= 2 and >= 4),
# the evaluation at its default bounds, with AIS (eval=ais, and its check at a shorter length) and the offline
# feature space, all cut short.
TINY = ["num_steps=6", "burn_in=2", "sampler.thin=1", "batch_size=16", "trainer.max_steps=2",
        "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false", "callbacks.model_checkpoint=null", "callbacks.model_summary=null",
        "callbacks.image_grids.num_images=8", "eval=ais", "eval.ais.num_distributions=5", "eval.ais.chains=2",
        "eval.ais.num_examples=8", "eval.ais.bdmc_examples=4", "eval.ais.batch_size=8", "eval.ais.progress=false",
        "eval.ais.check_distributions=[3]", "eval.features=classifier", "eval.sample_quality.num_samples=32",
        "eval.sample_quality.kid_subsets=2", "eval.sample_quality.kid_subset_size=16", "eval.likelihood.num_examples=8"]
REPORT_MD = "\n".join(["# lpc_vs_vae (tiny scale)", "", "- commit: abc", "",
                       markdown_table(["group", "log_likelihood"], [["method=lpc", "-301.2 ± 0.4"]]), "",
                       markdown_table(["metric", "meaning"], [["log_likelihood", "IWAE bound"]]), "", "![fd](fd.png)"])


@dataclass
class Logged:
    keys: set[str]  # csv/metrics.csv's columns and the W&B history's keys
    config: dict  # the W&B run's config
    wandb_run_dir: Path  # the offline W&B run's folder


def wandb_keys(path: Path) -> set[str]:
    """The top-level keys of a W&B run's history (a media or table value is one key, e.g. images/samples)."""
    return {item.key or item.nested_key[0] for record in records(path)
            if record.WhichOneof("record_type") == "history" for item in record.history.item}


def finished_run_file(out: Path, timeout: float = 60.0) -> Path:
    """The W&B run file under ``out`` once it holds the run's exit record: in-process, W&B writes the
    file out after ``wandb.finish()`` has returned."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in out.glob("wandb/offline-run-*/run-*.wandb"):
            try:
                if any(record.WhichOneof("record_type") == "exit" for record in records(path)):
                    return path
            except DecodeError:  # a record still being written
                pass
        time.sleep(0.2)
    raise AssertionError(f"no finished W&B run under {out} after {timeout:g} s")


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> dict[str, Logged]:
    """What each method of ``dashboards.METHODS`` logs, from a real tiny run (W&B offline and CSV)."""
    found = {}
    for name, overrides in dashboards.METHODS.items():
        out = tmp_path_factory.mktemp(name)
        train(compose_config([*overrides, *TINY], out))
        run_file = finished_run_file(out)
        columns = (out / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
        found[name] = Logged({*columns, *wandb_keys(run_file)}, run_info(run_file)["config"], run_file.parent)
    return found


def read_back(dashboard: dashboards.Dashboard) -> dashboards.Dashboard:
    """The dashboard from its JSON, checked to serialise to the same JSON again."""
    data = json.loads(json.dumps(dashboards.to_json(dashboard)))
    back = dashboards.from_json(data)
    assert dashboards.to_json(back) == data
    return back


def load_script(name: str):
    """scripts/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def config_has(config: dict, key: str) -> bool:
    """Whether a nested config holds a dotted key (W&B keeps nested config dicts nested)."""
    for part in key.split("."):
        if not isinstance(config, dict) or part not in config:
            return False
        config = config[part]
    return True


def logs(run: Logged, kind: str, key: str) -> bool:
    """Whether a run logged what a panel reads (a ``dashboards.panel_refs`` pair); W&B's own keys it need not."""
    if kind == "config":
        return config_has(run.config, key)
    if kind == "regex":
        return any(re.search(key, logged) for logged in run.keys)
    return key in (dashboards.WANDB_OWN if kind == "wandb" else run.keys)


def test_the_workspace_is_valid_and_reads_back_equal():
    back = read_back(dashboards.workspace("an-entity", "a-project"))
    assert isinstance(back, ws.Workspace) and (back.entity, back.project) == ("an-entity", "a-project")
    assert [s.name for s in back.sections] == list(dashboards.sections())
    assert [[type(p) for p in s.panels] for s in back.sections] == \
        [[type(c.panel()) for c in charts] for charts in dashboards.sections().values()]
    grouping = dashboards.to_json(back)["model"]["spec"]["section"]["runSets"][0]["grouping"]
    assert grouping == [{"section": "run", "name": "group"}]  # runs grouped by their multirun's W&B group


def test_every_experiment_of_reproduce_has_a_report():
    assert set(dashboards.REPORTS) == set(load_script("reproduce").EXPERIMENTS)


@pytest.mark.parametrize("experiment", sorted(dashboards.REPORTS))
def test_each_report_has_its_question_runs_panels_and_table_and_reads_back_equal(experiment):
    back = read_back(dashboards.report(experiment, "me", "proj", REPORT_MD, groups=[f"{experiment}_runs"]))
    header = dashboards.experiment_config(experiment).read_text().splitlines()[1].removeprefix("# ")
    asked, grid, _, table = back.blocks
    assert back.description == asked.text == dashboards.question(experiment) and asked.text.startswith(header)
    assert back.title == f"{experiment}: {dashboards.headline(asked.text)}" and len(back.title) <= 128
    assert grid.runsets[0].filters == f"Metric(\"Group\") in ['{experiment}_runs']"
    assert [type(p) for p in grid.panels] == [type(c.panel()) for c in dashboards.REPORTS[experiment]]
    assert table.text == "\n\n".join(REPORT_MD.split("\n\n")[2:4])  # the tables, not the title, list or figure
    untagged = dashboards.report(experiment, "me", "proj").blocks[1].runsets[0]
    assert untagged.filters == f"Metric(\"Tags\") in ['{experiment}']"  # the experiment config's tags


def test_every_panel_key_is_logged_by_a_tiny_run_of_each_method_it_shows(logged):
    shown = [(chart, panel) for charts, section in zip(dashboards.sections().values(),
                                                        read_back(dashboards.workspace("e", "p")).sections)
             for chart, panel in zip(charts, section.panels, strict=True)]
    for name, charts in dashboards.REPORTS.items():
        grid = read_back(dashboards.report(name, "e", "p")).blocks[1]
        shown += list(zip(charts, grid.panels, strict=True))
    missing = []
    for chart, panel in shown:
        assert chart.logged_by and set(chart.logged_by) <= set(dashboards.METHODS), chart.title
        missing += [f"{chart.title!r}: {kind} {key} is not logged by {method}" for method in chart.logged_by
                    for kind, key in dashboards.panel_refs(panel) if not logs(logged[method], kind, key)]
    assert not missing, "\n".join(missing)
    table = next(logged["lpc"].wandb_run_dir.glob("files/media/table/val/energy_trace_table_*.table.json"))
    assert json.loads(table.read_text())["columns"] == list(dashboards.ENERGY_TRACE_COLUMNS.values())


def test_publishing_binds_the_reports_runs_to_its_project_looked_up_on_the_server(monkeypatch, capsys):
    lookups, saved = [], []

    def server(api, query, variables):
        lookups.append(dict(variables))
        return {"project": {"internalId": "UHJvamVjdDo3"}}

    monkeypatch.setattr(report_interface, "execute_graphql", server)
    monkeypatch.setattr(report_interface, "_get_api", lambda: None)
    monkeypatch.setattr(wr.Report, "save", lambda self: saved.append(self._to_model()))
    monkeypatch.setattr(wr.Report, "url", property(lambda self: "https://wandb.example/report"))
    monkeypatch.setattr(dashboards, "publish_blocker", lambda: None)
    url = dashboards.publish_experiment_report("tuned", "me", "proj", ["tuned_lpc"], REPORT_MD, Path("unused"))
    assert url == "https://wandb.example/report" and lookups == [{"entityName": "me", "projectName": "proj"}]
    project = saved[0].spec.blocks[2].metadata.run_sets[0].project  # blocks: the library's empty first paragraph, ...
    assert (project.entity_name, project.name, project.id) == ("me", "proj", "UHJvamVjdDo3")

    monkeypatch.setattr(ws.Workspace, "save", lambda self: saved.append(self._to_model()))
    monkeypatch.setattr(ws.Workspace, "url", property(lambda self: "https://wandb.example/workspace"))
    url = dashboards.publish_or_write(dashboards.workspace("me", "proj"), "workspace_proj", Path("unused"))
    assert url == "https://wandb.example/workspace" and (saved[1].entity, saved[1].project) == ("me", "proj")
    assert "published workspace_proj: https://wandb.example/workspace" in capsys.readouterr().out


def test_without_a_network_or_a_login_the_command_writes_the_json_and_says_how_to_publish(tmp_path, monkeypatch,
                                                                                          capsys):
    cli = load_script("dashboard")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there: no server
    cli.main(["--entity", "e", "--project", "p", "--out", str(tmp_path)])
    path = tmp_path / "workspace_p.json"
    said = capsys.readouterr().out
    assert "http://127.0.0.1:9 is not reachable" in said and f"python scripts/dashboard.py --publish {path}" in said
    written = read_back(dashboards.from_json(json.loads(path.read_text())))
    assert [section.name for section in written.sections] == list(dashboards.sections())
    with pytest.raises(LpcError, match="not reachable: cannot publish"):
        dashboards.publish_file(path)

    monkeypatch.setattr("lpc.jobs.loggers.reachable", lambda url, timeout: True)  # a server, but no login
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    cli.main(["--project", "p", "--experiment", "ula_vs_mala", "--out", str(tmp_path)])
    assert "not logged in to W&B" in capsys.readouterr().out
    assert isinstance(dashboards.from_json(json.loads((tmp_path / "report_ula_vs_mala.json").read_text())), wr.Report)


def test_dry_run_writes_the_json(tmp_path):
    out = tmp_path / "dashboards"
    proc = subprocess.run([sys.executable, "scripts/dashboard.py", "--entity", "e", "--project", "p", "--experiment",
                           "lpc_vs_vae", "--group", "lpc_vs_vae_runs", "--dry-run", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    path = out / "report_lpc_vs_vae.json"
    assert f"--dry-run: wrote the report_lpc_vs_vae specification to {path}" in proc.stdout
    back = read_back(dashboards.from_json(json.loads(path.read_text())))
    assert back.blocks[1].runsets[0].filters == "Metric(\"Group\") in ['lpc_vs_vae_runs']"


def test_the_docs_show_the_dashboards_as_the_code_defines_them():
    assert dashboards.outline() in (ROOT / "docs" / "wandb.md").read_text()
