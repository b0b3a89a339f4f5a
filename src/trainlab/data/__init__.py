"""Datasets: readers for the canonical formats, download + verify, cache, splits, normalisation.

Private modules, re-exported here: ``load_dataset`` (loader), ``prepare_data`` (prepare),
``stratified_split``/``stratified_subset`` (splits), ``dataset_info`` (info),
``fetch_dataset`` (fetch), ``list_datasets`` (registry), folders (locations),
``dataset_shape`` (shapes: a dataset's size without decoding it).
"""

from __future__ import annotations

from .fetch import fetch_dataset
from .info import dataset_info
from .loader import RawDataset, load_dataset
from .locations import cache_root, resolve_data_dir
from .prepare import PreparedData, prepare_data
from .registry import list_datasets
from .shapes import DatasetShape, dataset_shape
from .splits import stratified_split, stratified_subset

__all__ = [
    "DatasetShape",
    "PreparedData",
    "RawDataset",
    "cache_root",
    "dataset_info",
    "dataset_shape",
    "fetch_dataset",
    "list_datasets",
    "load_dataset",
    "prepare_data",
    "resolve_data_dir",
    "stratified_split",
    "stratified_subset",
]
