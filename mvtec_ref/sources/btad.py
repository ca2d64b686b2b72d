"""BTAD source adapter (beanTech Anomaly Detection; Mishra et al., ISIE 2021).

Layout (anomalib ``btech.py``, dataset-ninja's BTAD converter; see
``shared/reference/datasets-and-formats.md`` section 2.5)::

    ROOT/NN/train/ok/NNNN.{bmp|png}
    ROOT/NN/test/ok/NNNN.{bmp|png}
    ROOT/NN/test/ko/NNNN.{bmp|png}
    ROOT/NN/ground_truth/ko/NNNN.{png|bmp}   same stem, no "_mask"; defect = 255

Products 01 and 03 ship ``.bmp`` images, 02 ``.png``; masks are ``.png`` or ``.bmp``, so both
are accepted for either. BTAD names no defect types: defective images are type "defect".
Licence: the dataset's own README says CC BY-SA (anomalib says CC BY-NC-SA 4.0). Cite Mishra et
al., "VT-ADL: A Vision Transformer Network for Image Anomaly Detection and Localization",
ISIE 2021.
"""

from __future__ import annotations

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

SUFFIXES = (".bmp", ".png")
DEFECT = "defect"


def scan_btad(root: Path, categories: Iterable[str] | None = None) -> ScanResult:
    root = check_root(root, "BTAD")
    present = [d.name for d in dirs(root) if (d / "test").is_dir() or (d / "train").is_dir()]
    wanted = pick_categories(root, present, categories, "NN/test/ko/NNNN.bmp")
    result = ScanResult()
    for category in wanted:
        cat = root / category
        gt = cat / "ground_truth" / "ko"
        masks = {stem: path for stem, path in files(root, gt, SUFFIXES, result)} if gt.is_dir() else {}
        used = set()
        for split, folder in (("train", "ok"), ("test", "ok"), ("test", "ko")):
            if not (cat / split / folder).is_dir():
                continue
            for stem, path in files(root, cat / split / folder, SUFFIXES, result):
                if folder == "ok":
                    result.images.append(SourceImage(category, GOOD, rel(root, path), None, split))
                elif stem in masks:
                    used.add(stem)
                    result.images.append(
                        SourceImage(category, DEFECT, rel(root, path), rel(root, masks[stem]), split)
                    )
                else:
                    result.problems.append(
                        MissingMaskError(
                            rel(root, path),
                            "defect image has no mask (expected "
                            f"{category}/ground_truth/ko/{stem}.png or .bmp)",
                        )
                    )
        for stem in sorted(set(masks) - used):
            result.problems.append(
                OrphanMaskError(rel(root, masks[stem]), "mask has no test/ko image; ignored")
            )
    return result.finish()
