import numpy as np
import pytest

from mvtec_ref.errors import CorruptImageError, MaskSizeError, MaskValueError
from mvtec_ref.regions.mask import decode_image, decode_mask, decode_rle, encode_rle


def _png(array) -> bytes:
    import cv2

    return cv2.imencode(".png", array)[1].tobytes()


def test_glossary_example_round_trips():
    m = np.zeros((4, 5), np.uint8)
    m[1:3, 1:3] = 1
    rle = encode_rle(m)
    assert rle == {"size": [4, 5], "counts": "52207"}
    assert np.array_equal(decode_rle(rle), m)


def test_rle_matches_pycocotools_area_and_bbox():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    m = (rng.random((37, 53)) > 0.7).astype(np.uint8)
    rle = encode_rle(m)
    assert int(mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode()})) == m.sum()
    assert np.array_equal(decode_rle(rle), m)


def test_decode_image_converts_bgr_to_rgb():
    bgr = np.zeros((3, 4, 3), np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV's order
    rgb = decode_image(_png(bgr), "x.png")
    assert rgb[0, 0].tolist() == [0, 0, 255]


def test_decode_mask_binary_and_one_bit(tmp_path):
    from PIL import Image

    m = np.zeros((6, 7), np.uint8)
    m[2:4, 3:6] = 255
    binary, warning = decode_mask(_png(m), "m.png", (6, 7))
    assert warning is None and binary.sum() == 6 and binary.max() == 1
    Image.fromarray(m > 0).convert("1").save(tmp_path / "one.png")
    binary1, warning1 = decode_mask((tmp_path / "one.png").read_bytes(), "one.png", (6, 7))
    assert warning1 is None and np.array_equal(binary1, binary)


def test_non_binary_mask_warns_or_fails_under_strict():
    m = np.zeros((4, 4), np.uint8)
    m[0, 0], m[0, 1], m[0, 2] = 255, 200, 100
    binary, warning = decode_mask(_png(m), "m.png", (4, 4))
    assert binary[0].tolist() == [1, 1, 0, 0]
    assert "not binary" in warning and "> 127" in warning
    with pytest.raises(MaskValueError, match="m.png: mask is not binary: 2 pixels"):
        decode_mask(_png(m), "m.png", (4, 4), strict=True)


def test_wrong_size_and_corrupt_files():
    with pytest.raises(MaskSizeError, match="m.png: mask is 5x4 but its image is 4x4"):
        decode_mask(_png(np.zeros((4, 5), np.uint8)), "m.png", (4, 4))
    data = _png(np.full((64, 64), 7, np.uint8))
    with pytest.raises(CorruptImageError, match="t.png: cannot decode image .PNG is truncated"):
        decode_image(data[: len(data) // 2], "t.png")
    with pytest.raises(CorruptImageError, match="empty"):
        decode_image(b"", "e.png")
