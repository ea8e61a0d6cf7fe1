"""A trained model reloaded from its run directory: predictions on new raw data, and re-evaluation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import Recipe, parse
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
    """Rebuild the model saved in `run_dir/model.pt` (or a path to a .pt file)."""
    path = Path(run_dir)
    file = path if path.suffix == ".pt" else path / "model.pt"
    if not file.is_file():
        raise FileNotFoundError(f"no trained model at {file} (expected a run directory written by 'tamenet train')")
    payload = torch.load(file, map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise ValueError(f"{file} is not a tamenet checkpoint (no 'state_dict' entry)")
    recipe = parse(Recipe, payload["recipe"])
    model = build_model(recipe.model, n_in=payload["n_in"], n_out=payload["n_out"], seeds=member_seeds(recipe),
                        input_shape=payload["preprocessing"].get("image_shape"))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return TrainedModel(model, recipe, payload["preprocessing"], file.parent)


def evaluate_run(run_dir: str | Path) -> dict[str, Any]:
    """Loss and metric of every member on the run's train / validation / test splits, rebuilt from its recipe.

    The data fingerprint recorded at training time must match, so a changed data file is caught.
    """
    trained = load_run(run_dir)
    data = prepare(trained.recipe.data)
    info_file = Path(trained.path) / "run.json"
    if info_file.is_file():
        expected = json.loads(info_file.read_text()).get("data_fingerprint")
        if expected and expected != data.fingerprint:
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
