"""The hub of the workbench: typed records, the store, and the statistics over them.

The statistics are imported on first use (they pull in statsmodels and scikit-learn, about two
seconds), so code that only needs the records or the store starts fast.
"""

import importlib

_EXPORTS = {
    "judge_agreement": "annotations.agreement", "judge_vs_judge": "annotations.agreement",
    "krippendorff_alpha": "annotations.agreement", "ranking_agreement": "annotations.agreement",
    "corrected_harmfulness": "annotations.correction", "harmfulness": "annotations.correction",
    "harmfulness_table": "annotations.correction", "seed_spread": "annotations.variance",
    "variance_components": "annotations.variance",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'annotations' has no attribute {name!r}")
