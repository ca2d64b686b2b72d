"""MVTec AD source adapter: list images and masks from the official layout (no pixels read).

Layout (MVTec AD readme; counts checked against the full release, see
``shared/reference/datasets-and-formats.md`` section 1)::

    ROOT/CATEGORY/train/good/NNN.png
    ROOT/CATEGORY/test/good/NNN.png                 no mask file
    ROOT/CATEGORY/test/DEFECT/NNN.png
    ROOT/CATEGORY/ground_truth/DEFECT/NNN_mask.png  same size as the image, values {0, 255}

MVTec AD is CC BY-NC-SA 4.0, (c) 2019 MVTec Software GmbH. Cite Bergmann et al., CVPR 2019,
and IJCV 129(4):1038-1059, 2021.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mvtec_ref.errors import (
    MissingMaskError,
    OrphanMaskError,
    SourceLayoutError,
    StrayFileError,
    UnreadablePathError,
)
from mvtec_ref.sources.base import GOOD, KNOWN_STRAYS, ScanResult, SourceImage, entries
from mvtec_ref.sources.base import dirs as _dirs
from mvtec_ref.sources.base import rel as _rel

IMAGE_SUFFIXES = (".png", ".PNG")
MASK_SUFFIX = "_mask"


@dataclass(frozen=True)
class CategorySpec:
    """Facts about one MVTec AD category in the full release."""

    name: str
    kind: str  # "object" or "texture"
    size: int  # images are size x size
    grayscale: bool
    train_good: int
    test_good: int
    defects: tuple[tuple[str, int], ...]  # (defect_type, number of test images)


# From the full release (reference section 1.3): 3,629 train / 467 good test / 1,258 defective.
MVTEC_AD: tuple[CategorySpec, ...] = (
    CategorySpec(
        "bottle",
        "object",
        900,
        False,
        209,
        20,
        (("broken_large", 20), ("broken_small", 22), ("contamination", 21)),
    ),
    CategorySpec(
        "cable",
        "object",
        1024,
        False,
        224,
        58,
        (
            ("bent_wire", 13),
            ("cable_swap", 12),
            ("combined", 11),
            ("cut_inner_insulation", 14),
            ("cut_outer_insulation", 10),
            ("missing_cable", 12),
            ("missing_wire", 10),
            ("poke_insulation", 10),
        ),
    ),
    CategorySpec(
        "capsule",
        "object",
        1000,
        False,
        219,
        23,
        (("crack", 23), ("faulty_imprint", 22), ("poke", 21), ("scratch", 23), ("squeeze", 20)),
    ),
    CategorySpec(
        "carpet",
        "texture",
        1024,
        False,
        280,
        28,
        (("color", 19), ("cut", 17), ("hole", 17), ("metal_contamination", 17), ("thread", 19)),
    ),
    CategorySpec(
        "grid",
        "texture",
        1024,
        True,
        264,
        21,
        (("bent", 12), ("broken", 12), ("glue", 11), ("metal_contamination", 11), ("thread", 11)),
    ),
    CategorySpec(
        "hazelnut", "object", 1024, False, 391, 40, (("crack", 18), ("cut", 17), ("hole", 18), ("print", 17))
    ),
    CategorySpec(
        "leather",
        "texture",
        1024,
        False,
        245,
        32,
        (("color", 19), ("cut", 19), ("fold", 17), ("glue", 19), ("poke", 18)),
    ),
    CategorySpec(
        "metal_nut",
        "object",
        700,
        False,
        220,
        22,
        (("bent", 25), ("color", 22), ("flip", 23), ("scratch", 23)),
    ),
    CategorySpec(
        "pill",
        "object",
        800,
        False,
        267,
        26,
        (
            ("color", 25),
            ("combined", 17),
            ("contamination", 21),
            ("crack", 26),
            ("faulty_imprint", 19),
            ("pill_type", 9),
            ("scratch", 24),
        ),
    ),
    CategorySpec(
        "screw",
        "object",
        1024,
        True,
        320,
        41,
        (
            ("manipulated_front", 24),
            ("scratch_head", 24),
            ("scratch_neck", 25),
            ("thread_side", 23),
            ("thread_top", 23),
        ),
    ),
    CategorySpec(
        "tile",
        "texture",
        840,
        False,
        230,
        33,
        (("crack", 17), ("glue_strip", 18), ("gray_stroke", 16), ("oil", 18), ("rough", 15)),
    ),
    CategorySpec("toothbrush", "object", 1024, False, 60, 12, (("defective", 30),)),
    CategorySpec(
        "transistor",
        "object",
        1024,
        False,
        213,
        60,
        (("bent_lead", 10), ("cut_lead", 10), ("damaged_case", 10), ("misplaced", 10)),
    ),
    CategorySpec(
        "wood",
        "texture",
        1024,
        False,
        247,
        19,
        (("color", 8), ("combined", 11), ("hole", 10), ("liquid", 10), ("scratch", 21)),
    ),
    CategorySpec(
        "zipper",
        "object",
        1024,
        True,
        240,
        32,
        (
            ("broken_teeth", 19),
            ("combined", 16),
            ("fabric_border", 17),
            ("fabric_interior", 16),
            ("rough", 17),
            ("split_teeth", 18),
            ("squeezed_teeth", 16),
        ),
    ),
)

CATEGORIES = {spec.name: spec for spec in MVTEC_AD}


def scan_mvtec_ad(root: Path, categories: Iterable[str] | None = None) -> ScanResult:
    """List every image of an MVTec AD tree (optionally only some categories).

    Returns a ScanResult sorted by image path. Structural problems (a defect image with
    no mask, a mask with no image, stray files) are collected, not raised; a root that
    is not MVTec-like raises SourceLayoutError.
    """
    root = Path(root)
    if not root.is_dir():
        raise SourceLayoutError(f"{root}: source root does not exist or is not a folder")
    present = sorted(d.name for d in _dirs(root) if (d / "test").is_dir() or (d / "train").is_dir())
    if not present:
        if (root / "test").is_dir() or (root / "ground_truth").is_dir():
            raise SourceLayoutError(
                f"{root}: looks like a single category folder; pass its parent as --root "
                f"and select it with --category {root.name}"
            )
        raise SourceLayoutError(
            f"{root}: no MVTec AD category folders found (expected CATEGORY/train/good/*.png "
            "and CATEGORY/test/DEFECT/*.png under the root)"
        )
    wanted = list(dict.fromkeys(categories)) if categories else present
    missing = [c for c in wanted if c not in present]
    if missing:
        raise SourceLayoutError(
            f"{root}: category {', '.join(missing)} not found; present: {', '.join(present)}"
        )

    result = ScanResult()
    for category in sorted(wanted):
        _scan_category(root, category, result)
    result.images.sort(key=lambda im: im.image_path)
    result.problems.sort(key=lambda p: p.path)
    return result


def _scan_category(root: Path, category: str, result: ScanResult) -> None:
    kind = CATEGORIES[category].kind if category in CATEGORIES else "object"
    cat_dir = root / category
    for split in ("train", "test"):
        split_dir = cat_dir / split
        if not split_dir.is_dir():
            continue
        _check_strays(root, split_dir, result, allow_files=False)
        for defect_dir in _dirs(split_dir):
            defect = defect_dir.name
            if split == "train" and defect != GOOD:
                result.problems.append(
                    StrayFileError(
                        _rel(root, defect_dir),
                        "train/ holds only good/ in MVTec AD; folder ignored",
                    )
                )
                continue
            for stem, path in _images(root, defect_dir, result):
                mask_rel = None
                if defect != GOOD:
                    mask = cat_dir / "ground_truth" / defect / f"{stem}{MASK_SUFFIX}.png"
                    found = _is_file(mask)
                    if found is None:
                        why = "cannot look up the mask (no permission on its folder); skipped"
                        result.problems.append(UnreadablePathError(_rel(root, mask), why))
                        continue
                    if not found:
                        result.problems.append(
                            MissingMaskError(
                                _rel(root, path),
                                f"defect image has no mask (expected {_rel(root, mask)})",
                            )
                        )
                        continue
                    mask_rel = _rel(root, mask)
                result.images.append(SourceImage(category, defect, _rel(root, path), mask_rel, split, kind))
    _check_orphan_masks(root, cat_dir, result)


def _is_file(path: Path) -> bool | None:
    """None when the answer is unknown (a folder on the way cannot be searched)."""
    try:
        return path.is_file()
    except OSError:
        return None


def _check_orphan_masks(root: Path, cat_dir: Path, result: ScanResult) -> None:
    gt_dir = cat_dir / "ground_truth"
    if not gt_dir.is_dir():
        return
    _check_strays(root, gt_dir, result, allow_files=False)
    for defect_dir in _dirs(gt_dir):
        for stem, path in _images(root, defect_dir, result):
            image_stem = stem[: -len(MASK_SUFFIX)] if stem.endswith(MASK_SUFFIX) else None
            test_dir = cat_dir / "test" / defect_dir.name
            found = [_is_file(test_dir / f"{image_stem}{suffix}") for suffix in IMAGE_SUFFIXES]
            if image_stem is not None and None in found:
                continue  # the image folder cannot be read; already recorded as a problem
            if image_stem is None or not any(found):
                result.problems.append(
                    OrphanMaskError(
                        _rel(root, path),
                        f"mask has no image (expected test/{defect_dir.name}/"
                        f"{image_stem or stem}.png); ignored",
                    )
                )


def _images(root: Path, folder: Path, result: ScanResult) -> list[tuple[str, Path]]:
    """(stem, path) of each PNG in ``folder``; anything else is recorded as a stray."""
    found = []
    for entry in entries(root, folder, result):
        path = Path(entry.path)
        if entry.is_file() and path.suffix in IMAGE_SUFFIXES and not entry.name.startswith("."):
            found.append((path.stem, path))
        else:
            result.problems.append(_stray(root, path))
    return sorted(found)


def _check_strays(root: Path, folder: Path, result: ScanResult, *, allow_files: bool) -> None:
    for entry in entries(root, folder, result):
        hidden_dir = entry.is_dir() and entry.name.startswith(".")
        if hidden_dir or (entry.is_file() and not allow_files):
            result.problems.append(_stray(root, Path(entry.path)))


def _stray(root: Path, path: Path) -> StrayFileError:
    what = "known system file" if path.name in KNOWN_STRAYS else "not a PNG image"
    return StrayFileError(_rel(root, path), f"stray file ({what}); ignored")
