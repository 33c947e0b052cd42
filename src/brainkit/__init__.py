"""brainkit: deep learning on brain MRI, from DICOM or NIfTI to checked, analysed scans, on a CPU."""

__version__ = "0.1.0"

from brainkit.io import Scan, discover, load  # noqa: E402
from brainkit.io.info import info  # noqa: E402

# One function per job, mirroring the CLI; imported on first use so `import brainkit` stays light.
_JOBS = {"convert": "brainkit.io.convert", "orient": "brainkit.tasks.orient", "regqc": "brainkit.tasks.regqc"}

__all__ = ["Scan", "__version__", "convert", "discover", "info", "load", "orient", "regqc"]


def __getattr__(name: str):
    if name in _JOBS:
        import importlib

        return getattr(importlib.import_module(_JOBS[name]), name)
    raise AttributeError(f"module 'brainkit' has no attribute {name!r}")
