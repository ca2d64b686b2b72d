from collections import Counter

import cv2
import numpy as np
import pytest

from mvtec_ref.sources.mvtec_ad import CATEGORIES
from mvtec_ref.synth.tree import Job, draw_job, plan_jobs


def test_full_scale_plan_reproduces_mvtec_ad_structure():
    jobs = plan_jobs("full", seed=0)
    train = [j for j in jobs if j.split == "train"]
    good_test = [j for j in jobs if j.split == "test" and j.defect_type == "good"]
    defective = [j for j in jobs if j.defect_type != "good"]
    assert (len(train), len(good_test), len(defective)) == (3629, 467, 1258)
    assert len({(j.category, j.defect_type) for j in defective}) == 73
    assert sum(j.regions for j in defective) == 1888
    assert min(j.regions for j in defective) == 1
    for j in jobs:
        assert j.size == CATEGORIES[j.category].size
        assert j.gray == (j.category in ("grid", "screw", "zipper"))


def test_plan_depends_on_seed():
    a = [j.regions for j in plan_jobs("small", 0)]
    assert a == [j.regions for j in plan_jobs("small", 0)]
    assert a != [j.regions for j in plan_jobs("small", 1)]


def test_drawn_files_are_deterministic_and_masks_match_plan(tmp_path):
    job = Job("hazelnut", "test", "crack", 0, 256, False, 3, 5)
    draw_job(tmp_path / "a", job)
    draw_job(tmp_path / "b", job)
    for rel in ("hazelnut/test/crack/000.png", "hazelnut/ground_truth/crack/000_mask.png"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    mask = cv2.imread(str(tmp_path / "a/hazelnut/ground_truth/crack/000_mask.png"), cv2.IMREAD_UNCHANGED)
    assert set(np.unique(mask)) <= {0, 255}
    n, _ = cv2.connectedComponents((mask > 0).astype(np.uint8), connectivity=8)
    assert n - 1 == 3
    image = cv2.imread(str(tmp_path / "a/hazelnut/test/crack/000.png"), cv2.IMREAD_UNCHANGED)
    assert image.shape == (256, 256, 3)
    gray = Job("screw", "train", "good", 0, 256, True, 0, 5)
    draw_job(tmp_path / "a", gray)
    assert cv2.imread(str(tmp_path / "a/screw/train/good/000.png"), cv2.IMREAD_UNCHANGED).ndim == 2


def test_defects_change_the_image_only_inside_the_mask(tmp_path):
    from mvtec_ref.synth.draw import draw_defects, draw_good

    rng = np.random.default_rng(3)
    img, area = draw_good("bottle", 300, False, rng)
    before = img.copy()
    mask = draw_defects(img, area, "contamination", 2, rng)
    changed = (img != before).any(axis=2)
    assert changed.any() and not (changed & (mask == 0)).any()


def test_plan_can_keep_some_categories_with_more_images_per_type():
    jobs = plan_jobs("small", 0, categories=("bottle", "carpet"), per_type=3)
    assert {j.category for j in jobs} == {"bottle", "carpet"}
    bottle = [j for j in jobs if j.category == "bottle"]
    assert sum(j.split == "train" for j in bottle) == 6  # twice per_type
    assert sum(j.split == "test" and j.defect_type == "good" for j in bottle) == 3
    assert all(n == 3 for n in Counter(j.defect_type for j in bottle if j.defect_type != "good").values())
    assert all(j.regions >= 1 for j in jobs if j.defect_type != "good")
    with pytest.raises(ValueError, match="unknown category 'bottel'"):
        plan_jobs("small", 0, categories=("bottel",))


def test_tree_is_byte_identical_with_one_and_two_workers(tmp_path):
    from mvtec_ref.synth import write_synthetic_tree

    categories = ("cable", "grid", "metal_nut", "wood")
    for name, workers in (("one", 1), ("two", 2)):
        write_synthetic_tree(tmp_path / name, scale="small", seed=3, workers=workers, progress=False,
                             categories=categories)  # fmt: skip
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert len(files) > 40
    assert files == sorted(
        p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*") if p.is_file()
    )
    for rel in files:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes(), rel


def test_pictures_are_unchanged_by_the_faster_drawing(tmp_path):
    """The planar drawing and the Up-filtered PNGs (issue 24) give the pixels of the first
    interleaved implementation: a digest of what it drew for these jobs (objects, textures,
    grayscale, every detail kind, 1-4 defects)."""
    import hashlib

    jobs = [
        Job("hazelnut", "test", "crack", 0, 256, False, 3, 5),
        Job("carpet", "test", "hole", 1, 256, False, 2, 5),
        Job("grid", "train", "good", 0, 256, True, 0, 5),
        Job("cable", "test", "poke_insulation", 0, 256, False, 1, 5),
        Job("zipper", "test", "squeezed_teeth", 0, 200, True, 2, 5),
        Job("toothbrush", "train", "good", 2, 256, False, 0, 5),
        Job("metal_nut", "test", "color", 0, 175, False, 4, 5),
        Job("wood", "train", "good", 0, 210, False, 0, 5),
        Job("tile", "train", "good", 0, 210, False, 0, 5),
    ]
    for job in jobs:
        draw_job(tmp_path, job)
    digest = hashlib.sha256()
    files = sorted(tmp_path.rglob("*.png"))
    for path in files:
        pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        digest.update(
            str(path.relative_to(tmp_path)).encode() + str(pixels.shape).encode() + pixels.tobytes()
        )
    assert len(files) == 14
    assert digest.hexdigest() == "54ab7df2078b83ba4af189b94616c3f62732e28517397ba207bd41b3d534d30f"


def test_written_pngs_read_the_same_in_pillow_and_opencv(tmp_path):
    from PIL import Image

    draw_job(tmp_path, Job("bottle", "test", "contamination", 0, 225, False, 2, 1))
    draw_job(tmp_path, Job("screw", "train", "good", 0, 256, True, 0, 1))
    files = sorted(tmp_path.rglob("*.png"))
    assert len(files) == 3
    for path in files:
        with Image.open(path) as image:
            image.load()
            assert image.format == "PNG" and image.mode in ("L", "RGB")
            pil = np.asarray(image)
        ours = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(pil, ours if ours.ndim == 2 else cv2.cvtColor(ours, cv2.COLOR_BGR2RGB)), path
