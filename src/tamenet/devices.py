"""Where a command runs and in which precision: the one check every command calls before it writes anything.

    require_device(name)                       'auto' | 'cpu' | 'cuda' -> torch.device, or a one-line RecipeError
    check_training(train)                      a recipe's `train` section: its device, then its precision
    precision_refusal(precision, device, ...)  why a precision is refused on a device (None: accepted)

`train.precision` (SPEC I1): fp32 (default), tf32 (fp32 storage, TF32 tensor-core matmuls on a CUDA GPU),
bf16 or fp16 (the forward pass under `torch.autocast`; fp16 with a gradient scaler, see `train/precision.py`).
On the CPU, fp16 is refused for training unless `train.force_precision: true`: its autocast kernels are
emulated, measured 6-10x slower than fp32 for a population's forward and backward pass (bench figures in
docs/precision.md). bf16 on the CPU depends on the processor: with native bf16 instructions (AVX512_BF16 or
AMX, `torch.cpu._is_avx512_bf16_supported()`) it was measured about 1.8x faster than fp32 and is accepted;
without them it is emulated (measured 1.6x slower at AVX-512, 7x at AVX2) and refused unless forced. tf32 on the CPU is
fp32: PyTorch's TF32 switches act on CUDA matmuls and cuDNN only, so it is accepted and computes exactly fp32.
"""

from __future__ import annotations

from typing import Any

from .config import RecipeError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")

CPU_FP16_SLOWDOWN = "6-10x"
"""fp16 autocast / fp32, one population forward + backward (M = 32, MLP 64-256-256-10, batch 64, 1 thread) on
the AMD EPYC (AVX-512, AVX512_BF16) the project was developed on: 9.3x-10.3x, and 5.9x-9.9x with oneDNN limited
to older instruction sets (docs/precision.md)."""
CPU_BF16_EMULATED_SLOWDOWN = "1.6x (AVX-512) to 7x (AVX2)"
"""bf16 / fp32 for the same pass with oneDNN limited to instruction sets without bf16: ONEDNN_MAX_CPU_ISA=AVX512_CORE
1.56x-1.59x, =AVX2 6.7x-7.7x (docs/precision.md). With AVX512_BF16 the same pass took 0.52x-0.59x of fp32's time."""


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def require_device(name: str) -> Any:
    """`train.device` as a `torch.device`: 'auto' (the GPU when PyTorch sees one, else the CPU), 'cpu' or 'cuda'.

    Raises a one-line `RecipeError` for 'cuda' without a GPU and for an unknown name. Every command that trains
    or runs a model on the recipe's device calls this before it writes anything (the compression commands too)."""
    import torch

    if name == "auto":
        return torch.device("cuda" if cuda_available() else "cpu")
    if name == "cuda" and not cuda_available():
        raise RecipeError("train.device: 'cuda' needs a GPU that PyTorch sees (torch.cuda.is_available() is False); "
                          "use 'auto' or 'cpu'")
    if name not in ("cpu", "cuda"):
        raise RecipeError(f"train.device: expected auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 instructions oneDNN uses (AVX512_BF16 or AMX); False where torch cannot say."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in probes)


def precision_refusal(precision: str, device_type: str, *, native_bf16: bool | None = None) -> str | None:
    """Why training at `precision` on a device of this type is refused unless forced (None: it is accepted)."""
    if precision not in PRECISIONS:
        return f"train.precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}"
    if device_type != "cpu":
        return None
    if precision == "fp16":
        return (f"train.precision: fp16 on the CPU is emulated, measured {CPU_FP16_SLOWDOWN} slower than "
                f"fp32 for a population's forward and backward pass; use fp32 (or bf16), a GPU (train.device: cuda), "
                f"or set train.force_precision: true to train at fp16 anyway")
    if precision == "bf16":
        native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
        if not native:
            return (f"train.precision: bf16 on a CPU without bf16 instructions (AVX512_BF16 or AMX) is emulated, "
                    f"measured {CPU_BF16_EMULATED_SLOWDOWN} slower than fp32; use fp32, a GPU "
                    f"(train.device: cuda), or set train.force_precision: true to train at bf16 anyway")
    return None


def check_training(train: Any) -> Any:
    """A recipe's `train` section (TrainConfig): its device, then its precision on that device; returns the device.

    One-line `RecipeError`s: 'cuda' without a GPU; a precision refused on the CPU without `force_precision`."""
    device = require_device(train.device)
    precision = getattr(train, "precision", "fp32")
    reason = precision_refusal(precision, device.type)
    if reason is not None and not (getattr(train, "force_precision", False) and precision in PRECISIONS):
        raise RecipeError(reason)
    return device
