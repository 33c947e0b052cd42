"""ITK affine transform text files (`#Insight Transform File V1.0`), as ANTs and elastix-style tools write."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brainkit.errors import BadInputError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def read_itk_affine(path: str | Path) -> np.ndarray:
    """4x4 RAS matrix of an ITK affine/MatrixOffset transform: fixed-image world point -> moving-image point.

    ITK stores y = A (x - c) + c + t in LPS millimetres (Parameters: A row by row, then t; FixedParameters: c).
    """
    fields = {}
    for line in Path(path).read_text().splitlines():
        if ":" in line and not line.startswith("#"):
            key, value = line.split(":", 1)
            fields[key.strip()] = value.split()
    try:
        parameters = np.array(fields["Parameters"], float)
        centre = np.array(fields.get("FixedParameters", [0, 0, 0]), float)
    except (KeyError, ValueError) as err:
        raise BadInputError(path, "not an ITK affine transform file (Parameters/FixedParameters missing)") from err
    if parameters.size != 12:
        raise BadInputError(path, f"expected 12 affine parameters, found {parameters.size}")
    matrix = parameters[:9].reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = matrix
    lps[:3, 3] = centre + parameters[9:] - matrix @ centre
    return LPS_TO_RAS @ lps @ LPS_TO_RAS
