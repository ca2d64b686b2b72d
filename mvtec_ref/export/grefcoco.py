"""ReLA G_REFER layout: grefs(unc).json + instances.json, [-1] for no target.

Segmentations are polygons (``export/polygons.py``): ReLA's ``G_REFER.getMask`` reads
``segmentation[0]`` and its ``RefCOCOMapper`` asks detectron2 for polygon masks, so an RLE
dict fails both. ``area`` and ``bbox`` stay those of the exact mask.
"""

from __future__ import annotations

from mvtec_ref.export.common import (
    categories,
    coco_images,
    refer_ref,
    region_annotations,
)
from mvtec_ref.fileio import dumps_json, write_text_atomic


def write_grefcoco(records, stage):
    from mvtec_ref.export.polygons import mask_to_polygons
    from mvtec_ref.regions.mask import decode_rle

    cats, cat_ids = categories(records)
    annotations = region_annotations(records, cat_ids, as_list=False)
    for ann in annotations:
        ann["segmentation"] = mask_to_polygons(decode_rle(ann["segmentation"]))
    refs = []
    for r in records:
        by_id = {g["region_id"]: g for g in r["regions"]}
        for ref in r["refs"]:
            target = ref["region_ids"]
            ann_ids = [by_id[i]["ann_id"] for i in target] or [-1]
            cat = [cat_ids[r["category"], r["defect_type"]]] if target else [-1]
            refs.append(refer_ref(r, ref, ann_ids, cat, no_target=not target))
    folder = stage / "grefcoco"
    folder.mkdir()
    instances = {"images": coco_images(records), "annotations": annotations, "categories": cats}
    write_text_atomic(folder / "instances.json", dumps_json(instances, indent=None))
    write_text_atomic(folder / "grefs(unc).json", dumps_json(refs, indent=None))
    return {
        "refs": len(refs),
        "no_target_refs": sum(ref["ann_id"] == [-1] for ref in refs),
        "annotations": len(annotations),
    }
