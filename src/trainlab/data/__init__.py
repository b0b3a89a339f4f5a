"""Datasets: readers for the canonical formats, download + verify, cache, splits, normalisation."""

from __future__ import annotations

from .loader import RawDataset, load_dataset
from .locations import cache_root, resolve_data_dir
from .registry import list_datasets

__all__ = ["RawDataset", "cache_root", "list_datasets", "load_dataset", "resolve_data_dir"]
