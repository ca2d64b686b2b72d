import json
import shutil

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
    path = dataset / "samples.jsonl"
    lines = path.read_text().splitlines()
    for n, line in enumerate(lines):
        record = json.loads(line)
        if record["regions"]:
            edit(record)
            lines[n] = json.dumps(record)
            break
    path.write_text("\n".join(lines) + "\n")
    return record["id"]


def test_sound_dataset_passes_cli(synth_dataset):
    result = CliRunner().invoke(main, ["validate", str(synth_dataset), "--deep"])
    assert result.exit_code == 0 and "valid" in result.output


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda r: r["regions"][0].update(area=r["regions"][0]["area"] + 1), "RLE decodes to"),
        (lambda r: r["regions"][0].update(bbox=[0, 0, 5000, 1]), "is not inside the"),
        (lambda r: r["regions"][0]["segmentation"].update(size=[3, 3]), "RLE size [3, 3]"),
        (lambda r: r["refs"][0].update(region_ids=[99]), "targets unknown regions [99]"),
        (lambda r: r.update(image_path="bottle/test/nope.png"), "image_path"),
        (lambda r: r.update(colour="red"), "Additional properties are not allowed"),
        (lambda r: r.update(regions=r["regions"] + r["regions"][:1]), "duplicate ann_id"),
    ],
)
def test_tampered_record_is_reported(dataset, edit, expected):
    sample_id = _edit_first_defect(dataset, edit)
    problems = validate_dataset(dataset)
    assert any(sample_id in p and expected in p for p in problems), problems
    result = CliRunner().invoke(main, ["validate", str(dataset)])
    assert result.exit_code == 1 and "problems found" in result.output


def test_deep_check_catches_changed_mask(synth_dataset, tmp_path):
    import cv2

    manifest = json.loads((synth_dataset / "manifest.json").read_text())
    source = tmp_path / "src"
    shutil.copytree(manifest["source"]["root"], source)
    out = tmp_path / "ds"
    assert (
        CliRunner().invoke(main, ["build", "--root", str(source), "--out", str(out), "--quiet"]).exit_code
        == 0
    )
    mask_path = source / "bottle/ground_truth/broken_large/000_mask.png"
    mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
    mask[:3, :3] = 255
    cv2.imwrite(str(mask_path), mask)
    assert validate_dataset(out) == []
    (problem,) = validate_dataset(out, deep=True)
    assert "regions differ from bottle/ground_truth/broken_large/000_mask.png in 9 pixels" in problem


def test_malformed_files(dataset):
    (dataset / "samples.jsonl").write_text('{"id": 1}\n{not json\n')
    problems = validate_dataset(dataset)
    assert any("line 2: malformed JSON" in p for p in problems)
    (dataset / "manifest.json").write_text("{")
    assert "malformed JSON" in validate_dataset(dataset)[0]
    assert "not found" in validate_dataset(dataset / "missing")[0]
