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

from pathlib import Path

from mvtec_ref.build import iter_samples, load_manifest
from mvtec_ref.errors import DatasetError
from mvtec_ref.export.common import file_name, place_images
from mvtec_ref.fileio import dumps_json, staged_directory, write_text_atomic

FORMATS = ("refcoco", "grefcoco", "coco", "jsonl")
MARKER = "EXPORT.json"
IMAGE_DIRS = {"refcoco": "images/mscoco/images/train2014", "grefcoco": "images/train2014", "coco": "images"}

__all__ = ["FORMATS", "export_dataset", "file_name"]


def export_dataset(
    dataset: Path,
    fmt: str,
    out: Path,
    *,
    images: str = "link",
    progress: bool | None = None,
    reviewed_only: bool = False,
) -> dict:
    """Write ``fmt`` for ``dataset`` into ``out`` (replaced atomically); returns the summary.

    ``reviewed_only``: only sentences a person accepted or wrote (a dataset built with --reviews).
    """
    if fmt not in FORMATS:
        raise DatasetError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    manifest = load_manifest(dataset)
    if reviewed_only and "review" not in manifest:
        raise DatasetError(f"{dataset}: no review applied; build it with --reviews FILE first")
    records = [r for _, r in iter_samples(dataset)]
    if reviewed_only:
        from mvtec_ref.review.apply import reviewed_records

        records = reviewed_records(records)
    root = Path(manifest["source"]["root"])
    with staged_directory(out, marker=MARKER) as stage:
        summary = _writer(fmt)(records, stage)
        if fmt in IMAGE_DIRS and images != "none":
            place_images(records, root, stage / IMAGE_DIRS[fmt], images, progress)
        summary = {
            "format": fmt,
            "dataset": manifest["name"],
            "source_root": str(root),
            "fingerprint": manifest["source"]["fingerprint"],
            "images": images,
            **({"reviewed_only": True} if reviewed_only else {}),
            **summary,
        }
        write_text_atomic(stage / MARKER, dumps_json(summary))
    return summary


def _writer(fmt: str):
    if fmt == "refcoco":
        from mvtec_ref.export.refcoco import write_refcoco as write
    elif fmt == "grefcoco":
        from mvtec_ref.export.grefcoco import write_grefcoco as write
    elif fmt == "coco":
        from mvtec_ref.export.coco import write_coco as write
    else:
        from mvtec_ref.export.jsonl import write_jsonl as write
    return write
