"""The reading rules of the peer codebases, modelled here so that a change that breaks a peer
fails CI. Each rule is restated from the peer's public code (ReLA: henghuiding/ReLA
``grefer.py``, ``grefcoco.py``, ``register_refcoco.py``, ``refcoco_mapper.py`` with
detectron2's ``PolygonMasks`` and ``ResizeTransform``; CRIS: DerrickWang005/CRIS.pytorch
``tools/data_process.py``, ``tools/refer.py``, ``tools/folder2lmdb.py``; LAVT:
yz93/LAVT-RIS ``refer/refer.py``); the readers below are ours. The same exports were also
run through the peers' own code (see docs/exports.md, "Use with LAVT / CRIS / ReLA").
"""

import json
import pickle

import numpy as np
import pytest
from click.testing import CliRunner
from pycocotools import mask as mask_utils

from mvtec_ref.cli import main
from mvtec_ref.errors import DatasetError
from mvtec_ref.export import export_dataset
from mvtec_ref.export.polygons import mask_to_polygons

RELA_SPLITS = ("train", "val", "testA", "testB")  # register_grefcoco: grefcoco/unc
CRIS_REFCOCO_SPLITS = ("train", "val", "testA", "testB")  # data_process.py --dataset refcoco
RELA_SIZE = 480  # INPUT.IMAGE_SIZE of ReLA's referring_*.yaml


def _truth(dataset):
    """ref_id -> target mask, from samples.jsonl."""
    out = {}
    for line in (dataset / "samples.jsonl").open():
        r = json.loads(line)
        regions = {g["region_id"]: g["segmentation"] for g in r["regions"]}
        for ref in r["refs"]:
            m = np.zeros((r["height"], r["width"]), np.uint8)
            for i in ref["region_ids"]:
                rle = regions[i]
                m |= mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
            out[ref["ref_id"]] = m
    return out


def _rasterize(polygons, h, w):
    """pycocotools, as ReLA's convert_coco_poly_to_mask: one map per polygon, then any()."""
    return mask_utils.decode(mask_utils.frPyObjects(polygons, h, w)).any(axis=2)


# --------------------------------------------------------------------------- ReLA


class GRefer:
    """G_REFER's index and getMask: Anns[-1] is None, ann_id a list, segmentation[0] typed."""

    def __init__(self, root):
        folder = root / "grefcoco"
        self.refs = json.loads((folder / "grefs(unc).json").read_text())
        instances = json.loads((folder / "instances.json").read_text())
        self.anns = {-1: None, **{a["id"]: a for a in instances["annotations"]}}
        self.imgs = {i["id"]: i for i in instances["images"]}
        self.image_dir = root / "images/train2014"
        self.splits = {ref["split"] for ref in self.refs}

    def ref_ids(self, split):
        if split not in self.splits:  # G_REFER.getRefIds raises on an absent split
            raise ValueError(f"Invalid split name: {split}")
        return [ref["ref_id"] for ref in self.refs if ref["split"] == split]

    def get_mask(self, ann):
        image = self.imgs[ann["image_id"]]
        if type(ann["segmentation"][0]) is list:  # noqa: E721 - the peer's exact test
            rle = mask_utils.frPyObjects(ann["segmentation"], image["height"], image["width"])
        else:
            rle = ann["segmentation"]
        return np.sum(mask_utils.decode(rle), axis=2).astype(np.uint8)  # a sum, not a union


def _load_grefcoco(refer, split):
    """load_grefcoco_json's filters: non-crowd anns, polygons of >= 3 points kept."""
    records = []
    for ref in refer.refs:
        if ref["split"] != split:
            continue
        anns = [refer.anns[i] for i in ref["ann_id"]]
        if None in anns:
            assert anns == [None] and ref["ann_id"] == [-1]
            records.append((ref, []))
            continue
        kept = []
        for ann in anns:
            assert not ann["iscrowd"] and ann["image_id"] == ref["image_id"]
            segm = ann["segmentation"]
            assert segm
            if isinstance(segm, list):
                segm = [p for p in segm if len(p) % 2 == 0 and len(p) >= 6]
                # ReLA counts this in a variable it never defines: an empty list crashes it
                assert segm, f"ann {ann['id']}: no polygon of >= 3 points"
            kept.append({**ann, "segmentation": segm})
        records.append((ref, kept))
    return records


def _mapper_masks(anns, h, w, size=None):
    """RefCOCOMapper + detectron2: PolygonMasks (lists of >= 6 coordinates only), the
    ResizeTransform scaling ``np.asarray(polygon)`` in place, then pycocotools per instance."""
    merged = np.zeros((size or h, size or w), bool)
    for ann in anns:
        segm = ann["segmentation"]
        if not isinstance(segm, list):
            raise ValueError("Failed to use mask_format=='polygon' from the given annotations!")
        polygons = []
        for polygon in segm:
            coords = np.asarray(polygon).reshape(-1, 2)
            if size is not None:  # in place, as ResizeTransform: an int array would truncate
                coords[:, 0] = coords[:, 0] * (size * 1.0 / w)
                coords[:, 1] = coords[:, 1] * (size * 1.0 / h)
            flat = coords.reshape(-1).astype("float64")
            if len(flat) % 2 or len(flat) < 6:
                raise ValueError(f"Cannot create a polygon from {len(flat)} coordinates.")
            polygons.append(flat.tolist())
        merged |= _rasterize(polygons, size or h, size or w)
    return merged


def test_grefcoco_reads_along_relas_path(synth_dataset, tmp_path):
    out = tmp_path / "gref"
    summary = export_dataset(synth_dataset, "grefcoco", out, images="none", progress=False)
    truth = _truth(synth_dataset)
    refer = GRefer(out)
    assert summary["split_names"] == {"train": "train", "val": "val", "test": "testA"}
    assert refer.splits <= set(RELA_SPLITS) and refer.splits == {"train", "val", "testA"}
    seen = 0
    for split in sorted(refer.splits):
        assert len(refer.ref_ids(split)) > 0
        for ref, anns in _load_grefcoco(refer, split):
            want = truth[ref["ref_id"]].astype(bool)
            h, w = want.shape
            assert bool(anns) == want.any()
            # G_REFER.getMaskByRef(merge=True) and getMask
            got = np.zeros((h, w), np.uint8)
            for ann in anns:
                one = refer.get_mask(ann)
                assert one.max() == 1  # pieces never overlap, so the sum stays binary
                got |= one
            assert np.array_equal(got.astype(bool), want)
            # RefCOCOMapper at the original size (every target exact)
            assert np.array_equal(_mapper_masks(anns, h, w), want)
            seen += 1
    assert seen == len(truth)
    with pytest.raises(ValueError, match="Invalid split name"):
        refer.ref_ids("test")  # the name we no longer write by default


def test_grefcoco_polygons_survive_relas_resize(synth_dataset, tmp_path):
    """Coordinates are floats: detectron2 scales them in place, an int array would truncate."""
    out = tmp_path / "gref"
    export_dataset(synth_dataset, "grefcoco", out, images="none", progress=False)
    refer = GRefer(out)
    checked = 0
    for ann in list(refer.anns.values())[1:]:
        assert all(type(v) is float for p in ann["segmentation"] for v in p)
        image = refer.imgs[ann["image_id"]]
        h, w = image["height"], image["width"]
        got = _mapper_masks([ann], h, w, size=RELA_SIZE)
        scaled = [
            [v * RELA_SIZE / (w if k % 2 == 0 else h) for k, v in enumerate(p)] for p in ann["segmentation"]
        ]
        assert np.array_equal(got, _rasterize(scaled, RELA_SIZE, RELA_SIZE))
        checked += 1
    assert checked == len(refer.anns) - 1 > 0


def test_grefcoco_test_split_option(synth_dataset, tmp_path):
    out = tmp_path / "gref"
    summary = export_dataset(
        synth_dataset, "grefcoco", out, images="none", progress=False, test_split="testB"
    )
    assert GRefer(out).splits == {"train", "val", "testB"} and summary["split_names"]["test"] == "testB"
    with pytest.raises(DatasetError, match="unknown test split name"):
        export_dataset(synth_dataset, "grefcoco", tmp_path / "x", test_split="dev")
    assert not (tmp_path / "x").exists()
    args = ["export", str(synth_dataset), "--format", "grefcoco", "--images", "none"]
    result = CliRunner().invoke(main, [*args, "--out", str(out), "--test-split", "test"])
    assert result.exit_code == 0 and GRefer(out).splits == {"train", "val", "test"}
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "y"), "--test-split", "dev"])
    assert result.exit_code == 2 and "'dev' is not one of" in result.output


def _ring():
    m = np.zeros((12, 12), bool)
    m[2:10, 2:10] = True
    m[4:7, 4:8] = False  # a hole
    return m


@pytest.mark.parametrize(
    "mask",
    [
        _ring(),
        np.eye(6, dtype=bool),  # pixels touching only at corners
        np.pad(np.ones((1, 1), bool), 3),  # one pixel
        np.ones((5, 7), bool),  # the whole frame
        np.kron(np.indices((4, 4)).sum(0) % 2, np.ones((2, 2))).astype(bool),  # checkerboard blocks
        _ring() | (np.indices((12, 12)).sum(0) == 11) & (np.arange(12) == 5)[:, None],  # island in the hole
    ],
)
def test_polygons_are_exact_and_hole_free(mask):
    polygons = mask_to_polygons(mask)
    h, w = mask.shape
    assert polygons and all(len(p) % 2 == 0 and len(p) >= 6 for p in polygons)
    maps = mask_utils.decode(mask_utils.frPyObjects(polygons, h, w))
    assert maps.sum(axis=2).max() == 1  # disjoint pieces
    assert np.array_equal(maps.any(axis=2), mask)
    for p in polygons:  # hole-free: each piece alone is a filled shape
        from scipy import ndimage

        one = _rasterize([p], h, w)
        assert np.array_equal(ndimage.binary_fill_holes(one), one)


def test_polygons_exact_on_random_blobs():
    """Smoothed noise: holes, islands in holes, diagonal contacts; every mask exact."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    for _ in range(150):
        h, w = rng.integers(6, 48, 2)
        noise = ndimage.gaussian_filter(rng.random((h, w)), rng.uniform(0.4, 2.0))
        mask = noise > np.quantile(noise, rng.uniform(0.3, 0.8))
        polygons = mask_to_polygons(mask)
        got = _rasterize(polygons, h, w) if polygons else np.zeros((h, w), bool)
        assert np.array_equal(got, mask)
        # few pieces (ReLA decodes an (H, W, pieces) array per instance): one per 4-connected
        # component, plus per hole (8-connected background) its strip and a piece the strip
        # may cut off (an empirical bound, not a proof)
        holes = ndimage.label(np.pad(~mask, 1, constant_values=True), np.ones((3, 3)))[1] - 1
        assert len(polygons) <= ndimage.label(mask)[1] + 2 * holes
    assert mask_to_polygons(np.zeros((4, 4), bool)) == []


# --------------------------------------------------------------------------- CRIS and LAVT


def _refer_refs(root, dataset="refcoco", split_by="unc"):
    with open(root / dataset / f"refs({split_by}).p", "rb") as f:
        return pickle.load(f)


def _lavt_ref_ids(refs, split):
    """The refer toolkit's getRefIds(split=...), which LAVT's ReferDataset calls."""
    if split in ("testA", "testB", "testC"):
        return [r["ref_id"] for r in refs if split[-1] in r["split"]]
    if split == "test":
        return [r["ref_id"] for r in refs if "test" in r["split"]]
    if split in ("train", "val"):
        return [r["ref_id"] for r in refs if r["split"] == split]
    raise SystemExit(f"No such split [{split}]")


def test_refcoco_as_cris_and_lavt_read_it(synth_dataset, tmp_path):
    out = tmp_path / "refer"
    summary = export_dataset(synth_dataset, "refcoco", out, progress=False)
    refs = _refer_refs(out)
    instances = json.loads((out / "refcoco/instances.json").read_text())
    anns = {a["id"]: a for a in instances["annotations"]}
    imgs = {i["id"]: i for i in instances["images"]}
    truth = _truth(synth_dataset)
    # CRIS's data_process.py --dataset refcoco keeps these splits only: no ref may be lost
    kept = [r for r in refs if r["split"] in CRIS_REFCOCO_SPLITS]
    assert len(kept) == len(refs) == summary["refs"] == sum(m.any() for m in truth.values())
    # LAVT: every split name it is run with finds the same refs
    assert sorted(_lavt_ref_ids(refs, "testA")) == sorted(_lavt_ref_ids(refs, "test"))
    assert sum(len(_lavt_ref_ids(refs, s)) for s in ("train", "val", "testA")) == len(refs)
    for ref in refs:
        ann = anns[ref["ann_id"]]
        image = imgs[ref["image_id"]]
        # refer / CRIS getMask: segmentation[0] typed, RLE list decoded, summed over axis 2
        assert type(ann["segmentation"][0]) is not list  # noqa: E721
        m = np.sum(mask_utils.decode(ann["segmentation"]), axis=2).astype(np.uint8)
        assert np.array_equal(m, truth[ref["ref_id"]])
        # data_process.py: int bbox, int category, sentence text under "sent"; LAVT: "raw"
        assert all(isinstance(v, int) for v in ann["bbox"]) and isinstance(ref["category_id"], int)
        assert [s["sent"] for s in ref["sentences"]] == [s["raw"] for s in ref["sentences"]]
        assert len(ref["sent_ids"]) == len(ref["sentences"])
        # images: LAVT/refer under images/mscoco/images/train2014, CRIS under images/train2014
        for folder in ("images/mscoco/images/train2014", "images/train2014"):
            assert (out / folder / image["file_name"]).is_file()
    assert (out / "images/train2014").is_symlink()


def test_refcoco_test_split_kept_name_reaches_lavt_not_cris(synth_dataset, tmp_path):
    """--test-split test: LAVT's 'test' still finds the refs; CRIS's refcoco splits would not."""
    out = tmp_path / "refer"
    export_dataset(synth_dataset, "refcoco", out, images="none", progress=False, test_split="test")
    refs = _refer_refs(out)
    tests = _lavt_ref_ids(refs, "test")
    assert tests and not [r for r in refs if r["split"] == "test" and r["split"] in CRIS_REFCOCO_SPLITS]
    assert not (out / "images/train2014").exists()


# --------------------------------------------------------------------------- ReLA outputs


def _rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def test_no_target_flag_empties_a_prediction(synth_dataset, tmp_path):
    """ReLA's separate no-target head: a full mask flagged no_target scores as empty."""
    from mvtec_ref.evaluate import evaluate_predictions

    lines = {True: [], False: []}
    for line in (synth_dataset / "samples.jsonl").open():
        r = json.loads(line)
        regions = {g["region_id"]: g["segmentation"] for g in r["regions"]}
        for ref in r["refs"]:
            gt = np.zeros((r["height"], r["width"]), np.uint8)
            for i in ref["region_ids"]:
                rle = regions[i]
                gt |= mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
            for s in ref["sentences"]:
                if gt.any():  # at ReLA's 480x480: resized back with nearest-neighbour
                    small = _rle(np.kron(gt, np.ones((2, 2), np.uint8)))
                    item = {"sent_id": s["sent_id"], "mask": small}
                    lines[True].append(item)
                    lines[False].append(item)
                else:
                    lines[True].append({"sent_id": s["sent_id"], "no_target": True})
                    full = {"sent_id": s["sent_id"], "mask": _rle(np.ones_like(gt)), "no_target": False}
                    lines[False].append(full)
    scores = {}
    for flag, items in lines.items():
        path = tmp_path / f"{flag}.jsonl"
        path.write_text("".join(json.dumps(i) + "\n" for i in items))
        scores[flag] = evaluate_predictions(synth_dataset, path, split="all")["overall"]
    assert scores[True]["N-acc"] == 1.0 and scores[True]["mIoU"] == 1.0 and scores[True]["gIoU"] == 1.0
    assert scores[False]["N-acc"] == 0.0 and scores[False]["mIoU"] == 1.0
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"sent_id": 1, "no_target": "yes"}) + "\n")
    with pytest.raises(DatasetError, match=r"bad.jsonl line 1: .*no_target must be true or false"):
        evaluate_predictions(synth_dataset, bad, split="all")
