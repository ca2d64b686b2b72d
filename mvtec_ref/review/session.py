"""What the review app knows: the dataset's sentences, their keys and the latest decisions.

``ReviewSession`` reads samples.jsonl once, keeping only byte offsets of its lines and a few
small integers per sentence (the page filters and counts on those), and re-reads one line when
the page opens its image, so memory stays small on datasets of tens of thousands of sentences.
Nothing here reads a path taken from a request: images are addressed by their index.
"""

from __future__ import annotations

import datetime
import json
import os
import threading
from collections import OrderedDict
from pathlib import Path

from mvtec_ref.build import SAMPLES, load_manifest
from mvtec_ref.errors import DatasetError
from mvtec_ref.review.checks import sentence_checks
from mvtec_ref.review.keys import target_key
from mvtec_ref.review.store import ReviewWriter, load_decisions

BROWSER_FORMATS = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".bmp": "image/bmp",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
STATES = {None: 0, "accept": 1, "reject": 2, "rewrite": 3}


class ReviewSession:
    def __init__(self, dataset: Path, reviews: Path, reviewer: str) -> None:
        self.dataset = Path(dataset)
        self.manifest = load_manifest(dataset)
        self.root = Path(self.manifest["source"]["root"])
        self.reviewer = reviewer
        self.writer = ReviewWriter(reviews)
        self.decisions, self.problems = load_decisions(reviews)
        self._vocab = None
        self._cache: OrderedDict[int, dict] = OrderedDict()  # image index -> parsed record
        self._lock = threading.Lock()  # the caches are shared by the server's worker threads
        self._bytes: OrderedDict[int, tuple[bytes, str]] = OrderedDict()  # image index -> served file
        names = {"category": {}, "defect": {}, "kind": {}, "origin": {}}
        self.names = names
        self.offsets: list[int] = []  # image index -> byte offset of its line (and the end, last)
        self.first_item: list[int] = []  # image index -> item index of its first sentence
        self.images: dict[str, list] = {"id": [], "category": [], "defect": []}
        self.items: dict[str, list[int]] = {k: [] for k in ("image", "ref", "sent", "kind", "origin")}
        self.keys: list[tuple[str, str, str]] = []
        self.written: dict[int, str] = {}  # item -> the reviewer's text, for sentences build --reviews wrote
        path = self.dataset / SAMPLES
        try:
            f = path.open("rb")
            # kept open for the session: a rebuild replaces the folder, but this file stays the one
            # the index was made from (records are read with pread, safe from several threads)
            self._fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise DatasetError(
                f"{path}: not found; is {dataset} a dataset built by mvtec-ref build?"
            ) from None
        with f:
            offset = 0
            for n, line in enumerate(f, start=1):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DatasetError(f"{path} line {n}: malformed JSON: {error.msg}") from None
                self._index(record, offset)
                offset += len(line)
        self.offsets.append(offset)  # the end of the last line

    def _index(self, record: dict, offset: int) -> None:
        image = len(self.offsets)
        self.offsets.append(offset)
        self.first_item.append(len(self.keys))
        self.images["id"].append(record["id"])
        self.images["category"].append(_code(self.names["category"], record["category"]))
        self.images["defect"].append(
            _code(self.names["defect"], f"{record['category']}/{record['defect_type']}")
        )
        for r, ref in enumerate(record["refs"]):
            target = target_key(record, ref["region_ids"])
            for s, sentence in enumerate(ref["sentences"]):
                text = sentence["text"]
                if sentence["origin"] == "human" and sentence.get("rewrite_of"):
                    # a rewrite applied by build --reviews stands for the sentence it replaced: its
                    # decision is the rewrite, so it counts as reviewed, and a new decision replaces it
                    self.written[len(self.keys)] = text
                    text = sentence["rewrite_of"]
                for field, value in (
                    ("image", image),
                    ("ref", r),
                    ("sent", s),
                    ("kind", _code(self.names["kind"], ref["kind"])),
                    ("origin", _code(self.names["origin"], sentence["origin"])),
                ):
                    self.items[field].append(value)
                self.keys.append((record["image_path"], target, text))

    # -- what the page reads ----------------------------------------------------------------

    def index(self) -> dict:
        """Every sentence as columns of small integers (the page's filters, counts and order)."""
        return {
            "dataset": self.dataset.resolve().name,
            "reviewer": self.reviewer,
            "reviews_file": str(self.writer.path),
            "removed": self.removed(),
            "names": {k: list(v) for k, v in self.names.items()},
            "images": self.images,
            "items": {**self.items, "state": [STATES[self._decision(k)] for k in self.keys]},
            "problems": self.problems,
        }

    def removed(self) -> int:
        """Sentences that build --reviews dropped as rejected by this reviews file: no longer in the
        dataset, but reviewed, so the page counts them as ``stats`` does."""
        review = self.manifest.get("review") or {}
        if review.get("file") != self.writer.path.name:
            return 0
        return int(review.get("total", {}).get("rejected", 0))

    def _decision(self, key) -> str | None:
        line = self.decisions.get(key)
        return line["decision"] if line else None

    def record(self, image: int) -> dict:
        """The record of image ``image`` (an index into samples.jsonl), parsed on demand."""
        with self._lock:
            if image in self._cache:
                self._cache.move_to_end(image)
                return self._cache[image]
        start, end = self.offsets[image], self.offsets[image + 1]
        record = json.loads(os.pread(self._fd, end - start, start))
        with self._lock:
            self._cache[image] = record
            if len(self._cache) > 64:
                self._cache.popitem(last=False)
        return record

    def image_view(self, image: int) -> dict:
        """One image for the page: size, region outlines as polygons, refs with sentences and states."""
        record = self.record(image)
        refs, item = [], self.first_item[image]
        for ref in record["refs"]:
            sentences = []
            for sentence in ref["sentences"]:
                line = self.decisions.get(self.keys[item]) or {}
                sentences.append(
                    {
                        "item": item,
                        "text": self.keys[item][2],  # for a written sentence, the one it replaced
                        "origin": sentence["origin"],
                        "decision": line.get("decision"),
                        "rewrite": line.get("rewrite"),
                        "asserted": bool(line.get("asserted")),
                        "reasons": line.get("reasons", []),
                    }
                )
                item += 1
            refs.append({"kind": ref["kind"], "region_ids": ref["region_ids"], "sentences": sentences})
        return {
            "index": image,
            "id": record["id"],
            "image_path": record["image_path"],
            "category": record["category"],
            "defect_type": record["defect_type"],
            "split": record["split"],
            "width": record["width"],
            "height": record["height"],
            "regions": [
                {
                    "region_id": g["region_id"],
                    "bbox": g["bbox"],
                    "size": g["size"],
                    "location": g["location"],
                    "polygons": _polygons(g["segmentation"]),
                }
                for g in record["regions"]
            ],
            "refs": refs,
        }

    def image_bytes(self, image: int) -> tuple[bytes, str]:
        """The image file and its media type; the last 32 are kept, since the page asks for the next
        images before they are shown.

        Files a browser decodes are sent as they are: lossless (defects can be one pixel wide),
        and on a loopback connection faster than re-encoding, whose PNG decode alone takes 60 ms
        for a 1,024 px noisy PNG here (a jump to an unseen image: 45 ms as is, 110 ms re-encoded
        as JPEG, measured by benchmarks/bench_review.py). Other formats (TIFF) become PNG.
        """
        with self._lock:
            if image in self._bytes:
                self._bytes.move_to_end(image)
                return self._bytes[image]
        found = self._encode(self.record(image))
        with self._lock:
            self._bytes[image] = found
            if len(self._bytes) > 32:
                self._bytes.popitem(last=False)
        return found

    def _encode(self, record: dict) -> tuple[bytes, str]:
        path = record["image_path"]
        media = BROWSER_FORMATS.get(Path(path).suffix.lower())
        if media:
            return (self.root / path).read_bytes(), media
        import cv2

        pixels = self._decoded(record)
        ok, png = cv2.imencode(
            ".png", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR) if pixels.ndim == 3 else pixels
        )
        return png.tobytes(), "image/png"

    # -- what the page writes ---------------------------------------------------------------

    def check(self, item: int, text: str) -> list[dict]:
        """Every sentence check on ``text`` as a sentence for ``item``'s target."""
        image, ref = self.items["image"][item], self.items["ref"][item]
        record = self.record(image)
        target = record["refs"][ref]["region_ids"]
        results = sentence_checks(text, target, record, self.vocab(), lambda: self._decoded(record))
        return [{"check": r.check, "ok": r.ok, "reason": r.reason} for r in results]

    def decide(self, item: int, decision: str, text: str = "", keep: bool = False) -> dict:
        """Write one decision line (flushed, fsynced) and return the item's new state.

        A rewrite that fails a check is written only with ``keep`` (then ``asserted``); otherwise
        the result has ``refused`` and the checks' reasons, and nothing is written.
        """
        image_path, target, original = self.keys[item]
        if decision == "accept" and item in self.written:  # accepting the reviewer's text keeps it
            previous = self.decisions.get(self.keys[item]) or {}
            decision, text, keep = "rewrite", previous.get("rewrite", self.written[item]), True
        line = {
            "image": image_path,
            "target": target,
            "text": original,
            "decision": decision,
            "reviewer": self.reviewer,
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        if decision == "rewrite":
            text = " ".join(text.split())
            if not text:
                return {
                    "refused": True,
                    "checks": [{"check": "text", "ok": False, "reason": "empty sentence"}],
                }
            checks = self.check(item, text)
            failed = [f"{c['check']}: {c['reason']}" for c in checks if not c["ok"]]
            if failed and not keep:
                return {"refused": True, "checks": checks}
            line.update(rewrite=text, asserted=bool(failed), reasons=failed)
        record = self.record(self.items["image"][item])
        line.update(
            category=record["category"],
            defect_type=record["defect_type"],
            kind=self.names_of("kind", self.items["kind"][item]),
        )
        self.writer.append(line)
        key = self.keys[item]
        if decision == "clear":
            self.decisions.pop(key, None)
        else:
            self.decisions[key] = line
        # the same text can sit under several refs with the same target: all share the decision
        return {
            "state": STATES[None if decision == "clear" else decision],
            "decision": line["decision"],
            "rewrite": line.get("rewrite"),
            "asserted": line.get("asserted", False),
            "reasons": line.get("reasons", []),
            "items": [i for i, k in self._same_key(item) if k == key],
        }

    def _same_key(self, item: int):
        image = self.items["image"][item]
        end = self.first_item[image + 1] if image + 1 < len(self.first_item) else len(self.keys)
        for i in range(self.first_item[image], end):
            yield i, self.keys[i]

    def names_of(self, field: str, code: int) -> str:
        return list(self.names[field])[code]

    def vocab(self):
        if self._vocab is None:
            from annotate import load_vocabulary

            self._vocab = load_vocabulary(self.manifest["config"]["refs"].get("vocabulary", "mvtec_ad"))
        return self._vocab

    def _decoded(self, record: dict):
        from mvtec_ref.regions.mask import decode_image

        path = record["image_path"]
        return decode_image((self.root / path).read_bytes(), path)


def _code(table: dict, name: str) -> int:
    return table.setdefault(name, len(table))


def _polygons(rle: dict) -> list[list[int]]:
    """Outer and hole rings of a region as flat ``[x0, y0, x1, y1, ...]`` pixel lists (fill even-odd)."""
    import cv2

    from mvtec_ref.regions.mask import decode_rle

    contours, _ = cv2.findContours(decode_rle(rle), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).tolist() for c in contours]
