"""Exports of a dataset directory in formats that referring-segmentation code already reads.

- ``refcoco``: ``refcoco/refs(unc).p`` + ``refcoco/instances.json`` + ``images/mscoco/images/train2014/``,
  the layout of the ``refer`` toolkit (LAVT, CRIS): ``--refer_data_root OUT --dataset refcoco --splitBy unc``.
  One annotation per target set (a multi-region target is merged into one); segmentation
  is a list holding one RLE, which ``refer.getMask`` decodes. No-target refs are left out
  (refer assumes a target) and counted in ``EXPORT.json``.
- ``grefcoco``: ``grefcoco/grefs(unc).json`` + ``grefcoco/instances.json`` + ``images/train2014/``,
  the layout of ReLA's ``G_REFER``: ``ann_id`` is a list of region annotations, ``[-1]``
  for no target; segmentation is an RLE dict.
- ``coco``: ``annotations/instances_<split>.json`` (COCO instance segmentation, RLE dicts)
  + ``images/``.
- ``jsonl``: ``refs.jsonl``, one line per (image, sentence) with the target mask as RLE.

Image files are linked (``images="link"``), copied, or left out; file names are the
sample ids with "/" replaced by "_" so that all images share one folder.
"""

from __future__ import annotations

import os
import pickle
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from mvtec_ref.build import iter_samples, load_manifest
from mvtec_ref.errors import DatasetError
from mvtec_ref.fileio import dumps_json, staged_directory, write_text_atomic

FORMATS = ("refcoco", "grefcoco", "coco", "jsonl")
MARKER = "EXPORT.json"
IMAGE_DIRS = {"refcoco": "images/mscoco/images/train2014", "grefcoco": "images/train2014", "coco": "images"}


def export_dataset(
    dataset: Path, fmt: str, out: Path, *, images: str = "link", progress: bool | None = None
) -> dict:
    """Write ``fmt`` for ``dataset`` into ``out`` (replaced atomically); returns the summary."""
    if fmt not in FORMATS:
        raise DatasetError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    manifest = load_manifest(dataset)
    records = [r for _, r in iter_samples(dataset)]
    root = Path(manifest["source"]["root"])
    with staged_directory(out, marker=MARKER) as stage:
        summary = {"refcoco": _refcoco, "grefcoco": _grefcoco, "coco": _coco, "jsonl": _jsonl}[fmt](
            records, stage
        )
        if fmt in IMAGE_DIRS and images != "none":
            _place_images(records, root, stage / IMAGE_DIRS[fmt], images, progress)
        summary = {
            "format": fmt,
            "dataset": manifest["name"],
            "source_root": str(root),
            "fingerprint": manifest["source"]["fingerprint"],
            "images": images,
            **summary,
        }
        write_text_atomic(stage / MARKER, dumps_json(summary))
    return summary


def file_name(record: dict) -> str:
    suffix = Path(record["image_path"]).suffix
    return record["id"].replace("/", "_") + suffix


def categories(records: list[dict]) -> tuple[list[dict], dict[tuple[str, str], int]]:
    """One COCO category per (category, defect type) of the defect images."""
    keys = sorted({(r["category"], r["defect_type"]) for r in records if r["label_index"]})
    ids = {key: i for i, key in enumerate(keys, start=1)}
    return [{"id": ids[k], "name": f"{k[0]}/{k[1]}", "supercategory": k[0]} for k in keys], ids


def _images(records):
    return [
        {"id": r["image_id"], "file_name": file_name(r), "height": r["height"], "width": r["width"]}
        for r in records
    ]


def _annotation(record, ann_id, category_id, rle, area, bbox, *, as_list):
    return {
        "id": ann_id,
        "image_id": record["image_id"],
        "category_id": category_id,
        "segmentation": [rle] if as_list else rle,
        "area": area,
        "bbox": bbox,
        "iscrowd": 0,
    }


def _region_annotations(records, cat_ids, *, as_list):
    return [
        _annotation(
            r,
            g["ann_id"],
            cat_ids[r["category"], r["defect_type"]],
            g["segmentation"],
            g["area"],
            g["bbox"],
            as_list=as_list,
        )
        for r in records
        for g in r["regions"]
    ]


def _sentences(ref):
    return [
        {"tokens": s["tokens"], "raw": s["text"], "sent": s["text"], "sent_id": s["sent_id"]}
        for s in ref["sentences"]
    ]


def _refcoco(records, stage):
    from mvtec_ref.regions.mask import encode_rle

    cats, cat_ids = categories(records)
    annotations = _region_annotations(records, cat_ids, as_list=True)
    next_ann = 1 + max((a["id"] for a in annotations), default=0)
    refs, skipped = [], Counter()
    for r in records:
        by_id = {g["region_id"]: g for g in r["regions"]}
        merged: dict[tuple[int, ...], int] = {}
        for ref in r["refs"]:
            target = tuple(ref["region_ids"])
            if not target:
                skipped["no_target_refs"] += 1
                continue
            if len(target) == 1:
                ann_id = by_id[target[0]]["ann_id"]
            elif target in merged:
                ann_id = merged[target]
            else:
                union = _union(r, target)
                ys, xs = np.nonzero(union)
                bbox = [
                    int(xs.min()),
                    int(ys.min()),
                    int(xs.max() - xs.min() + 1),
                    int(ys.max() - ys.min() + 1),
                ]
                ann_id = merged[target] = next_ann
                next_ann += 1
                cat = cat_ids[r["category"], r["defect_type"]]
                annotations.append(
                    _annotation(r, ann_id, cat, encode_rle(union), int(union.sum()), bbox, as_list=True)
                )
            refs.append(
                {
                    "ref_id": ref["ref_id"],
                    "ann_id": ann_id,
                    "image_id": r["image_id"],
                    "split": r["split"],
                    "category_id": cat_ids[r["category"], r["defect_type"]],
                    "file_name": file_name(r),
                    "sent_ids": [s["sent_id"] for s in ref["sentences"]],
                    "sentences": _sentences(ref),
                    "kind": ref["kind"],
                }
            )
    folder = stage / "refcoco"
    folder.mkdir()
    instances = {"images": _images(records), "annotations": annotations, "categories": cats}
    write_text_atomic(folder / "instances.json", dumps_json(instances, indent=None))
    # Pickle only because the refer toolkit reads nothing else; protocol 2 loads in old code too.
    (folder / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    return {"refs": len(refs), "annotations": len(annotations), **skipped}


def _grefcoco(records, stage):
    cats, cat_ids = categories(records)
    annotations = _region_annotations(records, cat_ids, as_list=False)
    refs = []
    for r in records:
        by_id = {g["region_id"]: g for g in r["regions"]}
        for ref in r["refs"]:
            target = ref["region_ids"]
            ann_ids = [by_id[i]["ann_id"] for i in target] or [-1]
            cat = [cat_ids[r["category"], r["defect_type"]]] if target else [-1]
            refs.append(
                {
                    "ref_id": ref["ref_id"],
                    "ann_id": ann_ids,
                    "image_id": r["image_id"],
                    "split": r["split"],
                    "category_id": cat,
                    "file_name": file_name(r),
                    "no_target": not target,
                    "sent_ids": [s["sent_id"] for s in ref["sentences"]],
                    "sentences": _sentences(ref),
                    "kind": ref["kind"],
                }
            )
    folder = stage / "grefcoco"
    folder.mkdir()
    instances = {"images": _images(records), "annotations": annotations, "categories": cats}
    write_text_atomic(folder / "instances.json", dumps_json(instances, indent=None))
    write_text_atomic(folder / "grefs(unc).json", dumps_json(refs, indent=None))
    return {
        "refs": len(refs),
        "no_target_refs": sum(ref["ann_id"] == [-1] for ref in refs),
        "annotations": len(annotations),
    }


def _coco(records, stage):
    cats, cat_ids = categories(records)
    folder = stage / "annotations"
    folder.mkdir()
    counts = {}
    for split in sorted({r["split"] for r in records}):
        part = [r for r in records if r["split"] == split]
        data = {
            "images": _images(part),
            "annotations": _region_annotations(part, cat_ids, as_list=False),
            "categories": cats,
        }
        write_text_atomic(folder / f"instances_{split}.json", dumps_json(data, indent=None))
        counts[split] = {"images": len(part), "annotations": len(data["annotations"])}
    return {"splits": counts}


def _jsonl(records, stage):
    from mvtec_ref.regions.mask import encode_rle

    lines = []
    empty: dict[tuple[int, int], dict] = {}
    for r in records:
        by_id = {g["region_id"]: g for g in r["regions"]}
        for ref in r["refs"]:
            target = ref["region_ids"]
            if len(target) == 1:  # the region's own RLE: no decode needed
                rle = by_id[target[0]]["segmentation"]
            elif not target:
                size = (r["height"], r["width"])
                rle = empty.setdefault(size, encode_rle(np.zeros(size, np.uint8)))
            else:
                rle = encode_rle(_union(r, target))
            for s in ref["sentences"]:
                lines.append(
                    dumps_json(
                        {
                            "image_id": r["image_id"],
                            "id": r["id"],
                            "image_path": r["image_path"],
                            "split": r["split"],
                            "category": r["category"],
                            "defect_type": r["defect_type"],
                            "width": r["width"],
                            "height": r["height"],
                            "ref_id": ref["ref_id"],
                            "kind": ref["kind"],
                            "sent_id": s["sent_id"],
                            "text": s["text"],
                            "origin": s["origin"],
                            "region_ids": ref["region_ids"],
                            "empty": not ref["region_ids"],
                            "mask": rle,
                        },
                        indent=None,
                    )
                )
    write_text_atomic(stage / "refs.jsonl", "\n".join(lines) + "\n")
    return {"lines": len(lines)}


def _union(record, region_ids) -> np.ndarray:
    from mvtec_ref.regions.mask import decode_rle

    union = np.zeros((record["height"], record["width"]), np.uint8)
    by_id = {g["region_id"]: g for g in record["regions"]}
    for i in region_ids:
        union |= decode_rle(by_id[i]["segmentation"])
    return union


def _place_images(records, root: Path, folder: Path, how: str, progress) -> None:
    from tqdm import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    for r in tqdm(records, desc="images", unit="img", disable=None if progress is None else not progress):
        source = root / r["image_path"]
        if not source.is_file():
            raise DatasetError(
                f"{source}: source image is missing (moved? rebuild the dataset or use --images none)"
            )
        target = folder / file_name(r)
        if how == "copy":
            shutil.copyfile(source, target)
        else:
            os.symlink(source.absolute(), target)
