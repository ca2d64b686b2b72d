"""``validate_dataset``: re-check a dataset directory against its schemas and its masks."""

from __future__ import annotations

from pathlib import Path

from mvtec_ref.dataset import MANIFEST, SAMPLES, open_dataset
from mvtec_ref.errors import DatasetError, MvtecRefError


def validate_dataset(
    dataset: Path, *, check_files: bool = True, deep: bool = False, workers: int = 1,
    progress: bool | None = False,
) -> list[str]:  # fmt: skip
    """Every problem found, as ``"<file>:<line>: <field>: <problem>"`` lines; empty when sound.

    First every check of ``mvtec_ref.dataset.open_dataset`` (the one reader every command uses:
    schemas, unique ids, RLEs against sizes, areas, boxes and ratios, targets, counts), with every
    problem reported instead of the first. Then, on the records that passed, what no other
    command pays for: no two regions of an image overlap; every sentence denotes exactly its
    ref's target (``annotate.check_record``); with ``check_files`` the image and mask files exist
    under the recorded source root; with ``deep`` each mask is read again and must equal the
    union of its regions pixel for pixel, and every sentence (template, paraphrase or
    hand-written) must pass the pixel judge (``annotate.pixel_judge``). ``workers`` > 1 reads the
    files of ``deep`` in that many processes; the lines are the same, in the same order.
    ``progress``: as ``mvtec_ref.progress.progress_bar``.
    """
    from mvtec_ref.progress import progress_bar

    dataset = Path(dataset)
    problems: list[str] = []
    try:
        data = open_dataset(dataset, problems=problems)
    except DatasetError as error:
        return [*problems, str(error)]
    manifest = data.manifest
    where_manifest = dataset / MANIFEST
    root = _dig(manifest, "source", "root", default="")
    root = Path(root) if isinstance(root, str) and root else None
    if check_files and (root is None or not root.is_dir()):
        problems.append(
            f"{where_manifest}: source.root: {root} does not exist (moved? rebuild or pass --no-files)"
        )
        check_files = False
    region_config = _dig(manifest, "config", "regions", default=None)
    if check_files and not isinstance(_dig(region_config, "threshold", default=None), int):
        problems.append(f"{where_manifest}: config.regions.threshold: missing; files not checked")
        check_files = False

    from annotate import load_vocabulary

    vocab_name = _dig(manifest, "config", "refs", "vocabulary", default="mvtec_ad")
    vocab_used = vocab_name if isinstance(vocab_name, str) else "mvtec_ad"
    try:
        vocab = load_vocabulary(vocab_used)
    except (MvtecRefError, OSError, ValueError) as error:
        problems.append(
            f"{where_manifest}: config.refs.vocabulary: {vocab_name!r} cannot be loaded ({error})"
        )
        vocab_used = "mvtec_ad"
        vocab = load_vocabulary(vocab_used)
    heads: dict[int, list[str]] = {}  # record index -> its lines from the checks made here

    def records():
        """``(record index, file checks to make or None)``, after the checks that read no file."""
        for i, record in enumerate(data):
            heads[i], files = _check_without_files(data.where(i), record, vocab, check_files)
            yield i, files

    from mvtec_ref.limits import processes

    context = (root, deep, region_config)
    workers = processes(workers, len(data))
    bar = progress_bar(desc="validate", unit="img", total=len(data), progress=progress)
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
    return _in_file_order(problems, str(dataset / SAMPLES))


def _in_file_order(problems: list[str], samples: str) -> list[str]:
    """The lines sorted by the samples.jsonl line they name (stable): the manifest's first, the
    manifest's counts (which name no line of samples.jsonl but follow from all of them) last."""
    import re

    line = re.compile(re.escape(samples) + r":(\d+): ")

    def key(problem: str) -> float:
        found = line.match(problem)
        if found:
            return int(found.group(1))
        return float("inf") if ": counts." in problem else 0

    return sorted(problems, key=key)


def _check_without_files(
    where: str, record: dict, vocab, check_files: bool
) -> tuple[list[str], tuple | None]:
    """A record's lines from the overlap of its regions and its sentences, and
    ``(where, record, union)`` when its files are to be checked next (None when not)."""
    try:
        pixels: dict = {}  # the union of the regions' masks, decoded once for every check
        problems = _check_overlaps(record, where, pixels)
        problems += _check_sentences(record, where, vocab)
    except Exception as error:  # noqa: BLE001 - a shape no check foresaw: report it, never a traceback
        return [f"{where}: (line): cannot be checked ({type(error).__name__}: {error})"], None
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
    except Exception as error:  # noqa: BLE001 - a shape no check foresaw: report it, never a traceback
        return [f"{where}: (line): cannot be checked ({type(error).__name__}: {error})"]


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


def _dig(obj, *keys, default):
    """``obj[k1][k2]...`` or ``default`` where a level is missing or not an object."""
    for key in keys:
        if not isinstance(obj, dict) or key not in obj:
            return default
        obj = obj[key]
    return obj


def _check_overlaps(record: dict, where: str, pixel_store: dict) -> list[str]:
    """No pixel in two regions of one image. ``pixel_store["union"]`` receives the union of the
    regions' masks ((H, W) bool; None without regions) for the file checks."""
    from mvtec_ref.regions.mask import decode_rle

    problems, union = [], None
    for k, region in enumerate(record["regions"]):
        pixels = decode_rle(region["segmentation"]).astype(bool)
        if union is not None and (union & pixels).any():
            problems.append(
                f"{where}: regions[{k}]: region {region['region_id']} overlaps another region of the image"
            )
        union = pixels if union is None else union | pixels
    pixel_store["union"] = union
    return problems


def _sentence_field(record: dict, ref: dict, sentence: dict) -> str:
    """``refs[i].sentences[j]`` of ``sentence`` in ``record``, with its ids, for problem lines."""
    i = next(k for k, r in enumerate(record["refs"]) if r is ref)
    j = next(k for k, s in enumerate(ref["sentences"]) if s is sentence)
    return f"refs[{i}].sentences[{j}] (ref {ref['ref_id']}, sent_id {sentence['sent_id']})"


def _check_sentences(record: dict, where: str, vocab) -> list[str]:
    from annotate import check_record

    return [
        f"{where}: {_sentence_field(record, ref, s)}: {s['text']!r}: {v.verdict} ({v.reason})"
        for ref, s, v in check_record(record, vocab, origins=("template", "llm"))
    ]


def _check_files(
    record: dict, root: Path, where: str, deep: bool, region_config: dict, union=None
) -> list[str]:
    problems = []
    for key in ("image_path", "mask_path"):
        rel = record[key]
        if rel is not None and not (root / rel).is_file():
            problems.append(f"{where}: {key}: {root / rel} does not exist")
    if deep and record["mask_path"] and not problems:
        problems += _check_mask_pixels(record, root, where, region_config, union)
    return problems


def _judge_pixels(record: dict, root: Path, where: str, vocab) -> list[str]:
    """Re-measure every claim of every sentence from the image and the regions' masks."""
    from annotate.pixel_judge import judge_record, needs_image

    if not needs_image(record, vocab):
        return []
    from mvtec_ref.dataset import read_image

    try:
        image = read_image(root, record)
    except DatasetError as error:
        return [f"{where}: image_path: cannot be read for the pixel judge ({error})"]
    return [
        f"{where}: {_sentence_field(record, ref, s)}: {s['text']!r}: pixel judge: "
        + "; ".join(f"{f.rule} ({f.detail})" for f in failures)
        for ref, s, failures in judge_record(record, image, vocab)
    ]


def _check_mask_pixels(record: dict, root: Path, where: str, region_config: dict, union=None) -> list[str]:
    """``union``: the regions' masks as _check_overlaps decoded them (decoded here when not given)."""
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
    except (OSError, SampleError) as error:
        return [f"{where}: mask_path: {error}"]
    if union is None:
        union = np.zeros_like(binary, dtype=bool)
        for region in record["regions"]:
            union |= decode_rle(region["segmentation"]).astype(bool)
    differ = int((union != binary.astype(bool)).sum())
    if differ:
        return [f"{where}: regions: differ from {record['mask_path']} in {differ} pixels (source changed?)"]
    return []
