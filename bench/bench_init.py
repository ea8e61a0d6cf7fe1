"""Initialization study (A5): Xavier vs He on a 30-layer ReLU MLP, against the variance formulas.

A 30-layer ReLU MLP of width 256 (40-256x30-10, biases zero, no normalization, no dropout) on
``mnist1d``, trained with SGD with momentum by tamenet's own loop for 500 steps. Both
initializations and all seeds (and learning rates, with ``--lr a,b,...``) are members of ONE
population: member (init, lr, seed) starts from exactly the weights ``model.init`` would give a
separate run with that seed, and sees the same batch order as the members with its seed.

What the formulas predict. With zero biases and symmetric weights, the pre-activation
``z_l = W_l a_{l-1}`` of layer l has ``Var(z_l) = n_{l-1} Var(W_l) E[a_{l-1}^2]``, and a ReLU of
a zero-mean symmetric ``z`` keeps half its second moment: ``E[a^2] = Var(z) / 2``. So from one
hidden layer to the next ``Var(z_l) / Var(z_{l-1}) = n_{l-1} Var(W_l) / 2``:

* He (``Var(W) = 2 / n_in``): the factor is 1; the variance stays put through any depth.
* Xavier (``Var(W) = 2 / (n_in + n_out)`` = 1/256 for 256x256): the factor is 1/2; over the
  29 transitions from hidden layer 1 to hidden layer 30 the standard deviation shrinks by
  ``2^(-29/2) ~ 4.3e-5``.

The post-ReLU activation's standard deviation is a fixed multiple of its pre-activation's,
``std(a) = std(z) sqrt(1/2 - 1/(2 pi))``, so the predicted ratio is the same for both; the table
reports the measured ratio of **pre-activations** ``std(z_30) / std(z_1)`` and, beside it, of the
post-ReLU activations ``std(a_30) / std(a_1)``, each the standard deviation over all units and the
first 1,000 training rows, per member, then averaged over seeds (min and max given).

What the study shows (see bench/README.md for the measured table): the measured ratios follow the
formula (about 1 for He and a few 1e-5 for Xavier; finite width makes the per-seed values scatter
around the prediction), and the consequence for training: with Xavier the output of the 30-layer
net starts near zero and its gradients vanish the same way, so after 500 steps its training loss
has barely left log(10) = 2.30, while the He network trains at the same learning rate.

    .venv/bin/python bench/bench_init.py                       # lr 0.01, 3 seeds: 6 members, 500 steps
    .venv/bin/python bench/bench_init.py --lr 0.003,0.01,0.03  # a small learning-rate sweep, 3x the members

Prints a table and writes it with the per-member figures to ``bench/results/init.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

import tamenet
from tamenet.config import DataConfig
from tamenet.data import prepare
from tamenet.models import MLP, build_model
from tamenet.nn.init import INITS
from tamenet.recipes import load_recipe
from tamenet.track import format_table
from tamenet.train import Trainer, evaluate
from tamenet.train.member_data import MemberData

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "init.json"
COMPARED = ("he_normal", "xavier_normal")


def weight_variance(init: str, fan_in: int, fan_out: int) -> float:
    """Var(W) of one of tamenet's initializations (a normal's sigma^2, a uniform's bound^2 / 3)."""
    kind, scale = INITS[init](fan_in, fan_out)
    return scale**2 if kind == "normal" else scale**2 / 3.0


def predicted_std_ratio(init: str, widths: list[int]) -> float:
    """std(z_L) / std(z_1) of the pre-activations: the product of sqrt(n_{l-1} Var(W_l) / 2) over l = 2..L."""
    log_ratio = 0.0
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        log_ratio += 0.5 * math.log(fan_in * weight_variance(init, fan_in, fan_out) / 2.0)
    return math.exp(log_ratio)


@torch.no_grad()
def hidden_stds(model: MLP, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per member and hidden layer: std of the pre-activations z and of the post-ReLU activations a, [M, L] each."""
    h, pre, post = x, [], []
    for linear in model.hidden:
        z = linear(h)
        h = torch.relu(z)
        pre.append(z.std(dim=(1, 2)))
        post.append(h.std(dim=(1, 2)))
    return torch.stack(pre, 1), torch.stack(post, 1)


def recipe_for(args: argparse.Namespace, lrs: list[float], seeds: list[int], epochs: int) -> dict:
    return {
        "name": "bench-init",
        "data": {"name": "mnist1d"},
        "model": {"widths": [args.width] * args.depth, "activation": "relu", "norm": "none", "dropout": 0.0},
        "penalty": {"l2": 0.0, "l1": 0.0},
        "train": {"optimizer": "sgd", "lr": lrs, "momentum": args.momentum, "batch_size": args.batch_size,
                  "epochs": epochs, "early_stopping": {"patience": None, "restore_best": False}},
        "track": {"tensorboard": False, "plots": False, "checkpoint": False},
        "seed": seeds,
    }


def mixed_population(recipe, members: list[tuple[str, float, int]], n_in: int, n_out: int) -> MLP:
    """One MLP whose member m starts from the weights `init` of members[m] gives a separate run with its seed."""
    seeds = [seed for _, _, seed in members]
    built = {init: build_model(replace(recipe.model, init=init), n_in=n_in, n_out=n_out, seeds=seeds) for init in COMPARED}
    model = built[COMPARED[0]]
    with torch.no_grad():
        for m, (init, _, _) in enumerate(members):
            for target, source in zip(model.parameters(), built[init].parameters()):
                target[m].copy_(source[m])
    return model


def spread(values: list[float]) -> str:
    return f"{min(values):.3g}-{max(values):.3g}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", default="0.01", help="learning rate(s), comma-separated (default 0.01)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=112, help="112 divides mnist1d's 2,800 training rows")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--depth", type=int, default=30)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1, steadiest on a shared machine; 0: torch's default)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    lrs = [float(v) for v in args.lr.split(",")]
    data = prepare(DataConfig(name="mnist1d"))
    n_train = len(data.X_train)
    steps_per_epoch = math.ceil(n_train / args.batch_size)
    if args.steps % steps_per_epoch:
        raise SystemExit(f"--steps: expected a multiple of {steps_per_epoch} (steps per epoch at batch "
                         f"{args.batch_size} on {n_train} rows), got {args.steps}")
    epochs = args.steps // steps_per_epoch

    members = [(init, lr, seed) for init in COMPARED for lr in lrs for seed in range(args.seeds)]
    recipe = load_recipe(recipe_for(args, [lr for _, lr, _ in members], [s for _, _, s in members], epochs))
    model = mixed_population(recipe, members, data.n_features, data.n_outputs)
    widths = [args.width] * args.depth

    probe = data.X_train[:1000]
    pre, post = hidden_stds(model, probe)
    loss0, _ = evaluate(model, data.X_train, data.y_train, data.task)
    started = time.perf_counter()
    state = Trainer(model, MemberData.from_split(data, len(members)), recipe).run()
    train_time = time.perf_counter() - started
    loss, acc = evaluate(model, data.X_train, data.y_train, data.task)
    _, val_acc = evaluate(model, data.X_val, data.y_val, data.task)

    per_member = []
    for m, (init, lr, seed) in enumerate(members):
        per_member.append({
            "init": init, "lr": lr, "seed": seed,
            "pre_std_first": float(pre[m, 0]), "pre_std_last": float(pre[m, -1]),
            "pre_ratio": float(pre[m, -1] / pre[m, 0]), "post_ratio": float(post[m, -1] / post[m, 0]),
            "loss_step0": float(loss0[m]), "train_loss": float(loss[m]), "train_accuracy": float(acc[m]),
            "val_accuracy": float(val_acc[m]), "diverged_at_epoch": state.diverged_at[m],
        })

    header = ["init", "lr", "predicted ratio", "z ratio (mean)", "z ratio min-max", "a ratio (mean)",
              "loss step 0", f"train loss step {args.steps}", "min-max", "train acc", "val acc"]
    rows, groups = [], []
    for init in COMPARED:
        for lr in lrs:
            group = [r for r in per_member if r["init"] == init and r["lr"] == lr]
            mean = lambda key: statistics.fmean(r[key] for r in group)  # noqa: E731
            losses = [r["train_loss"] for r in group]
            rows.append([init, lr, predicted_std_ratio(init, widths), mean("pre_ratio"),
                         spread([r["pre_ratio"] for r in group]), mean("post_ratio"), mean("loss_step0"),
                         statistics.fmean(losses), spread(losses), mean("train_accuracy"), mean("val_accuracy")])
            groups.append(dict(zip(header, rows[-1])))
    title = (f"mnist1d, ReLU MLP {data.n_features}-{args.width}x{args.depth}-{data.n_outputs}, SGD momentum "
             f"{args.momentum}, batch {args.batch_size}, {args.steps} steps, {args.seeds} seeds per row "
             f"({len(members)} members, one population)")
    table = format_table(header, rows, title=title)
    print(table)
    print("ratio = std(hidden layer %d) / std(hidden layer 1) at initialization; z: pre-activation, a: after ReLU"
          % args.depth)
    print(f"training time {train_time:.1f} s with {torch.get_num_threads()} torch threads")

    result = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "tamenet": tamenet.__version__, "threads": torch.get_num_threads()},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "table": table, "rows": groups, "members": per_member, "train_time_s": train_time,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
