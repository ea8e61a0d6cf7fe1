"""A trained model reloaded from its run directory: predictions on new raw data, and re-evaluation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoints import CheckpointError, load_checkpoint
from .config import Recipe, RecipeError, parse
from .data import SplitData, Standardizer, prepare
from .models import Population, build_model
from .models.export import export_member
from .mc_dropout import mc_predict
from .train import TASK_METRIC, evaluate
from .train.hyper import member_seeds


@dataclass
class TrainedModel:
    """A population with the recipe and preprocessing it was trained with."""

    model: Population
    recipe: Recipe
    preprocessing: dict[str, Any]
    path: Path | None = None

    @property
    def task(self) -> str:
        return self.preprocessing["task"]

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        """The training feature columns' names in training order; None when the checkpoint lacks usable
        names (saved without them, or not one distinct name per feature)."""
        names = self.preprocessing.get("feature_names")
        if not isinstance(names, (list, tuple)) or len(names) != int(self.preprocessing["n_features"]):
            return None
        names = tuple(str(n) for n in names)
        return names if len(set(names)) == len(names) else None

    @property
    def target_name(self) -> str | None:
        """The target column's name when the model was trained on a CSV file (data.target), else None."""
        data = self.recipe.data
        return data.target if data.name == "csv" else None

    @torch.no_grad()
    def outputs(self, X: np.ndarray) -> torch.Tensor:
        """Raw outputs [M, N, K] for raw (unscaled) inputs X [N, F]."""
        inputs = SplitData.transform_inputs(self.preprocessing, np.asarray(X))
        self.model.eval()
        return self.model(inputs)

    def to_torch(self, member: int = 0) -> torch.nn.Module:
        """Member `member` as a plain PyTorch model that takes raw rows [B, F] (the training split's
        standardization is its first layer) and gives that member's outputs [B, K]; see `export_member`."""
        return export_member(self.model, member, preprocessing=self.preprocessing)

    def predict(self, X: np.ndarray, *, member: int | None = None) -> dict[str, np.ndarray]:
        """Predictions in the data's own terms: class labels and probabilities, or target values.

        `member=None` uses the only member, or averages the members' probabilities (values) when there are several.
        """
        out = self.outputs(X)
        if member is not None:
            if not 0 <= member < out.shape[0]:
                raise ValueError(f"member: expected an index in [0, {out.shape[0] - 1}], got {member}")
            out = out[member : member + 1]
        if self.task == "classification":
            probs = torch.softmax(out, dim=-1).mean(0).numpy()
            classes = np.asarray(self.preprocessing["classes"], dtype=object)
            return {"label": classes[probs.argmax(1)], "probabilities": probs}
        values = out.squeeze(-1).mean(0).numpy()
        target = self.preprocessing.get("target_scaler")
        if target is not None:
            values = Standardizer.from_dict(target).inverse(values.reshape(-1, 1)).reshape(-1)
        return {"value": values}

    def predict_mc(self, X: np.ndarray, samples: int, *, member: int | None = None) -> dict[str, np.ndarray]:
        """Monte-Carlo dropout prediction (D2) over `samples` (T) masks, in the data's own terms.

        classification: `label` (argmax of the mean), `probabilities` (mean over masks) [N, K], `std`
        [N, K] of the probabilities, `entropy` [N] = H[mean probabilities] (nats); regression: `value`
        (mean) and `std` in the target's units. See `tamenet.mc_dropout`.
        """
        inputs = SplitData.transform_inputs(self.preprocessing, np.asarray(X))
        summary = mc_predict(self.model, inputs, samples, self.task, member=member)
        if self.task == "classification":
            mean = summary["mean"].numpy()
            classes = np.asarray(self.preprocessing["classes"], dtype=object)
            return {"label": classes[mean.argmax(1)], "probabilities": mean, "std": summary["std"].numpy(),
                    "entropy": summary["entropy"].numpy()}
        values, std = summary["mean"].numpy(), summary["std"].numpy()
        target = self.preprocessing.get("target_scaler")
        if target is not None:
            scaler = Standardizer.from_dict(target)
            values = scaler.inverse(values.reshape(-1, 1)).reshape(-1)
            std = std * float(np.asarray(scaler.std).reshape(-1)[0])
        return {"value": values, "std": std}


def load_run(run_dir: str | Path) -> TrainedModel:
    """Rebuild the model saved in `run_dir/model.pt` (or a path to a .pt file).

    A file that is missing, unreadable, not a tamenet checkpoint or of another format version, or
    whose weights do not fit the model its recipe builds, raises `CheckpointError` (a ValueError).
    """
    path = Path(run_dir)
    file = path if path.suffix == ".pt" else path / "model.pt"
    payload = load_checkpoint(file, kind="model")
    try:
        recipe = parse(Recipe, payload["recipe"])
    except RecipeError as err:
        raise CheckpointError(f"{file}: the saved recipe is not one this tamenet reads: {err}") from err
    model = build_model(recipe.model, n_in=payload["n_in"], n_out=payload["n_out"], seeds=member_seeds(recipe),
                        input_shape=payload["preprocessing"].get("image_shape"), prune=recipe.prune,
                        quantize=recipe.quantize)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        detail = " ".join(str(err).split())
        raise CheckpointError(f"{file}: the saved weights do not fit the model its recipe builds "
                              f"({detail[:300]}{'...' if len(detail) > 300 else ''})") from err
    model.eval()
    return TrainedModel(model, recipe, payload["preprocessing"], file.parent)


def evaluate_run(run_dir: str | Path) -> dict[str, Any]:
    """Loss and metric of every member on the run's train / validation / test splits, rebuilt from its recipe.

    The data fingerprint recorded at training time (run.json) must match, so a changed data file is caught;
    a run.json that is missing or has no fingerprint is refused rather than the check skipped.
    """
    trained = load_run(run_dir)
    data = prepare(trained.recipe.data)
    info_file = Path(trained.path) / "run.json"
    try:
        info = json.loads(info_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"cannot check that the data is the one this run was trained on: {info_file} is "
                                "missing (expected the run directory as tamenet train wrote it)") from None
    except ValueError as err:
        raise ValueError(f"cannot check that the data is the one this run was trained on: {info_file} is not "
                         f"valid JSON ({err})") from None
    expected = info.get("data_fingerprint") if isinstance(info, dict) else None
    if not expected:
        raise ValueError(f"cannot check that the data is the one this run was trained on: {info_file} has no "
                         "data_fingerprint")
    if expected != data.fingerprint:
        raise ValueError(
            f"the data behind this run changed: fingerprint {data.fingerprint[:12]} now, {expected[:12]} at training time"
        )
    metric = TASK_METRIC[data.task]
    result: dict[str, Any] = {"task": data.task, "metric": metric, "members": trained.model.members}
    splits = {"train": (data.X_train, data.y_train), "val": (data.X_val, data.y_val), "test": (data.X_test, data.y_test)}
    for name, (X, y) in splits.items():
        if len(X):
            loss, value = evaluate(trained.model, X, y, data.task, target_std=data.target_std)
            result[name] = {"loss": loss.tolist(), metric: value.tolist()}
    return result
