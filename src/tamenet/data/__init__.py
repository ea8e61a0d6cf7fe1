"""Data for tamenet: built-in and user data sets, train/val/test splits and train-only standardization.

`prepare(cfg)` is the entry point: it loads the data set ``cfg`` names (or takes arrays), splits it
and returns standardized tensors as `SplitData`.
"""

from tamenet.data.datasets import (
    DATASETS,
    FILE_LOADERS,
    Dataset,
    dataset_from_arrays,
    fingerprint,
    list_datasets,
    load_dataset,
)
from tamenet.data.files import FileArrays, read_csv, read_npz
from tamenet.data.scaling import Standardizer
from tamenet.data.splits import SplitData, prepare, split_indices

__all__ = [
    "DATASETS",
    "FILE_LOADERS",
    "Dataset",
    "FileArrays",
    "SplitData",
    "Standardizer",
    "dataset_from_arrays",
    "fingerprint",
    "list_datasets",
    "load_dataset",
    "prepare",
    "read_csv",
    "read_npz",
    "split_indices",
]
