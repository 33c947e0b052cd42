"""Explanations of model decisions (Grad-CAM)."""
