"""Score any model's predicted masks against a dataset directory (``mvtec-ref evaluate``).

Predictions are either a folder of PNGs named ``<sent_id>.png`` (non-zero = anomaly, read by
meaning like a source mask: 8- or 16-bit, a palette by index, an RGBA mask from the channels
that vary; any size: resized to the image with OpenCV's INTER_NEAREST, output pixel (x, y)
taking input pixel (floor(x * w_in / w_out), floor(y * h_in / h_out)), and said in a warning)
or a JSONL file with one ``{"sent_id": N, "mask": <COCO RLE>}`` per line (compressed or
uncompressed counts); ``"no_target": true`` on a line empties its prediction whatever its
mask (``mask`` may then be left out), for models such as ReLA that decide "no target" with a
separate head. Contrast-set probes are keyed the same way by ``probe_id`` (``<probe_id>.png``,
``{"probe_id": "p5_1", ...}``). Every sentence of every image in the
chosen split is scored; see ``mvtec_ref.metrics`` for the rules.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from mvtec_ref.build import iter_samples, load_manifest
from mvtec_ref.errors import DatasetError
from mvtec_ref.metrics import RefSegMetrics, target_size
from mvtec_ref.wording import percent

log = logging.getLogger(__name__)


def load_predictions(pred: Path):
    """A function ``key -> (H, W) mask, NO_TARGET or None`` over a PNG folder or an RLE JSONL file;
    keys are ``sent_id`` (int) or a probe's ``probe_id`` (str)."""
    from mvtec_ref.errors import SampleError
    from mvtec_ref.regions.mask import decode_rle, read_mask_plane

    pred = Path(pred)
    if pred.is_dir():

        def from_png(key: int | str):
            path = pred / f"{key}.png"
            if not path.is_file():
                return None
            try:
                plane, _, note = read_mask_plane(path.read_bytes(), str(path))
            except SampleError as error:
                raise DatasetError(str(error)) from None
            if note:
                NOTES[note] += 1
            return (plane > 0).view(np.uint8)

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
                key = str(item["probe_id"]) if "probe_id" in item else int(item["sent_id"])
                masks[key] = None if no_target else item["mask"]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
                raise DatasetError(
                    f'{pred} line {n}: expected {{"sent_id": N, "mask": RLE}}, '
                    f'{{"probe_id": ID, "mask": RLE}} or {{"sent_id": N, "no_target": true}} ({error})'
                ) from None

    def from_rle(key: int | str):
        if key not in masks:
            return None
        if masks[key] is None:
            return NO_TARGET
        try:
            return decode_rle(masks[key])
        except (ValueError, TypeError, KeyError) as error:
            name = f"sent_id {key}" if isinstance(key, int) else f"probe_id {key}"
            raise DatasetError(f"{pred}: {name}: mask is not a valid COCO RLE ({error})") from None

    return from_rle


# What was assumed about prediction PNGs in this process (note -> count), said after scoring.
NOTES: Counter = Counter()
# A JSONL line's ``"no_target": true``: an empty mask of the image's own size.
NO_TARGET = np.zeros((0, 0), np.uint8)


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
    dataset: Path, pred: Path, *, split: str = "test", allow_missing: bool = False,
    progress: bool | None = False,
) -> dict:  # fmt: skip
    from mvtec_ref.progress import progress_bar
    from mvtec_ref.regions.mask import decode_rle

    manifest = load_manifest(dataset)
    cuts = tuple(manifest["config"]["regions"]["size_cuts"])
    NOTES.clear()
    get = load_predictions(pred)
    resized = []
    metrics = RefSegMetrics()
    missing, scored = [], 0
    records = progress_bar(iter_samples(dataset), desc="evaluate", unit="img",
                           total=manifest["counts"]["images"], progress=progress)  # fmt: skip
    for _, record in records:
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
                if mask is NO_TARGET:
                    mask = np.zeros(shape, np.uint8)
                if mask.shape != shape:
                    resized.append((sentence["sent_id"], mask.shape))
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
    for note, n in sorted(NOTES.items()):
        log.warning("%s: %d prediction PNGs: %s", pred, n, note)
    if resized:
        sent_id, (h, w) = resized[0]
        log.warning(
            "%s: %d predictions differ in size from their image (e.g. sent_id %d is %dx%d); resized "
            "with nearest-neighbour (OpenCV INTER_NEAREST: output pixel (x, y) takes input pixel "
            "(floor(x * w_in / w_out), floor(y * h_in / h_out)))",
            pred, len(resized), sent_id, w, h,
        )  # fmt: skip
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
        return "-" if v is None else (str(v) if isinstance(v, int) else percent(v, 2))

    rows = [("overall", result["overall"])]
    for name in ("expression", "scope", "kind", "size"):
        rows += [(f"{name}={k}", v) for k, v in result["by"].get(name, {}).items()]
    width = max(len(r[0]) for r in rows)
    lines = [" ".join([" " * width, *(f"{k:>9}" for k in keys)])]
    lines += [" ".join([name.ljust(width), *(f"{cell(row[k]):>9}" for k in keys)]) for name, row in rows]
    return "\n".join(lines)
