"""The overfitting report (SPEC X3): diagnosis rules over histories, figures, and one self-contained HTML page.

    write_report(DIR)     report.html for a run, cross-validation or search directory
    rules                 where overfitting starts, gap, high training loss, divergence, grid edge
    WeightRecorder        the listener that writes per-layer weight norms and zero shares (weights.csv)
"""

from .build import REPORT_FILE, ReportError, directory_kind, write_report
from .weights import WeightRecorder, read_weights, weight_stats

__all__ = ["REPORT_FILE", "ReportError", "WeightRecorder", "directory_kind", "read_weights", "weight_stats",
           "write_report"]
