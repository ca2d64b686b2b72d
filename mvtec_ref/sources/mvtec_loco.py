"""MVTec LOCO AD source adapter (logical and structural anomalies).

Layout (anomalib ``mvtec_loco.py``, dataset-ninja's converter, and the real juice_bottle files in
``shared/data/mvtec_loco_sample``; see ``shared/reference/datasets-and-formats.md`` section 2.2)::

    ROOT/CATEGORY/train/good/NNN.png
    ROOT/CATEGORY/validation/good/NNN.png
    ROOT/CATEGORY/test/{good,logical_anomalies,structural_anomalies}/NNN.png
    ROOT/CATEGORY/ground_truth/{logical,structural}_anomalies/NNN/000.png [001.png ...]
    ROOT/CATEGORY/defects_config.json    [{defect_name, pixel_value, saturation_threshold,
                                           relative_saturation}, ...]

An image has a *folder* of masks named after its stem, one file per defect; each file's
pixels carry that defect's ``pixel_value`` (not always 255). The mask is their union; the
values name the defect through ``defects_config.json`` (the record's defect type; "combined"
when several), each region keeps its defect name (``source_class``), and logical vs structural
is kept as ``source_attributes.anomaly_kind``. Without a readable config the folder name is the
defect type. MVTec LOCO AD is CC BY-NC-SA 4.0, (c) 2022 MVTec Software GmbH. Cite Bergmann et
al., "Beyond Dents and Scratches: Logical Constraints in Unsupervised Anomaly Detection and
Localization", IJCV 130(4):947-969, 2022.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from mvtec_ref.errors import MissingMaskError, OrphanMaskError, SourceLayoutError, StrayFileError
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

CATEGORIES = ("breakfast_box", "juice_bottle", "pushpins", "screw_bag", "splicing_connectors")
ANOMALY_FOLDERS = {"logical_anomalies": "logical", "structural_anomalies": "structural"}
SPLITS = (("train", "train"), ("validation", "validation"), ("test", "test"))


def scan_mvtec_loco(root: Path, categories: Iterable[str] | None = None) -> ScanResult:
    root = check_root(root, "MVTec LOCO AD")
    present = [d.name for d in dirs(root) if (d / "test").is_dir() or (d / "train").is_dir()]
    wanted = pick_categories(root, present, categories, "CATEGORY/test/logical_anomalies/NNN.png")
    result = ScanResult()
    for category in wanted:
        _scan_category(root, category, result)
    return result.finish()


def defect_values(path: Path) -> tuple[tuple[int, str], ...]:
    """(pixel_value, defect_name) pairs of a ``defects_config.json``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        pairs = tuple(sorted((int(d["pixel_value"]), str(d["defect_name"])) for d in data))
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise SourceLayoutError(
            f"{path}: not a list of {{defect_name, pixel_value}} entries ({error})"
        ) from None
    values = [v for v, _ in pairs]
    if len(set(values)) != len(values) or not all(0 < v < 256 for v in values):
        raise SourceLayoutError(f"{path}: pixel values must be distinct and in 1..255")
    return pairs


def _scan_category(root: Path, category: str, result: ScanResult) -> None:
    cat = root / category
    config = cat / "defects_config.json"
    names = defect_values(config) if config.is_file() else ()
    start = len(result.images)
    for split, source_split in SPLITS:
        if not (cat / split).is_dir():
            continue
        for folder in dirs(cat / split):
            anomaly = folder.name != GOOD
            if anomaly and (split != "test" or folder.name not in ANOMALY_FOLDERS):
                result.problems.append(StrayFileError(rel(root, folder), "not a MVTec LOCO folder; ignored"))
                continue
            for stem, path in files(root, folder, (".png",), result):
                if not anomaly:
                    result.images.append(SourceImage(category, GOOD, rel(root, path), None, source_split))
                    continue
                masks = _masks(root, cat / "ground_truth" / folder.name / stem, result)
                if not masks:
                    result.problems.append(
                        MissingMaskError(
                            rel(root, path),
                            "anomaly has no mask (expected "
                            f"{category}/ground_truth/{folder.name}/{stem}/000.png)",
                        )
                    )
                    continue
                result.images.append(
                    SourceImage(
                        category,
                        folder.name,
                        rel(root, path),
                        masks[0],
                        source_split,
                        extra_masks=tuple(masks[1:]),
                        mask_values="ids",
                        value_names=names,
                        attributes=(("anomaly_kind", ANOMALY_FOLDERS[folder.name]),),
                    )
                )
    _check_orphans(root, cat, result)
    if len(names) > 1:
        _check_binarized(root, category, config, names, result, start)


def _check_binarized(root: Path, category: str, config: Path, names, result: ScanResult, start: int) -> None:
    """When every mask of the category carries the same single value (masks binarized, as in
    copies that store LOCO's masks as 0/255), the values cannot name the defect: say so, and let
    the folder (logical / structural anomalies) name the type instead of the value's defect."""
    from dataclasses import replace

    from mvtec_ref.errors import BinarizedMasksError

    anomalies = [i for i in range(start, len(result.images)) if result.images[i].mask_path is not None]
    masks = [p for i in anomalies for p in (result.images[i].mask_path, *result.images[i].extra_masks)]
    if len(masks) < 2:
        return
    seen: set[int] = set()
    for path in masks:
        seen |= _mask_values(root / path)
        if len(seen) > 1:
            return  # the values differ: they name defects
    if len(seen) != 1:
        return
    (value,) = seen
    name = dict(names).get(value, "no defect")
    result.problems.append(
        BinarizedMasksError(
            rel(root, config),
            f"all {len(masks)} masks of {category} carry the single value {value} ({name!r} in "
            "defects_config.json): they look binarized, so pixel values cannot name the defects; "
            "defect types are taken from the folder names (logical_anomalies / structural_anomalies)",
        )
    )
    for i in anomalies:
        result.images[i] = replace(result.images[i], value_names=())


def _mask_values(path: Path) -> set[int]:
    """The nonzero values of one mask file (empty when unreadable: the build reports that file)."""
    import cv2
    import numpy as np

    values = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if values is None:
        return set()
    if values.ndim == 3:
        values = values.max(axis=2)
    return {int(v) for v in np.unique(values) if v}


def _masks(root: Path, folder: Path, result: ScanResult) -> list[str]:
    if not folder.is_dir():
        return []
    return [rel(root, p) for _, p in files(root, folder, (".png",), result)]


def _check_orphans(root: Path, cat: Path, result: ScanResult) -> None:
    gt = cat / "ground_truth"
    if not gt.is_dir():
        return
    for kind in dirs(gt):
        for folder in dirs(kind):
            if not (cat / "test" / kind.name / f"{folder.name}.png").is_file():
                result.problems.append(
                    OrphanMaskError(
                        rel(root, folder),
                        f"mask folder has no image (expected test/{kind.name}/{folder.name}.png); ignored",
                    )
                )
