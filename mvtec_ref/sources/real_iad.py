"""Real-IAD source adapter (Tencent, Wang et al., CVPR 2024).

Layout (Tencent/AnomalyDetection_Real-IAD README, anomalib ``realiad.py``, third-party loaders;
see ``shared/reference/datasets-and-formats.md`` section 2.4)::

    ROOT/realiad_jsons/CATEGORY.json   (also realiad_jsons/realiad_jsons/, realiad_jsons_sv/)
        {"meta": {"prefix": str, "normal_class": "OK", "pre_transform": bool},
         "train": [{"category", "anomaly_class", "image_path", "mask_path"}, ...], "test": [...]}
    ROOT/realiad_1024/CATEGORY/OK/S0001/<cat>_0001_OK_C1_<time>.jpg          (or realiad_512/256/raw)
    ROOT/realiad_1024/CATEGORY/NG/HS/S0010/<cat>_0010_NG_HS_C1_<time>.{jpg,png}

``image_path``/``mask_path`` are relative to the category folder of one resolution; the
first of ``realiad_1024``, ``realiad_512``, ``realiad_256``, ``realiad_raw`` that holds the
category is used. ``mask_path`` is trusted as given (anomalib's docstring and the real file
names disagree on ``_mask``). Defect codes become defect types (AK pit, BX deformation,
CH abrasion, HS scratch, PS damage, QS missing parts, YW foreign objects, ZW contamination);
the code and the camera view (C1..C5) are kept in ``source_attributes``. Mask values are not
documented, so every non-zero pixel is defect. Real-IAD is CC BY-NC-SA 4.0 (access on request).
Cite Wang et al., "Real-IAD: A Real-World Multi-View Dataset for Benchmarking Versatile
Industrial Anomaly Detection", CVPR 2024.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from mvtec_ref.errors import CorruptImageError, MissingMaskError, SourceLayoutError
from mvtec_ref.sources.base import GOOD, ScanResult, SourceImage, check_root, pick_categories

CODES = {
    "AK": "pit",
    "BX": "deformation",
    "CH": "abrasion",
    "HS": "scratch",
    "PS": "damage",
    "QS": "missing_parts",
    "YW": "foreign_objects",
    "ZW": "contamination",
}
JSON_DIRS = (
    "realiad_jsons/realiad_jsons",
    "realiad_jsons",
    "realiad_jsons_sv/realiad_jsons_sv",
    "realiad_jsons_sv",
)
IMAGE_DIRS = ("realiad_1024", "realiad_512", "realiad_256", "realiad_raw")
_VIEW = re.compile(r"_(C\d)_")


def scan_real_iad(root: Path, categories: Iterable[str] | None = None) -> ScanResult:
    root = check_root(root, "Real-IAD")
    json_dir = next(
        (root / d for d in JSON_DIRS if (root / d).is_dir() and any((root / d).glob("*.json"))), None
    )
    if json_dir is None:
        raise SourceLayoutError(
            f"{root}: no Real-IAD JSON lists (expected {' or '.join(JSON_DIRS)}/CATEGORY.json)"
        )
    present = sorted(p.stem for p in json_dir.glob("*.json"))
    wanted = pick_categories(root, present, categories, f"{json_dir.name}/CATEGORY.json")
    result = ScanResult()
    for category in wanted:
        _scan_list(root, json_dir / f"{category}.json", category, result)
    return result.finish()


def _scan_list(root: Path, path: Path, category: str, result: ScanResult) -> None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise SourceLayoutError(f"{path}: malformed JSON at line {error.lineno}: {error.msg}") from None
    except ValueError as error:  # not UTF-8
        raise SourceLayoutError(f"{path}: not a JSON text ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("meta"), dict):
        raise SourceLayoutError(f"{path}: expected {{'meta': {{...}}, 'train': [...], 'test': [...]}}")
    normal = data["meta"].get("normal_class", "OK")
    base = next((root / d / category for d in IMAGE_DIRS if (root / d / category).is_dir()), None)
    if base is None:
        raise SourceLayoutError(
            f"{root}: no image folder for {category} (expected one of "
            f"{', '.join(d + '/' + category for d in IMAGE_DIRS)})"
        )
    prefix = base.relative_to(root).as_posix()
    for split in ("train", "test"):
        entries = data.get(split, [])
        if not isinstance(entries, list):
            raise SourceLayoutError(f"{path}: '{split}' is not a list")
        for n, entry in enumerate(entries):
            where = f"{path.name} {split}[{n}]"
            try:
                code, image, mask = entry["anomaly_class"], entry["image_path"], entry.get("mask_path")
            except (KeyError, TypeError):
                raise SourceLayoutError(f"{path}: {split}[{n}] needs anomaly_class and image_path") from None
            image_rel = f"{prefix}/{image}"
            if not (root / image_rel).is_file():
                result.problems.append(CorruptImageError(image_rel, f"listed in {where} but missing"))
                continue
            view = _VIEW.search(Path(image).name)
            attributes = [("view", view.group(1))] if view else []
            if code == normal:
                result.images.append(
                    SourceImage(category, GOOD, image_rel, None, split, attributes=tuple(attributes))
                )
                continue
            if not mask or not (root / prefix / mask).is_file():
                result.problems.append(
                    MissingMaskError(
                        image_rel, f"defect image has no mask ({where}: {mask or 'no mask_path'})"
                    )
                )
                continue
            defect = CODES.get(code, str(code).lower())
            result.images.append(
                SourceImage(
                    category,
                    defect,
                    image_rel,
                    f"{prefix}/{mask}",
                    split,
                    mask_values="ids",
                    attributes=(("code", str(code)), *attributes),
                )
            )
