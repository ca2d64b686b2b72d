"""Scale-out builds: ``build --shard K/N`` processes a deterministic slice of the images into a
shard file; ``merge`` joins all N shards into the dataset a one-process build writes.

Image-level work (decoding, regions, refs) is the expensive part and is independent per image,
so it is what a shard does. Everything dataset-wide (splits, seeded and stratified over all
images; image/ann/ref/sentence ids; counts; the source fingerprint; problems) is computed by
``merge`` through the same ``build.finish_build`` a one-process build uses.

Shard K of N holds the images ``K-1, K-1+N, K-1+2N, ...`` of the scan (sorted by image path):
strided, so that every shard gets a mix of categories and image sizes.

A shard file is JSON lines: a header (format, toolkit version, K, N, root, build config,
categories, total image count and a digest of the full image list, layout problems), then one
line per image of the slice: its global index, its ``SourceImage`` and what ``process_image``
returned for it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from mvtec_ref import errors
from mvtec_ref.errors import DatasetError, MvtecRefError

FORMAT = "mvtec-ref-shard/1"


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``1 <= K <= N <= MAX_SHARDS``; MvtecRefError otherwise."""
    from mvtec_ref.limits import MAX_SHARDS

    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() and len(p.strip()) <= 9 for p in parts):
        raise MvtecRefError(f"--shard {text!r}: expected K/N, e.g. 3/8 (shard 3 of 8)")
    k, n = (int(part) for part in parts)
    if not 1 <= k <= n:
        raise MvtecRefError(f"--shard {text!r}: K must be between 1 and N (shards are numbered 1..N)")
    if n > MAX_SHARDS:
        raise MvtecRefError(f"--shard {text!r}: N is at most {MAX_SHARDS:,}")
    return k, n


def build_shard(
    root: Path, out: Path, config, k: int, n: int, *, workers: int = 1, progress=None, force: bool = False
) -> dict:
    """Process shard ``k`` of ``n`` of the images under ``root`` and write it to the file ``out``
    (atomically). Returns the shard's header. ``out`` may replace only an earlier shard file
    (or anything but an input, with ``force``)."""
    from mvtec_ref.build import _process_all, scan_source
    from mvtec_ref.fileio import check_output_file, write_text_atomic

    k, n = parse_shard(f"{k}/{n}")
    out = Path(out)
    if out.is_dir():
        raise MvtecRefError(f"{out}: is a folder; a shard is one file (e.g. shards/{k:03d}-of-{n:03d}.jsonl)")
    check_output_file(out, kind="shard", inputs=(root,), force=force)
    root, config, scan = scan_source(root, config)
    mine = list(range(k - 1, len(scan.images), n))
    header = {
        "format": FORMAT,
        "toolkit_version": _version(),
        "shard": [k, n],
        "root": str(root),
        "config": _jsonable(dataclasses.asdict(config)),
        "images": len(scan.images),
        "images_digest": _images_digest(scan.images),
        "shard_images": len(mine),
        "scan_problems": [_error_record(p) for p in scan.problems],
        "vocabulary": scan.vocabulary,
    }
    lines = [json.dumps(header, ensure_ascii=False)]
    processed = _process_all(root, [scan.images[i] for i in mine], config, workers, progress)
    for index, done in zip(mine, processed, strict=True):
        if config.strict and done.error is not None:
            raise done.error
        item = {"index": index, "source_image": _jsonable(dataclasses.asdict(scan.images[index]))}
        for field in dataclasses.fields(done):
            value = getattr(done, field.name)
            item[field.name] = _error_record(value) if field.name == "error" and value else value
        lines.append(json.dumps(item, ensure_ascii=False, allow_nan=False))
    write_text_atomic(out, "\n".join(lines) + "\n")
    return header


def merge_shards(
    paths: Sequence[Path], out: Path, *, reviews: Path | None = None, progress: bool | None = False
):
    """Join the shard files ``paths`` (all N of one ``build --shard``, any order) into the dataset
    ``out``: byte-identical to ``build`` of the same root and options. A missing, duplicated or
    foreign shard raises MvtecRefError naming it, before anything is written."""
    from mvtec_ref.build import MANIFEST, finish_build
    from mvtec_ref.fileio import check_apart, check_replaceable
    from mvtec_ref.sources import ScanResult

    if not paths:
        raise MvtecRefError("merge: no shard files given")
    for given in (*paths, reviews):  # replacing out must never delete an input
        if given is not None:
            check_apart(given, out, given_flag=str(given), inside_ok=True)
    check_replaceable(out, marker=MANIFEST)
    headers = [(Path(p), _read_header(Path(p))) for p in paths]
    first_path, first = headers[0]
    n = first["shard"][1]
    seen: dict[int, Path] = {}
    for path, header in headers:
        for key in ("toolkit_version", "root", "config", "images", "images_digest"):
            if header[key] != first[key] or header["shard"][1] != n:
                what = "shard count" if header["shard"][1] != n else key.replace("_", " ")
                raise MvtecRefError(
                    f"{path}: not from the same build as {first_path} (its {what} differs); "
                    "merge the shards of one build --shard run"
                )
        k = header["shard"][0]
        if k in seen:
            raise MvtecRefError(f"{path}: shard {k}/{n} is given twice (also {seen[k]})")
        seen[k] = path
    by_path = dict(headers)
    missing = [k for k in range(1, n + 1) if k not in seen]
    if missing:
        raise MvtecRefError(
            f"merge: shard {', '.join(f'{k}/{n}' for k in missing)} missing "
            f"(given: {', '.join(f'{k}/{n}' for k in sorted(seen))})"
        )
    config = _config_from_record(first["config"])
    slots: list = [None] * first["images"]
    cuts = config.regions.size_cuts
    from mvtec_ref.progress import progress_bar

    with progress_bar(total=len(slots), progress=progress, desc="read shards", unit="img") as bar:
        for k in sorted(seen):
            for index, source_image, done in _read_items(seen[k], k, n, by_path[seen[k]], cuts):
                slots[index] = (source_image, done)
                bar.update()
    scan = ScanResult(
        images=[slot[0] for slot in slots],
        problems=[_error_from_record(p) for p in first["scan_problems"]],
        vocabulary=first["vocabulary"],
    )
    if _images_digest(scan.images) != first["images_digest"]:
        raise MvtecRefError(f"merge: the shards' images do not add up to the scanned list ({first_path})")
    processed = (slot[1] for slot in slots)
    return finish_build(Path(first["root"]), out, config, scan, processed, reviews=reviews, progress=progress,
                        blame="the shard files were edited or damaged; rerun build --shard")  # fmt: skip


def _check_header(line) -> list[str]:
    """``"<field>: <problem>"`` for a shard file's first line."""
    from mvtec_ref.dataset import schema_problems

    if not isinstance(line, dict) or line.get("format") != FORMAT:
        return [f"(line): no {FORMAT} header"]
    found = schema_problems("shard", line)
    if found:
        return found[:1]
    k, n = line["shard"]
    if not k <= n:
        return [f"shard: {line['shard']} is not K/N with K <= N"]
    if line["shard_images"] != len(range(k - 1, line["images"], n)):
        return [f"shard_images: {line['shard_images']} but shard {k}/{n} of {line['images']} images holds "
                f"{len(range(k - 1, line['images'], n))}"]  # fmt: skip
    return []


def _read_header(path: Path) -> dict:
    """The first line of the shard file ``path``, checked (``mvtec_ref.dataset.read_jsonl``)."""
    from mvtec_ref.dataset import read_jsonl

    lines = read_jsonl(path, what="shard file", check=_check_header)
    try:
        return next(lines)[1]
    except StopIteration:
        raise MvtecRefError(f"{path}: empty; not a shard file written by build --shard") from None
    except DatasetError as error:
        if not str(error).startswith(f"{path}:1: "):
            raise
        why = str(error).removeprefix(f"{path}:1: ")
        raise MvtecRefError(f"{path}:1: not a shard file written by build --shard ({why})") from None
    finally:
        lines.close()


def _read_items(path: Path, k: int, n: int, header: dict, size_cuts=None) -> Iterator[tuple]:
    """``(index, SourceImage, Processed)`` of every image line, each checked: the shard schema,
    its place in slice ``k`` of ``n``, and its record against the sample schema and invariants
    (``check_sample``) as a dataset line would be. The workers' sentence verdicts are dropped, so
    that merge judges every sentence itself (a hand-edited shard gains nothing by editing them)."""
    from mvtec_ref.build import Processed
    from mvtec_ref.dataset import check_sample, read_jsonl, schema_problems
    from mvtec_ref.sources import SourceImage

    expected = range(k - 1, header["images"], n)
    count = [0]  # lines checked, the header included

    def check(line) -> list[str]:
        count[0] += 1
        if count[0] == 1:
            return _check_header(line)
        found = schema_problems("shard", line)
        if found:
            return found[:1]
        if "format" in line:
            return ["(line): a second header"]
        i = count[0] - 2
        if i >= len(expected) or line["index"] != expected[i]:
            return [f"index: image {line['index']} does not belong here in shard {k}/{n}"]
        if (line["record"] is None) == (line["error"] is None):
            return ["record: exactly one of record and error must be given"]
        if line["record"] is not None:
            found = check_sample(line["record"], size_cuts=size_cuts, placeholder_ids=True)
            if found:
                return [f"record.{found[0]}"]
            for i, ref in enumerate(line["record"]["refs"]):
                for j, sentence in enumerate(ref["sentences"]):
                    if sentence["origin"] != "template":  # merge checks these; others come later
                        return [f"record.refs[{i}].sentences[{j}].origin: {sentence['origin']!r} in a "
                                "shard, which holds template sentences only"]  # fmt: skip
        return []

    items = 0
    for _, item in read_jsonl(path, what="shard file", check=check):
        if count[0] == 1:
            continue
        index = item.pop("index")
        source_image = SourceImage(**_tuples(item.pop("source_image"), SourceImage))
        if item.get("error"):
            item["error"] = _error_from_record(item["error"])
        item["unfaithful"] = None
        items += 1
        yield index, source_image, Processed(**item)
    if items != len(expected):
        raise MvtecRefError(
            f"{path}: holds {items} of its {len(expected)} images (truncated?); rerun build --shard {k}/{n}"
        )


def _images_digest(images) -> str:
    text = "".join(f"{im.image_path}\t{im.mask_path}\n" for im in images)
    return hashlib.sha256(text.encode()).hexdigest()


def _error_record(error: errors.SampleError) -> dict:
    return {"class": type(error).__name__, "path": error.path, "problem": error.problem}


def _error_from_record(record: dict) -> errors.SampleError:
    cls = getattr(errors, record["class"], None)
    if not (isinstance(cls, type) and issubclass(cls, errors.SampleError)):
        cls = errors.SampleError
    return cls(record["path"], record["problem"])


def _jsonable(value):
    """``dataclasses.asdict`` output with tuples as lists (JSON's only sequence)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _tuples(record: dict, cls) -> dict:
    """Undo ``_jsonable`` for the fields of dataclass ``cls`` whose default is a tuple."""
    out = dict(record)
    for field in dataclasses.fields(cls):
        default = field.default
        if field.name in out and isinstance(default, tuple):
            out[field.name] = _deep_tuple(out[field.name])
    return out


def _deep_tuple(value):
    return tuple(_deep_tuple(v) for v in value) if isinstance(value, list) else value


def _config_from_record(record: dict):
    from mvtec_ref.build import BuildConfig
    from mvtec_ref.regions import RegionConfig
    from mvtec_ref.splits import SplitConfig

    try:
        fields = _tuples(record, BuildConfig)
        fields["regions"] = RegionConfig.from_record(record["regions"])
        fields["splits"] = SplitConfig(**_tuples(record["splits"], SplitConfig))
        config = BuildConfig(**fields)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise DatasetError(f"shard config does not match this toolkit's BuildConfig ({error})") from None
    for part, default in (
        (config, BuildConfig()),
        (config.regions, RegionConfig()),
        (config.splits, SplitConfig()),
    ):
        for field in dataclasses.fields(part):
            value, expected = getattr(part, field.name), getattr(default, field.name)
            if dataclasses.is_dataclass(expected):
                continue
            kinds = (int, float) if type(expected) is float else (type(expected),)
            if not isinstance(value, kinds) or (isinstance(value, bool) and type(expected) is not bool):
                raise DatasetError(
                    f"shard config: {field.name}: {value!r} is not a {type(expected).__name__} "
                    "(an edited shard?)"
                )
    config.splits.check()
    cuts = config.regions.size_cuts
    numbers = len(cuts) == 2 and all(isinstance(c, int | float) and not isinstance(c, bool) for c in cuts)
    if config.seed < 0 or not numbers or not 0 < cuts[0] < cuts[1] <= 1:
        raise DatasetError("shard config: seed or size_cuts out of range (an edited shard?)")
    return config


def _version() -> str:
    from mvtec_ref import __version__

    return __version__
