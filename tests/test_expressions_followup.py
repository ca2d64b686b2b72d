"""Issue 18, follow-up: LOCO defects named in an inspector's words where the masks carry LOCO's
pixel values, plain "anomaly"/"defect" where they are binarized; the juice bottle's frame is the
whole bottle (its clear neck too); absent types never look like the present defect nor sit where
it is; superlatives people say."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED_DATA

from annotate import check_sentence, load_vocabulary, refs_for
from annotate.faithful import OK
from annotate.parse import tokenize
from mvtec_ref.build import BuildConfig, build_dataset
from mvtec_ref.regions.frame import find_frame

LOCO = load_vocabulary("mvtec_loco")
AD = load_vocabulary("mvtec_ad")
REAL_LOCO = SHARED_DATA / "mvtec_loco_sample"
FOLDER_TYPES = ("logical_anomalies", "structural_anomalies", "combined")
SUPERLATIVES = ("lowest", "highest", "uppermost", "leftmost", "rightmost", "largest", "smallest")
SIZE_WORDS = ("large", "big", "small", "tiny", "medium-sized")
SIZE = (160, 200)  # (H, W) of the synthetic LOCO images


def _loco_category(root: Path, category: str, types: list[str]) -> None:
    """A LOCO category whose masks carry the defects' own pixel values (as real LOCO does):
    one test image per type, one image with two mask files of two types, two good images."""
    cat = root / category
    cat.mkdir(parents=True)
    config = [{"defect_name": t, "pixel_value": 255 - i, "saturation_threshold": 1.0,
               "relative_saturation": True} for i, t in enumerate(types)]  # fmt: skip
    (cat / "defects_config.json").write_text(json.dumps(config))
    rng = np.random.default_rng(0)

    def image(path):
        pixels = np.full((*SIZE, 3), 20, np.uint8)
        pixels[20:140, 40:160] = (rng.random((120, 120, 3)) * 30 + 150).astype(np.uint8)  # the object
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), pixels)

    def mask(path, box, value):
        pixels = np.zeros(SIZE, np.uint8)
        x, y, w, h = box
        pixels[y : y + h, x : x + w] = value
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), pixels)

    for i, _ in enumerate(types):
        stem = f"{i:03d}"
        image(cat / f"test/logical_anomalies/{stem}.png")
        box = (50 + 3 * i, 30 + 2 * i, 30, 25)
        mask(cat / f"ground_truth/logical_anomalies/{stem}/000.png", box, 255 - i)
    image(cat / "test/structural_anomalies/000.png")
    mask(cat / "ground_truth/structural_anomalies/000/000.png", (50, 30, 20, 20), 255)
    mask(cat / "ground_truth/structural_anomalies/000/001.png", (110, 100, 25, 20), 254)
    for k in range(2):
        image(cat / f"train/good/{k:03d}.png")


@pytest.mark.parametrize("category", sorted(LOCO.defects))
def test_loco_values_name_every_defect_in_words(tmp_path, category):
    """Every LOCO defect name of the category (defects_config.json) has inspector words: the build
    reads the type from the mask's values and the sentences name it; none is a fallback."""
    types = [t for t in LOCO.category_types(category) if t not in FOLDER_TYPES]
    assert len(types) >= 8
    _loco_category(tmp_path / "loco", category, types)
    out = tmp_path / "out"
    result = build_dataset(tmp_path / "loco", out, BuildConfig(source="mvtec_loco"), progress=False)
    assert not [p for p in result.problems if p["kind"] in ("binarized_masks", "vocabulary")]
    records = {json.loads(line)["id"]: json.loads(line) for line in (out / "samples.jsonl").open()}
    for i, defect_type in enumerate(types):
        record = records[f"{category}/test/logical_anomalies/{i:03d}"]
        assert record["defect_type"] == defect_type
        words = LOCO.words(category, defect_type)
        assert not words.fallback
        names = {p for pair in words.phrases for p in pair}
        texts = [s["text"] for ref in record["refs"] if ref["region_ids"] for s in ref["sentences"]]
        assert any(name in text for text in texts for name in names), (defect_type, texts)
        for ref in record["refs"]:  # both judges' reading: each sentence denotes its target
            for s in ref["sentences"]:
                assert check_sentence(s["text"], ref["region_ids"], record, LOCO).verdict == OK, s["text"]
    mixed = records[f"{category}/test/structural_anomalies/000"]
    assert mixed["defect_type"] == "combined"
    assert sorted(r["source_class"] for r in mixed["regions"]) == sorted(types[:2])


def test_loco_logical_faults_get_no_look_or_size_and_absent_ones_no_place():
    region = {"region_id": 0, "location": "top", "area": 900, "size": "large", "centroid": [50, 10],
              "rel_position": [0.5, 0.1], "appearance": {"tone": "darker", "colour": "red"},
              "shape": {"word": "round"}, "bbox": [40, 0, 20, 20], "place": {"edges": ["top"]}}  # fmt: skip
    record = {"category": "juice_bottle", "defect_type": "wrong_fill_level_not_enough", "regions": [region],
              "frame": {"source": "object", "kind": "box", "bbox": [0, 0, 100, 100]}}  # fmt: skip
    good = {**record, "defect_type": "good", "regions": []}
    for seed in range(20):
        for ref in refs_for(record, LOCO, np.random.default_rng(seed)):
            for s in ref["sentences"] if ref["region_ids"] else ():
                words = set(tokenize(s["text"]))
                assert not words & {"large", "big", "small", "dark", "red", "round"}, s["text"]
        for ref in refs_for(good, LOCO, np.random.default_rng(seed)):
            for s in ref["sentences"]:
                words = set(tokenize(s["text"]))
                if LOCO.words("juice_bottle", "wrong_fill_level_too_much").phrases[0][0] in s["text"]:
                    assert not words & {"top", "bottom", "left", "right", "upper", "lower", "edge"}, s["text"]


@pytest.mark.skipif(not REAL_LOCO.is_dir(), reason=f"real MVTec LOCO sample not found at {REAL_LOCO}")
def test_real_binarized_loco_says_only_anomaly_or_defect_and_frames_the_whole_bottle(tmp_path):
    out = tmp_path / "out"
    result = build_dataset(REAL_LOCO, out, BuildConfig(source="mvtec_loco"), progress=False)
    assert [p["kind"] for p in result.problems] == ["binarized_masks"]  # the warning stays
    records = [json.loads(line) for line in (out / "samples.jsonl").open()]
    for record in records:
        x, y, w, h = record["frame"]["bbox"]
        # the clear glass neck starts ~7% below the image top (checked on the pictures); before,
        # the frame began at the juice, 23-25% down, so a low fill level was "along the top edge"
        assert y < 0.09 * record["height"], (record["id"], record["frame"])
        assert y + h > 0.8 * record["height"], (record["id"], record["frame"])
        for ref in record["refs"]:
            for s in ref["sentences"]:
                words = set(tokenize(s["text"]))
                if ref["region_ids"]:
                    assert words & {"anomaly", "anomalies", "defect", "defects", "abnormal", "abnormality",
                                    "anomalous", "abnormalities"}, s["text"]  # fmt: skip
                    # no kind we cannot know (binarized masks): no label, fill, juice or "faulty part"
                    said = set(tokenize(s["text"].replace("juice bottle", "")))
                    assert not said & {"faulty", "nonconforming", "parts", "label", "fill"}, s["text"]
                    assert "medium-sized" not in words, s["text"]
    fill = next(r for r in records if r["id"] == "juice_bottle/test/logical_anomalies/100")
    texts = [s["text"] for ref in fill["refs"] for s in ref["sentences"]]
    assert not [t for t in texts if "top edge" in t], texts


def test_clear_parts_grow_the_object_into_its_faint_neck():
    """A bright body with a faint (clear glass) neck on a dark, even background: Otsu alone
    frames the body; ``clear_parts`` frames the whole bottle."""
    rng = np.random.default_rng(1)
    image = (rng.random((400, 200, 3)) * 3 + 10).astype(np.uint8)
    image[150:380, 50:150] = 200  # body
    image[40:150, 80:120] = 40  # faint neck, 30 levels over the background
    plain = find_frame(image, "box")
    clear = find_frame(image, "box", None, clear_parts=True)
    assert plain["bbox"][1] >= 140
    assert clear["bbox"][1] <= 45 and clear["bbox"][1] + clear["bbox"][3] >= 375
    noisy = image.copy()  # background speckle under the noise floor does not grow the frame
    noisy[5:10, 5:10] = 14
    assert find_frame(noisy, "box", None, clear_parts=True)["bbox"] == clear["bbox"]


# -- absent types next to a present defect --------------------------------------------------------
def _screw_record():
    region = {"region_id": 0, "location": "bottom left", "area": 300, "size": "small", "centroid": [20, 85],
              "rel_position": [0.2, 0.85], "appearance": {"tone": "similar", "colour": None},
              "shape": {"word": "compact"}, "bbox": [10, 75, 20, 20],
              "place": {"along": 0.93, "end": "end"}}  # fmt: skip
    return {"category": "screw", "defect_type": "manipulated_front", "regions": [region],
            "frame": {"source": "object", "kind": "axis", "bbox": [0, 0, 100, 100]}}  # fmt: skip


def test_absent_types_do_not_look_like_the_present_defect_or_sit_where_it_is():
    record = _screw_record()
    alike = AD.looks_like("screw", "manipulated_front")
    assert {"thread_side", "thread_top"} <= alike
    alike_names = {p for t in alike for pair in AD.words("screw", t).phrases for p in pair}
    seen = 0
    for seed in range(60):
        for ref in refs_for(record, AD, np.random.default_rng(seed)):
            if ref["kind"] != "other_type":
                continue
            for s in ref["sentences"]:
                seen += 1
                assert not [n for n in alike_names if n in s["text"]], s["text"]
                assert "tip" not in tokenize(s["text"]), s["text"]
                assert check_sentence(s["text"], [], record, AD).verdict == OK
    assert seen >= 60
    # the example can no longer be produced
    texts = {s["text"] for seed in range(60) for ref in refs_for(record, AD, np.random.default_rng(seed))
             for s in ref["sentences"]}  # fmt: skip
    assert "any large deformed thread close to the tip of the screw" not in texts


def test_every_confusable_group_names_real_types():
    for source in ("mvtec_ad", "mvtec_loco"):
        vocab = load_vocabulary(source)
        for category, groups in vocab.confusable.items():
            for group in groups:
                assert group <= set(vocab.category_types(category)), (source, category, group)


# -- superlatives -------------------------------------------------------------------------------------
def _two_regions():
    regions = []
    for rid, (x, y) in enumerate(((0.3, 0.2), (0.7, 0.8))):
        regions.append({"region_id": rid, "location": "center", "area": 900, "size": "large",
                        "centroid": [x * 100, y * 100], "rel_position": [x, y],
                        "appearance": {"tone": "darker", "colour": None}, "shape": {"word": "compact"},
                        "bbox": [x * 100 - 5, y * 100 - 5, 10, 10], "place": {"edges": []}})  # fmt: skip
    return regions


def _carpet_record(n: int, second_area: int = 900) -> dict:
    """A carpet colour record of ``n`` (2 or 3) regions; the second one has ``second_area``."""
    regions = _two_regions()
    regions[1] = {**regions[1], "area": second_area}
    if n == 3:
        regions.append({**regions[0], "region_id": 2, "centroid": [50, 50], "rel_position": [0.5, 0.5]})
    return {"category": "carpet", "defect_type": "color", "regions": regions,
            "frame": {"source": "image", "kind": "texture", "bbox": [0, 0, 100, 100]}}  # fmt: skip


@pytest.mark.parametrize("n", [2, 3])
def test_superlatives_people_say(n):
    record = _carpet_record(n)
    relative = []
    for seed in range(40):
        for ref in refs_for(record, AD, np.random.default_rng(seed)):
            for s in ref["sentences"]:
                words = tokenize(s["text"])
                assert not {"bottommost", "topmost"} & set(words), s["text"]
                for i, w in enumerate(words[:-1]):  # "the lowest large stain": no size after an extreme
                    if w in SUPERLATIVES:
                        assert words[i + 1] not in SIZE_WORDS, s["text"]
                if ref["kind"] == "relative":
                    relative.append(s["text"])
    assert relative
    if n == 2:  # of two, "the stain nearest the bottom" rather than "the lowest stain"
        assert all(any(w in t for w in ("nearest", "closest", "farthest", "furthest")) for t in relative)
    else:
        assert any(w in t for t in relative for w in SUPERLATIVES)


@pytest.mark.parametrize("n", [2, 3])
def test_of_two_regions_size_is_compared_not_superlative(n):
    record = _carpet_record(n, second_area=3000)
    sized = []
    for seed in range(40):
        for ref in refs_for(record, AD, np.random.default_rng(seed)):
            if ref["kind"] != "size":
                continue
            for s in ref["sentences"]:
                assert check_sentence(s["text"], ref["region_ids"], record, AD).verdict == OK, s["text"]
                sized.append(set(tokenize(s["text"])))
    assert sized
    comparative, superlative = {"larger", "bigger", "smaller"}, {"largest", "biggest", "smallest"}
    if n == 2:  # "the larger stain", not "the largest stain" of two
        assert all(words & comparative and not words & superlative for words in sized)
    else:
        assert all(words & superlative and not words & comparative for words in sized)


# -- colour words the judge accepts ----------------------------------------------------------------
def test_generation_offers_only_colour_words_the_judge_accepts():
    """Over a grid of mean colours: every word ``describe.colour_name`` offers is one the pixel
    judge's own colour test accepts at generation's margin, and all but a thin border band at the
    judge's stricter margin (those few are the borderline cases the judge is there to drop)."""
    import colorsys

    from annotate.pixel_judge import RULES, colour_fits
    from mvtec_ref.regions.describe import COLOUR_MARGIN_DEG, colour_name

    judge_margin = next(r.threshold for r in RULES if r.name == "colour_name")
    assert judge_margin > COLOUR_MARGIN_DEG
    offered = strict = 0
    for r in range(0, 256, 15):
        for g in range(0, 256, 15):
            for b in range(0, 256, 15):
                word = colour_name(np.array([r, g, b], float))
                if word is None:
                    continue
                hsv = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
                offered += 1
                assert colour_fits(word, hsv, COLOUR_MARGIN_DEG), (r, g, b, word)
                strict += colour_fits(word, hsv, judge_margin)
    assert offered > 1000 and strict / offered > 0.85  # measured 0.89
    assert colour_name(np.array([200, 150, 148], float)) is None  # a pale pink tint: no word
    assert colour_name(np.array([230, 120, 20], float)) == "orange"


def test_whole_object_types_get_no_size_and_parts_take_of_the_object():
    region = {"region_id": 0, "location": "center", "area": 300, "size": "small", "centroid": [50, 50],
              "rel_position": [0.5, 0.5], "appearance": {"tone": "similar", "colour": None},
              "shape": {"word": "compact"}, "bbox": [40, 40, 20, 20],
              "place": {"radius": 0.1, "ring": "center", "angle": 0.0, "clock": None}}  # fmt: skip
    flip = {"category": "metal_nut", "defect_type": "flip", "regions": [region],
            "frame": {"source": "object", "kind": "round", "bbox": [0, 0, 100, 100]}}  # fmt: skip
    screw = _screw_record()
    for seed in range(30):
        for ref in refs_for(flip, AD, np.random.default_rng(seed)):
            for s in ref["sentences"] if ref["region_ids"] else ():
                assert not set(tokenize(s["text"])) & {*SIZE_WORDS, "smallest", "largest"}, s["text"]
        for ref in refs_for(screw, AD, np.random.default_rng(seed)):
            for s in ref["sentences"]:
                assert "tip on the screw" not in s["text"] and "of the thread of the screw" not in s["text"]


def test_no_medium_sized_and_along_an_edge_only_for_long_regions():
    def region(shape):
        return {"region_id": 0, "location": "top", "area": 900, "size": "medium", "centroid": [50, 5],
                "rel_position": [0.5, 0.05], "appearance": {"tone": "similar", "colour": None},
                "shape": {"word": shape}, "bbox": [40, 0, 20, 10], "place": {"edges": ["top"]}}  # fmt: skip

    for shape, along in (("compact", False), ("elongated", True)):
        record = {"category": "carpet", "defect_type": "color" if not along else "thread",
                  "regions": [region(shape)], "frame": {"source": "image", "kind": "texture",
                  "bbox": [0, 0, 100, 100]}}  # fmt: skip
        texts = [s["text"] for seed in range(40) for ref in refs_for(record, AD, np.random.default_rng(seed))
                 if ref["region_ids"] for s in ref["sentences"]]  # fmt: skip
        assert not [t for t in texts if "medium" in t]
        assert any("top edge" in t for t in texts)
        assert any("along the top edge" in t for t in texts) == along


def test_place_words_do_not_echo_the_defect_noun():
    """ "the bent edge near the outer edge of the metal nut": the place repeats the defect's noun."""
    region = {"region_id": 0, "location": "top", "area": 300, "size": "small", "centroid": [50, 8],
              "rel_position": [0.5, 0.08], "appearance": {"tone": "similar", "colour": None},
              "shape": {"word": "compact"}, "bbox": [45, 3, 10, 10],
              "place": {"radius": 0.9, "ring": "rim", "angle": 0.0, "clock": 12}}  # fmt: skip
    bent = {"category": "metal_nut", "defect_type": "bent", "regions": [region],
            "frame": {"source": "object", "kind": "round", "bbox": [0, 0, 100, 100]}}  # fmt: skip
    good = {**bent, "defect_type": "good", "regions": []}
    texts = [s["text"] for seed in range(40) for rec in (bent, good)
             for ref in refs_for(rec, AD, np.random.default_rng(seed)) for s in ref["sentences"]]  # fmt: skip
    assert any("outer edge" in t for t in texts)  # the rim is still named for other types
    for t in texts:
        assert not (("bent edge" in t or "deformed edge" in t) and "outer edge" in t), t
    assert any("bent edge" in t or "deformed edge" in t for t in texts)
