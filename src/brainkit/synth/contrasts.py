"""Fixed-contrast renderings of an aseg label map (T1-, T2-, FLAIR-like and low-contrast T1), for testing a
contrast-agnostic model on contrasts people know, from label maps it never saw.

Unlike the engine's random GMM, each tissue gets a typical relative intensity for the contrast; blur, a bias
field and noise make it look acquired. Numbers are relative brightness (0 dark, 1 brightest tissue).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from brainkit.synth.labels import RIGHT_TO_LEFT

# Tissue of each FreeSurfer aseg label (left and right alike); anything else in the brain counts as white matter.
TISSUE = {0: "background", 2: "wm", 7: "wm", 16: "brainstem", 28: "dc", 3: "gm", 8: "cerebellum_gm", 10: "thalamus",
          11: "caudate", 12: "putamen", 13: "pallidum", 17: "hippocampus", 18: "amygdala", 26: "accumbens",
          4: "csf", 5: "csf", 14: "csf", 15: "csf", 24: "csf", 31: "csf", 72: "csf", 30: "gm", 80: "gm"}
CONTRASTS = {
    "t1": {"background": 0.0, "wm": 0.85, "brainstem": 0.8, "dc": 0.75, "gm": 0.5, "cerebellum_gm": 0.55,
           "thalamus": 0.7, "caudate": 0.58, "putamen": 0.62, "pallidum": 0.74, "hippocampus": 0.52,
           "amygdala": 0.54, "accumbens": 0.58, "csf": 0.15},
    "t2": {"background": 0.0, "wm": 0.3, "brainstem": 0.35, "dc": 0.35, "gm": 0.55, "cerebellum_gm": 0.5,
           "thalamus": 0.42, "caudate": 0.52, "putamen": 0.45, "pallidum": 0.3, "hippocampus": 0.6,
           "amygdala": 0.58, "accumbens": 0.52, "csf": 1.0},
    "flair": {"background": 0.0, "wm": 0.45, "brainstem": 0.5, "dc": 0.5, "gm": 0.62, "cerebellum_gm": 0.6,
              "thalamus": 0.55, "caudate": 0.6, "putamen": 0.57, "pallidum": 0.48, "hippocampus": 0.68,
              "amygdala": 0.66, "accumbens": 0.6, "csf": 0.08},
    "lowcontrast": {"background": 0.0, "wm": 0.62, "brainstem": 0.6, "dc": 0.58, "gm": 0.5, "cerebellum_gm": 0.52,
                    "thalamus": 0.57, "caudate": 0.53, "putamen": 0.55, "pallidum": 0.58, "hippocampus": 0.51,
                    "amygdala": 0.52, "accumbens": 0.53, "csf": 0.35},
}
NOISE = {"t1": 0.02, "t2": 0.03, "flair": 0.03, "lowcontrast": 0.04}


def render_contrast(labels: np.ndarray, contrast: str, seed: int = 0, blur_mm: float = 0.7) -> np.ndarray:
    """A float32 image of an aseg label map (1 mm voxels) in one of `CONTRASTS`: tissue means, partial-volume
    blur, a smooth bias field and Gaussian noise, reproducible with `seed`."""
    if contrast not in CONTRASTS:
        raise ValueError(f"unknown contrast {contrast!r}; choose one of {', '.join(CONTRASTS)}")
    rng = np.random.default_rng(seed)
    means = CONTRASTS[contrast]
    values = np.unique(labels)
    lookup = {int(v): means[TISSUE.get(RIGHT_TO_LEFT.get(int(v), int(v)), "wm")] for v in values}
    image = np.zeros(labels.shape, np.float32)
    for value, mean in lookup.items():
        image[labels == value] = mean
    image = ndimage.gaussian_filter(image, blur_mm)
    coarse = rng.normal(0.0, 0.1, (4, 4, 4))
    bias = np.exp(ndimage.zoom(coarse, np.array(labels.shape) / 4, order=3))
    noise = rng.normal(0.0, NOISE[contrast], labels.shape)
    return np.clip(image * bias + noise * (image > 0.01), 0, None).astype(np.float32)
