"""End-to-end tests of the command line: info over the real data folder, demo, bad inputs."""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from brainkit.demo import write_demo_inputs
from brainkit.io import load
from brainkit.pipeline import CACHE
from brainkit.runtime import keep_freed_memory
from tests.conftest import blob_volume, save_nifti


def brainkit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "brainkit.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_info_on_the_whole_real_data_folder_gives_a_row_or_a_reason_for_every_input(shared_data, tmp_path):
    result = brainkit("info", str(shared_data), "-o", str(tmp_path), "--quiet")
    assert "Traceback" not in result.stdout + result.stderr
    rows = list(csv.DictReader((tmp_path / "info.csv").read_text().splitlines()))
    files = [row["file"] for row in rows]
    for image in sorted(shared_data.rglob("*.nii.gz")) + sorted(shared_data.rglob("*.mgz")):
        assert str(image) in files, f"{image} has no info row"
    t1 = next(row for row in rows if row["file"].endswith("sub-01_T1w.nii.gz"))
    assert t1["orientation"] == "LAS" and t1["problems"] == ""
    failing = [row for row in rows if "failing/gantrytilting" in row["file"]]
    assert failing and "tilt" in failing[0]["problems"]
    assert result.returncode == 1  # shared/ holds broken inputs on purpose


def test_info_exit_code_is_zero_when_every_input_is_good(tmp_path):
    path = save_nifti(tmp_path / "a.nii.gz", blob_volume())
    result = brainkit("info", str(path))
    assert result.returncode == 0, result.stderr
    assert "24x28x20" in result.stdout


def test_info_names_the_bad_file_and_fails(tmp_path):
    good = save_nifti(tmp_path / "good.nii.gz", blob_volume())
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"")
    result = brainkit("info", str(good), str(bad))
    assert result.returncode == 1
    assert "empty file" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr



def test_info_on_a_folder_without_images_fails_and_says_so(tmp_path):
    result = brainkit("info", str(tmp_path))
    assert result.returncode == 1
    assert "no NIfTI, MGZ or DICOM image in this folder" in result.stdout + result.stderr

def test_demo_writes_inputs_info_and_montage_and_redoes_an_earlier_demo(tmp_path):
    stale = tmp_path / "demo" / CACHE / "mni152_t1.json"  # what an earlier version's demo left behind
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps({"name": "mni152_t1", "source": "old", "orient": {"p_flipped": 1.0,
                                                                                  "decision": "flipped"}}))
    result = brainkit("demo", "-o", str(tmp_path / "demo"), "--quiet")
    assert result.returncode == 0, result.stderr
    decisions = [row["decision"] for row in csv.DictReader((tmp_path / "demo" / "orientation.csv").open())]
    assert decisions == ["uncertain", "uncertain"]  # the symmetric template and its mirror, both redone
    for name in ("inputs/mni152_t1.nii.gz", "inputs/mni152_t1_mirrored.nii.gz", "info.csv", "montage.png",
                 "report.html", "mni152_t1_montage.png"):
        assert (tmp_path / "demo" / name).stat().st_size > 0, name
    assert (tmp_path / "demo" / "montage.png").read_bytes()[:4] == b"\x89PNG"


def test_demo_inputs_are_the_bundled_template_and_its_mirror(tmp_path):
    plain, mirrored = (load(path) for path in write_demo_inputs(tmp_path))
    assert plain.shape == (197, 233, 189) and plain.data.max() == 1.0
    np.testing.assert_array_equal(mirrored.data, plain.data[::-1])
    np.testing.assert_array_equal(mirrored.affine, plain.affine)


def test_synth_writes_images_labels_params_and_montage(tmp_path, shared_data):
    labels = shared_data / "synthseg_label_maps" / "training_seg_01.nii.gz"
    result = brainkit("synth", "--labels", str(labels), "-n", "3", "--shape", "48", "--spacing", "4",
                      "-o", str(tmp_path), "--seed", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    import nibabel as nib
    import numpy as np

    image = nib.load(str(tmp_path / "synth_0002_image.nii.gz"))
    label_map = np.asarray(nib.load(str(tmp_path / "synth_0002_labels.nii.gz")).dataobj)
    assert image.shape == (48, 48, 48) and np.allclose(image.header.get_zooms(), 4.0)
    assert {17, 53}.issubset(set(np.unique(label_map).tolist()))  # FreeSurfer numbers, not indices
    assert (tmp_path / "montage.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "synth_0000_params.json").exists()


def test_synth_random_shapes_without_label_maps(tmp_path):
    result = brainkit("synth", "-n", "2", "--shape", "32", "-o", str(tmp_path), "--quiet")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "synth_0001_image.nii.gz").exists()



def test_synth_names_a_labels_folder_without_label_maps(tmp_path):
    (tmp_path / "maps").mkdir()
    result = brainkit("synth", "--labels", str(tmp_path / "maps"), "-n", "1", "-o", str(tmp_path / "out"))
    assert result.returncode != 0 and "no label map (NIfTI or MGZ) in" in result.stderr
    assert "Traceback" not in result.stderr

def test_malloc_keeps_freed_memory_where_the_c_library_is_glibc():
    """Without these settings a CPU segmentation spent a third of its time in the kernel (see runtime)."""
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt settings are glibc's")
    assert keep_freed_memory()


def test_release_freed_memory_returns_kept_memory_to_the_os():
    """`brainkit run` releases what one job freed before the next (see runtime.release_freed_memory)."""
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")
    code = ("import numpy as np; from brainkit.runtime import keep_freed_memory, release_freed_memory\n"
            "rss = lambda: int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) // 1024\n"
            "keep_freed_memory(); block = np.ones(200 * 2**20, np.uint8); del block; kept = rss()\n"
            "released = release_freed_memory(); print(kept, rss(), released)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    kept, after, released = result.stdout.split()
    assert released == "True"
    assert int(kept) - int(after) > 150  # MB: the freed 200 MB block was held, then handed back


def test_threads_apply_to_torch_imported_after_configure():
    """`brainkit run` imports torch per scan, after `configure`; --threads must still hold there."""
    code = ("from brainkit.runtime import configure; configure(threads=1); "
            "import torch; print(torch.get_num_threads())")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "1"


def test_threads_must_be_a_whole_number_of_at_least_one(tmp_path):
    for bad in ("0", "-2", "two"):
        result = brainkit("info", str(tmp_path), "--threads", bad)
        assert result.returncode == 2 and "--threads" in result.stderr and "Traceback" not in result.stderr


def test_an_output_folder_that_cannot_be_written_is_one_line_before_any_work(tmp_path):
    (tmp_path / "a_file").write_text("")
    for output, reason in ((tmp_path / "a_file", "a file, not a folder"), ("/proc/brainkit_out", "cannot write")):
        result = brainkit("info", str(tmp_path), "-o", str(output))
        assert result.returncode == 2 and reason in result.stderr and "Traceback" not in result.stderr
