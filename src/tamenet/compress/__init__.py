"""Compression and transfer (H1-H4): the formulas as pure functions on population tensors.

- `quantize`: fake quantization `r = S (Q - Z)`, symmetric and asymmetric, per tensor and per
  channel, bit width per member, with the straight-through estimator and calibration observers.
- `distill`: the distillation loss `alpha T^2 KL + (1 - alpha) CE`, T and alpha per member.
"""
