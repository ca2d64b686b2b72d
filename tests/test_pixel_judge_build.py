"""The pixel judge inside the toolkit: build rejects and counts, validate --deep reports, stats
shows the counts, show draws a picture per sentence; and on the real samples it catches the
faults found by reading sentences against their images (issue 18)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import REAL_AD, SHARED_DATA, needs_real_data

from annotate import load_vocabulary
from annotate.pixel_judge import RULES, judge_record, judge_sentence, measure_record
from mvtec_ref.cli import main
from mvtec_ref.regions.mask import decode_image

REAL_LOCO = SHARED_DATA / "mvtec_loco_sample"


def _records(dataset):
    return [json.loads(line) for line in (dataset / "samples.jsonl").open()]


def _image(dataset, record):
    root = json.loads((dataset / "manifest.json").read_text())["source"]["root"]
    return decode_image((Path(root) / record["image_path"]).read_bytes(), record["image_path"])


def test_build_counts_rejections_by_rule_and_ships_only_what_passes(synth_dataset):
    manifest = json.loads((synth_dataset / "manifest.json").read_text())
    judge = manifest["pixel_judge"]
    assert list(judge["removed_by_rule"]) == [r.name for r in RULES]
    assert judge["sentences_removed"] == sum(judge["removed_by_rule"].values()) > 0
    assert judge["sentences_checked"] > judge["sentences_removed"]
    assert judge["thresholds"]["tone"] == 20.0
    vocab = load_vocabulary("mvtec_ad")
    for record in _records(synth_dataset):
        if record["regions"]:
            assert judge_record(record, _image(synth_dataset, record), vocab) == [], record["id"]


def test_validate_deep_flags_a_false_hand_written_sentence(synth_dataset, tmp_path):
    """A sentence the parser-based checker accepts (the stored tone says "darker") while the
    pixels show no dark region: only the pixel judge can see it."""
    dataset = tmp_path / "ds"
    shutil.copytree(synth_dataset, dataset)
    records = _records(dataset)
    vocab = load_vocabulary("mvtec_ad")
    for record in records:
        if len(record["regions"]) != 1 or record["category"] != "carpet":
            continue
        look = measure_record(record, _image(dataset, record)).looks[0]
        if look.ring_median is not None and look.gray_median >= look.ring_median:
            break
    else:
        pytest.fail("no single-region carpet image whose region is not darker than its surround")
    record["regions"][0]["appearance"]["tone"] = "darker"
    record["regions"][0]["appearance"]["colour"] = None
    phrase = vocab.words("carpet", record["defect_type"]).phrases[0][0]
    text = f"the dark {phrase}"
    ref = next(r for r in record["refs"] if r["region_ids"] == [0])
    ref["sentences"][0].update(text=text, tokens=text.split(), origin="llm")
    (dataset / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    runner = CliRunner()
    shallow = runner.invoke(main, ["validate", str(dataset), "--max-lines", "500"])
    assert text not in shallow.output  # the parser-based checker believes the stored tone
    deep = runner.invoke(main, ["validate", str(dataset), "--deep", "--max-lines", "500"])
    assert deep.exit_code == 1
    (line,) = [x for x in deep.output.splitlines() if repr(text) in x]
    assert "pixel judge: tone" in line and record["id"] in line


def test_stats_reports_per_rule_counts(synth_dataset, tmp_path):
    result = CliRunner().invoke(main, ["stats", str(synth_dataset), "--json", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    judge = json.loads((synth_dataset / "manifest.json").read_text())["pixel_judge"]
    removed, checked = judge["sentences_removed"], judge["sentences_checked"]
    assert f"rejected {removed} of {checked:,} candidate" in result.output
    silent = [rule for rule, n in judge["removed_by_rule"].items() if not n]
    assert silent and f"{len(silent)} other rules rejected none" in result.output
    table = result.output.split("rule ")[-1].splitlines()[1:]  # the judge's table, last
    rows = {line.split()[0]: line.split()[-1] for line in table if line.split()}
    for rule, n in judge["removed_by_rule"].items():  # a row for each rule that rejected something
        assert rows.get(rule) == (str(n) if n else None), rule
    assert json.loads((tmp_path / "s.json").read_text())["pixel_judge"] == judge


def test_show_writes_a_picture_per_ref_and_per_sampled_sentence(synth_dataset, tmp_path):
    from PIL import Image

    runner = CliRunner()
    record = next(r for r in _records(synth_dataset) if len(r["regions"]) > 1)
    out = tmp_path / "one"
    result = runner.invoke(main, ["show", str(synth_dataset), "--image", record["id"], "--out", str(out)])
    assert result.exit_code == 0, result.output
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == len(record["refs"])
    with Image.open(pngs[0]) as picture:
        assert picture.width >= 640 and picture.height > 640  # image (and zoom) + text panel
    review = (out / "review.tsv").read_text().splitlines()
    assert len(review) == 1 + sum(len(ref["sentences"]) for ref in record["refs"])

    sampled = tmp_path / "sample"
    args = ["show", str(synth_dataset), "--sample", "7", "--seed", "3", "--out", str(sampled)]
    assert runner.invoke(main, args).exit_code == 0
    info = json.loads((sampled / "show.json").read_text())
    assert len(info["pictures"]) == 7 and all(len(p["sent_ids"]) == 1 for p in info["pictures"])
    assert sorted(p.name for p in sampled.glob("*.png")) == sorted(p["file"] for p in info["pictures"])
    first = (sampled / "show.json").read_bytes()
    assert runner.invoke(main, args).exit_code == 0  # rerun replaces its own output, same draw
    assert (sampled / "show.json").read_bytes() == first


def test_show_never_writes_into_a_users_folder(synth_dataset, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(main, ["show", str(synth_dataset), "--sample", "2", "--out", str(mine)])
    assert result.exit_code == 1 and "refusing" in result.output and "Traceback" not in result.output
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    for bad in (["--sample", "2", "--image", "x"], [], ["--image", "no/such/image"]):
        result = CliRunner().invoke(main, ["show", str(synth_dataset), *bad, "--out", str(tmp_path / "x")])
        assert result.exit_code != 0 and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()[-1]) < 300


# -- the real samples: the faults seen when reading sentences against their images ----------


def _real_record(dataset_root, sample_id, tmp_path, source="mvtec_ad", category=None):
    from mvtec_ref.build import BuildConfig, build_dataset

    out = tmp_path / "ds"
    config = BuildConfig(source=source, categories=(category or sample_id.split("/")[0],))
    build_dataset(dataset_root, out, config, progress=False)
    record = next(r for r in _records(out) if r["id"] == sample_id)
    return out, record, _image(out, record)


@needs_real_data
@pytest.mark.parametrize(
    ("sample_id", "text", "target", "rule"),
    [
        ("grid/test/bent/000", "the darker bent wires in the grid", [0, 1, 2], "comparative"),
        ("grid/test/broken/001", "all three small dark breaks in the mesh", [0, 1, 2], "tone_share"),
        ("grid/test/broken/000", "the break in the mesh close to the top edge of the grid", [0], "edge"),
        ("grid/test/bent/000", "the bent wire in the top left corner of the grid", [0], "corner"),
        ("grid/test/glue/000", "the darker blob of glue", [0], "comparative"),
        ("grid/test/glue/000", "the round glue spot", [0], "round_circularity"),
    ],
)
def test_real_faults_are_caught(tmp_path, sample_id, text, target, rule):
    dataset, record, image = _real_record(REAL_AD, sample_id, tmp_path)
    failures = judge_sentence(
        text, target, record, measure_record(record, image), load_vocabulary("mvtec_ad")
    )
    assert rule in {f.rule for f in failures}, failures


@needs_real_data
def test_real_build_ships_no_sentence_the_judge_rejects(tmp_path):
    from mvtec_ref.build import BuildConfig, build_dataset

    out = tmp_path / "ds"
    build_dataset(REAL_AD, out, BuildConfig(), progress=False)
    vocab = load_vocabulary("mvtec_ad")
    texts = set()
    for record in _records(out):
        texts |= {s["text"] for ref in record["refs"] for s in ref["sentences"]}
        if record["regions"]:
            assert judge_record(record, _image(out, record), vocab) == []
    for seen in (
        "the darker bent wires in the grid",
        "the darker blob of glue",
        "all three small dark breaks in the mesh",
    ):
        assert seen not in texts
    assert json.loads((out / "manifest.json").read_text())["pixel_judge"]["sentences_removed"] > 0


@pytest.mark.skipif(not REAL_LOCO.is_dir(), reason=f"real MVTec LOCO sample not found at {REAL_LOCO}")
def test_real_loco_missing_parts_get_no_colour_or_tone(tmp_path):
    dataset, record, image = _real_record(
        REAL_LOCO, "juice_bottle/test/logical_anomalies/000", tmp_path, source="mvtec_loco"
    )
    # The sample's masks are binarized (one value for every defect): the build names the folder's
    # type; the judge's rule is tested on the same pixels under the missing type they show.
    assert record["defect_type"] == "logical_anomalies"
    record = {**record, "defect_type": "missing_top_label"}
    vocab = load_vocabulary("mvtec_loco")
    scene = measure_record(record, image)
    phrase = vocab.words("juice_bottle", record["defect_type"]).phrases[0][0]
    for text in (f"the yellow {phrase}", f"the dark {phrase}"):
        rules = {f.rule for f in judge_sentence(text, [0], record, scene, vocab)}
        assert "missing_part_look" in rules, text
    assert "number" in {f.rule for f in judge_sentence("the anomaly", [0, 1], record, scene, vocab)}
    assert not np.isnan(scene.looks[0].area_ratio)
    for r in _records(dataset):
        for ref in r["refs"]:
            for s in ref["sentences"]:
                assert (
                    not {"yellow", "dark", "darker", "gray", "brown"} & set(s["tokens"])
                    or not ref["region_ids"]
                )


def test_paraphrase_that_the_pixels_contradict_is_rejected(synth_dataset):
    """A paraphrase the parser-based checker accepts (stored tone "darker") but the pixels do not
    support is not added; one that only rewords the place is."""
    from annotate.paraphrase import _pixel_judge, paraphrase_records

    records = _records(synth_dataset)
    root = Path(json.loads((synth_dataset / "manifest.json").read_text())["source"]["root"])
    vocab = load_vocabulary("mvtec_ad")
    record = next(
        r for r in records if len(r["regions"]) == 1 and r["category"] == "carpet"
        and (lambda lk: lk.ring_quartiles and lk.gray_median >= lk.ring_quartiles[0])(
            measure_record(r, _image(synth_dataset, r)).looks[0])
    )  # fmt: skip
    record["regions"][0]["appearance"].update(tone="darker", colour=None)
    phrase = vocab.words("carpet", record["defect_type"]).phrases[0][0]
    ref = next(r for r in record["refs"] if r["kind"] == "type")
    answers = iter([f"the dark {phrase}", f"one {phrase} on the carpet"])

    class Answers:
        def ask(self, noun, sentence):
            return next(answers, None)

    ref["sentences"] = ref["sentences"][:2]
    before = len(ref["sentences"])
    outcome = paraphrase_records(
        [dict(record, refs=[ref])], Answers(), vocab, 2, False, _pixel_judge(root, vocab)
    )
    assert outcome["rejected_pixel_judge_tone"] == 1, outcome
    assert outcome["accepted"] == 1 and len(ref["sentences"]) == before + 1, (outcome, ref["sentences"])
    assert ref["sentences"][-1]["text"] == f"one {phrase} on the carpet"
