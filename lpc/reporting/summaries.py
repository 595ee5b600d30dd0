"""A run's final metrics (its metrics.json) summarised as the reports read them: the test split's
headline log-likelihood with its estimator and the estimator's own error, the validation split's
beside it, the fitted and training sigma, sample quality with its reference points, and cost."""

from __future__ import annotations

import re

from lpc.evaluation.evaluator import REFERENCES

SAMPLE_METRICS = ("fd", "kid", "precision", "recall", "density", "coverage")


def split_prefix(metrics: dict) -> str:
    """Where a run's test-split evaluation is: ``test/``, or ``eval/`` in records from before the
    validation split (then the periodic evaluation also scored the test split, as ``eval/``)."""
    return "test/" if any(k.startswith("test/") for k in metrics) or not any(k.startswith("eval/") for k in metrics) else "eval/"


def estimator_error(metrics: dict, p: str, start: str | None) -> float | None:
    """How far an AIS estimate from ``start`` may be off: the larger of its BDMC gap and its move from
    the shorter schedule (``ais<K>_<start>``) to the full one; None when it is no AIS estimate."""
    if start is None or f"{p}ais_{start}" not in metrics:
        return None
    checks = [abs(metrics[f"{p}ais_{start}"] - v) for k, v in metrics.items() if re.fullmatch(rf"{p}ais\d+_{start}", k)]
    found = [v for v in (metrics.get(f"{p}bdmc_gap_{start}"), *checks) if v is not None]
    return max(found) if found else None


def summarise(metrics: dict, p: str | None = None) -> dict[str, float | None]:
    """The report's metrics of one run, from its final metrics (metrics.json): its test-split
    evaluation (``p``, by default ``split_prefix``) and, beside it, its validation log-likelihood."""
    p = p or split_prefix(metrics)
    fd_keys = [f"{p}fid"] + sorted(k for k in metrics if k.startswith(f"{p}fd_"))
    fd_key = next((k for k in fd_keys if k in metrics), None)
    best = lambda pattern: max((v for k, v in metrics.items() if re.fullmatch(p + pattern, k)), default=None)  # noqa: E731
    k_max = max((int(m.group(1)) for k in metrics if (m := re.fullmatch(rf"{p}iwae(\d+)_\w+", k))), default=None)
    estimator = (metrics.get("estimators") or {}).get(f"{p}log_likelihood")
    ais = {s: metrics[f"{p}ais_{s}"] for s in ("prior", "encoder", "chain") if f"{p}ais_{s}" in metrics}
    start = max(ais, key=ais.get) if ais else None  # the best AIS start: its check (runs before 2026-12-01: the prior's)
    headline_start = estimator.removeprefix(f"{p}ais_") if estimator and estimator.startswith(f"{p}ais_") else None
    space = "" if fd_key in (None, f"{p}fid") else fd_key[len(f"{p}fd"):]  # "_<net>": KID and PRDC in the FD's features
    sample_metrics = ("fd", "kid", "precision", "recall", "density", "coverage")
    key = lambda m: f"{m}{space}" if m != "fd" else (fd_key or "").removeprefix(p)  # noqa: E731
    return {
        "log_likelihood": metrics.get(f"{p}log_likelihood"),
        "estimator": estimator.removeprefix(p) if estimator else None,
        "log_likelihood_error": estimator_error(metrics, p, headline_start),
        "val_log_likelihood": metrics.get("val/log_likelihood") if p == "test/" else None,
        "log_likelihood_trained_sigma": metrics.get(f"{p}trained_sigma/log_likelihood"),
        "sigma_fitted": metrics.get(f"{p}sigma_fitted"),
        "sigma_trained": metrics.get(f"{p}sigma_trained"),
        "ais_prior": metrics.get(f"{p}ais_prior"),
        "ais_prior_error": estimator_error(metrics, p, "prior"),
        "ais_encoder": metrics.get(f"{p}ais_encoder"),
        "ais_chain": metrics.get(f"{p}ais_chain"),
        "ais_check": next((c for c in (best(rf"ais\d+_{start}"), best(r"ais\d+_prior")) if c is not None), None),
        "ais_long": metrics.get(f"long/{p}ais_prior"),
        "ais_long_check": max((v for k, v in metrics.items() if re.fullmatch(rf"long/{p}ais\d+_prior", k)), default=None),
        "bdmc_gap_long": metrics.get(f"long/{p}bdmc_gap_prior"),
        "bdmc_gap": metrics.get(f"{p}bdmc_gap"),
        "iwae": best(rf"iwae{k_max}_\w+") if k_max else best(r"elbo_\w+"),
        "elbo": best(r"elbo_\w+"),
        "bpd": metrics.get(f"{p}bpd"),
        **{m: metrics.get(f"{p}{key(m)}") if fd_key else None for m in sample_metrics},
        **{f"{m}_{ref}": metrics.get(f"{p}reference/{ref}/{key(m)}") if fd_key else None
           for ref in REFERENCES for m in sample_metrics},
        "fd_space": None if fd_key is None else ("inception (FID)" if fd_key == f"{p}fid" else f"{fd_key[len(f'{p}fd_'):]} features (offline, not FID)"),
        "recon_mse": metrics.get("val/recon_mse"),
        "accept_rate": metrics.get("val/accept_rate"),
        "diverged_frac": metrics.get("val/diverged_frac"),
        "decoder_evals": metrics.get("cost/decoder_evals"),
        "decoder_evals_total": metrics.get("decoder_evals_total"),
        "step_ms": metrics.get("cost/step_ms"),
        **{f"mse_{mask}": metrics.get(f"complete/{mask}/mse_missing") for mask in ("half", "centre", "random")},
    }
