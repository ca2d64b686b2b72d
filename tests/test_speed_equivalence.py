"""Speed-ups that must not change a result (issue 24): the parser's kept phrase tables and the
frame's defect extent."""

import dataclasses

import numpy as np

from annotate import load_vocabulary
from annotate.parse import _cached_type_phrases, _find, _type_phrases, parse
from annotate.vocab import DefectWords
from mvtec_ref.regions.frame import find_frame


def test_find_matches_a_plain_scan():
    rng = np.random.default_rng(0)
    words = ["a", "b", "c", "d"]
    for _ in range(2000):
        tokens = list(rng.choice(words, size=rng.integers(0, 8)))
        run = list(rng.choice(words, size=rng.integers(0, 3)))
        plain = next((s for s in range(len(tokens) - len(run) + 1) if tokens[s : s + len(run)] == run), None)
        assert _find(tokens, run) == plain


def test_phrase_tables_are_kept_per_vocabulary_object():
    """Another vocabulary with the same category gets its own phrases, never the kept ones."""
    vocab = load_vocabulary("mvtec_ad")
    assert _cached_type_phrases("bottle", vocab, ()) == _type_phrases("bottle", vocab, ())
    assert parse("a fleck", "bottle", vocab).defect_type is None
    defects = {
        **vocab.defects,
        "bottle": {**vocab.defects["bottle"], "contamination": DefectWords((("fleck", "flecks"),))},
    }
    other = dataclasses.replace(vocab, defects=defects)
    assert parse("a fleck", "bottle", other).defect_type == "contamination"
    assert parse("a fleck", "bottle", vocab).defect_type is None
    # extra_types (the image's own type, unlisted) is part of what is kept
    assert parse("a wobble", "bottle", vocab, ("wobble",)).defect_type == "wobble"
    assert parse("a wobble", "bottle", vocab).defect_type is None


def test_frame_contains_the_full_resolution_defect_extent():
    """Defects anywhere, inside or outside the object: the frame holds every defect pixel (the
    extent comes from the rows and columns holding one; unchanged output: the full-scale cmp)."""
    rng = np.random.default_rng(1)
    image = np.full((300, 400, 3), 20, np.uint8)
    image[100:200, 150:260] = 200  # the object
    for _ in range(50):
        defect = np.zeros((300, 400), np.uint8)
        y, x = rng.integers(0, 299), rng.integers(0, 399)
        defect[y : y + rng.integers(1, 20), x : x + rng.integers(1, 20)] = 1
        x0, y0, w, h = find_frame(image, "box", defect)["bbox"]
        dy, dx = np.nonzero(defect)
        assert x0 <= dx.min() and y0 <= dy.min() and x0 + w >= dx.max() + 1 and y0 + h >= dy.max() + 1


def test_object_mask_integer_steps_equal_the_float_formulas():
    """The border median and the distance to it, in integers (issue 24c), equal np.median and
    ``np.abs(small - background).max(axis=2).astype(np.uint8)``, for odd and even borders."""
    from mvtec_ref.regions.frame import _column_median, _distance_to

    rng = np.random.default_rng(2)
    for n in range(600):
        channels = (1, 3)[n % 2]
        small = rng.integers(0, 256, (rng.integers(2, 40), rng.integers(2, 40), channels)).astype(np.int16)
        if n % 3 == 0:
            small = small // 85 * 85  # few levels: ties, and medians halfway between two
        border = small.reshape(-1, channels)[: rng.integers(1, small.shape[0] * small.shape[1] + 1)]
        background = np.median(border, axis=0)
        assert np.array_equal(_column_median(border), background)
        assert _column_median(border).dtype == background.dtype
        expected = np.abs(small - background).max(axis=2).astype(np.uint8)
        assert np.array_equal(_distance_to(small, background), expected)


def test_mask_value_counts_equal_bincount_but_for_zero():
    from mvtec_ref.regions.mask import _value_counts

    rng = np.random.default_rng(3)
    for n in range(500):
        planes = np.zeros((rng.integers(1, 50), rng.integers(1, 50), 2), np.uint8)
        for _ in range(rng.integers(0, 4)):
            y, x = rng.integers(0, planes.shape[0]), rng.integers(0, planes.shape[1])
            planes[y : y + rng.integers(1, 9), x : x + rng.integers(1, 9), 1] = rng.integers(0, 256)
        plane = planes[:, :, 1] if n % 2 else np.ascontiguousarray(planes[:, :, 1])  # strided too
        expected = np.bincount(plane.ravel(), minlength=256)
        expected[0] = 0
        assert np.array_equal(_value_counts(plane), expected)


def test_rle_of_a_window_equals_the_rle_of_the_whole_mask():
    from mvtec_ref.regions.mask import encode_rle, encode_rle_window

    rng = np.random.default_rng(4)
    for n in range(1500):
        H, W = (int(v) for v in rng.integers(1, 30, 2))
        h, w = int(rng.integers(1, H + 1)), int(rng.integers(1, W + 1))
        y0, x0 = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        window = rng.random((h, w)) < rng.random()
        if n % 5 == 0:
            window[:] = True  # runs that touch the window's first and last pixel
        full = np.zeros((H, W), np.uint8)
        full[y0 : y0 + h, x0 : x0 + w] = window
        assert encode_rle_window(window, x0, y0, (H, W)) == encode_rle(full)


def test_regions_keep_the_pixels_their_rle_encodes():
    """The build hands each region's pixels to the pixel judge instead of decoding its RLE."""
    from mvtec_ref.regions import regions_from_mask
    from mvtec_ref.regions.config import RegionConfig
    from mvtec_ref.regions.mask import decode_rle

    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (120, 90, 3)).astype(np.uint8)
    for _ in range(20):
        binary = np.zeros((120, 90), np.uint8)
        for _ in range(rng.integers(1, 5)):
            y, x = rng.integers(0, 115), rng.integers(0, 85)
            binary[y : y + rng.integers(1, 30), x : x + rng.integers(1, 30)] = 1
        for region in regions_from_mask(binary, image, [0, 0, 90, 120], RegionConfig()):
            assert np.array_equal(region.full_mask((120, 90)), decode_rle(region.segmentation).astype(bool))


def test_draw_takes_the_same_choice_from_the_same_stream():
    from annotate.generate import _draw

    for seed in range(50):
        a, b = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 1])
        for k in range(40):
            options = tuple(f"word {i}" for i in range(k % 7 + 1))
            assert _draw(a, options) == str(b.choice(options))
        assert a.random() == b.random()


def test_kept_parses_equal_fresh_ones_and_errors_repeat():
    import pytest

    from annotate.parse import _PARSED, ParseError, _parse

    vocab = load_vocabulary("mvtec_ad")
    texts = ["the small crack near the top edge of the bottle", "a small large defect", "any defect"]
    refused = 0
    for text in texts * 2:
        try:
            fresh = _parse(text, "bottle", vocab, ("broken_large",))
        except ParseError as error:
            refused += 1
            with pytest.raises(ParseError) as again:
                parse(text, "bottle", vocab, ("broken_large",))
            assert str(again.value) == str(error)
        else:
            assert parse(text, "bottle", vocab, ("broken_large",)) == fresh
    assert refused == 2  # "says two different sizes", the second time from what was kept
    assert any(key[1] == texts[0] for key in _PARSED)
