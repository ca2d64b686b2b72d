"""``validate_dataset``: re-check a dataset directory against its schemas and its masks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from mvtec_ref.build import MANIFEST, SAMPLES, iter_samples, load_manifest
from mvtec_ref.errors import DatasetError, MvtecRefError
from mvtec_ref.schema import schema_errors


def validate_dataset(
    dataset: Path, *, check_files: bool = True, deep: bool = False, workers: int = 1,
    progress: bool | None = False,
) -> list[str]:  # fmt: skip
    """Every problem found, as ``"<where>: <problem>"`` lines; empty when the dataset is sound.

    Checks: both files parse and match their schemas; ids are unique; every sentence
    denotes exactly its ref's target (``annotate.check_record``); every region's RLE
    has the image size, decodes to the recorded area and bbox, and no two regions of an
    image overlap; refs point at existing regions (no-target refs only on good images);
    manifest counts match the samples; with ``check_files`` the image and mask files
    exist under the recorded source root; with ``deep`` each mask is read again and
    must equal the union of its regions pixel for pixel, and every sentence (template,
    paraphrase or hand-written) must pass the pixel judge (``annotate.pixel_judge``).
    ``workers`` > 1 reads the files of ``deep`` in that many processes; the lines are the same,
    in the same order. ``progress``: as ``mvtec_ref.progress.progress_bar``.
    """
    from mvtec_ref.progress import progress_bar

    dataset = Path(dataset)
    problems: list[str] = []
    try:
        manifest = load_manifest(dataset)
    except DatasetError as error:
        return [str(error)]
    if not isinstance(manifest, dict):
        return [f"{MANIFEST}: is a JSON {_json_type(manifest)}, not an object; rebuild the dataset"]
    manifest_errors = schema_errors("manifest", manifest)
    problems += [f"{MANIFEST}: {e}" for e in manifest_errors]
    root = _dig(manifest, "source", "root", default="")
    root = Path(root) if isinstance(root, str) and root else None
    if check_files and (root is None or not root.is_dir()):
        problems.append(f"{MANIFEST}: source root {root} does not exist (moved? rebuild or pass --no-files)")
        check_files = False
    region_config = _dig(manifest, "config", "regions", default=None)
    if check_files and not isinstance(_dig(region_config, "threshold", default=None), int):
        problems.append(f"{MANIFEST}: config.regions.threshold is missing; files not checked")
        check_files = False

    from annotate import load_vocabulary

    vocab_name = _dig(manifest, "config", "refs", "vocabulary", default="mvtec_ad")
    vocab_used = vocab_name if isinstance(vocab_name, str) else "mvtec_ad"
    try:
        vocab = load_vocabulary(vocab_used)
    except (MvtecRefError, OSError, ValueError) as error:
        problems.append(f"{MANIFEST}: config.refs.vocabulary {vocab_name!r} cannot be loaded ({error})")
        vocab_used = "mvtec_ad"
        vocab = load_vocabulary(vocab_used)
    seen = {key: set() for key in ("image_id", "id", "ann_id", "ref_id", "sent_id")}
    totals = Counter()
    heads: dict[int, list[str]] = {}  # record number -> its lines from the checks made here
    stop: list[str] = []  # the line of a samples file that cannot be read on

    def records():
        """``(record number, file checks to make or None)``, after the checks that read no file
        (they keep the ids seen so far, so they run here, in file order)."""
        try:
            for i, (n, record) in enumerate(iter_samples(dataset)):
                heads[i], files = _check_without_files(n, record, seen, totals, vocab, check_files, deep)
                yield i, files
        except DatasetError as error:
            stop.append(str(error))

    context = (root, deep, region_config)
    images = _dig(manifest, "counts", "images", default=None)
    bar = progress_bar(desc="validate", unit="img", total=images if isinstance(images, int) else None,
                       progress=progress)  # fmt: skip
    with bar:
        if workers > 1 and check_files and deep:  # only reading and judging the pixels is worth a process
            import multiprocessing

            with multiprocessing.get_context("spawn").Pool(
                workers, initializer=_init_worker, initargs=(context, vocab_used)
            ) as pool:
                for i, lines in pool.imap(_file_job, records(), chunksize=4):
                    problems += heads.pop(i) + lines
                    bar.update()
        else:
            for i, files in records():
                problems += heads.pop(i) + _check_with_files(files, context, vocab)
                bar.update()
    if stop:
        return problems + stop
    counts = manifest.get("counts", {})
    counts = counts if isinstance(counts, dict) else {}
    for key in ("images", "regions", "refs", "sentences"):
        if key in counts and counts[key] != totals[key]:
            problems.append(f"{MANIFEST}: counts.{key} is {counts[key]} but {SAMPLES} has {totals[key]}")
    return problems


def _check_without_files(n, record, seen, totals, vocab, check_files, deep) -> tuple[list[str], tuple | None]:
    """A record's lines from its schema, ids, RLEs and sentences, and ``(where, record, union)``
    when its files are to be checked next (None when not)."""
    if not isinstance(record, dict):
        return [f"{SAMPLES} line {n}: is a JSON {_json_type(record)}, not a sample object"], None
    where = f"{SAMPLES} line {n} ({record.get('id', '?')})"
    errors = schema_errors("sample", record)
    if errors:
        return [f"{where}: {e}" for e in errors[:3]], None
    problems: list[str] = []
    try:
        pixels: dict = {}  # the union of the regions' masks, decoded once for every check
        found = _check_record(record, where, seen, totals, pixels)
        problems += found
        if any(fault in line for line in found for fault in _RLE_FAULTS):
            return problems, None  # sentences and pixels are checked only against masks that decode
        problems += _check_sentences(record, where, vocab)
    except Exception as error:  # a shape no check foresaw: report it, never a traceback
        problems.append(f"{where}: cannot be checked ({type(error).__name__}: {error})")
        return problems, None
    return problems, (where, record, pixels.get("union")) if check_files else None


def _check_with_files(files: tuple | None, context: tuple, vocab) -> list[str]:
    """The lines of a record's file checks (``_check_without_files``'s second answer)."""
    if files is None:
        return []
    (where, record, union), (root, deep, region_config) = files, context
    try:
        found = _check_files(record, root, where, deep, region_config, union)
        if deep and not found:
            found += _judge_pixels(record, root, where, vocab)
        return found
    except Exception as error:  # a shape no check foresaw: report it, never a traceback
        return [f"{where}: cannot be checked ({type(error).__name__}: {error})"]


_WORKER: dict = {}


def _init_worker(context: tuple, vocab_name: str) -> None:
    import cv2

    from annotate import load_vocabulary

    cv2.setNumThreads(1)  # the pool is the parallelism
    _WORKER.update(context=context, vocab=load_vocabulary(vocab_name))


def _file_job(job: tuple) -> tuple[int, list[str]]:
    """In a worker: ``(record number, lines)``. The union is decoded again here rather than sent
    (a full-size array per record through the pipe)."""
    i, files = job
    if files is not None:
        files = (files[0], files[1], None)
    return i, _check_with_files(files, _WORKER["context"], _WORKER["vocab"])


# Words of the RLE problem lines after which a record's masks cannot be used by later checks.
_RLE_FAULTS = ("RLE size ", "RLE does not decode")


def _json_type(value) -> str:
    names = {type(None): "null", list: "array", str: "string", bool: "boolean", int: "number",
             float: "number"}  # fmt: skip
    return names.get(type(value), type(value).__name__)


def _dig(obj, *keys, default):
    """``obj[k1][k2]...`` or ``default`` where a level is missing or not an object."""
    for key in keys:
        if not isinstance(obj, dict) or key not in obj:
            return default
        obj = obj[key]
    return obj


def _check_record(
    record: dict, where: str, seen: dict, totals: Counter, pixel_store: dict | None = None
) -> list[str]:
    """Ids, counts, every region's RLE, bbox and overlap, targets. ``pixel_store["union"]`` receives the
    union of the regions' masks ((H, W) bool; None without regions)."""
    from mvtec_ref.regions.mask import decode_rle

    problems = []
    for key in ("image_id", "id"):
        if record[key] in seen[key]:
            problems.append(f"{where}: duplicate {key} {record[key]!r}")
        seen[key].add(record[key])
    w, h = record["width"], record["height"]
    totals["images"] += 1
    totals["regions"] += len(record["regions"])
    union = None
    region_ids = set()
    for region in record["regions"]:
        rwhere = f"{where} region {region['region_id']}"
        if region["ann_id"] in seen["ann_id"]:
            problems.append(f"{rwhere}: duplicate ann_id {region['ann_id']}")
        seen["ann_id"].add(region["ann_id"])
        region_ids.add(region["region_id"])
        x, y, bw, bh = region["bbox"]
        if x + bw > w or y + bh > h or bw < 1 or bh < 1:
            problems.append(f"{rwhere}: bbox {region['bbox']} is not inside the {w}x{h} image")
        rle = region["segmentation"]
        if rle["size"] != [h, w]:
            problems.append(f"{rwhere}: RLE size {rle['size']} is not the image's [{h}, {w}]")
            continue
        try:
            pixels = decode_rle(rle).astype(bool)
        except Exception as error:  # pycocotools raises bare errors on corrupt strings
            problems.append(f"{rwhere}: RLE does not decode ({error})")
            continue
        area = int(pixels.sum())
        if area != region["area"]:
            problems.append(f"{rwhere}: RLE decodes to {area} pixels but area is {region['area']}")
        if area:
            ys, xs = pixels.any(axis=1).nonzero()[0], pixels.any(axis=0).nonzero()[0]
            bbox = [int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)]
            if bbox != region["bbox"]:
                problems.append(f"{rwhere}: bbox {region['bbox']} but the RLE spans {bbox}")
        if union is not None and (union & pixels).any():
            problems.append(f"{rwhere}: overlaps another region of the image")
        union = pixels if union is None else union | pixels
    if pixel_store is not None:
        pixel_store["union"] = union
    if record["label_index"] == 1 and not record["regions"]:
        problems.append(f"{where}: defect image has no region")
    if record["label_index"] == 0 and record["regions"]:
        problems.append(f"{where}: good image has regions")
    for ref in record["refs"]:
        totals["refs"] += 1
        totals["sentences"] += len(ref["sentences"])
        if ref["ref_id"] in seen["ref_id"]:
            problems.append(f"{where}: duplicate ref_id {ref['ref_id']}")
        seen["ref_id"].add(ref["ref_id"])
        unknown = set(ref["region_ids"]) - region_ids
        if unknown:
            problems.append(f"{where} ref {ref['ref_id']}: targets unknown regions {sorted(unknown)}")
        if not ref["region_ids"] and record["label_index"] == 1 and ref["kind"] == "no_target":
            problems.append(f"{where} ref {ref['ref_id']}: no-target ref on a defect image")
        for sentence in ref["sentences"]:
            if sentence["sent_id"] in seen["sent_id"]:
                problems.append(f"{where}: duplicate sent_id {sentence['sent_id']}")
            seen["sent_id"].add(sentence["sent_id"])
    return problems


def _check_sentences(record: dict, where: str, vocab) -> list[str]:
    from annotate import check_record

    known = {r["region_id"] for r in record["regions"]}
    if any(set(ref["region_ids"]) - known for ref in record["refs"]):
        return []  # already reported as unknown targets
    return [
        f"{where} ref {ref['ref_id']} sentence {s['sent_id']} {s['text']!r}: {v.verdict} ({v.reason})"
        for ref, s, v in check_record(record, vocab, origins=("template", "llm"))
    ]


def _check_files(
    record: dict, root: Path, where: str, deep: bool, region_config: dict, union=None
) -> list[str]:
    problems = []
    for key in ("image_path", "mask_path"):
        rel = record[key]
        if rel is not None and not (root / rel).is_file():
            problems.append(f"{where}: {key} {root / rel} does not exist")
    if deep and record["mask_path"] and not problems:
        problems += _check_mask_pixels(record, root, where, region_config, union)
    return problems


def _judge_pixels(record: dict, root: Path, where: str, vocab) -> list[str]:
    """Re-measure every claim of every sentence from the image and the regions' masks."""
    if not any(ref["region_ids"] for ref in record["refs"]):
        return []
    from annotate.pixel_judge import judge_record
    from mvtec_ref.errors import SampleError
    from mvtec_ref.regions.mask import decode_image

    try:
        image = decode_image((root / record["image_path"]).read_bytes(), record["image_path"])
    except (OSError, SampleError) as error:
        return [f"{where}: cannot read {record['image_path']} for the pixel judge ({error})"]
    return [
        f"{where} ref {ref['ref_id']} sentence {s['sent_id']} {s['text']!r}: pixel judge: "
        + "; ".join(f"{f.rule} ({f.detail})" for f in failures)
        for ref, s, failures in judge_record(record, image, vocab)
    ]


def _check_mask_pixels(record: dict, root: Path, where: str, region_config: dict, union=None) -> list[str]:
    """``union``: the regions' masks as _check_record decoded them (decoded here when not given)."""
    import numpy as np

    from mvtec_ref.errors import SampleError
    from mvtec_ref.regions.mask import decode_mask, decode_rle

    path = root / record["mask_path"]
    try:
        binary, _ = decode_mask(
            path.read_bytes(),
            record["mask_path"],
            (record["height"], record["width"]),
            threshold=region_config["threshold"],
        )
    except SampleError as error:
        return [f"{where}: {error}"]
    if union is None:
        union = np.zeros_like(binary, dtype=bool)
        for region in record["regions"]:
            union |= decode_rle(region["segmentation"]).astype(bool)
    differ = int((union != binary.astype(bool)).sum())
    if differ:
        return [f"{where}: regions differ from {record['mask_path']} in {differ} pixels (source changed?)"]
    return []
