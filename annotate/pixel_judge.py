"""The pixel judge: is every claim of a sentence visibly true of its target, measured afresh?

The parser-based checker (``annotate.faithful``) asks whether a sentence's logic denotes
its target among the regions *as the region records describe them*; it trusts the stored
tone, colour, shape, location and size words. This judge trusts none of them. It decodes
each region's mask (the RLE in the record) and reads the image's pixels, measures every
property with its own code (nothing from ``mvtec_ref.regions.describe``), and holds every
claim to a stricter margin than generation uses, so that a borderline case never ships.

``read_claims`` reads a sentence with the word lists of ``annotate.parse`` but its own code
(so a fault in one reading does not blind both judges), and also keeps the words the
parser drops ("edge", "corner", "darker" as a comparative, the determiner of "the anomaly").

``RULES`` is the one table: each row names a rule, the kind of claim it tests, its
threshold and why (axis, round and clock rows also want two thirds of the pixels near the
named place, see their functions). A new kind of claim is one new row, one check function in ``_CHECKS``
and, for new words, a line in ``read_claims``. In ``build`` the generator asks a ``Vetter``
about every candidate sentence with a target; ``validate --deep`` runs ``judge_record``.

Shapes: an image is ``(H, W)`` or ``(H, W, 3)`` uint8 RGB; masks are ``(H, W)`` bool;
a frame is ``[x, y, w, h]`` in pixels; relative positions are in [0, 1] of the frame.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from functools import cached_property

import numpy as np

JUDGE_VERSION = "pixel-judge-3"


@dataclass(frozen=True)
class Rule:
    name: str
    claim: str  # the kind of claim it tests (see ``read_claims``)
    threshold: float
    reason: str


# fmt: off
RULES: tuple[Rule, ...] = (
    Rule("number", "number", 0,
         "a singular noun names one target region, a plural noun several; 'the anomaly' is not two"),
    Rule("count", "count", 16,
         "a count equals the number of target regions, each of at least this many pixels (no specks)"),
    Rule("missing_part_look", "look", 0,
         "a missing part or object (its role) is a gap: it has no colour or tone of its own"),
    Rule("look_unmeasured", "look", 0,
         "no colour or tone word where there is nothing to measure (a sentence with no target)"),
    Rule("tone", "tone", 20.0,
         "dark: median gray this far below the lower quartile of a ring around it (bright: above the upper)"),
    Rule("tone_share", "tone", 0.7,
         "... and this share of its pixels on that side of the ring's median (a gap onto a bright backdrop)"),
    Rule("comparative", "comparative", 15.0,
         "'darker'/'brighter' needs other regions to compare with, each this many gray levels the other way"),
    Rule("colour_distinct", "colour", 20.0,
         "a colour word needs CIE76 delta E of at least this against the surrounding ring (generation: 12)"),
    Rule("colour_name", "colour", 6.0,
         "the mean colour lies inside the word's hue/lightness band with this many degrees to spare"),
    Rule("colour_surround", "colour", 15.0,
         "the surround fails the word even with its band this much wider: no 'brown' on brown leather"),
    Rule("size_tiny", "size", 0.002,
         "'tiny': area under this share of the image"),
    Rule("size_small", "size", 0.008,
         "'small': area under this share of the image (generation: 1%)"),
    Rule("size_medium_low", "size", 0.0125,
         "'medium-sized': area at least this share of the image (generation: 1%)"),
    Rule("size_medium_high", "size", 0.04,
         "'medium-sized': area under this share of the image (generation: 5%)"),
    Rule("size_large", "size", 0.0625,
         "'large'/'big': area at least this share of the image (generation: 5%)"),
    Rule("shape_min_area", "shape", 25,
         "no shape word for a region of fewer pixels: at that size its outline is the pixel grid"),
    Rule("round_circularity", "shape", 0.85,
         "'round': 4 pi area / perimeter^2 at least this (a filled square scores 0.77-0.80, a disc 0.90+)"),
    Rule("round_rect_fill", "shape", 0.85,
         "'round': fills at most this share of its minimum-area rectangle (a disc 0.785, a rectangle 1)"),
    Rule("round_aspect", "shape", 1.5,
         "'round': minimum-area rectangle at most this long for its width"),
    Rule("elongated", "shape", 4.0,
         "'long/thin/narrow/elongated': length over width at least this (generation: moment ratio 3)"),
    Rule("irregular", "shape", 0.6,
         "'irregular/ragged': solidity (area / convex hull area) at most this"),
    Rule("place", "place", 2 / 3,
         "a place word only when this share of the pixels lie in those cells of the frame's 3x3 grid"),
    Rule("edge", "edge", 0.15,
         "'edge': two thirds of the pixels within this share of the frame's size from that edge"),
    Rule("corner", "corner", 0.2,
         "'corner': two thirds of the pixels within this share of the frame's size from both its edges"),
    Rule("axis_end", "axis_end", 0.2,
         "'near the head/tip': mean position along the axis this near that end (generation: 0.25)"),
    Rule("axis_middle", "axis_middle", 0.12,
         "'halfway along': mean position along the axis this near its midpoint (generation: 0.15)"),
    Rule("round_center", "round_center", 0.25,
         "'center' of a round object: centroid under this share of the radius out (generation: 0.3)"),
    Rule("round_rim", "round_rim", 0.75,
         "'near the rim' of a round object: centroid this share of the radius out (generation: 0.7)"),
    Rule("clock", "clock", 12.0,
         "'N o'clock': centroid's direction this many degrees from the hour at most (generation: 15)"),
    Rule("extreme_position", "extreme", 0.15,
         "leftmost/topmost...: ahead of every other region by this share of the frame (generation: 0.1)"),
    Rule("extreme_size", "extreme", 1.5,
         "largest/smallest: at least this area ratio over every other region (generation: 1.25)"),
)
# fmt: on
RULE = {rule.name: rule for rule in RULES}
PLACE_SHARE_FOR_EDGES = 2 / 3  # the share used by the edge and corner rows


# -- measuring -------------------------------------------------------------------------


class Look:
    """What one region shows, measured from its mask and the image (no stored descriptor).

    Each group of numbers (where, tone, colour, shape) is measured the first time a rule
    asks for it, so a sentence that claims no colour costs no colour conversion.
    """

    def __init__(self, region_id: int, masks: dict, box: list[int], image: np.ndarray, frame):
        self.region_id = region_id
        self._masks, self._image, self._frame = masks, image, frame
        mask = masks[region_id]
        self._shape_hw = mask.shape
        bx, by, bw, bh = box
        ys, xs = np.nonzero(mask[by : by + bh, bx : bx + bw])
        self._ys, self._xs = ys + by, xs + bx
        self.area = len(xs)
        self.area_ratio = self.area / float(mask.shape[0] * mask.shape[1])

    # where -------------------------------------------------------------------------------
    @cached_property
    def _where(self) -> dict:
        fx, fy, fw, fh = self._frame
        rx = (self._xs + 0.5 - fx) / max(fw, 1)
        ry = (self._ys + 0.5 - fy) / max(fh, 1)
        inside = (rx >= 0) & (rx < 1) & (ry >= 0) & (ry < 1)  # pixels outside the frame are nowhere
        col = np.clip((rx * 3).astype(int), 0, 2)
        row = np.clip((ry * 3).astype(int), 0, 2)
        counts = np.bincount((row * 3 + col)[inside], minlength=9)
        band, corner = RULE["edge"].threshold, RULE["corner"].threshold
        sides = {"top": ry < band, "bottom": ry >= 1 - band, "left": rx < band, "right": rx >= 1 - band}
        near = {
            "top": ry < corner,
            "bottom": ry >= 1 - corner,
            "left": rx < corner,
            "right": rx >= 1 - corner,
        }
        return {
            "rel_centroid": (float(rx.mean()), float(ry.mean())),
            "cells": {(k // 3, k % 3): float(counts[k]) / self.area for k in range(9)},
            "edges": {k: float((inside & v).mean()) for k, v in sides.items()},
            "corners": {f"{r} {c}": float((inside & near[r] & near[c]).mean())
                        for r in ("top", "bottom") for c in ("left", "right")},
        }  # fmt: skip

    @property
    def rel_centroid(self) -> tuple[float, float]:
        """(x, y) of the centroid in the frame; may fall outside [0, 1]."""
        return self._where["rel_centroid"]

    @property
    def cells(self) -> dict:
        """(row, col) -> share of the region's pixels in that cell of the frame's 3x3 grid."""
        return self._where["cells"]

    @property
    def edges(self) -> dict:
        """ "top"/"bottom"/"left"/"right" -> share of pixels within the edge band of the frame."""
        return self._where["edges"]

    @property
    def corners(self) -> dict:
        """ "top left"... -> share of pixels within the corner square of the frame."""
        return self._where["corners"]

    # the window around the region: its crop, and a ring of surrounding material -------------
    @cached_property
    def _window(self) -> tuple:
        import cv2

        H, W = self._shape_hw
        reach = int(np.clip(0.5 * math.sqrt(self.area), 6, 24))
        x0, x1 = max(0, self._xs.min() - reach - 3), min(W, self._xs.max() + reach + 4)
        y0, y1 = max(0, self._ys.min() - reach - 3), min(H, self._ys.max() + reach + 4)
        inside = np.ascontiguousarray(self._masks[self.region_id][y0:y1, x0:x1])
        # Ring = 2 < distance to the region <= reach: skips the annotation's blurred border.
        distance = cv2.distanceTransform((~inside).view(np.uint8), cv2.DIST_L2, 3)
        ring = (distance > 2) & (distance <= reach)
        for other in self._masks.values():  # other defects are not the surrounding material
            ring &= ~other[y0:y1, x0:x1]
        return self._image[y0:y1, x0:x1], inside, ring

    @cached_property
    def _tone(self) -> dict:
        window, inside, ring = self._window
        gray = window if window.ndim == 2 else _gray(window)
        g_in, g_ring = gray[inside], gray[ring]
        ring_median = float(np.median(g_ring)) if g_ring.size else None
        quartiles = tuple(float(q) for q in np.percentile(g_ring, (25, 75))) if g_ring.size else None
        return {
            "gray_median": float(np.median(g_in)),
            "ring_median": ring_median,
            "ring_quartiles": quartiles,
            "darker_share": float((g_in < ring_median).mean()) if ring_median is not None else 0.0,
            "brighter_share": float((g_in > ring_median).mean()) if ring_median is not None else 0.0,
        }

    @property
    def gray_median(self) -> float:
        return self._tone["gray_median"]

    @property
    def ring_median(self) -> float | None:
        """None when nothing but other defects surrounds the region."""
        return self._tone["ring_median"]

    @property
    def ring_quartiles(self) -> tuple[float, float] | None:
        """Lower and upper quartile of the ring's gray: the dark and light parts of a texture."""
        return self._tone["ring_quartiles"]

    @property
    def darker_share(self) -> float:
        """Share of the region's pixels below the ring's median."""
        return self._tone["darker_share"]

    @property
    def brighter_share(self) -> float:
        return self._tone["brighter_share"]

    @cached_property
    def _colour(self) -> tuple:
        """(delta E between the Lab of the mean colours inside and in the ring, HSV of the inside's,
        HSV of the ring's)."""
        import colorsys

        import cv2

        window, inside, ring = self._window
        if window.ndim == 2:
            return None, None, None
        window = np.ascontiguousarray(window)
        mean_in = np.array(cv2.mean(window, mask=inside.view(np.uint8))[:3], np.float32)
        delta_e, ring_hsv = None, None
        if ring.any():
            mean_ring = np.array(cv2.mean(window, mask=ring.view(np.uint8))[:3], np.float32)
            lab = srgb_to_lab(np.stack([mean_in, mean_ring]))
            delta_e = float(np.linalg.norm(lab[0] - lab[1]))
            ring_hsv = colorsys.rgb_to_hsv(*(float(v) / 255.0 for v in mean_ring))
        r, g, b = (float(v) / 255.0 for v in mean_in)
        return delta_e, colorsys.rgb_to_hsv(r, g, b), ring_hsv

    @property
    def delta_e(self) -> float | None:
        """CIE76 difference between the mean colours inside and in the ring; None on grayscale."""
        return self._colour[0]

    @property
    def hsv(self) -> tuple[float, float, float] | None:
        """HSV in [0, 1] of the mean RGB inside; None on grayscale."""
        return self._colour[1]

    @property
    def ring_hsv(self) -> tuple[float, float, float] | None:
        """HSV in [0, 1] of the surrounding ring's mean RGB; None on grayscale or with no ring."""
        return self._colour[2]

    # shape ----------------------------------------------------------------------------
    @cached_property
    def _shape(self) -> dict:
        """Rotation-invariant numbers from the outline (a polygon through boundary pixel centres,
        its staircase smoothed by Teh-Chin; + pi for the half pixel outside the centres)."""
        import cv2

        crop = np.zeros((self._ys.max() - self._ys.min() + 3, self._xs.max() - self._xs.min() + 3), np.uint8)
        crop[self._ys - self._ys.min() + 1, self._xs - self._xs.min() + 1] = 1
        contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_TC89_KCOS)
        perimeter = sum(cv2.arcLength(c, True) for c in contours) + math.pi * len(contours)
        points = np.concatenate([c.reshape(-1, 2) for c in contours]).astype(np.float32)
        # Every boundary pixel's four corners, so that hull and rectangle enclose whole pixels.
        corners = np.concatenate([points + np.array(d, np.float32) for d in ((0, 0), (1, 0), (0, 1), (1, 1))])
        hull_area = cv2.contourArea(cv2.convexHull(corners))
        (_, _), (rw, rh), _ = cv2.minAreaRect(corners)
        circularity = 4 * math.pi * self.area / perimeter**2
        # Length over width of the rectangle with this area and perimeter: right for thin curves too.
        half = perimeter / 4
        disc = half * half - self.area
        along = (half + math.sqrt(disc)) / max(half - math.sqrt(disc), 0.5) if disc > 0 else 1.0
        aspect = max(rw, rh) / max(min(rw, rh), 1e-6)
        return {
            "circularity": float(circularity),
            "rect_fill": float(self.area / max(rw * rh, 1e-6)),
            "aspect": float(aspect),
            "elongation": float(max(aspect, along)),
            "solidity": float(self.area / max(hull_area, 1e-6)),
        }

    @property
    def circularity(self) -> float:
        """4 pi area / perimeter^2: 0.90-0.98 for discs of radius 5-40 px, 0.77-0.80 for squares."""
        return self._shape["circularity"]

    @property
    def rect_fill(self) -> float:
        """Share of its minimum-area rectangle the region fills (disc 0.785, rectangle 1)."""
        return self._shape["rect_fill"]

    @property
    def aspect(self) -> float:
        """Long over short side of the minimum-area rectangle."""
        return self._shape["aspect"]

    @property
    def elongation(self) -> float:
        """Length over width: the larger of ``aspect`` and the equivalent rectangle's (curves)."""
        return self._shape["elongation"]

    @property
    def solidity(self) -> float:
        """Area over convex hull area."""
        return self._shape["solidity"]


@dataclass(frozen=True)
class Scene:
    """Every region of one image, ready to be measured; what the rules compare against."""

    looks: dict  # region_id -> Look
    grayscale: bool
    missing_part: bool
    frame: dict = None  # the record's frame: kind, bbox and, for axis/round kinds, axis or center+radius


def measure_record(record: dict, image: np.ndarray, masks: dict | None = None, vocab=None) -> Scene:
    """Decode each region's RLE once; ``image`` is ``(H, W)`` or ``(H, W, 3)`` RGB uint8.
    ``masks``: region_id -> ``(H, W)`` bool, the decoded RLEs where the caller has them already
    (the build, which has just encoded them). ``vocab``: says which types are gaps (role missing,
    or an object that may be gone); without it, types named "missing ..." are."""
    from pycocotools import mask as mask_utils

    given, masks, boxes = masks, {}, {}
    for region in record["regions"]:
        counts = region["segmentation"]["counts"]
        rle = {"size": list(region["segmentation"]["size"]),
               "counts": counts.encode() if isinstance(counts, str) else counts}  # fmt: skip
        if given is None:
            masks[region["region_id"]] = mask_utils.decode(rle).view(bool)
        else:
            masks[region["region_id"]] = given[region["region_id"]]
        boxes[region["region_id"]] = [int(v) for v in mask_utils.toBbox(rle)]  # from the pixels
    frame = record.get("frame", {}).get("bbox") or [0, 0, record["width"], record["height"]]
    looks = {rid: Look(rid, masks, boxes[rid], image, frame) for rid in masks}
    gap = is_missing_part(record["defect_type"])
    if vocab is not None:
        words = vocab.words(record["category"], record["defect_type"])
        gap = gap or words.role == "missing" or words.absent
    return Scene(looks, image.ndim == 2, gap, record.get("frame") or {})


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """``(N, 3)`` sRGB in 0-255 -> ``(N, 3)`` CIE L*a*b* (D65), the standard formulas (OpenCV's
    float conversion costs ~10 ms a call whatever the size; this is for a few colours)."""
    c = np.asarray(rgb, np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124564, 0.2126729, 0.0193339],
                             [0.3575761, 0.7151522, 0.1191920],
                             [0.1804375, 0.0721750, 0.9503041]])  # fmt: skip
    t = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def is_missing_part(defect_type: str) -> bool:
    """Types that name an absence ("missing_cable", "missing top label")."""
    words = defect_type.lower().replace("-", "_").replace(" ", "_").split("_")
    return "missing" in words or "absent" in words


def _gray(rgb: np.ndarray) -> np.ndarray:
    """``(h, w)`` uint8 luma (Rec. 601) of an ``(h, w, 3)`` RGB window."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


# -- reading the sentence --------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    kind: str  # a Rule.claim
    value: object


TONE_WORD = {"dark": "darker", "bright": "brighter", "light": "brighter"}
COMPARATIVE_WORD = {"darker": "darker", "brighter": "brighter", "lighter": "brighter"}
SIZE_WORD = {"tiny": "tiny", "small": "small", "little": "small", "medium-sized": "medium",
             "medium": "medium", "large": "large", "big": "large"}  # fmt: skip
UNIVERSAL_NOUN = {"anomaly": False, "anomalies": True, "defect": False, "defects": True,
                  "abnormality": False, "abnormalities": True, "region": False, "regions": True}  # fmt: skip
QUANTIFIERS = {"all", "every", "any", "each", "everything"}
# Comparatives of size ("the larger scratch", common in paraphrases) claim the extreme.
SIZE_COMPARATIVE = {"larger": "largest", "bigger": "largest", "smaller": "smallest"}
SIDE = {"top": "top", "upper": "top", "bottom": "bottom", "lower": "bottom", "left": "left", "right": "right"}


def read_claims(text: str, record: dict, vocab) -> list[Claim]:
    """Every claim the sentence makes about its target, read from its words.

    The judge reads the text itself, with the parser's word lists (``annotate.parse``) but not
    its code, so a fault in one reading does not blind both judges. Claim words inside the
    defect phrase ("little chip", "dark spot") are the defect's name, not claims."""
    from annotate import parse as words

    tokens = words.tokenize(text)
    covered, plural = _read_phrase(tokens, record, vocab)
    noun = words.tokenize(vocab.noun(record["category"]))
    free = _without_runs([t for i, t in enumerate(tokens) if i not in covered], noun)
    claims = []
    if covered and plural is not None:
        claims.append(Claim("number", plural))
    elif not covered and any(t in words.UNIVERSAL for t in free):
        claims += _universal_number(tokens)
    free, frame_claims = _read_frame_words(free, record, vocab)
    claims += frame_claims
    rest, cells, extreme, _ = words._take_places(free)  # noqa: SLF001 - the parser's place reading
    looks = []
    for t in rest:
        if t in words.COUNTS:
            claims.append(Claim("count", words.COUNTS[t]))
        if t in TONE_WORD:
            looks.append(Claim("tone", TONE_WORD[t]))
        elif t in COMPARATIVE_WORD:
            looks += [Claim("tone", COMPARATIVE_WORD[t]), Claim("comparative", COMPARATIVE_WORD[t])]
        elif t in SIZE_WORD:
            looks.append(Claim("size", SIZE_WORD[t]))
        elif t in words.COLOURS:
            looks.append(Claim("colour", "gray" if t == "grey" else t))
        elif t in words.SHAPES:
            claims.append(Claim("shape", words.SHAPES[t]))
        elif t in words.EXTREME_WORDS:
            extreme = words.EXTREME_WORDS[t]
        elif t in SIZE_COMPARATIVE:
            extreme = SIZE_COMPARATIVE[t]
    claims += looks
    if any(c.kind in ("tone", "colour") for c in looks):
        claims.append(Claim("look", tuple(sorted({c.kind for c in looks if c.kind in ("tone", "colour")}))))
    if cells is not None:
        claims.append(Claim("place", cells))
    for i, t in enumerate(free):
        if t in ("edge", "edges") and i and free[i - 1] in SIDE:
            claims.append(Claim("edge", SIDE[free[i - 1]]))
        elif t in ("corner", "corners"):
            side = SIDE.get(free[i - 1]) if i else None
            row = SIDE.get(free[i - 2]) if i > 1 else None
            claims.append(Claim("corner", f"{row} {side}" if row in ("top", "bottom") and side else None))
    if extreme is not None:
        claims.append(Claim("extreme", extreme))
    return claims


def _read_frame_words(tokens: list[str], record: dict, vocab) -> tuple[list[str], list[Claim]]:
    """Words of the record's axis frame (the ends' names from the vocabulary, "halfway") or round
    frame ("N o'clock", the rim word or a bare "edge"/"rim", "center"/"middle"): (other tokens,
    claims). Box and texture frames have none (their edges and corners are read later)."""
    from annotate.parse import tokenize

    kind = (record.get("frame") or {}).get("kind")
    if kind not in ("axis", "round"):
        return tokens, []
    rule = vocab.frame(record["category"])
    ends = [tokenize(e) for e in rule["ends"]]
    rim = tokenize(rule["rim"])
    rest, claims, i = [], [], 0
    while i < len(tokens):
        t = tokens[i]
        if kind == "axis":
            named = [k for k, e in enumerate(ends) if e and tokens[i : i + len(e)] == e]
            if named:
                claims.append(Claim("axis_end", ("start", "end")[named[0]]))
                i += len(ends[named[0]])
                continue
            if t == "halfway":
                claims.append(Claim("axis_middle", None))
                i += 1
                continue
        else:
            if t.isdigit() and tokens[i + 1 : i + 3] == ["o", "clock"]:
                claims.append(Claim("clock", int(t)))
                i += 3
                continue
            if rim and tokens[i : i + len(rim)] == rim:
                claims.append(Claim("round_rim", None))
                i += len(rim)
                continue
            if t in ("edge", "rim") and (not i or tokens[i - 1] not in SIDE):
                claims.append(Claim("round_rim", None))
                i += 1
                continue
            if t in ("center", "centre", "middle", "central"):
                claims.append(Claim("round_center", None))
                i += 1
                continue
        rest.append(t)
        i += 1
    return rest, claims


def _read_phrase(tokens: list[str], record: dict, vocab) -> tuple[set[int], bool | None]:
    """Token positions covered by defect phrases of the image's category (longest first), and
    the grammatical number of the first one found (None when singular and plural coincide)."""
    from annotate.parse import tokenize

    key = (id(vocab), record["category"], record["defect_type"])
    if key not in _PHRASES:
        phrases = {}
        for defect_type in sorted({*vocab.category_types(key[1]), key[2]}):
            for singular, plural in vocab.words(key[1], defect_type).phrases:
                for form, is_plural in ((singular, False), (plural, True)):
                    if all(t in UNIVERSAL_NOUN for t in tokenize(form)):
                        continue  # "anomaly" as a type's name is read as the universal noun
                    phrases.setdefault(tuple(tokenize(form)), None if singular == plural else is_plural)
        ordered = sorted(phrases.items(), key=lambda p: (-len(p[0]), p[0]))
        _PHRASES[key] = [(phrase, f" {' '.join(phrase)} ", number) for phrase, number in ordered]
    covered: set[int] = set()
    number = None
    joined = f" {' '.join(tokens)} "
    for phrase, spaced, is_plural in _PHRASES[key]:
        if spaced not in joined:
            continue
        n = len(phrase)
        for start in range(len(tokens) - n + 1):
            span = set(range(start, start + n))
            if tuple(tokens[start : start + n]) == phrase and not span & covered:
                number = is_plural if not covered else number
                covered |= span
    return covered, number


def _without_runs(tokens: list[str], run: list[str]) -> list[str]:
    """``tokens`` with every occurrence of ``run`` (the category's noun) taken out."""
    if not run:
        return tokens
    out, i, n = [], 0, len(run)
    while i < len(tokens):
        if tokens[i : i + n] == run:
            i += n
        else:
            out.append(tokens[i])
            i += 1
    return out


_PHRASES: dict = {}  # (vocabulary, category, defect type) -> [(tokens, " spaced ", plural)], longest first


def _universal_number(tokens: list[str]) -> list[Claim]:
    """A definite universal noun ("the anomaly", "the defects of ...") has a number; "all
    anomalies", "any defect" and the bare prompt "anomaly" do not."""
    if tokens[:1] != ["the"] or QUANTIFIERS & set(tokens):
        return []
    for t in tokens[1:]:
        if t in UNIVERSAL_NOUN:
            return [Claim("number", UNIVERSAL_NOUN[t])]
    return []


# -- judging ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    rule: str
    detail: str


def judge_sentence(
    text: str, target: list[int], record: dict, scene: Scene, vocab, *, first_only: bool = False
) -> list[Failure]:
    """Every rule the sentence breaks for its target, in table order (empty: every claim holds
    with margin); ``first_only`` stops at the first, so later rules measure nothing.

    Sentences with no target (good images, other defect types) have no pixels to show: they may
    make no claim that only pixels could bear out (a colour, a tone), and nothing else is measured.
    """
    claims = read_claims(text, record, vocab)
    if not target:
        looks = sorted({c.kind for c in claims if c.kind in ("tone", "colour", "comparative")})
        if looks:
            return [Failure("look_unmeasured", f"{'/'.join(looks)} word with no region to measure")]
        return []
    target = sorted(target)
    failures = []
    for rule in RULES:
        for claim in claims:
            if rule.claim != claim.kind:
                continue
            detail = _CHECKS[rule.name](rule, claim.value, target, scene)
            if detail:
                failures.append(Failure(rule.name, detail))
                if first_only:
                    return failures
    return failures


def _each(target, scene, test) -> str | None:
    """The first target region for which ``test(look)`` returns a fault."""
    for rid in target:
        fault = test(scene.looks[rid])
        if fault:
            return f"region {rid}: {fault}"
    return None


def _number(rule, plural, target, scene):
    if plural != (len(target) > 1):
        return f"{'plural' if plural else 'singular'} noun for {len(target)} target region(s)"
    return None


def _count(rule, count, target, scene):
    if count != len(target):
        return f"says {count} but the target has {len(target)} regions"
    return _each(
        target, scene, lambda lk: lk.area < rule.threshold and f"{lk.area} px is a speck, not countable"
    )


def _missing_look(rule, kinds, target, scene):
    if scene.missing_part:
        return f"{'/'.join(kinds)} word for a missing part"
    return None


def _tone(rule, tone, target, scene):
    """Against the surround's darker quarter for "dark" (its lighter quarter for "bright"): on a
    plain surface that is its median; on a mesh a bent wire is no darker than the intact wires."""
    sign = -1 if tone == "darker" else 1

    def test(lk):
        if lk.ring_quartiles is None:
            return "no surrounding material to compare with"
        level = lk.ring_quartiles[0 if tone == "darker" else 1]
        diff = sign * (lk.gray_median - level)
        if diff < rule.threshold:
            quarter = "lower" if tone == "darker" else "upper"
            return f"median gray {lk.gray_median:.0f} vs the surround's {quarter} quartile {level:.0f}"
        return None

    return _each(target, scene, test)


def _tone_share(rule, tone, target, scene):
    def test(lk):
        share = lk.darker_share if tone == "darker" else lk.brighter_share
        return share < rule.threshold and f"only {share:.0%} of its pixels are {tone} than the surround"

    return _each(target, scene, test)


def _comparative(rule, tone, target, scene):
    others = [lk for rid, lk in scene.looks.items() if rid not in target]
    if not others:
        return f"'{tone}' with no other region to compare with"
    sign = -1 if tone == "darker" else 1
    for rid in target:
        for other in others:
            diff = sign * (scene.looks[rid].gray_median - other.gray_median)
            if diff < rule.threshold:
                return (
                    f"region {rid} is not clearly {tone} than region {other.region_id} ({diff:+.0f} levels)"
                )
    return None


def _colour_distinct(rule, colour, target, scene):
    if scene.grayscale:
        return f"'{colour}' on a grayscale image"

    def test(lk):
        if lk.delta_e is None or lk.delta_e < rule.threshold:
            return f"delta E {lk.delta_e or 0:.1f} against its surround"
        return None

    return _each(target, scene, test)


def _colour_surround(rule, colour, target, scene):
    if scene.grayscale:
        return None  # already failed colour_distinct

    def test(lk):
        if lk.ring_hsv is not None and fits_loosely(colour, lk.ring_hsv, rule.threshold):
            hsv = tuple(round(v, 2) for v in lk.ring_hsv)
            return f"the surround (hsv {hsv}) is {colour} itself: the word names the material"
        return None

    return _each(target, scene, test)


def fits_loosely(colour: str, hsv: tuple[float, float, float], slack_deg: float) -> bool:
    """Could ``colour`` be said of a mean colour ``(h, s, v)`` at all: its hue band widened by
    ``slack_deg``, paler and duskier tints included (the test for a surround's own colour)."""
    return colour_fits(colour, hsv, -slack_deg, LOOSE)


def _colour_name(rule, colour, target, scene):
    if scene.grayscale:
        return None  # already failed colour_distinct

    def test(lk):
        if not colour_fits(colour, lk.hsv, rule.threshold):
            return f"mean colour hsv {tuple(round(v, 2) for v in lk.hsv)} is not clearly {colour}"
        return None

    return _each(target, scene, test)


# Hue bands in degrees for chromatic words; lightness/saturation limits for the others.
HUE_BANDS = {"red": (-15, 15), "orange": (15, 45), "yellow": (45, 70), "green": (70, 165),
             "blue": (165, 260), "purple": (260, 345)}  # fmt: skip


# Saturation and value limits of colour words: STRICT for a word said of a region, LOOSE for
# whether a word could be said of a surround at all. Keys: chromatic s/v minimum, red and orange
# value minimum, black v maximum, white/gray s maximum, white v minimum, gray v range, brown s
# minimum and v range.
STRICT = {"s": 0.3, "v": 0.3, "red_v": 0.55, "orange_v": 0.65, "black_v": 0.15, "pale_s": 0.12,
          "white_v": 0.85, "gray_v": (0.25, 0.8), "brown_s": 0.3, "brown_v": (0.12, 0.5)}  # fmt: skip
LOOSE = {"s": 0.2, "v": 0.2, "red_v": 0.0, "orange_v": 0.0, "black_v": 0.25, "pale_s": 0.2,
         "white_v": 0.7, "gray_v": (0.2, 0.85), "brown_s": 0.2, "brown_v": (0.08, 0.65)}  # fmt: skip


def colour_fits(colour: str, hsv: tuple[float, float, float], margin_deg: float, limits=STRICT) -> bool:
    """Does a mean colour ``(h, s, v)`` in [0, 1] clearly deserve ``colour``? ``margin_deg``: how far
    inside its hue band (negative: how far outside is still allowed)."""
    h, s, v = hsv
    hue = h * 360.0
    if colour == "black":
        return v < limits["black_v"]
    if colour == "white":
        return s < limits["pale_s"] and v > limits["white_v"]
    if colour == "gray":
        low, high = limits["gray_v"]
        return s < limits["pale_s"] and low < v < high
    if colour == "brown":
        hue = hue - 360 if hue > 300 else hue
        low, high = limits["brown_v"]
        return s > limits["brown_s"] and low < v < high and -10 + margin_deg < hue < 45 - margin_deg
    if colour not in HUE_BANDS or s < limits["s"] or v < limits["v"]:
        return False
    lo, hi = HUE_BANDS[colour]
    if colour == "red":
        hue = hue - 360 if hue > 180 else hue
        if v < limits["red_v"]:
            return False
    if colour == "orange" and v < limits["orange_v"]:
        return False
    return lo + margin_deg <= hue < hi - margin_deg


def _size_check(bound: str):
    def check(rule, size, target, scene):
        word_rules = {"tiny": ("size_tiny",), "small": ("size_small",), "medium": ("size_medium_low",
                      "size_medium_high"), "large": ("size_large",)}  # fmt: skip
        if rule.name not in word_rules.get(size, ()):
            return None
        if bound == "below":
            return _each(target, scene, lambda lk: lk.area_ratio >= rule.threshold
                         and f"covers {lk.area_ratio:.2%} of the image")  # fmt: skip
        return _each(target, scene, lambda lk: lk.area_ratio < rule.threshold
                     and f"covers {lk.area_ratio:.2%} of the image")  # fmt: skip

    return check


_SHAPE_TESTS = {
    "round_circularity": lambda t, lk: lk.circularity < t and f"circularity {lk.circularity:.2f}",
    "round_rect_fill": lambda t, lk: lk.rect_fill > t and f"fills {lk.rect_fill:.0%} of its rectangle",
    "round_aspect": lambda t, lk: lk.aspect > t and f"rectangle {lk.aspect:.1f} times as long as wide",
    "elongated": lambda t, lk: lk.elongation < t and f"length/width {lk.elongation:.1f}",
    "irregular": lambda t, lk: lk.solidity > t and f"solidity {lk.solidity:.2f}",
}
_SHAPE_ROWS = {"round": ("round_circularity", "round_rect_fill", "round_aspect"),
               "elongated": ("elongated",), "irregular": ("irregular",)}  # fmt: skip


def _shape_min_area(rule, shape, target, scene):
    return _each(
        target, scene, lambda lk: lk.area < rule.threshold and f"{lk.area} px is too small for a shape"
    )


def _shape_word(rule, shape, target, scene):
    names = _SHAPE_ROWS.get(shape, ())
    if rule.name not in names:
        return None
    return _each(target, scene, lambda lk: _SHAPE_TESTS[rule.name](rule.threshold, lk))


def _place(rule, cells, target, scene):
    def test(lk):
        share = sum(lk.cells[c] for c in cells)
        return share < rule.threshold and f"only {share:.0%} of its pixels are in the named part of the frame"

    return _each(target, scene, test)


def _edge(rule, side, target, scene):
    def test(lk):
        share = lk.edges[side]
        return share < PLACE_SHARE_FOR_EDGES and f"{share:.0%} of its pixels near the {side} edge"

    return _each(target, scene, test)


def _corner(rule, corner, target, scene):
    def test(lk):
        share = lk.corners[corner] if corner else max(lk.corners.values())
        return (
            share < PLACE_SHARE_FOR_EDGES and f"{share:.0%} of its pixels in the {corner or 'nearest'} corner"
        )

    return _each(target, scene, test)


def _along(lk: Look, frame: dict) -> np.ndarray:
    """Each pixel's position along the frame's axis: 0 at ``start`` (the wider end), 1 at ``end``."""
    start, end = (np.asarray(frame["axis"][k], np.float64) for k in ("start", "end"))
    vec = end - start
    points = np.stack([lk._xs + 0.5, lk._ys + 0.5], axis=1) - start  # noqa: SLF001 - own pixels
    return points @ vec / max(float(vec @ vec), 1e-9)


def _polar(lk: Look, frame: dict) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Pixels' radius (share of the frame's radius) and direction (degrees, 0 = 12 o'clock,
    clockwise), and the same two for the pixels' centroid."""
    cx, cy = frame["center"]
    dx, dy = lk._xs + 0.5 - cx, lk._ys + 0.5 - cy  # noqa: SLF001 - own pixels
    radius = max(float(frame["radius"]), 1e-9)
    mx, my = float(dx.mean()), float(dy.mean())
    angles = np.degrees(np.arctan2(dx, -dy)) % 360.0
    centre_angle = math.degrees(math.atan2(mx, -my)) % 360.0
    return np.hypot(dx, dy) / radius, angles, math.hypot(mx, my) / radius, centre_angle


def _frame_of(scene: Scene, kind: str) -> dict | None:
    frame = scene.frame or {}
    return frame if frame.get("kind") == kind else None


def _axis_end(rule, end, target, scene):
    frame = _frame_of(scene, "axis")
    if frame is None:
        return "an end of an axis on a frame without one"

    def test(lk):
        t = _along(lk, frame)
        t = t if end == "start" else 1.0 - t
        mean, share = float(t.mean()), float((t <= 0.35).mean())
        if mean > rule.threshold or share < 2 / 3:
            return f"mean position {mean:.2f} from that end, {share:.0%} of its pixels within 0.35"
        return None

    return _each(target, scene, test)


def _axis_middle(rule, _, target, scene):
    frame = _frame_of(scene, "axis")
    if frame is None:
        return "'halfway along' on a frame without an axis"

    def test(lk):
        t = _along(lk, frame)
        mean, share = float(t.mean()), float(((t >= 0.25) & (t <= 0.75)).mean())
        if abs(mean - 0.5) > rule.threshold or share < 2 / 3:
            return f"mean position {mean:.2f} along the axis, {share:.0%} of its pixels in the middle half"
        return None

    return _each(target, scene, test)


def _round_center(rule, _, target, scene):
    frame = _frame_of(scene, "round")
    if frame is None:
        return None  # a box/texture frame's "center" is a place claim, read as cells

    def test(lk):
        r, _, r_centroid, _ = _polar(lk, frame)
        share = float((r <= 0.4).mean())
        if r_centroid >= rule.threshold or share < 2 / 3:
            return f"centroid at {r_centroid:.2f} of the radius, {share:.0%} of its pixels within 0.4"
        return None

    return _each(target, scene, test)


def _round_rim(rule, _, target, scene):
    frame = _frame_of(scene, "round")
    if frame is None:
        return "a rim word on a frame that is not round"

    def test(lk):
        r, _, r_centroid, _ = _polar(lk, frame)
        share = float((r >= 0.55).mean())
        if r_centroid < rule.threshold or share < 2 / 3:
            return f"centroid at {r_centroid:.2f} of the radius, {share:.0%} of its pixels beyond 0.55"
        return None

    return _each(target, scene, test)


def _clock(rule, hour, target, scene):
    frame = _frame_of(scene, "round")
    if frame is None:
        return "a clock direction on a frame that is not round"
    aim = (hour % 12) * 30.0

    def off(angles):
        d = np.abs(np.asarray(angles) - aim) % 360.0
        return np.minimum(d, 360.0 - d)

    def test(lk):
        r, angles, r_centroid, centre_angle = _polar(lk, frame)
        miss, share = float(off(centre_angle)), float((off(angles) <= 45.0).mean())
        if r_centroid < 0.35:
            return f"centroid at {r_centroid:.2f} of the radius: too near the centre for a direction"
        if miss > rule.threshold or share < 2 / 3:
            return f"centroid {miss:.0f} degrees from {hour} o'clock, {share:.0%} of its pixels within 45"
        return None

    return _each(target, scene, test)


_POSITION = {"leftmost": (0, -1), "rightmost": (0, 1), "topmost": (1, -1), "lowest": (1, 1)}


def _extreme_position(rule, extreme, target, scene):
    if extreme not in _POSITION:
        return None
    others = [lk for rid, lk in scene.looks.items() if rid not in target]
    if not others:
        return f"'{extreme}' with nothing to compare with"
    axis, sign = _POSITION[extreme]
    for rid in target:
        mine = sign * scene.looks[rid].rel_centroid[axis]
        best = max(sign * o.rel_centroid[axis] for o in others)
        if mine - best < rule.threshold:
            return f"region {rid} is only {mine - best:+.2f} of the frame ahead of the runner-up"
    return None


def _extreme_size(rule, extreme, target, scene):
    if extreme not in ("largest", "smallest"):
        return None
    others = [lk for rid, lk in scene.looks.items() if rid not in target]
    if not others:
        return f"'{extreme}' with nothing to compare with"
    for rid in target:
        area = scene.looks[rid].area
        runner = max(o.area for o in others) if extreme == "largest" else min(o.area for o in others)
        ratio = area / max(runner, 1) if extreme == "largest" else runner / max(area, 1)
        if ratio < rule.threshold:
            return f"region {rid} is only {ratio:.2f} times the runner-up's area"
    return None


_CHECKS = {
    "number": _number,
    "count": _count,
    "missing_part_look": _missing_look,
    "look_unmeasured": lambda rule, value, target, scene: None,  # empty targets: judge_sentence
    "tone": _tone,
    "tone_share": _tone_share,
    "comparative": _comparative,
    "colour_distinct": _colour_distinct,
    "colour_name": _colour_name,
    "colour_surround": _colour_surround,
    "size_tiny": _size_check("below"),
    "size_small": _size_check("below"),
    "size_medium_low": _size_check("above"),
    "size_medium_high": _size_check("below"),
    "size_large": _size_check("above"),
    "shape_min_area": _shape_min_area,
    "round_circularity": _shape_word,
    "round_rect_fill": _shape_word,
    "round_aspect": _shape_word,
    "elongated": _shape_word,
    "irregular": _shape_word,
    "place": _place,
    "edge": _edge,
    "corner": _corner,
    "axis_end": _axis_end,
    "axis_middle": _axis_middle,
    "round_center": _round_center,
    "round_rim": _round_rim,
    "clock": _clock,
    "extreme_position": _extreme_position,
    "extreme_size": _extreme_size,
}


# -- over a record ---------------------------------------------------------------------


def judge_record(
    record: dict, image: np.ndarray, vocab, *, origins=None, first_only: bool = False
) -> list[tuple[dict, dict, list[Failure]]]:
    """(ref, sentence, failures) for every sentence (of ``origins``, default all) that breaks a rule."""
    scene = measure_record(record, image, vocab=vocab) if record["regions"] else None
    bad = []
    for ref in record["refs"]:
        for sentence in ref["sentences"]:
            if origins is not None and sentence["origin"] not in origins:
                continue
            failures = judge_sentence(
                sentence["text"], ref["region_ids"], record, scene, vocab, first_only=first_only
            )
            if failures:
                bad.append((ref, sentence, failures))
    return bad


class Vetter:
    """``accept(text, target_ids) -> bool`` for the generator: True when the sentence breaks no
    rule. Counts each rejected candidate by the first rule it breaks (``rejected``); verdicts
    are remembered, so asking again about the same sentence costs nothing."""

    def __init__(self, record: dict, image: np.ndarray, vocab, masks: dict | None = None):
        self.record, self.vocab = record, vocab
        self.scene = measure_record(record, image, masks, vocab)
        self.checked = 0
        self.rejected: Counter = Counter()
        self._seen: dict = {}

    def first_failure(self, text: str, target) -> Failure | None:
        key = (text, tuple(sorted(target)))
        if key not in self._seen:
            found = judge_sentence(text, list(key[1]), self.record, self.scene, self.vocab, first_only=True)
            self._seen[key] = found[0] if found else None
        return self._seen[key]

    def __call__(self, text: str, target) -> bool:
        self.checked += 1
        failure = self.first_failure(text, target)
        if failure is not None:
            self.rejected[failure.rule] += 1
        return failure is None


def drop_failing(
    record: dict, image: np.ndarray, vocab, vetter: Vetter | None = None
) -> tuple[list[dict], Counter]:
    """``record["refs"]`` without the sentences the judge rejects (refs left empty are dropped),
    and how many sentences each rule removed (each counted once, by its first rule in ``RULES``).
    ``vetter``: the one the generator asked (its verdicts are reused)."""
    vetter = vetter or Vetter(record, image, vocab)
    removed: Counter = Counter()
    refs = []
    for ref in record["refs"]:
        kept = []
        for sentence in ref["sentences"]:
            failure = vetter.first_failure(sentence["text"], ref["region_ids"])
            if failure is None:
                kept.append(sentence)
            else:
                removed[failure.rule] += 1
        if len(kept) == len(ref["sentences"]):
            refs.append(ref)
        elif kept:
            refs.append({**ref, "sentences": kept})
    return refs, removed
