"""Binary mask -> labelled regions (connected components with the speck rule)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mvtec_ref.regions.config import RegionConfig


@dataclass(frozen=True)
class Component:
    """One region's pixels: ``labels[y0:y0+h, x0:x0+w] == label``."""

    label: int
    bbox: tuple[int, int, int, int]  # x, y, w, h
    area: int
    merged_specks: int


def find_components(binary: np.ndarray, config: RegionConfig) -> tuple[np.ndarray, list[Component]]:
    """Label ``(H, W)`` {0,1} ``binary`` into regions.

    Returns ``(labels, components)``: ``labels`` is ``(H, W)`` int32 with 0 for background,
    and components are ordered by their first pixel in raster order (OpenCV's order).
    Specks (area < ``speck_area``) join the nearest larger component within
    ``speck_merge_distance`` pixels; the union of all components always equals the mask.
    """
    import cv2

    n, labels, stats = _label(binary, config.connectivity)
    areas = stats[1:, cv2.CC_STAT_AREA]
    specks = [k + 1 for k in np.flatnonzero(areas < config.speck_area)]
    merged = {k: 0 for k in range(1, n)}
    if specks and len(specks) < n - 1:
        for speck in specks:
            target = _nearest_large(labels, stats, speck, set(specks), config.speck_merge_distance)
            if target is not None:
                x, y, w, h = stats[speck, :4]
                window = labels[y : y + h, x : x + w]
                window[window == speck] = target
                merged[target] += 1
                del merged[speck]
    components = []
    for label in sorted(merged):
        ys, xs = _pixel_extent(labels, stats, label, merged[label] > 0)
        x0, y0 = int(xs[0]), int(ys[0])
        bbox = (x0, y0, int(xs[1]) - x0, int(ys[1]) - y0)
        x, y, w, h = bbox
        area = int(np.count_nonzero(labels[y : y + h, x : x + w] == label))
        components.append(Component(label, bbox, area, merged[label]))
    return labels, components


def _label(binary: np.ndarray, connectivity: int) -> tuple[int, np.ndarray, np.ndarray]:
    """OpenCV's ``(n, labels (H, W) int32, stats (n, 5))``, labelling only the box around the
    mask's pixels (defects are small; labelling the whole image cost ~10 ms a mask). The box
    starts at even x and y so that OpenCV's 2x2 block scan, and with it the label order, is the
    same as over the whole image. The background's row of ``stats`` has its area right and the
    whole image as its box (unused)."""
    import cv2

    height, width = binary.shape
    x, y, w, h = cv2.boundingRect(binary)
    if w == 0:
        return (
            1,
            np.zeros(binary.shape, np.int32),
            np.array([[0, 0, width, height, height * width]], np.int32),
        )
    x0, y0 = x - x % 2, y - y % 2
    window = np.ascontiguousarray(binary[y0 : y + h, x0 : x + w])
    n, inner, stats, _ = cv2.connectedComponentsWithStats(window, connectivity=connectivity, ltype=cv2.CV_32S)
    labels = np.zeros(binary.shape, np.int32)
    labels[y0 : y + h, x0 : x + w] = inner
    stats[1:, cv2.CC_STAT_LEFT] += x0
    stats[1:, cv2.CC_STAT_TOP] += y0
    stats[0] = (0, 0, width, height, height * width - int(stats[1:, cv2.CC_STAT_AREA].sum()))
    return n, labels, stats


def _nearest_large(labels, stats, speck, specks, max_distance) -> int | None:
    """Label of the closest non-speck component within ``max_distance`` px, else None."""
    import cv2

    x, y, w, h = (int(v) for v in stats[speck, :4])
    H, W = labels.shape
    x0, y0 = max(0, x - max_distance), max(0, y - max_distance)
    x1, y1 = min(W, x + w + max_distance), min(H, y + h + max_distance)
    window = labels[y0:y1, x0:x1]
    candidates = [v for v in np.unique(window) if v != 0 and v != speck and v not in specks]
    if not candidates:
        return None
    not_speck = (window != speck).astype(np.uint8)
    distance = cv2.distanceTransform(not_speck, cv2.DIST_L2, 5)
    best = min(candidates, key=lambda v: (float(distance[window == v].min()), int(v)))
    return int(best) if distance[window == best].min() <= max_distance else None


def _pixel_extent(labels, stats, label, grown):
    """((y_min, y_max+1), (x_min, x_max+1)) of a label; recomputed when specks joined it."""
    x, y, w, h = (int(v) for v in stats[label, :4])
    if not grown:
        return (y, y + h), (x, x + w)
    ys, xs = np.nonzero(labels == label)
    return (int(ys.min()), int(ys.max()) + 1), (int(xs.min()), int(xs.max()) + 1)
