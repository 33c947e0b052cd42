"""Orientation job: preparation from world axes, exact antisymmetry, decisions, fix, and the bundled model."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from brainkit.io import Scan
from brainkit.nets.mirror import mirror_classifier
from brainkit.tasks import orient
from tests.conftest import blob_volume


def lopsided_head(affine: np.ndarray) -> Scan:
    """A blob with a bright lump on the patient's left (world x < 0), in the voxel order `affine` implies."""
    data = blob_volume((60, 60, 60), noise=0.0)
    world = np.stack(np.meshgrid(*[np.arange(60)] * 3, indexing="ij"), -1) @ affine[:3, :3].T + affine[:3, 3]
    data[(world[..., 0] < -15) & (np.abs(world[..., 1]) < 10) & (np.abs(world[..., 2]) < 10)] += 200
    return Scan(data=data, affine=affine, header=None, source=orient.Path("x.nii.gz"), rel_path=orient.Path("x"))


def test_prepare_works_from_world_axes_not_voxel_order():
    ras = np.diag([3.0, 3.0, 3.0, 1.0])
    ras[:3, 3] = -88.5
    las = ras.copy()
    las[0, 0], las[0, 3] = -3.0, 88.5
    first, geometry = orient.prepare(lopsided_head(ras))
    second, _ = orient.prepare(lopsided_head(las))
    assert first.shape == (1, 1, 64, 64, 64) and geometry.grid.axcodes == "RAS"
    assert torch.allclose(first, second, atol=1e-5)  # same anatomy, different voxel order: same model input
    assert float(first.min()) >= 0 and float(first.max()) <= 1


def test_model_is_exactly_antisymmetric_under_mirroring():
    torch.manual_seed(0)
    model = mirror_classifier((32, 32, 32), channels=(4, 8)).eval()
    x = torch.rand(3, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), -model(x.flip(2)), atol=1e-5)


def test_decisions_and_uncertain_band():
    assert orient.decide(0.01) == "ok"
    assert orient.decide(0.99) == "flipped"
    assert orient.decide(0.5) == "uncertain"


def test_corrected_copy_mirrors_the_world_x_axis_whatever_the_voxel_order():
    affine = np.array([[0, 0, -1.0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]])  # voxel axis 2 -> world x
    scan = lopsided_head(affine)
    fixed = orient.corrected_copy(scan)
    assert np.array_equal(fixed, scan.data[:, :, ::-1])


@pytest.fixture(scope="module")
def bundled_model():
    if not orient.WEIGHTS.exists():
        pytest.fail(f"bundled weights {orient.WEIGHTS} are missing")
    return orient.load_model()


def test_real_scan_and_its_mirror_get_opposite_decisions(shared_data, bundled_model):
    from brainkit import load

    scan = load(shared_data / "t1_depression" / "sub-53_T1w.nii.gz")  # a validation subject
    tensor, _ = orient.prepare(scan)
    p = orient.p_flipped(tensor, bundled_model)
    mirrored = orient.Scan(data=orient.corrected_copy(scan), affine=scan.affine, header=None, source=scan.source,
                           rel_path=scan.rel_path)
    q = orient.p_flipped(orient.prepare(mirrored)[0], bundled_model)
    assert orient.decide(p) == "ok"
    assert orient.decide(q) == "flipped"


def test_orient_cli_end_to_end(shared_data, tmp_path, bundled_model):
    from tests.test_cli import brainkit

    good = shared_data / "heads" / "seg3d_T1_head.nii.gz"
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"")
    result = brainkit("orient", str(good), str(bad), "-o", str(tmp_path / "out"), "--explain", "--quiet")
    assert result.returncode == 1  # the bad input fails, the good one is complete
    rows = list(csv.DictReader((tmp_path / "out" / "orientation.csv").read_text().splitlines()))
    assert [row["input"] for row in rows] == [str(good)]
    assert rows[0]["decision"] in {"ok", "flipped", "uncertain"} and 0 <= float(rows[0]["p_flipped"]) <= 1
    assert (tmp_path / "out" / "seg3d_T1_head_gradcam.nii.gz").exists()
    assert (tmp_path / "out" / "seg3d_T1_head_gradcam.png").exists()
    assert "empty file" in result.stdout + result.stderr
