"""What a referring expression asserts, and which regions of an image satisfy it.

A ``Claims`` value is the meaning of one sentence: a defect type (or "any anomaly"),
a set of allowed grid cells, a place in the object's own frame (near an edge or corner,
the head or tip of an elongated object, the centre, rim or a clock direction of a round
one), a size bucket, tone, colour, shape, an extreme ("the leftmost", "the largest") and
a count. ``denotation`` returns the region ids of an
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
    edges: frozenset | None = None  # box frames: sides the region lies near ("top", "left")
    end: str | None = None  # axis frames: "start" (wider end, e.g. head), "end" (tip) or "middle"
    ring: str | None = None  # round frames: "center" or "rim"
    clock: int | None = None  # round frames: clock direction 1-12 from the centre

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
    if claims.shape is not None and region["shape"]["word"] != claims.shape:
        return False
    return _place_matches(claims, region)


def region_place(region: dict) -> dict:
    """The region's ``place`` (``mvtec_ref.regions.frame.place``); records written before frames
    had one get the box-frame edges from ``rel_position``."""
    place = region.get("place")
    if place is not None:
        return place
    from mvtec_ref.regions.frame import EDGE_BAND

    rx, ry = region["rel_position"]
    near = (("top", ry <= EDGE_BAND), ("bottom", ry >= 1 - EDGE_BAND), ("left", rx <= EDGE_BAND),
            ("right", rx >= 1 - EDGE_BAND))  # fmt: skip
    return {"edges": [side for side, yes in near if yes]}


# A clock direction fits a region whose direction from the centre is within one hour of it.
CLOCK_TOLERANCE_DEG = 30.0


def _place_matches(claims: Claims, region: dict) -> bool:
    if claims.edges is None and claims.end is None and claims.ring is None and claims.clock is None:
        return True
    place = region_place(region)
    if claims.edges is not None and not claims.edges <= set(place.get("edges") or ()):
        return False
    if claims.end is not None and place.get("end") != claims.end:
        return False
    if claims.ring is not None and place.get("ring") != claims.ring:
        return False
    if claims.clock is not None:
        from mvtec_ref.regions.frame import clock_distance

        if place.get("clock") is None or clock_distance(place["angle"], claims.clock) > CLOCK_TOLERANCE_DEG:
            return False
    return True


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
