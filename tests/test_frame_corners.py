"""Issue 31: corner words only where the object's outline has that corner.

An oval pill, a capsule's round ends, a cable seen end-on: the box around them has corners, the
object does not ("the top right corner of the pill" was judged unfaithful by a reader). The frame
measures which corners of its box the object fills (``box_corners``); the generator names only
those; the parser-based checker refuses the others from the record, and the pixel judge measures
the outline itself, for sentences with and without a target."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from annotate import check_sentence, load_vocabulary, refs_for
from annotate.faithful import OK
from annotate.generate import place_terms
from annotate.pixel_judge import judge_sentence, measure_record
from annotate.roles import role_faults
from mvtec_ref.cli import main
from mvtec_ref.regions.frame import CORNERS, box_corners, find_frame

VOCAB = load_vocabulary("mvtec_ad")
SIZE = 240


def _drawn(shape: str) -> np.ndarray:
    """``(SIZE, SIZE)`` uint8 {0, 1} masks of the outlines the measure must tell apart."""
    m = np.zeros((SIZE, SIZE), np.uint8)
    if shape == "rectangle":
        m[60:180, 30:210] = 1
    elif shape == "rounded":  # corners rounded to a fifth of the shorter side (a chip, a phone battery)
        r = 24
        m[60:180, 30 + r : 210 - r] = 1
        m[60 + r : 180 - r, 30:210] = 1
        for cx, cy in ((30 + r, 60 + r), (209 - r, 60 + r), (30 + r, 179 - r), (209 - r, 179 - r)):
            cv2.circle(m, (cx, cy), r, 1, -1)
    elif shape == "oval":  # a pill
        cv2.ellipse(m, (120, 120), (100, 55), 0, 0, 360, 1, -1)
    elif shape == "disc":  # a cable seen end-on, a button battery
        cv2.circle(m, (120, 120), 90, 1, -1)
    elif shape == "stadium":  # a capsule: four times as long as wide, round ends
        cv2.rectangle(m, (50, 95), (190, 145), 1, -1)
        cv2.circle(m, (50, 120), 25, 1, -1)
        cv2.circle(m, (190, 120), 25, 1, -1)
    elif shape == "tilted":  # a rectangle turned by 5 degrees: two corners still at its box's
        cv2.fillPoly(m, [cv2.boxPoints(((120, 120), (180, 100), 5)).astype(np.int32)], 1)
    elif shape == "triangle":
        cv2.fillPoly(m, [np.array([[120, 30], [210, 200], [30, 200]], np.int32)], 1)
    return m


@pytest.mark.parametrize(
    ("shape", "corners"),
    [
        ("rectangle", list(CORNERS)),
        ("rounded", list(CORNERS)),
        ("oval", []),
        ("disc", []),
        ("stadium", []),
        ("tilted", ["top left", "bottom right"]),
        ("triangle", ["bottom left", "bottom right"]),
    ],
)
def test_box_corners_are_those_the_outline_fills(shape, corners):
    assert box_corners(_drawn(shape).astype(bool)) == corners
    image = np.where(_drawn(shape), 220, 25).astype(np.uint8)  # the same object in a picture
    frame = find_frame(image, "box")
    assert frame["kind"] == "box" and frame["corners"] == corners


def test_only_box_frames_list_corners():
    image = np.where(_drawn("oval"), 220, 25).astype(np.uint8)
    for kind in ("texture", "axis", "round"):
        assert "corners" not in find_frame(image, kind)


def _frame_record(shape: str) -> dict:
    image = np.where(_drawn(shape), 220, 25).astype(np.uint8)
    return find_frame(image, "box")


def _region_at(x: float, y: float, frame: dict) -> dict:
    """A small region record at (x, y) of the frame (relative), with the place words it has there."""
    from mvtec_ref.regions.frame import place

    bx, by, bw, bh = frame["bbox"]
    centroid = (bx + x * bw, by + y * bh)
    cell = ("top", "", "bottom")[min(int(y * 3), 2)] + " " + ("left", "", "right")[min(int(x * 3), 2)]
    return {"region_id": 0, "location": cell.strip() or "center", "area": 60, "size": "small",
            "centroid": list(centroid), "rel_position": [x, y],
            "bbox": [int(centroid[0]) - 4, int(centroid[1]) - 4, 8, 8],
            "appearance": {"tone": "similar", "colour": None}, "shape": {"word": "compact"},
            "place": place(centroid, frame)}  # fmt: skip


def test_place_terms_name_a_corner_only_where_the_object_has_it():
    for shape, has in (("oval", False), ("rectangle", True)):
        frame = _frame_record(shape)
        rule = {**VOCAB.frame("pill"), "kind": "box", "bbox": frame["bbox"], "corners": frame["corners"]}
        region = _region_at(0.1, 0.9, frame)  # in the bottom left square of the box
        texts = [t for _, phrasings in place_terms(region, rule, "pill") for t in phrasings]
        assert any("corner" in t for t in texts) == has, (shape, texts)
        # the box's part and its edges are still there to say
        assert "in the lower left part of the pill" in texts and "near the left edge of the pill" in texts


def _good(shape: str, category: str = "pill") -> dict:
    return {"id": f"{category}/test/good/000", "category": category, "defect_type": "good", "regions": [],
            "frame": _frame_record(shape), "refs": []}  # fmt: skip


def _texts(record, seeds=range(60), accept=None):
    refs = [ref for seed in seeds for ref in refs_for(record, VOCAB, np.random.default_rng(seed), accept)]
    return [s["text"] for ref in refs for s in ref["sentences"]]


def test_no_target_sentences_of_an_oval_pill_name_no_corner():
    oval, square = _texts(_good("oval")), _texts(_good("rectangle"))
    assert not [t for t in oval if "corner" in t]
    assert [t for t in square if "corner" in t]  # a square tablet keeps its corners
    assert [t for t in oval if "toward the top right of the pill" in t or "upper right part" in t]


def test_a_record_without_measured_corners_keeps_the_old_words():
    """A record written before frames measured corners: every corner of the box, as before."""
    record = _good("oval")
    del record["frame"]["corners"]
    assert [t for t in _texts(record) if "corner" in t]


def test_the_checker_refuses_a_corner_the_frame_lacks():
    record = _good("oval")
    for text in ("a crack in the top right corner of the pill", "a scratch near a corner of the pill",
                 "the contamination spot in the corner"):  # fmt: skip
        faults = role_faults(text, record, VOCAB)
        assert [f.rule for f in faults] == ["frame_edges"], text
        assert check_sentence(text, [], record, VOCAB).verdict != OK
    assert not role_faults("a crack toward the top right of the pill", record, VOCAB)
    assert not role_faults("a crack in the top right corner of the image", record, VOCAB)
    square = _good("rectangle")
    assert check_sentence("a crack in the top right corner of the pill", [], square, VOCAB).verdict == OK


def _scene(shape: str, record: dict):
    image = np.where(_drawn(shape), 220, 25).astype(np.uint8)
    return measure_record(record, image, vocab=VOCAB)


def test_the_pixel_judge_measures_the_outline_with_no_target():
    """No region to look at, but the object is there: "the top right corner of the pill" is false
    of an oval pill whatever the record's frame says (its corners forged to all four here)."""
    record = _good("oval")
    record["frame"]["corners"] = list(CORNERS)
    scene = _scene("oval", record)
    text = "a crack in the top right corner of the pill"
    assert [f.rule for f in judge_sentence(text, [], record, scene, VOCAB)] == ["corner_outline"]
    assert judge_sentence("a crack toward the top right of the pill", [], record, scene, VOCAB) == []
    square = _good("rectangle")
    assert judge_sentence(text, [], square, _scene("rectangle", square), VOCAB) == []


def test_the_generator_asks_the_judge_about_no_target_places():
    """Where the judge refuses a corner the frame record lists, the place is drawn again."""
    record = _good("oval")
    record["frame"]["corners"] = list(CORNERS)  # the generator believes the corners are there
    scene = _scene("oval", record)

    def accept(text, target):
        return not judge_sentence(text, list(target), record, scene, VOCAB, first_only=True)

    believed = _texts(record)
    vetted = _texts(record, accept=accept)
    assert [t for t in believed if "corner" in t] and not [t for t in vetted if "corner" in t]


@pytest.fixture(scope="module")
def box_tree(tmp_path_factory):
    """Synthetic pills (ovals), capsules (stadiums), cables (discs) and zippers (strips)."""
    from mvtec_ref.synth import write_synthetic_tree

    root = tmp_path_factory.mktemp("boxes") / "mvtec"
    write_synthetic_tree(root, scale="small", seed=0, progress=False,
                         categories=("pill", "capsule", "cable", "zipper"), per_type=2)  # fmt: skip
    return root


@pytest.fixture(scope="module")
def box_dataset(box_tree, tmp_path_factory):
    from mvtec_ref.build import BuildConfig, build_dataset

    out = tmp_path_factory.mktemp("boxes_built") / "dataset"
    build_dataset(box_tree, out, BuildConfig(), progress=False)
    return out


def _records(dataset):
    return [json.loads(line) for line in (dataset / "samples.jsonl").open()]


def test_a_build_names_only_corners_the_objects_have(box_dataset):
    said = {}
    for record in _records(box_dataset):
        frame = record["frame"]
        for ref in record["refs"]:
            for s in ref["sentences"]:
                if "corner" not in s["text"]:
                    continue
                said.setdefault(record["category"], []).append(s["text"])
                assert frame["kind"] == "box"
                assert any(f"{c} corner" in s["text"] for c in frame["corners"]), (record["id"], s["text"])
    assert not said.keys() & {"pill", "capsule", "cable"}, said
    assert said.get("zipper"), "a zipper's strip has corners and they are still said"


def test_validate_deep_catches_a_rewritten_corner_on_a_good_image(box_dataset, box_tree, tmp_path):
    """A reviewer's or a paraphraser's corner on a good pill image, with the record's frame forged to
    list it (so that the checker believes it): only the judge, measuring the pill, sees it."""
    dataset = tmp_path / "ds"
    shutil.copytree(box_dataset, dataset)
    records = _records(dataset)
    record = next(r for r in records if r["category"] == "pill" and not r["regions"] and len(r["refs"]) > 1)
    record["frame"]["corners"] = list(CORNERS)
    text = "a crack in the top right corner of the pill"
    record["refs"][1]["sentences"][0].update(text=text, tokens=text.split(), origin="llm")
    (dataset / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    deep = CliRunner().invoke(main, ["validate", str(dataset), "--deep", "--max-lines", "500"])
    assert deep.exit_code == 1
    (line,) = [x for x in deep.output.splitlines() if repr(text) in x]
    at = f"samples.jsonl:{records.index(record) + 1}: refs[1].sentences[0]"
    assert "pixel judge: corner_outline" in line and at in line


def test_a_part_placed_in_another_frame_kind_is_refused_not_a_crash():
    """A bottle's rim is a round frame's word; an object measured as a box (a picture too small to
    find the rim) gives no place to check it against: any place claim is refused, none is fine."""
    from annotate.claims import TERM_CELLS, Claims
    from annotate.roles import _wrong_place

    box = {"kind": "box", "ends": ("top", "bottom"), "rim": "edge", "edges": True}
    assert _wrong_place(Claims(cells=TERM_CELLS["top"]), ("rim",), box) is not None
    assert _wrong_place(Claims(), ("rim",), box) is None
    assert _wrong_place(Claims(cells=TERM_CELLS["top"]), ("top",), box) is None


def test_a_one_pixel_image_of_a_round_category_builds(synth_tree, tmp_path):
    """Issue 32's re-probe: a 1x1 good bottle image crashed the no-target generator (KeyError 'rim')."""
    src = tmp_path / "src" / "bottle"
    shutil.copytree(synth_tree / "bottle", src)
    cv2.imwrite(str(src / "test" / "good" / "000.png"), np.zeros((1, 1, 3), np.uint8))
    args = ["build", "--root", str(tmp_path / "src"), "--out", str(tmp_path / "ds"), "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
