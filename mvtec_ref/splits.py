"""Benchmark splits over images (never over expressions), seeded and stratified.

Protocols:

- ``standard``: every (category, defect_type) stratum of the source's test images —
  good test images included, as no-target samples — is shuffled and cut by
  ``ratios`` into train/val/test; with three or more images every split gets at least
  one. The source's own training images (defect-free) all go to train.
- ``open-set``: per category with two or more defect types, ``heldout_types`` types
  (picked by seed) are held out of train and val and appear only in test; the rest is
  split as in ``standard``.
- ``cross-category``: ``heldout_categories`` whole categories (picked by seed), their
  training images included, appear only in test.

Every random choice uses ``numpy.random.default_rng([seed, crc32(key)])`` for its own
key, so a stratum's split does not depend on which other strata exist.
"""

from __future__ import annotations

import math
import zlib
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from mvtec_ref.errors import MvtecRefError

PROTOCOLS = ("standard", "open-set", "cross-category")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitConfig:
    protocol: str = "standard"
    # train/val/test shares of each stratum of the source's test images: enough test
    # images per defect type for per-type scores, a small val set for model selection.
    ratios: tuple[float, float, float] = (0.6, 0.1, 0.3)
    # open-set: defect types per category held out of train/val.
    heldout_types: int = 1
    # cross-category: whole categories held out of train/val.
    heldout_categories: int = 3

    def check(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise MvtecRefError(
                f"unknown split protocol {self.protocol!r}; use one of {', '.join(PROTOCOLS)}"
            )
        finite = all(isinstance(r, int | float) and math.isfinite(r) and r >= 0 for r in self.ratios)
        if len(self.ratios) != 3 or not finite or abs(sum(self.ratios) - 1) > 1e-6:
            raise MvtecRefError(f"split ratios {self.ratios} must be three non-negative shares summing to 1")


def assign_splits(records: list[dict], config: SplitConfig, seed: int) -> dict:
    """Set ``record["split"]`` for every record; return what was held out (for the manifest)."""
    config.check()
    heldout_categories: list[str] = []
    heldout_types: dict[str, list[str]] = {}
    categories = sorted({r["category"] for r in records})
    if config.protocol == "cross-category":
        k = min(config.heldout_categories, max(len(categories) - 1, 0))
        heldout_categories = sorted(_choose(categories, k, seed, "cross-category"))
    if config.protocol == "open-set":
        for category in categories:
            types = sorted(
                {r["defect_type"] for r in records if r["category"] == category and r["label_index"]}
            )
            if len(types) >= 2:
                k = min(config.heldout_types, len(types) - 1)
                heldout_types[category] = sorted(_choose(types, k, seed, f"open-set/{category}"))

    strata: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for record in records:
        if record["category"] in heldout_categories or record["defect_type"] in heldout_types.get(
            record["category"], ()
        ):
            record["split"] = "test"
        elif record["source_split"] == "train":
            record["split"] = "train"
        else:
            strata[record["category"], record["defect_type"]].append(record)
    for key in sorted(strata):
        members = sorted(strata[key], key=lambda r: r["id"])
        rng = _rng(seed, f"stratum/{key[0]}/{key[1]}")
        order = rng.permutation(len(members))
        counts = _cut(len(members), config.ratios, rng)
        bounds = np.cumsum(counts)
        for rank, index in enumerate(order):
            members[index]["split"] = SPLITS[int(np.searchsorted(bounds, rank, side="right"))]
    return {
        "protocol": config.protocol,
        "ratios": list(config.ratios),
        "heldout_categories": heldout_categories,
        "heldout_types": heldout_types,
    }


def _cut(n: int, ratios: tuple[float, float, float], rng: np.random.Generator) -> list[int]:
    """Split sizes for ``n`` images: floors, then the leftover images drawn in proportion to
    the fractional parts (so tiny strata still land in every split on average); with
    n >= 3 every split with a positive ratio gets at least one image."""
    exact = [n * r for r in ratios]
    counts = [int(x) for x in exact]
    left = n - sum(counts)
    fractions = np.asarray([x - c for x, c in zip(exact, counts, strict=True)])
    if left:
        for i in rng.choice(3, size=left, replace=False, p=fractions / fractions.sum()):
            counts[int(i)] += 1
    if n >= 3:
        for i in range(3):
            if counts[i] == 0 and ratios[i] > 0:
                donor = max(range(3), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] += 1
    return counts


def _choose(options: list[str], k: int, seed: int, key: str) -> list[str]:
    if k <= 0:
        return []
    picked = _rng(seed, key).choice(len(options), size=k, replace=False)
    return [options[i] for i in sorted(picked)]


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(key.encode())])
