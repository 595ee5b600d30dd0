"""Every metric's name, defined once: the keys the evaluation logs (``lpc.evaluation.protocol``, as
``<split>/<name>``), the functions that find the keys whose parameters a reader does not know (the
lengths AIS was checked at, the IWAE bounds' k, the feature spaces), and the registry of the report's
metrics (``METRICS``): each one's label, how a run's summary reads it, its direction and its W&B
panel. A metric registered there is a column of the report's table and legend
(``lpc.reporting.tables``) and, given a panel, a panel of the W&B workspace (``lpc.reporting.dashboards``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

SPLITS = ("val", "test")  # the splits an evaluation scores
LEGACY_SPLIT = "eval"  # records from before the validation split: every evaluation scored the test split, as eval/
AIS_STARTS = ("prior", "encoder", "chain")  # where AIS starts: p(z), the method's q(z | x), a Gaussian fitted to its chain
INCEPTION = "inception"  # the feature space of standard FID: its metrics are named without it
REFERENCES = ("untrained_decoder", "training_images")  # sample quality's reference points
REFERENCE_LABELS = {"untrained_decoder": "reference: the networks untrained",  # their rows in a report's table
                    "training_images": "reference: training images (the floor)"}
LOG_LIKELIHOOD = "log_likelihood"  # the headline: the tightest of the estimates
SIGMA_FITTED, SIGMA_TRAINED = "sigma_fitted", "sigma_trained"  # the likelihood's scale fitted on validation, and training's
SIGMA_FIT_ITERATIONS, SIGMA_FIT_CONVERGED = "sigma_fit_iterations", "sigma_fit_converged"


def key(split: str | None, name: str) -> str:
    """The logged key of the metric ``name`` of ``split``'s evaluation (None: as the evaluation names it, without a split)."""
    return name if split is None else f"{split}/{name}"


def ais(start: str, k: int | None = None) -> str:
    """AIS from ``start``; at ``k`` distributions, the check at a shorter schedule than the configured one."""
    return f"ais_{start}" if k is None else f"ais{k}_{start}"


def ais_ess(start: str) -> str:
    """The effective sample size of AIS's weights from ``start``."""
    return f"{ais(start)}_ess"


def ais_accept(start: str) -> str:
    """The mean acceptance rate of AIS's transitions from ``start``."""
    return f"{ais(start)}_accept"


def bdmc_lower(start: str) -> str:
    """BDMC's lower bound (forward AIS) from ``start`` on data simulated from the model."""
    return f"bdmc_lower_{start}"


def bdmc_upper(start: str) -> str:
    """BDMC's upper bound (reverse AIS from the true latents) from ``start``."""
    return f"bdmc_upper_{start}"


def bdmc_gap(start: str | None = None) -> str:
    """The BDMC gap from ``start``; without one, the best AIS start's."""
    return "bdmc_gap" if start is None else f"bdmc_gap_{start}"


def elbo(proposal: str) -> str:
    """The ELBO of the proposal q(z | x) named ``proposal`` (``chain``, ``encoder``)."""
    return f"elbo_{proposal}"


def iwae(k: int, proposal: str) -> str:
    """The IWAE_k bound of ``proposal`` (IWAE_1 is the ELBO)."""
    return elbo(proposal) if k == 1 else f"iwae{k}_{proposal}"


def bpd(proposal: str | None = None) -> str:
    """Bits per dimension of ``proposal``'s largest-k bound; without one, of ``log_likelihood``."""
    return "bpd" if proposal is None else f"bpd_{proposal}"


def sample(metric: str, space: str) -> str:
    """A sample-quality metric (``fd``, ``kid``, ``precision``, ``recall``, ``density``, ``coverage``)
    in the feature space ``space``: ``fid`` for the Frechet distance in Inception's, the metric alone
    for the others there, ``<metric>_<space>`` in any other space."""
    if space != INCEPTION:
        return f"{metric}_{space}"
    return "fid" if metric == "fd" else metric


def std(name: str) -> str:
    """The standard deviation of an estimate (KID's over its subsets)."""
    return f"{name}_std"


def reference(ref: str, name: str) -> str:
    """The sample-quality metric ``name`` of the reference point ``ref`` (``REFERENCES``)."""
    return f"reference/{ref}/{name}"


def trained_sigma(name: str) -> str:
    """A likelihood estimate again at the sigma training left (final evaluations), beside the fitted one's."""
    return f"trained_sigma/{name}"


def completion(mask: str, name: str) -> str:
    """A metric of conditional completion (``scripts/complete.py``) under ``mask`` (``half``, ``centre``, ``random``)."""
    return f"complete/{mask}/{name}"


def long(name: str) -> str:
    """A key (or split) of ``--long-ais``'s evaluation of a run's checkpoint, as the report merges it into the run's metrics."""
    return f"long/{name}"


def _between(metrics: Mapping[str, Any], head: str, tail: str) -> dict[str, Any]:
    """The metrics named ``head + middle + tail`` (a middle without a slash), by their middle."""
    found = {}
    for name, value in metrics.items():
        middle = name[len(head):len(name) - len(tail)]
        if name.startswith(head) and name.endswith(tail) and middle and "/" not in middle:
            found[middle] = value
    return found


def ais_checks(metrics: Mapping[str, Any], split: str, start: str) -> dict[int, float]:
    """The split's AIS from ``start`` at each shorter schedule it was checked at, by its length K."""
    return {int(k): v for k, v in _between(metrics, key(split, "ais"), f"_{start}").items() if k.isdecimal()}


def iwae_bounds(metrics: Mapping[str, Any], split: str | None = None) -> dict[int, dict[str, float]]:
    """The split's IWAE_k bounds by k and proposal, the ELBO as k = 1 (no split: an evaluation's own metrics)."""
    bounds = {1: _between(metrics, key(split, "elbo_"), "")}
    for middle, value in _between(metrics, key(split, "iwae"), "").items():
        k, _, proposal = middle.partition("_")
        if k.isdecimal() and proposal:
            bounds.setdefault(int(k), {})[proposal] = value
    return {k: found for k, found in bounds.items() if found}


def feature_spaces(metrics: Mapping[str, Any], split: str) -> list[str]:
    """The feature spaces of the split's sample quality: Inception's first, then the others by name."""
    inception = [INCEPTION] if key(split, sample("fd", INCEPTION)) in metrics else []
    return inception + sorted(_between(metrics, key(split, "fd_"), ""))


def final_split(metrics: Mapping[str, Any]) -> str:
    """Where a run's final metrics hold its test split's evaluation: ``test``, or ``LEGACY_SPLIT``."""
    legacy = any(k.startswith(key(LEGACY_SPLIT, "")) for k in metrics) and not any(k.startswith(key("test", "")) for k in metrics)
    return LEGACY_SPLIT if legacy else "test"


def estimator(metrics: Mapping[str, Any], split: str) -> str | None:
    """The estimate the split's ``log_likelihood`` is (e.g. ``ais_prior``), as the run's metrics.json names it."""
    named = (metrics.get("estimators") or {}).get(key(split, LOG_LIKELIHOOD))
    return named.removeprefix(key(split, "")) if named else None


def ais_checks_regex(split: str, start: str) -> str:
    """A regex of the split's AIS checks from ``start``, at whichever lengths they ran (W&B's panels)."""
    return rf"^{split}/ais[0-9]+_{start}$"


def proposals_regex(split: str, name: str) -> str:
    """A regex of the split's ``<name>_<proposal>`` for every proposal."""
    return rf"^{split}/{name}_.+$"


def spaces_regex(split: str, metric: str, references: bool = False) -> str:
    """A regex of the split's sample-quality ``metric`` in every feature space (``sample``), with
    ``references`` also at the reference points."""
    at = "(reference/.+/)?" if references else ""
    named = f"({sample(metric, INCEPTION)}|{metric}_.+)" if metric == "fd" else f"{metric}(_.+)?"
    return rf"^{split}/{at}{named}$"


@dataclass(frozen=True)
class RunMetrics:
    """A run's final metrics (its metrics.json) as a report reads one evaluation in them: ``split``'s
    (``test``, ``LEGACY_SPLIT`` in old records, ``val`` for a curve's point), or with ``reference``
    that split's sample quality at the reference point."""

    metrics: Mapping[str, Any]
    split: str
    reference: str | None = None

    def get(self, name: str) -> float | None:
        """The evaluation's metric ``name``."""
        return self.metrics.get(key(self.split, reference(self.reference, name) if self.reference else name))

    def long_ais(self) -> RunMetrics:
        """The evaluation of ``--long-ais`` (scripts/evaluate.py on the run's checkpoint at a longer AIS schedule)."""
        return RunMetrics(self.metrics, long(self.split))


Reader = Callable[[RunMetrics], float | None]


def recorded(name: str) -> Reader:
    """A key of the run's metrics as they are (a diagnostic of the validation split, a cost)."""
    return lambda run: run.metrics.get(name)


def best_ais_start(run: RunMetrics) -> str | None:
    """The AIS start with the highest estimate."""
    found = {s: v for s in AIS_STARTS if (v := run.get(ais(s))) is not None}
    return max(found, key=found.__getitem__) if found else None


def ais_error(run: RunMetrics, start: str | None) -> float | None:
    """How far the AIS estimate from ``start`` may be off: the larger of its BDMC gap and its move from
    each shorter schedule to the full one; None when there is no such AIS estimate."""
    if start is None or (estimate := run.get(ais(start))) is None:
        return None
    checks = (abs(estimate - v) for v in ais_checks(run.metrics, run.split, start).values())
    return max((v for v in (run.get(bdmc_gap(start)), *checks) if v is not None), default=None)


def headline_error(run: RunMetrics) -> float | None:
    """``ais_error`` of the estimate ``log_likelihood`` is, when it is an AIS estimate."""
    named = estimator(run.metrics, run.split)
    return ais_error(run, next((s for s in AIS_STARTS if named == ais(s)), None))


def ais_check(run: RunMetrics) -> float | None:
    """The best AIS start's largest estimate at a shorter schedule; the prior's for runs that checked only it
    (before 2026-12-01)."""
    for start in (best_ais_start(run), "prior"):
        checks = ais_checks(run.metrics, run.split, start) if start else {}
        if checks:
            return max(checks.values())
    return None


def best_bound(k: int | None = None) -> Reader:
    """The best proposal's IWAE_k (k = 1: the ELBO; None: the largest k the run has)."""
    def read(run: RunMetrics) -> float | None:
        bounds = iwae_bounds(run.metrics, run.split)
        found = bounds.get(max(bounds, default=0) if k is None else k, {})
        return max(found.values(), default=None)
    return read


def in_feature_space(metric: str) -> Reader:
    """A sample-quality metric in the first of the split's feature spaces (``feature_spaces``)."""
    def read(run: RunMetrics) -> float | None:
        spaces = feature_spaces(run.metrics, run.split)
        return run.get(sample(metric, spaces[0])) if spaces else None
    return read


@dataclass(frozen=True)
class Panel:
    """A metric's line panel in the W&B workspace, against the training step: in ``section``, titled
    ``title`` (default: the metric's label), showing ``keys`` and the keys that match ``regex``
    (without either: the validation split's metric of the metric's name), of the runs of the methods
    ``logged_by`` names (``all``, ``encoder``, ``langevin`` or ``mcmc``: ``lpc.reporting.dashboards.FAMILIES``)."""

    section: str
    title: str = ""
    keys: tuple[str, ...] = ()
    regex: str | None = None
    logged_by: str = "all"


@dataclass(frozen=True)
class Metric:
    """A metric of the report (a column of its table): ``label``, the legend's text;
    ``higher_is_better`` (None: neither way, e.g. a scale or a cost); ``read``, how a run's summary
    reads it (default: the evaluation's metric ``name``); ``error``, how far the run's estimate may
    be off (the summary's ``<name>_error``); ``references``, also read at the sample-quality
    reference points (the summary's ``<name>_<reference>``); ``panel``, its W&B panel, if any;
    ``axis``, its label on a figure's axis (drawn only if it has one); ``paired``, compared between
    methods seed by seed in the report."""

    name: str
    label: str
    higher_is_better: bool | None = None
    read: Reader | None = None
    error: Reader | None = None
    references: bool = False
    panel: Panel | None = None
    axis: str | None = None
    paired: bool = False

    def value(self, run: RunMetrics) -> float | None:
        """The metric in the run's metrics."""
        return self.read(run) if self.read else run.get(self.name)


EVALUATION = "evaluation"  # the workspace section of the evaluation's panels

# The report's metrics, in the table's order.
METRICS: dict[str, Metric] = {metric.name: metric for metric in (
    Metric(LOG_LIKELIHOOD, "the tightest estimate of log p(x) on the test split, at the sigma fitted on the validation "
           "split (nats, higher is better): the `estimator` column names it", True, error=headline_error,
           panel=Panel(EVALUATION, "log-likelihood: the tightest estimate"), axis="log p(x) (nats)", paired=True),
    Metric("val_log_likelihood", "the same on the validation split, at the end of training (what choices are made on)",
           True, read=lambda run: run.metrics.get(key("val", LOG_LIKELIHOOD)) if run.split == "test" else None),
    Metric("log_likelihood_trained_sigma", "log_likelihood at the sigma training left instead of the fitted one (nats)",
           True, read=lambda run: run.get(trained_sigma(LOG_LIKELIHOOD))),
    Metric(SIGMA_FITTED, "the likelihood's sigma fitted on the validation split (the same EM for every method)"),
    Metric(SIGMA_TRAINED, "the sigma training left (sigma-VAE: the last batch's reconstruction error)"),
    Metric(ais("prior"), "AIS from the prior, log p(x) (nats; every method alike)", True,
           error=lambda run: ais_error(run, "prior"), panel=Panel(EVALUATION, "AIS estimate from the prior (eval=ais)"),
           paired=True),
    Metric(ais("encoder"), "AIS from the method's encoder q(z|x) (nats; methods with an encoder)", True,
           panel=Panel(EVALUATION, "AIS estimate from the encoder (eval=ais)", logged_by="encoder")),
    Metric(ais("chain"), "AIS from a Gaussian fitted to the method's Langevin chain for x (nats; LPC and PC)", True),
    Metric("ais_check", "AIS from the best start at a shorter schedule (nats): close to it if AIS converged", True,
           read=ais_check, panel=Panel(EVALUATION, "AIS from the prior, shorter (eval.ais.check_distributions): converged "
                                       "if it matches", regex=ais_checks_regex("val", "prior"))),
    Metric(bdmc_gap(), "BDMC gap of the best AIS on data simulated from the model (nats): AIS's error bar", False,
           panel=Panel(EVALUATION, "BDMC gap, of the best start and of the prior",
                       keys=(key("val", bdmc_gap()), key("val", bdmc_gap("prior"))))),
    Metric("ais_long", "AIS from the prior at the long schedule of --long-ais (nats; encoder-free runs): the convergence "
           "check", True, read=lambda run: run.long_ais().get(ais("prior"))),
    Metric("ais_long_check", "the same at half that schedule", True,
           read=lambda run: max(ais_checks(run.metrics, long(run.split), "prior").values(), default=None)),
    Metric("bdmc_gap_long", "BDMC gap at the long schedule (25 simulated images)", False,
           read=lambda run: run.long_ais().get(bdmc_gap("prior"))),
    Metric("iwae", "IWAE bound, largest k, best proposal (nats)", True, read=best_bound(),
           axis="IWAE bound on log p(x) (nats)"),
    Metric("elbo", "ELBO (nats, higher is better)", True, read=best_bound(1)),
    Metric(bpd(), "bits/dim of log_likelihood (lower is better)", False,
           panel=Panel(EVALUATION, "bits/dim of the log-likelihood")),
    Metric("fd", "Frechet distance of samples (lower is better)", False, read=in_feature_space("fd"), references=True,
           panel=Panel(EVALUATION, "Frechet distance of prior samples, every feature space", regex=spaces_regex("val", "fd")),
           axis="Frechet distance of samples", paired=True),
    Metric("kid", "kernel (MMD) distance of samples, the FD's features (lower is better)", False,
           read=in_feature_space("kid"), references=True,
           panel=Panel(EVALUATION, "KID and its std over subsets, every feature space", regex=spaces_regex("val", "kid")),
           paired=True),
    *(Metric(name, label, better, read=in_feature_space(name), references=True,
             panel=Panel(EVALUATION, f"{name}, every feature space", regex=spaces_regex("val", name)))
      for name, label, better in (
          ("precision", "share of samples within the test images' k-NN balls (fidelity; PRDC, higher is better)", True),
          ("recall", "share of test images within the samples' k-NN balls (diversity; higher is better)", True),
          ("density", "PRDC density (fidelity, counting ball overlaps; about 1 for a match)", None),
          ("coverage", "share of test images whose k-NN ball holds a sample (diversity; higher is better)", True))),
    Metric("recon_mse", "val reconstruction MSE", False, read=recorded(key("val", "recon_mse"))),
    Metric("accept_rate", "acceptance rate", read=recorded(key("val", "accept_rate")), axis="acceptance rate"),
    Metric("diverged_frac", "share of diverged chains (val)", False, read=recorded(key("val", "diverged_frac")),
           axis="share of diverged chains (val)"),
    Metric("decoder_evals", "decoder evals per update", False, read=recorded("cost/decoder_evals")),
    Metric("decoder_evals_total", "decoder evals over the run (what budget.decoder_evals limits)", False,
           read=recorded("decoder_evals_total")),
    Metric("step_ms", "ms per update", False, read=recorded("cost/step_ms")),
    *(Metric(f"mse_{mask}", label, False, read=recorded(completion(mask, "mse_missing"))) for mask, label in (
        ("half", "completion: squared error on the missing pixels, bottom half missing (scripts/complete.py; lower is better)"),
        ("centre", "completion: the same, a centre square missing"),
        ("random", "completion: the same, half the pixels missing at random"))),
)}

AXES = {name: metric.axis for name, metric in METRICS.items() if metric.axis}  # the figures' axis labels
PAIRED = tuple(name for name, metric in METRICS.items() if metric.paired)  # compared between methods seed by seed
