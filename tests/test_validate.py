import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mvtec_ref.cli import main
from mvtec_ref.validate import validate_dataset


@pytest.fixture
def dataset(synth_dataset, tmp_path):
    copy = tmp_path / "ds"
    shutil.copytree(synth_dataset, copy)
    return copy


def _edit_first_defect(dataset, edit):
    """Edit the first defect record; returns ``"<samples.jsonl>:<line>: "``, where its problems start."""
    path = dataset / "samples.jsonl"
    lines = path.read_text().splitlines()
    for n, line in enumerate(lines):
        record = json.loads(line)
        if record["regions"]:
            edit(record)
            lines[n] = json.dumps(record)
            break
    path.write_text("\n".join(lines) + "\n")
    return f"{path}:{n + 1}: "


def test_sound_dataset_passes_cli(synth_dataset):
    result = CliRunner().invoke(main, ["validate", str(synth_dataset), "--deep"])
    assert result.exit_code == 0 and "valid" in result.output


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda r: r["regions"][0].update(area=r["regions"][0]["area"] + 1), "regions[0].area: "),
        (lambda r: r["regions"][0].update(bbox=[0, 0, 5000, 1]), "bbox: [0, 0, 5000, 1] but the RLE spans"),
        (lambda r: r["regions"][0]["segmentation"].update(size=[3, 3]), "RLE size [3, 3]"),
        (lambda r: r["refs"][0].update(region_ids=[99]), "refs[0].region_ids: [99] name no region"),
        (lambda r: r.update(image_path="bottle/test/nope.png"), "image_path: "),
        (lambda r: r.update(colour="red"), "Additional properties are not allowed"),
        (lambda r: r.update(regions=r["regions"] + r["regions"][:1]), "duplicate ann_id"),
    ],
)
def test_tampered_record_is_reported(dataset, edit, expected):
    where = _edit_first_defect(dataset, edit)
    problems = validate_dataset(dataset)
    assert any(p.startswith(where) and expected in p for p in problems), problems
    result = CliRunner().invoke(main, ["validate", str(dataset)])
    assert result.exit_code == 1 and "problems found" in result.output


def _rebuilt_from_a_copy(synth_dataset: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(source tree, dataset): the synthetic tree copied under tmp_path and built from there, so a
    test may change its files."""
    manifest = json.loads((synth_dataset / "manifest.json").read_text())
    source = tmp_path / "src"
    shutil.copytree(manifest["source"]["root"], source)
    out = tmp_path / "ds"
    result = CliRunner().invoke(main, ["build", "--root", str(source), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return source, out


def test_deep_check_catches_changed_mask(synth_dataset, tmp_path):
    import cv2

    source, out = _rebuilt_from_a_copy(synth_dataset, tmp_path)
    mask_path = source / "bottle/ground_truth/broken_large/000_mask.png"
    mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
    mask[:3, :3] = 255
    cv2.imwrite(str(mask_path), mask)
    assert validate_dataset(out) == []
    (problem,) = validate_dataset(out, deep=True)
    assert "regions: differ from bottle/ground_truth/broken_large/000_mask.png in 9 pixels" in problem


def test_malformed_files(dataset):
    (dataset / "samples.jsonl").write_text('{"id": 1}\n{not json\n')
    problems = validate_dataset(dataset)
    assert any("samples.jsonl:2: malformed JSON" in p for p in problems)
    (dataset / "manifest.json").write_text("{")
    assert "malformed JSON" in validate_dataset(dataset)[0]
    assert "not found" in validate_dataset(dataset / "missing")[0]


def test_deep_check_with_workers_gives_the_same_lines_in_the_same_order(synth_dataset, tmp_path):
    """Problems of every kind (schema, RLE, sentence and pixel judge, missing file, changed mask,
    a malformed last line) come out identical with 2 worker processes."""
    import cv2

    source, out = _rebuilt_from_a_copy(synth_dataset, tmp_path)
    path = out / "samples.jsonl"
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    defects = [n for n, r in enumerate(records) if r["regions"]]
    edits = [
        lambda r: r.update(colour="red"),  # schema
        lambda r: r["regions"][0].update(area=r["regions"][0]["area"] + 1),  # RLE area
        lambda r: r["refs"][0]["sentences"][0].update(  # tokens to match: a false sentence, well formed
            text="the two large scratches everywhere",
            tokens=["the", "two", "large", "scratches", "everywhere"],
        ),
        lambda r: r.update(image_path=r["image_path"] + ".gone"),  # missing file
    ]
    for n, edit in zip(defects, edits, strict=False):
        edit(records[n])
        lines[n] = json.dumps(records[n])
    # and a changed mask (deep)
    changed = records[defects[-1]]
    mask = cv2.imread(str(source / changed["mask_path"]), cv2.IMREAD_UNCHANGED)
    mask[:2, :2] = 255
    cv2.imwrite(str(source / changed["mask_path"]), mask)
    path.write_text("\n".join(lines) + "\n{not json\n")
    one = validate_dataset(out, deep=True)
    two = validate_dataset(out, deep=True, workers=2)
    assert len(one) >= 6 and one == two
    assert "malformed JSON" in one[-1] and any("regions: differ" in p for p in one)
    assert any("pixel judge" in p for p in one)  # the rewritten sentence, judged in a worker
    result = CliRunner().invoke(
        main, ["validate", str(out), "--deep", "--workers", "2", "--max-lines", "999"]
    )
    assert result.exit_code == 1 and result.output.count("\n") == len(one) + 1


def test_validate_workers_is_checked_before_any_work(tmp_path):
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "nowhere"), "--workers", "0"])
    assert result.exit_code == 2 and "--workers" in result.output
