"""The Python API: ``mvtec_ref.load(DIR)`` gives splits, records and sentences; pixels are read
only when asked for (``image()``, ``mask()``).

Shapes: ``image()`` is ``(H, W, 3)`` uint8 RGB at the source file's size (grayscale files come
back as three equal channels); ``mask()`` is ``(H, W)`` uint8 {0, 1}, the union of the target
regions (all zero for a no-target sentence). ``resize_pair`` is the one resize rule of the API
and the baseline: the image by area averaging when it shrinks and bilinear when it grows, the
mask by nearest neighbour, both to ``size x size``; the exports keep the original size and
``mvtec-ref evaluate`` maps masks of another size back with nearest neighbour.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SPLIT_ORDER = ("train", "val", "test")


def load(dataset: str | Path) -> RefDataset:
    """Read a dataset directory (``mvtec-ref build``'s output) through the toolkit's one checked
    reader (``mvtec_ref.dataset.open_dataset``: schema and invariants, DatasetError naming the
    file, line and field); no image is decoded here."""
    from mvtec_ref.dataset import open_dataset

    opened = open_dataset(Path(dataset).expanduser())
    records = [Record._from_line(line, opened.root) for line in opened]
    return RefDataset(opened.path, opened.manifest, opened.root, records)


def read_image(root: Path, line: dict) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of a samples.jsonl ``line``'s image under the source ``root``: its
    size read from the header and bounded before decoding, checked against the line
    (``mvtec_ref.dataset.read_image``); grayscale files come back as three equal channels."""
    from mvtec_ref.dataset import read_image as read_checked

    array = read_checked(root, line)
    return np.repeat(array[:, :, None], 3, axis=2) if array.ndim == 2 else array


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Square resize: area averaging when shrinking (no aliasing of thin defects), else bilinear."""
    import cv2

    shrink = size < max(image.shape[:2])
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resize_pair(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(size, size, 3)`` image and ``(size, size)`` mask (nearest neighbour: still {0, 1})."""
    import cv2

    return resize_image(image, size), cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)


@dataclass(frozen=True, eq=False)
class Record:
    """One image of the dataset with its regions and refs (a ``samples.jsonl`` line)."""

    image_id: int
    id: str
    category: str
    defect_type: str
    split: str
    width: int
    height: int
    image_path: Path  # absolute: the source root joined with the line's relative path
    regions: tuple[dict, ...]
    refs: tuple[dict, ...]
    line: dict = field(repr=False)  # everything samples.jsonl holds for this image
    sentences: tuple[Sentence, ...] = field(default=(), repr=False)

    @classmethod
    def _from_line(cls, line: dict, root: Path) -> Record:
        record = cls(
            line["image_id"], line["id"], line["category"], line["defect_type"], line["split"],
            line["width"], line["height"], root / line["image_path"], tuple(line["regions"]),
            tuple(line["refs"]), line,
        )  # fmt: skip
        sentences = tuple(
            Sentence(
                s["sent_id"],
                ref["ref_id"],
                s["text"],
                tuple(s["tokens"]),
                s["origin"],
                ref["kind"],
                tuple(ref["region_ids"]),
                record,
            )  # fmt: skip
            for ref in line["refs"]
            for s in ref["sentences"]
        )
        object.__setattr__(record, "sentences", sentences)
        return record

    def image(self) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB, read from the source file now."""
        return read_image(self.image_path.parent, {**self.line, "image_path": self.image_path.name})

    def mask(self, region_ids=None) -> np.ndarray:
        """``(H, W)`` uint8 {0, 1}: the union of ``region_ids`` (None: every region, the whole mask)."""
        from mvtec_ref.regions.mask import decode_rle

        out = np.zeros((self.height, self.width), np.uint8)
        for region in self.regions:
            if region_ids is None or region["region_id"] in region_ids:
                out |= decode_rle(region["segmentation"])
        return out


@dataclass(frozen=True, eq=False)
class Sentence:
    """One referring sentence; ``region_ids`` is its target (empty: it refers to nothing)."""

    sent_id: int
    ref_id: int
    text: str
    tokens: tuple[str, ...]
    origin: str  # template, llm or human
    kind: str  # universal, type, location, ..., no_target
    region_ids: tuple[int, ...]
    record: Record = field(repr=False)

    @property
    def no_target(self) -> bool:
        return not self.region_ids

    def image(self) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB of the sentence's image."""
        return self.record.image()

    def mask(self) -> np.ndarray:
        """``(H, W)`` uint8 {0, 1}: the target (all zero when ``no_target``)."""
        return self.record.mask(self.region_ids)


@dataclass(frozen=True, eq=False)
class Split:
    name: str
    records: tuple[Record, ...]

    @property
    def sentences(self) -> tuple[Sentence, ...]:
        return tuple(s for r in self.records for s in r.sentences)

    def torch(self, size: int | None = None):
        """A ``torch.utils.data.Dataset`` of (image, sentence, mask), see ``TorchDataset``."""
        from mvtec_ref.torch_dataset import TorchDataset

        return TorchDataset(self, size=size)

    def __repr__(self) -> str:
        return f"Split({self.name!r}, {len(self.records)} images, {len(self.sentences)} sentences)"


class RefDataset:
    """A dataset directory: ``splits`` by name, every ``records`` and ``sentences``, the ``manifest``."""

    def __init__(self, path: Path, manifest: dict, root: Path, records: list[Record]) -> None:
        self.path, self.manifest, self.root = path, manifest, root
        self.records = tuple(records)
        found = {r.split for r in records}
        names = [s for s in SPLIT_ORDER if s in found] + sorted(found - set(SPLIT_ORDER))
        self.splits = {n: Split(n, tuple(r for r in records if r.split == n)) for n in names}

    @property
    def sentences(self) -> tuple[Sentence, ...]:
        return tuple(s for r in self.records for s in r.sentences)

    def __getitem__(self, split: str) -> Split:
        if split not in self.splits:
            raise KeyError(f"{self.path} has no split {split!r}; it has {', '.join(self.splits)}")
        return self.splits[split]

    def __iter__(self) -> Iterator[str]:
        return iter(self.splits)

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}: {len(s.records)} images" for n, s in self.splits.items())
        return f"RefDataset({str(self.path)!r}, {parts})"
