"""Contrast sets (``mvtec-ref probes``) and their scores (``mvtec-ref evaluate --probes``).

A probe is a sentence of the dataset with one claim edited (``annotate.contrast``), with the
regions the new sentence refers to. The file is JSON Lines: a header line, then one probe per
line in dataset order (``schemas/probes.schema.json``)::

    {"format": "mvtec-ref-probes", "split": "test", "samples_sha256": "...", "edits": {...}, ...}
    {"probe_id": "p5_1", "image_id": 1, "id": "cable/test/bent_wire/000", "ref_id": 3,
     "sent_id": 5, "source_text": "the bent wire on the left side of the cable",
     "source_region_ids": [0], "edit": "location", "change": "left -> right",
     "text": "the bent wire on the right side of the cable", "region_ids": []}

``probe_id`` is ``p<sent_id>_<k>``, the k-th probe of that sentence, so predictions for probes
(``p5_1.png``) and for the dataset's sentences (``5.png``) can share one folder or JSONL file
(``{"probe_id": "p5_1", "mask": RLE}`` and ``{"sent_id": 5, "mask": RLE}`` lines). The header
holds the SHA-256 of the samples.jsonl the probes were made from: scoring refuses probes of
another build. Only defect images get probes (on a good image every edit refers to nothing,
as the source did).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np

from mvtec_ref import __version__
from mvtec_ref.build import SAMPLES, iter_samples, load_manifest
from mvtec_ref.errors import DatasetError, OutputError
from mvtec_ref.wording import percent

FORMAT = "mvtec-ref-probes"
EDIT_KINDS = ("location", "type", "size", "extreme", "count", "attribute", "universal")


def default_path(dataset: Path, split: str) -> Path:
    """Beside the dataset folder, not inside it: a rebuild replaces only what it wrote itself."""
    dataset = Path(dataset).absolute()
    return dataset.parent / f"{dataset.name}.probes-{split}.jsonl"


def samples_sha256(dataset: Path) -> str:
    path = Path(dataset) / SAMPLES
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        raise DatasetError(f"{path}: not found; is {dataset} a dataset built by mvtec-ref build?") from None


def check_output(out: Path) -> None:
    """Refuse to replace anything but an earlier probes file (checked before any work)."""
    out = Path(out)
    if out.is_dir():
        raise OutputError(f"{out}: is a folder; give a file name such as probes-test.jsonl")
    if out.exists():
        try:
            with out.open(encoding="utf-8") as f:
                first = json.loads(f.readline())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            first = None
        if not isinstance(first, dict) or first.get("format") != FORMAT:
            raise OutputError(
                f"{out}: exists and is not a probes file written by mvtec-ref; refusing to replace it "
                "(choose another --out)"
            )


def build_probes(
    dataset: Path, *, split: str = "test", seed: int = 0, progress=None
) -> tuple[dict, list[dict]]:
    """(header, probes) for every sentence of the defect images of ``split`` ('all': every split)."""
    from annotate import load_vocabulary
    from annotate.contrast import CONTRAST_VERSION, JUDGES, Evidence, probes_for_sentence
    from mvtec_ref.progress import progress_bar

    manifest = load_manifest(dataset)
    vocab = load_vocabulary(manifest.get("config", {}).get("refs", {}).get("vocabulary", "mvtec_ad"))
    root = Path(manifest["source"]["root"])
    probes, images, sentences = [], 0, 0
    records = iter_samples(dataset)
    total = manifest["counts"]["images"]
    for _, record in progress_bar(records, desc="probes", unit="img", total=total, progress=progress):
        if (split != "all" and record["split"] != split) or not record["regions"]:
            continue
        images += 1
        evidence = Evidence(record, vocab, root)
        for ref in record["refs"]:
            for sentence in ref["sentences"]:
                sentences += 1
                rng = np.random.default_rng([seed, sentence["sent_id"]])
                for k, edit in enumerate(probes_for_sentence(sentence["text"], evidence, rng), start=1):
                    probes.append({
                        "probe_id": f"p{sentence['sent_id']}_{k}", "image_id": record["image_id"],
                        "id": record["id"], "ref_id": ref["ref_id"], "sent_id": sentence["sent_id"],
                        "source_text": sentence["text"], "source_region_ids": ref["region_ids"], **edit,
                    })  # fmt: skip
    if images == 0:
        raise DatasetError(f"{dataset}: no defect image in split {split!r}; nothing to probe")
    counts = Counter(p["edit"] for p in probes)
    header = {
        "format": FORMAT,
        "toolkit_version": __version__,
        "contrast_version": CONTRAST_VERSION,
        "dataset": manifest["name"],
        "samples_sha256": samples_sha256(dataset),
        "split": split,
        "seed": seed,
        "judges": [name for name, _ in JUDGES],
        "images": images,
        "sentences": sentences,
        "probes": len(probes),
        "edits": {kind: counts.get(kind, 0) for kind in EDIT_KINDS},
        "target_empty": sum(not p["region_ids"] for p in probes),
        "target_moved": sum(p["region_ids"] != p["source_region_ids"] for p in probes),
    }
    return header, probes


def save_probes(header: dict, probes: list[dict], out: Path) -> None:
    """Schema-check every line, then write the file atomically."""
    from mvtec_ref.fileio import dumps_json, write_text_atomic
    from mvtec_ref.schema import schema_errors

    for line in (header, *probes):
        errors = schema_errors("probes", line)
        if errors:
            raise DatasetError(f"{out}: {errors[0]} (a toolkit bug)")
    write_text_atomic(out, "".join(dumps_json(line, indent=None) + "\n" for line in (header, *probes)))


def load_probes(path: Path) -> tuple[dict, list[dict]]:
    """(header, probes) of a probes file; DatasetError naming the line on a malformed one."""
    from mvtec_ref.schema import schema_errors

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: probes file not found (write one with mvtec-ref probes DATASET)")
    lines = []
    with path.open(encoding="utf-8") as f:
        for n, text in enumerate(f, start=1):
            try:
                line = json.loads(text)
            except json.JSONDecodeError as error:
                raise DatasetError(f"{path} line {n}: malformed JSON: {error.msg}") from None
            errors = schema_errors("probes", line) if isinstance(line, dict) else ["not a JSON object"]
            if errors:
                raise DatasetError(f"{path} line {n}: {errors[0]}")
            if (n == 1) != ("format" in line):
                raise DatasetError(f"{path} line {n}: the header must be the first line and only there")
            lines.append(line)
    if not lines:
        raise DatasetError(f"{path}: empty; not a probes file")
    return lines[0], lines[1:]


def check_matches(header: dict, dataset: Path, path: Path) -> None:
    if header["samples_sha256"] != samples_sha256(dataset):
        raise DatasetError(
            f"{path}: made from another build of {dataset} (samples.jsonl changed); "
            f"rerun mvtec-ref probes {dataset}"
        )


# -- scoring ----------------------------------------------------------------------------------


def evaluate_probes(
    dataset: Path, probes_path: Path, pred: Path, *, allow_missing: bool = False,
    progress: bool | None = False,
) -> dict:  # fmt: skip
    """Score the masks in ``pred`` for every probe and its source sentence (``ContrastMetrics``)."""
    from mvtec_ref.evaluate import NO_TARGET, load_predictions
    from mvtec_ref.metrics import ContrastMetrics
    from mvtec_ref.progress import progress_bar
    from mvtec_ref.regions.mask import decode_rle

    header, probes = load_probes(probes_path)
    check_matches(header, dataset, probes_path)
    get = load_predictions(pred)
    by_image: dict[str, list[dict]] = {}
    for probe in probes:
        by_image.setdefault(probe["id"], []).append(probe)
    metrics = ContrastMetrics()
    missing, needed = [], 0
    records = progress_bar(iter_samples(dataset), desc="evaluate", unit="img",
                           total=load_manifest(dataset)["counts"]["images"],
                           progress=progress)  # fmt: skip
    for _, record in records:
        mine = by_image.pop(record["id"], None)
        if not mine:
            continue
        shape = (record["height"], record["width"])
        regions = {g["region_id"]: decode_rle(g["segmentation"]) for g in record["regions"]}

        def union(ids, regions=regions, shape=shape):
            out = np.zeros(shape, np.uint8)
            for i in ids:
                out |= regions[i]
            return out

        seen: dict = {}  # a source sentence is shared by its probes: read its mask once
        for probe in mine:
            for key in (probe["probe_id"], probe["sent_id"]):
                if key not in seen:
                    seen[key] = get(key)
                    needed += 1
                    if seen[key] is None:
                        missing.append(key)
                    if seen[key] is None or seen[key] is NO_TARGET:
                        seen[key] = np.zeros(shape, np.uint8)
            gt, gt_source = union(probe["region_ids"]), union(probe["source_region_ids"])
            metrics.update(seen[probe["probe_id"]], seen[probe["sent_id"]], gt, gt_source, probe["edit"])
    if by_image:
        raise DatasetError(f"{probes_path}: image {next(iter(by_image))} is not in {dataset}")
    if missing and not allow_missing:
        raise DatasetError(
            f"{pred}: {len(missing)} of {needed} masks missing, e.g. {missing[0]!r} (name PNGs "
            "<probe_id>.png and <sent_id>.png, or pass --allow-missing to score them as empty)"
        )
    return {
        "dataset": header["dataset"],
        "split": header["split"],
        "probes": str(probes_path),
        "predictions": str(pred),
        "missing_scored_as_empty": len(missing),
        **metrics.compute(),
    }


def save_contrast_json(result: dict, out: Path) -> None:
    from mvtec_ref.fileio import dumps_json, write_text_atomic
    from mvtec_ref.schema import schema_errors

    errors = schema_errors("contrast_metrics", result)
    if errors:
        raise DatasetError(f"{out}: {errors[0]} (a toolkit bug)")
    write_text_atomic(out, dumps_json(result))


def format_contrast(result: dict) -> str:
    """One row per edit kind: counts, mIoU, empty answered empty, sensitivity moved/same."""
    keys = [("probes", "probes"), ("moved", "moved"), ("mIoU", "mIoU"), ("empty_answered_empty", "empty-ok"),
            ("sensitivity_moved", "sens-moved"), ("sensitivity_same", "sens-same"),
            ("truth_shift_moved", "truth-moved")]  # fmt: skip

    def cell(v):
        return "-" if v is None else (str(v) if isinstance(v, int) else percent(v, 2))

    rows = [("overall", result["overall"]), *result["by_edit"].items()]
    width = max(len(name) for name, _ in rows)
    lines = [" ".join([" " * width, *(f"{label:>11}" for _, label in keys)])]
    lines += [" ".join([name.ljust(width), *(f"{cell(row[k]):>11}" for k, _ in keys)]) for name, row in rows]
    return "\n".join(lines)
