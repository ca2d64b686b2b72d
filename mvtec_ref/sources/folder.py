"""Folder source adapter: any tree of images and masks, described in a few lines.

Layout (ours; defaults in brackets)::

    ROOT/mvtec-ref.yaml   (or mvtec-ref.json; checked against schemas/folder.schema.json)
    ROOT/images/CATEGORY/TYPE/NAME.{png,jpg,jpeg,bmp,tif,tiff}     TYPE "good" = defect-free
    ROOT/masks/CATEGORY/TYPE/NAME[mask_suffix].png                   one per defective image

The description lists the categories (noun for the sentences, object or texture) and, per
defect type folder, a singular and plural phrase; a type without one gets a phrase made from
its folder name and is listed in the build report. Example::

    name: brackets
    mask_suffix: _mask
    categories:
      bracket:
        noun: metal bracket
        defects:
          scratch: [scratch, scratches]
          dent: [dent, dents]

Every image is a test image: the benchmark splits stratify them, except those in a
``CATEGORY/TYPE`` folder under ``train`` when the images folder has ``train/`` and ``test/``
levels (``images/train/CATEGORY/good/...``), which stay in train.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from mvtec_ref.errors import MissingMaskError, OrphanMaskError, SourceLayoutError
from mvtec_ref.schema import schema_errors
from mvtec_ref.sources.base import ScanResult, SourceImage, check_root, dirs, files, pick_categories, rel

DESCRIPTIONS = ("mvtec-ref.yaml", "mvtec-ref.yml", "mvtec-ref.json")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def find_description(root: Path) -> Path:
    for name in DESCRIPTIONS:
        if (root / name).is_file():
            return root / name
    raise SourceLayoutError(
        f"{root}: no folder description; write {DESCRIPTIONS[0]} there (see `mvtec-ref build --help` and the "
        "section 'Other datasets' of docs/datasets.md): at least `categories: {CATEGORY: {}}`"
    )


def read_description(path: Path) -> dict:
    """The description as a dict, checked against ``schemas/folder.schema.json``."""
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except json.JSONDecodeError as error:
        raise SourceLayoutError(f"{path}: malformed JSON at line {error.lineno}: {error.msg}") from None
    except Exception as error:  # yaml.YAMLError carries the line in its message
        raise SourceLayoutError(f"{path}: malformed YAML: {error}".replace("\n", " ")) from None
    errors = schema_errors("folder", data if data is not None else {})
    if errors:
        raise SourceLayoutError(f"{path}: {errors[0]}")
    return data


def description_vocabulary(path: Path) -> dict:
    """The description's nouns and phrases in the vocabulary format (annotate/vocab/*.json)."""
    data = read_description(path)
    categories = {}
    for name, spec in data["categories"].items():
        defects = {d: {"phrases": [list(p)]} for d, p in (spec.get("defects") or {}).items() if p}
        categories[name] = {"noun": spec.get("noun", name.replace("_", " ")), "defects": defects}
    return {"source": data.get("name", path.parent.name), "categories": categories}


def scan_folder(root: Path, categories: Iterable[str] | None = None) -> ScanResult:
    root = check_root(root, "folder")
    description = find_description(root)
    spec = read_description(description)
    images = root / spec.get("images", "images")
    masks = root / spec.get("masks", "masks")
    if not images.is_dir():
        raise SourceLayoutError(f"{images}: the images folder named in {description.name} does not exist")
    levels = ("train", "test")
    split_levels = any((images / s).is_dir() for s in levels) and not set(levels) & set(spec["categories"])
    bases = (
        [(images / s, masks / s, s) for s in levels if (images / s).is_dir()]
        if split_levels
        else [(images, masks, "test")]
    )
    present = sorted({d.name for base, _, _ in bases for d in dirs(base)})
    unlisted = [c for c in present if c not in spec["categories"]]
    if unlisted:
        raise SourceLayoutError(
            f"{description}: categories {', '.join(unlisted)} are in {rel(root, images)}/ but not described"
        )
    wanted = pick_categories(root, present, categories, f"{rel(root, images)}/CATEGORY/TYPE/NAME.png")
    result = ScanResult(vocabulary=str(description.resolve()))
    good = spec.get("good", "good")
    suffix = spec.get("mask_suffix", "")
    suffixes = tuple(spec.get("image_suffixes", IMAGE_SUFFIXES))
    for image_base, mask_base, split in bases:
        for category in wanted:
            kind = spec["categories"][category].get("kind", "object")
            if not (image_base / category).is_dir():
                continue
            for type_dir in dirs(image_base / category):
                used = set()
                for stem, path in files(root, type_dir, suffixes, result):
                    if type_dir.name == good:
                        result.images.append(
                            SourceImage(category, "good", rel(root, path), None, split, kind)
                        )
                        continue
                    mask = mask_base / category / type_dir.name / f"{stem}{suffix}.png"
                    if not mask.is_file():
                        result.problems.append(
                            MissingMaskError(
                                rel(root, path), f"defect image has no mask (expected {rel(root, mask)})"
                            )
                        )
                        continue
                    used.add(mask.name)
                    result.images.append(
                        SourceImage(
                            category,
                            type_dir.name,
                            rel(root, path),
                            rel(root, mask),
                            split,
                            kind,
                            mask_values=spec.get("mask_values", "binary"),
                        )
                    )
                mask_dir = mask_base / category / type_dir.name
                if type_dir.name != good and mask_dir.is_dir():
                    for _, path in files(root, mask_dir, (".png",), result):
                        if path.name not in used:
                            result.problems.append(
                                OrphanMaskError(rel(root, path), "mask has no image; ignored")
                            )
    return result.finish()
