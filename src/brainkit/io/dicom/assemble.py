"""From frames to volumes: series grouping, slice order in space, checks, and dcm2niix's geometry.

Voxel order follows dcm2niix so outputs match it: i along a row (column index), j up the columns (DICOM rows
flipped), k in ascending position along the slice normal (the vendor's stacking direction where the header
states it, as Siemens' CSA SliceNormalVector, else row x column direction); a fourth axis holds
repeated acquisitions in acquisition order. The affine is RAS (DICOM LPS with x and y negated).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom

from brainkit.errors import BadInputError
from brainkit.io.checks import MIN_SLICES
from brainkit.io.dicom.files import looks_like_dicom, read_datasets
from brainkit.io.dicom.frames import Frame, decoded_pixels, frame_pixels, frames_of, uih_mosaic_size
from brainkit.spatial import LINEAR, Grid, Reorient, resample_to_grid

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
POSITION_TOLERANCE_MM = 0.01


@dataclass
class DicomVolume:
    """A converted series: data (X, Y, Z[, T]) in dcm2niix voxel order, RAS affine, and its frames."""

    data: np.ndarray
    affine: np.ndarray
    frames: list[Frame]
    name: str
    notes: list[str] = field(default_factory=list)
    # Output axis of the DICOM row direction, column direction and slice normal (they move when a 3D
    # acquisition is stored nearest RAS); the sidecar's PhaseEncodingAxis follows them.
    dicom_axes: tuple[int, int, int] = (0, 1, 2)

    @property
    def dataset(self) -> pydicom.Dataset:
        return self.frames[0].dataset


def series_name(ds: pydicom.Dataset) -> str:
    """dcm2niix's `%s_%p` naming: series number and protocol name, with unsafe characters replaced."""
    protocol = str(ds.get("ProtocolName", "") or ds.get("SeriesDescription", "") or "series")
    protocol = re.sub(r"[^A-Za-z0-9._-]+", "_", protocol).strip("_") or "series"
    number = str(ds.get("SeriesNumber", "") or "")
    return f"{number}_{protocol}" if number else protocol


def _split_suffix(key: tuple, echoes: list[str]) -> str:
    """`_e<n>` (n: rank of the echo in order of appearance) when a series has several echoes, then the part."""
    _, _, echo, part = key
    suffix = f"_e{echoes.index(echo) + 1}" if len(echoes) > 1 else ""
    return suffix + {"M": "", "P": "_ph", "PHASE": "_ph", "R": "_real", "REAL": "_real", "I": "_imaginary",
                     "IMAGINARY": "_imaginary", "FIELD_MAP": "_fieldmap", "B0": "_fieldmap"}[part]


def check_orientation(frames: list[Frame], where: object) -> None:
    """One series, one slice orientation (dcm2niix habit: refuse to mix)."""
    orientations = np.array([f.orientation for f in frames])
    if np.abs(orientations - orientations[0]).max() > 1e-3:
        count = len(np.unique(np.round(orientations, 3), axis=0))
        raise BadInputError(where, f"inconsistent slice orientation ({count} orientations in one series): "
                                   "not one volume")


def slices_and_volumes(frames: list[Frame], where: object) -> list[list[Frame]]:
    """Frames arranged as slices[k][t]: k by position along the normal, t by acquisition order."""
    normal = frames[0].normal
    distance = np.array([f.position @ normal for f in frames])
    order = np.argsort(distance, kind="stable")
    slices: list[list[Frame]] = []
    last = None
    for index in order:
        if last is None or distance[index] - last > POSITION_TOLERANCE_MM:
            slices.append([])
            last = distance[index]
        slices[-1].append(frames[index])
    counts = {len(s) for s in slices}
    if len(slices) == 1:
        what = "a single 2D image" if len(frames) == 1 else f"{len(frames)} images, all at one position,"
        raise BadInputError(where, f"{what} is not a volume: give a 3D series (brainkit needs at least "
                                   f"{MIN_SLICES} slices)")
    if len(counts) > 1:
        raise BadInputError(where, f"slice positions hold {min(counts)} to {max(counts)} images: missing slices or "
                                   "mixed acquisitions, refusing to build a volume")
    if len(slices) < MIN_SLICES:
        raise BadInputError(where, f"only {len(slices)} slices: not a volume (brainkit needs at least {MIN_SLICES}; "
                                   "a localizer or a partial series?)")
    return [sorted(s, key=lambda f: f.order) for s in slices]


@dataclass(frozen=True)
class Repairs:
    """Geometry problems the user allows brainkit to repair by resampling instead of refusing the series."""

    tilt: bool = False  # gantry tilt: resample onto the orthogonal grid (--tilt-correct)
    uneven_spacing: bool = False  # uneven slice gaps: interpolate onto even slices (--even-slices)


NO_REPAIRS = Repairs()


def is_uneven(gaps: np.ndarray) -> bool:
    """Gaps between slices differ by more than 1% (plus 1 micrometre of rounding)."""
    return bool(gaps.max() - gaps.min() > 0.01 * gaps.mean() + 1e-3)


def slice_distances(slices: list[list[Frame]], where: object, repairs: Repairs) -> np.ndarray:
    """Position of each slice along the normal (mm from the first); refuse uneven spacing unless allowed."""
    positions = np.array([s[0].position for s in slices])
    distances = (positions - positions[0]) @ slices[0][0].normal
    gaps = np.diff(distances)
    if is_uneven(gaps) and not repairs.uneven_spacing:
        raise BadInputError(where, f"inconsistent slice spacing ({gaps.min():.3g} to {gaps.max():.3g} mm): missing "
                                   "slices or variable spacing, refusing to build a volume (rerun with "
                                   "--even-slices to interpolate onto even slices)")
    return distances


def slice_step(slices: list[list[Frame]], distances: np.ndarray, spacing: float) -> tuple[np.ndarray, float]:
    """Step between slices `spacing` mm apart along the stack (LPS mm) and the gantry tilt in degrees."""
    positions = np.array([s[0].position for s in slices])
    step = (positions[-1] - positions[0]) / distances[-1] * spacing
    normal = slices[0][0].normal
    along = float(step @ normal)
    lateral = float(np.linalg.norm(step - along * normal))
    return step, math.degrees(math.atan2(lateral, abs(along)))


def even_slices(data: np.ndarray, distances: np.ndarray) -> tuple[np.ndarray, float]:
    """Interpolate (linearly, along the stack) slices at uneven `distances` onto even slices as close together
    as the closest pair, so no acquired detail is lost; returns the data and the new spacing (mm)."""
    spacing = float(np.diff(distances).min())
    targets = np.arange(int(math.floor(distances[-1] / spacing + 1e-6)) + 1) * spacing
    upper = np.clip(np.searchsorted(distances, targets, side="right"), 1, len(distances) - 1)
    weight = ((targets - distances[upper - 1]) / (distances[upper] - distances[upper - 1]))[:, None]
    below, above = data[:, :, upper - 1].astype(np.float32), data[:, :, upper].astype(np.float32)
    return below * (1 - weight) + above * weight, spacing


def voxel_affine(frame: Frame, step: np.ndarray) -> np.ndarray:
    """RAS affine of dcm2niix's voxel order for a stack starting at `frame` (rows flipped)."""
    row_dir, col_dir = frame.orientation[:3], frame.orientation[3:]
    row_spacing, col_spacing = frame.spacing
    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_spacing
    lps[:3, 1] = -col_dir * row_spacing
    lps[:3, 2] = step
    lps[:3, 3] = frame.position + (frame.shape[0] - 1) * row_spacing * col_dir
    return LPS_TO_RAS @ lps


def stack_pixels(slices: list[list[Frame]]) -> np.ndarray:
    """(X, Y, Z, T) scaled voxel values; each file's pixels are decoded once.

    Frames are copied whole into a (Z, T, rows, columns) buffer, and the result is a transposed view of it
    (columns fastest in memory, as NIfTI stores them), so no strided per-slice copies are made.
    """
    first = slices[0][0]
    decoded: dict[int, np.ndarray] = {}
    buffer = None
    for k, frames in enumerate(slices):
        for t, frame in enumerate(frames):
            key = id(frame.dataset)
            if key not in decoded:
                try:
                    decoded[key] = decoded_pixels(frame.dataset)
                except Exception as err:  # noqa: BLE001 - codec errors name the file, never crash the batch
                    raise BadInputError(frame.path, f"pixel data cannot be decoded ({err})") from err
            image = frame_pixels(frame, decoded[key])
            if image.shape != first.shape:
                raise BadInputError(frame.path, f"image of {image.shape} pixels where {first.shape} was expected")
            if buffer is None:
                buffer = np.empty((len(slices), len(frames), *first.shape), image.dtype)
            buffer[k, t] = image
    slopes = np.array([[f.slope for f in frames] for frames in slices], np.float32)[..., None, None]
    intercepts = np.array([[f.intercept for f in frames] for frames in slices], np.float32)[..., None, None]
    if np.any(slopes != 1) or np.any(intercepts != 0):
        buffer = buffer * slopes + intercepts
    return buffer.transpose(3, 2, 0, 1)[:, ::-1]


def correct_tilt(data: np.ndarray, affine: np.ndarray, frame: Frame, step: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Resample a tilted stack (sheared affine) onto the orthogonal grid that shares its first slice; space
    outside the acquired stack gets the image's minimum (air, or the scanner's padding value), not 0 (water in CT)."""
    normal = frame.normal
    orthogonal = voxel_affine(frame, normal * float(step @ normal))
    grid = Grid(data.shape[:3], orthogonal)
    moved = np.moveaxis(data, 3, 0).astype(np.float32)
    resampled = resample_to_grid(moved, Grid(data.shape[:3], affine), grid, order=LINEAR, fill=float(moved.min()))
    return np.moveaxis(resampled, 0, 3), orthogonal


def assemble(frames: list[Frame], where: object, repairs: Repairs = NO_REPAIRS) -> DicomVolume:
    """Build one volume from one series' frames, or raise BadInputError saying why it is not one."""
    check_orientation(frames, where)
    slices = slices_and_volumes(frames, where)
    distances = slice_distances(slices, where, repairs)
    data = stack_pixels(slices)
    notes = []
    spacing = distances[-1] / (len(distances) - 1)
    gaps = np.diff(distances)
    if is_uneven(gaps):
        data, spacing = even_slices(data, distances)
        notes.append(f"uneven slice spacing ({gaps.min():.3g} to {gaps.max():.3g} mm) interpolated onto "
                     f"{data.shape[2]} slices {spacing:.3g} mm apart")
    step, tilt = slice_step(slices, distances, spacing)
    affine = voxel_affine(slices[0][0], step)
    if tilt > 0.5:
        if not repairs.tilt:
            raise BadInputError(where, f"gantry tilt of {tilt:.1f} degrees: rerun with --tilt-correct to resample "
                                       "onto an orthogonal grid")
        data, affine = correct_tilt(data, affine, slices[0][0], step)
        notes.append(f"gantry tilt of {tilt:.1f} degrees corrected by resampling")
    volume = DicomVolume(data, affine, [s[0] for s in slices], series_name(frames[0].dataset), notes)
    if data.shape[3] == 1:
        volume.data = data[..., 0]
        if is_3d_acquisition(frames[0].dataset):
            store_nearest_ras(volume)
    return volume


def is_3d_acquisition(ds: pydicom.Dataset) -> bool:
    """MRAcquisitionType (0018,0023) says 3D (a slab encoded as a volume, not a stack of 2D slices)."""
    return str(ds.get("MRAcquisitionType", "")).upper() == "3D"


def store_nearest_ras(volume: DicomVolume) -> None:
    """dcm2niix quirk (its nii_setOrtho): a single-volume 3D acquisition is stored with its voxel axes permuted
    and flipped to the order nearest RAS, where 2D acquisitions keep the DICOM order with rows flipped. The
    world image is the same either way. Proven by dcm_qa_enh Philips IM_0027_fMAP (3D field map: RAS, not LAS).
    """
    step = Reorient.to_ras(Grid(volume.data.shape, volume.affine))
    volume.data = step.apply(volume.data)
    volume.affine = step.target.affine
    volume.dicom_axes = tuple(int(axis) for axis in step.ornt[:, 0])


def assemble_folder(folder: Path, repairs: Repairs = NO_REPAIRS) -> tuple[list[DicomVolume | BadInputError], list[str]]:
    """Every series in a folder (not recursive): a volume or the reason it is not one; plus notes on skipped
    files (unreadable, non-image objects)."""
    paths = sorted(p for p in folder.iterdir() if p.is_file() and looks_like_dicom(p))
    groups, skipped, unreadable = frames_by_series(paths)
    if not groups and not skipped and not unreadable:
        skipped.append("no DICOM files")
    results = [mention_unreadable(result, unreadable) for result in assemble_series(groups, folder, repairs)]
    return results, unreadable + skipped


def mention_unreadable(result: DicomVolume | BadInputError, unreadable: list[str]) -> DicomVolume | BadInputError:
    """Tell a series about the folder's unreadable files: one of them may have been its slice (a copy cut short
    loses the last file, and with it an end slice no gap check can miss)."""
    if not unreadable:
        return result
    listed = "; ".join(unreadable[:2]) + (f"; {len(unreadable) - 2} more" if len(unreadable) > 2 else "")
    text = f"{len(unreadable)} file(s) of this folder could not be read ({listed})"
    if isinstance(result, BadInputError):
        return BadInputError(result.source, f"{result.message}; {text}")
    result.notes.append(f"{text}: if one was a slice of this series, the series is incomplete")
    return result


def frames_by_series(paths: list[Path]) -> tuple[dict[tuple, list[Frame]], list[str], list[str]]:
    """The image frames of these files grouped by series (and echo, image type...), in the order they appear; notes
    on the files skipped (not image slices); and the files that could not be read, with the reason."""
    notes: list[str] = []
    unreadable: list[str] = []
    groups: dict[tuple, list[Frame]] = defaultdict(list)
    for path, ds, error in read_datasets(paths):
        if error:
            unreadable.append(error)
            continue
        if uih_mosaic_size(ds):
            notes.append(f"{path.name}: skipped, a United Imaging mosaic ({uih_mosaic_size(ds)} slices in one "
                         "image) is not supported yet: convert this series with dcm2niix")
            continue
        frames = frames_of(path, ds)
        if not frames:
            notes.append(f"{path.name}: skipped, not an image volume slice ({ds.get('SOPClassUID', 'no SOP class')})")
        for frame in frames:
            groups[frame.split].append(frame)
    return groups, notes, unreadable


def assemble_series(groups: dict[tuple, list[Frame]], folder: Path,
                    repairs: Repairs) -> list[DicomVolume | BadInputError]:
    """One volume (uniquely named) or the reason it cannot be one, per group of frames."""
    echoes: dict[tuple, list[str]] = defaultdict(list)
    for key in groups:  # groups keep the order frames appeared in
        if key[2] not in echoes[key[:2]]:
            echoes[key[:2]].append(key[2])
    results: list[DicomVolume | BadInputError] = []
    used: set[str] = set()
    for key, frames in groups.items():
        # refused series get unique names too, so two refusals in one folder can be told apart
        name = _unique(series_name(frames[0].dataset) + _split_suffix(key, echoes[key[:2]]), used)
        try:
            volume = assemble(frames, folder / name, repairs)
        except BadInputError as err:
            results.append(err)
            continue
        volume.name = name
        results.append(volume)
    return results


def _unique(name: str, used: set[str]) -> str:
    candidate, letter = name, ord("a")
    while candidate in used:
        candidate = f"{name}_{chr(letter)}"
        letter += 1
    used.add(candidate)
    return candidate
