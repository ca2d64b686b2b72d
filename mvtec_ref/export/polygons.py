"""Binary masks as COCO polygons traced along pixel corners, for readers that take only polygons.

A COCO polygon is a flat ``[x0, y0, x1, y1, ...]`` list; a segmentation is a list of them,
unioned. ReLA's training path (detectron2's default ``mask_format="polygon"``) and its
``G_REFER.getMask`` (``segmentation[0]``) read nothing else, so the ``grefcoco`` export
writes masks this way. Each polygon walks the outer boundary of a set of pixel squares
(pixel ``(row r, col c)`` is the square ``[c, c+1] x [r, r+1]``), not the pixel centres
that ``cv2.findContours`` returns, which would lose a one-pixel rim of every region.
A polygon cannot hold a hole, so each hole is opened by cutting out a one-pixel-wide
vertical strip from its top edge up to the background; the strips and the rest are
disjoint hole-free pieces whose union is the region (about one extra polygon per hole).

No library already in the dependencies traces along pixel corners (``rasterio.features``
would, at the cost of GDAL), hence the small tracer here.
"""

from __future__ import annotations

import numpy as np

# Unit moves on the corner lattice, (dx, dy) with y pointing down, and the move after a
# right turn. Boundary edges run clockwise on screen around each pixel (foreground on the
# right), so outer boundaries run clockwise and holes counter-clockwise.
_RIGHT_TURN = {(1, 0): (0, 1), (0, 1): (-1, 0), (-1, 0): (0, -1), (0, -1): (1, 0)}


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """(H, W) bool/uint8 mask -> COCO polygons whose union is exactly the mask's pixels.

    Coordinates are whole numbers written as floats: detectron2's ``ResizeTransform`` scales
    ``np.asarray(polygon)`` in place, which truncates an integer array to whole pixels.

    Pieces are 4-connected and hole-free; pixels touching only at a corner are separate
    pieces' business (or a polygon that touches itself at that corner). Empty mask -> [].
    """
    from scipy import ndimage

    mask = np.asarray(mask).astype(bool)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return []
    # Label only the region's box (a defect is ~1% of the image); raster order, so the
    # pieces come out in the same order as from the whole image.
    top, left = int(rows[0]), int(cols[0])
    labels, _ = ndimage.label(mask[top : rows[-1] + 1, left : cols[-1] + 1])  # 4-connected
    polygons = []
    for i, box in enumerate(ndimage.find_objects(labels), start=1):
        piece = labels[box] == i
        polygons += _piece_polygons(piece, top + box[0].start, left + box[1].start)
    return polygons


def _piece_polygons(piece: np.ndarray, top: int, left: int) -> list[list[float]]:
    """Polygons of one 4-connected piece whose top-left pixel sits at (top, left)."""
    loops = _trace(piece)
    holes = [loop for loop in loops if _signed_area(loop) < 0]
    if not holes:
        return [[float(v) for x, y in loop for v in (x + left, y + top)] for loop in loops]
    # Open every hole with a one-pixel-wide vertical strip from its top edge up to the
    # background (outside, or a higher hole that has its own strip): the strips are
    # rectangles of their own, and what remains holds no hole (checked again regardless).
    from scipy import ndimage

    strips = np.zeros_like(piece)
    polygons = []
    for hole in holes:
        r = min(y for _, y in hole)
        x = min(min(a[0], b[0]) for a, b in zip(hole, hole[1:] + hole[:1], strict=True) if a[1] == b[1] == r)
        y = r - 1
        while y >= 0 and piece[y, x] and not strips[y, x]:
            strips[y, x] = True
            y -= 1
        if y + 1 < r:
            x0, y0, x1, y1 = x + left, y + 1 + top, x + 1 + left, r + top
            polygons.append([float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)])
    labels, _ = ndimage.label(piece & ~strips)
    for i, box in enumerate(ndimage.find_objects(labels), start=1):
        sub = labels[box] == i
        polygons += _piece_polygons(sub, top + box[0].start, left + box[1].start)
    return polygons


def _trace(piece: np.ndarray) -> list[list[tuple[int, int]]]:
    """Closed boundary loops of ``piece`` on the corner lattice, turning points only."""
    padded = np.pad(piece, 1)
    core = padded[1:-1, 1:-1]
    edges: dict[tuple[int, int], list[tuple[int, int]]] = {}
    # (neighbour that must be background, start corner offset, move) per pixel side
    sides = (
        (padded[:-2, 1:-1], (0, 0), (1, 0)),  # top: left to right
        (padded[1:-1, 2:], (1, 0), (0, 1)),  # right: downwards
        (padded[2:, 1:-1], (1, 1), (-1, 0)),  # bottom: right to left
        (padded[1:-1, :-2], (0, 1), (0, -1)),  # left: upwards
    )
    for neighbour, (ox, oy), move in sides:
        ys, xs = np.nonzero(core & ~neighbour)
        for x, y in zip((xs + ox).tolist(), (ys + oy).tolist(), strict=True):
            edges.setdefault((x, y), []).append(move)
    loops = []
    while edges:
        # Start where only one way leads out, so a loop closes on its first return there.
        singles = sorted(p for p, m in edges.items() if len(m) == 1)
        for start in singles or [min(edges)]:
            if start in edges:
                loops.append(_walk(edges, start))
    return loops


def _walk(edges: dict, start: tuple[int, int]) -> list[tuple[int, int]]:
    """Follow (and use up) boundary edges from ``start`` back to it; turning points only."""
    point, move, loop = start, None, []
    while move is None or point != start:
        moves = edges[point]
        # Two ways out only where pixels touch at a corner: turn right, keeping to the
        # current pixel, so diagonal neighbours stay separate (4-connectivity).
        nxt = _RIGHT_TURN[move] if move is not None and len(moves) == 2 else moves[0]
        moves.remove(nxt)
        if not moves:
            del edges[point]
        if nxt != move:
            loop.append(point)
        move = nxt
        point = (point[0] + move[0], point[1] + move[1])
    if len(loop) > 2 and _collinear(loop[-1], loop[0], loop[1]):
        loop = loop[1:]
    return loop


def _collinear(a, b, c) -> bool:
    return (b[0] - a[0]) * (c[1] - b[1]) == (b[1] - a[1]) * (c[0] - b[0])


def _signed_area(loop) -> float:
    """Shoelace area; positive for clockwise on screen (y down), i.e. outer boundaries."""
    xs = np.array([p[0] for p in loop], float)
    ys = np.array([p[1] for p in loop], float)
    return 0.5 * float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1)))
