"""Old import path of Monte-Carlo dropout prediction (D2): it lives in `tamenet.mc_dropout`."""

from .mc_dropout import MC_STEP, dropout_layers, mc_outputs, mc_predict, mc_sampling, mc_summary  # noqa: F401
