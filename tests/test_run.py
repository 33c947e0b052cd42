"""`brainkit run`: a batch with DICOM, NIfTI and a broken file gives every output and a report that renders."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from brainkit.io.discover import InputItem
from brainkit.pipeline import (
    CACHE,
    cache_stamp,
    cached_result,
    reference_first,
    run_pipeline,
    session_of,
    volumes_to_process,
)
from tests.conftest import blob_volume, save_nifti


@pytest.fixture(scope="module")
def run_output(shared_data, tmp_path_factory) -> tuple[Path, list[dict], list]:
    root = tmp_path_factory.mktemp("run")
    inputs = root / "in"
    anat = inputs / "sub-01" / "anat"
    anat.mkdir(parents=True)
    shutil.copy(shared_data / "heads" / "allineate_T1w2mm.nii.gz", anat / "sub-01_T1w.nii.gz")
    shutil.copy(shared_data / "heads" / "nipy_anatomical_2mm.nii.gz", anat / "sub-01_acq-b_T1w.nii.gz")
    (anat / "sub-01_FLAIR.nii.gz").write_bytes(b"not an image")
    shutil.copytree(shared_data / "dicom" / "neurolabusc__dcm_qa_nih" / "In" / "20180918GE" / "mr_0004",
                    inputs / "sub-02" / "dicom")
    scans, failures = run_pipeline([inputs], root / "out")
    return root / "out", scans, failures


def test_every_good_input_is_complete_and_the_bad_one_is_reported(run_output):
    out, scans, failures = run_output
    assert sorted(Path(s["source"]).name for s in scans) == ["4_DCM2NIIX_regression_test.nii.gz",
                                                             "sub-01_T1w.nii.gz", "sub-01_acq-b_T1w.nii.gz"]
    assert [Path(f.source).name for f in failures] == ["sub-01_FLAIR.nii.gz"]
    html = (out / "report.html").read_text()
    assert "sub-01_FLAIR.nii.gz" in html and "failed" in html
    assert html.count("data:image/png;base64,") >= 3  # montages embedded
    assert not re.search(r"(src|href)=\"https?://", html)  # self-contained: no network links
    assert (out / "converted").is_dir() and list((out / "converted").rglob("*.nii.gz"))


def test_a_scan_whose_field_of_view_cuts_through_the_brain_gets_a_note_with_its_volumes(run_output):
    out, scans, _ = run_output
    notes = {Path(scan["name"]).name: scan["segment"]["volumes"].get("note") for scan in scans if "segment" in scan}
    assert notes["sub-01_T1w"] is None  # a head whose neck leaves the field of view: the brain is whole
    assert "field of view cuts through the brain" in notes["sub-01_acq-b_T1w"]  # a block from inside one
    assert notes["sub-01_acq-b_T1w"] in (out / "report.html").read_text()
    assert "note" not in (out / "volumes.csv").read_text().splitlines()[0]


def test_a_resumed_run_reuses_finished_scans(run_output):
    out, scans, _ = run_output
    cached = sorted((out / CACHE).rglob("*.json"))
    assert len(cached) == len(scans)
    stamps = [path.stat().st_mtime_ns for path in cached]
    again, failures = run_pipeline([out.parent / "in"], out)
    assert [path.stat().st_mtime_ns for path in cached] == stamps  # finished scans were not recomputed
    assert len(again) == len(scans) and len(failures) == 1


def test_a_cached_result_is_reused_only_for_the_same_file_and_version(tmp_path):
    first, second = tmp_path / "a" / "t1.nii.gz", tmp_path / "b" / "t1.nii.gz"  # same name, other files
    for path, size in ((first, 10), (second, 20)):
        path.parent.mkdir()
        path.write_bytes(bytes(size))
    stamp = cache_stamp(InputItem(first, first.parent, "volume"))
    cache = tmp_path / "t1.json"
    cache.write_text(json.dumps({"name": "t1", "stamp": stamp}))
    assert cached_result(cache, stamp) == {"name": "t1", "stamp": stamp}
    assert cached_result(cache, cache_stamp(InputItem(second, second.parent, "volume"))) is None
    assert cached_result(cache, {**stamp, "brainkit": "0.0.1"}) is None
    cache.write_text('{"name": "t1", "stamp"')  # cut short by a killed run
    assert cached_result(cache, stamp) is None
    assert cached_result(tmp_path / "absent.json", stamp) is None


def test_the_cache_stamp_names_the_file_not_the_path_as_typed(tmp_path, monkeypatch):
    for folder in ("a", "b"):  # same relative name and size, two files
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "t1.nii.gz").write_bytes(bytes(10))
    stamps = []
    for folder in ("a", "b"):
        monkeypatch.chdir(tmp_path / folder)
        stamps.append(cache_stamp(InputItem(Path("t1.nii.gz"), Path("."), "volume")))
    assert stamps[0] != stamps[1]
    assert cache_stamp(InputItem(Path("./t1.nii.gz"), Path("."), "volume")) == stamps[1]
    assert cache_stamp(InputItem(tmp_path / "b" / "t1.nii.gz", tmp_path / "b", "volume")) == stamps[1]


def test_sessions_follow_bids_entities_or_folders():
    assert session_of("/d/sub-01/ses-2/anat/sub-01_ses-2_T1w.nii.gz") == "sub-01_ses-2"
    assert session_of("/d/patientA/t1.nii.gz") == "/d/patientA"


def test_a_sessions_t1_is_the_reference_its_other_scans_are_checked_against():
    def order(*names: str) -> list[str]:
        return [Path(scan["source"]).name for scan in reference_first([{"source": f"/d/p/{n}"} for n in names])]

    assert order("sub-1_FLAIR.nii.gz", "sub-1_T1w.nii.gz", "sub-1_T2w.nii.gz")[0] == "sub-1_T1w.nii.gz"
    assert order("flair.nii.gz", "3D_MPRAGE.nii.gz")[0] == "3D_MPRAGE.nii.gz"
    assert order("study1_FLAIR.nii.gz", "study1_T1W.nii.gz")[0] == "study1_T1W.nii.gz"
    assert order("patient1_FLAIR.nii.gz", "patient1_T1.nii.gz")[0] == "patient1_T1.nii.gz"
    assert order("b_T2w.nii.gz", "a_t10.nii.gz") == ["b_T2w.nii.gz", "a_t10.nii.gz"]  # no T1: as they came


def test_report_renders_in_a_real_browser_without_console_errors(run_output, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("headless Chromium is not installed (Debian package 'chromium'; `make test` installs it "
                    "where apt-get is allowed)")
    out, _, _ = run_output
    screenshot = tmp_path / "report.png"
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", "--window-size=1200,1600",
         f"--screenshot={screenshot}", (out / "report.html").resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert screenshot.exists() and screenshot.stat().st_size > 20_000, result.stderr[-2000:]
    console_errors = [line for line in result.stderr.splitlines() if "CONSOLE" in line and "ERROR" in line]
    assert console_errors == []
    shutil.copy(screenshot, out / "report_screenshot.png")


def test_a_dask_cluster_runs_the_scans_and_a_bad_file_still_only_fails_itself(real_t1, tmp_path):
    distributed = pytest.importorskip("dask.distributed", reason="dask.distributed is not installed")
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(real_t1, inputs / "a_T1w.nii.gz")
    (inputs / "b_T1w.nii.gz").write_bytes(b"broken")
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
    with cluster:
        scans, failures = run_pipeline([inputs], tmp_path / "out", dask=cluster.scheduler_address)
    assert [Path(s["source"]).name for s in scans] == ["a_T1w.nii.gz"]
    assert [Path(f.source).name for f in failures] == ["b_T1w.nii.gz"]
    assert (tmp_path / "out" / "report.html").exists() and (tmp_path / "out" / "a_T1w_montage.png").exists()


def test_translate_runs_on_t1_scans_only():
    from brainkit.tasks.translate import looks_like_t1

    assert looks_like_t1("sub-01_T1w") and looks_like_t1("patient_T1_brain") and looks_like_t1("sub-1_acq-mprage")
    assert not looks_like_t1("sub-01_T1wCE") and not looks_like_t1("sub-01_T1map") and not looks_like_t1("flair")


def test_with_segmentation_weights_the_report_has_volumes_and_overlays(real_t1, tmp_path, monkeypatch):
    from brainkit import pipeline
    from brainkit.tasks import segment
    from brainkit.weights import save_weights

    monkeypatch.setattr(segment, "WEIGHTS", save_weights(segment.build_model(), tmp_path / "segment.pt"))
    monkeypatch.setattr(pipeline, "_models", {})
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(real_t1, inputs / "a_T1w.nii.gz")
    scans, failures = run_pipeline([inputs], tmp_path / "out")
    assert failures == [] and scans[0]["segment"]["table"][0]["structure"] == "thalamus"
    assert (tmp_path / "out" / "a_T1w_seg.nii.gz").exists() and (tmp_path / "out" / "a_T1w_seg.png").exists()
    assert (tmp_path / "out" / "volumes.csv").read_text().startswith("input,2,3,4")
    assert "Subcortical segmentation" in (tmp_path / "out" / "report.html").read_text()


def test_items_sent_to_dask_workers_carry_absolute_paths_and_the_same_outputs(tmp_path, monkeypatch):
    from brainkit.pipeline import anchored

    monkeypatch.chdir(tmp_path)
    item = InputItem(Path("in/sub-01/T1.nii.gz"), Path("in"), "volume")
    sent = anchored(item)
    assert sent.path == tmp_path / "in/sub-01/T1.nii.gz" and sent.root == tmp_path / "in"
    assert sent.rel_path == item.rel_path == Path("sub-01/T1")


def test_a_pair_regqc_cannot_judge_is_a_note_on_the_scan_and_a_failure_not_a_silent_gap(tmp_path, monkeypatch):
    from brainkit import pipeline
    from brainkit.batch import Failure
    from brainkit.tasks import regqc

    scans = [{"source": f"/d/s/sub-1_{name}.nii.gz"} for name in ("FLAIR", "T1w", "T2w")]
    judged = SimpleNamespace(moving=scans[2]["source"], decision="aligned", p_misaligned=0.1, est_shift_mm=0.3,
                             picture="")
    failure = Failure(f"{scans[1]['source']} + {scans[0]['source']}", "the fixed image shows no head")
    monkeypatch.setattr(regqc, "regqc", lambda pairs, out: ([judged], [failure]))
    assert pipeline.check_alignment(scans, tmp_path) == [failure]
    assert scans[0]["regqc_note"] == "not checked against sub-1_T1w.nii.gz: the fixed image shows no head"
    assert scans[2]["regqc"]["decision"] == "aligned" and scans[2]["regqc"]["fixed_name"] == "sub-1_T1w.nii.gz"
    assert "regqc" not in scans[1] and "regqc_note" not in scans[1]  # the reference itself


def test_a_run_into_its_own_input_folder_does_not_take_its_earlier_outputs_for_scans(tmp_path):
    for name in ("sub-01/T1", "sub-01/T1_seg", "sub-01/T1_synthT2", "sub-01/T1_gradcam", "converted/dicom/series"):
        save_nifti(tmp_path / f"{name}.nii.gz", blob_volume())
    items, failures = volumes_to_process([tmp_path], tmp_path)
    assert [item.rel_path.as_posix() for item in items] == ["sub-01/T1"] and failures == []
