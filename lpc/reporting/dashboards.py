"""W&B dashboards defined in code with W&B's ``wandb-workspaces``: the project's workspace and a
report per experiment of ``scripts/reproduce.py``. The panels read every metric name from
``lpc.evaluation.names``, whose registry of the report's metrics also gives each of them its panel
(``sections``); tests/reporting/test_dashboards.py holds every panel's keys against real tiny runs of the
methods in ``METHODS``.

Publishing needs the W&B server and a login. Without either (or with ``dry_run``) a dashboard is
written as JSON (the library's own model of it) instead, to publish later with
``python scripts/dashboard.py --publish <file>``. Only this module imports ``wandb_workspaces``.
"""

from __future__ import annotations

import json
import netrc
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import wandb
import wandb_workspaces.reports.v2 as wr
import wandb_workspaces.workspaces as ws
import yaml
from wandb_workspaces import expr
from wandb_workspaces.reports.v2 import internal as report_models
from wandb_workspaces.reports.v2.interface import Panel
from wandb_workspaces.workspaces import internal as workspace_models

from lpc.config.compose import CONFIGS
from lpc.errors import LpcError
from lpc.evaluation import names

Dashboard = ws.Workspace | wr.Report
Ref = tuple[str, str]  # (kind, key) a panel reads: see ``panel_refs``

# The runs the panels show, as train.py overrides; every panel names those that log all of its keys.
METHODS: dict[str, tuple[str, ...]] = {
    "lpc": ("method=lpc",),  # encoder-free ULA chains
    "lpc_mala": ("method=lpc_mala", "sampler.chains=2", "sampler.adapt_step_size=true"),  # + acceptance, R-hat, ESS
    "lpc_jeffreys": ("method=lpc_jeffreys",),  # chains from an encoder's warm-start
    "vae": ("method=vae",),
}
LANGEVIN = ("lpc", "lpc_mala", "lpc_jeffreys")
MCMC = ("lpc_mala",)
ENCODER = ("lpc_jeffreys", "vae")  # the methods with an encoder's q(z | x)
ALL = (*LANGEVIN, "vae")
FAMILIES = {"all": ALL, "langevin": LANGEVIN, "mcmc": MCMC, "encoder": ENCODER}  # a registered panel's logged_by

STEP = "trainer/global_step"  # Lightning's step, logged with every metric
WALL = "RelativeTime(Wall)"  # W&B's own x-axis: wall-clock time since the run started
WANDB_OWN = {WALL, "Group"}  # what W&B supplies itself, not a run
ENERGY_TRACE = "val/energy_trace"  # lpc.methods.lpc via lpc.jobs.loggers.log_line; W&B keeps its table as <key>_table
ENERGY_TRACE_COLUMNS = {"x": "step", "y": "energy"}
IWAE_K = (1, 10, 100)  # eval.likelihood.k of configs/eval/default.yaml
LOG_LIKELIHOOD = names.key("val", names.LOG_LIKELIHOOD)  # the validation metric every method logs (tuning and sweeps compare it)
TEST_LOG_LIKELIHOOD = names.key("test", names.LOG_LIKELIHOOD)  # the test split's, scored once at the end (never compared to choose)
FD = names.spaces_regex("val", "fd")  # Inception's FID, or FD_<net> in an in-domain network's features
SWEPT = {"step_size": ("step size", True), "num_steps": ("T (num_steps)", False),
         "model.optimizer.lr": ("learning rate", True)}  # config key: (label, log scale)
COST = ("cost/decoder_evals", "cost/encoder_evals")
CLOCKS = ("cost/inner_loop_ms", "cost/step_ms")
CONNECT_TIMEOUT = 5.0  # seconds, as logger.wandb.connect_timeout


def val(name: str) -> str:
    """``val/<name>``."""
    return names.key("val", name)


def both(name: str) -> tuple[str, str]:
    """``train/<name>`` and ``val/<name>``."""
    return names.key("train", name), val(name)


def bounds(proposal: str) -> tuple[str, ...]:
    """The ELBO and IWAE_k of the validation evaluation's proposal q."""
    return tuple(val(names.iwae(k, proposal)) for k in IWAE_K)


@dataclass(frozen=True)
class Chart:
    """A panel, made anew for each workspace and report (the library lays panels out in place),
    and the methods of ``METHODS`` whose runs log every key it reads."""

    title: str
    logged_by: tuple[str, ...]
    make: Callable[[], Panel]

    def panel(self) -> Panel:
        return self.make()


def line(title: str, *y: str, x: str = STEP, regex: str | None = None, logged_by: tuple[str, ...] = ALL) -> Chart:
    """Metrics (or those matching ``regex``) against ``x``, one line per run."""
    return Chart(title, logged_by, lambda: wr.LinePlot(title=title, x=x, y=list(y), metric_regex=regex))


def scatter(title: str, x: wr.Config | wr.SummaryMetric, y: str, log_x: bool = False,
            logged_by: tuple[str, ...] = ALL) -> Chart:
    """One point per run: a config value or final metric ``x`` against the final metric ``y``."""
    return Chart(title, logged_by, lambda: wr.ScatterPlot(title=title, x=x, y=wr.SummaryMetric(y), log_x=log_x or None))


def against(key: str) -> Chart:
    """The final log-likelihood against a swept config value."""
    label, log = SWEPT[key]
    return scatter(f"final log-likelihood against {label}", wr.Config(key), LOG_LIKELIHOOD, log_x=log)


def images(title: str, kind: str) -> Chart:
    """The grids ``lpc.callbacks.images`` logs as ``images/<kind>``."""
    return Chart(title, ALL, lambda: wr.MediaBrowser(title=title, media_keys=[f"images/{kind}"], num_columns=1))


def energy_trace(title: str) -> Chart:
    """W&B's line chart of the ``ENERGY_TRACE`` table the Langevin methods log at each validation."""
    return Chart(title, LANGEVIN, lambda: wr.CustomChart(
        query={"summaryTable": {"tableKey": f"{ENERGY_TRACE}_table"}}, chart_name="wandb/line/v0",
        chart_fields=dict(ENERGY_TRACE_COLUMNS), chart_strings={"title": title}))


def registered(metric: names.Metric) -> Chart:
    """The panel the registry gives a report's metric (``names.Panel``)."""
    panel = metric.panel
    if panel is None:
        raise ValueError(f"the report's metric {metric.name} has no panel")
    keys = panel.keys or (() if panel.regex else (val(metric.name),))
    return line(panel.title or metric.label, *keys, regex=panel.regex, logged_by=FAMILIES[panel.logged_by])


def parallel(title: str) -> Chart:
    """The swept config values (``SWEPT``) and the final log-likelihood, one line per run."""
    return Chart(title, ALL, lambda: wr.ParallelCoordinatesPlot(title=title, columns=[
        *(wr.ParallelCoordinatesPlotColumn(wr.Config(key), display_name=label, log=log or None)
          for key, (label, log) in SWEPT.items()),
        wr.ParallelCoordinatesPlotColumn(wr.SummaryMetric(LOG_LIKELIHOOD), display_name="log-likelihood")]))


LOG_LIKELIHOOD_CURVE = registered(names.METRICS[names.LOG_LIKELIHOOD])
LOG_LIKELIHOOD_WALL = line("log-likelihood against wall-clock", LOG_LIKELIHOOD, x=WALL)
FD_CURVE = registered(names.METRICS["fd"])
FD_WALL = line("Frechet distance against wall-clock", regex=FD, x=WALL)
ELBO = line("ELBO (nats per example)", *both("elbo"))
ENERGY_ENDS = line("energy at the chains' start z_0 and end z_T", *both("energy_init"), *both("energy_last"),
                   logged_by=LANGEVIN)
ENCODER_LOSS = line("warm-start encoder: its loss and terms", "train/encoder_loss", "train/forward_kl",
                    "train/reverse_kl", logged_by=("lpc_jeffreys",))
ACCEPT = line("acceptance rate (MALA, HMC)", *both("accept_rate"), logged_by=MCMC)
DIVERGED = line("share of diverged chains", *both("diverged_frac"), logged_by=LANGEVIN)
TRACE = energy_trace("energy trace: mean E(x, z_t) against the inner step t, last validation")
SAMPLES = images("prior samples", "samples")
SWEEP = parallel("step size, T and learning rate against the final log-likelihood")

# The workspace: its sections, in order, and their panels besides those of the report's metrics (``sections``).
SECTIONS: dict[str, tuple[Chart, ...]] = {
    "training": (
        line("loss", "train/loss"),
        line("energy E(x, z)", *both("energy")),
        ENERGY_ENDS,
        line("reconstruction MSE", *both("recon_mse")),
        ELBO,
        line("VAE: the ELBO's terms", *both("recon_log_prob"), *both("kl"), logged_by=("vae",)),
        ENCODER_LOSS,
    ),
    "cost": (
        line("decoder and encoder evaluations per update", *COST),
        line("evaluations per update against wall-clock", *COST, x=WALL),
        line("ms per update: inner loop and whole step", *CLOCKS),
        line("ms per update against wall-clock", *CLOCKS, x=WALL),
    ),
    "evaluation": (
        LOG_LIKELIHOOD_WALL,
        line("its estimators from the chain's proposal: ELBO, IWAE_k", *bounds("chain"), logged_by=LANGEVIN),
        line("its estimators from the encoder's proposal: ELBO, IWAE_k", *bounds("encoder"), logged_by=ENCODER),
        line("AIS from the prior: the weights' ESS", val(names.ais_ess("prior"))),
        line("AIS from the prior: acceptance", val(names.ais_accept("prior"))),
        line("BDMC bounds from the prior", val(names.bdmc_lower("prior")), val(names.bdmc_upper("prior"))),
        line("bits/dim of each proposal", regex=names.proposals_regex("val", names.bpd())),
        FD_WALL,
    ),
    "test": (
        scatter("test log-likelihood (scored once, at the end) against the validation one", wr.SummaryMetric(LOG_LIKELIHOOD),
                TEST_LOG_LIKELIHOOD),
        line("test split, scored once: Frechet distance and its reference points",
             regex=names.spaces_regex("test", "fd", references=True)),
    ),
    "sampler": (
        ACCEPT,
        line("adapted step size (sampler.adapt_step_size=true)", *both("adapted_step_size"), logged_by=MCMC),
        line("step size (after on_divergence=backoff)", "train/step_size", logged_by=LANGEVIN),
        line("split R-hat, mean and max (sampler.chains >= 2)", *both("rhat_mean"), *both("rhat_max"), logged_by=MCMC),
        line("bulk ESS, mean and min (sampler.chains >= 2)", *both("ess_bulk_mean"), *both("ess_bulk_min"),
             logged_by=MCMC),
        DIVERGED,
        line("preconditioner scale", *both("precond_scale"), logged_by=LANGEVIN),
        TRACE,
    ),
    "samples": (SAMPLES, images("reconstructions", "recon"), images("data", "data")),
    "sweep": (SWEEP, *(against(key) for key in SWEPT)),
}

# Each experiment's report: the panels that answer its question.
REPORTS: dict[str, tuple[Chart, ...]] = {
    "lpc_vs_vae": (
        LOG_LIKELIHOOD_CURVE, LOG_LIKELIHOOD_WALL, FD_CURVE, FD_WALL,
        scatter("final log-likelihood against decoder evaluations per update", wr.SummaryMetric(COST[0]),
                LOG_LIKELIHOOD),
        scatter("final log-likelihood against ms per update", wr.SummaryMetric(CLOCKS[1]), LOG_LIKELIHOOD),
        ELBO, SAMPLES,
    ),
    "warmstart_objectives": (LOG_LIKELIHOOD_CURVE, ENERGY_ENDS, ENCODER_LOSS, FD_CURVE, SAMPLES),
    "hierarchical": (LOG_LIKELIHOOD_CURVE, LOG_LIKELIHOOD_WALL, FD_CURVE, ELBO, SAMPLES),
    "step_size_robustness": (
        against("step_size"),
        scatter("final share of diverged chains against step size", wr.Config("step_size"), val("diverged_frac"),
                log_x=True, logged_by=LANGEVIN),
        DIVERGED, TRACE,
    ),
    "ula_vs_mala": (
        against("step_size"),
        scatter("final acceptance rate against step size", wr.Config("step_size"), val("accept_rate"), log_x=True,
                logged_by=MCMC),
        ACCEPT, TRACE,
    ),
    "tuned": (
        SWEEP, against("model.optimizer.lr"), against("step_size"),
        Chart("parameter importance for the final log-likelihood", ALL,
              lambda: wr.ParameterImportancePlot(with_respect_to=LOG_LIKELIHOOD)),
    ),
}


def sections() -> dict[str, tuple[Chart, ...]]:
    """The workspace's sections, in order, and their panels: the panels of the report's metrics
    registered there (``names.METRICS``) first, then the section's own of ``SECTIONS``; a section
    that only the registry names comes last."""
    found: dict[str, list[Chart]] = {}
    for metric in names.METRICS.values():
        if metric.panel:
            found.setdefault(metric.panel.section, []).append(registered(metric))
    return {name: (*found.get(name, ()), *SECTIONS.get(name, ())) for name in {**SECTIONS, **found}}


def workspace(entity: str, project: str) -> ws.Workspace:
    """The project's workspace: a section per entry of ``sections``, runs grouped by their
    multirun's W&B group (each sweep one group; a run's name is its job's overrides)."""
    shown = [ws.Section(name=name, panels=[chart.panel() for chart in charts], is_open=True,
                        layout_settings=ws.SectionLayoutSettings(columns=3, rows=-(-len(charts) // 3)))
             for name, charts in sections().items()]
    return ws.Workspace(entity=entity, project=project, name="lpc", sections=shown,
                        runset_settings=ws.RunsetSettings(groupby=[expr.Metric("Group")]))


def experiment_config(experiment: str) -> Path:
    return CONFIGS / "experiment" / f"{experiment}.yaml"


def question(experiment: str) -> str:
    """The experiment's question: the prose of its config's header comment, before the commands."""
    prose = []
    for text in experiment_config(experiment).read_text().splitlines():
        if text.startswith("# @package"):
            continue
        if not text.startswith("# ") or text.startswith("#   "):
            break
        prose.append(text[2:].strip())
    return " ".join(prose).removesuffix(":")


def headline(text: str) -> str:
    """The first sentence (or clause before a colon) of a text."""
    return re.split(r"(?<=[?.:])\s", text, maxsplit=1)[0].rstrip(".:")


def markdown_tables(markdown: str) -> str:
    """The tables of a markdown text (its runs of lines starting with ``|``), blank-line separated."""
    tables, current = [], []
    for text in [*markdown.splitlines(), ""]:
        if text.startswith("|"):
            current.append(text)
        elif current:
            tables.append("\n".join(current))
            current = []
    return "\n\n".join(tables)


def run_filter(experiment: str, groups: Sequence[str]) -> list[expr.FilterExpr]:
    """The runs of the W&B ``groups``, or without any, every run with the experiment config's tags."""
    if groups:
        return [expr.Metric("Group").isin(list(groups))]
    return [expr.Tags().isin(yaml.safe_load(experiment_config(experiment).read_text())["tags"])]


def report(experiment: str, entity: str, project: str, report_md: str = "", groups: Sequence[str] = ()) -> wr.Report:
    """The experiment's report: its question, its runs (``run_filter``) in the panels of ``REPORTS``,
    and the tables of its report.md (the text ``report_md``). The run set is bound to the project
    when published (``publish``): binding looks the project up on the server."""
    asked = question(experiment)
    scope = f"groups {', '.join(groups)}" if groups else "every run tagged with the experiment"
    runs = wr.Runset(name=f"{experiment}: {scope}", filters=run_filter(experiment, groups))
    tables = markdown_tables(report_md) or f"No report.md yet: `python scripts/reproduce.py {experiment}` writes it."
    return wr.Report(entity=entity, project=project, title=f"{experiment}: {headline(asked)}", description=asked,
                     blocks=[wr.P(asked), wr.PanelGrid(runsets=[runs], panels=[c.panel() for c in REPORTS[experiment]]),
                             wr.H2("Tables of report.md"), wr.MarkdownBlock(tables)])


KINDS = {wr.LinePlot: "line", wr.ScatterPlot: "scatter", wr.ParallelCoordinatesPlot: "parallel coordinates",
         wr.MediaBrowser: "images", wr.CustomChart: "line of a logged table",
         wr.ParameterImportancePlot: "parameter importance"}  # the panels used, as ``outline`` names them


def panel_refs(panel: Panel) -> list[Ref]:
    """What a panel reads, as (kind, key): ``metric`` (a key a run logs: history, summary, media or
    table), ``config`` (a config key), ``regex`` (matched against the logged keys) or ``wandb`` (W&B's own)."""
    if isinstance(panel, wr.LinePlot):
        items = [panel.x, *panel.y]
    elif isinstance(panel, wr.ScatterPlot):
        items = [panel.x, panel.y]
    elif isinstance(panel, wr.ParallelCoordinatesPlot):
        items = [column.metric for column in panel.columns]
    elif isinstance(panel, wr.MediaBrowser):
        items = list(panel.media_keys)
    elif isinstance(panel, wr.CustomChart):
        items = [panel.query["summaryTable"]["tableKey"]]
    elif isinstance(panel, wr.ParameterImportancePlot):
        items = [panel.with_respect_to]
    else:
        raise TypeError(f"no keys known for a {type(panel).__name__}")
    refs = [("config" if isinstance(item, wr.Config) else "metric", item if isinstance(item, str) else item.name)
            for item in items]
    refs = [("wandb", key) if key in WANDB_OWN else (kind, key) for kind, key in refs]
    return refs + ([("regex", panel.metric_regex)] if getattr(panel, "metric_regex", None) else [])


def outline() -> str:
    """The workspace's sections and the reports, each panel with the keys it reads, as a markdown list."""
    def entries(charts: Sequence[Chart]) -> list[str]:
        shown = {"metric": "{}", "config": "config.{}", "regex": "/{}/"}
        return [f"  - {chart.title} ({KINDS[type(panel)]}): " + ", ".join(
            f"`{shown[kind].format(key)}`" for kind, key in panel_refs(panel) if kind in shown and key != STEP)
            for chart, panel in ((chart, chart.panel()) for chart in charts)]

    lines = ["Workspace `lpc` (one per project; runs grouped by their multirun's W&B group):", ""]
    for name, charts in sections().items():
        lines += [f"- **{name}**", *entries(charts)]
    lines += ["", "Reports (one per experiment of `scripts/reproduce.py`: its question, the runs of its group, "
              "these panels, the tables of its report.md):", ""]
    for name, charts in REPORTS.items():
        lines += [f"- **{name}**: {headline(question(name))}", *entries(charts)]
    return "\n".join(lines)


def to_json(dashboard: Dashboard) -> dict:
    """The dashboard as the library's own model of it (what W&B stores), as JSON data."""
    kind = "workspace" if isinstance(dashboard, ws.Workspace) else "report"
    return {"kind": kind, "model": dashboard._to_model().model_dump(mode="json", by_alias=True, exclude_none=True)}


def from_json(data: dict) -> Dashboard:
    """``to_json``'s dashboard back, validated by the library's models."""
    if data["kind"] == "workspace":
        return ws.Workspace._from_model(workspace_models.View.model_validate(data["model"]))
    return wr.Report._from_model(report_models.ReportViewspec.model_validate(data["model"]))


def netrc_key(url: str) -> str | None:
    """The API key ``wandb login`` stored in the netrc file for the server's host."""
    try:
        found = netrc.netrc(os.environ.get("NETRC")).authenticators(urlparse(url).hostname or "")
    except (OSError, netrc.NetrcParseError):
        return None
    return found[2] if found else None


def publish_blocker() -> str | None:
    """Why a dashboard cannot be published from here, or None: the W&B server does not answer
    (the check of ``lpc.jobs.loggers``, as online runs make) or there is no login."""
    from lpc.jobs.loggers import (  # imports Lightning: only when publishing
        DEFAULT_WANDB_URL,
        reachable,
    )

    url = os.environ.get("WANDB_BASE_URL", DEFAULT_WANDB_URL)
    if not reachable(url, CONNECT_TIMEOUT):
        return f"the W&B server {url} is not reachable"
    if not (os.environ.get("WANDB_API_KEY") or netrc_key(url)):
        return "not logged in to W&B (no WANDB_API_KEY; run `wandb login`)"
    return None


def publish(dashboard: Dashboard) -> str:
    """Save the dashboard to W&B (a report's run sets bound to its project first); returns its URL."""
    dashboard.entity = dashboard.entity or wandb.Api().default_entity
    if isinstance(dashboard, wr.Report):
        for block in dashboard.blocks:
            for runset in block.runsets if isinstance(block, wr.PanelGrid) else ():
                runset.entity, runset.project = dashboard.entity, dashboard.project
    dashboard.save()
    return dashboard.url


def publish_or_write(dashboard: Dashboard, name: str, out_dir: Path, dry_run: bool = False) -> str | Path:
    """Publish the dashboard (returns its URL), or with ``dry_run`` or when it cannot be published,
    write it to ``out_dir/<name>.json`` (returns the file) and say so and how to publish it later."""
    blocker = "--dry-run" if dry_run else publish_blocker()
    if blocker is None:
        url = publish(dashboard)
        print(f"published {name}: {url}")
        return url
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(to_json(dashboard), indent=1))
    print(f"{blocker}: wrote the {name} specification to {path}; publish it later (with a network and "
          f"`wandb login`) with: python scripts/dashboard.py --publish {path}")
    return path


def publish_file(path: Path, entity: str | None = None) -> str:
    """Publish a dashboard ``publish_or_write`` wrote (its entity replaced by ``entity`` if given)."""
    dashboard = from_json(json.loads(path.read_text()))
    blocker = publish_blocker()
    if blocker:
        raise LpcError(f"{blocker}: cannot publish {path} from here")
    if entity:
        dashboard.entity = entity
    return publish(dashboard)


def publish_experiment_report(experiment: str, entity: str | None, project: str, groups: Sequence[str],
                              report_md: str, out_dir: Path, dry_run: bool = False) -> str | Path:
    """The experiment's report (``report``) published, or written to ``out_dir`` (``publish_or_write``)."""
    return publish_or_write(report(experiment, entity or "", project, report_md, groups),
                            f"report_{experiment}", out_dir, dry_run)
