import numpy as np
import pytest
from conftest import REAL_AD, needs_real_data

from mvtec_ref.regions import RegionConfig, regions_from_mask
from mvtec_ref.regions.describe import location, object_frame
from mvtec_ref.regions.mask import decode_image, decode_mask, decode_rle

CFG = RegionConfig()


def _regions(mask, image=None, frame=None):
    h, w = mask.shape
    image = np.full((h, w), 128, np.uint8) if image is None else image
    return regions_from_mask(mask.astype(np.uint8), image, frame or (0, 0, w, h), CFG)


def test_components_are_8_connected():
    m = np.zeros((100, 100), np.uint8)
    for k in range(30):  # a diagonal line: its pixels touch only at corners
        m[2 + k, 2 + k] = 1
    m[80:90, 80:90] = 1
    regions = _regions(m)
    assert [r.area for r in regions] == [30, 100]
    assert regions[0].bbox == (2, 2, 30, 30)
    assert regions[0].shape["word"] == "elongated" and regions[0].shape["orientation"] == "diagonal"


def test_speck_joins_near_region_and_far_speck_stays():
    m = np.zeros((200, 200), np.uint8)
    m[50:80, 50:80] = 1  # region
    m[85:87, 85:87] = 1  # speck 5 px away: joins
    m[150:152, 150:152] = 1  # speck far from everything: stays its own region
    regions = _regions(m)
    assert len(regions) == 2
    assert regions[0].area == 900 + 4 and regions[0].merged_specks == 1
    assert regions[0].bbox == (50, 50, 37, 37)
    assert regions[1].area == 4 and regions[1].merged_specks == 0
    union = sum(decode_rle(r.segmentation) for r in regions)
    assert np.array_equal(union, m)  # no annotated pixel lost, none counted twice


def test_location_size_and_tone():
    m = np.zeros((300, 300), np.uint8)
    m[10:30, 250:290] = 1  # top right
    m[140:160, 140:160] = 1  # center
    image = np.full((300, 300), 120, np.uint8)
    image[10:30, 250:290] = 30  # darker than its ring
    image[140:160, 140:160] = 220  # brighter
    top_right, centre = _regions(m, image)
    assert (top_right.location, centre.location) == ("top right", "center")
    assert (top_right.appearance["tone"], centre.appearance["tone"]) == ("darker", "brighter")
    assert top_right.size == "small" and top_right.area_ratio == pytest.approx(800 / 90000, rel=1e-5)
    assert centre.shape["word"] == "compact"  # a filled square is not round


def test_round_needs_a_round_outline():
    import cv2

    m = np.zeros((200, 200), np.uint8)
    cv2.circle(m, (60, 60), 25, 1, -1)
    m[120:170, 120:170] = 1
    image = np.full((200, 200), 120, np.uint8)
    disc, square = _regions(m, image)
    assert disc.shape["word"] == "round" and square.shape["word"] == "compact"


def test_tone_needs_a_clear_margin_over_a_busy_surround():
    """A region as bright as the gaps of a mesh around it is not "brighter" than the mesh."""
    image = np.full((200, 200), 60, np.uint8)
    image[:, ::4] = 200  # a striped surround: mean ~95, spread ~60
    m = np.zeros((200, 200), np.uint8)
    m[90:110, 90:110] = 1
    image[90:110, 90:110] = 150  # 55 above the ring's mean, but within its spread
    (region,) = _regions(m, image)
    assert region.appearance["tone"] == "similar"
    image[:, ::4] = 60  # the same region on a plain surround
    image[90:110, 90:110] = 150
    (region,) = _regions(m, image)
    assert region.appearance["tone"] == "brighter"


def test_location_is_relative_to_the_frame():
    assert location((55.0, 55.0), (50, 50, 30, 30))[0] == "top left"
    assert location((55.0, 75.0), (50, 50, 30, 30))[0] == "bottom left"
    assert location((55.0, 75.0), (0, 0, 300, 300))[0] == "top left"
    assert location((150.0, 60.0), (0, 0, 300, 300))[0] == "top"


def test_colour_named_only_when_distinct():
    image = np.zeros((100, 100, 3), np.uint8)
    image[:] = (120, 120, 120)
    image[40:60, 40:60] = (200, 30, 30)
    m = np.zeros((100, 100), np.uint8)
    m[40:60, 40:60] = 1
    (region,) = _regions(m, image)
    assert region.appearance["colour"] == "red" and region.appearance["delta_e"] > 30
    image[40:60, 40:60] = (122, 120, 119)
    (region,) = _regions(m, image)
    assert region.appearance["colour"] is None


def test_object_frame_finds_disc_on_uniform_background():
    image = np.zeros((400, 400, 3), np.uint8)
    import cv2

    cv2.circle(image, (250, 200), 100, (180, 120, 60), -1)
    x, y, w, h = object_frame(image)
    assert abs(x - 150) <= 6 and abs(y - 100) <= 6 and abs(w - 200) <= 8 and abs(h - 200) <= 8
    assert object_frame(np.full((100, 100), 90, np.uint8)) is None


@needs_real_data
def test_real_grid_bent_000_matches_independent_computation():
    """grid/bent/000: 3 regions; compare with scikit-image's labelling and regionprops."""
    from skimage.measure import label, regionprops

    image = decode_image((REAL_AD / "grid/test/bent/000.png").read_bytes(), "img")
    mask_path = REAL_AD / "grid/ground_truth/bent/000_mask.png"
    binary, warning = decode_mask(mask_path.read_bytes(), "mask", image.shape[:2])
    assert warning is None
    regions = _regions(binary, image)
    assert len(regions) == 3
    labels = label(binary, connectivity=2)
    props = sorted(regionprops(labels), key=lambda p: p.coords[0].tolist())
    for region, prop in zip(regions, props, strict=True):
        y0, x0, y1, x1 = prop.bbox
        assert region.bbox == (x0, y0, x1 - x0, y1 - y0)
        assert region.area == prop.area
        assert region.centroid == pytest.approx((prop.centroid[1], prop.centroid[0]), abs=0.01)
        assert region.area_ratio == pytest.approx(prop.area / (1024 * 1024), rel=1e-5)
        assert np.array_equal(decode_rle(region.segmentation).astype(bool), labels == prop.label)
    # Where they lie (looked at by eye): one upper left, one right, one lower left.
    assert [r.location for r in regions] == ["top left", "right", "bottom left"]


def test_labelling_the_box_around_the_mask_equals_labelling_the_whole_image():
    """find_components labels only the mask's bounding box: same labels, order and stats."""
    import cv2

    from mvtec_ref.regions.components import _label

    rng = np.random.default_rng(0)
    for _ in range(400):
        height, width = (int(v) for v in rng.integers(5, 90, 2))
        mask = np.zeros((height, width), np.uint8)
        for _ in range(rng.integers(0, 12)):
            y, x = rng.integers(0, height), rng.integers(0, width)
            mask[y : y + rng.integers(1, 9), x : x + rng.integers(1, 9)] = 1
        mask &= (rng.random((height, width)) < 0.8).astype(np.uint8)
        for connectivity in (4, 8):
            n, labels, stats, _ = cv2.connectedComponentsWithStats(
                mask, connectivity=connectivity, ltype=cv2.CV_32S
            )
            n2, labels2, stats2 = _label(mask, connectivity)
            assert n2 == n and np.array_equal(labels2, labels) and np.array_equal(stats2[1:], stats[1:])
            assert stats2[0, 4] == stats[0, 4]  # background area (its box is not used)
