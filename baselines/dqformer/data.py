"""The baseline reads a dataset directory through ``RefSegDataset``.

Every sentence is an ``Item``; images are grouped with their sentences, so the backbone runs
once per image. Inference: ``inputs(image, sentences)`` (S = ``image_size``).
Training: one unit per image with k of its sentences (``group``), so the backbone runs once
for k sentences; ``collate_groups`` says which image each sentence belongs to.
Images are resized (area/bilinear), masks with nearest-neighbour. Augmentation acts on
(image, mask, text) together so the text stays true: a horizontal flip also swaps left/right
words; brightness/contrast jitter leaves tone words true (they compare a region with its surroundings).

Negatives: a defect image has few sentences that name nothing in it (one "other type" ref),
too few to teach the model to read the type instead of just finding the defect. With
``negative_share`` > 0, each training slot of a defect image is, with that chance, a sentence
with an empty target: its own no-target ones, or a sentence written for another defect type of
the same category that the faithfulness checker finds denotes nothing here. Defect-free
training images (MVTec's train/good: most of the data) can be thinned per epoch with
``good_per_epoch``.

Training keys are ``(epoch, image)`` pairs so that every unit's sentences and augmentation are
a pure function of (seed, epoch, image): the same batch comes back after ``--resume``, with
any number of workers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mvtec_ref.api import read_image, resize_image  # the API's rules, so both read and resize alike
from mvtec_ref.dataset import Dataset, as_dataset
from mvtec_ref.errors import DatasetError

UNIVERSAL_PROMPT = "anomaly"
_MIRROR = {"left": "right", "right": "left", "leftmost": "rightmost", "rightmost": "leftmost"}
# "gap left by a missing cable": 'left' as a verb is not a side.
_SIDE_WORD = re.compile(r"\b(leftmost|rightmost|left|right)\b(?! (?:by|behind|over)\b)", re.IGNORECASE)


_CLOCK = re.compile(r"\b(1[0-2]|[1-9]) o'clock\b")


def mirror_text(text: str) -> str:
    """The sentence that is true of the horizontally flipped image."""

    def swap(m: re.Match) -> str:
        word = m.group(1)
        out = _MIRROR[word.lower()]
        return out.capitalize() if word[0].isupper() else out

    text = _SIDE_WORD.sub(swap, text)
    # clock directions on round objects mirror too: 2 o'clock <-> 10 o'clock (12 and 6 stay)
    return _CLOCK.sub(lambda m: f"{(12 - int(m.group(1))) % 12 or 12} o'clock", text)


@dataclass(frozen=True)
class Item:
    record: int  # index into RefSegDataset.records
    ref: int  # index into the record's refs; -1: a borrowed or edited sentence (target below)
    sent_id: int
    text: str
    region_ids: tuple[int, ...] = ()  # the target when ref is -1 (empty: a sentence naming nothing)


BORROWED_PER_IMAGE = 24  # candidates checked per defect image when building its negative pool


def negative_pools(records: list[dict], items: list[Item], vocabulary: str, seed: int) -> list[list[Item]]:
    """Per record: sentences whose target there is empty. Defect-free records get none (all of
    their sentences are negatives already). Borrowed sentences come from records of the same
    category with another defect type and are kept only when ``check_sentence`` says they
    denote nothing in this record."""
    from annotate import load_vocabulary
    from annotate.faithful import OK, check_sentence

    vocab = load_vocabulary(vocabulary)
    texts: dict[tuple[str, str], set[str]] = {}
    for record in records:
        for ref in record["refs"]:
            if ref["region_ids"] and ref.get("kind") != "universal":
                key = (record["category"], record["defect_type"])
                texts.setdefault(key, set()).update(s["text"] for s in ref["sentences"])
    pools: list[list[Item]] = [[] for _ in records]
    for item in items:
        if not records[item.record]["refs"][item.ref]["region_ids"] and records[item.record]["regions"]:
            pools[item.record].append(item)
    for r, record in enumerate(records):
        if not record["regions"]:
            continue
        candidates = sorted(
            {t for (cat, typ), ts in texts.items() if cat == record["category"]
             and typ != record["defect_type"] for t in ts}
        )  # fmt: skip
        rng = np.random.default_rng([seed, r, 13])
        chosen = rng.permutation(len(candidates))[:BORROWED_PER_IMAGE]
        for j in sorted(chosen):
            if check_sentence(candidates[j], [], record, vocab).verdict == OK:
                pools[r].append(Item(r, -1, -1, candidates[j]))
    return pools


CONTRAST_SEED = 31


def contrast_pools(
    records: list[dict], items: list[Item], root: Path, vocabulary: str, seed: int
) -> list[list[Item]]:
    """Per defect record: its own sentences with one claim edited (``annotate.contrast``, the
    edits of the contrast sets), each with the target every judge confirms: a place, type, size
    or count that no region has (empty), or another region ("the leftmost" -> "the rightmost").
    These are the minimal pairs that make the words matter: the image is the same, one word
    changes, and the answer changes with it. Seeded per sentence; the image is read once."""
    from annotate import load_vocabulary
    from annotate.contrast import Evidence, probes_for_sentence

    vocab = load_vocabulary(vocabulary)
    pools: list[list[Item]] = [[] for _ in records]
    evidence = None
    for item in items:
        record = records[item.record]
        if not record["regions"]:
            continue
        if evidence is None or evidence.record is not record:
            evidence = Evidence(record, vocab, root)  # one image's pixels in memory at a time
        rng = np.random.default_rng([seed, item.sent_id, CONTRAST_SEED])
        for edit in probes_for_sentence(item.text, evidence, rng):
            pools[item.record].append(Item(item.record, -1, -1, edit["text"], tuple(edit["region_ids"])))
    return pools


def load_split(dataset: Dataset | Path, split: str) -> tuple[dict, list[dict]]:
    """(manifest, records of one split in file order); ``dataset`` opened and checked by
    ``mvtec_ref.dataset`` unless it is already an open ``Dataset``."""
    dataset = as_dataset(dataset)
    records = dataset.split(split)
    if not records:
        raise DatasetError(f"{dataset.path}: no image in split {split!r}")
    return dataset.manifest, records


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
        negative_share: float = 0.0,
        contrast_share: float = 0.0,
        part_share: float = 0.0,
        universal_share: float = 0.0,
        focus_epochs: int = 0,
        focus_share: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.dataset = dataset.path if isinstance(dataset, Dataset) else Path(dataset)
        self.manifest, self.records = load_split(dataset, split)
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
        # Without text there is nothing for a negative to contradict: the ablation gets none.
        self.negative_share = 0.0 if no_language or not augment else negative_share
        self.negatives: list[list[Item]] = [[] for _ in self.records]
        vocabulary = self.manifest.get("config", {}).get("refs", {}).get("vocabulary", "mvtec_ad")
        if self.negative_share > 0:
            self.negatives = negative_pools(self.records, self.items, vocabulary, seed)
        self.contrast_share = 0.0 if no_language or not augment else contrast_share
        self.contrast: list[list[Item]] = [[] for _ in self.records]
        if self.contrast_share > 0:
            self.contrast = contrast_pools(self.records, self.items, self.root, vocabulary, seed)
        self.is_good = [not r["regions"] for r in self.records]
        # The sampler by sentence kind: part-scope sentences, the only ones that need the words to
        # pick among an image's defects, are otherwise rare slots (about 1% of an epoch's).
        self.part_share = part_share if augment else 0.0
        self.parts = part_pools(self.records, self.items)
        # The universal prompt is one sentence of a defect image's dozen: the model with words meets
        # "anomaly" in 6-7% of its slots, the ablation in all of them. Not in the focus epochs,
        # whose point is that the union answers few slots; the ablation gets none (nothing to add).
        self.universal_share = 0.0 if no_language or not augment else universal_share
        self.universals = universal_pools(self.records, self.items)
        # The focus epochs (issue 33): while the union of an image's defects answers most training
        # sentences, the words stay silent; the first epochs show only sentences it does not answer.
        # The ablation has no words to pick a defect with: it gets none, as it gets no negatives.
        self.focus_epochs = focus_epochs if augment and not no_language and any(self.parts) else 0
        self.focus_share = focus_share

    def part_share_at(self, epoch: int) -> float:
        return self.focus_share if epoch < self.focus_epochs else self.part_share

    def universal_share_at(self, epoch: int) -> float:
        return 0.0 if epoch < self.focus_epochs else self.universal_share

    def __len__(self) -> int:
        return len(self.items)

    def image(self, record: dict) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB at the original size, read as the API reads it (size from the
        header, bounded, checked against the record; grayscale as three equal channels)."""
        return read_image(self.root, record)

    def target(self, item: Item) -> np.ndarray:
        """``(H, W)`` uint8 {0, 1}: the union of the sentence's target regions (original size)."""
        return self.union(item.record, self.region_ids(item))

    def region_ids(self, item: Item) -> list[int]:
        return (
            list(item.region_ids)
            if item.ref < 0
            else self.records[item.record]["refs"][item.ref]["region_ids"]
        )

    def union(self, record_index: int, region_ids=None, decoded: dict | None = None) -> np.ndarray:
        """``(H, W)`` uint8 {0, 1}: the union of some regions of an image (None: all of them);
        ``decoded`` (``decoded_regions``) spares decoding them again."""
        record = self.records[record_index]
        decoded = self.decoded_regions(record_index) if decoded is None else decoded
        out = np.zeros((record["height"], record["width"]), np.uint8)
        for region_id, mask in decoded.items():
            if region_ids is None or region_id in region_ids:
                out |= mask
        return out

    def decoded_regions(self, record_index: int) -> dict[int, np.ndarray]:
        from mvtec_ref.regions.mask import decode_rle

        return {r["region_id"]: decode_rle(r["segmentation"]) for r in self.records[record_index]["regions"]}

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

    def group(self, epoch: int, record_index: int, k: int, draw: int | None = None) -> dict:
        """Training unit: one image with ``k`` of its sentences drawn at random (with repetition
        when it has fewer), each slot of a defect image replaced with chance ``negative_share`` by
        one from its negative pool (empty target), then with chance ``contrast_share`` by an edited
        sentence, then after the focus epochs with chance ``universal_share`` by one of its
        universal sentences ("anomaly": every region), then, on an image with part-scope
        sentences, with chance ``part_share`` (in a focus epoch ``focus_share``) by one of those
        (so that share of its slots is part-scope whatever the other shares); augmented together.
        Pure function of (seed, epoch, record_index, draw): ``draw`` tells apart two draws of one
        image in one epoch. ``image (3, S, S)``,
        ``target (k, S, S)`` long, ``defects (S, S)`` bool (every region of the image: what is
        not a slot's target there is a wrong answer to it), ``input_ids``/``attention_mask`` ``(k, L)``."""
        import cv2
        import torch

        rng = np.random.default_rng([self.seed, epoch, record_index] + ([] if draw is None else [draw]))
        mine = self.by_record[record_index]
        if self.no_language and not self.is_good[record_index]:
            # "anomaly" on a defect image names every defect: a sentence without a target there
            # would teach the ablation two answers to the same input.
            mine = [i for i in mine if self.has_target(self.items[i])]
        items = [self.items[mine[j]] for j in rng.choice(len(mine), size=k, replace=len(mine) < k)]
        items = _swap_in(items, self.negatives[record_index], self.negative_share, rng)
        items = _swap_in(items, self.contrast[record_index], self.contrast_share, rng)
        items = _swap_in(items, self.universals[record_index], self.universal_share_at(epoch), rng)
        items = _swap_in(items, self.parts[record_index], self.part_share_at(epoch), rng)
        s = self.image_size
        image = self.resized_image(record_index)
        decoded = self.decoded_regions(record_index)  # once per unit: k targets and the defects
        # every slot is a sentence of this image (its own, its pools'), so its regions are these
        own = [self.union(record_index, self.region_ids(it), decoded) for it in items]
        targets = np.stack([cv2.resize(t, (s, s), interpolation=cv2.INTER_NEAREST) for t in own])
        defects = cv2.resize(self.union(record_index, None, decoded), (s, s), interpolation=cv2.INTER_NEAREST)
        texts = [self.text_of(it) for it in items]
        if self.augment:
            flip = self.hflip and rng.random() < 0.5
            if flip:
                image, targets, defects = image[:, ::-1], targets[:, :, ::-1], defects[:, ::-1]
                texts = [mirror_text(t) for t in texts]
            if self.color_jitter > 0:
                gain = 1 + rng.uniform(-self.color_jitter, self.color_jitter)
                contrast = 1 + rng.uniform(-self.color_jitter, self.color_jitter)
                mean = image.mean()
                image = np.clip(((image - mean) * contrast + mean) * gain, 0, 1)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "target": torch.from_numpy(np.ascontiguousarray(targets)).long(),
            "defects": torch.from_numpy(np.ascontiguousarray(defects)).bool(),
            **self.tokenize(texts),
        }

    def texts(self) -> list[str]:
        """Every sentence this split can feed the model, sorted: each item's, its negative pool's,
        and with flips their mirror images."""
        items = self.items + [
            it for pools in (self.negatives, self.contrast) for pool in pools for it in pool
        ]
        texts = {self.text_of(it) for it in items}
        if self.augment and self.hflip:
            texts |= {mirror_text(t) for t in texts}
        return sorted(texts)

    def has_target(self, item: Item) -> bool:
        return bool(self.region_ids(item))


def part_pools(records: list[dict], items: list[Item]) -> list[list[Item]]:
    """Per record: its part-scope sentences (the target is some, not all, of its regions)."""
    from mvtec_ref.evaluate import target_scope

    pools: list[list[Item]] = [[] for _ in records]
    for item in items:
        record = records[item.record]
        if item.ref >= 0 and target_scope(record, record["refs"][item.ref]) == "part":
            pools[item.record].append(item)
    return pools


def universal_pools(records: list[dict], items: list[Item]) -> list[list[Item]]:
    """Per record: its universal sentences with a target ("anomaly", "any defect": every region)."""
    pools: list[list[Item]] = [[] for _ in records]
    for item in items:
        ref = records[item.record]["refs"][item.ref] if item.ref >= 0 else None
        if ref is not None and ref.get("kind") == "universal" and ref["region_ids"]:
            pools[item.record].append(item)
    return pools


def _swap_in(items: list[Item], pool: list[Item], share: float, rng: np.random.Generator) -> list[Item]:
    """Each slot replaced, with chance ``share``, by a random item of ``pool``; nothing is drawn
    when the pool is empty or the share 0 (the unit's other draws stay those of a run without)."""
    if not pool or share <= 0:
        return items
    swap = rng.random(len(items)) < share
    picks = rng.integers(len(pool), size=len(items))
    return [pool[p] if s else it for it, s, p in zip(items, swap, picks, strict=True)]


def open_split(dataset: Path, split: str, config, tokenizer, *, training: bool = False) -> RefSegDataset:
    """The one way the baseline opens a split: sizes, text and seed from ``config``
    (a ``DQFormerConfig``); ``training`` adds the augmentation and the extra negatives."""
    options = {}
    if training:
        options = dict(augment=True, hflip=config.hflip, color_jitter=config.color_jitter,
                       negative_share=config.negative_share,
                       contrast_share=config.contrast_share, part_share=config.part_share,
                       universal_share=config.universal_share,
                       focus_epochs=config.focus_epochs, focus_share=config.focus_share)  # fmt: skip
    return RefSegDataset(dataset, split, tokenizer=tokenizer, image_size=config.image_size,
                         max_tokens=config.max_tokens, no_language=config.no_language, seed=config.seed,
                         **options)  # fmt: skip


class TrainGroups:
    """Map-style view for the DataLoader: key ``(epoch, j)`` -> ``dataset.group(epoch, r, k)`` with
    r the j-th image of that epoch: every defect image plus ``good_per_epoch`` of the defect-free
    ones, drawn afresh each epoch (seeded), so every epoch has the same length.

    With chance ``multi_region_share`` a unit is instead one of the images with part-scope
    sentences (several regions; drawn uniformly, seeded by (epoch, j)): the images where the words
    must pick among the defects are then a set share of every batch, however few the split has
    (46 of 254 training images in the ablation's dataset, behind 80% composites). In the dataset's
    focus epochs every unit is one of them."""

    def __init__(
        self,
        dataset: RefSegDataset,
        sentences_per_image: int,
        good_per_epoch: float = 1.0,
        composite_share: float = 0.0,
        multi_region_share: float = 0.0,
    ) -> None:
        from baselines.dqformer.composite import Composites

        self.dataset = dataset
        # with this chance a unit is a composite (composite.py): another image's defect pasted in
        self.composites = Composites(dataset, composite_share) if composite_share > 0 else None
        self.k = sentences_per_image
        records = [r for r, items in enumerate(dataset.by_record) if items]
        self.defect = [r for r in records if not dataset.is_good[r]]
        self.good = [r for r in records if dataset.is_good[r]]
        self.n_good = min(len(self.good), round(good_per_epoch * len(self.good)))
        self.multi = [r for r in self.defect if dataset.parts[r]]
        self.multi_share = multi_region_share if self.multi else 0.0
        self._epoch: tuple[int, list[int]] | None = None

    def __len__(self) -> int:
        return len(self.defect) + self.n_good

    def epoch_records(self, epoch: int) -> list[int]:
        if self._epoch is None or self._epoch[0] != epoch:
            rng = np.random.default_rng([self.dataset.seed, epoch, 11])
            good = [self.good[j] for j in sorted(rng.permutation(len(self.good))[: self.n_good])]
            self._epoch = (epoch, sorted(self.defect + good))
        return self._epoch[1]

    def __getitem__(self, key: tuple[int, int]) -> dict:
        share = 1.0 if self.multi and key[0] < self.dataset.focus_epochs else self.multi_share
        if share > 0:
            rng = np.random.default_rng([self.dataset.seed, key[0], key[1], 37])
            if rng.random() < share:
                r = self.multi[int(rng.integers(len(self.multi)))]
                return self.dataset.group(key[0], r, self.k, draw=key[1])
        epoch, r = key[0], self.epoch_records(key[0])[key[1]]
        view = self.composites.view(epoch, r) if self.composites is not None else None
        if view is not None:
            return view.group(epoch, 0, self.k)
        return self.dataset.group(epoch, r, self.k)


def collate_groups(groups: list[dict]) -> dict:
    """Images ``(N, 3, S, S)`` and their ``defects (N, S, S)``; per sentence ``target (B, S, S)``,
    tokens ``(B, L)`` and ``image_index (B,)`` (which image each sentence belongs to), B = N * k."""
    import torch

    batch = {
        "image": torch.stack([g["image"] for g in groups]),
        "target": torch.cat([g["target"] for g in groups]),
        "defects": torch.stack([g["defects"] for g in groups]),
        "input_ids": torch.cat([g["input_ids"] for g in groups]),
        "attention_mask": torch.cat([g["attention_mask"] for g in groups]),
        "image_index": torch.cat([torch.full((len(g["target"]),), n) for n, g in enumerate(groups)]),
    }
    return batch


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
