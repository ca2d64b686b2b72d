"""Issue 18: sentences an inspector would sign. One synthetic case per class of fault, and the
same rules checked on every sentence built from the real samples in ../shared/data."""

import json
import re

import cv2
import numpy as np
import pytest
from conftest import REAL_AD, SHARED_DATA, needs_real_data

from annotate import check_sentence, load_vocabulary, refs_for
from annotate.faithful import OK
from annotate.generate import SHAPE_WORDS, SIZE_WORDS, UNIVERSAL_MANY, UNIVERSAL_ONE
from annotate.parse import tokenize
from annotate.vocab import NATURE_LOOKS
from mvtec_ref.regions.config import RegionConfig
from mvtec_ref.regions.frame import find_frame, place
from mvtec_ref.regions.region import regions_from_mask

VOCAB = load_vocabulary("mvtec_ad")
REAL_LOCO = SHARED_DATA / "mvtec_loco_sample"
SIZES = {w for words in SIZE_WORDS.values() for w in words} | {"tiny"}
LONG = set(SHAPE_WORDS["elongated"])
SHAPES = {w for words in SHAPE_WORDS.values() for w in words}
TONES = {"dark", "bright", "darker", "brighter"}
COLOURS = {"red", "orange", "yellow", "green", "blue", "purple", "brown", "black", "white", "gray"}
EXTREMES = {"leftmost", "rightmost", "uppermost", "topmost", "highest", "lowest", "bottommost",
            "farthest", "furthest", "closest", "nearest", "largest", "biggest", "smallest"}  # fmt: skip
PLACE_WORDS = {"top", "bottom", "left", "right", "upper", "lower", "center", "middle", "edge", "corner",
               "rim", "clock", "halfway", "head", "tip"}  # fmt: skip


def _region(rid, x, y, *, area=100, size="small", tone="similar", colour=None, shape="compact", place=None):
    cell = ("top", "", "bottom")[min(int(y * 3), 2)] + " " + ("left", "", "right")[min(int(x * 3), 2)]
    location = cell.strip() or "center"
    region = {
        "region_id": rid, "location": location, "area": area, "size": size, "centroid": [x * 100, y * 100],
        "rel_position": [x, y], "appearance": {"tone": tone, "colour": colour}, "shape": {"word": shape},
    }  # fmt: skip
    if place is not None:
        region["place"] = place
    return region


def _record(category, defect_type, regions, kind="box"):
    return {"category": category, "defect_type": defect_type, "regions": regions,
            "frame": {"source": "image" if kind == "texture" else "object", "kind": kind}}  # fmt: skip


def _sentences(record, vocab=VOCAB, seeds=range(40)):
    for seed in seeds:
        for ref in refs_for(record, vocab, np.random.default_rng(seed)):
            for s in ref["sentences"]:
                yield ref, s["text"]


def _faults(text: str, ref: dict, record: dict, vocab) -> list[str]:
    """The issue's rules that a single sentence can break, as readable faults."""
    tokens = tokenize(text)
    words = vocab.words(record["category"], record["defect_type"])
    phrase = set(tokenize(" ".join(p for pair in words.phrases for p in pair)))
    own = [t for t in tokens if t not in phrase]
    faults = []
    if {"darker", "brighter"} & set(tokens):
        faults.append("comparative")
    n = len(ref["region_ids"])
    if ref["kind"] == "universal" and text != "anomaly":
        if n == 1 and any(text == u.format(n=vocab.noun(record["category"])) for u in UNIVERSAL_MANY):
            faults.append("plural universal phrase for one region")
        if n > 1 and any(text == u.format(n=vocab.noun(record["category"])) for u in UNIVERSAL_ONE):
            faults.append("singular universal phrase for several regions")
    if SIZES & set(own) and LONG & set(own):
        faults.append("size word with an elongated-shape word")
    if ref["region_ids"]:
        looks = NATURE_LOOKS[words.nature]
        if "shape" not in looks and SHAPES & set(own):
            faults.append(f"shape word on a {words.nature}")
        if "tone" not in looks and TONES & set(own):
            faults.append(f"tone word on a {words.nature}")
        if "colour" not in looks and COLOURS & set(own):
            faults.append(f"colour word on a {words.nature}")
        if EXTREMES & set(tokens) and PLACE_WORDS & set(own) - {"top", "bottom", "left", "right"}:
            faults.append("an extreme with a place")
        if (words.placed or words.whole_object) and PLACE_WORDS & set(own) - {
            "top",
            "bottom",
            "left",
            "right",
        }:
            faults.append("place words after a phrase that says where")
    noun = vocab.noun(record["category"])
    if len(re.findall(rf"\b{re.escape(noun)}\b", text)) > 1:
        faults.append("noun repeated")
    if re.search(r"\b(in|on|of) the [a-z ]+ (in|on) the " + re.escape(noun) + r"$", text) and not any(
        w in text for w in ("edge", "corner", "part", "side", "third", "middle", "center", "rim", "clock")
    ):
        faults.append("two prepositional phrases naming the object")
    return faults


# -- 1. tone and comparatives ---------------------------------------------------------------
def test_no_comparatives_and_tone_only_when_the_region_has_one():
    one = _record("grid", "glue", [_region(0, 0.5, 0.5, tone="darker")], kind="texture")
    texts = [t for _, t in _sentences(one)]
    assert any("dark " in t for t in texts)
    assert not [t for t in texts if {"darker", "brighter"} & set(tokenize(t))]
    plain = _record("grid", "glue", [_region(0, 0.5, 0.5)], kind="texture")
    assert not [t for ref, t in _sentences(plain) if ref["region_ids"] and TONES & set(tokenize(t))]


def test_a_break_in_a_mesh_is_not_toned_against_the_mesh():
    """A gap through a bright-and-dark mesh shows the background: no tone word from the ring."""
    image = np.full((240, 240), 70, np.uint8)
    image[::6, :] = 190
    image[:, ::6] = 190
    mask = np.zeros((240, 240), np.uint8)
    mask[100:130, 100:130] = 1
    image[100:130, 100:130] = 190  # the bright background seen through the break
    frame = find_frame(image, "texture", mask)
    (region,) = regions_from_mask(mask, image, frame, RegionConfig())
    assert region.appearance["tone"] != "darker"  # never "dark" for what shows the bright background
    record = _record("grid", "broken", [region.to_record()], kind="texture")
    assert not [t for ref, t in _sentences(record) if ref["region_ids"] and TONES & set(tokenize(t))]


# -- 2. grammatical number of universal phrases ---------------------------------------------
def test_universal_phrases_follow_the_region_count():
    one = _record("capsule", "crack", [_region(0, 0.5, 0.5)])
    two = _record("capsule", "crack", [_region(0, 0.2, 0.2), _region(1, 0.8, 0.8, area=400)])
    for record in (one, two):
        for ref, text in _sentences(record):
            assert not _faults(text, ref, record, VOCAB), text
            if ref["kind"] == "universal":
                assert check_sentence(text, ref["region_ids"], record, VOCAB).verdict == OK, text


# -- 3. place words no stronger than the position -------------------------------------------
def test_edges_and_corners_only_near_the_frame_sides():
    inner = _record("grid", "glue", [_region(0, 0.26, 0.28)], kind="texture")  # a top-left *cell*
    texts = [t for ref, t in _sentences(inner) if ref["region_ids"]]
    assert any("upper left part" in t or "top left of" in t for t in texts)
    assert not [t for t in texts if {"edge", "corner"} & set(tokenize(t))]
    assert check_sentence("the glue spot in the top left corner of the grid", [0], inner, VOCAB).verdict != OK
    assert check_sentence("the glue spot close to the top edge of the grid", [0], inner, VOCAB).verdict != OK
    corner = _record("grid", "glue", [_region(0, 0.06, 0.08)], kind="texture")
    assert any("top left corner of the image" in t for _, t in _sentences(corner))
    assert (
        check_sentence("the glue spot in the top left corner of the image", [0], corner, VOCAB).verdict == OK
    )
    # a texture has no corner of its own: only the image has (issue 31)
    assert (
        "frame_edges"
        in check_sentence("the glue spot in the top left corner of the grid", [0], corner, VOCAB).reason
    )


# -- 4. frames per object kind ---------------------------------------------------------------
def _screw(with_tip: bool):
    """A diagonal screw: a wide head at the top right, a thin body down to the bottom left."""
    image = np.full((400, 400), 200, np.uint8)
    cv2.circle(image, (320, 80), 40, 60, -1)
    cv2.line(image, (320, 80), (110 if with_tip else 140, 290 if with_tip else 260), 60, 16)
    return image


def test_axis_frame_names_head_and_tip_and_contains_a_missing_tip():
    image = _screw(with_tip=False)  # the tip is missing ...
    mask = np.zeros((400, 400), np.uint8)
    cv2.line(mask, (140, 260), (80, 320), 1, 16)  # ... and the mask marks where it should be
    frame = find_frame(image, "axis", mask)
    x, y, w, h = frame["bbox"]
    ys, xs = np.nonzero(mask)
    assert x <= xs.min() and y <= ys.min() and x + w >= xs.max() + 1 and y + h >= ys.max() + 1
    start = np.array(frame["axis"]["start"])
    assert np.linalg.norm(start - (340, 60)) < 60  # the head (wider end) comes first
    (region,) = regions_from_mask(mask, image, frame, RegionConfig())
    assert region.place["end"] == "end" and region.place["along"] > 0.85
    record = _record("screw", "thread_side", [region.to_record()], kind="axis")
    texts = [t for _, t in _sentences(record)]
    assert any("near the tip of the screw" in t or "at the tip of the screw" in t for t in texts)
    assert not [t for t in texts if {"corner", "edge", "left", "right", "top", "bottom"} & set(tokenize(t))
                and "most" not in t and "farthest" not in t]  # fmt: skip


def test_round_frame_uses_clock_and_rim_words():
    image = np.full((300, 300, 3), 230, np.uint8)
    cv2.circle(image, (150, 150), 120, (60, 60, 60), -1)
    mask = np.zeros((300, 300), np.uint8)
    cv2.circle(mask, (260, 150), 8, 1, -1)  # 3 o'clock, at the rim
    frame = find_frame(image, "round", mask)
    (region,) = regions_from_mask(mask, image, frame, RegionConfig())
    assert region.place["clock"] == 3 and region.place["ring"] == "rim"
    record = _record("bottle", "contamination", [region.to_record()], kind="round")
    texts = [t for _, t in _sentences(record)]
    assert any("3 o'clock" in t for t in texts) and any("rim of the bottle" in t for t in texts)
    assert not [t for t in texts if {"top", "bottom", "corner"} & set(tokenize(t))]
    for ref, text in _sentences(record, seeds=range(5)):
        assert check_sentence(text, ref["region_ids"], record, VOCAB).verdict == OK, text
    assert place((150.0, 40.0), frame)["clock"] == 12 and place((150.0, 150.0), frame)["ring"] == "center"


def test_good_images_use_their_category_frame(synth_dataset):
    records = [json.loads(line) for line in (synth_dataset / "samples.jsonl").open()]
    kinds = {}
    for r in records:
        kinds.setdefault(r["category"], set()).add((r["label_index"], r["frame"]["kind"]))
    assert {k for _, k in kinds["carpet"]} == {"texture"}
    for category in ("bottle", "hazelnut", "screw"):
        by_label = {label: kind for label, kind in kinds[category]}
        assert by_label[0] == by_label[1] == VOCAB.frame(category)["kind"], category


# -- 5. redundancy and clashing words ---------------------------------------------------------
def test_no_repeated_noun_no_extreme_with_place_no_clashing_adjectives():
    regions = [
        _region(0, 0.05, 0.9, shape="elongated", tone="darker"),
        _region(1, 0.5, 0.5, area=400, shape="round", size="large"),
        _region(2, 0.9, 0.1, area=150, shape="elongated"),
    ]
    for category, defect_type in (("grid", "broken"), ("grid", "bent"), ("carpet", "color"),
                                  ("screw", "manipulated_front"), ("tile", "crack")):  # fmt: skip
        kind = VOCAB.frame(category)["kind"]
        if kind == "axis":
            regions = [dict(r, place={"along": 0.9, "end": "end"}) for r in regions]
        record = _record(category, defect_type, regions, kind=kind)
        for ref, text in _sentences(record, seeds=range(30)):
            assert not _faults(text, ref, record, VOCAB), (text, _faults(text, ref, record, VOCAB))


# -- 6. inspector words ------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["mvtec_ad", "mvtec_loco", "visa", "real_iad", "btad", "mvtec_ad2"])
def test_vocabulary_has_no_folder_names_and_no_noun_in_a_phrase(source):
    vocab = load_vocabulary(source)
    for category, types in vocab.defects.items():
        noun = vocab.noun(category)
        for defect_type, words in types.items():
            for pair in words.phrases:
                for phrase in pair:
                    folder = defect_type.endswith("_anomalies") or defect_type == "combined"
                    if source == "mvtec_loco" and folder:
                        # a folder type (binarized masks) or a mix is only called what is certain
                        assert phrase in ("anomaly", "anomalies", "defect", "defects"), phrase
                        continue
                    assert not {"manipulated", "anomalies", "anomaly", "defect", "defects"} & set(
                        tokenize(phrase)
                    )
                    assert noun not in phrase or words.whole_object, (category, defect_type, phrase)
    assert "metal particle" not in {
        p for pair in VOCAB.words("grid", "metal_contamination").phrases for p in pair
    }


# -- 7. nothing gets appearance if it is absent ------------------------------------------------
def test_missing_parts_get_size_only():
    region = _region(0, 0.3, 0.2, tone="darker", colour="yellow", shape="round", size="large")
    loco = load_vocabulary("mvtec_loco")
    cases = ((loco, "juice_bottle", "missing_bottom_label"), (VOCAB, "cable", "missing_wire"),
             (VOCAB, "grid", "broken"))  # fmt: skip
    for vocab, category, defect_type in cases:
        record = _record(category, defect_type, [region])
        texts = [t for ref, t in _sentences(record, vocab) if ref["region_ids"]]
        assert texts
        for text in texts:
            assert not (TONES | COLOURS | SHAPES) & set(tokenize(text)), text


def test_issue_examples_are_not_produced_any_more():
    examples = {
        "the brighter metal particle", "the darker blob of glue", "the darker bent wires in the grid",
        "the deformed front of the screw near the bottom left corner of the screw",
        "the small manipulated tip",
        "the darker break in the mesh in the grid", "the long small break", "the big thin glue spot",
        "the round bent wire", "the tiny long color stain", "the small narrow metal particle",
        "the big round break in the mesh", "the large yellow missing bottom label",
        "the big darker missing top label",
    }  # fmt: skip
    regions = [_region(0, 0.1, 0.1, tone="darker", shape="round"), _region(1, 0.8, 0.5, tone="brighter",
               shape="elongated", area=300)]  # fmt: skip
    produced = set()
    for category in ("grid", "screw", "carpet", "bottle"):
        for defect_type in VOCAB.category_types(category):
            record = _record(category, defect_type, regions, kind=VOCAB.frame(category)["kind"])
            produced |= {t for _, t in _sentences(record, seeds=range(10))}
    assert not examples & produced


# -- the same rules on the real samples ---------------------------------------------------------
def _real_records(root, source, out):
    from mvtec_ref.build import BuildConfig, build_dataset

    build_dataset(root, out, BuildConfig(source=source), progress=False)
    return [json.loads(line) for line in (out / "samples.jsonl").open()]


@needs_real_data
def test_real_mvtec_ad_sentences_follow_the_rules(tmp_path):
    records = _real_records(REAL_AD, "mvtec_ad", tmp_path / "ad")
    faults = []
    for record in records:
        x, y, w, h = record["frame"]["bbox"]
        for region in record["regions"]:  # every frame contains its defect
            rx, ry, rw, rh = region["bbox"]
            assert x <= rx and y <= ry and rx + rw <= x + w and ry + rh <= y + h, record["id"]
        assert record["frame"]["kind"] == VOCAB.frame(record["category"])["kind"], record["id"]
        for ref in record["refs"]:
            for s in ref["sentences"]:
                faults += [(record["id"], s["text"], f) for f in _faults(s["text"], ref, record, VOCAB)]
        if record["regions"]:
            assert sum(len(ref["sentences"]) for ref in record["refs"]) >= 8, record["id"]
    assert not faults
    screw = next(r for r in records if r["id"] == "screw/test/manipulated_front/000")
    texts = [s["text"] for ref in screw["refs"] for s in ref["sentences"]]
    assert not [t for t in texts if "corner" in t or "manipulated" in t]


@pytest.mark.skipif(not REAL_LOCO.is_dir(), reason=f"real MVTec LOCO sample not found at {REAL_LOCO}")
def test_real_loco_sentences_follow_the_rules(tmp_path):
    loco = load_vocabulary("mvtec_loco")
    records = _real_records(REAL_LOCO, "mvtec_loco", tmp_path / "loco")
    for record in records:
        for ref in record["refs"]:
            for s in ref["sentences"]:
                assert not _faults(s["text"], ref, record, loco), s["text"]
