"""A corpus of bad inputs across every command: each ends with exit code 2, one line on stderr that names the
problem, and no traceback. Most run in-process through `tamenet.cli.main`; a few in a real process.

A new command adds its cases to `CASES` (argv, the words its error line must hold)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tamenet.cli import main

SMALL = {
    "data": {"name": "moons", "n_samples": 100},
    "model": {"widths": [8], "dropout": 0.2},
    "train": {"epochs": 2},
    "track": {"tensorboard": False, "plots": False},
    "seed": 0,
}


def _cuda_visible() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _with(section: str, **values) -> dict:
    out = json.loads(json.dumps(SMALL))
    out.setdefault(section, {}).update(values)
    return out


RECIPES: dict[str, object] = {
    "ok.yaml": SMALL,
    "section.yaml": {**SMALL, "trian": {"epochs": 2}},
    "lr-typo.yaml": _with("train", lrr=0.1),
    "lr-text.yaml": _with("train", lr="fast"),
    "lr-negative.yaml": _with("train", lr=-1.0),
    "epochs-zero.yaml": _with("train", epochs=0),
    "epochs-half.yaml": _with("train", epochs=1.5),
    "batch-zero.yaml": _with("train", batch_size=0),
    "batch-text.yaml": _with("train", batch_size="big"),
    "val-big.yaml": _with("data", val=1.5),
    "test-negative.yaml": _with("data", test=-0.1),
    "data-name.yaml": _with("data", name="mnist9"),
    "task.yaml": _with("data", task="ranking"),
    "kind.yaml": _with("model", kind="transformer"),
    "activation.yaml": _with("model", activation="relux"),
    "norm.yaml": _with("model", norm="batchy"),
    "init.yaml": _with("model", init="zeros"),
    "dropout-one.yaml": _with("model", dropout=1.0),
    "dropout-list.yaml": _with("model", dropout=[0.1, 0.2, 0.3, 0.4]),
    "widths-text.yaml": _with("model", widths="wide"),
    "optimizer.yaml": _with("train", optimizer="adamx"),
    "schedule.yaml": _with("train", schedule={"kind": "linear"}),
    "clip.yaml": _with("train", clip={"by": "magic"}),
    "monitor.yaml": _with("train", early_stopping={"monitor": "val_f1"}),
    "patience.yaml": _with("train", early_stopping={"patience": 0}),
    "tensorboard.yaml": _with("track", tensorboard="yes"),
    "members.yaml": {**_with("penalty", l2=[0.0, 0.1]), "seed": [0, 1, 2]},
    "l2-negative.yaml": _with("penalty", l2=-0.5),
    "csv-no-target.yaml": {**SMALL, "data": {"name": "csv", "path": "table.csv", "target": "label"}},
    "npz-1d.yaml": {**SMALL, "data": {"name": "npz", "path": "x1d.npz"}},
    "npz-no-y.yaml": {**SMALL, "data": {"name": "npz", "path": "xonly.npz"}},
    "npz-missing.yaml": {**SMALL, "data": {"name": "npz", "path": "nothing.npz"}},
    "no-val-ensemble.yaml": _with("data", val=0.0),
}
TEXT_FILES = {
    "broken.yaml": "train: {epochs: 2\n",
    "duplicate.yaml": "train: {epochs: 2}\nmodel: {widths: [8]}\ntrain: {epochs: 3}\n",
    "list.yaml": "- train\n- model\n",
    "table.csv": "a,b,y\n1,2,0\n3,4,1\n" * 10,
    "rows.csv": "x0,x1\n0.5,0.25\n-1,2\n",
    "empty.csv": "",
    "header-only.csv": "x0,x1\n",
    "wrong-columns.csv": "x0,x9\n1,2\n",
    "short-row.csv": "x0,x1\n1,2\n3\n",
    "not-a-number.csv": "x0,x1\n1,abc\n",
    "duplicate-column.csv": "x0,x0,x1\n1,2,3\n",
    "three-numbers.csv": "1,2,3\n",
    "a-file": "not a folder\n",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A folder with recipes, CSV and NPZ files and run directories (trained once) for the cases below."""
    import torch

    from tamenet.api import fit

    root = tmp_path_factory.mktemp("bad")
    for name, recipe in RECIPES.items():
        (root / name).write_text(yaml.safe_dump(recipe))
    for name, text in TEXT_FILES.items():
        (root / name).write_text(text)
    np.savez(root / "x1d.npz", X=np.arange(40.0), y=np.arange(40) % 2)
    np.savez(root / "xonly.npz", X=np.zeros((40, 2)))
    (root / "a-folder").mkdir()
    (root / "full").mkdir()
    (root / "full" / "something.txt").write_text("x")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fit(SMALL, out=root / "run")
        fit(_with("model", dropout=0.0), out=root / "nodrop")
    finally:
        torch.set_num_threads(threads)
    shutil.copytree(root / "run", root / "no-runjson")
    (root / "no-runjson" / "run.json").unlink()
    shutil.copytree(root / "run", root / "no-fingerprint")
    (root / "no-fingerprint" / "run.json").write_text("{}")
    shutil.copytree(root / "run", root / "empty-model")
    (root / "empty-model" / "model.pt").write_bytes(b"")
    shutil.copytree(root / "run", root / "no-model")
    (root / "no-model" / "model.pt").unlink()
    shutil.copytree(root / "run", root / "finished-no-last")
    (root / "finished-no-last" / "last.pt").unlink()
    shutil.copytree(root / "run", root / "running-no-last")
    (root / "running-no-last" / "last.pt").unlink()
    (root / "running-no-last" / "status.json").write_text(json.dumps({"state": "running", "pid": 2 ** 22 + 7}))
    shutil.copytree(root / "run", root / "locked")  # written by a live process of this host: pid 1
    (root / "locked" / ".lock").write_text(json.dumps({"pid": 1, "host": os.uname().nodename,
                                                       "started": "2999-01-01T00:00:00+00:00"}))
    return root


R = "ok.yaml"
CASES: list[tuple[str, list[str], list[str]]] = [
    # the command line itself
    ("no-command", [], ["required", "COMMAND"]),
    ("unknown-command", ["trian"], ["invalid choice", "'trian'", "train"]),
    ("unknown-global-option", ["--bogus", "train"], ["unrecognized arguments", "--bogus"]),
    ("unknown-train-option", ["train", R, "--bogus"], ["unrecognized arguments", "--bogus"]),
    ("cv-option-on-train", ["train", R, "--stop-share", "0.5"], ["unrecognized arguments", "--stop-share"]),
    # train: the recipe file
    ("recipe-missing", ["train", "missing.yaml"], ["recipe file not found", "missing.yaml"]),
    ("recipe-folder", ["train", "a-folder"], ["expected a YAML recipe file", "folder", "a-folder"]),
    ("recipe-not-yaml", ["train", "broken.yaml"], ["broken.yaml", "not valid YAML"]),
    ("recipe-duplicate-key", ["train", "duplicate.yaml"], ["'train'", "written twice", "line 3", "line 1"]),
    ("recipe-a-list", ["train", "list.yaml"], ["expected a mapping", "list"]),
    ("recipe-unknown-section", ["train", "section.yaml"], ["unknown recipe key 'trian'", "did you mean 'train'"]),
    ("recipe-unknown-key", ["train", "lr-typo.yaml"], ["train.lrr", "did you mean 'lr'"]),
    ("lr-text", ["train", "lr-text.yaml"], ["train.lr", "expected a number", "fast"]),
    ("lr-negative", ["train", "lr-negative.yaml"], ["train.lr", "> 0", "-1.0"]),
    ("epochs-zero", ["train", "epochs-zero.yaml"], ["train.epochs", ">= 1", "0"]),
    ("epochs-fraction", ["train", "epochs-half.yaml"], ["train.epochs", "expected an integer", "1.5"]),
    ("batch-zero", ["train", "batch-zero.yaml"], ["train.batch_size", "positive integer", "0"]),
    ("batch-text", ["train", "batch-text.yaml"], ["train.batch_size", "'full'", "big"]),
    ("val-share", ["train", "val-big.yaml"], ["data.val", "<= 1.0", "1.5"]),
    ("test-share", ["train", "test-negative.yaml"], ["data.test", ">= 0.0", "-0.1"]),
    ("data-name", ["train", "data-name.yaml"], ["mnist9", "digits"]),
    ("task", ["train", "task.yaml"], ["data.task", "ranking", "classification"]),
    ("model-kind", ["train", "kind.yaml"], ["model.kind", "transformer", "mlp"]),
    ("activation", ["train", "activation.yaml"], ["model.activation", "relux", "did you mean 'relu'"]),
    ("norm", ["train", "norm.yaml"], ["model.norm", "batchy", "batch"]),
    ("init", ["train", "init.yaml"], ["model.init", "zeros"]),
    ("dropout-one", ["train", "dropout-one.yaml"], ["model.dropout", "[0, 1)", "1.0"]),
    ("dropout-list", ["train", "dropout-list.yaml"], ["model.dropout", "a list of 2", "got a list of 4", "--set"]),
    ("widths-text", ["train", "widths-text.yaml"], ["model.widths", "expected a list", "wide"]),
    ("optimizer", ["train", "optimizer.yaml"], ["train.optimizer", "adamx", "did you mean 'adam'"]),
    ("schedule", ["train", "schedule.yaml"], ["train.schedule.kind", "linear", "cosine"]),
    ("clip", ["train", "clip.yaml"], ["train.clip.by", "magic", "norm"]),
    ("monitor", ["train", "monitor.yaml"], ["train.early_stopping.monitor", "val_f1", "val_loss"]),
    ("patience", ["train", "patience.yaml"], ["train.early_stopping.patience", ">= 1"]),
    ("tensorboard", ["train", "tensorboard.yaml"], ["track.tensorboard", "true or false", "yes"]),
    ("member-lists", ["train", "members.yaml"], ["same length", "penalty.l2 has 2", "seed has 3"]),
    ("l2-negative", ["train", "l2-negative.yaml"], ["penalty.l2", ">= 0.0", "-0.5"]),
    ("csv-target", ["train", "csv-no-target.yaml"], ["label", "a, b, y"]),
    ("npz-1d", ["train", "npz-1d.yaml"], ["x1d.npz", "expected X of shape [N, F]", "[40]", "reshape"]),
    ("npz-no-y", ["train", "npz-no-y.yaml"], ["xonly.npz", "'X' and 'y'", "found: X"]),
    ("npz-missing", ["train", "npz-missing.yaml"], ["nothing.npz"]),
    # train: --set
    ("set-no-equals", ["train", R, "--set", "train.lr"], ["--set", "KEY=VALUE", "train.lr"]),
    ("set-no-key", ["train", R, "--set", "=3"], ["--set", "KEY=VALUE"]),
    ("set-unknown-key", ["train", R, "--set", "train.momentun=0.9"], ["train.momentun", "did you mean 'momentum'"]),
    ("set-not-a-section", ["train", R, "--set", "data.name.x=1"], ["'name' is not a section"]),
    ("set-bad-value", ["train", R, "--set", "train.lr=[1"], ["train.lr", "expected a number"]),
    ("set-default-dropout", ["train", "--set", "model.dropout=[0.2,0.5]"], ["model.dropout", "a list of 3", "--set"]),
    ("set-duplicate-yaml", ["train", R, "--set", "model={widths: [8], widths: [4]}"], ["--set model", "written twice"]),
    ("set-bool", ["train", R, "--set", "data.standardize=maybe"], ["data.standardize", "true or false"]),
    # train: options
    ("ensemble-zero", ["train", R, "--ensemble", "0"], ["ensemble", "positive integer number of members", "0"]),
    ("ensemble-text", ["train", R, "--ensemble", "many"], ["--ensemble", "'many'"]),
    ("ensemble-no-val", ["train", "no-val-ensemble.yaml", "--ensemble", "2"], ["ensemble", "validation rows"]),
    ("device", ["train", R, "--device", "tpu"], ["--device", "invalid choice", "'tpu'"]),
    ("out-is-a-file", ["train", R, "--out", "a-file"], ["--out a-file", "existing file"]),
    ("out-under-a-file", ["train", R, "--out", "a-file/run"], ["--out a-file/run", "a-file is a file"]),
    ("out-not-empty", ["train", R, "--out", "full"], ["--out full", "not empty", "--resume"]),
    ("resume-missing", ["train", "--resume", "nowhere"], ["--resume nowhere", "expected a run folder"]),
    ("resume-a-file", ["train", "--resume", "a-file"], ["--resume a-file", "a file"]),
    ("resume-no-checkpoint", ["train", "--resume", "running-no-last"], ["cannot resume", "last.pt"]),
    ("resume-finished", ["train", "--resume", "finished-no-last"], ["cannot resume", "finished", "--keep-last"]),
    ("resume-locked", ["train", "--resume", "locked"], ["--resume locked", "still being written", "process 1"]),
    ("resume-with-recipe", ["train", R, "--resume", "run"], ["--resume", "only --set", "a recipe"]),
    ("resume-with-out", ["train", "--resume", "run", "--out", "x"], ["--resume", "--out"]),
    ("resume-bad-set", ["train", "--resume", "run", "--set", "train.epochz=5"], ["train.epochz", "did you mean"]),
    # cv
    ("cv-stop-share-high", ["cv", R, "--stop-share", "1.5"], ["--stop-share", "[0, 1)", "1.5"]),
    ("cv-stop-share-one", ["cv", R, "--stop-share", "1"], ["--stop-share", "[0, 1)"]),
    ("cv-stop-share-negative", ["cv", R, "--stop-share", "-0.5"], ["--stop-share", "[0, 1)", "-0.5"]),
    ("cv-stop-share-text", ["cv", R, "--stop-share", "half"], ["--stop-share", "'half'"]),
    ("cv-folds-zero", ["cv", R, "--folds", "0"], ["--folds", "at least 1"]),
    ("cv-folds-text", ["cv", R, "--folds", "ten"], ["--folds", "'ten'"]),
    ("cv-scheme", ["cv", R, "--scheme", "kfolds"], ["--scheme", "invalid choice", "kfold"]),
    ("cv-p-zero", ["cv", R, "--scheme", "lpo", "--p", "0"], ["--p", "at least 1"]),
    ("cv-max-splits", ["cv", R, "--max-splits", "0"], ["--max-splits", "at least 1"]),
    ("cv-halving-one", ["cv", R, "--halving", "1"], ["--halving", "at least 2"]),
    ("cv-max-memory", ["cv", R, "--max-memory", "2XB", "--out", "cvx"], ["--max-memory", "2XB"]),
    ("cv-recipe-missing", ["cv", "missing.yaml"], ["recipe file not found"]),
    ("cv-recipe-key", ["cv", R, "--set", "penalty.l3=1"], ["penalty.l3", "did you mean"]),
    ("cv-loo-too-many", ["cv", R, "--scheme", "loo", "--max-splits", "10", "--out", "cvy"], ["repeated"]),
    ("cv-out-file", ["cv", R, "--out", "a-file"], ["--out a-file", "existing file"]),
    ("cv-device", ["cv", R, "--device", "gpu"], ["--device", "'gpu'"]),
    # search
    ("search-no-how", ["search", R], ["one of the arguments", "--grid", "--trials"]),
    ("search-grid-and-trials", ["search", R, "--grid", "penalty.l2=0,1", "--trials", "3"], ["not allowed with"]),
    ("search-grid-no-equals", ["search", R, "--grid", "penalty.l2", "--out", "s1"], ["--grid", "penalty.l2"]),
    ("search-grid-unknown-key", ["search", R, "--grid", "penalty.l3=0,1", "--out", "s2"], ["penalty.l3"]),
    ("search-grid-not-numbers", ["search", R, "--grid", "penalty.l2=a,b", "--out", "s3"], ["penalty.l2"]),
    ("search-trials-zero", ["search", R, "--trials", "0"], ["--trials", "at least 1"]),
    ("search-trials-no-space", ["search", R, "--trials", "3", "--out", "s4"], ["--space"]),
    ("search-space-order", ["search", R, "--trials", "3", "--space", "train.lr=1:0.1", "--out", "s5"],
     ["--space train.lr", "LOW < HIGH"]),
    ("search-nested-one", ["search", R, "--grid", "penalty.l2=0,1", "--nested", "1"], ["--nested", "at least 2"]),
    ("search-batch-zero", ["search", R, "--trials", "3", "--batch", "0"], ["--batch", "at least 1"]),
    ("search-sampler", ["search", R, "--trials", "3", "--sampler", "grid"], ["--sampler", "invalid choice"]),
    ("search-pruner", ["search", R, "--trials", "3", "--pruner", "hyperband"], ["--pruner", "invalid choice"]),
    ("search-halving-trials", ["search", R, "--trials", "3", "--space", "train.lr=1e-3:1", "--halving", "--out", "s6"],
     ["--halving", "--pruner"]),
    ("search-stop-share", ["search", R, "--grid", "penalty.l2=0,1", "--stop-share", "2"], ["--stop-share", "[0, 1)"]),
    ("search-recipe-folder", ["search", "a-folder", "--grid", "penalty.l2=0,1"], ["folder", "a-folder"]),
    # evaluate
    ("evaluate-no-run", ["evaluate"], ["required", "RUN_DIR"]),
    ("evaluate-missing", ["evaluate", "nowhere"], ["nowhere", "expected a run directory"]),
    ("evaluate-a-file", ["evaluate", "a-file"], ["a-file", "expected a run directory", "a file"]),
    ("evaluate-no-model", ["evaluate", "no-model"], ["no trained model", "model.pt"]),
    ("evaluate-empty-model", ["evaluate", "empty-model"], ["model.pt", "empty"]),
    ("evaluate-no-runjson", ["evaluate", "no-runjson"], ["cannot check", "run.json", "missing"]),
    ("evaluate-no-fingerprint", ["evaluate", "no-fingerprint"], ["cannot check", "data_fingerprint"]),
    ("evaluate-extra", ["evaluate", "run", "more"], ["unrecognized arguments", "more"]),
    # predict
    ("predict-no-input", ["predict", "run"], ["required", "--input"]),
    ("predict-input-missing", ["predict", "run", "--input", "none.csv"], ["none.csv", "not found"]),
    ("predict-input-folder", ["predict", "run", "--input", "a-folder"], ["a-folder", "folder"]),
    ("predict-empty", ["predict", "run", "--input", "empty.csv"], ["empty.csv", "empty file"]),
    ("predict-header-only", ["predict", "run", "--input", "header-only.csv"], ["expected data rows"]),
    ("predict-wrong-columns", ["predict", "run", "--input", "wrong-columns.csv"], ["missing x1", "unexpected x9"]),
    ("predict-short-row", ["predict", "run", "--input", "short-row.csv"], ["line 3", "expected 2 fields", "got 1"]),
    ("predict-not-a-number", ["predict", "run", "--input", "not-a-number.csv"], ["line 2", "column 'x1'", "'abc'"]),
    ("predict-duplicate-column", ["predict", "run", "--input", "duplicate-column.csv"], ["more than once", "x0"]),
    ("predict-headerless-count", ["predict", "run", "--input", "three-numbers.csv"], ["expected 2 values per row", "3"]),
    ("predict-member-negative", ["predict", "run", "--input", "rows.csv", "--member", "-1"], ["--member", "at least 0"]),
    ("predict-member-range", ["predict", "run", "--input", "rows.csv", "--member", "5"], ["member", "5"]),
    ("predict-mc-zero", ["predict", "run", "--input", "rows.csv", "--mc", "0"], ["--mc", "dropout masks T >= 1", "got 0"]),
    ("predict-mc-no-dropout", ["predict", "nodrop", "--input", "rows.csv", "--mc", "3"],
     ["Monte-Carlo dropout", "trained without dropout"]),
    ("predict-output-folder", ["predict", "run", "--input", "rows.csv", "--output", "a-folder"], ["--output", "folder"]),
    ("predict-output-no-folder", ["predict", "run", "--input", "rows.csv", "--output", "no/such/p.csv"],
     ["--output", "does not exist"]),
    ("predict-run-missing", ["predict", "nowhere", "--input", "rows.csv"], ["nowhere", "expected a run directory"]),
    ("predict-no-model", ["predict", "no-model", "--input", "rows.csv"], ["no trained model"]),
    # runs and datasets
    ("runs-missing", ["runs", "nowhere"], ["nowhere", "expected a folder of runs"]),
    ("runs-a-file", ["runs", "a-file"], ["a-file", "a file"]),
    ("runs-option", ["runs", "--all"], ["unrecognized arguments", "--all"]),
    ("datasets-extra", ["datasets", "digits"], ["unrecognized arguments", "digits"]),
    # report
    ("report-missing", ["report", "nowhere"], ["expected a run, cv or search directory", "nowhere"]),
    ("report-a-file", ["report", "a-file"], ["a-file", "not a directory"]),
    ("report-not-a-job", ["report", "a-folder"], ["summary.json", "cv.json", "search.json"]),
    # preview
    ("preview-no-out", ["preview"], ["--out", "required"]),
    ("preview-out-folder", ["preview", "--out", "a-folder"], ["--out", "a folder"]),
    ("preview-out-no-folder", ["preview", "--out", "no/such/grid.png"], ["--out", "no folder no/such"]),
    ("preview-rotate-range", ["preview", "--set", "augment.image.rotate=500", "--out", "g.png"],
     ["augment.image.rotate", "<= 180.0", "500"]),
    ("preview-unknown-op", ["preview", "--set", "augment.image.spin=5", "--out", "g.png"],
     ["unknown recipe key 'augment.image.spin'", "rotate"]),
    ("preview-colour-on-grey", ["preview", "--set", "augment.image.hue=0.2", "--out", "g.png"],
     ["augment.image.hue", "3-channel", "1 channel"]),
    # export and serve
    ("export-missing", ["export", "nowhere", "--format", "onnx"], ["no trained model", "nowhere"]),
    ("export-format", ["export", "run", "--format", "tflite"], ["--format", "tflite", "pt", "onnx"]),
    ("export-member", ["export", "run", "--format", "pt", "--member", "3"], ["--member", "[0, 0]", "3"]),
    ("export-out-folder", ["export", "run", "--format", "onnx", "--out", "a-folder"], ["--out", "directory a-folder"]),
    ("serve-missing", ["serve", "nowhere"], ["no trained model", "nowhere"]),
    ("serve-not-a-run", ["serve", "a-folder"], ["no trained model", "a-folder"]),
    ("serve-port", ["serve", "run", "--port", "99999"], ["--port", "[1, 65535]", "99999"]),
    ("serve-workers", ["serve", "run", "--workers", "0"], ["--workers", "at least 1", "0"]),
    # compression, transfer and augmentation sections
    ("prune-sparsity-one", ["train", R, "--set", "prune.sparsity=1.0"], ["prune.sparsity", "[0, 1)", "1.0"]),
    ("prune-method", ["train", R, "--set", "prune.method=lottery"], ["prune.method", "lottery", "magnitude"]),
    ("quantize-one-bit", ["train", R, "--set", "quantize.bits=1"], ["quantize.bits", "[2, 16]"]),
    ("quantize-17-bits", ["train", R, "--set", "quantize.bits=17"], ["quantize.bits", "<= 16", "17"]),
    ("distill-teacher-missing", ["train", R, "--set", "distill.teacher=nowhere"], ["distill.teacher", "nowhere"]),
    ("distill-temperature", ["train", R, "--set", "distill.teacher=run", "--set", "distill.temperature=0"],
     ["distill.temperature", "> 0.0"]),
    ("distill-in-cv", ["cv", R, "--set", "distill.teacher=run"], ["distill.teacher", "cross-validation"]),
    ("init-from-missing", ["train", R, "--set", "train.init_from=nowhere"], ["train.init_from", "nowhere"]),
    ("freeze-without-source", ["train", R, "--set", "train.freeze=2"], ["train.freeze", "train.init_from"]),
    ("freeze-too-many", ["train", R, "--set", "train.init_from=run", "--set", "train.freeze=2"],
     ["train.freeze", "2 weight layers", "at most 1"]),
    ("augment-rotate-range", ["train", R, "--set", "augment.image.rotate=200"], ["augment.image.rotate", "200"]),
    ("augment-mix-kind", ["train", R, "--set", "augment.mix.kind=blend"], ["augment.mix.kind", "blend", "mixup"]),
    ("augment-image-on-rows", ["train", R, "--set", "augment.image.rotate=10"], ["augment.image", "no image shape"]),
    ("augment-text-in-train", ["train", R, "--set", "augment.text.word_delete=0.5"],
     ["augment.text", "text operations need text data", "moons"]),
    ("audio-folder-missing", ["train", "--set", "data.name=audio", "--set", "data.path=nowhere"],
     ["data.path", "WAV", "nowhere"]),
    ("text-file-kind", ["train", "--set", "data.name=text", "--set", "data.path=a-file"], ["data.path", ".tsv"]),
    # data-parallel training (train --nproc, under torchrun): checked before torch loads or any process starts
    ("nproc-more-than-cores", ["train", R, "--nproc", "99"], ["--nproc 99", "one process per CPU core", "expected"]),
    ("nproc-zero", ["train", R, "--nproc", "0"], ["--nproc", "whole number of processes >= 1", "0"]),
    ("dist-timeout-zero", ["train", R, "--dist-timeout", "0"], ["--dist-timeout", "> 0", "got 0"]),
    # post-training quantization (tamenet quantize) and quantized activations
    ("quantize-run-one-bit", ["quantize", "run", "--bits", "1"], ["--bits", "[2, 16]", "1"]),
    ("quantize-run-17-bits", ["quantize", "run", "--bits", "17"], ["--bits", "[2, 16]", "17"]),
    ("quantize-run-bits-word", ["quantize", "run", "--bits", "eight"], ["--bits", "whole bit width", "eight"]),
    ("quantize-missing", ["quantize", "nowhere"], ["nowhere", "expected a run directory"]),
    ("quantize-not-a-run", ["quantize", "a-folder"], ["no trained model", "a-folder"]),
    ("quantize-out-exists", ["quantize", "run", "--out", "full"], ["--out full", "already exists"]),
    ("quantize-out-inside", ["quantize", "run", "--out", "run/q8"], ["--out run/q8", "inside the source run"]),
    ("quantize-observer", ["quantize", "run", "--activations", "--observer", "ema"], ["--observer", "ema", "minmax"]),
    ("quantize-deploy-format", ["quantize", "run", "--format", "int4"], ["--format", "int4", "int8", "bf16"]),
    ("quantize-deploy-member", ["quantize", "run", "--format", "fp16", "--member", "3"], ["--member", "[0, 0]", "3"]),
    ("quantize-observer-key", ["train", R, "--set", "quantize.observer=ema"], ["quantize.observer", "ema", "minmax"]),
    ("quantize-activations-key", ["train", R, "--set", "quantize.activations=maybe"],
     ["quantize.activations", "maybe"]),
    # tamenet prune (iterative magnitude pruning, the lottery ticket) and tamenet distill (issue 11)
    ("prune-no-rounds", ["prune", R], ["--rounds", "required"]),
    ("prune-rounds-zero", ["prune", R, "--rounds", "0"], ["--rounds", "at least 1", "0"]),
    ("prune-rate-one", ["prune", R, "--rounds", "2", "--rate", "1"], ["--rate", "(0, 1)", "1"]),
    ("prune-rewind-mode", ["prune", R, "--rounds", "2", "--rewind", "init,rewnd"], ["rewind mode", "rewnd", "reinit"]),
    ("prune-epoch-rewind-late", ["prune", R, "--rounds", "2", "--epoch-rewind", "5"], ["epoch_rewind", "[0, 1]", "5"]),
    ("prune-epoch-rewind-no-init", ["prune", R, "--rounds", "1", "--rewind", "keep", "--epoch-rewind", "1"],
     ["epoch_rewind", "'init'", "keep"]),
    ("prune-epoch-rewind-run", ["prune", "run", "--rounds", "1", "--epoch-rewind", "1"],
     ["epoch_rewind", "round 0 trains here", "run directory"]),
    ("prune-recipe-prunes", ["prune", R, "--rounds", "1", "--set", "prune.sparsity=0.5"], ["prune.sparsity", "0", "0.5"]),
    ("prune-not-a-run", ["prune", "a-folder", "--rounds", "1"], ["a-folder", "run directory", "model.pt"]),
    ("prune-out-full", ["prune", R, "--rounds", "1", "--out", "full"], ["--out", "not empty"]),
    ("distill-no-teacher", ["distill", R], ["--teacher", "required"]),
    ("distill-teacher-nowhere", ["distill", "--teacher", "nowhere", R], ["--teacher", "nowhere", "run directory"]),
    ("distill-teacher-not-a-run", ["distill", "--teacher", "a-folder", R], ["--teacher", "a-folder", "model.pt"]),
    ("distill-teacher-features", ["distill", "--teacher", "run", R, "--set", "data.name=wine", "--set", "data.n_samples=null"],
     ["teacher takes 2 features", "13"]),
    ("distill-teacher-other-data", ["distill", "--teacher", "run", R, "--set", "data.name=spirals"],
     ["trained on other data"]),
    ("distill-temperature-zero", ["distill", "--teacher", "run", R, "--temperature", "0"], ["distill.temperature", "> 0.0"]),
    ("distill-alpha-big", ["distill", "--teacher", "run", R, "--alpha", "0,1.5"], ["distill.alpha", "1.5"]),
    # devices and precision (issue 13, I1): cuda without a GPU (only where none is visible), fp16 on the CPU unforced
    *([("cuda-no-gpu-train", ["train", R, "--device", "cuda"], ["train.device", "'cuda' needs a GPU", "'cpu'"]),
       ("cuda-no-gpu-cv", ["cv", R, "--set", "train.device=cuda"], ["train.device", "'cuda' needs a GPU"]),
       ("cuda-no-gpu-search", ["search", R, "--grid", "penalty.l2=0,1", "--device", "cuda"],
        ["train.device", "'cuda' needs a GPU"])] if not _cuda_visible() else []),
    ("fp16-on-the-cpu", ["train", R, "--device", "cpu", "--set", "train.precision=fp16"],
     ["train.precision", "fp16 on the CPU", "slower than fp32", "force_precision"]),
    ("fp16-on-the-cpu-cv", ["cv", R, "--device", "cpu", "--set", "train.precision=fp16"], ["fp16 on the CPU"]),
    ("fp16-on-the-cpu-search", ["search", R, "--grid", "penalty.l2=0,1", "--device", "cpu", "--set",
                                "train.precision=fp16"], ["fp16 on the CPU", "force_precision"]),
    ("precision-unknown", ["train", R, "--set", "train.precision=fp8"], ["train.precision", "'fp8'", "bf16"]),
    ("force-precision-text", ["train", R, "--set", "train.force_precision=maybe"], ["train.force_precision", "true or false"]),
    # structured pruning (tamenet shrink) and network slimming (penalty.bn_l1)
    ("shrink-share-one", ["shrink", "run", "--share", "1.0"], ["--share", "[0, 1)", "got 1"]),
    ("shrink-share-negative", ["shrink", "run", "--share=-0.1"], ["--share", "[0, 1)", "-0.1"]),
    ("shrink-share-text", ["shrink", "run", "--share", "half"], ["--share", "[0, 1)", "half"]),
    ("shrink-unit", ["shrink", "run", "--share", "0.5", "--unit", "layers"], ["--unit", "layers", "neurons"]),
    ("shrink-importance", ["shrink", "run", "--share", "0.5", "--importance", "taylor"],
     ["--importance", "taylor", "bn_gamma"]),
    ("shrink-missing", ["shrink", "nowhere", "--share", "0.5"], ["nowhere", "run directory"]),
    ("shrink-not-a-run", ["shrink", "a-folder", "--share", "0.5"], ["a-folder", "model.pt"]),
    ("shrink-member", ["shrink", "run", "--share", "0.5", "--member", "3"], ["--member", "[0, 0]", "3"]),
    ("shrink-channels-of-an-mlp", ["shrink", "run", "--share", "0.5", "--unit", "channels"],
     ["unit 'channels'", "convolutions", "none"]),
    ("shrink-bn-gamma-without-batchnorm", ["shrink", "run", "--share", "0.5", "--importance", "bn_gamma"],
     ["bn_gamma", "BatchNorm", "l1 or l2"]),
    ("shrink-out-folder", ["shrink", "run", "--share", "0.5", "--out", "a-folder"], ["--out", "directory a-folder"]),
    ("shrink-population-units", ["shrink", "run", "--share", "0.5", "--population", "--unit", "channels"],
     ["--population", "neurons"]),
    ("shrink-population-bn-gamma", ["shrink", "run", "--share", "0.5", "--population", "--importance", "bn_gamma"],
     ["bn_gamma", "BatchNorm", "l1 or l2"]),
    ("bn-l1-negative", ["train", R, "--set", "penalty.bn_l1=-0.1"], ["penalty.bn_l1", "-0.1"]),
    ("bn-l1-without-batchnorm", ["train", R, "--set", "penalty.bn_l1=0.01"], ["penalty.bn_l1", "model.norm: batch"]),
    # searches over processes and machines (select/ranks.py, --nproc, --storage)
    ("cv-nproc-cores", ["cv", R, "--nproc", "4096"], ["--nproc 4096", "core(s)", "expected --nproc 1 to"]),
    ("side-by-side-cores", ["search", R, "--grid", "penalty.l2=0,1", "--side-by-side", "4096"],
     ["--side-by-side 4096", "one thread per CPU core", "expected --side-by-side 1 to"]),
    ("side-by-side-zero", ["cv", R, "--side-by-side", "0"], ["--side-by-side", "at least 1", "0"]),
    ("cv-nproc-zero", ["cv", R, "--nproc", "0"], ["--nproc", "at least 1"]),
    ("cv-join-timeout", ["cv", R, "--join-timeout", "0"], ["--join-timeout", "positive number of seconds", "'0'"]),
    ("cv-halving-nproc", ["cv", R, "--halving", "3", "--nproc", "2"], ["--halving with --nproc", "chunk"]),
    ("search-storage-url", ["search", R, "--trials", "2", "--space", "train.lr=0.01:0.1", "--storage", "study.db"],
     ["--storage", "database URL", "sqlite:///study.db", "'study.db'"]),
    ("search-storage-folder", ["search", R, "--trials", "2", "--space", "train.lr=0.01:0.1", "--storage",
                               "sqlite:///nowhere/study.db"], ["--storage", "folder 'nowhere'", "does not exist"]),
    ("search-storage-memory", ["search", R, "--trials", "2", "--space", "train.lr=0.01:0.1", "--storage",
                               "sqlite:///:memory:"], ["--storage", "sqlite:///FILE"]),
    ("search-storage-grid", ["search", R, "--grid", "train.lr=0.01,0.1", "--storage", "sqlite:///s.db"],
     ["--storage", "--trials", "--nproc"]),
    ("search-study-name-alone", ["search", R, "--trials", "2", "--space", "train.lr=0.01:0.1", "--study-name", "s"],
     ["--study-name", "expected --storage"]),
    ("search-storage-nested", ["search", R, "--trials", "2", "--space", "train.lr=0.01:0.1", "--nested", "2",
                               "--storage", "sqlite:///s.db"], ["--nested", "--storage"]),
    ("search-trials-nproc", ["search", R, "--trials", "2", "--space", "train.lr=0.01:0.1", "--nproc", "2"],
     ["--trials with --nproc", "--storage"]),
    ("search-storage-driver", ["search", R, "--trials", "2", "--space", "train.lr=0.01:0.1", "--storage",
                               "mysql://me:secret@localhost/db"], ["--storage mysql://me:***@localhost/db",
                                                                   "could not open", "ImportError"]),
    ("search-storage-journal-folder", ["search", R, "--trials", "2", "--space", "train.lr=0.01:0.1", "--storage",
                                       "journal:///nowhere/study.log"], ["--storage", "folder 'nowhere'"]),
    ("search-storage-journal-form", ["search", R, "--trials", "2", "--space", "train.lr=0.01:0.1", "--storage",
                                     "journal://study.log"], ["a shared journal study is a file", "journal:///FILE"]),
    ("search-heartbeat-alone", ["search", R, "--trials", "2", "--space", "train.lr=0.01:0.1", "--heartbeat", "5"],
     ["--heartbeat", "expected --storage too"]),
    ("search-heartbeat-journal", ["search", R, "--trials", "2", "--space", "train.lr=0.01:0.1", "--heartbeat", "5",
                                  "--storage", "journal:///s.log"], ["--heartbeat", "database storage", "journal://",
                                                                     "--heartbeat 0"]),
    ("search-heartbeat-negative", ["search", R, "--trials", "2", "--space", "train.lr=0.01:0.1", "--heartbeat", "-1",
                                   "--storage", "sqlite:///s.db"], ["--heartbeat", "whole seconds, 0 for none"]),
    ("study-server-journal", ["study-server", "--storage", "journal:///study.log"],
     ["not another study server or a journal file"]),
    ("study-server-url", ["study-server", "--storage", "study.db"], ["--storage", "database URL", "'study.db'"]),
    ("study-server-port", ["study-server", "--storage", "sqlite:///s.db", "--port", "0"],
     ["--port", "a port in [1, 65535]", "got 0"]),
    # text and audio augmentation through train / cv / search, and CSV group columns (issue 10)
    ("augment-text-on-images", ["train", "--set", "data.name=digits", "--set", "augment.text.synonym=0.2"],
     ["augment.text", "text data", "'digits'"]),
    ("augment-audio-in-train", ["train", R, "--set", "augment.audio.pitch=2"],
     ["augment.audio", "audio operations need audio data", "moons"]),
    ("augment-audio-in-search", ["search", R, "--grid", "augment.audio.pitch=0,1"],
     ["augment.audio", "audio data", "moons"]),
    ("augment-text-in-cv", ["cv", R, "--set", "augment.text.word_delete=0.1"], ["augment.text", "text data"]),
    ("augment-audio-pitch-range", ["train", "--set", "data.name=audio", "--set", "data.path=nowhere", "--set",
                                   "augment.audio.pitch=13"], ["augment.audio.pitch", "<= 12.0", "13"]),
    ("csv-groups-missing", ["train", "--set", "data.name=csv", "--set", "data.path=table.csv", "--set",
                            "data.target=y", "--set", "data.groups=patient"],
     ["data.groups 'patient'", "columns are: a, b, y"]),
    ("csv-groups-is-target", ["cv", "--set", "data.name=csv", "--set", "data.path=table.csv", "--set",
                              "data.target=y", "--set", "data.groups=y"], ["data.groups 'y'", "target"]),
]


def _check_line(code: int, out: str, err: str, argv: list[str], needles: list[str]) -> str:
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    assert len(lines) == 1, err
    own = f"tamenet {argv[0]}: error: " if argv else "tamenet: error: "
    assert lines[0].startswith(own) or lines[0].startswith("tamenet: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_the_corpus_is_large_and_covers_every_command():
    from tamenet.cli import COMMANDS

    assert len(CASES) >= 100
    assert len({name for name, _, _ in CASES}) == len(CASES)
    covered = {argv[0] for _, argv, _ in CASES if argv and not argv[0].startswith("-")}
    assert set(COMMANDS) <= covered, set(COMMANDS) - covered


@pytest.mark.parametrize("name, argv, needles", CASES, ids=[c[0] for c in CASES])
def test_a_bad_input_ends_in_one_line_and_exit_code_2(world, monkeypatch, capsys, name, argv, needles):
    monkeypatch.chdir(world)
    before = sorted(p.name for p in world.iterdir())
    code = main(argv)
    out, err = capsys.readouterr()
    _check_line(code, out, err, argv, needles)
    assert sorted(p.name for p in world.iterdir()) == before, "a refused command wrote something"


@pytest.mark.parametrize("argv, needles", [
    (["train", "duplicate.yaml"], ["written twice"]),
    (["cv", R, "--stop-share", "1.5"], ["--stop-share", "[0, 1)"]),
    (["predict", "run", "--input", "short-row.csv"], ["expected 2 fields"]),
])
def test_in_a_real_process_too(world, argv, needles):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    done = subprocess.run([sys.executable, "-m", "tamenet", *argv], cwd=world, capture_output=True, text=True,
                          env=env, timeout=120)
    _check_line(done.returncode, done.stdout, done.stderr, argv, needles)


def test_a_read_only_file_system_is_one_line_naming_the_path_and_keeps_what_was_written(world, tmp_path,
                                                                                          monkeypatch, capsys):
    import tamenet.track.atomic as atomic

    monkeypatch.chdir(world)
    target = tmp_path / "old.csv"
    target.write_text("kept\n")

    def refuse(path, write, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(atomic, "_atomic_write", refuse)
    code = main(["predict", "run", "--input", "rows.csv", "--output", str(target)])
    out, err = capsys.readouterr()
    line = _check_line(code, out, err, ["predict"], [str(target), "read-only file system"])
    assert "--output" in line
    assert target.read_text() == "kept\n"
    code = main(["train", R, "--out", str(tmp_path / "new-run")])
    out, err = capsys.readouterr()
    _check_line(code, out, err, ["train"], ["status.json", "read-only file system"])


def test_a_bug_is_not_hidden_as_a_user_error(monkeypatch, world):
    import tamenet.cli_datasets as datasets

    def broken(args):
        return {}["missing"]  # a KeyError: a programming mistake, shown with its traceback

    monkeypatch.setattr(datasets, "run", broken)
    with pytest.raises(KeyError):
        main(["datasets"])


def test_help_and_a_bad_recipe_load_nothing_heavy(world):
    """What makes the command line answer at once (timed by bench/bench_cli.py): no torch, numpy, sklearn, matplotlib."""
    code = ("import sys\nfrom tamenet.cli import main\n"
            "assert main(['--help']) == 0\nassert main(['train', '--help']) == 0\n"
            "assert main(['train', 'lr-typo.yaml']) == 2\nassert main(['train', 'duplicate.yaml']) == 2\n"
            "assert main(['cv', 'ok.yaml', '--stop-share', '1.5']) == 2\nassert main(['runs', '.']) == 0\n"
            "assert main(['train', 'activation.yaml']) == 2\nassert main(['train', 'data-name.yaml']) == 2\n"
            "heavy = sorted(m for m in ('torch', 'numpy', 'sklearn', 'matplotlib', 'optuna') if m in sys.modules)\n"
            "assert not heavy, heavy\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    done = subprocess.run([sys.executable, "-c", code], cwd=world, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_option_of_every_command_has_help_text():
    import argparse

    from tamenet.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {action.dest}" for name, command in sub.choices.items() for action in command._actions
               if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()]
    assert not missing, missing
    assert all(choice.help for choice in sub._choices_actions)
