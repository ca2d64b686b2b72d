"""Contrast sets: one-claim edits with hand-known targets, the file, its scores and the CLI."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import REAL_AD, needs_real_data

from annotate import load_vocabulary
from annotate.claims import Claims
from annotate.contrast import Evidence, _mirror, probes_for_sentence, surface, target_of
from mvtec_ref.cli import main
from mvtec_ref.errors import DatasetError
from mvtec_ref.metrics import ContrastMetrics
from mvtec_ref.schema import schema_errors

VOCAB = load_vocabulary("mvtec_ad")


def _region(rid, location, size, area, centroid, tone="similar", shape="irregular", colour=None):
    """A region record as samples.jsonl has it (the fields the claims read), on a 100x100 frame."""
    return {"region_id": rid, "location": location, "size": size, "area": area, "centroid": list(centroid),
            "rel_position": [centroid[0] / 100, centroid[1] / 100], "shape": {"word": shape},
            "appearance": {"tone": tone, "colour": colour}}  # fmt: skip


def _hazelnut(*regions, defect_type="crack"):
    return {"category": "hazelnut", "defect_type": defect_type, "regions": list(regions)}


# Two cracks: a small dark one on the left, a large bright one on the right.
LEFT = _region(0, "left", "small", 40, (20, 50), tone="darker", shape="elongated")
RIGHT = _region(1, "right", "large", 900, (80, 50), tone="brighter", shape="round")
TWO = _hazelnut(LEFT, RIGHT)


@pytest.fixture
def parser_judge_only(monkeypatch):
    """Hand-made records carry no image: their edits are judged by the parser alone (the pixel
    judge confirms the probes of built datasets below)."""
    import annotate.contrast as contrast

    monkeypatch.setattr(contrast, "JUDGES", contrast.JUDGES[:1])


def _probes(text, record=TWO, seed=0):
    return probes_for_sentence(text, Evidence(record, VOCAB), np.random.default_rng([seed, 1]))


def _by_edit(text, record=TWO):
    out = {}
    for p in _probes(text, record):
        out.setdefault(p["edit"], []).append((p["text"], p["region_ids"]))
    return out


@pytest.mark.usefixtures("parser_judge_only")
def test_location_swap_moves_the_target_to_the_other_side():
    got = _by_edit("the crack on the left side of the hazelnut")
    assert got["location"] == [("the crack on the right side of the hazelnut", [1])]
    # The type word replaced by the universal prompt keeps the place: still only the left crack.
    assert got["universal"] == [("the anomaly on the left side of the hazelnut", [0])]
    ((text, target),) = got["type"]
    assert text.split()[1] in ("cut", "hole", "print") and target == []


@pytest.mark.usefixtures("parser_judge_only")
def test_corner_gives_both_mirrors_and_an_empty_place_is_an_empty_target():
    record = _hazelnut(_region(0, "top left", "small", 40, (10, 10)))
    got = _by_edit("the crack in the top left corner of the hazelnut", record)
    assert got["location"] == [
        ("the crack in the top right corner of the hazelnut", []),
        ("the crack in the bottom left corner of the hazelnut", []),
    ]


@pytest.mark.usefixtures("parser_judge_only")
def test_size_extreme_and_tone_swaps_pick_the_other_crack():
    assert _by_edit("the small crack")["size"] == [("the large crack", [1])]
    assert _by_edit("the largest crack")["extreme"] == [("the smallest crack", [0])]
    assert _by_edit("the crack farthest to the left")["extreme"] == [("the crack farthest to the right", [1])]
    assert _by_edit("the leftmost crack")["extreme"] == [("the rightmost crack", [1])]
    assert _by_edit("the dark crack")["attribute"] == [("the bright crack", [1])]


@pytest.mark.usefixtures("parser_judge_only")
def test_count_change_refers_to_nothing_and_universal_names_every_region():
    got = _by_edit("the two cracks on the hazelnut")
    assert got["count"] == [("the three cracks on the hazelnut", [])]
    assert got["universal"] == [("the two anomalies on the hazelnut", [0, 1])]
    three = _hazelnut(LEFT, RIGHT, _region(2, "top", "small", 50, (50, 10)))
    assert _by_edit("all three cracks", three)["count"] == [
        ("all four cracks", []),
        ("both cracks", []),  # "all two" reads as "both"
    ]


@pytest.mark.usefixtures("parser_judge_only")
def test_a_sentence_for_another_type_is_given_the_image_type():
    got = _by_edit("the holes on the hazelnut")
    assert got["type"] == [("the cracks on the hazelnut", [0, 1])]  # nothing -> every crack
    assert got["universal"] == [("the anomalies on the hazelnut", [0, 1])]


@pytest.mark.usefixtures("parser_judge_only")
def test_edits_the_judge_rejects_are_dropped():
    # Two cracks on the right: "the crack on the right" is ambiguous, so the swap is not a probe.
    record = _hazelnut(LEFT, RIGHT, _region(2, "right", "small", 50, (85, 80)))
    assert "location" not in _by_edit("the crack on the left side of the hazelnut", record)
    # A combined image may show any type: no type swap there.
    assert "type" not in _by_edit("the damaged area", _hazelnut(LEFT, defect_type="combined"))


@pytest.mark.usefixtures("parser_judge_only")
def test_every_judge_must_agree(monkeypatch):
    import annotate.contrast as contrast

    assert _probes("the crack on the left side of the hazelnut")
    monkeypatch.setattr(contrast, "JUDGES", (*contrast.JUDGES, ("never", lambda *args: False)))
    assert _probes("the crack on the left side of the hazelnut") == []


def test_a_judge_reads_the_pixels_once_per_image(probes_file, synth_dataset, monkeypatch):
    import annotate.contrast as contrast
    from mvtec_ref.probes import build_probes

    reads = []

    def pixel_like(text, target, ev):
        image = ev.memo("scene", lambda: reads.append(ev.record["id"]) or ev.image())
        return image.shape[:2] == (ev.record["height"], ev.record["width"])

    assert [name for name, _ in contrast.JUDGES] == ["parser", "pixel"]  # both judges, as in build
    assert json.loads(probes_file.read_text().splitlines()[0])["judges"] == ["parser", "pixel"]
    monkeypatch.setattr(contrast, "JUDGES", (contrast.JUDGES[0], ("pixels", pixel_like)))
    header, probes = build_probes(synth_dataset, progress=False)
    assert header["judges"] == ["parser", "pixels"]
    assert reads and len(reads) == len(set(reads)) <= header["images"]
    with pytest.raises(DatasetError, match="no source root"):
        Evidence(TWO | {"id": "hazelnut/test/crack/000"}, VOCAB).image()


def test_rewrites_leave_the_type_phrase_alone():
    # A type phrase with a place word in it, e.g. "gap left by a missing cable" (a plugin's words).
    from annotate.vocab import _from_data

    phrase, category, defect_type = "gap left by a missing cable", "cable", "missing_cable"
    entry = {"role": "on", "phrases": [[phrase, "gaps left by missing cables"]], "nature": "gap"}
    vocab = _from_data(
        {"source": "t", "categories": {category: {"noun": "cable", "defects": {defect_type: entry}}}}, "t"
    )
    noun = vocab.noun(category)
    text = f"the {phrase} near the top of the {noun}"
    view = surface(text, category, vocab, (defect_type,))
    assert view.replace_words({"left": "right"}) == (None, "")
    assert view.replace_words({"top": "bottom"})[0] == f"the {phrase} near the bottom of the {noun}"
    assert view.replace_type("anomaly", "anomalies")[0] == f"the anomaly near the top of the {noun}"


@dataclass(frozen=True)
class _FrameClaims(Claims):
    """The place claims of a parser that reads frames (edges of a box, clock hours of a round
    object, the ends of an axis), as i18gen's adds them."""

    edges: frozenset | None = None
    end: str | None = None
    clock: int | None = None


def test_mirrors_move_cells_edges_and_clock_hours():
    left_column = Claims(cells=frozenset({(0, 0), (1, 0), (2, 0)}))
    assert _mirror(1)(left_column).cells == {(0, 2), (1, 2), (2, 2)}
    assert _mirror(0)(left_column) is None  # a whole column is its own top-bottom mirror
    corner = _FrameClaims(defect_type="crack", edges=frozenset({"top", "left"}))
    assert _mirror(1)(corner).edges == {"top", "right"} and _mirror(0)(corner).edges == {"bottom", "left"}
    assert _mirror(1)(Claims(defect_type="crack")) is None
    hours = {h: (_mirror(1)(_FrameClaims(clock=h)), _mirror(0)(_FrameClaims(clock=h))) for h in range(1, 13)}
    assert [(h, lr and lr.clock, tb and tb.clock) for h, (lr, tb) in hours.items() if h in (1, 3, 6, 12)] == [
        (1, 11, 5), (3, 9, None), (6, None, 12), (12, None, 6)]  # fmt: skip


def test_clock_hours_and_axis_ends_are_rewritten_in_place():
    from dataclasses import replace

    from annotate.contrast import EDITS

    view = surface("the chip at 1 o'clock near the left of the bottle", "bottle", VOCAB)
    mirror_lr = next(e for e in EDITS if e.kind == "location")
    assert mirror_lr.rewrite(view)[0] == "the chip at 11 o'clock near the right of the bottle"
    assert mirror_lr.rewrite(surface("the 2 chips", "bottle", VOCAB)) == (None, "")  # not an hour
    ends = next(e for e in EDITS if e.kind == "location" and e.rewrite.__name__ == "_swap_ends")
    phrase = next(p for t in VOCAB.category_types("screw") for p, _ in VOCAB.words("screw", t).phrases
                  if "head" in p.split())  # fmt: skip
    view = surface(f"the {phrase} near the tip of the screw", "screw", VOCAB)
    # The "head" of the type phrase stays; the place word flips.
    assert ends.rewrite(replace(view, ends=("head", "tip")))[0] == f"the {phrase} near the head of the screw"
    assert ends.rewrite(replace(view, ends=("head",))) == (None, "")  # no frame with two ends: no swap
    assert ends.change(_FrameClaims(end="end")).end == "start" and ends.change(Claims()) is None


def test_count_rule_in_target_of():
    from annotate.contrast import _count_by

    assert _count_by(1)(Claims(count=9)).count == 10 and _count_by(1)(Claims(count=10)) is None
    assert _count_by(-1)(Claims(count=2)) is None  # "the one cracks" is not a sentence
    claims = Claims(defect_type="crack", count=3)
    assert target_of(claims, TWO) == set()
    assert target_of(claims.with_(count=2), TWO) == {0, 1}


# -- metrics ---------------------------------------------------------------------------------------


def _m(*pixels, shape=(2, 4)):
    m = np.zeros(shape, np.uint8)
    for y, x in pixels:
        m[y, x] = 1
    return m


def test_contrast_metrics_hand_computed():
    a, b = _m((0, 0), (0, 1)), _m((1, 2), (1, 3))
    empty = _m()
    m = ContrastMetrics()
    # 1. target moved a -> b; the model moves from a to half of b: IoU(pred, gt) = 1/2,
    #    shift = 1 - IoU(b-half, a) = 1; truth shift 1.
    m.update(_m((1, 2)), a, b, a, "location")
    # 2. target moved a -> empty; the model keeps a: IoU 0 (empty truth, non-empty answer), shift 0.
    m.update(a, a, empty, a, "location")
    # 3. target unchanged (a); the model moves from a to a+one pixel: IoU 2/3, shift 1 - 2/3.
    m.update(_m((0, 0), (0, 1), (0, 2)), a, a, a, "universal")
    # 4. target unchanged and empty; the model answers empty both times: IoU 1, shift 0.
    m.update(empty, empty, empty, empty, "type")
    r = m.compute()
    o = r["overall"]
    assert (o["probes"], o["moved"], o["same"], o["with_target"], o["without_target"]) == (4, 2, 2, 2, 2)
    assert o["mIoU"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert o["gIoU"] == pytest.approx((1 / 2 + 0 + 2 / 3 + 1) / 4)
    assert o["empty_answered_empty"] == 0.5
    assert o["sensitivity_moved"] == pytest.approx((1 + 0) / 2)
    assert o["sensitivity_same"] == pytest.approx((1 / 3 + 0) / 2)
    assert o["truth_shift_moved"] == 1.0
    loc = r["by_edit"]["location"]
    assert loc["mIoU"] == 0.5 and loc["empty_answered_empty"] == 0.0 and loc["sensitivity_same"] is None
    assert r["by_edit"]["type"]["mIoU"] is None and r["by_edit"]["type"]["empty_answered_empty"] == 1.0
    m.reset()
    assert m.compute()["overall"]["probes"] == 0 and m.compute()["by_edit"] == {}


def test_a_model_that_ignores_the_text_has_zero_sensitivity_and_overlap_counts():
    m = ContrastMetrics()
    anything = _m((0, 0), (1, 1))
    m.update(anything, anything, _m((0, 0)), _m((0, 0), (0, 1)), "extreme")  # moved: {0,1} -> {0}
    r = m.compute()["overall"]
    assert r["sensitivity_moved"] == 0.0 and r["truth_shift_moved"] == pytest.approx(0.5)
    m.update(np.ones((4, 8)), anything, _m((0, 0)), _m((0, 0)), "extreme")  # resized to (2, 4) first
    assert m.compute()["overall"]["sensitivity_same"] == pytest.approx(1 - 2 / 8)


# -- the file and the CLI ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def probes_file(synth_dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("probes") / "probes.jsonl"
    result = CliRunner().invoke(main, ["probes", str(synth_dataset), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def _read(path):
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return lines[0], lines[1:]


def test_probes_file_schema_counts_and_targets(probes_file, synth_dataset):
    header, probes = _read(probes_file)
    assert schema_errors("probes", header) == [] and all(schema_errors("probes", p) == [] for p in probes)
    assert header["probes"] == len(probes) and sum(header["edits"].values()) == len(probes)
    assert all(header["edits"][kind] > 0 for kind in ("location", "type", "size", "universal"))
    assert len({p["probe_id"] for p in probes}) == len(probes)
    records = {}
    for line in (synth_dataset / "samples.jsonl").read_text().splitlines():
        r = json.loads(line)
        records[r["id"]] = r
    for p in probes:
        record = records[p["id"]]
        assert record["split"] == "test" and record["regions"]
        ref = next(ref for ref in record["refs"] if ref["ref_id"] == p["ref_id"])
        sentence = next(s for s in ref["sentences"] if s["sent_id"] == p["sent_id"])
        assert sentence["text"] == p["source_text"] and ref["region_ids"] == p["source_region_ids"]
        assert p["text"] != p["source_text"]
        assert set(p["region_ids"]) <= {g["region_id"] for g in record["regions"]}


def test_probes_rerun_is_byte_identical_and_default_path(probes_file, synth_dataset, tmp_path):
    dataset = tmp_path / "ds"
    shutil.copytree(synth_dataset, dataset)
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(main, ["probes", str(dataset), "--quiet"])
        assert result.exit_code == 0, result.output
        assert (dataset.parent / f"{dataset.name}.probes-test.jsonl").read_bytes() == probes_file.read_bytes()
    assert "probes of" in result.output and "location" in result.output


def test_probes_refuses_to_replace_a_foreign_file_and_names_bad_input(synth_dataset, tmp_path):
    runner = CliRunner()
    foreign = tmp_path / "notes.jsonl"
    foreign.write_text('{"mine": 1}\n')
    result = runner.invoke(main, ["probes", str(synth_dataset), "--out", str(foreign)])
    assert result.exit_code == 1 and "not a probes file" in result.output
    assert foreign.read_text() == '{"mine": 1}\n'
    result = runner.invoke(main, ["probes", str(tmp_path / "nope"), "--out", str(tmp_path / "p.jsonl")])
    assert result.exit_code == 1 and "manifest.json: not found" in result.output
    result = runner.invoke(main, ["probes", str(synth_dataset), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "is a directory" in result.output


def _write_truth_pngs(dataset, probes, folder):
    """A perfect model: each probe's and source sentence's own target, as PNGs."""
    import cv2

    from mvtec_ref.regions.mask import decode_rle

    records = {}
    for line in (dataset / "samples.jsonl").read_text().splitlines():
        r = json.loads(line)
        records[r["id"]] = r
    folder.mkdir()
    for p in probes:
        regions = {g["region_id"]: decode_rle(g["segmentation"]) for g in records[p["id"]]["regions"]}
        shape = next(iter(regions.values())).shape
        for key, ids in ((p["probe_id"], p["region_ids"]), (p["sent_id"], p["source_region_ids"])):
            mask = np.zeros(shape, np.uint8)
            for i in ids:
                mask |= regions[i]
            cv2.imwrite(str(folder / f"{key}.png"), mask * 255)


def test_evaluate_probes_perfect_every_defect_and_nothing(probes_file, synth_dataset, tmp_path):
    from benchmarks.contrast_reference import write_references

    header, probes = _read(probes_file)
    runner = CliRunner()

    def score(pred, *extra):
        out = tmp_path / "scores.json"
        args = [
            "evaluate",
            str(synth_dataset),
            "--probes",
            str(probes_file),
            "--pred",
            str(pred),
            "--out",
            str(out),
        ]
        result = runner.invoke(main, [*args, *extra])
        assert result.exit_code == 0, result.output
        assert "sens-moved" in result.output and "location" in result.output
        data = json.loads(out.read_text())
        assert schema_errors("contrast_metrics", data) == []
        return data

    perfect = tmp_path / "perfect"
    _write_truth_pngs(synth_dataset, probes, perfect)
    o = score(perfect)["overall"]
    assert o["probes"] == len(probes) and o["moved"] == header["target_moved"]
    assert o["mIoU"] == 1.0 and o["empty_answered_empty"] == 1.0 and o["sensitivity_same"] == 0.0
    assert o["sensitivity_moved"] == pytest.approx(o["truth_shift_moved"]) and o["sensitivity_moved"] > 0

    write_references(synth_dataset, probes_file, tmp_path / "refs")
    every = score(tmp_path / "refs" / "every_defect.jsonl")["overall"]
    assert every["sensitivity_moved"] == every["sensitivity_same"] == 0.0
    assert every["empty_answered_empty"] == 0.0 and 0 < every["mIoU"] < 1
    nothing = score(tmp_path / "refs" / "nothing.jsonl")["overall"]
    assert nothing["mIoU"] == 0.0 and nothing["empty_answered_empty"] == 1.0
    assert nothing["sensitivity_moved"] == 0.0

    # Missing masks: an error naming one, unless --allow-missing scores them as empty.
    (perfect / f"{probes[0]['probe_id']}.png").unlink()
    result = runner.invoke(main, ["evaluate", str(synth_dataset), "--probes", str(probes_file),
                                  "--pred", str(perfect)])  # fmt: skip
    assert result.exit_code == 1 and probes[0]["probe_id"] in result.output
    assert score(perfect, "--allow-missing")["missing_scored_as_empty"] == 1


def test_evaluate_refuses_probes_of_another_build(probes_file, synth_dataset, tmp_path):
    header, probes = _read(probes_file)
    stale = tmp_path / "stale.jsonl"
    header["samples_sha256"] = "0" * 64
    stale.write_text("\n".join(json.dumps(x) for x in (header, *probes)) + "\n")
    result = CliRunner().invoke(main, ["evaluate", str(synth_dataset), "--probes", str(stale),
                                       "--pred", str(tmp_path)])  # fmt: skip
    assert (
        result.exit_code == 1
        and "another build" in result.output
        and "rerun mvtec-ref probes" in result.output
    )
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(header) + '\n{"probe_id": "x"}\n')
    result = CliRunner().invoke(main, ["evaluate", str(synth_dataset), "--probes", str(broken),
                                       "--pred", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 1 and "broken.jsonl line 2" in result.output


def test_predict_names_each_mask_by_its_probe(probes_file, synth_dataset, tmp_path, monkeypatch):
    """The baseline's --probes path, with a stand-in model whose mask width says which text it saw."""
    torch = pytest.importorskip("torch")
    import cv2

    import baselines.dqformer.infer as infer
    from baselines.dqformer.config import PRESETS
    from baselines.dqformer.predict import predict_dataset

    header, probes = _read(probes_file)
    texts: dict[str, int] = {}

    def fake_iter_masks(model, data, *, device, **_):
        for mine in data.by_record:
            for i in mine:
                item = data.items[i]
                yield item, np.ones((1, texts.setdefault(item.text, len(texts) + 1)), bool)

    monkeypatch.setattr(infer, "load_run", lambda *a, **k: (torch.nn.Linear(1, 1), PRESETS["tiny"](), None))
    monkeypatch.setattr(infer, "iter_masks", fake_iter_masks)
    out = tmp_path / "pred"
    written = predict_dataset(tmp_path, synth_dataset, "test", out, probes=probes_file)
    assert len(list(out.glob("p*_*.png"))) == len(probes)
    for p in probes:
        for key, text in ((p["probe_id"], p["text"]), (p["sent_id"], p["source_text"])):
            assert cv2.imread(str(out / f"{key}.png"), cv2.IMREAD_UNCHANGED).shape == (1, texts[text])
    assert written == len(list(out.glob("*.png")))
    record = json.loads((out / "PREDICTIONS.json").read_text())
    assert record["probes"] == str(probes_file)


def test_predict_cli_checks_the_probes_split(probes_file, synth_dataset, tmp_path):
    probes = ["--probes", str(probes_file), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(
        main, ["predict", str(tmp_path), "--dataset", str(synth_dataset), "--split", "val", *probes]
    )
    assert result.exit_code == 2 and "--split test" in result.output
    result = CliRunner().invoke(main, ["predict", str(tmp_path), "--image", "x.png", "--text", "a", *probes])
    assert result.exit_code == 2 and "--probes needs --dataset" in result.output


@needs_real_data
def test_real_sample_probes(tmp_path):
    from mvtec_ref.build import BuildConfig, build_dataset
    from mvtec_ref.probes import build_probes

    dataset = tmp_path / "real"
    build_dataset(REAL_AD, dataset, BuildConfig(categories=("hazelnut", "grid")), progress=False)
    header, probes = build_probes(dataset, split="all", progress=False)
    assert all(schema_errors("probes", p) == [] for p in (header, *probes))
    assert all(header["edits"][k] > 0 for k in ("location", "type", "universal"))
    # hazelnut/test/crack/000 has one crack: a sentence that places it, moved to the mirrored
    # place, refers to nothing ("on the right" -> "on the left", "at 2 o'clock" -> "at 10 o'clock").
    moved = [p for p in probes if p["id"] == "hazelnut/test/crack/000" and p["edit"] == "location"
             and p["source_region_ids"] == [0]]  # fmt: skip
    assert moved and all(p["region_ids"] == [] for p in moved)
