"""refer / LAVT / CRIS layout: refs(unc).p + instances.json (see the package docstring)."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np

from mvtec_ref.export.common import (
    annotation,
    categories,
    coco_images,
    refer_ref,
    region_annotations,
    target_mask,
)
from mvtec_ref.fileio import dumps_json, write_text_atomic


def write_refcoco(records, stage):
    from mvtec_ref.regions.mask import encode_rle

    cats, cat_ids = categories(records)
    annotations = region_annotations(records, cat_ids, as_list=True)
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
                union = target_mask(r, target)
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
                    annotation(r, ann_id, cat, encode_rle(union), int(union.sum()), bbox, as_list=True)
                )
            refs.append(refer_ref(r, ref, ann_id, cat_ids[r["category"], r["defect_type"]]))
    folder = stage / "refcoco"
    folder.mkdir()
    instances = {"images": coco_images(records), "annotations": annotations, "categories": cats}
    write_text_atomic(folder / "instances.json", dumps_json(instances, indent=None))
    # Pickle only because the refer toolkit reads nothing else; protocol 2 loads in old code too.
    (folder / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    return {"refs": len(refs), "annotations": len(annotations), **skipped}
