"""BIDS-style JSON sidecars with dcm2niix's key names, from the header where it has them."""

from __future__ import annotations

import numpy as np
import pydicom

from brainkit import __version__

# dcm2niix key -> (DICOM keyword, scale): times in seconds as BIDS wants (DICOM stores milliseconds).
DIRECT_KEYS = {
    "Modality": ("Modality", None), "Manufacturer": ("Manufacturer", None),
    "ManufacturersModelName": ("ManufacturerModelName", None), "MagneticFieldStrength": ("MagneticFieldStrength", 1),
    "SeriesDescription": ("SeriesDescription", None), "ProtocolName": ("ProtocolName", None),
    "SeriesNumber": ("SeriesNumber", 1), "AcquisitionNumber": ("AcquisitionNumber", 1),
    "SliceThickness": ("SliceThickness", 1), "SpacingBetweenSlices": ("SpacingBetweenSlices", 1),
    "EchoTime": ("EchoTime", 0.001), "RepetitionTime": ("RepetitionTime", 0.001),
    "InversionTime": ("InversionTime", 0.001), "FlipAngle": ("FlipAngle", 1),
    "ImageType": ("ImageType", None), "BodyPartExamined": ("BodyPartExamined", None),
    "InstitutionName": ("InstitutionName", None), "StationName": ("StationName", None),
    "SoftwareVersions": ("SoftwareVersions", None), "PixelBandwidth": ("PixelBandwidth", 1),
}
PHASE_AXIS = {"ROW": 0, "COL": 1}  # phase encoded along the DICOM row (voxel i) or column (voxel j) direction
# dcm2niix reports the vendor, not the exact string the scanner wrote.
VENDORS = {"SIEMENS": "Siemens", "GE ": "GE", "GE_": "GE", "PHILIPS": "Philips", "TOSHIBA": "Canon", "CANON": "Canon",
           "UIH": "UIH", "UNITED IMAGING": "UIH", "HITACHI": "Hitachi", "BRUKER": "Bruker"}


def vendor(manufacturer: str) -> str:
    """dcm2niix's vendor name for a Manufacturer string ('SIEMENS' -> 'Siemens', 'GE MEDICAL SYSTEMS' -> 'GE')."""
    upper = manufacturer.upper() + " "
    return next((name for key, name in VENDORS.items() if upper.startswith(key) or key.strip() in upper),
                manufacturer)


def _value(ds: pydicom.Dataset, keyword: str, scale: float | None) -> object:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    if scale is not None:
        try:
            number = float(value) * scale
        except (TypeError, ValueError):
            return None
        return int(number) if keyword in ("SeriesNumber", "AcquisitionNumber") else round(number, 6)
    if isinstance(value, pydicom.multival.MultiValue):
        return [str(v) for v in value]
    return str(value)


def _enhanced_value(ds: pydicom.Dataset, sequence: str, keyword: str) -> object:
    shared = ds.get("SharedFunctionalGroupsSequence")
    frames = ds.get("PerFrameFunctionalGroupsSequence")
    for source in ([shared[0]] if shared else []) + ([frames[0]] if frames else []):
        if sequence in source and keyword in source[sequence].value[0]:
            return source[sequence].value[0].get(keyword)
    return None


def slice_timing(slice_times_ms: list[float] | None) -> list[float] | None:
    """Slice acquisition times in seconds relative to the first, from Siemens MosaicRefAcqTimes or similar."""
    if not slice_times_ms:
        return None
    times = np.asarray(slice_times_ms, float)
    return [round(float(t), 5) for t in (times - times.min()) / 1000]


def sidecar(ds: pydicom.Dataset, orientation: np.ndarray, slice_times_ms: list[float] | None = None,
            dicom_axes: tuple[int, int, int] = (0, 1, 2)) -> dict:
    """The JSON sidecar of one series; `dicom_axes`: output voxel axis of the DICOM row and column directions."""
    out: dict[str, object] = {}
    for key, (keyword, scale) in DIRECT_KEYS.items():
        value = _value(ds, keyword, scale)
        if value is not None:
            out[key] = value
    if "RepetitionTime" not in out:
        tr = _enhanced_value(ds, "MRTimingAndRelatedParametersSequence", "RepetitionTime")
        if tr is not None:
            out["RepetitionTime"] = round(float(tr) / 1000, 6)
    if "EchoTime" not in out:
        te = _enhanced_value(ds, "MREchoSequence", "EffectiveEchoTime")
        if te is not None:
            out["EchoTime"] = round(float(te) / 1000, 6)
    if "Manufacturer" in out:
        out["Manufacturer"] = vendor(str(out["Manufacturer"]))
    out["ImageOrientationPatientDICOM"] = [round(float(v), 8) for v in orientation]
    direction = str(ds.get("InPlanePhaseEncodingDirection", "")).upper()
    if direction in PHASE_AXIS:
        out["PhaseEncodingAxis"] = "ijk"[dicom_axes[PHASE_AXIS[direction]]]
    timing = slice_timing(slice_times_ms)
    if timing is not None:
        out["SliceTiming"] = timing
    out["ConversionSoftware"] = "brainkit"
    out["ConversionSoftwareVersion"] = __version__
    return out
