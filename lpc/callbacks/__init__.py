"""Lightning callbacks."""

from lpc.callbacks.budget import Budget
from lpc.callbacks.evaluation import PeriodicEvaluation
from lpc.callbacks.images import ImageGrids, write_grids

__all__ = ["Budget", "ImageGrids", "PeriodicEvaluation", "write_grids"]
