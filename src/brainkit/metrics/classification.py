"""Binary decision metrics: F1, precision, recall (and AUROC through MONAI)."""

from __future__ import annotations

import numpy as np
import torch


def binary_scores(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """F1, precision and recall of boolean predictions against boolean truth (0 when undefined)."""
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    true_positives = float((predicted & truth).sum())
    precision = true_positives / max(float(predicted.sum()), 1.0)
    recall = true_positives / max(float(truth.sum()), 1.0)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"f1": f1, "precision": precision, "recall": recall}


def auroc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the ROC curve of `scores` for boolean `truth` (MONAI's implementation)."""
    from monai.metrics import compute_roc_auc

    return float(compute_roc_auc(torch.as_tensor(np.asarray(scores, float)), torch.as_tensor(np.asarray(truth, float))))
