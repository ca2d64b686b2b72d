"""refs.jsonl: one line per (image, sentence) with the target mask as RLE."""

from __future__ import annotations

import numpy as np

from mvtec_ref.export.common import target_mask
from mvtec_ref.fileio import dumps_json, write_text_atomic


def write_jsonl(records, stage):
    from mvtec_ref.regions.mask import encode_rle

    lines = []
    empty: dict[tuple[int, int], dict] = {}
    for r in records:
        by_id = {g["region_id"]: g for g in r["regions"]}
        merged: dict[tuple[int, ...], dict] = {}  # one union per distinct multi-region target
        for ref in r["refs"]:
            target = ref["region_ids"]
            if len(target) == 1:  # the region's own RLE: no decode needed
                rle = by_id[target[0]]["segmentation"]
            elif not target:
                size = (r["height"], r["width"])
                if size not in empty:  # one encoding per image size (setdefault would encode each time)
                    empty[size] = encode_rle(np.zeros(size, np.uint8))
                rle = empty[size]
            else:
                key = tuple(target)
                if key not in merged:
                    merged[key] = encode_rle(target_mask(r, target))
                rle = merged[key]
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
