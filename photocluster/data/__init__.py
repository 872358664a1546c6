"""Benchmark data sets and the photo library as a data set."""

from photocluster.data.dataset import ImageDataset

__all__ = ["ImageDataset"]
