"""Each kind of bad input: a one-line error naming the file, and nothing lost."""

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from mvtec_ref.cli import main
from mvtec_ref.validate import validate_dataset

IMAGE = "bottle/test/broken_large/000.png"
MASK = "bottle/ground_truth/broken_large/000_mask.png"


def _missing_mask(root):
    (root / MASK).unlink()


def _mask_size(root):
    mask = cv2.imread(str(root / MASK), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(root / MASK), mask[:-10, :])


def _truncated(root):
    data = (root / IMAGE).read_bytes()
    (root / IMAGE).write_bytes(data[: len(data) // 3])


def _non_binary(root):
    mask = cv2.imread(str(root / MASK), cv2.IMREAD_UNCHANGED)
    mask[mask == 255] = 200
    mask[0, 0] = 90
    cv2.imwrite(str(root / MASK), mask)


def _empty_mask(root):
    mask = cv2.imread(str(root / MASK), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(root / MASK), np.zeros_like(mask))


def _stray(root):
    (root / "bottle/test/broken_large/.DS_Store").write_bytes(b"\0\0\0\1Bud1")


# (breaker, path in the message, words of the problem, what the default build does)
CASES = {
    "missing_mask": (_missing_mask, IMAGE, "defect image has no mask (expected " + MASK, "skipped"),
    "mask_size": (_mask_size, MASK, "mask is 225x215 but its image is 225x225", "skipped"),
    "truncated": (_truncated, IMAGE, "cannot decode image (PNG is truncated or corrupt)", "skipped"),
    "non_binary": (_non_binary, MASK, "mask is not binary", "accepted"),
    "empty_mask": (_empty_mask, MASK, "mask of a defect image is empty", "skipped"),
    "stray": (_stray, "bottle/test/broken_large/.DS_Store", "stray file (known system file)", "ignored"),
}


def _build(root, out, *extra):
    return CliRunner().invoke(main, ["build", "--root", str(root), "--out", str(out), "--quiet", *extra])


def _snapshot(out):
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())} if out.exists() else None


@pytest.mark.parametrize("case", sorted(CASES))
def test_strict_stops_with_one_line_and_keeps_previous_output(case, tree_copy, tmp_path):
    breaker, path, problem, _ = CASES[case]
    out = tmp_path / "out"
    assert _build(tree_copy, out).exit_code == 0
    before = _snapshot(out)
    breaker(tree_copy)
    result = _build(tree_copy, out, "--strict")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {path}: "), result.output
    assert problem in lines[0]
    assert _snapshot(out) == before


@pytest.mark.parametrize("case", sorted(CASES))
def test_default_build_records_problem_and_completes(case, tree_copy, tmp_path):
    breaker, path, problem, action = CASES[case]
    breaker(tree_copy)
    out = tmp_path / "fresh"
    result = CliRunner().invoke(main, ["build", "--root", str(tree_copy), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"warning: {path}: " in result.output and problem in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    (recorded,) = [p for p in manifest["problems"] if p["path"] == path]
    assert recorded["action"] == action and problem in recorded["problem"]
    ids = {json.loads(line)["id"] for line in (out / "samples.jsonl").open()}
    assert (IMAGE.removesuffix(".png") in ids) == (action != "skipped")
    assert validate_dataset(out) == []


def test_default_build_reports_every_problem(tree_copy, tmp_path):
    for case in ("missing_mask", "stray"):
        CASES[case][0](tree_copy)
    _empty_grid = tree_copy / "grid/ground_truth/bent/000_mask.png"
    cv2.imwrite(str(_empty_grid), np.zeros((256, 256), np.uint8))
    out = tmp_path / "out"
    assert _build(tree_copy, out).exit_code == 0
    kinds = sorted(p["kind"] for p in json.loads((out / "manifest.json").read_text())["problems"])
    assert kinds == ["empty_mask", "missing_mask", "stray_file"]


def test_root_that_is_not_mvtec_like(tmp_path):
    (tmp_path / "photos").mkdir()
    out = tmp_path / "out"
    result = _build(tmp_path / "photos", out)
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {tmp_path / 'photos'}: no MVTec AD category folders found")
    assert not out.exists()


def test_every_sample_bad_is_an_error_not_an_empty_dataset(tree_copy, tmp_path):
    import shutil

    shutil.rmtree(tree_copy / "grid")
    for png in (tree_copy / "bottle").rglob("*.png"):
        png.write_bytes(b"")
    result = _build(tree_copy, tmp_path / "out")
    assert result.exit_code == 1 and "no usable image found" in result.output
    assert not (tmp_path / "out").exists()
