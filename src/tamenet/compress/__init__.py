"""Compression and transfer (H1-H4): the formulas as pure functions on population tensors.

- `quantize`: fake quantization `r = S (Q - Z)`, symmetric and asymmetric, per tensor and per
  channel, bit width per member, with the straight-through estimator and calibration observers.
- `activations`: fake quantization of each quantized layer's input, observers calibrated on training rows;
  `ptq`: post-training quantization of a run into a new run (`tamenet quantize`); `deploy`: torchao int8,
  fp16 and bf16 copies of an exported member with their size, latency and accuracy.
- `distill`: the distillation loss `alpha T^2 KL + (1 - alpha) CE`, T and alpha per member.
"""
