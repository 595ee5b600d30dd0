"""A report's figures: curves against iterations, decoder evaluations and wall-clock; metrics against
a swept setting; sample and completion grids side by side (matplotlib, written as PNG files)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from lpc.evaluation.names import AXES  # noqa: E402
from lpc.reporting.experiments import Experiment  # noqa: E402
from lpc.reporting.runs import CURVE  # noqa: E402
from lpc.reporting.tables import grouped, line_name, model_rows  # noqa: E402


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


def plot_completions(runs: list[dict], experiment: Experiment, out: Path) -> list[Path]:
    """Each group's first run's completion grid of the first mask, side by side."""
    mask = experiment.completions[0]

    def grid(run: dict) -> Path | None:
        path = out / "runs" / run["job"] / "completion" / "images" / f"complete_{mask}.png"
        return path if path.exists() else None

    return side_by_side(runs, experiment, grid, out / "completions.png", height=4.2,
                        title=f"mask={mask}: masked input, completions, their mean, the truth (top to bottom)")
