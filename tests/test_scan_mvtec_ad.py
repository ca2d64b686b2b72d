import pytest
from conftest import REAL_AD, REAL_AD_256, needs_real_data

from mvtec_ref.errors import SourceLayoutError
from mvtec_ref.sources.mvtec_ad import CATEGORIES, MVTEC_AD, scan_mvtec_ad


def test_spec_matches_the_full_release():
    assert len(MVTEC_AD) == 15
    assert sum(len(s.defects) for s in MVTEC_AD) == 73
    assert sum(s.train_good for s in MVTEC_AD) == 3629
    assert sum(s.test_good for s in MVTEC_AD) == 467
    assert sum(n for s in MVTEC_AD for _, n in s.defects) == 1258
    assert {s.name for s in MVTEC_AD if s.grayscale} == {"grid", "screw", "zipper"}


def test_synthetic_tree_lists_every_category_and_defect_type(synth_tree):
    scan = scan_mvtec_ad(synth_tree)
    assert scan.problems == []
    assert {im.category for im in scan.images} == set(CATEGORIES)
    types = {(im.category, im.defect_type) for im in scan.images if not im.is_good}
    assert types == {(s.name, d) for s in MVTEC_AD for d, _ in s.defects}
    assert all((im.mask_path is None) == im.is_good for im in scan.images)
    assert [im.image_path for im in scan.images] == sorted(im.image_path for im in scan.images)


def test_category_subset_and_unknown_category(synth_tree):
    scan = scan_mvtec_ad(synth_tree, ["screw", "bottle", "screw"])
    assert {im.category for im in scan.images} == {"bottle", "screw"}
    with pytest.raises(SourceLayoutError, match="category banana not found; present: bottle, cable"):
        scan_mvtec_ad(synth_tree, ["banana"])


def test_roots_that_are_not_mvtec_like(tmp_path, synth_tree):
    with pytest.raises(SourceLayoutError, match="does not exist"):
        scan_mvtec_ad(tmp_path / "nope")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    with pytest.raises(SourceLayoutError, match="no MVTec AD category folders found"):
        scan_mvtec_ad(tmp_path / "photos")
    with pytest.raises(SourceLayoutError, match="single category folder.*--category bottle"):
        scan_mvtec_ad(synth_tree / "bottle")


@needs_real_data
def test_real_sample_layout():
    scan = scan_mvtec_ad(REAL_AD)
    assert scan.problems == []
    defective = [im for im in scan.images if not im.is_good]
    assert len(defective) == 15 and len(scan.images) == 31
    grid = [im for im in scan.images if im.category == "grid"]
    assert {im.defect_type for im in grid} == {
        "good",
        "bent",
        "broken",
        "glue",
        "metal_contamination",
        "thread",
    }
    bent = next(im for im in grid if im.image_path == "grid/test/bent/000.png")
    assert bent.mask_path == "grid/ground_truth/bent/000_mask.png" and bent.kind == "texture"
    scan256 = scan_mvtec_ad(REAL_AD_256, ["transistor"])
    assert len([im for im in scan256.images if not im.is_good]) == 8
