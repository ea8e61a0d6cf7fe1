"""Input transforms of the training step: what happens to a batch between its rows and the model.

Training batches only; validation, test and scored rows never pass here. Gaussian input noise (D4) today;
augmentation plugs in at the same place, each member drawing from its own random streams.
"""

from __future__ import annotations

import torch

INPUT_NOISE_STREAM = 1_000
"""Random stream of the input noise (dropout layers use small stream numbers)."""


class InputNoise:
    """`x + sigma_m * eps`, eps ~ N(0, I) from member m's stream (D4): E = x, cov = sigma^2 I, training only."""

    def begin_epoch(self, trainer) -> bool:
        return bool((trainer.hyper["input_noise"] > 0).any())

    def __call__(self, trainer, x: torch.Tensor) -> torch.Tensor:
        noise = trainer.hyper["input_noise"]
        if x.dim() == 2:  # a batch shared by all members gains the member axis
            x = x.unsqueeze(0).expand(trainer.members, *x.shape)
        eps = trainer.model.random.normal(INPUT_NOISE_STREAM, tuple(x.shape[1:]), device=x.device, rows=True)
        return x + noise.view(-1, *([1] * (x.dim() - 1))) * eps
