"""MVTec AD 2 source adapter.

Layout (anomalib ``mvtecad2.py`` ``make_mvtec2_dataset`` and its dummy-data generator; see
``shared/reference/datasets-and-formats.md`` section 2.3)::

    ROOT/CATEGORY/train/good/*.png
    ROOT/CATEGORY/validation/good/*.png
    ROOT/CATEGORY/test_public/good/*.png
    ROOT/CATEGORY/test_public/bad/NNN_<variant>.png
    ROOT/CATEGORY/test_public/ground_truth/bad/NNN_<variant>_mask.png   stem + "_mask"
    ROOT/CATEGORY/test_private/, test_private_mixed/                    no labels: not used

File stems end in a lighting variant (``regular``, ``overexposed``, ``underexposed``,
``shift_1``..``shift_3``), kept as ``source_attributes.lighting``; the variants are not
confirmed on real files, so an unknown suffix is kept as "unknown" rather than refused. The
public test set names no defect types: defective images are type "defect". Masks are read as
0/255 (values > threshold are defect, others reported). MVTec AD 2 is CC BY-NC-SA 4.0, (c) MVTec
Software GmbH. Cite Heckler-Kram et al., "The MVTec AD 2 Dataset: Advanced Scenarios for
Unsupervised Anomaly Detection", arXiv:2503.21622, 2025.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from mvtec_ref.errors import MissingMaskError, OrphanMaskError
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

CATEGORIES = ("can", "fabric", "fruit_jelly", "rice", "sheet_metal", "vial", "wallplugs", "walnuts")
DEFECT = "defect"
MASK_SUFFIX = "_mask"
_VARIANT = re.compile(r"_(regular|overexposed|underexposed|shift_\d)$")
TEXTURES = {"fabric", "rice", "walnuts", "sheet_metal"}


def lighting(stem: str) -> str:
    found = _VARIANT.search(stem)
    return found.group(1) if found else "unknown"


def scan_mvtec_ad2(root: Path, categories: Iterable[str] | None = None) -> ScanResult:
    root = check_root(root, "MVTec AD 2")
    present = [d.name for d in dirs(root) if (d / "test_public").is_dir() or (d / "train").is_dir()]
    wanted = pick_categories(root, present, categories, "CATEGORY/test_public/bad/NNN_regular.png")
    result = ScanResult()
    for category in wanted:
        cat = root / category
        kind = "texture" if category in TEXTURES else "object"
        for split, folder in (
            ("train", "train/good"),
            ("validation", "validation/good"),
            ("test", "test_public/good"),
        ):
            if (cat / folder).is_dir():
                for stem, path in files(root, cat / folder, (".png",), result):
                    result.images.append(
                        SourceImage(
                            category,
                            GOOD,
                            rel(root, path),
                            None,
                            split,
                            kind,
                            attributes=(("lighting", lighting(stem)),),
                        )
                    )
        bad, gt = cat / "test_public" / "bad", cat / "test_public" / "ground_truth" / "bad"
        stems = set()
        if bad.is_dir():
            for stem, path in files(root, bad, (".png",), result):
                stems.add(stem)
                mask = gt / f"{stem}{MASK_SUFFIX}.png"
                if not mask.is_file():
                    result.problems.append(
                        MissingMaskError(
                            rel(root, path), f"defect image has no mask (expected {rel(root, mask)})"
                        )
                    )
                    continue
                result.images.append(
                    SourceImage(
                        category,
                        DEFECT,
                        rel(root, path),
                        rel(root, mask),
                        "test",
                        kind,
                        attributes=(("lighting", lighting(stem)),),
                    )
                )
        if gt.is_dir():
            for stem, path in files(root, gt, (".png",), result):
                if not stem.endswith(MASK_SUFFIX) or stem[: -len(MASK_SUFFIX)] not in stems:
                    result.problems.append(OrphanMaskError(rel(root, path), "mask has no image; ignored"))
    return result.finish()
