"""Exports of a dataset directory in formats that referring-segmentation code already reads.

- ``refcoco``: ``refcoco/refs(unc).p`` + ``refcoco/instances.json`` + ``images/mscoco/images/train2014/``,
  the layout of the ``refer`` toolkit (LAVT), with ``images/train2014`` a relative link to
  that folder (where CRIS's ``refer.py`` and ``folder2lmdb.py`` look). One annotation per
  target set (a multi-region target is merged into one); segmentation is a list holding
  one RLE, which ``refer.getMask`` decodes. No-target refs are left out (refer assumes a
  target) and counted in ``EXPORT.json``.
- ``grefcoco``: ``grefcoco/grefs(unc).json`` + ``grefcoco/instances.json`` + ``images/train2014/``,
  the layout of ReLA's ``G_REFER``: ``ann_id`` is a list of region annotations, ``[-1]``
  for no target; segmentations are COCO polygons traced along pixel corners
  (``export/polygons.py``), the only form ReLA's training path reads.

In both refer layouts the dataset's ``test`` split is written as ``testA`` by default
(``test_split``), the name refcoco/unc code registers (ReLA) or keeps (CRIS's
``data_process.py``); ``EXPORT.json`` records the mapping under ``split_names``.
- ``coco``: ``annotations/instances_<split>.json`` (COCO instance segmentation, RLE dicts)
  + ``images/``.
- ``jsonl``: ``refs.jsonl``, one line per (image, sentence) with the target mask as RLE.
- ``hf``: Parquet shards, a dataset card and ``croissant.json`` that Hugging Face
  ``datasets.load_dataset(FOLDER)`` reads as is (``export/hf.py``; needs ``mvtec-ref[hf]``).

Image files are linked (``images="link"``), copied, or left out; file names are the
sample ids with "/" replaced by "_" so that all images share one folder. The hf export
stores the images' absolute paths in its rows (``images="link"``), embeds their bytes
(``embed``) or leaves them out (``none``).
"""

from __future__ import annotations

from pathlib import Path

from mvtec_ref.dataset import Dataset, as_dataset
from mvtec_ref.errors import DatasetError
from mvtec_ref.export.common import file_name, place_images
from mvtec_ref.export.hf import IMAGE_MODES as HF_IMAGE_MODES
from mvtec_ref.fileio import dumps_json, staged_directory, write_text_atomic

FORMATS = ("refcoco", "grefcoco", "coco", "jsonl", "hf")
MARKER = "EXPORT.json"
IMAGE_DIRS = {"refcoco": "images/mscoco/images/train2014", "grefcoco": "images/train2014", "coco": "images"}
REFER_FORMATS = ("refcoco", "grefcoco")
TEST_SPLITS = ("testA", "testB", "test")
IMAGE_MODES = {"hf": HF_IMAGE_MODES}  # every other format: link, copy, none; link first: the default

__all__ = ["FORMATS", "export_dataset", "file_name"]


def export_dataset(
    dataset: Dataset | Path,
    fmt: str,
    out: Path,
    *,
    images: str | None = None,
    progress: bool | None = None,
    test_split: str = "testA",
    reviewed_only: bool = False,
) -> dict:
    """Write ``fmt`` for ``dataset`` into ``out`` (replaced atomically); returns the summary.

    ``test_split``: the name the ``test`` split gets in the refer layouts (``refcoco``,
    ``grefcoco``); the other formats keep the dataset's split names. ``reviewed_only``: only
    sentences a person accepted or wrote (a dataset built with --reviews). ``images``: how the
    images travel (``IMAGE_MODES``; None: ``link``).
    """
    if fmt not in FORMATS:
        raise DatasetError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    modes = IMAGE_MODES.get(fmt, ("link", "copy", "none"))
    images = images or modes[0]
    if images not in modes:
        raise DatasetError(
            f"--images {images} does not apply to the {fmt} export; use one of {', '.join(modes)}"
        )
    if fmt == "hf":
        _check_hf_installed()
    if test_split not in TEST_SPLITS:
        raise DatasetError(f"unknown test split name {test_split!r}; use one of {', '.join(TEST_SPLITS)}")
    dataset = as_dataset(dataset, progress=progress)
    manifest = dataset.manifest
    if reviewed_only and "review" not in manifest:
        raise DatasetError(f"{dataset.path}: no review applied; build it with --reviews FILE first")
    records = list(dataset)  # read and checked by as_dataset above
    if reviewed_only:
        from mvtec_ref.review.apply import reviewed_records

        records = reviewed_records(records)
        if not records:
            raise DatasetError(f"{dataset.path}: no sentence a person accepted or wrote; nothing to export")
    root = dataset.root
    names = {}
    if fmt in REFER_FORMATS:
        names = {"train": "train", "val": "val", "test": test_split}
        records = [{**r, "split": names[r["split"]]} for r in records]
    with staged_directory(out, marker=MARKER) as stage:
        if fmt == "hf":
            from mvtec_ref.export.hf import write_hf

            summary = write_hf(records, stage, manifest=manifest, root=root, images=images, progress=progress)
        else:
            summary = _writer(fmt)(records, stage)
        if fmt in IMAGE_DIRS and images != "none":
            place_images(records, root, stage / IMAGE_DIRS[fmt], images, progress)
        if fmt == "refcoco" and images != "none":  # CRIS reads images/train2014, refer/LAVT mscoco/
            (stage / "images/train2014").symlink_to("mscoco/images/train2014", target_is_directory=True)
        summary = {
            "format": fmt,
            "dataset": manifest["name"],
            "source_root": str(root),
            "fingerprint": manifest["source"]["fingerprint"],
            "images": images,
            **({"split_names": names} if names else {}),
            **({"reviewed_only": True} if reviewed_only else {}),
            **summary,
        }
        write_text_atomic(stage / MARKER, dumps_json(summary))
    return summary


def _check_hf_installed() -> None:
    import importlib.util

    missing = [m for m in ("datasets", "mlcroissant") if importlib.util.find_spec(m) is None]
    if missing:
        raise DatasetError(f"the hf export needs {' and '.join(missing)}: pip install 'mvtec-ref[hf]'")


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
