"""``vlmzoo report``: one self-contained HTML page comparing stored runs.

Modules: data (runs gathered into per-benchmark views, no HTML), charts (inline SVG),
gallery (samples where models disagree), page (the page itself, written atomically).
"""

from vlmzoo.evaluation.report.page import write_report

__all__ = ["write_report"]
