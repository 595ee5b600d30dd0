"""Lightning callbacks."""

from lpc.callbacks.budget import Budget
from lpc.callbacks.images import ImageGrids, write_grids
from lpc.callbacks.periodic_evaluation import PeriodicEvaluation
from lpc.callbacks.progress import (
           StepProgressBar,
           StepTQDMProgressBar,
           step_progress_bar,
)

__all__ = ["Budget", "ImageGrids", "PeriodicEvaluation", "StepProgressBar", "StepTQDMProgressBar", "step_progress_bar",
           "write_grids"]
