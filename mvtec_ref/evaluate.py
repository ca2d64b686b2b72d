"""Score any model's predicted masks against a dataset directory (``mvtec-ref evaluate``).

Predictions are either a folder of PNGs named ``<sent_id>.png`` (non-zero = anomaly, any
size: resized to the image with nearest-neighbour) or a JSONL file with one
``{"sent_id": N, "mask": <COCO RLE>}`` per line; ``"no_target": true`` on a line empties
its prediction whatever its mask (``mask`` may then be left out), for models such as ReLA
that decide "no target" with a separate head. Every sentence of every image in the
chosen split is scored; see ``mvtec_ref.metrics`` for the rules.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mvtec_ref.build import iter_samples, load_manifest
from mvtec_ref.errors import DatasetError
from mvtec_ref.metrics import RefSegMetrics, target_size


def load_predictions(pred: Path):
    """A function ``sent_id -> (H, W) mask or None`` over a PNG folder or an RLE JSONL file."""
    from mvtec_ref.regions.mask import decode_image, decode_rle

    pred = Path(pred)
    if pred.is_dir():

        def from_png(sent_id: int):
            path = pred / f"{sent_id}.png"
            if not path.is_file():
                return None
            try:
                array = decode_image(path.read_bytes(), str(path))
            except Exception as error:
                raise DatasetError(str(error)) from None
            return array.max(axis=2) if array.ndim == 3 else array

        return from_png
    if not pred.is_file():
        raise DatasetError(f"{pred}: predictions not found (a folder of <sent_id>.png or a .jsonl file)")
    masks = {}
    with pred.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            try:
                item = json.loads(line)
                no_target = item.get("no_target", False)
                if not isinstance(no_target, bool):
                    raise ValueError(f"no_target must be true or false, not {no_target!r}")
                masks[int(item["sent_id"])] = None if no_target else item["mask"]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
                raise DatasetError(
                    f'{pred} line {n}: expected {{"sent_id": N, "mask": RLE}} or '
                    f'{{"sent_id": N, "no_target": true}} ({error})'
                ) from None

    def from_jsonl(sent_id: int):
        if sent_id not in masks:
            return None
        rle = masks[sent_id]
        return np.zeros((1, 1), np.uint8) if rle is None else decode_rle(rle)  # resized to the truth

    return from_jsonl


def expression_group(ref: dict) -> str:
    """'no-target' (empty truth), 'universal' (the prompt for every anomaly) or 'specific'."""
    if not ref["region_ids"]:
        return "no-target"
    return "universal" if ref["kind"] == "universal" else "specific"


def target_scope(record: dict, ref: dict) -> str:
    """'all' (the target is every anomaly of the image), 'part' (some of them) or 'none'.

    On 'all' the universal prompt "anomaly" names the same pixels, so a model that ignores
    the words is not at a loss there; 'part' is where reading the sentence is needed."""
    if not ref["region_ids"]:
        return "none"
    return "all" if set(ref["region_ids"]) >= {g["region_id"] for g in record["regions"]} else "part"


def ref_groups(record: dict, ref: dict, gt: np.ndarray, cuts: tuple[float, float]) -> dict[str, str]:
    """The breakdowns a sample is counted in: target size, category, defect type, ref kind,
    expression group and target scope."""
    return {
        "size": target_size(gt.sum() / gt.size, cuts),
        "category": record["category"],
        "defect_type": f"{record['category']}/{record['defect_type']}",
        "kind": ref["kind"],
        "expression": expression_group(ref),
        "scope": target_scope(record, ref),
    }


def evaluate_predictions(
    dataset: Path, pred: Path, *, split: str = "test", allow_missing: bool = False
) -> dict:
    from mvtec_ref.regions.mask import decode_rle

    manifest = load_manifest(dataset)
    cuts = tuple(manifest["config"]["regions"]["size_cuts"])
    get = load_predictions(pred)
    metrics = RefSegMetrics()
    missing, scored = [], 0
    for _, record in iter_samples(dataset):
        if split != "all" and record["split"] != split:
            continue
        masks = {g["region_id"]: g for g in record["regions"]}
        shape = (record["height"], record["width"])
        for ref in record["refs"]:
            gt = np.zeros(shape, np.uint8)
            for i in ref["region_ids"]:
                gt |= decode_rle(masks[i]["segmentation"])
            groups = ref_groups(record, ref, gt, cuts)
            for sentence in ref["sentences"]:
                mask = get(sentence["sent_id"])
                if mask is None:
                    missing.append(sentence["sent_id"])
                    if not allow_missing:
                        continue
                    mask = np.zeros(shape, np.uint8)
                metrics.update(mask, gt, groups)
                scored += 1
    if missing and not allow_missing:
        raise DatasetError(
            f"{pred}: {len(missing)} of {len(missing) + scored} predictions missing, "
            f"e.g. sent_id {missing[0]} (name PNGs <sent_id>.png, or pass --allow-missing "
            "to score them as empty masks)"
        )
    if scored == 0:
        raise DatasetError(f"{dataset}: no sentence in split {split!r}")
    result = metrics.compute()
    return {
        "dataset": manifest["name"],
        "split": split,
        "predictions": str(pred),
        "missing_scored_as_empty": len(missing),
        "resolution": "original mask resolution",
        **result,
    }


def format_metrics(result: dict) -> str:
    keys = ["samples", "mIoU", "oIoU", "gIoU", "Prec@0.5", "Prec@0.7", "Prec@0.9", "N-acc", "T-acc"]

    def cell(v):
        return "-" if v is None else (str(v) if isinstance(v, int) else f"{100 * v:.2f}")

    rows = [("overall", result["overall"])]
    for name in ("expression", "scope", "kind", "size"):
        rows += [(f"{name}={k}", v) for k, v in result["by"].get(name, {}).items()]
    width = max(len(r[0]) for r in rows)
    lines = [" ".join([" " * width, *(f"{k:>9}" for k in keys)])]
    lines += [" ".join([name.ljust(width), *(f"{cell(row[k]):>9}" for k in keys)]) for name, row in rows]
    return "\n".join(lines)
