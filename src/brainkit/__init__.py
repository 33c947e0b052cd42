"""brainkit: deep learning on brain MRI, from DICOM or NIfTI to checked, analysed scans, on a CPU."""

__version__ = "0.1.0"

from brainkit.io import Scan, discover, load  # noqa: E402
from brainkit.io.info import info  # noqa: E402

__all__ = ["Scan", "__version__", "discover", "info", "load"]
