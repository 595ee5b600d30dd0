"""Lightning callbacks."""

from lpc.callbacks.images import ImageGrids

__all__ = ["ImageGrids"]
