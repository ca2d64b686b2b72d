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
