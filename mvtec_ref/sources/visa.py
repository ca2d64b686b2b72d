"""VisA source adapter (Visual Anomaly dataset, Amazon; Zou et al., ECCV 2022, "SPot-the-Difference").

Two layouts are read (facts from amazon-science/spot-diff's README and ``split_csv/1cls.csv``,
see ``shared/reference/datasets-and-formats.md`` section 2.1)::

    ROOT/split_csv/1cls.csv                 header object,split,label,image,mask; split train|test,
                                            label normal|anomaly, paths relative to ROOT, mask empty
                                            for normal rows
    ROOT/OBJECT/Data/Images/Normal/NNNN.JPG
    ROOT/OBJECT/Data/Images/Anomaly/NNN.JPG
    ROOT/OBJECT/Data/Masks/Anomaly/NNN.png  same stem as its image; pixel value = defect class id
    ROOT/OBJECT/image_anno.csv              optional: image,label,mask; label = defect name(s)

With ``1cls.csv`` its splits are kept (every anomaly is in test); without it every image is a
test image and the benchmark splits stratify them. Masks hold class ids (1, 2, ...), not 255:
every non-zero pixel is defect, and the ids name the defects through spot-diff's
``utils/id2class.py`` (``CLASS_NAMES``): the image's defect type is its mask's class name
("combined" when it holds several) and each region keeps its own (``source_class``). A
mask whose values name nothing (binarized to 255) leaves the type from ``image_anno.csv``
when present (several names -> "combined"), else "anomaly". VisA is CC BY 4.0 (the dataset's
LICENSE-DATASET). Cite Zou et al., "SPot-the-Difference Self-supervised Pre-training for
Anomaly Detection and Segmentation", ECCV 2022.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from mvtec_ref.errors import CorruptImageError, MissingMaskError, SourceLayoutError
from mvtec_ref.sources.base import (
    GOOD,
    ScanResult,
    SourceImage,
    check_root,
    dirs,
    files,
    pick_categories,
    rel,
)

SPLIT_CSV = "split_csv/1cls.csv"
HEADER = ["object", "split", "label", "image", "mask"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
UNNAMED = "anomaly"
# spot-diff utils/id2class.py (amazon-science/spot-diff @ 2a692ab): mask pixel value -> defect class,
# lower-cased with underscores (its own spelling kept: "foreign_particals_on_candle").
_ID2CLASS = {
    "candle": ("chunk_of_wax_missing", "damaged_corner_of_packaging", "weird_candle_wick",
               "different_colour_spot", "extra_wax_in_candle", "foreign_particals_on_candle",
               "wax_melded_out_of_the_candle", "other"),
    "capsules": ("bubble", "discolor", "scratch", "leak", "misshape"),
    "fryum": ("burnt", "corner_or_edge_breakage", "different_colour_spot", "fryum_stuck_together",
              "middle_breakage", "similar_colour_spot", "small_scratches", "other"),
    "cashew": ("burnt", "corner_or_edge_breakage", "different_colour_spot", "middle_breakage",
               "small_holes", "small_scratches", "stuck_together", "same_colour_spot", "other"),
    "chewinggum": ("chunk_of_gum_missing", "corner_missing", "scratches", "similar_colour_spot",
                   "small_cracks", "other"),
    "macaroni1": ("chip_around_edge_and_corner", "different_colour_spot", "middle_breakage",
                  "similar_colour_spot", "small_cracks", "small_scratches", "other"),
    "macaroni2": ("breakage_down_the_middle", "color_spot_similar_to_the_object", "different_color_spot",
                  "small_chip_around_edge", "small_cracks", "small_scratches", "other"),
    "pcb1": ("bent", "melt", "scratch", "missing"),
    "pcb2": ("bent", "melt", "scratch", "missing"),
    "pcb3": ("bent", "melt", "scratch", "missing"),
    "pcb4": ("burnt", "scratch", "missing", "damage", "extra", "wrong_place", "dirt"),
    "pipe_fryum": ("burnt", "corner_and_edge_breakage", "different_colour_spot", "middle_breakage",
                   "similar_colour_spot", "small_scratches", "stuck_together", "small_cracks", "other"),
}  # fmt: skip
CLASS_NAMES = {c: tuple(enumerate(names, start=1)) for c, names in _ID2CLASS.items()}


def scan_visa(root: Path, categories: Iterable[str] | None = None) -> ScanResult:
    root = check_root(root, "VisA")
    result = ScanResult()
    if (root / SPLIT_CSV).is_file():
        rows = _read_split_csv(root)
        present = sorted({r["object"] for r in rows})
        wanted = pick_categories(root, present, categories, f"rows in {SPLIT_CSV}")
        names = {c: _defect_names(root, c) for c in wanted}
        for n, row in rows_of(rows, wanted):
            _add_row(root, n, row, names[row["object"]], result)
    else:
        present = [d.name for d in dirs(root) if (d / "Data" / "Images").is_dir()]
        wanted = pick_categories(
            root, present, categories, "OBJECT/Data/Images/{Normal,Anomaly} or " + SPLIT_CSV
        )
        for category in wanted:
            _scan_raw(root, category, _defect_names(root, category), result)
    return result.finish()


def rows_of(rows: list[dict], wanted: list[str]):
    return [(n, r) for n, r in enumerate(rows, start=2) if r["object"] in wanted]


def _read_split_csv(root: Path) -> list[dict]:
    path = root / SPLIT_CSV
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != HEADER:
            raise SourceLayoutError(f"{path}: header is {header}, expected {','.join(HEADER)}")
        rows = []
        for n, cells in enumerate(reader, start=2):
            if len(cells) != len(HEADER):
                raise SourceLayoutError(f"{path}: line {n} has {len(cells)} columns, expected {len(HEADER)}")
            row = dict(zip(HEADER, cells, strict=True))
            if row["split"] not in ("train", "test") or row["label"] not in ("normal", "anomaly"):
                raise SourceLayoutError(
                    f"{path}: line {n}: split {row['split']!r} / label {row['label']!r} "
                    "not in train|test / normal|anomaly"
                )
            rows.append(row)
    return rows


def _add_row(root: Path, line: int, row: dict, names: dict[str, str], result: ScanResult) -> None:
    image = row["image"]
    if not (root / image).is_file():
        result.problems.append(CorruptImageError(image, f"listed in {SPLIT_CSV} line {line} but missing"))
        return
    anomaly = row["label"] == "anomaly"
    mask = row["mask"] or None
    if anomaly and (mask is None or not (root / mask).is_file()):
        result.problems.append(
            MissingMaskError(
                image, f"anomaly has no mask ({SPLIT_CSV} line {line}: {mask or 'empty mask column'})"
            )
        )
        return
    result.images.append(_image(row["object"], image, mask if anomaly else None, row["split"], names))


def _scan_raw(root: Path, category: str, names: dict[str, str], result: ScanResult) -> None:
    images = root / category / "Data" / "Images"
    masks = root / category / "Data" / "Masks" / "Anomaly"
    for folder, anomaly in (("Normal", False), ("Anomaly", True)):
        if not (images / folder).is_dir():
            continue
        for stem, path in files(root, images / folder, IMAGE_SUFFIXES, result):
            mask = masks / f"{stem}.png"
            if anomaly and not mask.is_file():
                result.problems.append(
                    MissingMaskError(rel(root, path), f"anomaly has no mask (expected {rel(root, mask)})")
                )
                continue
            result.images.append(
                _image(category, rel(root, path), rel(root, mask) if anomaly else None, "test", names)
            )


def _image(category: str, image: str, mask: str | None, split: str, names: dict[str, str]) -> SourceImage:
    defect = GOOD if mask is None else names.get(Path(image).name, UNNAMED)
    return SourceImage(
        category,
        defect,
        image,
        mask,
        split,
        "object",
        mask_values="ids",
        value_names=CLASS_NAMES.get(category, ()),
    )


def _defect_names(root: Path, category: str) -> dict[str, str]:
    """Image file name -> defect type, from OBJECT/image_anno.csv (columns image,label,mask)."""
    path = root / category / "image_anno.csv"
    if not path.is_file():
        return {}
    out = {}
    with path.open(newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            if "image" not in row or "label" not in row:
                raise SourceLayoutError(f"{path}: line {n}: needs the columns image and label")
            labels = [
                x.strip().lower().replace(" ", "_") for x in (row["label"] or "").split(",") if x.strip()
            ]
            labels = [x for x in labels if x != "normal"]
            if labels:
                out[Path(row["image"]).name] = labels[0] if len(set(labels)) == 1 else "combined"
    return out
