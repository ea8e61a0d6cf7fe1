"""Old import path of gradient clipping (G1): it lives in `tamenet.clipping`."""

from .clipping import CLIPPERS, adaptive_clip, clip_by_norm, clip_by_value, global_norm  # noqa: F401
