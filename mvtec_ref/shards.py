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
    """``"K/N"`` -> ``(K, N)`` with ``1 <= K <= N``; MvtecRefError otherwise."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise MvtecRefError(f"--shard {text!r}: expected K/N, e.g. 3/8 (shard 3 of 8)") from None
    if not 1 <= k <= n:
        raise MvtecRefError(f"--shard {text!r}: K must be between 1 and N (shards are numbered 1..N)")
    return k, n


def build_shard(root: Path, out: Path, config, k: int, n: int, *, workers: int = 1, progress=None) -> dict:
    """Process shard ``k`` of ``n`` of the images under ``root`` and write it to the file ``out``
    (atomically). Returns the shard's header."""
    from mvtec_ref.build import _process_all, scan_source
    from mvtec_ref.fileio import write_text_atomic

    k, n = parse_shard(f"{k}/{n}")
    out = Path(out)
    if out.is_dir():
        raise MvtecRefError(f"{out}: is a folder; a shard is one file (e.g. shards/{k:03d}-of-{n:03d}.jsonl)")
    if out.exists():  # replace only an earlier shard file, never a file of the user's
        try:
            _read_header(out)
        except MvtecRefError:
            raise MvtecRefError(
                f"{out}: exists and is not a shard file written by build --shard; refusing to replace "
                "it (choose another --out)"
            ) from None
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


def merge_shards(paths: Sequence[Path], out: Path, *, reviews: Path | None = None):
    """Join the shard files ``paths`` (all N of one ``build --shard``, any order) into the dataset
    ``out``: byte-identical to ``build`` of the same root and options. A missing, duplicated or
    foreign shard raises MvtecRefError naming it, before anything is written."""
    from mvtec_ref.build import finish_build
    from mvtec_ref.sources import ScanResult

    if not paths:
        raise MvtecRefError("merge: no shard files given")
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
    for k in sorted(seen):
        for index, source_image, done in _read_items(seen[k], k, n, by_path[seen[k]]):
            slots[index] = (source_image, done)
    scan = ScanResult(
        images=[slot[0] for slot in slots],
        problems=[_error_from_record(p) for p in first["scan_problems"]],
        vocabulary=first["vocabulary"],
    )
    if _images_digest(scan.images) != first["images_digest"]:
        raise MvtecRefError(f"merge: the shards' images do not add up to the scanned list ({first_path})")
    processed = (slot[1] for slot in slots)
    return finish_build(Path(first["root"]), out, config, scan, processed, reviews=reviews)


def _read_header(path: Path) -> dict:
    try:
        with path.open(encoding="utf-8") as f:
            header = json.loads(f.readline())
    except FileNotFoundError:
        raise MvtecRefError(f"{path}: shard file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MvtecRefError(f"{path}: not a shard file written by build --shard ({error})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise MvtecRefError(f"{path}: not a shard file written by build --shard (no {FORMAT} header)")
    return header


def _read_items(path: Path, k: int, n: int, header: dict) -> Iterator[tuple]:
    from mvtec_ref.build import Processed
    from mvtec_ref.sources import SourceImage

    expected = range(k - 1, header["images"], n)
    count = 0
    with path.open(encoding="utf-8") as f:
        f.readline()
        for line_no, line in enumerate(f, start=2):
            try:
                item = json.loads(line)
                index = item.pop("index")
                source_image = SourceImage(**_tuples(item.pop("source_image"), SourceImage))
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise MvtecRefError(f"{path} line {line_no}: malformed shard line ({error})") from None
            if count >= len(expected) or index != expected[count]:
                raise MvtecRefError(f"{path} line {line_no}: image {index} does not belong to shard {k}/{n}")
            if item.get("error"):
                item["error"] = _error_from_record(item["error"])
            yield index, source_image, Processed(**item)
            count += 1
    if count != len(expected):
        raise MvtecRefError(
            f"{path}: holds {count} of its {len(expected)} images (truncated?); rerun build --shard {k}/{n}"
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
        return BuildConfig(**fields)
    except (KeyError, TypeError) as error:
        raise DatasetError(f"shard config does not match this toolkit's BuildConfig ({error})") from None


def _version() -> str:
    from mvtec_ref import __version__

    return __version__
