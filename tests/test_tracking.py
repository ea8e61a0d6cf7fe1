"""MLflow and W&B trackers (`track: {mlflow: true}`, `track: {wandb: true}`): a small population trains with
each, and what they logged is read back (MLflow through its own client from the SQLite store in the run
directory; W&B from its offline run file) and compared with the run directory's own metrics.csv and
summary; a tracker that fails is a warning and the run directory is still complete."""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
import pytest
import torch

from tamenet.api import fit
from tamenet.config import to_dict
from tamenet.delivery import delivered_model
from tamenet.track import read_metrics, read_status
from tamenet.track.trackers import TrackerWarning, flat_params
from tamenet.trained import load_run

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]


def _recipe(**track) -> dict:
    return {"data": {"name": "moons", "n_samples": 120}, "model": {"widths": [8], "dropout": 0.2},
            "train": {"epochs": 3}, "seed": [0, 1], "name": "tracked",
            "track": {"tensorboard": False, "plots": True, **track}}


def test_mlflow_logs_params_metrics_per_member_artifacts_and_the_model(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="the MLflow tracker needs mlflow (the 'mlflow' extra)")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the default store: a SQLite file in the run
    run = tmp_path / "run"
    result = fit(_recipe(mlflow=True), out=run)
    assert (run / "mlflow.db").is_file()
    client = MlflowClient(tracking_uri=f"sqlite:///{run / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = {int(r.data.tags["member"]): r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert sorted(children) == [0, 1] and len(runs) == 3
    assert parent.data.params == flat_params(to_dict(result.recipe))
    assert parent.data.params["train.epochs"] == "3" and parent.data.params["seed"] == "[0, 1]"
    assert all({"candidate", "fold", "chunk"} <= set(c.data.tags) for c in children.values())
    rows = read_metrics(run)
    for member, child in children.items():
        history = client.get_metric_history(child.info.run_id, "val_loss")
        assert [h.step for h in history] == [1, 2, 3]
        np.testing.assert_allclose([h.value for h in history],
                                   [r["val_loss"] for r in rows if r["member"] == member], rtol=1e-12)
        summary = result.summary["per_member"][member]
        assert child.data.metrics["final_test_accuracy"] == pytest.approx(summary["test"]["accuracy"])
        assert child.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"summary.json", "curves.png", "recipe.yaml", "run.json"} <= artifacts
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{run / 'mlflow.db'}")
    (model,) = client.search_logged_models([experiment.experiment_id])
    info = mlflow.models.get_model_info(f"models:/{model.model_id}")
    assert info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 2) and info.run_id == parent.info.run_id
    logged = mlflow.pytorch.load_model(info.model_uri)
    rows = torch.randn(7, 2)
    torch.testing.assert_close(logged(rows), delivered_model(load_run(run), 0)(rows))


def test_a_failing_tracker_is_a_warning_and_the_run_directory_is_complete(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the MLflow tracker needs mlflow (the 'mlflow' extra)")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://tracking")
    run = tmp_path / "run"
    with pytest.warns(TrackerWarning, match="the mlflow tracker failed at train_begin"):
        result = fit(_recipe(mlflow=True), out=run)
    assert read_status(run)["state"] == "finished"
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 3 == result.summary["epochs_run"]
    assert len(read_metrics(run)) == 6 and (run / "model.pt").is_file() and (run / "curves.png").is_file()


def test_wandb_logs_offline_into_the_run_directory(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the W&B tracker needs wandb (the 'wandb' extra)")
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline is the default
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrackerWarning)  # a tracker failure fails this test
        result = fit(_recipe(wandb=True), out=run)
    files = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    logged = files[0].read_bytes()
    deadline = time.monotonic() + 30  # W&B's service process may still be writing the file it was handed
    while b"final_test_accuracy" not in logged and time.monotonic() < deadline:
        time.sleep(0.5)
        logged = files[0].read_bytes()
    for key in (b"member_0/val_loss", b"member_1/train_accuracy", b"member_1/final_test_accuracy", b"dropout"):
        assert key in logged, key
    final = result.summary["per_member"][1]["test"]["accuracy"]
    assert json.dumps(final).encode() in logged  # the summary's value itself, as W&B writes it (JSON)


def test_cross_validation_and_search_log_a_child_run_per_candidate_and_fold(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the MLflow tracker needs mlflow (the 'mlflow' extra)")
    from mlflow.tracking import MlflowClient

    from tamenet.select import cross_validate, search

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    recipe = {**_recipe(mlflow=True), "seed": 0, "penalty": {"l2": [0.0, 0.01]}, "name": "tracked-cv"}
    result = cross_validate(recipe, folds=2, out=tmp_path / "cv")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'cv' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tracked-cv").experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    tags = sorted((int(r.data.tags["candidate"]), int(r.data.tags["fold"])) for r in children)
    assert tags == [(0, 0), (0, 1), (1, 0), (1, 1)]  # member m: candidate m // 2 on fold m % 2
    rows = read_metrics(tmp_path / "cv")
    for child in children:
        member = int(child.data.tags["member"])
        assert float(child.data.params["l2"]) == [0.0, 0.01][member // 2]
        history = client.get_metric_history(child.info.run_id, "val_loss")
        np.testing.assert_allclose([h.value for h in history],
                                   [r["val_loss"] for r in rows if r["member"] == member], rtol=1e-12)
        assert child.data.metrics["final_scored_loss"] == pytest.approx(result["per_member"][member]["scored"]["loss"])
    assert "cv.json" in {a.path for a in client.list_artifacts(parent.info.run_id)}

    found = search({**recipe, "penalty": {"l2": 0.0}, "name": "tracked-search"}, grid={"penalty.l2": [0.0, 0.1]},
                   folds=2, refit=False, out=tmp_path / "search")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'search' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tracked-search").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert sorted((float(r.data.params["l2"]), r.data.tags["fold"]) for r in children) == [
        (0.0, "0"), (0.0, "1"), (0.1, "0"), (0.1, "1")]
    assert found["run_dir"] == str(tmp_path / "search")
