"""Words and numbers that describe a region: where it is, its shape, how it looks.

All functions take a region's pixels as a crop (``(h, w)`` bool, offset ``x0, y0``) so
that nothing scales with the full image size except the object frame (computed once
per image on a downscaled copy).
"""

from __future__ import annotations

import numpy as np

from mvtec_ref.regions.config import SIZE_BUCKETS, RegionConfig

LOCATION_WORDS = (
    ("top left", "top", "top right"),
    ("left", "center", "right"),
    ("bottom left", "bottom", "bottom right"),
)


def object_frame(image: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box ``[x, y, w, h]`` of the object in front of a uniform background.

    The background level is the median of the image border; pixels that differ from it
    by more than an Otsu threshold are the object; its largest blob gives the box.
    Returns None when no convincing object is found (covers < 2% or > 98% of the image).
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
    background = np.median(border, axis=0)
    diff = np.abs(small - background).max(axis=2).astype(np.uint8)
    _, fg = cv2.threshold(diff, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n < 2:
        return None
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h, area = (int(v) for v in stats[k])
    share = area / (small.shape[0] * small.shape[1])
    if share < 0.02 or w * h > 0.98 * small.shape[0] * small.shape[1]:
        return None
    x0, y0 = int(x / scale), int(y / scale)
    x1, y1 = min(W, int(np.ceil((x + w) / scale))), min(H, int(np.ceil((y + h) / scale)))
    return (x0, y0, x1 - x0, y1 - y0)


def size_bucket(area_ratio: float, cuts: tuple[float, float]) -> str:
    """'small' / 'medium' / 'large' by area ratio against ``cuts``."""
    if area_ratio < cuts[0]:
        return SIZE_BUCKETS[0]
    return SIZE_BUCKETS[1] if area_ratio < cuts[1] else SIZE_BUCKETS[2]


def location(centroid: tuple[float, float], frame: tuple[int, int, int, int]) -> tuple[str, list[float]]:
    """Location word from the centroid in a 3x3 grid of ``frame``, and the relative position."""
    x, y, w, h = frame
    rx = min(max((centroid[0] - x) / max(w, 1), 0.0), 1.0)
    ry = min(max((centroid[1] - y) / max(h, 1), 0.0), 1.0)
    col, row = min(int(rx * 3), 2), min(int(ry * 3), 2)
    return LOCATION_WORDS[row][col], [round(rx, 4), round(ry, 4)]


def shape(crop: np.ndarray, config: RegionConfig) -> dict:
    """Shape from second moments: axis ratio, orientation and a word.

    ``orientation_deg`` is the major axis angle in [0, 180), 0 = horizontal, 90 = vertical
    (image y points down, so 45 runs from top-left to bottom-right).
    """
    ys, xs = np.nonzero(crop)
    fill = len(xs) / crop.size
    if len(xs) < 2:
        return {
            "word": "compact",
            "elongation": 1.0,
            "orientation_deg": 0.0,
            "fill": round(fill, 4),
            "orientation": None,
        }
    cov = np.cov(np.stack([xs, ys]).astype(np.float64), bias=True) + np.eye(2) / 12.0
    evals, evecs = np.linalg.eigh(cov)
    elongation = float(np.sqrt(evals[1] / evals[0]))
    vx, vy = evecs[:, 1]
    angle = float(np.degrees(np.arctan2(vy, vx))) % 180.0
    if elongation >= config.elongated_ratio:
        word = "elongated"
    elif fill < 0.3:
        word = "irregular"
    elif elongation < 1.5 and fill >= 0.6:
        word = "round"
    else:
        word = "compact"
    orientation = None
    if word == "elongated":
        if angle < 22.5 or angle >= 157.5:
            orientation = "horizontal"
        elif 67.5 <= angle < 112.5:
            orientation = "vertical"
        else:
            orientation = "diagonal"
    return {
        "word": word,
        "elongation": round(elongation, 3),
        "orientation_deg": round(angle, 1),
        "fill": round(fill, 4),
        "orientation": orientation,
    }


def appearance(window: np.ndarray, inside: np.ndarray, ring: np.ndarray, config: RegionConfig) -> dict:
    """Contrast and colour of a region against the ring of normal pixels around it.

    ``window`` is the image crop ``(h, w)`` or ``(h, w, 3)`` RGB; ``inside`` and ``ring``
    are ``(h, w)`` bool. ``tone`` compares mean gray levels; ``colour`` names the inside
    colour only when it differs from the ring by at least ``colour_delta_e`` (CIE76).
    """
    import cv2

    gray = window if window.ndim == 2 else cv2.cvtColor(window, cv2.COLOR_RGB2GRAY)
    g_in = float(gray[inside].mean())
    g_ring = float(gray[ring].mean()) if ring.any() else g_in
    delta = g_in - g_ring
    tone = "similar"
    if delta <= -config.tone_delta:
        tone = "darker"
    elif delta >= config.tone_delta:
        tone = "brighter"
    result = {
        "tone": tone,
        "gray_inside": round(g_in, 2),
        "gray_ring": round(g_ring, 2),
        "colour": None,
        "delta_e": None,
        "rgb_inside": None,
    }
    if window.ndim == 3:
        lab = cv2.cvtColor(window.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
        lab_in = lab[inside].mean(axis=0)
        lab_ring = lab[ring].mean(axis=0) if ring.any() else lab_in
        delta_e = float(np.linalg.norm(lab_in - lab_ring))
        rgb_in = window[inside].mean(axis=0)
        result["delta_e"] = round(delta_e, 2)
        result["rgb_inside"] = [round(float(v), 1) for v in rgb_in]
        if delta_e >= config.colour_delta_e:
            result["colour"] = colour_name(rgb_in)
    return result


def colour_name(rgb: np.ndarray) -> str:
    """Basic colour word for a mean RGB value (0-255)."""
    import colorsys

    r, g, b = (float(v) / 255.0 for v in rgb)
    h, s, v = colorsys.rgb_to_hsv(r, g, b)
    if v < 0.2:
        return "black"
    if s < 0.2:
        return "white" if v > 0.8 else "gray"
    hue = h * 360.0
    if hue < 15 or hue >= 345:
        return "red" if v > 0.5 else "brown"
    if hue < 45:
        return "orange" if v > 0.6 else "brown"
    if hue < 70:
        return "yellow"
    if hue < 165:
        return "green"
    if hue < 260:
        return "blue"
    return "purple"
