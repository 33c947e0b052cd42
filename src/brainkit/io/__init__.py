"""Reading scans (NIfTI, MGZ, DICOM), finding inputs, and writing outputs atomically."""

from brainkit.io.discover import InputItem, discover, load, load_item
from brainkit.io.scan import Scan
from brainkit.io.write import write_csv, write_json, write_nifti

__all__ = ["InputItem", "Scan", "discover", "load", "load_item", "write_csv", "write_json", "write_nifti"]
