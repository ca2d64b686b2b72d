"""The baseline reads a dataset directory through ``RefSegDataset``.

Every sentence is an ``Item``; images are grouped with their sentences, so the backbone runs
once per image. Inference: ``inputs(image, sentences)`` (S = ``image_size``).
Training: one unit per image with k of its sentences (``group``), so the backbone runs once
for k sentences; ``collate_groups`` says which image each sentence belongs to.
Images are resized (area/bilinear), masks with nearest-neighbour. Augmentation acts on
(image, mask, text) together so the text stays true: a horizontal flip also swaps left/right
words; brightness/contrast jitter leaves tone words true (they compare a region with its surroundings).

Training keys are ``(epoch, image)`` pairs so that every unit's sentences and augmentation are
a pure function of (seed, epoch, image): the same batch comes back after ``--resume``, with
any number of workers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mvtec_ref.build import iter_samples, load_manifest
from mvtec_ref.errors import DatasetError

UNIVERSAL_PROMPT = "anomaly"
_MIRROR = {"left": "right", "right": "left", "leftmost": "rightmost", "rightmost": "leftmost"}
# "gap left by a missing cable": 'left' as a verb is not a side.
_SIDE_WORD = re.compile(r"\b(leftmost|rightmost|left|right)\b(?! (?:by|behind|over)\b)", re.IGNORECASE)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Square resize: area averaging when shrinking (no aliasing of thin defects), else bilinear."""
    import cv2

    shrink = size < max(image.shape[:2])
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def mirror_text(text: str) -> str:
    """The sentence that is true of the horizontally flipped image."""

    def swap(m: re.Match) -> str:
        word = m.group(1)
        out = _MIRROR[word.lower()]
        return out.capitalize() if word[0].isupper() else out

    return _SIDE_WORD.sub(swap, text)


@dataclass(frozen=True)
class Item:
    record: int  # index into RefSegDataset.records
    ref: int  # index into the record's refs
    sent_id: int
    text: str


def load_split(dataset: Path, split: str) -> tuple[dict, list[dict]]:
    """(manifest, records of one split in file order)."""
    manifest = load_manifest(dataset)
    records = [r for _, r in iter_samples(dataset) if split == "all" or r["split"] == split]
    if not records:
        raise DatasetError(f"{dataset}: no image in split {split!r}")
    return manifest, records


class RefSegDataset:
    """Every sentence of every image of ``split`` (all refs: with, without and with all targets)."""

    def __init__(
        self,
        dataset: Path,
        split: str,
        *,
        tokenizer,
        image_size: int,
        max_tokens: int = 20,
        augment: bool = False,
        hflip: bool = True,
        color_jitter: float = 0.0,
        no_language: bool = False,
        seed: int = 0,
    ) -> None:
        self.dataset = Path(dataset)
        self.manifest, self.records = load_split(self.dataset, split)
        self.root = Path(self.manifest["source"]["root"])
        self.items = [
            Item(r, k, s["sent_id"], s["text"])
            for r, record in enumerate(self.records)
            for k, ref in enumerate(record["refs"])
            for s in ref["sentences"]
        ]
        self.by_record: list[list[int]] = [[] for _ in self.records]
        for i, item in enumerate(self.items):
            self.by_record[item.record].append(i)
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.max_tokens = max_tokens
        self.augment = augment
        self.hflip = hflip
        self.color_jitter = color_jitter
        self.no_language = no_language
        self.seed = seed

    def __len__(self) -> int:
        return len(self.items)

    def image(self, record: dict) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB at the original size."""
        import cv2

        path = self.root / record["image_path"]
        array = cv2.imread(str(path), cv2.IMREAD_COLOR)  # grayscale files come back as 3 equal channels
        if array is None:
            raise DatasetError(f"{path}: image missing or unreadable (is the source root {self.root} right?)")
        if array.shape[:2] != (record["height"], record["width"]):
            raise DatasetError(
                f"{path}: image is {array.shape[1]}x{array.shape[0]} but the dataset says "
                f"{record['width']}x{record['height']}; rebuild the dataset"
            )
        return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)

    def target(self, item: Item) -> np.ndarray:
        """``(H, W)`` uint8 {0, 1}: the union of the sentence's target regions (original size)."""
        from mvtec_ref.regions.mask import decode_rle

        record = self.records[item.record]
        ref = record["refs"][item.ref]
        masks = {g["region_id"]: g["segmentation"] for g in record["regions"]}
        out = np.zeros((record["height"], record["width"]), np.uint8)
        for region_id in ref["region_ids"]:
            out |= decode_rle(masks[region_id])
        return out

    def tokenize(self, texts: list[str]) -> dict:
        batch = self.tokenizer(
            texts, padding="max_length", max_length=self.max_tokens, truncation=True, return_tensors="pt"
        )
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def resized_image(self, record_index: int) -> np.ndarray:
        """``(S, S, 3)`` float32 in [0, 1]."""
        image = resize_image(self.image(self.records[record_index]), self.image_size)
        return image.astype(np.float32) / 255.0

    def text_of(self, item: Item) -> str:
        return UNIVERSAL_PROMPT if self.no_language else item.text

    def inputs(self, record_index: int, item_indices: list[int]) -> dict:
        """Inference on one image: ``image (1, 3, S, S)`` and ``input_ids``/``attention_mask``
        ``(k, L)`` for k of its sentences; no target, no augmentation."""
        import torch

        image = self.resized_image(record_index)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None],
            **self.tokenize([self.text_of(self.items[i]) for i in item_indices]),
        }

    def group(self, epoch: int, record_index: int, k: int) -> dict:
        """Training unit: one image with ``k`` of its sentences drawn at random (with repetition
        when it has fewer), augmented together. Pure function of (seed, epoch, record_index).
        ``image (3, S, S)``, ``target (k, S, S)`` long, ``input_ids``/``attention_mask`` ``(k, L)``."""
        import cv2
        import torch

        rng = np.random.default_rng([self.seed, epoch, record_index])
        mine = self.by_record[record_index]
        items = [self.items[mine[j]] for j in rng.choice(len(mine), size=k, replace=len(mine) < k)]
        s = self.image_size
        image = self.resized_image(record_index)
        targets = np.stack(
            [cv2.resize(self.target(it), (s, s), interpolation=cv2.INTER_NEAREST) for it in items]
        )
        texts = [self.text_of(it) for it in items]
        if self.augment:
            if self.hflip and rng.random() < 0.5:
                image, targets = image[:, ::-1], targets[:, :, ::-1]
                texts = [mirror_text(t) for t in texts]
            if self.color_jitter > 0:
                gain = 1 + rng.uniform(-self.color_jitter, self.color_jitter)
                contrast = 1 + rng.uniform(-self.color_jitter, self.color_jitter)
                mean = image.mean()
                image = np.clip(((image - mean) * contrast + mean) * gain, 0, 1)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "target": torch.from_numpy(np.ascontiguousarray(targets)).long(),
            **self.tokenize(texts),
        }


class TrainGroups:
    """Map-style view for the DataLoader: key ``(epoch, record_index)`` -> ``dataset.group(...)``."""

    def __init__(self, dataset: RefSegDataset, sentences_per_image: int) -> None:
        self.dataset = dataset
        self.k = sentences_per_image
        self.records = [r for r, items in enumerate(dataset.by_record) if items]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        return self.dataset.group(key[0], self.records[key[1]], self.k)


def collate_groups(groups: list[dict]) -> dict:
    """Images ``(N, 3, S, S)``; per sentence ``target (B, S, S)``, tokens ``(B, L)`` and
    ``image_index (B,)`` (which image each sentence belongs to), B = N * k."""
    import torch

    return {
        "image": torch.stack([g["image"] for g in groups]),
        "target": torch.cat([g["target"] for g in groups]),
        "input_ids": torch.cat([g["input_ids"] for g in groups]),
        "attention_mask": torch.cat([g["attention_mask"] for g in groups]),
        "image_index": torch.cat([torch.full((len(g["target"]),), n) for n, g in enumerate(groups)]),
    }


def epoch_batches(n: int, batch_size: int, *, seed: int, epoch: int, rank: int = 0, world: int = 1):
    """The batches of ``(epoch, index)`` keys this process sees in one epoch.

    One seeded permutation per epoch, shared by every process; process ``rank`` takes every
    ``world``-th batch-sized slice, and the tail that does not fill a batch on every process is
    dropped, so all processes take the same number of steps (DDP needs that).
    """
    order = np.random.default_rng([seed, epoch, 7]).permutation(n)
    per_step = batch_size * world
    steps = n // per_step
    mine = [order[s * per_step + rank * batch_size :][:batch_size] for s in range(steps)]
    return [[(epoch, int(j)) for j in batch] for batch in mine]
