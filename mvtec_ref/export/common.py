"""Pieces every export shares: file names, COCO images/categories/annotations, target masks."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from mvtec_ref.errors import DatasetError


def file_name(record: dict) -> str:
    suffix = Path(record["image_path"]).suffix
    return record["id"].replace("/", "_") + suffix


def categories(records: list[dict]) -> tuple[list[dict], dict[tuple[str, str], int]]:
    """One COCO category per (category, defect type) of the defect images."""
    keys = sorted({(r["category"], r["defect_type"]) for r in records if r["label_index"]})
    ids = {key: i for i, key in enumerate(keys, start=1)}
    return [{"id": ids[k], "name": f"{k[0]}/{k[1]}", "supercategory": k[0]} for k in keys], ids


def coco_images(records):
    return [
        {"id": r["image_id"], "file_name": file_name(r), "height": r["height"], "width": r["width"]}
        for r in records
    ]


def annotation(record, ann_id, category_id, rle, area, bbox, *, as_list):
    return {
        "id": ann_id,
        "image_id": record["image_id"],
        "category_id": category_id,
        "segmentation": [rle] if as_list else rle,
        "area": area,
        "bbox": bbox,
        "iscrowd": 0,
    }


def region_annotations(records, cat_ids, *, as_list):
    return [
        annotation(
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


def refer_sentences(ref):
    return [
        {"tokens": s["tokens"], "raw": s["text"], "sent": s["text"], "sent_id": s["sent_id"]}
        for s in ref["sentences"]
    ]


def target_mask(record, region_ids) -> np.ndarray:
    from mvtec_ref.regions.mask import decode_rle

    union = np.zeros((record["height"], record["width"]), np.uint8)
    by_id = {g["region_id"]: g for g in record["regions"]}
    for i in region_ids:
        union |= decode_rle(by_id[i]["segmentation"])
    return union


def source_image(record: dict, root: Path) -> Path:
    """The record's image file under the source root; DatasetError when it is gone."""
    source = root / record["image_path"]
    if not source.is_file():
        raise DatasetError(
            f"{source}: source image is missing (moved? rebuild the dataset or use --images none)"
        )
    return source


def place_images(records, root: Path, folder: Path, how: str, progress) -> None:
    from mvtec_ref.progress import progress_bar

    folder.mkdir(parents=True, exist_ok=True)
    for r in progress_bar(records, desc="images", unit="img", progress=progress):
        source = source_image(r, root)
        target = folder / file_name(r)
        if how == "copy":
            shutil.copyfile(source, target)
        else:
            os.symlink(source.absolute(), target)


def refer_ref(record: dict, ref: dict, ann_id, category_id, **extra) -> dict:
    """One ref in the refer toolkit's form (gRefCOCO passes lists for ``ann_id``/``category_id``)."""
    return {
        "ref_id": ref["ref_id"],
        "ann_id": ann_id,
        "image_id": record["image_id"],
        "split": record["split"],
        "category_id": category_id,
        "file_name": file_name(record),
        "sent_ids": [s["sent_id"] for s in ref["sentences"]],
        "sentences": refer_sentences(ref),
        "kind": ref["kind"],
        **extra,
    }
