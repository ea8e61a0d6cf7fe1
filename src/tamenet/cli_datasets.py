"""`tamenet datasets`: the built-in data sets, and how to bring one's own."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("datasets", help="list the built-in data sets", description="List the built-in data sets.")


def run(args: argparse.Namespace) -> int:
    from .data import list_datasets
    from .track import format_table

    rows = [[d["name"], d["n_samples"], d["n_features"], d["task"], d["n_classes"] or "-", d["description"]]
            for d in list_datasets()]
    print(format_table(["name", "samples", "features", "task", "classes", "description"], rows))
    print("user data: data.name csv (data.path, data.target) or npz (data.path with arrays X, y)")
    return 0
