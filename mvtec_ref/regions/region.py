"""``regions_from_mask``: a sample's binary mask and image -> its Region records."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mvtec_ref.regions import describe
from mvtec_ref.regions.components import find_components
from mvtec_ref.regions.config import RegionConfig
from mvtec_ref.regions.mask import encode_rle_window


@dataclass(frozen=True)
class Region:
    """One anomaly region of an image; ``to_record`` gives its samples.jsonl form."""

    region_id: int  # 0-based within the image, in raster order of the first pixel
    bbox: tuple[int, int, int, int]  # [x, y, w, h]
    area: int
    area_ratio: float
    size: str
    centroid: tuple[float, float]  # (x, y) pixel coordinates
    location: str
    rel_position: list[float]  # centroid relative to the frame, each in [0, 1]
    shape: dict
    appearance: dict
    merged_specks: int
    segmentation: dict  # COCO RLE
    place: dict | None = None  # where it lies in the frame's own terms (regions.frame.place)
    # (x0, y0, (h, w) bool window): the pixels ``segmentation`` encodes, for a caller that
    # needs them again (the build's pixel judge); not part of the record.
    pixels: tuple | None = field(default=None, compare=False, repr=False)

    def full_mask(self, shape: tuple[int, int]) -> np.ndarray:
        """``(H, W)`` bool: the decoded ``segmentation`` (made from ``pixels``, no RLE decoding)."""
        x0, y0, window = self.pixels
        full = np.zeros(shape, bool)
        full[y0 : y0 + window.shape[0], x0 : x0 + window.shape[1]] = window
        return full

    def to_record(self) -> dict:
        record = {
            "region_id": self.region_id,
            "bbox": list(self.bbox),
            "area": self.area,
            "area_ratio": self.area_ratio,
            "size": self.size,
            "centroid": list(self.centroid),
            "location": self.location,
            "rel_position": self.rel_position,
            "shape": self.shape,
            "appearance": self.appearance,
            "merged_specks": self.merged_specks,
            "segmentation": self.segmentation,
        }
        if self.place is not None:
            record["place"] = self.place
        return record


def regions_from_mask(
    binary: np.ndarray,
    image: np.ndarray,
    frame: tuple[int, int, int, int] | dict,
    config: RegionConfig,
) -> list[Region]:
    """Split ``(H, W)`` {0,1} ``binary`` into described regions.

    ``image`` is the ``(H, W)`` or ``(H, W, 3)`` RGB image the mask belongs to and
    ``frame`` the ``[x, y, w, h]`` box that location words are relative to, or a frame record
    (``mvtec_ref.regions.frame.find_frame``), whose kind then also gives each region its ``place``.
    """
    import cv2

    from mvtec_ref.regions.frame import place

    frame_record = frame if isinstance(frame, dict) else None
    if frame_record is not None:
        frame = tuple(frame_record["bbox"])
    H, W = binary.shape
    labels, components = find_components(binary, config)
    pad = config.ring_width
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pad + 1, 2 * pad + 1))
    regions = []
    for region_id, comp in enumerate(components):
        x, y, w, h = comp.bbox
        x0, y0, x1, y1 = max(0, x - pad), max(0, y - pad), min(W, x + w + pad), min(H, y + h + pad)
        inside = labels[y0:y1, x0:x1] == comp.label
        grown = cv2.dilate(inside.view(np.uint8), kernel).astype(bool)
        ring = grown & (labels[y0:y1, x0:x1] == 0)  # (the window's defect pixels: no full-size pass)
        ys, xs = np.nonzero(inside)
        centroid = (round(float(xs.mean()) + x0, 2), round(float(ys.mean()) + y0, 2))
        ratio = comp.area / (H * W)
        word, rel = describe.location(centroid, frame)
        regions.append(
            Region(
                region_id=region_id,
                bbox=comp.bbox,
                area=comp.area,
                area_ratio=float(f"{ratio:.6g}"),
                size=describe.size_bucket(ratio, config.size_cuts),
                centroid=centroid,
                location=word,
                rel_position=rel,
                shape=describe.shape(inside[y - y0 : y - y0 + h, x - x0 : x - x0 + w], config),
                appearance=describe.appearance(image[y0:y1, x0:x1], inside, ring, config),
                merged_specks=comp.merged_specks,
                segmentation=encode_rle_window(inside, x0, y0, (H, W)),
                place=place(centroid, frame_record) if frame_record is not None else None,
                pixels=(x0, y0, inside),
            )
        )
    return regions
