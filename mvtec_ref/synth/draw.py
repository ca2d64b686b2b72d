"""Procedural pictures for the synthetic MVTec-AD-layout tree: objects, textures, defects.

Everything is drawn with numpy/OpenCV from a ``numpy.random.Generator``, so an image
depends only on its seed. Defect masks are exact: the image is changed only where
the mask is 255 (plus nothing else), so regions derived from the mask are true.
"""

from __future__ import annotations

import functools
import zlib

import numpy as np

# Look of each category: (kind, shape or pattern, base colour RGB, background RGB).
# Shapes/patterns are rough stand-ins for the real objects, enough for location words
# ("near the top of the bottle") and for a model to learn where the object is.
LOOKS: dict[str, tuple[str, str, tuple[int, int, int], tuple[int, int, int]]] = {
    "bottle": ("object", "ring", (60, 70, 60), (10, 10, 10)),
    "cable": ("object", "cable", (40, 120, 60), (230, 230, 230)),
    "capsule": ("object", "stadium", (200, 40, 30), (15, 15, 15)),
    "carpet": ("texture", "noise", (170, 150, 120), (0, 0, 0)),
    "grid": ("texture", "grid", (140, 140, 140), (0, 0, 0)),
    "hazelnut": ("object", "ellipse", (150, 100, 60), (5, 5, 5)),
    "leather": ("texture", "noise", (120, 70, 40), (0, 0, 0)),
    "metal_nut": ("object", "nut", (150, 155, 160), (10, 10, 10)),
    "pill": ("object", "ellipse_wide", (235, 230, 220), (30, 30, 35)),
    "screw": ("object", "bar", (90, 90, 90), (220, 220, 220)),
    "tile": ("texture", "blotch", (190, 190, 185), (0, 0, 0)),
    "toothbrush": ("object", "brush", (220, 60, 80), (240, 240, 240)),
    "transistor": ("object", "transistor", (30, 30, 30), (200, 200, 200)),
    "wood": ("texture", "stripes", (180, 130, 80), (0, 0, 0)),
    "zipper": ("object", "zipper", (80, 80, 80), (200, 200, 200)),
}
DEFAULT_LOOK = ("object", "ellipse", (150, 150, 150), (20, 20, 20))

# Defect drawing style by keyword in the defect-type name (first match wins).
STYLES = (
    ("crack", "crack"),
    ("scratch", "scratch"),
    ("thread", "thread"),
    ("cut", "scratch"),
    ("fold", "scratch"),
    ("stroke", "scratch"),
    ("strip", "scratch"),
    ("hole", "hole"),
    ("poke", "hole"),
    ("contamination", "contamination"),
    ("color", "stain"),
    ("liquid", "stain"),
    ("oil", "stain"),
    ("glue", "stain"),
    ("print", "stain"),
    ("imprint", "stain"),
    ("rough", "contamination"),
)


def stable_seed(*parts: object) -> int:
    """A 32-bit seed from any printable parts, the same on every run and platform."""
    return zlib.crc32("/".join(str(p) for p in parts).encode())


def defect_style(defect_type: str) -> str:
    for keyword, style in STYLES:
        if keyword in defect_type:
            return style
    return "structural"  # bent, broken, missing, misplaced, flip, squeeze ...: a changed patch


def draw_good(
    category: str, size: int, gray: bool, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A defect-free picture ``(size, size, 3)`` uint8 RGB and the object's ``(size, size)`` bool area."""
    import cv2

    kind, shape, colour, background = LOOKS.get(category, DEFAULT_LOOK)
    base = np.asarray(colour, np.float32) * rng.uniform(0.92, 1.08)
    # Drawn as three (size, size) float32 planes: numpy is several times faster on whole planes
    # than on (size, size, 3) arrays broadcast over a channel axis of 3, and every pixel gets
    # the same float32 operations, so the picture is the same as drawing interleaved.
    if kind == "texture":
        planes = _texture(shape, size, base, rng)
        area = np.ones((size, size), bool)
    else:
        planes = np.empty((3, size, size), np.float32)
        for plane, value in zip(planes, background, strict=True):
            plane.fill(value)
        area = _object_area(shape, size, rng)
        lit = 1.0 + _smooth_field(size, rng, cells=4, amplitude=0.15)
        for plane, value in zip(planes, base, strict=True):
            np.multiply(lit, value, out=plane, where=area)
        _object_details(shape, planes, area, size, rng)
    planes += _fine_noise(size, rng)
    np.clip(planes, 0, 255, out=planes)
    img = cv2.merge(list(planes.astype(np.uint8)))
    if gray:
        img = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return img, area


def draw_defects(
    img: np.ndarray, area: np.ndarray, defect_type: str, count: int, rng: np.random.Generator
) -> np.ndarray:
    """Draw ``count`` separate defects of one type into ``img`` (in place); return the 0/255 mask.

    Defects stay inside the object ``area`` and apart from each other (a gap of at least
    3% of the image side), so each becomes one 8-connected region of the mask.
    """
    import cv2

    size = img.shape[0]
    style = defect_style(defect_type)
    look = np.random.default_rng(stable_seed("look", defect_type))
    tint = look.uniform(-1, 1, 3) * 90.0
    mask = np.zeros((size, size), np.uint8)
    gap = max(3, int(0.03 * size))
    taken = np.zeros((size, size), np.uint8)
    inside = cv2.erode(area.astype(np.uint8), np.ones((gap, gap), np.uint8)).astype(bool)
    spots = np.flatnonzero(inside if inside.any() else area)  # row-major, like np.nonzero
    for _ in range(count):
        for _attempt in range(30):
            y, x = divmod(int(spots[rng.integers(len(spots))]), size)
            one = _defect_shape(style, (x, y), size, rng)
            one &= area
            if one.sum() < 20 or (one & taken.astype(bool)).any():
                continue
            n, _ = cv2.connectedComponents(one.view(np.uint8), connectivity=8)
            if n != 2:
                continue
            mask[one] = 255
            taken |= cv2.dilate(one.view(np.uint8), np.ones((2 * gap + 1, 2 * gap + 1), np.uint8))
            _paint(img, one, style, tint, rng)
            break
    return mask


def _defect_shape(style: str, centre: tuple[int, int], size: int, rng: np.random.Generator) -> np.ndarray:
    import cv2

    canvas = np.zeros((size, size), np.uint8)
    cx, cy = centre
    if style in ("scratch", "thread", "crack"):
        # Real MVTec AD masks of thin defects are drawn generously: measured on the shared
        # sample, grid thread/broken 2-6% of the image side wide, a hazelnut crack 9%.
        length = rng.uniform(0.1, 0.3) * size
        width = max(2, int(rng.uniform(0.015, 0.045) * size))
        angle = rng.uniform(0, np.pi)
        steps = 12
        wiggle = {"scratch": 0.05, "thread": 0.5, "crack": 0.35}[style]
        pts = [(cx, cy)]
        heading = angle
        for _ in range(steps):
            heading += rng.normal(0, wiggle)
            x, y = pts[-1]
            pts.append((x + np.cos(heading) * length / steps, y + np.sin(heading) * length / steps))
        poly = np.round(np.asarray(pts)).astype(np.int32)
        cv2.polylines(canvas, [poly], False, 1, thickness=width)
        if style == "crack" and rng.random() < 0.7:
            j = int(rng.integers(3, steps - 2))
            branch = [pts[j]]
            h = heading + rng.choice([-1, 1]) * 0.9
            for _ in range(5):
                x, y = branch[-1]
                branch.append((x + np.cos(h) * length / steps, y + np.sin(h) * length / steps))
            cv2.polylines(canvas, [np.round(np.asarray(branch)).astype(np.int32)], False, 1, thickness=width)
    elif style == "hole":
        r = rng.uniform(0.008, 0.03) * size
        cv2.ellipse(
            canvas,
            (cx, cy),
            (max(2, int(r)), max(2, int(r * rng.uniform(0.7, 1.0)))),
            float(rng.uniform(0, 180)),
            0,
            360,
            1,
            -1,
        )
    else:
        scale = {"stain": (0.015, 0.05), "contamination": (0.006, 0.02), "structural": (0.03, 0.09)}[style]
        r = rng.uniform(*scale) * size
        n = int(rng.integers(7, 13))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = r * rng.uniform(0.55, 1.0, n)
        poly = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)
        cv2.fillPoly(canvas, [np.round(poly).astype(np.int32)], 1)
    return canvas.astype(bool)


def _paint(
    img: np.ndarray, where: np.ndarray, style: str, tint: np.ndarray, rng: np.random.Generator
) -> None:
    pixels = img[where].astype(np.float32)
    if style in ("crack", "hole"):
        pixels = pixels * rng.uniform(0.15, 0.35)
    elif style == "scratch":
        pixels = pixels * 0.4 + 150.0 + tint * 0.3
    elif style == "thread":
        pixels = pixels * 0.2 + 60.0 + tint
    elif style == "stain":
        pixels = pixels * 0.5 + 64.0 + tint
    elif style == "contamination":
        pixels = pixels * 0.3 + 110.0 + tint
    else:
        pixels = pixels * 0.6 + 40.0 + tint * 0.6
    pixels += rng.normal(0, 4, pixels.shape)
    img[where] = np.clip(pixels, 0, 255).astype(np.uint8)


def _object_area(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    import cv2

    canvas = np.zeros((size, size), np.uint8)
    c = (int(size / 2 + rng.normal(0, size * 0.02)), int(size / 2 + rng.normal(0, size * 0.02)))
    s = size * rng.uniform(0.95, 1.05)
    rot = float(rng.uniform(0, 360))
    if shape in ("ring", "nut", "cable"):
        cv2.circle(canvas, c, int(0.38 * s), 1, -1)
    elif shape == "ellipse":
        cv2.ellipse(canvas, c, (int(0.34 * s), int(0.3 * s)), rot, 0, 360, 1, -1)
    elif shape == "ellipse_wide":
        cv2.ellipse(canvas, c, (int(0.4 * s), int(0.2 * s)), float(rng.normal(0, 3)), 0, 360, 1, -1)
    elif shape == "stadium":
        half, r = int(0.28 * s), int(0.12 * s)
        cv2.rectangle(canvas, (c[0] - half, c[1] - r), (c[0] + half, c[1] + r), 1, -1)
        cv2.circle(canvas, (c[0] - half, c[1]), r, 1, -1)
        cv2.circle(canvas, (c[0] + half, c[1]), r, 1, -1)
    elif shape == "bar":
        box = cv2.boxPoints(((c[0], c[1]), (0.7 * s, 0.1 * s), float(rng.uniform(0, 180))))
        cv2.fillPoly(canvas, [np.round(box).astype(np.int32)], 1)
    elif shape == "brush":
        cv2.rectangle(
            canvas, (c[0] - int(0.12 * s), int(0.1 * s)), (c[0] + int(0.12 * s), int(0.9 * s)), 1, -1
        )
    elif shape == "transistor":
        cv2.rectangle(
            canvas, (c[0] - int(0.2 * s), int(0.15 * s)), (c[0] + int(0.2 * s), int(0.5 * s)), 1, -1
        )
        for dx in (-0.12, 0.0, 0.12):
            x = c[0] + int(dx * s)
            cv2.rectangle(
                canvas, (x - int(0.02 * s), int(0.5 * s)), (x + int(0.02 * s), int(0.85 * s)), 1, -1
            )
    elif shape == "zipper":
        cv2.rectangle(canvas, (c[0] - int(0.15 * s), 0), (c[0] + int(0.15 * s), size - 1), 1, -1)
    else:
        cv2.circle(canvas, c, int(0.35 * s), 1, -1)
    return canvas.astype(bool)


def _object_details(
    shape: str, planes: np.ndarray, area: np.ndarray, size: int, rng: np.random.Generator
) -> None:
    """Inner structure that makes objects look less like flat stickers (``planes``: (3, H, W))."""
    import cv2

    # The area's centroid from integer sums (what np.nonzero(area)[k].mean() gives, exactly).
    count = int(np.count_nonzero(area))
    index = np.arange(size, dtype=np.int64)
    cx = int(int(index @ area.sum(axis=0)) / count)
    cy = int(int(index @ area.sum(axis=1)) / count)
    if shape in ("ring", "nut"):
        inner = np.zeros(area.shape, np.uint8)
        cv2.circle(inner, (cx, cy), int(0.16 * size), 1, -1)
        for plane in planes:
            np.multiply(plane, np.float32(0.35), out=plane, where=inner.view(bool))
    elif shape == "cable":
        for k, col in enumerate(((40, 90, 200), (60, 160, 60), (90, 60, 40))):
            a = 2 * np.pi * k / 3 + rng.normal(0, 0.05)
            centre = (int(cx + np.cos(a) * 0.17 * size), int(cy + np.sin(a) * 0.17 * size))
            for plane, value in zip(planes, col, strict=True):
                cv2.circle(plane, centre, int(0.13 * size), value, -1)
    elif shape == "zipper":
        for y in range(0, size, max(4, size // 40)):
            ends = (cx - int(0.06 * size), y), (cx + int(0.06 * size), y)
            for plane in planes:
                cv2.line(plane, *ends, 170, max(1, size // 120))
    elif shape == "brush":
        for x in range(cx - int(0.1 * size), cx + int(0.1 * size), max(2, size // 100)):
            for plane, value in zip(planes, (250, 250, 245), strict=True):
                cv2.line(plane, (x, int(0.12 * size)), (x, int(0.35 * size)), value, 1)


def _texture(pattern: str, size: int, base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A texture as three ``(size, size)`` float32 planes ``(3, size, size)``."""
    import cv2

    planes = np.empty((3, size, size), np.float32)
    for plane, value in zip(planes, base, strict=True):
        plane.fill(value)
    if pattern == "noise":
        planes *= 1.0 + _smooth_field(size, rng, cells=48, amplitude=0.18)
    elif pattern == "blotch":
        planes *= 1.0 + _smooth_field(size, rng, cells=10, amplitude=0.25)
    elif pattern == "stripes":
        y = np.arange(size, dtype=np.float32)[:, None]
        phase = _smooth_field(size, rng, cells=3, amplitude=6.0)
        planes *= 1.0 + 0.12 * np.sin(y / size * 60.0 + phase)
    elif pattern == "grid":
        planes.fill(40)
        step = max(6, size // 24)
        off = int(rng.integers(step))
        for k in range(off, size, step):
            for plane, value in zip(planes, base, strict=True):
                cv2.line(plane, (k, 0), (k, size - 1), float(value), max(1, step // 5))
                cv2.line(plane, (0, k), (size - 1, k), float(value), max(1, step // 5))
    return planes


def _smooth_field(size: int, rng: np.random.Generator, *, cells: int, amplitude: float) -> np.ndarray:
    """Low-frequency noise ``(size, size)`` in about [-amplitude, amplitude]."""
    import cv2

    coarse = rng.uniform(-amplitude, amplitude, (cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)


def _fine_noise(size: int, rng: np.random.Generator) -> np.ndarray:
    """Sensor-like noise ``(3, size, size)``: a seeded 128-px tile, rolled by a random offset and
    tiled (a read-only window into the tiling, which is made once per process and size)."""
    dy, dx = int(rng.integers(128)), int(rng.integers(128))
    # Rolling by (dy, dx) then cropping = cropping the unrolled tiling at (-dy, -dx) mod 128.
    oy, ox = -dy % 128, -dx % 128
    return _noise_tiling(size)[:, oy : oy + size, ox : ox + size]


@functools.lru_cache(maxsize=2)
def _noise_tiling(size: int) -> np.ndarray:
    """The noise tile of ``size`` repeated over ``(3, S, S)``, S >= size + 128 (16 MB at 1024)."""
    tile = np.random.default_rng(stable_seed("tile", size)).normal(0, 3.0, (128, 128, 3)).astype(np.float32)
    reps = -(-size // 128) + 1
    tiling = np.ascontiguousarray(np.tile(tile.transpose(2, 0, 1), (1, reps, reps)))
    tiling.flags.writeable = False
    return tiling
