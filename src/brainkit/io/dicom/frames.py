"""From DICOM files to frames: one 2D image each, with its geometry, scaling and grouping keys.

Classic files hold one frame; enhanced multi-frame files hold many (per-frame functional groups); a
Siemens mosaic holds a whole volume as tiles. Each vendor quirk is a small named function here.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom

with warnings.catch_warnings():  # nibabel warns that its DICOM *readers* are experimental; we use only the CSA parser
    warnings.simplefilter("ignore", UserWarning)
    from nibabel.nicom import csareader

NON_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66",  # raw data
    "1.2.840.10008.5.1.4.1.1.4.2",  # MR spectroscopy
    "1.2.840.10008.5.1.4.1.1.88.11", "1.2.840.10008.5.1.4.1.1.88.22", "1.2.840.10008.5.1.4.1.1.88.33",  # SR
    "1.2.840.10008.5.1.4.1.1.104.1",  # encapsulated PDF
    "1.2.840.10008.5.1.4.1.1.11.1",  # presentation state
}


@dataclass
class Frame:
    """One 2D image: where it lies, how to scale it, and how it groups and orders.

    orientation: ImageOrientationPatient (row direction, column direction), LPS.
    position: ImagePositionPatient of the first transmitted pixel, LPS mm.
    spacing: (between rows, between columns) in mm, as PixelSpacing.
    split: keys that put frames into different series (uid, echo, image type, ...).
    order: keys that order repeated acquisitions of one position into volumes.
    source: (path, frame number in the file or None, mosaic tile or None).
    """

    dataset: pydicom.Dataset
    path: Path
    orientation: np.ndarray
    position: np.ndarray
    spacing: tuple[float, float]
    shape: tuple[int, int]
    slope: float = 1.0
    intercept: float = 0.0
    split: tuple = ()
    order: tuple = ()
    frame_index: int | None = None
    tile: tuple[int, int, int] | None = None  # (tile number, tiles per row, tile size) of a mosaic
    slice_normal: np.ndarray | None = None  # stacking direction when the vendor states it (mosaic CSA)
    notes: list[str] = field(default_factory=list)

    @property
    def normal(self) -> np.ndarray:
        """Direction along which slices are stacked: the vendor's, else row x column direction."""
        if self.slice_normal is not None:
            return self.slice_normal
        return np.cross(self.orientation[:3], self.orientation[3:])


def is_image(ds: pydicom.Dataset) -> bool:
    """Image objects carry pixel rows; raw data, spectroscopy, reports and PDFs do not."""
    return str(ds.get("SOPClassUID", "")) not in NON_IMAGE_SOP_CLASSES and "Rows" in ds and "PixelData" in ds


def _number(value: object, default: float = 0.0) -> float:
    try:
        return float(value) if value is not None and value != "" else default
    except (TypeError, ValueError):
        return default


def image_type(ds: pydicom.Dataset) -> tuple[str, ...]:
    return tuple(str(v).upper() for v in (ds.get("ImageType") or ()))


def series_split(ds: pydicom.Dataset, frame_type: tuple[str, ...] = (), echo: object = None) -> tuple:
    """dcm2niix's splits: series, echo, magnitude/phase/real/imaginary image type, and series number."""
    kind = frame_type or image_type(ds)
    part = next((p for p in ("P", "PHASE", "R", "REAL", "I", "IMAGINARY", "FIELD_MAP", "B0") if p in kind), "M")
    echo = echo if echo is not None else ds.get("EchoNumbers", None)
    return (str(ds.get("SeriesInstanceUID", "")), str(ds.get("SeriesNumber", "")), str(echo), part)


def acquisition_order(ds: pydicom.Dataset) -> tuple:
    """How repeats of one slice position are ordered into volumes (time series, repeated scans)."""
    return (_number(ds.get("TemporalPositionIdentifier")), _number(ds.get("AcquisitionNumber")),
            str(ds.get("AcquisitionTime", "")), _number(ds.get("InstanceNumber")))


PHILIPS_SCALE_SLOPE = (0x2005, 0x100E)
PHILIPS_PRIVATE_FRAME = (0x2005, 0x140F)


def philips_precise_scaling(ds: pydicom.Dataset, private: pydicom.Dataset | None, slope: float, intercept: float,
                            magnitude: bool) -> tuple[float, float]:
    """Philips magnitude images: floating-point values FP = SV / SS + RI / (RS * SS) from the private MR scale
    slope SS (2005,100E), rather than the display value SV * RS + RI (Chenevert et al. 2014, PMC3998685),
    as dcm2niix does. Phase and field maps keep RS/RI, whose units (rad, Hz) are what users want."""
    if not magnitude or "PHILIPS" not in str(ds.get("Manufacturer", "")).upper():
        return slope, intercept
    source = private if private is not None and PHILIPS_SCALE_SLOPE in private else ds
    if PHILIPS_SCALE_SLOPE not in source:
        return slope, intercept
    scale = _number(source[PHILIPS_SCALE_SLOPE].value, 0.0)
    if scale == 0 or slope == 0:
        return slope, intercept
    return 1.0 / scale, intercept / (slope * scale)


def classic_frame(path: Path, ds: pydicom.Dataset) -> list[Frame]:
    """A single-frame image (CT, MR, any vendor)."""
    if "ImageOrientationPatient" not in ds or "ImagePositionPatient" not in ds or "PixelSpacing" not in ds:
        return []
    split = series_split(ds)
    slope, intercept = philips_precise_scaling(ds, None, _number(ds.get("RescaleSlope"), 1.0),
                                               _number(ds.get("RescaleIntercept")), split[3] == "M")
    return [Frame(ds, path, np.asarray(ds.ImageOrientationPatient, float), np.asarray(ds.ImagePositionPatient, float),
                  tuple(float(v) for v in ds.PixelSpacing), (int(ds.Rows), int(ds.Columns)), slope, intercept,
                  split, acquisition_order(ds))]


UIH_IMAGES_IN_GRID = (0x0065, 0x1050)


def uih_mosaic_size(ds: pydicom.Dataset) -> int:
    """United Imaging stores EPI/DWI slices as a grid of tiles in one image, (0065,1050) saying how many
    (0 for any other image). Their positions live in private records this reader does not decode yet."""
    manufacturer = str(ds.get("Manufacturer", "")).upper()
    element = ds.get(UIH_IMAGES_IN_GRID)
    if not ("UIH" in manufacturer or "UNITED IMAGING" in manufacturer) or element is None or element.VR == "SQ":
        return 0
    count = _number(element.value, 0.0)
    return int(count) if count > 1 else 0


def is_siemens_mosaic(ds: pydicom.Dataset) -> bool:
    """Siemens stores EPI volumes as one 2D mosaic of tiles, flagged MOSAIC in ImageType."""
    return "MOSAIC" in image_type(ds) and "SIEMENS" in str(ds.get("Manufacturer", "")).upper()


def siemens_mosaic_frames(path: Path, ds: pydicom.Dataset) -> list[Frame]:
    """Unmosaic from the CSA image header: NumberOfImagesInMosaic tiles, stacked along SliceNormalVector.

    ImagePositionPatient of a mosaic is that of the whole mosaic's corner; each tile's true position is shifted
    by half the difference between mosaic and tile size (in-plane), then by the slice spacing along the normal.
    """
    csa = csareader.get_csa_header(ds, "image")
    count = int(csareader.get_scalar(csa, "NumberOfImagesInMosaic"))
    normal = np.asarray(csareader.get_vector(csa, "SliceNormalVector", 3), float)
    per_row = int(math.ceil(math.sqrt(count)))
    tile_rows, tile_cols = int(ds.Rows) // per_row, int(ds.Columns) // per_row
    orientation = np.asarray(ds.ImageOrientationPatient, float)
    row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
    shift = ((int(ds.Columns) - tile_cols) / 2 * col_spacing * orientation[:3]
             + (int(ds.Rows) - tile_rows) / 2 * row_spacing * orientation[3:])
    first = np.asarray(ds.ImagePositionPatient, float) + shift
    step = _number(ds.get("SpacingBetweenSlices"), _number(ds.get("SliceThickness"), 1.0))
    frames = []
    for tile in range(count):
        frames.append(Frame(ds, path, orientation, first + tile * step * normal, (row_spacing, col_spacing),
                            (tile_rows, tile_cols), _number(ds.get("RescaleSlope"), 1.0),
                            _number(ds.get("RescaleIntercept")), series_split(ds), acquisition_order(ds),
                            tile=(tile, per_row, tile_rows), slice_normal=normal))
    return frames


def _group(item: pydicom.Dataset, shared: pydicom.Dataset, name: str) -> pydicom.Dataset | None:
    for source in (item, shared):
        if source is not None and name in source and len(source[name].value):
            return source[name].value[0]
    return None


def enhanced_frames(path: Path, ds: pydicom.Dataset) -> list[Frame]:
    """Enhanced multi-frame MR/CT: geometry, scaling, echo and frame type from the per-frame functional
    groups (falling back to the shared groups), frame by frame."""
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    frames = []
    for index, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        position = _group(item, shared, "PlanePositionSequence")
        orientation = _group(item, shared, "PlaneOrientationSequence")
        measures = _group(item, shared, "PixelMeasuresSequence")
        if position is None or orientation is None or measures is None:
            continue
        scaling = _group(item, shared, "PixelValueTransformationSequence")
        frame_type = (_group(item, shared, "MRImageFrameTypeSequence")
                      or _group(item, shared, "CTImageFrameTypeSequence"))
        echo = _group(item, shared, "MREchoSequence")
        content = _group(item, shared, "FrameContentSequence")
        kind = tuple(str(v).upper() for v in (frame_type.FrameType if frame_type is not None else ()))
        echo_time = round(_number(echo.get("EffectiveEchoTime")), 3) if echo is not None else None
        temporal = (_number(content.get("TemporalPositionIndex")),) if content is not None else (0.0,)
        split = series_split(ds, kind, echo_time)
        scaling = scaling if scaling is not None else ds
        private = item[PHILIPS_PRIVATE_FRAME].value[0] if PHILIPS_PRIVATE_FRAME in item else None
        slope, intercept = philips_precise_scaling(ds, private, _number(scaling.get("RescaleSlope"), 1.0),
                                                   _number(scaling.get("RescaleIntercept")), split[3] == "M")
        frames.append(Frame(
            ds, path, np.asarray(orientation.ImageOrientationPatient, float),
            np.asarray(position.ImagePositionPatient, float), tuple(float(v) for v in measures.PixelSpacing),
            (int(ds.Rows), int(ds.Columns)), slope, intercept, split, temporal + acquisition_order(ds),
            frame_index=index))
    return frames


def frames_of(path: Path, ds: pydicom.Dataset) -> list[Frame]:
    """Every frame a file holds ([] for non-image objects or images without geometry)."""
    if not is_image(ds):
        return []
    if "PerFrameFunctionalGroupsSequence" in ds:
        return enhanced_frames(path, ds)
    if is_siemens_mosaic(ds):
        return siemens_mosaic_frames(path, ds)
    return classic_frame(path, ds)


def mask_unused_high_bits(pixels: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """12-bit data in 16-bit words may carry junk in the high bits (overlays, vendor flags): keep BitsStored,
    sign-extending signed data, as the standard defines the value (PS3.5 8.1.1)."""
    stored, allocated = int(ds.get("BitsStored", 16)), int(ds.get("BitsAllocated", 16))
    if stored >= allocated or pixels.dtype.kind not in "iu":
        return pixels
    if int(ds.get("PixelRepresentation", 0)) == 0:
        return pixels & pixels.dtype.type((1 << stored) - 1)
    values = pixels.astype(np.int32) & ((1 << stored) - 1)
    values = np.where(values >= 1 << (stored - 1), values - (1 << stored), values)
    return values.astype(np.int16 if allocated <= 16 else np.int32)


def _native_pixels(ds: pydicom.Dataset) -> np.ndarray | None:
    """Uncompressed little-endian grayscale pixel data read straight from its bytes (no codec needed);
    None when pydicom's decoders must do it (compressed, big-endian, colour, 1-bit, odd sizes)."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or syntax.is_compressed or not syntax.is_little_endian:
        return None
    bits, samples = int(ds.get("BitsAllocated", 0)), int(ds.get("SamplesPerPixel", 1))
    if samples != 1 or bits not in (8, 16, 32):
        return None
    dtype = np.dtype(f"{'i' if int(ds.get('PixelRepresentation', 0)) else 'u'}{bits // 8}").newbyteorder("<")
    frames, rows, cols = int(ds.get("NumberOfFrames", 1) or 1), int(ds.Rows), int(ds.Columns)
    count = frames * rows * cols
    buffer = ds.PixelData
    if len(buffer) < count * dtype.itemsize:
        return None
    return np.frombuffer(buffer, dtype=dtype, count=count).reshape(frames, rows, cols)


def decoded_pixels(ds: pydicom.Dataset) -> np.ndarray:
    """All frames of a file as (frames, rows, columns), raw stored values (no rescale), high bits masked."""
    native = _native_pixels(ds)
    raw = native if native is not None else ds.pixel_array
    pixels = mask_unused_high_bits(np.asarray(raw), ds)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        # MONOCHROME1: low values are bright. Invert within the stored range so brain MR/CT reads as usual.
        pixels = pixels.max() + pixels.min() - pixels
    return pixels.reshape(-1, *pixels.shape[-2:])


def frame_pixels(frame: Frame, decoded: np.ndarray) -> np.ndarray:
    """The frame's own (rows, columns) image out of its file's decoded pixels."""
    if frame.tile is not None:
        tile, per_row, size = frame.tile
        rows, cols = frame.shape
        top, left = (tile // per_row) * rows, (tile % per_row) * cols
        return decoded[0, top : top + rows, left : left + cols]
    return decoded[frame.frame_index or 0]


def siemens_slice_times(ds: pydicom.Dataset) -> list[float] | None:
    """Slice acquisition times (ms) of a Siemens mosaic, from the CSA header's MosaicRefAcqTimes."""
    if not is_siemens_mosaic(ds):
        return None
    try:
        times = csareader.get_csa_header(ds, "image")["tags"]["MosaicRefAcqTimes"]["items"]
    except (KeyError, TypeError, csareader.CSAReadError):
        return None
    return [float(t) for t in times] or None
