"""Metric rules against values computed by hand on small arrays."""

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from mvtec_ref.cli import main
from mvtec_ref.metrics import RefSegMetrics, target_size
from mvtec_ref.schema import schema_errors


def _mask(shape, *cells):
    m = np.zeros(shape, np.uint8)
    for y, x in cells:
        m[y, x] = 1
    return m


def test_hand_computed_mix():
    m = RefSegMetrics()
    gt = _mask((2, 4), (0, 0), (0, 1), (0, 2), (0, 3))  # 4 pixels
    m.update(_mask((2, 4), (0, 0), (0, 1), (0, 2)), gt, {"kind": "type"})  # I=3 U=4 IoU .75
    m.update(np.ones((2, 4)), gt, {"kind": "type"})  # I=4 U=8 IoU .5
    m.update(np.zeros((2, 4)), np.zeros((2, 4)), {"kind": "no_target"})  # empty/empty: IoU 1
    m.update(_mask((2, 4), (1, 1)), np.zeros((2, 4)), {"kind": "no_target"})  # FP on no target: IoU 0, U += 1
    r = m.compute()["overall"]
    assert r["samples"] == 4 and r["samples_with_target"] == 2
    assert r["mIoU"] == pytest.approx((0.75 + 0.5) / 2)
    assert r["gIoU"] == pytest.approx((0.75 + 0.5 + 1 + 0) / 4)
    assert r["oIoU"] == pytest.approx((3 + 4 + 0 + 0) / (4 + 8 + 0 + 1))
    assert r["Prec@0.5"] == 1.0 and r["Prec@0.7"] == 0.5 and r["Prec@0.8"] == 0.0  # >=, over targets only
    assert r["N-acc"] == 0.5 and r["T-acc"] == 1.0
    by_kind = m.compute()["by"]["kind"]
    assert by_kind["no_target"]["gIoU"] == 0.5 and by_kind["no_target"]["mIoU"] is None
    m.reset()
    assert m.compute()["overall"]["samples"] == 0 and m.compute()["overall"]["mIoU"] is None


def test_all_empty_all_full_and_one_pixel():
    m = RefSegMetrics()
    m.update(np.zeros((3, 3)), np.zeros((3, 3)))
    r = m.compute()["overall"]
    assert r["gIoU"] == 1.0 and r["N-acc"] == 1.0 and r["mIoU"] is None and r["oIoU"] is None
    m.reset()
    m.update(np.ones((3, 3)), np.ones((3, 3)))
    r = m.compute()["overall"]
    assert r["mIoU"] == r["oIoU"] == r["Prec@0.9"] == r["T-acc"] == 1.0 and r["N-acc"] is None
    m.reset()
    one = _mask((5, 5), (2, 2))
    m.update(one, one)
    m.update(_mask((5, 5), (2, 3)), one)  # one pixel off: IoU 0, predicted non-empty
    m.update(np.zeros((5, 5)), one)  # missed entirely
    r = m.compute()["overall"]
    assert r["mIoU"] == pytest.approx(1 / 3) and r["oIoU"] == pytest.approx(1 / 4)
    assert r["T-acc"] == pytest.approx(2 / 3)


def test_prediction_is_scored_at_the_ground_truth_resolution():
    gt = np.zeros((100, 100), np.uint8)
    gt[:50] = 1
    small = np.zeros((10, 10), np.uint8)
    small[:5] = 255  # a network-size prediction
    m = RefSegMetrics()
    m.update(small, gt)
    assert m.compute()["overall"]["mIoU"] == 1.0


def test_target_size_buckets():
    cuts = (0.01, 0.05)
    assert [target_size(r, cuts) for r in (0, 0.001, 0.02, 0.5)] == ["none", "small", "medium", "large"]


def test_every_anomaly_for_every_sentence_is_right_only_where_the_target_is_all_of_them(
    synth_dataset, tmp_path
):
    """What a model that ignores the words can do: predict the union of the image's anomalies."""
    from mvtec_ref.evaluate import evaluate_predictions
    from mvtec_ref.regions.mask import decode_rle

    folder = tmp_path / "union"
    folder.mkdir()
    for line in (synth_dataset / "samples.jsonl").open():
        r = json.loads(line)
        union = np.zeros((r["height"], r["width"]), np.uint8)
        for g in r["regions"]:
            union |= decode_rle(g["segmentation"])
        for ref in r["refs"]:
            for s in ref["sentences"]:
                cv2.imwrite(str(folder / f"{s['sent_id']}.png"), union * 255)
    scope = evaluate_predictions(synth_dataset, folder, split="all")["by"]["scope"]
    assert scope["all"]["mIoU"] == 1.0 and scope["all"]["samples"] > 0
    assert 0 < scope["part"]["mIoU"] < 1 and scope["part"]["samples"] > 0
    assert scope["none"]["N-acc"] < 1  # an absent type on a defect image: the union is not empty


def _write_predictions(dataset, folder, make):
    from mvtec_ref.regions.mask import decode_rle

    folder.mkdir()
    for line in (dataset / "samples.jsonl").open():
        r = json.loads(line)
        for ref in r["refs"]:
            gt = np.zeros((r["height"], r["width"]), np.uint8)
            for g in r["regions"]:
                if g["region_id"] in ref["region_ids"]:
                    gt |= decode_rle(g["segmentation"])
            for s in ref["sentences"]:
                cv2.imwrite(str(folder / f"{s['sent_id']}.png"), make(gt) * 255)


def test_evaluate_cli_perfect_and_empty_predictions(synth_dataset, tmp_path):
    _write_predictions(synth_dataset, tmp_path / "perfect", lambda gt: gt)
    out = tmp_path / "m.json"
    args = [
        "evaluate",
        str(synth_dataset),
        "--pred",
        str(tmp_path / "perfect"),
        "--split",
        "all",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert schema_errors("metrics", data) == []
    o = data["overall"]
    assert o["mIoU"] == o["oIoU"] == o["gIoU"] == o["N-acc"] == o["T-acc"] == o["Prec@0.9"] == 1.0
    assert set(data["by"]) == {"size", "category", "defect_type", "kind", "expression", "scope"}
    empty = tmp_path / "empty"
    _write_predictions(synth_dataset, empty, np.zeros_like)
    result = CliRunner().invoke(main, ["evaluate", str(synth_dataset), "--pred", str(empty)])
    assert result.exit_code == 0 and "overall" in result.output
    next(empty.iterdir()).unlink()
    result = CliRunner().invoke(
        main, ["evaluate", str(synth_dataset), "--pred", str(empty), "--split", "all"]
    )
    assert result.exit_code == 1 and "1 of" in result.output and "--allow-missing" in result.output
