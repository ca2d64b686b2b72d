"""The one reader: every command gets a dataset folder, and every JSON Lines file the toolkit
reads back (shards, predictions, probes, reviews, the paraphrase cache), through this module.

Contract
--------
``open_dataset(folder) -> Dataset`` reads ``manifest.json`` and ``samples.jsonl`` once and
checks, before any command does any work:

- bytes: every line is UTF-8, under ``MAX_LINE_BYTES``, one JSON value with no ``NaN`` or
  ``Infinity`` and no number out of the float range, nested no deeper than Python reads;
- the manifest against ``schemas/manifest.schema.json``, plus the fields commands use
  (``config.regions.size_cuts``, ``config.refs.vocabulary``);
- every sample against ``schemas/sample.schema.json`` and the invariants that cost no pixel
  work: ``id``, ``image_id``, ``ann_id``, ``ref_id`` and ``sent_id`` unique in the file,
  ``region_id`` unique in its image; ``width x height`` at most ``MAX_IMAGE_PIXELS``; each
  region's RLE has the image's size and its runs cover exactly that many pixels; its ``area``,
  ``bbox`` and ``area_ratio`` are those of the RLE, its ``size`` bucket that of the manifest's
  cuts, its centroid inside its box; refs target regions of their own image; a sentence's
  ``tokens`` are the words of its ``text``; a defect image has regions and a good one none;
- the manifest's ``counts`` against the samples; at least one sample.

A failure raises ``DatasetError`` with one line, ``<file>:<line>: <field>: <problem>``. With
``problems=[]`` nothing is raised: every failure is appended there instead, and the records that
passed are kept (``mvtec-ref validate`` reports them all that way). Left to ``validate``: overlap
between regions (needs the masks decoded), sentence faithfulness (the parser), the source files,
and ``--deep`` (masks re-read, the pixel judge).

A ``Dataset`` is a sequence of sample records (plain dicts, as in ``samples.jsonl``, in file
order) with the manifest, the source root, the splits, lazily decoded masks and images; it is
path-like (``Path(ds)`` is its folder), and ``as_dataset`` lets a function take either::

    ds = open_dataset("build/demo/dataset")
    ds.manifest["counts"]["images"], len(ds)
    for record in ds.split("test"): ...
    ds.mask(record, ref["region_ids"])  # (H, W) uint8 {0, 1}, decoded on demand
    ds.image(record)                    # (H, W[, 3]) uint8 RGB, its size checked against the record

``read_jsonl`` is the same line reader for the other files: each line is parsed as above and
passed to the caller's ``check``; a bad line is refused (``DatasetError``) or, with
``problems=[]``, reported there and skipped (``mvtec-ref review`` and ``build --reviews`` skip
the reviews file's bad lines; the paraphrase cache skips torn lines).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from mvtec_ref.errors import DatasetError
from mvtec_ref.limits import MAX_IMAGE_PIXELS, MAX_LINE_BYTES, MAX_MANIFEST_BYTES

MANIFEST = "manifest.json"
SAMPLES = "samples.jsonl"
SPLITS = ("train", "val", "test")


# -- parsing ------------------------------------------------------------------------------------


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def parse_json(data: bytes | str):
    """One JSON value, strictly: no NaN/Infinity, every number finite. ValueError otherwise
    (its message says where: ``line L column C: ...`` for malformed text)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(
                f"not UTF-8 text (byte 0x{data[error.start]:02x} at column {error.start + 1})"
            ) from None
    try:
        return json.loads(data, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as error:
        where = f"column {error.colno}" if error.lineno == 1 else f"line {error.lineno} column {error.colno}"
        raise ValueError(f"malformed JSON at {where}: {error.msg}") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except ValueError as error:  # NaN, 1e999, an integer of over 4,300 digits
        raise ValueError(f"{str(error).split(';')[0][:120]}") from None


def _lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """``(line number, bytes without the newline, ended by a newline)``; lines are bounded."""
    with open(path, "rb") as f:
        n = 0
        while True:
            line = f.readline(MAX_LINE_BYTES + 1)
            if not line:
                return
            n += 1
            if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                raise DatasetError(f"{path}:{n}: line is longer than {MAX_LINE_BYTES:,} bytes")
            ended = line.endswith(b"\n")
            yield n, line[:-1] if ended else line, ended


def _open_error(path: Path, what: str, hint: str = "") -> DatasetError:
    if path.is_dir():
        return DatasetError(f"{path}: is a folder, not a {what}")
    if not path.exists():
        return DatasetError(f"{path}: {what} not found{hint}")
    return DatasetError(f"{path}: cannot read the {what}")


def read_jsonl(
    path: Path,
    *,
    what: str,
    check: Callable[[object], list[str]] | None = None,
    problems: list[str] | None = None,
    hint: str = "",
) -> Iterator[tuple[int, object]]:
    """``(line number, value)`` of every good line of the JSON Lines file ``path``.

    ``check(value)`` returns ``"<field>: <problem>"`` strings (empty: good). A bad line (not
    UTF-8, malformed, a failed check) raises ``DatasetError("<path>:<n>: <problem>")``, or, when
    ``problems`` is a list, is reported there with "; skipped" and left out. A last line cut
    short by a kill (no final newline, not parseable) says so. Blank lines are refused too.
    """
    path = Path(path)
    try:
        lines = _lines(path)
        for n, raw, ended in lines:
            found: list[str]
            if not raw.strip():
                found = ["blank line"]
            else:
                try:
                    value = parse_json(raw)
                except ValueError as error:
                    torn = "" if ended else " (the last line, cut short: a write was interrupted?)"
                    found = [f"{error}{torn}"]
                else:
                    found = check(value) if check is not None else []
            if not found:
                yield n, value
                continue
            if problems is None:
                raise DatasetError(f"{path}:{n}: {found[0]}")
            problems.extend(f"{path}:{n}: {p}; skipped" for p in found[:1])
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        raise _open_error(path, what, hint) from None


# -- checks -------------------------------------------------------------------------------------


def _field(json_path: str) -> str:
    """jsonschema's ``$.regions[0].area`` as ``regions[0].area`` (``$``: the whole line)."""
    return json_path[2:] if json_path.startswith("$.") else "(line)" if json_path == "$" else json_path


def json_type(value) -> str:
    names = {type(None): "null", list: "array", str: "string", bool: "boolean", int: "number",
             float: "number", dict: "object"}  # fmt: skip
    return names.get(type(value), type(value).__name__)


def schema_problems(name: str, value) -> list[str]:
    """``"<field>: <problem>"`` for each way ``value`` fails ``schemas/<name>.schema.json``."""
    from mvtec_ref.schema import schema_errors

    if not isinstance(value, dict):
        return [f"(line): is a JSON {json_type(value)}, not an object"]
    out = []
    for error in schema_errors(name, value):
        where, _, problem = error.partition(": ")
        out.append(f"{_field(where)}: {problem}")
    return out


class _Seen:
    """Ids met so far in one file (``check_sample`` keeps them unique)."""

    def __init__(self) -> None:
        self.ids: dict[str, dict] = {k: {} for k in ("id", "image_id", "ann_id", "ref_id", "sent_id")}

    def add(self, key: str, value, where: str) -> str | None:
        seen = self.ids[key]
        if value in seen:
            return f"duplicate {key} {value!r} (first at {seen[value]})"
        seen[value] = where
        return None


def check_sample(
    record, *, seen: _Seen | None = None, where: str = "", size_cuts: Sequence[float] | None = None,
    placeholder_ids: bool = False,
) -> list[str]:  # fmt: skip
    """``"<field>: <problem>"`` for each way ``record`` fails the sample schema or the cheap
    invariants (module docstring). ``seen`` carries ids across a file; ``placeholder_ids``: ids
    not numbered yet (shard lines carry 0), so they are neither schema-checked nor compared."""
    from annotate.parse import tokenize
    from mvtec_ref.regions.describe import size_bucket
    from mvtec_ref.regions.mask import rle_area_bbox

    if placeholder_ids and isinstance(record, dict):
        record = _numbered_copy(record)
    found = schema_problems("sample", record)
    if found:
        return found[:3]
    w, h = record["width"], record["height"]
    if w * h > MAX_IMAGE_PIXELS:
        return [f"width: {w}x{h} image is over the limit of {MAX_IMAGE_PIXELS:,} pixels"]
    if seen is not None and not placeholder_ids:
        for key in ("id", "image_id"):
            dup = seen.add(key, record[key], where)
            if dup:
                found.append(f"{key}: {dup}")
    region_ids: set[int] = set()
    for i, region in enumerate(record["regions"]):
        at = f"regions[{i}]"
        if region["region_id"] in region_ids:
            found.append(f"{at}.region_id: duplicate region_id {region['region_id']} in this image")
        region_ids.add(region["region_id"])
        if seen is not None and not placeholder_ids:
            dup = seen.add("ann_id", region["ann_id"], where)
            if dup:
                found.append(f"{at}.ann_id: {dup}")
        rle = region["segmentation"]
        if rle["size"] != [h, w]:
            found.append(f"{at}.segmentation.size: RLE size {rle['size']} is not the image's [{h}, {w}]")
            continue
        try:
            area, bbox = rle_area_bbox(rle)
        except ValueError as error:
            found.append(f"{at}.segmentation.counts: RLE does not decode ({error})")
            continue
        if area != region["area"]:
            found.append(f"{at}.area: {region['area']} but the RLE holds {area} pixels")
        if bbox is not None and bbox != region["bbox"]:
            found.append(f"{at}.bbox: {region['bbox']} but the RLE spans {bbox}")
        ratio = region["area"] / (w * h)
        if abs(region["area_ratio"] - ratio) > 1e-5 * ratio:
            found.append(
                f"{at}.area_ratio: {region['area_ratio']} but area / (width x height) is {ratio:.6g}"
            )
        elif size_cuts is not None:
            bucket = size_bucket(region["area_ratio"], tuple(size_cuts))
            if bucket != region["size"]:
                found.append(f"{at}.size: {region['size']!r} but area_ratio {region['area_ratio']} is "
                             f"{bucket!r} under the cuts {list(size_cuts)}")  # fmt: skip
        x, y, bw, bh = region["bbox"]
        cx, cy = region["centroid"]
        if not (x <= cx <= x + bw and y <= cy <= y + bh):
            found.append(f"{at}.centroid: {region['centroid']} lies outside its bbox {region['bbox']}")
    if record["label_index"] == 1 and not record["regions"]:
        found.append("regions: a defect image (label_index 1) has no region")
    if record["label_index"] == 0 and record["regions"]:
        found.append("regions: a good image (label_index 0) has regions")
    for i, ref in enumerate(record["refs"]):
        at = f"refs[{i}]"
        if seen is not None and not placeholder_ids:
            dup = seen.add("ref_id", ref["ref_id"], where)
            if dup:
                found.append(f"{at}.ref_id: {dup}")
        unknown = sorted(set(ref["region_ids"]) - region_ids)
        if unknown:
            found.append(f"{at}.region_ids: {unknown} name no region of this image")
        for j, sentence in enumerate(ref["sentences"]):
            if seen is not None and not placeholder_ids:
                dup = seen.add("sent_id", sentence["sent_id"], where)
                if dup:
                    found.append(f"{at}.sentences[{j}].sent_id: {dup}")
            if sentence["tokens"] != (tokenize(sentence["text"]) or [sentence["text"]]):
                found.append(f"{at}.sentences[{j}].tokens: are not the words of its text (tokens are "
                             "annotate.parse.tokenize(text); exports pass them on)")  # fmt: skip
    return found


def _numbered_copy(record: dict) -> dict:
    """``record`` with every id set to 1 (ids a shard leaves for merge to number), copied only
    along the way to the ids."""
    out = {**record, "image_id": 1}
    if isinstance(out.get("regions"), list):
        out["regions"] = [{**g, "ann_id": 1} if isinstance(g, dict) else g for g in out["regions"]]
    if isinstance(out.get("refs"), list):
        out["refs"] = [
            {**r, "ref_id": 1, "sentences": [{**s, "sent_id": 1} if isinstance(s, dict) else s
                                             for s in r["sentences"]]}
            if isinstance(r, dict) and isinstance(r.get("sentences"), list) else r
            for r in out["refs"]
        ]  # fmt: skip
    return out


def check_manifest(manifest) -> list[str]:
    """``"<field>: <problem>"`` for the manifest's schema and the fields commands read."""
    found = schema_problems("manifest", manifest)
    if found:
        return found
    regions = manifest["config"]["regions"]
    cuts = regions.get("size_cuts")
    if not (
        isinstance(cuts, list) and len(cuts) == 2
        and all(isinstance(c, int | float) and not isinstance(c, bool) for c in cuts)
        and 0 < cuts[0] < cuts[1] <= 1
    ):  # fmt: skip
        found.append(f"config.regions.size_cuts: {cuts!r} is not two area ratios 0 < small < large <= 1")
    threshold = regions.get("threshold", 127)
    if not (isinstance(threshold, int) and not isinstance(threshold, bool) and 0 <= threshold < 255):
        found.append(f"config.regions.threshold: {threshold!r} is not a mask value 0-254")
    vocabulary = manifest["config"]["refs"].get("vocabulary", "mvtec_ad")
    if not isinstance(vocabulary, str) or not vocabulary:
        found.append(f"config.refs.vocabulary: {vocabulary!r} is not a vocabulary name")
    return found


# -- the dataset --------------------------------------------------------------------------------


class Dataset(Sequence):
    """A dataset folder, read and checked once by ``open_dataset``: a sequence of its sample
    records in file order, with the manifest beside them."""

    def __init__(self, path: Path, manifest: dict, records: list[dict], lines: list[int], sha256: str):
        self.path = Path(path)
        self.manifest = manifest
        self.records = records
        self.lines = lines  # line number in samples.jsonl of each record
        self.samples_sha256 = sha256

    # the sequence of records
    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]

    def __iter__(self) -> Iterator[dict]:
        return iter(self.records)

    def __repr__(self) -> str:
        return f"Dataset({str(self.path)!r}, {len(self)} samples)"

    def __fspath__(self) -> str:  # ``Path(dataset)`` is its folder, wherever a path is expected
        return str(self.path)

    # what commands read from the manifest
    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def root(self) -> Path:
        """The source tree the records' ``image_path`` and ``mask_path`` are relative to."""
        return Path(self.manifest["source"]["root"])

    @property
    def size_cuts(self) -> tuple[float, float]:
        return tuple(self.manifest["config"]["regions"]["size_cuts"])

    @property
    def vocabulary(self) -> str:
        return self.manifest["config"]["refs"].get("vocabulary", "mvtec_ad")

    def vocab(self):
        """The vocabulary the refs were written with (``annotate.Vocabulary``)."""
        from annotate import load_vocabulary
        from mvtec_ref.errors import MvtecRefError

        try:
            return load_vocabulary(self.vocabulary)
        except (MvtecRefError, OSError, ValueError) as error:
            where = self.path / MANIFEST
            raise DatasetError(
                f"{where}: config.refs.vocabulary: {self.vocabulary!r} cannot be loaded ({error})"
            ) from None

    def where(self, i: int) -> str:
        """``<samples.jsonl>:<line>`` of record ``i``, for messages."""
        return f"{self.path / SAMPLES}:{self.lines[i]}"

    # views
    def split(self, name: str) -> list[dict]:
        """The records of split ``name`` (``"all"``: every record), in file order."""
        if name == "all":
            return list(self.records)
        if name not in SPLITS:
            raise DatasetError(f"unknown split {name!r}; use one of {', '.join(SPLITS)} or all")
        return [r for r in self.records if r["split"] == name]

    def sample(self, sample_id: str) -> dict:
        for record in self.records:
            if record["id"] == sample_id:
                return record
        raise DatasetError(f"{self.path}: no sample {sample_id!r}")

    def image_file(self, record: dict) -> Path:
        return self.root / record["image_path"]

    def image(self, record: dict):
        """``(H, W)`` or ``(H, W, 3)`` uint8 RGB pixels of ``record``'s source image (``read_image``)."""
        return read_image(self.root, record)

    def mask(self, record: dict, region_ids=None):
        """``(H, W)`` uint8 {0, 1}: the union of the record's regions ``region_ids`` (all when
        None), decoded from their RLEs now (nothing is decoded at open)."""
        import numpy as np

        from mvtec_ref.regions.mask import decode_rle

        wanted = None if region_ids is None else set(region_ids)
        out = np.zeros((record["height"], record["width"]), np.uint8)
        for region in record["regions"]:
            if wanted is None or region["region_id"] in wanted:
                out |= decode_rle(region["segmentation"])
        return out


def read_image(root: Path, record: dict):
    """``(H, W)`` or ``(H, W, 3)`` uint8 RGB pixels of ``record``'s image under the source ``root``,
    its size read from the header and bounded before decoding; DatasetError when the file is
    missing, unreadable, or not the size the record says."""
    from mvtec_ref.errors import SampleError
    from mvtec_ref.regions.mask import decode_image

    path = Path(root) / record["image_path"]
    try:
        image = decode_image(path.read_bytes(), str(path))
    except FileNotFoundError:
        raise DatasetError(f"{path}: image not found (is the source root {root} right? moved? rebuild "
                           "the dataset)") from None  # fmt: skip
    except OSError as error:
        raise DatasetError(f"{path}: cannot read the image ({error.strerror or error})") from None
    except SampleError as error:
        raise DatasetError(str(error)) from None
    if image.shape[:2] != (record["height"], record["width"]):
        raise DatasetError(
            f"{path}: image is {image.shape[1]}x{image.shape[0]} but the dataset records "
            f"{record['width']}x{record['height']} (source changed? rebuild the dataset)"
        )
    return image


def open_dataset(
    folder: Path, *, problems: list[str] | None = None, progress: bool | None = False
) -> Dataset:
    """Read and check the dataset folder ``folder`` (module docstring); ``DatasetError`` on the
    first problem, or with ``problems`` a list, every problem appended there and the good records
    kept. ``progress``: a "read" bar, as ``mvtec_ref.progress.progress_bar``."""
    from mvtec_ref.progress import progress_bar

    folder = Path(folder)
    hint = f"; is {folder} a dataset built by mvtec-ref build?"

    def refuse(line: str) -> None:
        if problems is None:
            raise DatasetError(line)
        problems.append(line)

    if not folder.is_dir():
        raise DatasetError(f"{folder}: {'not a folder' if folder.exists() else 'not found'}{hint}")
    manifest_path = folder / MANIFEST
    try:
        if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
            raise DatasetError(f"{manifest_path}: over {MAX_MANIFEST_BYTES:,} bytes; not a manifest")
        data = manifest_path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise _open_error(manifest_path, "manifest", hint) from None
    try:
        manifest = parse_json(data)
    except ValueError as error:
        raise DatasetError(f"{manifest_path}: {error}") from None
    found = check_manifest(manifest)
    if found and (problems is None or not isinstance(manifest, dict)):
        raise DatasetError(f"{manifest_path}: {found[0]}")
    for line in found:
        refuse(f"{manifest_path}: {line}")
    cuts = None if found else manifest["config"]["regions"]["size_cuts"]

    samples_path = folder / SAMPLES
    seen, digest = _Seen(), hashlib.sha256()
    records, lines, totals = [], [], {"images": 0, "regions": 0, "refs": 0, "sentences": 0}
    n = 0
    total = None if found else manifest["counts"]["images"]
    bar = progress_bar(desc="read", unit="img", total=total, progress=progress)
    try:
        for n, raw, ended in _lines(samples_path):
            bar.update()
            digest.update(raw + (b"\n" if ended else b""))
            at = f"{samples_path}:{n}"
            if not raw.strip():
                refuse(f"{at}: blank line")
                continue
            try:
                record = parse_json(raw)
            except ValueError as error:
                torn = "" if ended else " (the last line, cut short: a write was interrupted?)"
                refuse(f"{at}: {error}{torn}")
                continue
            bad = check_sample(record, seen=seen, where=f"line {n}", size_cuts=cuts)
            if bad:
                for p in bad:
                    refuse(f"{at}: {p}")
                continue
            records.append(record)
            lines.append(n)
            totals["images"] += 1
            totals["regions"] += len(record["regions"])
            totals["refs"] += len(record["refs"])
            totals["sentences"] += sum(len(ref["sentences"]) for ref in record["refs"])
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise _open_error(samples_path, "samples file", hint) from None
    finally:
        bar.close()
    if n == 0:
        refuse(f"{samples_path}:1: the file is empty; a dataset holds at least one sample (rebuild it)")
    if not found and len(records) == n:
        counts = manifest["counts"]
        for key, total in totals.items():
            if counts[key] != total:
                refuse(f"{manifest_path}: counts.{key}: {counts[key]} but {samples_path} holds {total}")
    return Dataset(folder, manifest, records, lines, digest.hexdigest())


def as_dataset(dataset: Dataset | Path | str, *, progress: bool | None = False) -> Dataset:
    """``dataset`` itself when already opened, else ``open_dataset(dataset)``: library functions
    take either, and a command opens its dataset once and passes the ``Dataset`` on."""
    return dataset if isinstance(dataset, Dataset) else open_dataset(Path(dataset), progress=progress)
