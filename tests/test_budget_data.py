"""The check set must not hold calibration images (ofconvert.budget.data.require_disjoint,
wired into the run's checks, ConvertOptions.check / steps.plan.preflight): overlap is judged by file content,
so the same images reached through another folder or manifest are refused too."""
import os
import shutil

import pytest
from conftest import has_traceback, run_cli

from ofconvert.budget import data as D
from ofconvert.errors import OfconvertError
from ofconvert.pipeline import ConvertOptions


@pytest.fixture(scope="module")
def sets(datasets, tmp_path_factory):
    """calib: a manifest of 6 real val images; other: 4 different ones; copy: 2 of the
    calibration images copied under new names, beside 2 others."""
    d = tmp_path_factory.mktemp("overlap")
    src = os.path.join(datasets, "imagenet-val-1300")
    files = sorted(f for f in os.listdir(src) if f.endswith(".JPEG"))[:12]
    calib = d / "calib"
    calib.mkdir()
    (calib / "manifest.txt").write_text("".join(os.path.join(src, f) + "\n" for f in files[:6]))
    other = d / "other"
    other.mkdir()
    for f in files[6:10]:
        shutil.copy(os.path.join(src, f), other / f)
    copy = d / "copy"
    copy.mkdir()
    for i, f in enumerate(files[4:8]):            # files 4 and 5 are calibration images
        shutil.copy(os.path.join(src, f), copy / f"renamed_{i}.jpg")
    return str(calib), str(other), str(copy), [os.path.join(src, f) for f in files[:6]]


def _opts(calib, check, tmp_path):
    return ConvertOptions(model="efficientnet_lite0", precision="int8", calib=calib, check_data=check,
                          max_flips="1%", output=str(tmp_path / "m.int8.onnx"))


def test_require_disjoint_by_content(sets):
    calib, other, copy, calib_files = sets
    D.require_disjoint(calib_files, [os.path.join(other, f) for f in sorted(os.listdir(other))])   # no overlap
    renamed = [os.path.join(copy, f) for f in sorted(os.listdir(copy))]
    with pytest.raises(OfconvertError, match=r"shares 2 of its 4 image\(s\) with --calib") as e:
        D.require_disjoint(calib_files, renamed)
    assert "\n" not in str(e.value) and "renamed_" in str(e.value)


@pytest.mark.parametrize("which", ["same", "manifest_file", "copies"])
def test_check_data_overlapping_calib_is_refused(sets, tmp_path, which):
    calib, other, copy, _ = sets
    check = {"same": calib, "manifest_file": os.path.join(calib, "manifest.txt"), "copies": copy}[which]
    with pytest.raises(OfconvertError, match="shares .* with --calib"):
        _opts(calib, check, tmp_path).check()
    plan = _opts(calib, other, tmp_path).check()           # a separate folder passes
    assert len(plan.check_images) == 4 and len(plan.calib_images) == 6


def test_cli_check_data_is_calib_one_line_exit_2(sets, tmp_path):
    calib = sets[0]
    p = run_cli("efficientnet_lite0", "--to", "onnx", "--int8", "--calib", calib, "--check-data", calib,
                "--max-flips", "1%", "-o", tmp_path / "m.int8.onnx", cwd=str(tmp_path), timeout=300)
    assert p.returncode == 2 and not has_traceback(p), p.stderr[-500:]
    assert p.stderr.strip().count("\n") == 0 and "shares 6 of its 6 image(s) with --calib" in p.stderr
    assert not os.listdir(tmp_path)                         # refused before any work
