"""Every built-in source adapter on a small generated tree in its exact on-disk layout, built end
to end; MVTec LOCO also on the real files in shared/data/mvtec_loco_sample."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED_DATA

from mvtec_ref.build import BuildConfig, build_dataset
from mvtec_ref.errors import SourceLayoutError
from mvtec_ref.sources import available_sources, get_source

REAL_LOCO = SHARED_DATA / "mvtec_loco_sample"


def _image(path: Path, seed: int, size=(96, 128)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = (rng.random((*size, 3)) * 40 + 100).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return image


def _mask(path: Path, boxes: list[tuple[int, int, int, int, int]], size=(96, 128)) -> None:
    """boxes: (x, y, w, h, value)."""
    mask = np.zeros(size, np.uint8)
    for x, y, w, h, value in boxes:
        mask[y : y + h, x : x + w] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), mask)


def _build(source: str, root: Path, out: Path):
    return build_dataset(root, out, BuildConfig(source=source), progress=False)


def _samples(out: Path) -> dict[str, dict]:
    lines = (out / "samples.jsonl").read_text().splitlines()
    return {r["image_path"]: r for r in map(json.loads, lines)}


def test_builtin_sources_registered():
    assert {"mvtec_ad", "visa", "mvtec_loco", "mvtec_ad2", "real_iad", "btad", "folder"} <= set(
        available_sources()
    )
    with pytest.raises(Exception, match="unknown source 'nope'"):
        get_source("nope")


def test_visa_split_csv_and_class_ids(tmp_path):
    root = tmp_path / "VisA"
    rows = ["object,split,label,image,mask"]
    for i in range(3):
        _image(root / f"pcb1/Data/Images/Normal/{i:04d}.JPG", i)
        rows.append(f"pcb1,{'train' if i < 2 else 'test'},normal,pcb1/Data/Images/Normal/{i:04d}.JPG,")
    for i, value in enumerate((1, 3)):
        _image(root / f"pcb1/Data/Images/Anomaly/{i:03d}.JPG", 10 + i)
        _mask(root / f"pcb1/Data/Masks/Anomaly/{i:03d}.png", [(10, 10, 20, 12, value), (80, 60, 10, 10, 2)])
        rows.append(
            f"pcb1,test,anomaly,pcb1/Data/Images/Anomaly/{i:03d}.JPG,pcb1/Data/Masks/Anomaly/{i:03d}.png"
        )
    for i, value in ((2, 1), (3, 255)):  # one class; a binarized mask whose values name nothing
        _image(root / f"pcb1/Data/Images/Anomaly/{i:03d}.JPG", 10 + i)
        _mask(root / f"pcb1/Data/Masks/Anomaly/{i:03d}.png", [(10, 10, 20, 12, value)])
        rows.append(
            f"pcb1,test,anomaly,pcb1/Data/Images/Anomaly/{i:03d}.JPG,pcb1/Data/Masks/Anomaly/{i:03d}.png"
        )
    rows.append(
        "pcb1,test,anomaly,pcb1/Data/Images/Anomaly/009.JPG,pcb1/Data/Masks/Anomaly/009.png"
    )  # no file
    (root / "split_csv").mkdir()
    (root / "split_csv/1cls.csv").write_text("\n".join(rows) + "\n")
    (root / "pcb1/image_anno.csv").write_text(
        "image,label,mask\n"
        "pcb1/Data/Images/Anomaly/000.JPG,melt,x\n"
        'pcb1/Data/Images/Anomaly/001.JPG,"melt, bent",y\n'
        "pcb1/Data/Images/Anomaly/003.JPG,scratch,z\n"
    )
    result = _build("visa", root, tmp_path / "out")
    samples = _samples(tmp_path / "out")
    a0, a1 = samples["pcb1/Data/Images/Anomaly/000.JPG"], samples["pcb1/Data/Images/Anomaly/001.JPG"]
    # class ids 1..4 (far below the 0/255 threshold) are defect; spot-diff's id2class.py names them
    # (pcb1: 1 bent, 2 melt, 3 scratch, 4 missing), the image's type and each region's own
    assert [r["source_class"] for r in a0["regions"]] == ["bent", "melt"] and a0["defect_type"] == "combined"
    assert sorted(r["source_class"] for r in a1["regions"]) == ["melt", "scratch"]
    assert a1["defect_type"] == "combined"
    assert samples["pcb1/Data/Images/Anomaly/002.JPG"]["defect_type"] == "bent"
    assert samples["pcb1/Data/Images/Anomaly/003.JPG"]["defect_type"] == "scratch"  # from image_anno.csv
    assert samples["pcb1/Data/Images/Normal/0000.JPG"]["split"] == "train"
    problems = {p["path"]: p for p in result.problems}
    assert "pcb1/Data/Images/Anomaly/009.JPG" in problems
    assert not [p for p in result.problems if p["kind"] == "vocabulary"]  # every VisA class has its entry


def test_visa_raw_layout_without_csv(tmp_path):
    root = tmp_path / "VisA"
    _image(root / "candle/Data/Images/Normal/0000.JPG", 0)
    _image(root / "candle/Data/Images/Anomaly/000.JPG", 1)
    _mask(root / "candle/Data/Masks/Anomaly/000.png", [(5, 5, 30, 30, 4)])
    _image(root / "candle/Data/Images/Anomaly/001.JPG", 2)  # mask missing
    scan = get_source("visa").scan(root, None)
    assert [(i.image_path, i.mask_path, i.defect_type) for i in scan.images] == [
        ("candle/Data/Images/Anomaly/000.JPG", "candle/Data/Masks/Anomaly/000.png", "anomaly"),
        ("candle/Data/Images/Normal/0000.JPG", None, "good"),
    ]
    assert [p.path for p in scan.problems] == ["candle/Data/Images/Anomaly/001.JPG"]


def test_visa_bad_split_csv_names_the_line(tmp_path):
    (tmp_path / "split_csv").mkdir()
    (tmp_path / "split_csv/1cls.csv").write_text("object,split,label,image,mask\npcb1,dev,normal,a.JPG,\n")
    with pytest.raises(SourceLayoutError, match=r"1cls.csv: line 2: split 'dev'"):
        get_source("visa").scan(tmp_path, None)


def _loco_tree(root: Path) -> None:
    cat = root / "juice_bottle"
    cat.mkdir(parents=True)
    (cat / "defects_config.json").write_text(
        json.dumps(
            [
                {
                    "defect_name": "missing_top_label",
                    "pixel_value": 255,
                    "saturation_threshold": 1,
                    "relative_saturation": True,
                },
                {
                    "defect_name": "contamination",
                    "pixel_value": 238,
                    "saturation_threshold": 1,
                    "relative_saturation": True,
                },
            ]
        )
    )
    _image(cat / "train/good/000.png", 0)
    _image(cat / "validation/good/000.png", 1)
    _image(cat / "test/good/000.png", 2)
    _image(cat / "test/logical_anomalies/000.png", 3)
    _mask(cat / "ground_truth/logical_anomalies/000/000.png", [(10, 10, 30, 20, 255)])
    _image(cat / "test/structural_anomalies/000.png", 4)
    _mask(cat / "ground_truth/structural_anomalies/000/000.png", [(10, 10, 12, 12, 238)])
    _mask(cat / "ground_truth/structural_anomalies/000/001.png", [(70, 50, 20, 20, 255)])
    _mask(cat / "ground_truth/structural_anomalies/007/000.png", [(70, 50, 20, 20, 255)])  # orphan


def test_mvtec_loco_mask_folders_values_and_kind(tmp_path):
    root = tmp_path / "loco"
    _loco_tree(root)
    result = _build("mvtec_loco", root, tmp_path / "out")
    samples = _samples(tmp_path / "out")
    logical = samples["juice_bottle/test/logical_anomalies/000.png"]
    structural = samples["juice_bottle/test/structural_anomalies/000.png"]
    assert logical["defect_type"] == "missing_top_label"
    assert logical["source_attributes"] == {"anomaly_kind": "logical"}
    # two mask files, two defect values: union of both, each region keeps its defect name
    assert structural["defect_type"] == "combined"
    assert sorted(r["source_class"] for r in structural["regions"]) == ["contamination", "missing_top_label"]
    assert structural["source_attributes"] == {"anomaly_kind": "structural"}
    assert samples["juice_bottle/validation/good/000.png"]["source_split"] == "validation"
    assert any(p["path"] == "juice_bottle/ground_truth/structural_anomalies/007" for p in result.problems)
    texts = [s["text"] for ref in logical["refs"] for s in ref["sentences"]]
    assert any("missing top label" in t for t in texts)


@pytest.mark.skipif(not REAL_LOCO.is_dir(), reason=f"real MVTec LOCO sample not found at {REAL_LOCO}")
def test_mvtec_loco_real_sample(tmp_path):
    result = _build("mvtec_loco", REAL_LOCO, tmp_path / "out")
    samples = _samples(tmp_path / "out")
    anomalies = [r for r in samples.values() if r["label_index"]]
    assert len(anomalies) == 6 and len(samples) == 9
    # every real logical mask of this copy is 255 (binarized, its README says): the build says so
    # and names the type by the folder instead of calling everything "missing top label"
    (binarized,) = [p for p in result.problems if p["kind"] == "binarized_masks"]
    assert (
        binarized["path"] == "juice_bottle/defects_config.json" and "single value 255" in binarized["problem"]
    )
    assert {r["defect_type"] for r in anomalies} == {"logical_anomalies"}
    assert all(r["width"] == 800 and r["height"] == 1600 for r in samples.values())
    assert all(r["source_attributes"] == {"anomaly_kind": "logical"} for r in anomalies)
    texts = [s["text"] for r in anomalies for ref in r["refs"] if ref["region_ids"] for s in ref["sentences"]]
    assert texts and not [t for t in texts if "missing top label" in t]
    assert not [p for p in result.problems if p["kind"] not in ("vocabulary", "binarized_masks")]


def test_mvtec_loco_binarized_masks_are_reported(tmp_path):
    """All masks of a category carry one value: the values cannot name the defect."""
    root = tmp_path / "loco"
    _loco_tree(root)
    cat = root / "juice_bottle"
    _mask(cat / "ground_truth/structural_anomalies/000/000.png", [(10, 10, 12, 12, 255)])
    result = _build("mvtec_loco", root, tmp_path / "out")
    (problem,) = [p for p in result.problems if p["kind"] == "binarized_masks"]
    assert "all 3 masks of juice_bottle carry the single value 255" in problem["problem"]
    samples = _samples(tmp_path / "out")
    assert samples["juice_bottle/test/logical_anomalies/000.png"]["defect_type"] == "logical_anomalies"
    assert samples["juice_bottle/test/structural_anomalies/000.png"]["defect_type"] == "structural_anomalies"
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert any(p["kind"] == "binarized_masks" for p in manifest["problems"])


def test_mvtec_ad2_mask_pairing_and_lighting(tmp_path):
    cat = tmp_path / "ad2" / "vial"
    _image(cat / "train/good/000_regular.png", 0)
    _image(cat / "test_public/good/001_overexposed.png", 1)
    _image(cat / "test_public/bad/002_shift_2.png", 2)
    _mask(cat / "test_public/ground_truth/bad/002_shift_2_mask.png", [(20, 20, 20, 20, 255)])
    _image(cat / "test_public/bad/003_regular.png", 3)  # mask missing
    _image(cat / "test_private/004_regular.png", 4)  # unlabelled: not used
    result = _build("mvtec_ad2", tmp_path / "ad2", tmp_path / "out")
    samples = _samples(tmp_path / "out")
    assert set(samples) == {
        "vial/train/good/000_regular.png",
        "vial/test_public/good/001_overexposed.png",
        "vial/test_public/bad/002_shift_2.png",
    }
    bad = samples["vial/test_public/bad/002_shift_2.png"]
    assert bad["mask_path"] == "vial/test_public/ground_truth/bad/002_shift_2_mask.png"
    assert bad["source_attributes"] == {"lighting": "shift_2"} and bad["defect_type"] == "defect"
    assert [p["path"] for p in result.problems] == ["vial/test_public/bad/003_regular.png"]


def test_real_iad_json_lists_trust_mask_path(tmp_path):
    root = tmp_path / "Real-IAD"
    base = root / "realiad_256" / "toothbrush"
    ok = "OK/S0001/toothbrush_0001_OK_C1_20230912151148.jpg"
    ng = "NG/HS/S0010/toothbrush_0010_NG_HS_C3_20230912151148.jpg"
    _image(base / ok, 0)
    _image(base / ng, 1)
    _mask(base / ng.replace(".jpg", ".png"), [(30, 30, 10, 25, 1)])  # same stem, .png, value 1
    data = {
        "meta": {"prefix": "", "normal_class": "OK", "pre_transform": False},
        "train": [{"category": "toothbrush", "anomaly_class": "OK", "image_path": ok, "mask_path": None}],
        "test": [
            {
                "category": "toothbrush",
                "anomaly_class": "HS",
                "image_path": ng,
                "mask_path": ng.replace(".jpg", ".png"),
            },
            {
                "category": "toothbrush",
                "anomaly_class": "AK",
                "image_path": ng,
                "mask_path": "NG/AK/none.png",
            },
        ],
    }
    (root / "realiad_jsons/realiad_jsons").mkdir(parents=True)
    (root / "realiad_jsons/realiad_jsons/toothbrush.json").write_text(json.dumps(data))
    scan = get_source("real_iad").scan(root, None)
    assert [p.problem for p in scan.problems] == [
        "defect image has no mask (toothbrush.json test[1]: NG/AK/none.png)"
    ]
    _build("real_iad", root, tmp_path / "out")
    sample = _samples(tmp_path / "out")[f"realiad_256/toothbrush/{ng}"]
    assert sample["defect_type"] == "scratch" and sample["source_attributes"] == {"code": "HS", "view": "C3"}
    assert len(sample["regions"]) == 1  # value 1 is defect (mask values are not documented)
    assert any("scratch" in s["text"] for ref in sample["refs"] for s in ref["sentences"])


def test_real_iad_malformed_json_names_the_file(tmp_path):
    (tmp_path / "realiad_jsons").mkdir()
    (tmp_path / "realiad_jsons/pcb.json").write_text('{"meta": {"prefix": ""}, "train": [')
    with pytest.raises(SourceLayoutError, match=r"pcb.json: malformed JSON at line 1"):
        get_source("real_iad").scan(tmp_path, None)


def test_btad_bmp_and_png(tmp_path):
    root = tmp_path / "BTech_Dataset_transformed"
    _image(root / "01/train/ok/0000.bmp", 0)
    _image(root / "01/test/ok/0001.bmp", 1)
    _image(root / "01/test/ko/0002.bmp", 2)
    _mask(root / "01/ground_truth/ko/0002.png", [(40, 40, 20, 20, 255)])
    _image(root / "03/test/ko/0000.bmp", 3)
    _mask(root / "03/ground_truth/ko/0000.bmp", [(10, 10, 20, 20, 255)])
    _mask(root / "03/ground_truth/ko/0009.bmp", [(10, 10, 20, 20, 255)])  # orphan
    result = _build("btad", root, tmp_path / "out")
    samples = _samples(tmp_path / "out")
    assert samples["01/test/ko/0002.bmp"]["mask_path"] == "01/ground_truth/ko/0002.png"
    assert samples["03/test/ko/0000.bmp"]["mask_path"] == "03/ground_truth/ko/0000.bmp"
    assert samples["01/train/ok/0000.bmp"]["split"] == "train"
    assert [p["path"] for p in result.problems] == ["03/ground_truth/ko/0009.bmp"]


FOLDER_YAML = """\
name: brackets
mask_suffix: _mask
categories:
  bracket:
    noun: metal bracket
    defects:
      scratch: [scratch, scratches]
      dent:
"""


def test_folder_with_yaml_description(tmp_path):
    root = tmp_path / "parts"
    root.mkdir()
    (root / "mvtec-ref.yaml").write_text(FOLDER_YAML)
    _image(root / "images/bracket/good/a.png", 0)
    _image(root / "images/bracket/scratch/b.jpg", 1)
    _mask(root / "masks/bracket/scratch/b_mask.png", [(20, 30, 40, 6, 255)])
    _image(root / "images/bracket/dent/c.png", 2)
    _mask(root / "masks/bracket/dent/c_mask.png", [(60, 40, 15, 15, 255)])
    result = _build("folder", root, tmp_path / "out")
    samples = _samples(tmp_path / "out")
    scratch = samples["images/bracket/scratch/b.jpg"]
    texts = [s["text"] for ref in scratch["refs"] for s in ref["sentences"]]
    assert any("scratch" in t and "metal bracket" in t for t in texts)
    assert result.manifest["config"]["refs"]["vocabulary"].endswith("mvtec-ref.yaml")
    # 'dent' has no phrase in the description: a fallback, reported, never silent
    assert [p["path"] for p in result.problems if p["kind"] == "vocabulary"] == ["bracket/dent"]


def test_folder_description_errors_are_clear(tmp_path):
    with pytest.raises(SourceLayoutError, match="no folder description; write mvtec-ref.yaml"):
        get_source("folder").scan(tmp_path, None)
    (tmp_path / "mvtec-ref.yaml").write_text("categories: {bracket: {kind: round}}\n")
    with pytest.raises(SourceLayoutError, match=r"mvtec-ref.yaml: \$.categories.bracket.kind"):
        get_source("folder").scan(tmp_path, None)
    (tmp_path / "mvtec-ref.yaml").write_text("categories: [a\n")
    with pytest.raises(SourceLayoutError, match="malformed YAML"):
        get_source("folder").scan(tmp_path, None)
