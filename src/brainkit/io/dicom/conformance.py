"""Side-by-side comparison with dcm2niix, the field's reference converter (its PyPI build), and with the
NIfTI references a validation suite ships (`Ref/`). Used by tests and `benchmarks/dicom_conformance.py`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from brainkit.errors import BadInputError
from brainkit.io.dicom.assemble import NO_REPAIRS, DicomVolume, Repairs, assemble_folder, series_name

AFFINE_TOLERANCE_MM = 1e-3
GEOMETRY_WORDS = re.compile(r"tilt|interslice|slice spacing|distance varies|missing|orientation", re.IGNORECASE)


@dataclass
class Comparison:
    """One series: brainkit's result against a reference NIfTI (or why there is none)."""

    folder: str
    series: str
    status: str  # "match", "same world", "mismatch", "refused", "no reference"
    detail: str = ""
    reference: str = ""
    affine_error_mm: float | None = None
    value_error: float | None = None


def dcm2niix_executable() -> str | None:
    """The dcm2niix binary installed by the `dcm2niix` PyPI package (or on PATH)."""
    beside = Path(sys.executable).with_name("dcm2niix")
    return str(beside) if beside.exists() else shutil.which("dcm2niix")


def run_dcm2niix(folder: Path, out_dir: Path) -> tuple[list[Path], list[str]]:
    """Convert one folder (not recursive) with dcm2niix, named `%s_%p` like brainkit.

    Returns its NIfTI files and the warnings it printed about the images' geometry.
    """
    executable = dcm2niix_executable()
    if executable is None:
        raise RuntimeError("dcm2niix is not installed: pip install dcm2niix")
    out_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([executable, "-z", "y", "-d", "0", "-f", "%s_%p", "-o", str(out_dir), str(folder)],
                            capture_output=True, text=True, timeout=600, check=False)
    warnings = [line.removeprefix("Warning:").strip() for line in (result.stdout + result.stderr).splitlines()
                if line.startswith("Warning:") and GEOMETRY_WORDS.search(line)]
    return sorted(out_dir.glob("*.nii.gz")), warnings


def _errors(ours: np.ndarray, our_affine: np.ndarray, image: nib.Nifti1Image) -> tuple[float, float]:
    theirs = np.asarray(image.dataobj, dtype=np.float64)
    return float(np.abs(image.affine - our_affine).max()), float(np.abs(theirs - ours.astype(np.float64)).max())


def compare_arrays(ours: DicomVolume, reference: Path) -> tuple[str, str, float, float]:
    """Shape, affine (mm) and voxel values (after each side's scaling) of our volume against a NIfTI file.

    Returns (status, detail, affine error, value error): "match" when identical within rescale rounding;
    "same world" when only the voxel storage order differs (both reoriented to RAS agree); else "mismatch".
    """
    image = nib.load(str(reference))
    if sorted(image.shape) != sorted(ours.data.shape):
        return "mismatch", f"shape {tuple(ours.data.shape)} vs {tuple(image.shape)}", float("nan"), float("nan")
    slope = max(abs(f.slope) for f in ours.frames)
    tolerance = 0.5 * slope + 1e-3 * max(1.0, float(np.abs(np.asarray(image.dataobj)).max()))  # rescale rounding
    if tuple(image.shape) == tuple(ours.data.shape):
        affine_error, value_error = _errors(ours.data, ours.affine, image)
        if affine_error <= AFFINE_TOLERANCE_MM and value_error <= tolerance:
            return "match", "", affine_error, value_error
    ours_ras = nib.as_closest_canonical(nib.Nifti1Image(ours.data, ours.affine))
    affine_error, value_error = _errors(np.asarray(ours_ras.dataobj), ours_ras.affine, nib.as_closest_canonical(image))
    if affine_error <= AFFINE_TOLERANCE_MM and value_error <= tolerance:
        theirs, mine = ("".join(nib.aff2axcodes(a)) for a in (image.affine, ours.affine))
        return "same world", f"voxel order differs: reference {theirs}, brainkit {mine}", affine_error, value_error
    return "mismatch", f"affine error {affine_error:.3g} mm, value error {value_error:.3g}", affine_error, value_error


def world_agreement(ours: DicomVolume, reference: Path, above: float = -1000.0) -> float:
    """Correlation of our volume with a reference NIfTI on a different grid, in world space: the reference's
    voxels (every second one) inside our volume where both images exceed `above` (inside the head for CT).
    For repaired series (tilt, uneven slices), which each converter resamples onto its own grid."""
    from scipy import ndimage

    image = nib.load(str(reference))
    theirs = np.asarray(image.dataobj, dtype=np.float32)
    index = np.stack(np.meshgrid(*[np.arange(0, n, 2) for n in theirs.shape[:3]], indexing="ij"), -1).reshape(-1, 3)
    voxel_map = np.linalg.inv(ours.affine) @ image.affine
    ours_index = voxel_map[:3, :3] @ index.T + voxel_map[:3, 3:]
    inside = np.all((ours_index > 0) & (ours_index < np.array(ours.data.shape[:3])[:, None] - 1), axis=0)
    mine = ndimage.map_coordinates(ours.data.astype(np.float32), ours_index[:, inside], order=1)
    reference_values = theirs[tuple(index[inside].T)]
    both = (mine > above) & (reference_values > above)
    return float(np.corrcoef(mine[both], reference_values[both])[0, 1])


def _pick(volume: DicomVolume, candidates: list[Path]) -> Path | None:
    """The reference file for our volume: same name, else same series number and shape."""
    by_name = [p for p in candidates if p.name == f"{volume.name}.nii.gz"]
    if by_name:
        return by_name[0]
    number = str(volume.dataset.get("SeriesNumber", ""))
    pattern = re.compile(rf"(^|_){re.escape(number)}(_.*)?$")
    same_series = [p for p in candidates if pattern.search(p.name[:-7]) or p.name[:-7].startswith(f"{number}_")]
    same_shape = [p for p in same_series if sorted(nib.load(str(p)).shape) == sorted(volume.data.shape)]
    tokens = set(volume.name[len(series_name(volume.dataset)):].split("_")) - {""}
    return max(same_shape, key=lambda p: len(tokens & set(p.name[:-7].split("_"))), default=None)


def compare_folder(folder: Path, suite_ref: Path | None = None, repairs: Repairs = NO_REPAIRS) -> list[Comparison]:
    """Every series of one DICOM folder: against the suite's Ref/ NIfTI when one matches, else dcm2niix's."""
    volumes, _ = assemble_folder(folder, repairs)
    with tempfile.TemporaryDirectory() as tmp:
        converted, warnings = run_dcm2niix(folder, Path(tmp))
        references = sorted(suite_ref.glob("*.nii.gz")) if suite_ref is not None and suite_ref.is_dir() else []
        results = []
        for volume in volumes:
            if isinstance(volume, BadInputError):
                name = Path(volume.source or "").name
                theirs = [p.name for p in converted if p.name.startswith(name.split("_")[0] + "_")]
                said = f"dcm2niix wrote {', '.join(theirs)}" if theirs else "dcm2niix wrote nothing for it either"
                if warnings:
                    said += " and warned: " + "; ".join(f'"{w}"' for w in warnings)
                results.append(Comparison(str(folder), name, "refused", f"{volume.message}; {said}"))
                continue
            reference = _pick(volume, references) or _pick(volume, converted)
            if reference is None:
                results.append(Comparison(str(folder), volume.name, "no reference", "no matching dcm2niix output"))
                continue
            status, detail, affine_error, value_error = compare_arrays(volume, reference)
            source = "Ref" if reference in references else "dcm2niix"
            results.append(Comparison(str(folder), volume.name, status, detail, f"{source}:{reference.name}",
                                      affine_error, value_error))
    return results
