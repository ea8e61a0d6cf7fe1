"""`shrink_run`: structured pruning of one member of a trained run, fine-tuned and saved with its shapes (H1).

The member is exported as plain PyTorch (`export_member`), pruned by `structured.prune_structured`,
fine-tuned on the run's own training rows (`structured.fine_tune`, optional) and written as one
file that rebuilds the smaller architecture without the recipe (`structured.save_shrunk`; read it
back with `structured.load_shrunk`): `nn.Sequential(Standardize, pruned member)`, raw rows [B, F]
in, logits [B, K] (classification) or the standardized target [B, 1] (regression) out. A JSON
beside it gives the summary: parameters, MACs per row, bytes, latency before and after, the
layer widths, the metric on the run's test split (else validation) before pruning, after pruning
and after fine-tuning.

`narrow_run` is the population-aware path (`compact.narrow_population`): every member of an MLP run
narrowed at once, written as a new run directory that `tamenet evaluate`, `predict` and `export` read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .structured import IMPORTANCES, UNITS, check_choice, check_share, fine_tune, prune_structured, save_shrunk

EXAMPLE_ROWS = 256
"""Training rows used to trace the model and to time it (the figures are per row where they say so)."""


def run_data(trained) -> Any:
    """The run's data split again, refused when its fingerprint is not the one recorded at training time."""
    from ..data import prepare

    data = prepare(trained.recipe.data)
    info_file = Path(trained.path) / "run.json"
    try:
        expected = json.loads(info_file.read_text(encoding="utf-8")).get("data_fingerprint")
    except (OSError, ValueError, AttributeError):
        expected = None
    if not expected:
        raise ValueError(f"cannot check that the data is the one this run was trained on: {info_file} is missing "
                         "or has no data_fingerprint (expected the run directory as tamenet train wrote it)")
    if expected != data.fingerprint:
        raise ValueError(f"the data behind this run changed: fingerprint {data.fingerprint[:12]} now, "
                         f"{expected[:12]} at training time")
    return data


@torch.no_grad()
def score(module: nn.Module, X: torch.Tensor, y: torch.Tensor, task: str, target_std: float = 1.0) -> float:
    """Accuracy (classification) or RMSE in the target's units (regression) of an eval-mode module."""
    module.eval()
    out = module(X)
    if task == "classification":
        return float((out.argmax(1) == y.long()).double().mean())
    return float((out.reshape(-1) - y.reshape(-1)).double().square().mean().sqrt()) * target_std


def shrink_run(run_dir: str | Path, *, share: float, unit: str = "neurons", importance: str = "l1",
               member: int | None = None, epochs: int = 0, lr: float = 1e-3, out: str | Path | None = None,
               repeats: int = 30) -> tuple[Path, dict[str, Any]]:
    """Prune member `member` of the run in `run_dir`, fine-tune it `epochs` passes, save it; returns (file, info).
    Everything is checked before anything is written; the default file is `<run>/shrunk/model-m<K>.pt`."""
    from ..delivery import choose_member
    from ..models.export import Standardize, export_member
    from ..trained import load_run

    share = check_share(share)
    check_choice(unit, UNITS, "unit")
    check_choice(importance, IMPORTANCES, "importance")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"--fine-tune: expected a whole number of epochs >= 0, got {epochs!r}")
    trained = load_run(run_dir)
    m = choose_member(trained, member)
    file = Path(out) if out is not None else Path(trained.path) / "shrunk" / f"model-m{m}.pt"
    if file.is_dir():
        raise IsADirectoryError(f"--out: expected a file name, got the directory {file}")
    data = run_data(trained)
    task = trained.task
    plain = export_member(trained.model, m).eval()  # standardized rows in, as the population
    example = data.X_train[:EXAMPLE_ROWS]
    small, summary = prune_structured(plain, example, share=share, unit=unit, importance=importance, repeats=repeats)
    X_eval, y_eval, split = ((data.X_test, data.y_test, "test") if len(data.X_test) else
                             (data.X_val, data.y_val, "val") if len(data.X_val) else
                             (data.X_train, data.y_train, "train"))
    metric = "accuracy" if task == "classification" else "rmse"
    scores = {"dense": score(plain, X_eval, y_eval, task, data.target_std),
              "pruned": score(small, X_eval, y_eval, task, data.target_std)}
    losses = []
    if epochs:
        from ..train.hyper import member_seeds

        losses = fine_tune(small, data.X_train, data.y_train, epochs=epochs, task=task, lr=lr,
                           seed=member_seeds(trained.recipe)[m])
        scores["fine_tuned"] = score(small, X_eval, y_eval, task, data.target_std)
    scaler = trained.preprocessing.get("scaler")
    first = [] if scaler is None else [Standardize(torch.as_tensor(scaler["mean"], dtype=torch.float64).reshape(-1),
                                                   torch.as_tensor(scaler["std"], dtype=torch.float64).reshape(-1))]
    model = nn.Sequential(*first, small).eval()
    info = {
        **summary.to_dict(),
        "latency_rows": int(example.shape[0]),
        "member": m,
        "task": task,
        "classes": None if task != "classification" else [_plain(c) for c in trained.preprocessing["classes"]],
        "feature_names": trained.preprocessing.get("feature_names"),
        "metric": metric,
        "split": split,
        "scores": scores,
        "fine_tune": {"epochs": epochs, "lr": lr, "train_loss": losses},
        "run_dir": str(trained.path),
        "inputs": "raw rows [B, F] float32 (standardized inside)",
        "outputs": "logits [B, K] over 'classes'" if task == "classification" else
                   "standardized target [B, 1] (value = output * target std + target mean)",
    }
    from ..track import atomic_write_json

    file.parent.mkdir(parents=True, exist_ok=True)
    save_shrunk(file, model, info)
    atomic_write_json(file.with_name(file.name + ".json"), info)
    return file, info


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def narrow_run(run_dir: str | Path, *, share: float, importance: str = "l1", out: str | Path | None = None
               ) -> tuple[Path, dict[str, Any]]:
    """The population-aware path (`compact.narrow_population`): every member of an MLP run keeps its own top-k
    units per hidden layer; written as a new run directory (`model.pt` with the narrowed recipe and weights, the
    original `run.json` for the data fingerprint, `shrink.json`) that `tamenet evaluate`, `predict`, `export` and
    `train.init_from` read. Default directory: `<run>/narrowed`, refused when it already holds a model."""
    import shutil

    from ..checkpoints import load_checkpoint
    from ..config import to_dict
    from ..trained import load_run
    from ..track import atomic_torch_save, atomic_write_json
    from .compact import narrow_population

    share = check_share(share)
    check_choice(importance, IMPORTANCES, "importance")
    trained = load_run(run_dir)
    folder = Path(out) if out is not None else Path(trained.path) / "narrowed"
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"--out: expected a directory for the narrowed run, got the file {folder}")
    if (folder / "model.pt").exists():
        raise FileExistsError(f"--out: {folder} already holds a model.pt; expected a new directory")
    data = run_data(trained)
    narrowed, recipe, kept = narrow_population(trained.model, trained.recipe, share=share, importance=importance)
    payload = load_checkpoint(Path(trained.path) / "model.pt", kind="model")
    payload = {**payload, "recipe": to_dict(recipe), "state_dict": narrowed.state_dict()}
    metric = "accuracy" if trained.task == "classification" else "rmse"
    X, y, split = (data.X_test, data.y_test, "test") if len(data.X_test) else (data.X_val, data.y_val, "val")

    def member_scores(model) -> list[float]:
        model.eval()
        with torch.no_grad():
            out = model(X)
        return [score(_Member(out[m]), X, y, trained.task, data.target_std) for m in range(out.shape[0])]

    info = {"share": share, "importance": importance, "widths": {"before": list(trained.recipe.model.widths),
                                                                   "after": list(recipe.model.widths)},
            "parameters": {"before": sum(p.numel() for p in trained.model.parameters()),
                           "after": sum(p.numel() for p in narrowed.parameters())},
            "metric": metric, "split": split,
            "scores": {"before": member_scores(trained.model), "after": member_scores(narrowed)},
            "kept_units": {str(k): v.tolist() for k, v in kept.items()}, "source_run": str(trained.path)}
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(Path(trained.path) / "run.json", folder / "run.json")
    atomic_torch_save(folder / "model.pt", payload)
    atomic_write_json(folder / "shrink.json", info)
    return folder, info


class _Member(nn.Module):
    """Fixed outputs as a module, so `score` can score one member's outputs."""

    def __init__(self, outputs: torch.Tensor) -> None:
        super().__init__()
        self.outputs = outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outputs


__all__ = ["EXAMPLE_ROWS", "narrow_run", "run_data", "score", "shrink_run"]
