"""``build_dataset``: source tree -> validated dataset directory (manifest.json + samples.jsonl)."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mvtec_ref import __version__
from mvtec_ref.dataset import MANIFEST, SAMPLES
from mvtec_ref.errors import DatasetError, EmptyMaskError, SampleError
from mvtec_ref.fileio import dumps_json, staged_directory, write_text_atomic
from mvtec_ref.regions import RegionConfig
from mvtec_ref.sources import ScanResult, SourceImage, get_source
from mvtec_ref.splits import SplitConfig, assign_splits

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1.0"


@dataclass(frozen=True)
class BuildConfig:
    source: str = "mvtec_ad"
    categories: tuple[str, ...] = ()  # empty = every category found
    # Seed for every random choice (sentence picks, splits); recorded in the manifest.
    seed: int = 0
    # Stop at the first problem instead of skipping bad samples and recording them.
    strict: bool = False
    # Template expressions of every kind; False keeps only the universal prompt "anomaly".
    expressions: bool = True
    regions: RegionConfig = field(default_factory=RegionConfig)
    splits: SplitConfig = field(default_factory=SplitConfig)
    name: str = "mvtec-ref"
    # Vocabulary for the refs (a name in annotate/vocab/ or a file); empty = the source's. Set by
    # build_dataset from the source's registration, recorded in the manifest for validate/stats.
    vocabulary: str = ""

    def as_record(self, heldout: dict | None = None) -> dict:
        from annotate import TEMPLATES_VERSION

        return {
            "seed": self.seed,
            "strict": self.strict,
            "regions": self.regions.as_record(),
            "refs": {
                "templates_version": TEMPLATES_VERSION if self.expressions else "universal-only",
                "vocabulary": self.vocabulary or self.source,
            },
            "splits": heldout or {"protocol": self.splits.protocol, "ratios": list(self.splits.ratios)},
        }


@dataclass
class Processed:
    """What one worker returns for one image: its record (ids not yet numbered) or an error."""

    record: dict | None
    error: SampleError | None
    warnings: list[tuple[str, str]]  # (path, message)
    hashes: list[tuple[str, str]]  # (path, sha256)
    # What the pixel judge did to this image's template sentences (annotate.pixel_judge).
    judged: dict = field(default_factory=dict)
    # The checker's verdict on the record's template sentences, reached in the worker:
    # [text, sorted target ids, verdict, reason] per refused one; None: not checked there
    # (finish_build then checks them all itself).
    unfaithful: list | None = None


@dataclass
class BuildResult:
    out: Path
    manifest: dict
    problems: list[dict]


def build_dataset(
    root: Path,
    out: Path,
    config: BuildConfig,
    *,
    workers: int = 1,
    progress: bool | None = None,
    reviews: Path | None = None,
) -> BuildResult:
    """Scan ``root``, derive regions and refs for every image, validate, write ``out``.

    ``out`` is replaced atomically and only when everything succeeded. Under
    ``config.strict`` the first problem raises its SampleError; otherwise bad samples
    are skipped and listed in the manifest's ``problems``. ``reviews`` (a file written by
    ``mvtec-ref review``) applies people's decisions (``mvtec_ref.review.apply``).
    """
    root = Path(root).expanduser().resolve()
    check_options(root, out, config, reviews)
    root, config, scan = scan_source(root, config)  # checks the seed and ratios before any image is read
    processed = _process_all(root, scan.images, config, workers, progress)
    return finish_build(root, out, config, scan, processed, reviews=reviews, progress=progress)


def scan_source(root: Path, config: BuildConfig) -> tuple[Path, BuildConfig, ScanResult]:
    """List the source's images (no pixels read); ``config`` comes back with its vocabulary set.
    Under ``config.strict`` the first layout problem raises."""
    # Resolved, so the same tree reached through another path (a/../b, a link) gives the same manifest.
    root = Path(root).expanduser().resolve()
    config.splits.check()
    if config.seed < 0:
        raise DatasetError(f"seed {config.seed} is negative; use a seed >= 0")
    source = get_source(config.source)
    try:
        scan = source.scan(root, config.categories or None)
    except OSError as error:  # what an adapter did not foresee: still one line naming the path
        from mvtec_ref.errors import SourceLayoutError

        where = error.filename or root
        raise SourceLayoutError(f"{where}: cannot read ({error.strerror or error})") from None
    _drop_unrecordable(scan)
    _drop_duplicate_ids(scan)
    config = dataclasses.replace(config, vocabulary=scan.vocabulary or source.vocabulary or config.source)
    log.info("%s: %d images listed, %d problems in the layout", root, len(scan.images), len(scan.problems))
    if config.strict and scan.problems:
        raise scan.problems[0]
    return root, config, scan


def finish_build(
    root: Path,
    out: Path,
    config: BuildConfig,
    scan: ScanResult,
    processed: Iterable[Processed],
    *,
    reviews: Path | None = None,
    blame: str = "a toolkit bug",
    progress: bool | None = False,
) -> BuildResult:
    """The dataset-wide part of a build: collect ``processed`` (one per ``scan.images``, in
    order), assign splits and ids, apply ``reviews``, check, write ``out``. Shared by build and
    merge; ``blame`` is what a sentence failing the checker means (merge: edited shards).
    ``progress``: "check" and "write" bars (``mvtec_ref.progress.progress_bar``)."""
    skip = ("missing_mask", "unreadable", "duplicate_id")
    problems = [_problem(p, "skipped" if p.kind in skip else "ignored") for p in scan.problems]

    records, hashes, judged = [], [], Counter()
    prechecked = {}  # id(record) -> (keys of the sentences the worker checked, {key: Verdict} refused)
    for done in processed:
        hashes.extend(done.hashes)
        judged.update(done.judged)
        if done.error is not None:
            if config.strict:
                raise done.error
            problems.append(_problem(done.error, "skipped"))
            continue
        for path, message in done.warnings:
            problems.append({"path": path, "kind": "mask_values", "problem": message, "action": "accepted"})
        records.append(done.record)
        if done.unfaithful is not None:
            prechecked[id(done.record)] = _worker_verdicts(done)
    if not records:
        raise DatasetError(f"{root}: no usable image found ({len(problems)} problems)")

    log.info("%d images processed; assigning %s splits", len(records), config.splits.protocol)
    heldout = assign_splits(records, config.splits, config.seed)
    _hide_heldout_types(records, heldout, config.vocabulary)
    review = None
    if reviews is not None:
        from mvtec_ref.review.apply import apply_reviews

        review, review_problems = apply_reviews(records, reviews)
        problems += review_problems
    _number(records)
    _check_expressions(records, config.vocabulary, prechecked, blame, progress=progress)
    problems += _vocabulary_fallbacks(records, config.vocabulary)
    categories = sorted({src.category for src in scan.images})
    manifest = _manifest(root, config, categories, records, hashes, problems, heldout)
    if review is not None:
        manifest["review"] = review
    manifest["pixel_judge"] = _judge_summary(judged)
    log.info("writing %s (%d samples)", out, len(records))
    save_dataset(out, manifest, records, progress=progress)
    return BuildResult(Path(out), manifest, problems)


def _drop_unrecordable(scan) -> None:
    """Paths with a newline or another control character cannot be recorded (nor shown on one
    line): such samples become problems, with the name escaped."""
    from mvtec_ref.errors import UnreadablePathError

    kept = []
    for src in scan.images:
        paths = (src.image_path, src.mask_path or "", *src.extra_masks)
        bad = next((p for p in paths if any(ord(c) < 32 or ord(c) == 127 for c in p)), None)
        if bad is None:
            kept.append(src)
            continue
        shown = bad.encode("unicode_escape").decode("ascii")
        why = "file name holds a newline or control character; rename the file"
        scan.problems.append(UnreadablePathError(shown, why))
    scan.images = kept
    scan.problems.sort(key=lambda p: p.path)


def _drop_duplicate_ids(scan) -> None:
    """Two files whose paths differ only in the extension (``000.png`` beside ``000.PNG`` or
    ``000.jpg``) would share one sample id: the first in path order is kept, each other becomes
    a skipped sample with a problem naming both."""
    from mvtec_ref.errors import DuplicateIdError

    first: dict[str, str] = {}
    kept = []
    for src in sorted(scan.images, key=lambda s: s.image_path):
        other = first.setdefault(src.sample_id, src.image_path)
        if other == src.image_path:
            kept.append(src)
            continue
        scan.problems.append(DuplicateIdError(
            src.image_path, f"has the sample id {src.sample_id!r} of {other} (names that differ only in "
            "the extension); skipped, rename one of them",
        ))  # fmt: skip
    if len(kept) < len(scan.images):
        order = {id(src): i for i, src in enumerate(scan.images)}
        scan.images = sorted(kept, key=lambda s: order[id(s)])
        scan.problems.sort(key=lambda p: p.path)


def check_options(root: Path, out: Path, config: BuildConfig, reviews: Path | None = None) -> None:
    """Everything about the options that can be known before reading one image."""
    from mvtec_ref.fileio import check_apart, check_replaceable

    check_apart(root, out, given_flag="--root")
    if reviews is not None:  # a reviews file kept inside the dataset folder would go with it
        check_apart(reviews, out, given_flag="--reviews", inside_ok=True)
    check_replaceable(out, marker=MANIFEST)
    config.splits.check()
    if config.seed < 0:
        raise DatasetError(f"seed {config.seed} is negative; use a seed >= 0")


def save_dataset(out: Path, manifest: dict, records: list[dict], *, progress: bool | None = False) -> None:
    """Check both files against their schemas, then replace ``out`` atomically (``progress``: a
    "write" bar over the records).

    ``manifest["counts"]`` is recomputed from ``records`` so that it cannot drift.
    """
    from mvtec_ref.dataset import _Seen, check_manifest, check_sample

    manifest["counts"] = count_records(records)
    errors = check_manifest(manifest)
    if errors:
        raise DatasetError(f"{MANIFEST}: {errors[0]} (a toolkit bug)")
    lines, seen, cuts = [], _Seen(), manifest["config"]["regions"]["size_cuts"]
    from mvtec_ref.progress import progress_bar

    for n, record in enumerate(progress_bar(records, progress=progress, desc="write", unit="img"), start=1):
        # what open_dataset will check on reading it back, so that every dataset written opens
        errors = check_sample(record, seen=seen, where=f"line {n}", size_cuts=cuts)
        if errors:
            raise DatasetError(f"{SAMPLES}:{n}: {errors[0]} (a toolkit bug)")
        lines.append(dumps_json(record, indent=None))
    with staged_directory(out, marker=MANIFEST) as stage:
        write_text_atomic(stage / SAMPLES, "\n".join(lines) + "\n")
        write_text_atomic(stage / MANIFEST, dumps_json(manifest))


def process_image(root: Path, src: SourceImage, config: BuildConfig) -> Processed:
    """Read one image (and its mask), check them, and derive its regions and refs."""
    from annotate import load_vocabulary, refs_for, universal_refs
    from mvtec_ref.regions import regions_from_mask
    from mvtec_ref.regions.frame import find_frame
    from mvtec_ref.regions.mask import decode_image

    hashes, warnings = [], []
    try:
        data = _read(root, src.image_path, hashes)
        image = decode_image(data, src.image_path, rgb=src.mask_path is not None)  # pixels used only then
        height, width = image.shape[:2]
        regions, labels, defect_type, binary = [], None, src.defect_type, None
        if src.mask_path is not None:
            binary, labels = _read_masks(root, src, (height, width), config, hashes, warnings)
            if not binary.any():
                raise EmptyMaskError(src.mask_path, "mask of a defect image is empty (all zero)")
            if src.value_names:
                defect_type = _named_type(labels, dict(src.value_names), src.defect_type)
        # Good images get the same frame rule as the defect images of their category.
        rule = load_vocabulary(config.vocabulary or config.source).frame(
            src.category, "box" if src.kind == "object" else "texture"
        )
        kind = rule["kind"] if config.regions.object_frame else "texture"
        frame = find_frame(image, kind, binary, rule.get("clear_parts", False))
        if binary is not None:
            regions = regions_from_mask(binary, image, frame, config.regions)
    except SampleError as error:
        return Processed(None, error, warnings, hashes)
    # Placeholder ids (0) keep the key order of the final record; _number fills them in.
    region_records = [{"ann_id": 0, **r.to_record()} for r in regions]
    if labels is not None:
        names = dict(src.value_names)
        for region in region_records:
            value = _majority_value(labels, region["segmentation"])
            region["source_class"] = names.get(value, str(value))
    record = {
        "image_id": 0,
        "id": src.sample_id,
        "category": src.category,
        "defect_type": defect_type,
        "label_index": 0 if src.is_good else 1,
        "image_path": src.image_path,
        "mask_path": src.mask_path,
        "width": width,
        "height": height,
        "channels": 1 if image.ndim == 2 else 3,
        "source_split": src.source_split,
        "split": src.source_split if src.source_split in ("train", "val", "test") else "test",
        "frame": frame,
        "regions": region_records,
        "refs": [],
    }
    if src.attributes:
        record["source_attributes"] = dict(src.attributes)
    judged = Counter()
    if config.expressions:
        from annotate.pixel_judge import Vetter

        rng = np.random.default_rng([config.seed, zlib.crc32(src.sample_id.encode())])
        vocab = load_vocabulary(config.vocabulary or config.source)
        # the pixel judge, asked per candidate; it gets the regions' pixels, not their RLE to decode
        masks = {r.region_id: r.full_mask((height, width)) for r in regions}
        vetter = Vetter(record, image, vocab, masks)  # good images too: "the top left corner of the pill"
        refs = refs_for(record, vocab, rng, accept=vetter)
        judged.update(
            {"sentences_checked": vetter.checked, **{f"rule:{k}": n for k, n in vetter.rejected.items()}}
        )
    else:
        refs = universal_refs(record)
    record["refs"] = [
        {"ref_id": 0, **ref, "sentences": [{"sent_id": 0, **s} for s in ref["sentences"]]} for ref in refs
    ]
    if config.expressions:  # what reached the refs without the generator asking is dropped
        from annotate.pixel_judge import drop_failing

        refs_before = len(record["refs"])
        record["refs"], removed = drop_failing(record, image, vocab, vetter)
        judged.update({f"rule:{rule}": n for rule, n in removed.items()})
        judged["refs_dropped"] = refs_before - len(record["refs"])
    return Processed(record, None, warnings, hashes, dict(judged), _unfaithful(record, config))


def _unfaithful(record: dict, config: BuildConfig) -> list:
    """``Processed.unfaithful``: the checker's refusals of the record's template sentences, judged
    where the record was made (in parallel) instead of in the main process after the pool."""
    from annotate import check_record, load_vocabulary

    vocab = load_vocabulary(config.vocabulary or config.source)
    return [
        [s["text"], sorted(ref["region_ids"]), v.verdict, v.reason]
        for ref, s, v in check_record(record, vocab)
    ]


def _worker_verdicts(done: Processed) -> tuple[set, dict]:
    """What the worker judged of ``done.record`` as it arrived (before splits, held-out types and
    reviews change its refs): every template sentence's (text, target ids) key, and the refused ones."""
    from annotate.faithful import Verdict

    keys = {
        (s["text"], tuple(sorted(ref["region_ids"])))
        for ref in done.record["refs"]
        for s in ref["sentences"]
        if s["origin"] == "template"
    }
    refused = {(text, tuple(ids)): Verdict(verdict, reason) for text, ids, verdict, reason in done.unfaithful}
    return keys, refused


def _read_masks(root, src: SourceImage, shape, config: BuildConfig, hashes, warnings):
    """``(binary (H, W) {0,1}, labels (H, W) uint8 or None)``: the union of the image's mask files.
    "binary" masks are thresholded (non-binary values reported); "ids" masks keep their values."""
    from mvtec_ref.errors import MaskSizeError
    from mvtec_ref.regions.mask import decode_image, decode_mask

    binary, labels = None, None  # the first mask's own array, then the union with the others
    for path in (src.mask_path, *src.extra_masks):
        data = _read(root, path, hashes)
        if src.mask_values == "ids":
            values = decode_image(data, path)
            if values.ndim == 3:
                values = values.max(axis=2)
            if values.shape != shape:
                raise MaskSizeError(path, f"mask is {values.shape[1]}x{values.shape[0]} but its image is "
                                          f"{shape[1]}x{shape[0]}")  # fmt: skip
            labels = values if labels is None else np.maximum(labels, values)
            part = (values > 0).view(np.uint8)
        else:
            part, warning = decode_mask(data, path, shape, threshold=config.regions.threshold,
                                        strict=config.strict)  # fmt: skip
            if warning:
                warnings.append((path, warning))
        binary = part if binary is None else binary | part
    return binary, labels


def _named_type(labels: np.ndarray, names: dict[int, str], default: str) -> str:
    """The defect name the mask's values stand for; "combined" when they name several."""
    found = sorted({names.get(int(v), default) for v in np.unique(labels) if v})
    return found[0] if len(found) == 1 else "combined" if found else default


def _majority_value(labels: np.ndarray, rle: dict) -> int:
    from mvtec_ref.regions.mask import decode_rle

    inside = labels[decode_rle(rle).astype(bool)]
    inside = inside[inside > 0]
    return int(np.bincount(inside).argmax()) if inside.size else 0


def _read(root: Path, rel: str, hashes: list) -> bytes:
    from mvtec_ref.errors import CorruptImageError

    try:
        data = (root / rel).read_bytes()
    except OSError as error:
        raise CorruptImageError(rel, f"cannot read file ({error.strerror})") from error
    hashes.append((rel, hashlib.sha256(data).hexdigest()))
    return data


def _hide_heldout_types(records: list[dict], heldout: dict, source: str) -> None:
    """Open-set: train/val text must not name a held-out defect type, even as a no-target phrase."""
    from annotate import load_vocabulary
    from annotate.parse import parse

    if not heldout.get("heldout_types"):
        return
    vocab = load_vocabulary(source)
    for record in records:
        hidden = set(heldout["heldout_types"].get(record["category"], ()))
        if record["split"] == "test" or not hidden:
            continue
        for ref in record["refs"]:
            ref["sentences"] = [
                s
                for s in ref["sentences"]
                if parse(s["text"], record["category"], vocab, (record["defect_type"],)).defect_type
                not in hidden
            ]
        record["refs"] = [ref for ref in record["refs"] if ref["sentences"]]


def _check_expressions(
    records: list[dict],
    source: str,
    prechecked: dict | None = None,
    blame: str = "a toolkit bug",
    *,
    progress: bool | None = False,
) -> None:
    """Every template sentence must denote exactly its target; anything else is our bug.

    ``prechecked`` (id(record) -> ``_worker_verdicts``) gives the verdicts reached in the workers:
    a verdict depends only on the sentence's text, its target and the record's regions, type and
    category, which nothing after the worker changes, so a sentence found there is not parsed
    again; any other template sentence (no worker verdict, or a record from elsewhere) is."""
    from annotate import load_vocabulary
    from annotate.faithful import OK, check_sentence
    from mvtec_ref.progress import progress_bar

    vocab = load_vocabulary(source)
    prechecked = prechecked or {}
    bad = []
    # the order and filter of annotate.check_record
    for record in progress_bar(records, progress=progress, desc="check", unit="img"):
        keys, refused = prechecked.get(id(record), ((), {}))
        for ref in record["refs"]:
            for s in ref["sentences"]:
                if s["origin"] != "template":
                    continue
                key = (s["text"], tuple(sorted(ref["region_ids"])))
                verdict = (
                    refused.get(key)
                    if key in keys
                    else check_sentence(s["text"], ref["region_ids"], record, vocab)
                )
                if verdict is not None and verdict.verdict != OK:
                    bad.append((record["id"], ref, s, verdict))
    if bad:
        shown = "; ".join(f"{sid} ref {ref['ref_id']} {s['text']!r}: {v.verdict}, {v.reason}"
                          for sid, ref, s, v in bad[:3])  # fmt: skip
        raise DatasetError(f"{len(bad)} template sentences fail the checker ({blame}): {shown}")


def _judge_summary(judged: Counter) -> dict:
    """The manifest's ``pixel_judge`` block: candidate template sentences it rejected (the generator
    then draws another wording or leaves the sentence out), by the first rule each broke."""
    from annotate.pixel_judge import JUDGE_VERSION, RULES

    by_rule = {rule.name: judged.get(f"rule:{rule.name}", 0) for rule in RULES}
    return {
        "version": JUDGE_VERSION,
        "sentences_checked": judged.get("sentences_checked", 0),
        "sentences_removed": sum(by_rule.values()),
        "refs_dropped": judged.get("refs_dropped", 0),
        "removed_by_rule": by_rule,
        "thresholds": {rule.name: rule.threshold for rule in RULES},
    }


def _vocabulary_fallbacks(records: list[dict], source: str) -> list[dict]:
    from annotate import load_vocabulary

    vocab = load_vocabulary(source)
    missing = sorted(
        {(r["category"], r["defect_type"]) for r in records if r["label_index"]}
        - {(c, d) for c in vocab.defects for d in vocab.defects[c]}
    )
    return [
        {"path": f"{c}/{d}", "kind": "vocabulary", "action": "accepted",
         "problem": f"no phrase for defect type {d!r} of {c!r}; using {vocab.words(c, d).phrases[0][0]!r}"}
        for c, d in missing
    ]  # fmt: skip


def _process_all(
    root: Path, images: list[SourceImage], config: BuildConfig, workers: int, progress: bool | None
) -> Iterator[Processed]:
    from mvtec_ref.limits import processes
    from mvtec_ref.progress import progress_bar

    workers = processes(workers, len(images))
    bar = progress_bar(total=len(images), desc="build", unit="img", progress=progress)
    with bar:
        if workers <= 1:
            for src in images:
                yield process_image(root, src, config)
                bar.update()
            return
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        chunk = max(1, min(32, len(images) // (workers * 8)))
        with ctx.Pool(workers, initializer=_init_worker) as pool:
            jobs = ((root, src, config) for src in images)
            for done in pool.imap(_process_job, jobs, chunksize=chunk):
                yield done
                bar.update()


def _process_job(job: tuple[Path, SourceImage, BuildConfig]) -> Processed:
    return process_image(*job)


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # the pool is the parallelism; nested threads only contend


def _number(records: list[dict]) -> None:
    """Assign dataset-wide ids in record order (records are sorted by image path)."""
    ann_id = ref_id = sent_id = 0
    for image_id, record in enumerate(records, start=1):
        record["image_id"] = image_id
        for region in record["regions"]:
            ann_id += 1
            region["ann_id"] = ann_id
        for ref in record["refs"]:
            ref_id += 1
            ref["ref_id"] = ref_id
            for sentence in ref["sentences"]:
                sent_id += 1
                sentence["sent_id"] = sent_id


def _manifest(root, config, categories, records, hashes, problems, heldout) -> dict:
    fingerprint = hashlib.sha256(
        "".join(f"{path}\t{digest}\n" for path, digest in sorted(hashes)).encode()
    ).hexdigest()
    return {
        "name": config.name,
        "toolkit_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "source": {
            "kind": config.source,
            "root": str(root),
            "categories": categories,
            "files": len(hashes),
            "fingerprint": fingerprint,
        },
        "config": config.as_record(heldout),
        "counts": {},  # filled by save_dataset, which counts what it writes
        "problems": sorted(problems, key=lambda p: (p["path"], p["kind"])),
    }


def count_records(records: list[dict]) -> dict:
    """The manifest's ``counts`` block."""
    by_split, by_category, by_defect = (defaultdict(Counter) for _ in range(3))
    for record in records:
        n_regions = len(record["regions"])
        for table, key in (
            (by_split, record["split"]),
            (by_category, record["category"]),
            (by_defect, f"{record['category']}/{record['defect_type']}"),
        ):
            table[key]["images"] += 1
            table[key]["regions"] += n_regions
    refs = [ref for record in records for ref in record["refs"]]
    return {
        "images": len(records),
        "defect_images": sum(r["label_index"] for r in records),
        "good_images": sum(1 - r["label_index"] for r in records),
        "regions": sum(len(r["regions"]) for r in records),
        "refs": len(refs),
        "sentences": sum(len(ref["sentences"]) for ref in refs),
        "by_split": _plain(by_split),
        "by_category": _plain(by_category),
        "by_defect_type": _plain(by_defect),
    }


def _plain(table: dict) -> dict:
    return {k: {"images": v["images"], "regions": v["regions"]} for k, v in sorted(table.items())}


def _problem(error: SampleError, action: str) -> dict:
    return {"path": error.path, "kind": error.kind, "problem": error.problem, "action": action}
