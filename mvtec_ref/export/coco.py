"""COCO instance segmentation: annotations/instances_<split>.json with RLE dicts."""

from __future__ import annotations

from mvtec_ref.export.common import categories, coco_images, region_annotations
from mvtec_ref.fileio import dumps_json, write_text_atomic


def write_coco(records, stage):
    cats, cat_ids = categories(records)
    folder = stage / "annotations"
    folder.mkdir()
    counts = {}
    for split in sorted({r["split"] for r in records}):
        part = [r for r in records if r["split"] == split]
        data = {
            "images": coco_images(part),
            "annotations": region_annotations(part, cat_ids, as_list=False),
            "categories": cats,
        }
        write_text_atomic(folder / f"instances_{split}.json", dumps_json(data, indent=None))
        counts[split] = {"images": len(part), "annotations": len(data["annotations"])}
    return {"splits": counts}
