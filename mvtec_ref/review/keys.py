"""The key of a decision: (image path, target pixels, sentence text); see ``mvtec_ref.review``."""

from __future__ import annotations

import hashlib


def target_key(record: dict, region_ids: list[int]) -> str:
    """``"<h>x<w>:<sha1>"`` of the union of the target regions' masks, ``"<h>x<w>:empty"`` for none.

    COCO RLE is unique for a given mask, so the hash of the union's RLE string names the pixels
    without decoding them: any build that finds the same pixels gives the same key.
    """
    h, w = record["height"], record["width"]
    if not region_ids:
        return f"{h}x{w}:empty"
    by_id = {g["region_id"]: g["segmentation"] for g in record["regions"]}
    rles = [by_id[i] for i in sorted(region_ids)]
    if len(rles) == 1:
        counts = rles[0]["counts"]
    else:
        from pycocotools import mask as mask_utils

        merged = mask_utils.merge([{"size": list(r["size"]), "counts": r["counts"].encode()} for r in rles])
        counts = merged["counts"].decode()
    return f"{h}x{w}:" + hashlib.sha1(counts.encode("ascii")).hexdigest()
