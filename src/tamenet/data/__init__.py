"""Data for tamenet: built-in and user data sets, train/val/test splits and train-only standardization.

`prepare(cfg)` is the entry point: it loads the data set ``cfg`` names (or takes arrays), splits it
(by shares, by the file's ``data.split`` column, or as the caller's arrays per part say) and returns
standardized tensors as `SplitData`; `assign_rows` gives the raw data set and its rows per part.
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
from tamenet.data.files import SPLIT_VALUES, FileArrays, check_split_labels, read_csv, read_npz
from tamenet.data.parts import join_parts
from tamenet.data.scaling import Standardizer
from tamenet.data.splits import RowSplit, SplitData, assign_rows, prepare, rows_from_marks, split_indices

__all__ = [
    "DATASETS",
    "FILE_LOADERS",
    "Dataset",
    "FileArrays",
    "RowSplit",
    "SPLIT_VALUES",
    "SplitData",
    "Standardizer",
    "assign_rows",
    "check_split_labels",
    "dataset_from_arrays",
    "fingerprint",
    "join_parts",
    "list_datasets",
    "load_dataset",
    "prepare",
    "read_csv",
    "read_npz",
    "rows_from_marks",
    "split_indices",
]
