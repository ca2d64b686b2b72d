"""Reading images and masks, and the mask formats this toolkit writes.

Glossary (every format this module touches):

- image array: ``(H, W)`` uint8 for grayscale sources (grid, screw, zipper) or
  ``(H, W, 3)`` uint8 **RGB** (OpenCV's BGR is converted on read). 16-bit files are
  scaled to 8 bits; an alpha channel is dropped.
- mask file: single-channel PNG, 0 = normal, 255 = defect (MVTec AD convention; 1-bit
  PNGs decode to the same 0/255). Other values are "non-binary": a pixel is defect
  when its value is > ``threshold`` (127 by default), and the build records a warning.
- binary mask: ``(H, W)`` uint8 with values {0, 1}; C order in memory.
- COCO RLE: ``{"size": [h, w], "counts": "<ascii>"}``, pycocotools' compressed string;
  runs are counted **column-major** (Fortran order), the first run counts zeros.
- bbox: ``[x, y, w, h]`` in integer pixels, x to the right, y down; ``[0, 0, 1, 1]``
  covers exactly the top-left pixel (COCO convention).

Worked example: the 4x5 mask with ones at rows 1-2, columns 1-2::

    0 0 0 0 0
    0 1 1 0 0      bbox [1, 1, 2, 2], area 4
    0 1 1 0 0      column-major runs: 5 zeros, 2 ones, 2 zeros, 2 ones, 9 zeros
    0 0 0 0 0      RLE {"size": [4, 5], "counts": "52207"} (pycocotools packs later runs
                   as differences, so the string is not the plain run list)
"""

from __future__ import annotations

import numpy as np

from mvtec_ref.errors import CorruptImageError, MaskSizeError, MaskValueError

DEFAULT_THRESHOLD = 127


def decode_image(data: bytes, path: str, *, rgb: bool = True) -> np.ndarray:
    """Decode image bytes to ``(H, W)`` or ``(H, W, 3)`` uint8 RGB; CorruptImageError if unreadable.
    ``rgb=False`` skips the colour conversion when only the shape is needed: ``(H, W, 3|4)``
    in OpenCV's order."""
    import cv2

    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if array is None:
        raise CorruptImageError(path, f"cannot decode image ({_why_unreadable(data)})")
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise CorruptImageError(path, f"unsupported pixel type {array.dtype}")
    if array.ndim == 3:
        if array.shape[2] == 1:
            return array[:, :, 0]
        if not rgb:
            return array
        code = cv2.COLOR_BGRA2RGB if array.shape[2] == 4 else cv2.COLOR_BGR2RGB
        return cv2.cvtColor(array, code)
    return array


def decode_mask(
    data: bytes,
    path: str,
    image_shape: tuple[int, int],
    *,
    threshold: int = DEFAULT_THRESHOLD,
    strict: bool = False,
) -> tuple[np.ndarray, str | None]:
    """Decode a mask file to a ``(H, W)`` {0, 1} uint8 array.

    Returns ``(binary, warning)``; ``warning`` describes non-binary values that were
    thresholded (None when the mask was clean). Under ``strict`` such a mask raises
    MaskValueError instead. A size different from ``image_shape`` raises MaskSizeError.
    """
    mask = decode_image(data, path)
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    h, w = image_shape
    if mask.shape != (h, w):
        mh, mw = mask.shape
        raise MaskSizeError(path, f"mask is {mw}x{mh} but its image is {w}x{h}")
    counts = np.bincount(mask.ravel(), minlength=256)
    other = int(counts[1:255].sum())
    warning = None
    if other:
        values = np.flatnonzero(counts[1:255]) + 1
        shown = ", ".join(str(v) for v in values[:5]) + (", ..." if len(values) > 5 else "")
        warning = (
            f"mask is not binary: {other} pixels have values other than 0/255 ({shown}); "
            f"pixels > {threshold} count as defect"
        )
        if strict:
            raise MaskValueError(path, warning.split(";")[0] + " (re-save it as 0/255)")
    return (mask > threshold).view(np.uint8), warning


def encode_rle(binary: np.ndarray) -> dict:
    """``(H, W)`` {0,1} array -> COCO compressed RLE with an ASCII ``counts`` string."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(binary, dtype=np.uint8))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode()}


def decode_rle(rle: dict) -> np.ndarray:
    """COCO RLE (``counts`` as str or bytes) -> ``(H, W)`` {0,1} uint8 array."""
    from pycocotools import mask as mask_utils

    counts = rle["counts"]
    return mask_utils.decode(
        {"size": list(rle["size"]), "counts": counts.encode() if isinstance(counts, str) else counts}
    )


def _why_unreadable(data: bytes) -> str:
    if not data:
        return "file is empty"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG is truncated or corrupt"
    if data.startswith(b"version https://git-lfs"):
        return "file is a Git LFS pointer, not the image; run git lfs pull"
    return "not a PNG/JPEG/BMP/TIFF file"
