"""``hf``: a folder that ``datasets.load_dataset(FOLDER)`` reads with no arguments.

Layout (Parquet written by ``datasets``' own ``ParquetWriter``, with its ``Features`` in
each file's schema and in the card)::

    README.md                                  dataset card (YAML header the Hub reads)
    croissant.json                             Croissant metadata (export/croissant.py)
    data/{split}-00000-of-0000N.parquet        config "default": one row per sentence
    images/{split}-00000-of-00001.parquet      config "images": one row per image, no pixels
    regions/{split}-00000-of-00001.parquet     config "regions": one row per region
    refs/{split}-00000-of-00001.parquet        config "refs": one row per ref

Splits are ``train``, ``validation`` (our ``val``) and ``test``. A sentence row carries its
image (``--images link``, the default: only the image's absolute path, read from disk when
decoded, so the folder loads on this machine only; ``embed``: the source file's bytes, not
re-encoded, so the folder loads anywhere and can be pushed to the Hub; ``none``: no image
column) and its target mask (an 8-bit PNG, 255 = target, all zero
for a no-target sentence, at the image's size) and the same mask as COCO RLE. With ``embed``
the sentences of one image repeat its bytes (one row per sentence, as ``datasets`` users
expect: about 6x the source's bytes on MVTec AD's layout); shards are
cut at ``datasets``' ``MAX_SHARD_SIZE`` and row groups at its ``MAX_ROW_GROUP_SIZE``, so the
files are those ``push_to_hub`` would write.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mvtec_ref.errors import DatasetError
from mvtec_ref.export.common import file_name, source_image, target_mask
from mvtec_ref.progress import progress_bar

HF_SPLITS = {"train": "train", "val": "validation", "test": "test"}
TABLES = ("images", "regions", "refs")  # configs beside "default" (sentences), for Croissant
ORIGINS = ["template", "llm", "human"]  # schemas/sample.schema.json
SIZES = ["none", "small", "medium", "large"]  # metrics.target_size
REGION_SIZES = ["small", "medium", "large"]
IMAGE_MODES = ("link", "embed", "none")


def sentence_features(records: list[dict], images: str):
    """``datasets.Features`` of a sentence row (config "default")."""
    from datasets import ClassLabel, Features, Image, List, Value

    columns = {
        **({"image": Image()} if images != "none" else {}),
        "mask": Image(),
        "sentence": Value("string"),
        "tokens": List(Value("string")),
        "kind": ClassLabel(names=sorted({ref["kind"] for r in records for ref in r["refs"]})),
        "origin": ClassLabel(names=ORIGINS),
        "no_target": Value("bool"),
        "region_ids": List(Value("int32")),
        "ann_ids": List(Value("int64")),
        "target_area": Value("int64"),
        "target_bbox": List(Value("int32")),
        "size": ClassLabel(names=SIZES),
        "segmentation": {"size": List(Value("int32")), "counts": Value("string")},
        **_image_columns(records),
        "ref_id": Value("int64"),
        "sent_id": Value("int64"),
    }
    return Features(columns)


def table_features(records: list[dict]) -> dict:
    """``datasets.Features`` of the configs "images", "regions" and "refs"."""
    from datasets import ClassLabel, Features, List, Value

    image = Features(
        {
            **_image_columns(records),
            "label_index": Value("int8"),
            "source_split": Value("string"),
            "file_name": Value("string"),
            "regions": Value("int32"),
            "refs": Value("int32"),
        }
    )
    region = Features(
        {
            "ann_id": Value("int64"),
            "image_id": Value("int64"),
            "region_id": Value("int32"),
            "bbox": List(Value("int32")),
            "area": Value("int64"),
            "area_ratio": Value("float64"),
            "size": ClassLabel(names=REGION_SIZES),
            "location": Value("string"),
            "shape": Value("string"),
            "tone": Value("string"),
            "colour": Value("string"),
            "segmentation": {"size": List(Value("int32")), "counts": Value("string")},
        }
    )
    ref = Features(
        {
            "ref_id": Value("int64"),
            "image_id": Value("int64"),
            "kind": Value("string"),
            "region_ids": List(Value("int32")),
            "ann_ids": List(Value("int64")),
            "no_target": Value("bool"),
            "sent_ids": List(Value("int64")),
        }
    )
    return {"images": image, "regions": region, "refs": ref}


def _image_columns(records):
    from datasets import ClassLabel, Value

    return {
        "category": ClassLabel(names=sorted({r["category"] for r in records})),
        "defect_type": ClassLabel(names=sorted({r["defect_type"] for r in records})),
        "image_id": Value("int64"),
        "id": Value("string"),
        "image_path": Value("string"),
        "width": Value("int32"),
        "height": Value("int32"),
    }


def write_hf(records: list[dict], stage: Path, *, manifest: dict, root: Path, images: str, progress) -> dict:
    """Write the Parquet files, the card and croissant.json into ``stage``; returns the summary."""
    from mvtec_ref.export.card import write_card
    from mvtec_ref.export.croissant import write_croissant

    cuts = tuple(manifest["config"]["regions"]["size_cuts"])
    features = sentence_features(records, images)
    tables = table_features(records)
    splits = [s for s in HF_SPLITS if any(r["split"] == s for r in records)]
    files: dict[str, dict[str, list[str]]] = {"default": {}, **{t: {} for t in TABLES}}
    sizes: dict[str, dict[str, dict]] = {"default": {}, **{t: {} for t in TABLES}}
    bar = progress_bar(total=len(records), desc="hf", unit="img", progress=progress)
    with bar:
        for split in splits:
            part = [r for r in records if r["split"] == split]
            name = HF_SPLITS[split]
            rows = _sentence_rows(part, root, images, cuts, bar)
            files["default"][name], sizes["default"][name] = _write_sharded(
                rows, features, stage / "data", name
            )
            for table, rows in _table_rows(part).items():
                files[table][name], sizes[table][name] = _write_sharded(
                    iter(rows), tables[table], stage / table, name
                )
    configs = {"default": features, **tables}
    write_card(stage, manifest=manifest, root=root, records=records, configs=configs, files=files,
               sizes=sizes, images=images)  # fmt: skip
    write_croissant(stage, manifest=manifest, root=root, configs=configs, files=files, images=images)
    return {
        "rows": {s: sizes["default"][s]["num_examples"] for s in sizes["default"]},
        "shards": sum(len(v) for v in files["default"].values()),
    }


def _sentence_rows(records, root: Path, images: str, cuts, bar):
    """(row, estimated bytes) for every sentence of ``records``, image by image."""
    from mvtec_ref.metrics import target_size
    from mvtec_ref.regions.mask import encode_rle

    for r in records:
        image = _image_value(r, root, images)
        by_id = {g["region_id"]: g for g in r["regions"]}
        base = _image_fields(r)
        for ref in r["refs"]:
            target = target_mask(r, ref["region_ids"])
            area = int(target.sum())
            rle = by_id[ref["region_ids"][0]]["segmentation"] if len(ref["region_ids"]) == 1 else None
            mask_png = _png(target)
            shared = {
                **({"image": image} if image is not None else {}),
                "mask": {"bytes": mask_png, "path": None},
                "kind": ref["kind"],
                "no_target": not ref["region_ids"],
                "region_ids": ref["region_ids"],
                "ann_ids": [by_id[i]["ann_id"] for i in ref["region_ids"]],
                "target_area": area,
                "target_bbox": _bbox(target) if area else [],
                "size": target_size(area / target.size, cuts),
                "segmentation": rle or encode_rle(target),
                **base,
                "ref_id": ref["ref_id"],
            }
            weight = len(mask_png) + 256 + (len(image["bytes"]) if image and image["bytes"] else 0)
            for s in ref["sentences"]:
                row = {**shared, "sentence": s["text"], "tokens": s["tokens"], "origin": s["origin"],
                       "sent_id": s["sent_id"]}  # fmt: skip
                yield row, weight
        bar.update()


def _table_rows(records) -> dict[str, list]:
    rows: dict[str, list] = {t: [] for t in TABLES}
    for r in records:
        by_id = {g["region_id"]: g for g in r["regions"]}
        rows["images"].append(
            {
                **_image_fields(r),
                "label_index": r["label_index"],
                "source_split": r["source_split"],
                "file_name": file_name(r),
                "regions": len(r["regions"]),
                "refs": len(r["refs"]),
            }
        )
        for g in r["regions"]:
            rows["regions"].append(
                {
                    "ann_id": g["ann_id"],
                    "image_id": r["image_id"],
                    "region_id": g["region_id"],
                    "bbox": g["bbox"],
                    "area": g["area"],
                    "area_ratio": g["area_ratio"],
                    "size": g["size"],
                    "location": g["location"],
                    "shape": g["shape"]["word"],
                    "tone": g["appearance"]["tone"],
                    "colour": g["appearance"].get("colour"),
                    "segmentation": g["segmentation"],
                }
            )
        for ref in r["refs"]:
            rows["refs"].append(
                {
                    "ref_id": ref["ref_id"],
                    "image_id": r["image_id"],
                    "kind": ref["kind"],
                    "region_ids": ref["region_ids"],
                    "ann_ids": [by_id[i]["ann_id"] for i in ref["region_ids"]],
                    "no_target": not ref["region_ids"],
                    "sent_ids": [s["sent_id"] for s in ref["sentences"]],
                }
            )
    return {t: [(row, 256) for row in rows[t]] for t in TABLES}


def _image_fields(record: dict) -> dict:
    """The values of ``_image_columns`` for one record."""
    keys = ("category", "defect_type", "image_id", "id", "image_path", "width", "height")
    return {k: record[k] for k in keys}


def _write_sharded(rows, features, folder: Path, split: str) -> tuple[list[str], dict]:
    """Write ``rows`` ((row, estimated bytes) pairs) as ``folder/{split}-XXXXX-of-YYYYY.parquet``,
    a new shard past ``MAX_SHARD_SIZE`` and a new row group past ``MAX_ROW_GROUP_SIZE``
    (``datasets``' own limits); returns the file names (relative to the export) and the split's
    sizes. The shard count is known only at the end, so files take their names then."""
    from datasets import config
    from datasets.arrow_writer import ParquetWriter
    from datasets.utils.py_utils import convert_file_size_to_int

    max_shard = convert_file_size_to_int(config.MAX_SHARD_SIZE)
    max_group = convert_file_size_to_int(config.MAX_ROW_GROUP_SIZE)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    examples = nbytes = 0
    writer, shard_bytes, group, group_bytes = None, 0, [], 0

    def flush_group():
        nonlocal group, group_bytes
        if group:
            batch = {name: [row[name] for row in group] for name in features}
            writer.write_batch(batch, writer_batch_size=len(group))
        group, group_bytes = [], 0

    def close():
        nonlocal writer, examples, nbytes
        flush_group()
        n, b = writer.finalize()
        examples, nbytes = examples + n, nbytes + b
        writer = None

    for row, weight in rows:
        if writer is not None and shard_bytes + weight > max_shard:
            close()
        if writer is None:
            path = folder / f".{split}-{len(written):05d}.parquet.tmp"
            written.append(path)
            writer, shard_bytes = ParquetWriter(features=features, path=str(path)), 0
        if group and group_bytes + weight > max_group:
            flush_group()
        group.append(row)
        group_bytes += weight
        shard_bytes += weight
    if writer is None:  # an empty table still gets its schema
        path = folder / f".{split}-00000.parquet.tmp"
        written.append(path)
        writer = ParquetWriter(features=features, path=str(path))
    close()
    names = []
    for i, tmp in enumerate(written):
        final = folder / f"{split}-{i:05d}-of-{len(written):05d}.parquet"
        os.replace(tmp, final)
        names.append(final.relative_to(folder.parent).as_posix())
    download = sum((folder.parent / n).stat().st_size for n in names)
    return names, {"num_examples": examples, "num_bytes": nbytes, "download_size": download}


def _image_value(record: dict, root: Path, images: str) -> dict | None:
    if images == "none":
        return None
    source = source_image(record, root)
    if images == "link":
        return {"bytes": None, "path": str(source.absolute())}
    return {"bytes": source.read_bytes(), "path": file_name(record)}


def _png(mask: np.ndarray) -> bytes:
    """``(H, W)`` {0,1} -> 8-bit grayscale PNG with 0/255 (what MVTec's own masks hold)."""
    import cv2

    ok, data = cv2.imencode(".png", mask * np.uint8(255))
    if not ok:  # pragma: no cover - OpenCV fails only on empty arrays
        raise DatasetError("could not encode a target mask as PNG")
    return data.tobytes()


def _bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]
