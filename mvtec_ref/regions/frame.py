"""Frames that place words are relative to, one rule per object kind (the vocabulary's ``frame``).

- ``texture``: the whole image ("near the top edge of the carpet");
- ``box``: the upright object's bounding box ("in the upper left part of the transistor"), with
  the corners of the box that the object's own outline has (an oval pill has none);
- ``axis``: an elongated object at any angle (a screw): its principal axis from its own mask,
  with two named ends, the wider one first ("near the head", "near the tip", "halfway along");
- ``round``: a round object seen from above (bottle, hazelnut, nut): a circle, with clock-face
  directions and centre / rim rings ("at 4 o'clock near the rim of the bottle").

Every frame contains its defect: the object's mask is joined with the defect mask before the
box, axis or circle is measured, so a missing screw tip (outside the screw's remaining mask)
still lies inside the screw's axis. ``place`` turns a region's centroid into the frame's words.
"""

from __future__ import annotations

import numpy as np

FRAME_KINDS = ("texture", "box", "axis", "round")
# A region is "near" an edge or a corner of a box frame when its centroid lies within this share
# of the frame's side from that edge (a 3x3 cell alone is never an edge or a corner).
EDGE_BAND = 0.15
# A box frame has a corner only where the object's outline has one: the object (joined with the
# defect) fills at least CORNER_FILL of the square at that corner of its box, the square's side
# CORNER_SQUARE of the box's shorter side (the same square for a long capsule as for a round
# pill: a corner is where two sides meet, whatever the length between corners). Measured on
# drawn shapes: a rectangle fills 1.0, one with corners rounded to a fifth of its shorter side
# 0.76, turned by 5 degrees 0.67 at two corners; an ellipse, a disc or a stadium (a capsule's
# round ends) 0.13 at most, a rectangle turned by 10 degrees or more 0.42 at most.
CORNER_SQUARE = 0.2
CORNER_FILL = 0.5
CORNERS = ("top left", "top right", "bottom left", "bottom right")
# Along an axis: the first/last quarter is an end, 0.35-0.65 is "halfway along".
END_BAND = 0.25
MIDDLE_BAND = (0.35, 0.65)
# Round frames: radius share below which a region is "in the centre", above which "at the rim";
# clock directions are said only outside the centre.
CENTRE_RADIUS = 0.3
RIM_RADIUS = 0.7
# Faint object parts (``clear_parts``): beyond this many times the border's noise, at least
# this many gray levels from the background.
CLEAR_NOISE = 2.0
CLEAR_MIN = 12


def object_mask(image: np.ndarray, clear_parts: bool = False) -> tuple[np.ndarray, float] | None:
    """The object's largest blob on a copy downscaled to 128 px: ``((h, w) bool, scale)``.

    The background level is the median of the image border; pixels that differ from it by more
    than an Otsu threshold are the object. With ``clear_parts`` (an object with faint parts, such
    as a bottle's clear glass neck, which Otsu leaves out), the blob also takes every faint blob
    touching it: pixels beyond CLEAR_NOISE times the border's own 99th-percentile deviation
    (at least CLEAR_MIN gray levels), closed over 3 px. None when no convincing object is found
    (it covers < 2% of the image, or its box > 98%).
    """
    import cv2

    H, W = image.shape[:2]
    scale = 128.0 / max(H, W)
    small = cv2.resize(
        image, (max(1, round(W * scale)), max(1, round(H * scale))), interpolation=cv2.INTER_AREA
    ).astype(np.int16)
    if small.ndim == 2:
        small = small[:, :, None]
    channels = small.shape[2]
    edges = (small[:2], small[-2:], small[:, :2], small[:, -2:])
    border = np.concatenate([e.reshape(-1, channels) for e in edges])
    background = _column_median(border)
    diff = _distance_to(small, background)
    _, fg = cv2.threshold(diff, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n < 2:
        return None
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    blob = labels == k
    if clear_parts:
        noise = float(np.percentile(np.abs(border - background).max(axis=1), 99))
        faint = (diff > max(CLEAR_MIN, CLEAR_NOISE * noise)).astype(np.uint8)
        faint = cv2.morphologyEx(faint, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
        _, faint_labels = cv2.connectedComponents(faint | blob.astype(np.uint8), connectivity=8)
        blob = faint_labels == faint_labels[blob][0]
    ys, xs = np.nonzero(blob)
    w, h, area = int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1), len(xs)
    cells = small.shape[0] * small.shape[1]
    if area / cells < 0.02 or w * h > 0.98 * cells:
        return None
    return blob, scale


def _column_median(values: np.ndarray) -> np.ndarray:
    """``np.median(values, axis=0)`` of ``(N, C)`` integers, as float64 (the same numbers: the
    middle one, or the mean of the middle two), without np.median's general machinery."""
    ordered = np.sort(values, axis=0)
    n = len(ordered)
    return (ordered[(n - 1) // 2].astype(np.float64) + ordered[n // 2]) / 2.0


def _distance_to(small: np.ndarray, background: np.ndarray) -> np.ndarray:
    """``np.abs(small - background).max(axis=2).astype(np.uint8)`` for ``(h, w, C)`` int16 pixels
    and a median ``background`` (whole or half integers), in integers: doubled, both are whole,
    and halving the largest doubled distance truncates as the float cast did."""
    doubled = np.rint(2.0 * background).astype(np.int16)
    far = np.abs(2 * small[:, :, 0] - doubled[0])
    for c in range(1, small.shape[2]):
        np.maximum(far, np.abs(2 * small[:, :, c] - doubled[c]), out=far)
    return (far >> 1).astype(np.uint8)


def find_frame(
    image: np.ndarray, kind: str, defect: np.ndarray | None = None, clear_parts: bool = False
) -> dict:
    """The frame record of one image: ``{"bbox", "source", "kind", ...}``.

    ``image`` is ``(H, W)`` or ``(H, W, 3)``; ``defect`` the ``(H, W)`` {0,1} mask or None (good
    image). Axis frames add ``"axis": {"start", "end"}`` (wider end first, pixel (x, y)); round
    frames add ``"center"`` and ``"radius"``. An object that cannot be separated from its
    background (and every texture) gets the whole image (``source = "image"``).
    """
    import cv2

    H, W = image.shape[:2]
    whole = {"bbox": [0, 0, W, H], "source": "image", "kind": "texture"}
    found = object_mask(image, clear_parts) if kind != "texture" else None
    if found is None:
        return whole
    obj, scale = found
    union = obj.copy()
    spots = None if defect is None else defect.astype(np.uint8, copy=False)
    if spots is not None:
        small = cv2.resize(spots * np.uint8(255), (obj.shape[1], obj.shape[0]), interpolation=cv2.INTER_AREA)
        union |= small > 0
    ys, xs = np.nonzero(union)
    x0, y0 = int(xs.min() / scale), int(ys.min() / scale)
    x1, y1 = min(W, int(np.ceil((xs.max() + 1) / scale))), min(H, int(np.ceil((ys.max() + 1) / scale)))
    # Full-resolution defect extent, so nothing is cut off (OpenCV's box of the non-zero pixels:
    # the same box as np.nonzero, in one pass over the mask).
    dx, dy, dw, dh = cv2.boundingRect(spots) if spots is not None else (0, 0, 0, 0)
    if dw:
        x0, y0 = min(x0, dx), min(y0, dy)
        x1, y1 = max(x1, dx + dw), max(y1, dy + dh)
    frame = {"bbox": [x0, y0, x1 - x0, y1 - y0], "source": "object", "kind": kind}
    points = (np.stack([xs, ys], axis=1).astype(np.float64) + 0.5) / scale
    if kind == "box":
        frame["corners"] = box_corners(union)
    elif kind == "axis":
        frame["axis"] = _axis(obj, scale, points)
    elif kind == "round":
        oy, ox = np.nonzero(obj)
        centre = np.array([ox.mean() + 0.5, oy.mean() + 0.5]) / scale
        radius = float(np.sqrt(len(ox) / np.pi) / scale)  # the disc of the object's area
        radius = max(radius, float(np.linalg.norm(points - centre, axis=1).max()))
        frame["center"] = [round(float(centre[0]), 2), round(float(centre[1]), 2)]
        frame["radius"] = round(radius, 2)
    return frame


def box_corners(blob: np.ndarray) -> list[str]:
    """The corners of ``blob``'s bounding box that the blob fills (``(h, w)`` bool, not empty):
    those of CORNERS whose square, CORNER_SQUARE of the box's shorter side, it fills by at least
    CORNER_FILL."""
    ys, xs = np.nonzero(blob)
    box = blob[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = box.shape
    side = max(1, int(round(CORNER_SQUARE * min(h, w))))
    squares = (box[:side, :side], box[:side, w - side :], box[h - side :, :side], box[h - side :, w - side :])
    return [name for name, square in zip(CORNERS, squares, strict=True) if square.mean() >= CORNER_FILL]


def _axis(obj: np.ndarray, scale: float, points: np.ndarray) -> dict:
    """Principal axis of the object (``obj`` at ``scale``) spanning ``points`` (object + defect,
    full-resolution (x, y)); its ends ordered so that the wider end of the object comes first."""
    oy, ox = np.nonzero(obj)
    own = (np.stack([ox, oy], axis=1).astype(np.float64) + 0.5) / scale
    mean = own.mean(axis=0)
    _, vecs = np.linalg.eigh(np.cov((own - mean).T))
    direction = vecs[:, 1]
    along = (points - mean) @ direction
    lo, hi = float(along.min()), float(along.max())
    t = ((own - mean) @ direction - lo) / max(hi - lo, 1e-9)
    across = np.abs((own - mean) @ np.array([-direction[1], direction[0]]))
    first, last = across[t <= END_BAND], across[t >= 1 - END_BAND]
    width = (
        float(np.percentile(first, 90)) if len(first) else 0.0,
        float(np.percentile(last, 90)) if len(last) else 0.0,
    )
    start, end = mean + lo * direction, mean + hi * direction
    if width[1] > width[0]:
        start, end = end, start
    return {"start": [round(float(v), 2) for v in start], "end": [round(float(v), 2) for v in end]}


def place(centroid: tuple[float, float], frame: dict) -> dict:
    """Where a centroid lies in ``frame`` in the frame's own terms.

    box/texture: ``{"edges": [...]}`` (the sides within EDGE_BAND); axis: ``{"along": t}``
    (0 at the wider end, 1 at the other) and ``"end"`` ("start", "end", "middle" or None);
    round: ``{"radius": r}`` (0 centre, 1 rim), ``"ring"`` ("center", "rim" or None) and
    ``"clock"`` (1-12, None in the centre).
    """
    x, y = centroid
    if frame.get("kind") == "axis":
        start, end = np.array(frame["axis"]["start"]), np.array(frame["axis"]["end"])
        vec = end - start
        t = float(np.clip((np.array([x, y]) - start) @ vec / max(float(vec @ vec), 1e-9), 0.0, 1.0))
        where = "start" if t <= END_BAND else "end" if t >= 1 - END_BAND else None
        if MIDDLE_BAND[0] <= t <= MIDDLE_BAND[1]:
            where = "middle"
        return {"along": round(t, 4), "end": where}
    if frame.get("kind") == "round":
        cx, cy = frame["center"]
        r = min(float(np.hypot(x - cx, y - cy)) / max(frame["radius"], 1e-9), 1.0)
        ring = "center" if r < CENTRE_RADIUS else "rim" if r >= RIM_RADIUS else None
        angle = float(np.degrees(np.arctan2(x - cx, -(y - cy)))) % 360.0  # 0 = 12 o'clock, clockwise
        hour = int(round(angle / 30.0)) % 12 or 12
        return {"radius": round(r, 4), "ring": ring, "angle": round(angle, 1),
                "clock": hour if r >= CENTRE_RADIUS else None}  # fmt: skip
    bx, by, bw, bh = frame["bbox"]
    rx, ry = (x - bx) / max(bw, 1), (y - by) / max(bh, 1)
    near = (("top", ry <= EDGE_BAND), ("bottom", ry >= 1 - EDGE_BAND),
            ("left", rx <= EDGE_BAND), ("right", rx >= 1 - EDGE_BAND))  # fmt: skip
    return {"edges": [side for side, yes in near if yes]}


def clock_distance(angle: float, hour: int) -> float:
    """Degrees between a direction (0 = 12 o'clock, clockwise) and a clock hour."""
    d = abs(angle - (hour % 12) * 30.0) % 360.0
    return min(d, 360.0 - d)
