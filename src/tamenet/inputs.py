"""Old import path of input selection by the F-test (C6): it lives in `tamenet.feature_selection`."""

from .feature_selection import SCORES, check_counts, input_masks, input_ranking, select_inputs_  # noqa: F401
