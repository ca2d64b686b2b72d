"""What a referring expression asserts, and which regions of an image satisfy it.

A ``Claims`` value is the meaning of one sentence: a defect type (or "any anomaly"),
a set of allowed grid cells, a size bucket, tone, colour, shape, an extreme ("the
leftmost", "the largest") and a count. ``denotation`` returns the region ids of an
image that the sentence picks out. The generator writes sentences from claims; the
parser (``annotate.parse``) reads claims back from text on its own, and the checker
compares what the text denotes with the ref's target.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# Grid cells (row, col) of each stored location word (mvtec_ref.regions.describe).
CELL_OF_WORD = {
    "top left": (0, 0), "top": (0, 1), "top right": (0, 2),
    "left": (1, 0), "center": (1, 1), "right": (1, 2),
    "bottom left": (2, 0), "bottom": (2, 1), "bottom right": (2, 2),
}  # fmt: skip
ALL_CELLS = frozenset(CELL_OF_WORD.values())

# What a location term in a sentence allows: rows and sides are whole rows/columns, as a
# reader takes "near the top" to include the top corners; corners and center are cells.
TERM_CELLS = {
    "top": frozenset((0, c) for c in range(3)),
    "bottom": frozenset((2, c) for c in range(3)),
    "left": frozenset((r, 0) for r in range(3)),
    "right": frozenset((r, 2) for r in range(3)),
    "center": frozenset({(1, 1)}),
    "top left": frozenset({(0, 0)}),
    "top right": frozenset({(0, 2)}),
    "bottom left": frozenset({(2, 0)}),
    "bottom right": frozenset({(2, 2)}),
}

EXTREMES = ("leftmost", "rightmost", "topmost", "lowest", "largest", "smallest")


@dataclass(frozen=True)
class Claims:
    universal: bool = False
    defect_type: str | None = None
    plural: bool | None = None  # grammatical number of the head noun, when the words show it
    count: int | None = None
    cells: frozenset | None = None
    size: str | None = None  # "small" | "medium" | "large"
    tone: str | None = None  # "darker" | "brighter"
    colour: str | None = None
    shape: str | None = None  # "elongated" | "round" | "irregular"
    extreme: str | None = None

    def with_(self, **changes) -> Claims:
        return replace(self, **changes)

    def is_empty(self) -> bool:
        return not self.universal and self.defect_type is None


def matches(claims: Claims, region: dict, defect_type: str) -> bool:
    """Does one region (a samples.jsonl region record) satisfy every non-extreme claim?"""
    if claims.defect_type is not None and claims.defect_type != defect_type:
        return False
    if claims.cells is not None and CELL_OF_WORD[region["location"]] not in claims.cells:
        return False
    if claims.size is not None and region["size"] != claims.size:
        return False
    if claims.tone is not None and region["appearance"]["tone"] != claims.tone:
        return False
    if claims.colour is not None and region["appearance"]["colour"] != claims.colour:
        return False
    return claims.shape is None or region["shape"]["word"] == claims.shape


def denotation(claims: Claims, regions: list[dict], defect_type: str) -> set[int]:
    """Region ids that the claims pick out among ``regions`` (all of one image)."""
    if claims.is_empty():
        return set()
    chosen = [r for r in regions if matches(claims, r, defect_type)]
    if claims.extreme is not None and chosen:
        key = _EXTREME_KEYS[claims.extreme]
        best = max(key(r) for r in chosen)
        chosen = [r for r in chosen if key(r) == best]
    return {r["region_id"] for r in chosen}


_EXTREME_KEYS = {
    "leftmost": lambda r: -r["centroid"][0],
    "rightmost": lambda r: r["centroid"][0],
    "topmost": lambda r: -r["centroid"][1],
    "lowest": lambda r: r["centroid"][1],
    "largest": lambda r: r["area"],
    "smallest": lambda r: -r["area"],
}
