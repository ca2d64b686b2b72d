"""Round trips: each export is read back by pycocotools and by small readers written here
in the style of refer / G_REFER, and every mask must equal the dataset's, pixel for pixel."""

import json
import pickle

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mvtec_ref.cli import main
from mvtec_ref.errors import DatasetError
from mvtec_ref.export import export_dataset


def _records(dataset):
    return [json.loads(line) for line in (dataset / "samples.jsonl").open()]


def _expected(records):
    """ref_id -> (target mask, sentence texts, split) straight from samples.jsonl."""
    out = {}
    for r in records:
        masks = {g["region_id"]: mask_utils.decode({"size": g["segmentation"]["size"],
                                                    "counts": g["segmentation"]["counts"].encode()})
                 for g in r["regions"]}  # fmt: skip
        for ref in r["refs"]:
            m = np.zeros((r["height"], r["width"]), np.uint8)
            for i in ref["region_ids"]:
                m |= masks[i]
            out[ref["ref_id"]] = (m, [s["text"] for s in ref["sentences"]], r["split"])
    return out


REFER_SPLIT = {"train": "train", "val": "val", "test": "testA"}  # the refer layouts' default


class MiniRefer:
    """Just enough of the refer toolkit: refs pickle + instances.json, getMask as refer does."""

    def __init__(self, root, dataset="refcoco", split_by="unc"):
        with open(root / dataset / f"refs({split_by}).p", "rb") as f:
            self.refs = pickle.load(f)
        instances = json.loads((root / dataset / "instances.json").read_text())
        self.anns = {a["id"]: a for a in instances["annotations"]}
        self.imgs = {i["id"]: i for i in instances["images"]}
        self.image_dir = root / "images/mscoco/images/train2014"

    def get_mask(self, ref):
        ann = self.anns[ref["ann_id"]]
        rle = ann["segmentation"]  # a list holding RLE dicts (refclef style)
        return np.sum(mask_utils.decode(rle), axis=2).astype(np.uint8)


def test_refcoco_round_trip(synth_dataset, tmp_path):
    out = tmp_path / "refcoco_export"
    summary = export_dataset(synth_dataset, "refcoco", out, progress=False)
    expected = _expected(_records(synth_dataset))
    reader = MiniRefer(out)
    assert len(reader.refs) == summary["refs"] == sum(1 for m, _, _ in expected.values() if m.any())
    for ref in reader.refs:
        mask, texts, split = expected[ref["ref_id"]]
        assert np.array_equal(reader.get_mask(ref), mask)
        assert [s["sent"] for s in ref["sentences"]] == texts and ref["split"] == REFER_SPLIT[split]
        assert [s["sent_id"] for s in ref["sentences"]] == ref["sent_ids"]
        image = reader.imgs[ref["image_id"]]
        with Image.open(reader.image_dir / image["file_name"]) as im:
            assert im.size == (image["width"], image["height"])
    coco = COCO(str(out / "refcoco" / "instances.json"))  # the index builds with pycocotools too
    assert len(coco.getAnnIds()) == summary["annotations"]


def test_grefcoco_round_trip(synth_dataset, tmp_path):
    out = tmp_path / "grefcoco_export"
    export_dataset(synth_dataset, "grefcoco", out, images="none", progress=False)
    refs = json.loads((out / "grefcoco" / "grefs(unc).json").read_text())
    coco = COCO(str(out / "grefcoco" / "instances.json"))
    expected = _expected(_records(synth_dataset))
    assert len(refs) == len(expected)
    assert any(ref["ann_id"] == [-1] for ref in refs) and any(len(ref["ann_id"]) > 1 for ref in refs)
    for ref in refs:
        mask, texts, split = expected[ref["ref_id"]]
        if ref["ann_id"] == [-1]:
            got = np.zeros_like(mask)
        else:
            got = np.zeros_like(mask)
            for ann_id in ref["ann_id"]:
                got |= coco.annToMask(coco.anns[ann_id])
        assert np.array_equal(got, mask)
        assert [s["raw"] for s in ref["sentences"]] == texts and ref["split"] == REFER_SPLIT[split]


def test_coco_round_trip(synth_dataset, tmp_path):
    out = tmp_path / "coco_export"
    export_dataset(synth_dataset, "coco", out, images="copy", progress=False)
    records = _records(synth_dataset)
    for split in ("train", "val", "test"):
        coco = COCO(str(out / "annotations" / f"instances_{split}.json"))
        part = [r for r in records if r["split"] == split]
        assert sorted(coco.getImgIds()) == sorted(r["image_id"] for r in part)
        for r in part:
            for g in r["regions"]:
                want = mask_utils.decode(
                    {"size": g["segmentation"]["size"], "counts": g["segmentation"]["counts"]}
                )
                assert np.array_equal(coco.annToMask(coco.anns[g["ann_id"]]), want)
    first = records[0]
    copied = out / "images" / first["id"].replace("/", "_")
    assert copied.with_suffix(".png").is_file() and not copied.with_suffix(".png").is_symlink()


def test_jsonl_round_trip(synth_dataset, tmp_path):
    out = tmp_path / "jsonl_export"
    summary = export_dataset(synth_dataset, "jsonl", out, progress=False)
    expected = _expected(_records(synth_dataset))
    lines = [json.loads(line) for line in (out / "refs.jsonl").open()]
    assert len(lines) == summary["lines"] == sum(len(t) for _, t, _ in expected.values())
    for line in lines:
        mask, texts, _ = expected[line["ref_id"]]
        assert np.array_equal(
            mask_utils.decode({"size": line["mask"]["size"], "counts": line["mask"]["counts"]}), mask
        )
        assert line["text"] in texts and line["empty"] == (not mask.any())


def test_export_cli_and_errors(synth_dataset, tmp_path):
    result = CliRunner().invoke(
        main, ["export", str(synth_dataset), "--format", "jsonl", "--out", str(tmp_path / "j")]
    )
    assert result.exit_code == 0 and "lines" in result.output
    with pytest.raises(DatasetError, match="unknown export format"):
        export_dataset(synth_dataset, "voc", tmp_path / "v")
    result = CliRunner().invoke(
        main, ["export", str(tmp_path / "nope"), "--format", "coco", "--out", str(tmp_path / "c")]
    )
    assert result.exit_code == 1 and "nope: not found; is" in result.output
    assert not (tmp_path / "c").exists()


def test_hf_without_its_extra_is_one_line(synth_dataset, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "datasets" else real(n, *a))
    args = ["export", str(synth_dataset), "--format", "hf", "--out", str(tmp_path / "h")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "pip install 'mvtec-ref[hf]'" in result.output
    assert not (tmp_path / "h").exists()
