"""Metrics shared by the jobs' evaluations (MONAI's where it has them)."""

from brainkit.metrics.classification import auroc, binary_scores

__all__ = ["auroc", "binary_scores"]
