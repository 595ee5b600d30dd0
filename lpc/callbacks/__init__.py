"""Lightning callbacks."""

from lpc.callbacks.evaluation import PeriodicEvaluation
from lpc.callbacks.images import ImageGrids, write_grids

__all__ = ["ImageGrids", "PeriodicEvaluation", "write_grids"]
