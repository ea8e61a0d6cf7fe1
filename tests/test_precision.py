"""`train.precision` (I1): bf16/fp16 autocast, fp16's per-member loss scaler, tf32, and what the CPU refuses."""

from __future__ import annotations

import pytest
import torch

from tamenet.api import fit
from tamenet.config import RecipeError
from tamenet.devices import check_training, precision_refusal
from tamenet.recipes import load_recipe
from tamenet.train.precision import MemberGradScaler, tf32_matmuls

pytestmark = pytest.mark.usefixtures("one_thread")

QUIET = {"tensorboard": False, "plots": False, "checkpoint": False}
SMALL = {"data": {"name": "moons", "n_samples": 160}, "model": {"widths": [8], "dropout": 0.1},
         "penalty": {"l2": [0.0, 1e-3]}, "train": {"batch_size": 50, "epochs": 3, "lr": 0.01, "input_noise": [0.0, 0.1]},
         "track": QUIET, "seed": [0, 1]}
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to PyTorch")


def _at(precision: str, recipe: dict = SMALL, **train) -> dict:
    return {**recipe, "train": {**recipe["train"], "precision": precision, "force_precision": True, **train}}


def _losses(result, member: int) -> list[float]:
    return [r["train_loss"] for r in result.history if r["member"] == member]


def test_bf16_trains_within_a_tolerance_of_fp32_and_member_m_equals_its_separate_run():
    fp32, bf16 = fit(SMALL), fit(_at("bf16"))
    for m in range(2):
        assert _losses(bf16, m) == pytest.approx(_losses(fp32, m), rel=2e-2)
        assert _losses(bf16, m) != _losses(fp32, m)  # autocast did run the matmuls at bf16
        alone = fit(_at("bf16", {**SMALL, "penalty": {"l2": SMALL["penalty"]["l2"][m]}, "seed": m},
                        input_noise=SMALL["train"]["input_noise"][m]))
        assert _losses(bf16, m) == pytest.approx(_losses(alone, 0), rel=1e-5, abs=1e-6)


def test_tf32_on_the_cpu_is_exactly_fp32_and_the_switches_come_back():
    assert fit(_at("tf32")).history == fit(SMALL).history
    matmul = torch.backends.cuda.matmul
    before = getattr(matmul, "fp32_precision", None), matmul.allow_tf32 if not hasattr(matmul, "fp32_precision") else None
    with tf32_matmuls():
        assert getattr(matmul, "fp32_precision", "tf32") == "tf32" and (hasattr(matmul, "fp32_precision") or matmul.allow_tf32)
    after = getattr(matmul, "fp32_precision", None), matmul.allow_tf32 if not hasattr(matmul, "fp32_precision") else None
    assert after == before


def test_the_member_scaler_follows_torch_gradscaler_for_one_member():
    """The same gradients (an inf at steps 2 and 5) through torch.amp.GradScaler('cpu') and MemberGradScaler: the same
    scales after every step and the same steps skipped."""
    from types import SimpleNamespace

    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(1, 3))
    role = SimpleNamespace(param=weight, name="w", per_member=lambda t: t)
    reference = torch.nn.Parameter(weight.detach().clone())

    class PlainSGD:  # what GradScaler needs of an optimizer (torch.optim's first step imports far more)
        param_groups = [{"params": [reference]}]

        def step(self) -> None:
            reference.data.add_(reference.grad, alpha=-0.1)

    opt = PlainSGD()
    theirs = torch.amp.GradScaler("cpu", init_scale=8.0, growth_interval=3)
    ours = MemberGradScaler(1, torch.device("cpu"), init_scale=8.0, growth_interval=3)
    for step in range(8):
        grad = torch.tensor([[float("inf") if step in (2, 5) else 0.5, -1.0, 2.0]])
        before = reference.detach().clone()
        reference.grad = grad * theirs.scale(torch.ones(())).item()  # what backward of the scaled loss gives
        theirs.step(opt)
        theirs.update()
        weight.grad = grad * ours.scale.view(1, 1)
        finite = ours.unscale_([role])
        ours.update_(finite)
        assert bool(finite[0]) == (step not in (2, 5))
        assert torch.equal(reference.detach(), before) == (step in (2, 5))  # torch skipped exactly those steps
        if bool(finite[0]):
            assert torch.equal(weight.grad, grad)  # unscaled: the true gradient
        assert ours.scale.item() == theirs.get_scale(), step
    assert ours.skipped.tolist() == [2]


def _one_fp16_step(scales: list[float]):
    """A trainer at fp16 (SGD with momentum, clipping) after one step with these per-member loss scales."""
    from tamenet.data import prepare
    from tamenet.models import build_model
    from tamenet.train.loop import Trainer
    from tamenet.train.member_data import MemberData

    recipe = load_recipe(_at("fp16", optimizer="sgd", momentum=0.9, clip={"by": "norm", "eps": 1.0}))
    torch.manual_seed(0)
    data = prepare(recipe.data)
    model = build_model(recipe.model, n_in=data.n_features, n_out=data.n_outputs, seeds=[0, 1])
    trainer = Trainer(model, MemberData.from_split(data, 2), recipe)
    scaler = trainer.step.precision.scaler
    scaler.scale = torch.tensor(scales)
    trainer.step.begin_epoch(trainer)
    positions = torch.arange(32)
    xb, yb = trainer.data.batch(positions.expand(2, -1))
    before = [r.param.detach().clone() for r in trainer.roles]
    trainer.step(trainer, xb, yb, trainer.hyper["lr"])
    return trainer, before


def test_fp16_skips_only_the_member_whose_gradients_overflow():
    trainer, before = _one_fp16_step([3e38, 1024.0])  # member 0's scaled gradients overflow fp16
    scaler = trainer.step.precision.scaler
    assert scaler.skipped.tolist() == [1, 0]
    assert scaler.scale.tolist() == [pytest.approx(1.5e38), 1024.0]
    for role, old in zip(trainer.roles, before):
        assert torch.equal(role.param.detach()[0], old[0]), role.name  # skipped: weights as they were
        assert not torch.equal(role.param.detach()[1], old[1]), role.name  # the other member stepped
        velocity = trainer.optimizer.state[trainer.optimizer.index[role.name]]["velocity"]
        assert torch.count_nonzero(velocity[0]) == 0 and torch.isfinite(velocity).all()
    # member 1's step equals the step it takes in a population where nobody overflows
    other, _ = _one_fp16_step([1024.0, 1024.0])
    for mine, theirs in zip(trainer.roles, other.roles):
        assert torch.equal(mine.param.detach()[1], theirs.param.detach()[1])


def test_fp16_gradients_are_unscaled_before_the_gradient_transforms():
    """Clipping by norm (eps 1) sees the true gradient: the same step at scale 2^10 and 2^4 (a scaled gradient
    would be clipped to a different direction share), and close to fp32's step."""
    high, before = _one_fp16_step([1024.0, 1024.0])
    low, _ = _one_fp16_step([16.0, 16.0])
    for a, b, old in zip(high.roles, low.roles, before):
        step_a, step_b = a.param.detach() - old, b.param.detach() - old
        assert step_a == pytest.approx(step_b, rel=1e-2, abs=1e-5)


def test_the_cpu_refuses_fp16_and_emulated_bf16_unless_forced_and_cuda_needs_a_gpu():
    assert precision_refusal("fp32", "cpu") is None and precision_refusal("tf32", "cpu") is None
    assert "fp16 on the CPU is emulated" in precision_refusal("fp16", "cpu")
    assert "slower than fp32" in precision_refusal("bf16", "cpu", native_bf16=False)
    assert precision_refusal("bf16", "cpu", native_bf16=True) is None
    assert precision_refusal("fp16", "cuda") is None and precision_refusal("bf16", "cuda") is None
    train = load_recipe({"train": {"device": "cpu", "precision": "fp16"}}).train
    with pytest.raises(RecipeError, match=r"train\.precision: fp16 on the CPU .*force_precision"):
        check_training(train)
    forced = load_recipe({"train": {"device": "cpu", "precision": "fp16", "force_precision": True}}).train
    assert check_training(forced).type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RecipeError, match=r"train\.device: 'cuda' needs a GPU"):
            check_training(load_recipe({"train": {"device": "cuda"}}).train)


@needs_gpu
@pytest.mark.parametrize("precision", ["tf32", "bf16", "fp16"])
def test_on_the_gpu_each_precision_trains_and_member_m_equals_its_separate_run(precision):
    gpu = _at(precision, device="cuda")
    population, fp32 = fit(gpu), fit({**gpu, "train": {**gpu["train"], "precision": "fp32"}})
    for m in range(2):
        assert _losses(population, m) == pytest.approx(_losses(fp32, m), rel=5e-2)
        alone = fit(_at(precision, {**SMALL, "penalty": {"l2": SMALL["penalty"]["l2"][m]}, "seed": m},
                        input_noise=SMALL["train"]["input_noise"][m], device="cuda"))
        assert _losses(population, m) == pytest.approx(_losses(alone, 0), rel=1e-3, abs=1e-5)
