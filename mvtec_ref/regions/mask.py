"""Reading images and masks, and the mask formats this toolkit writes.

Glossary (every format this module touches):

- image array: ``(H, W)`` uint8 for grayscale sources (grid, screw, zipper) or
  ``(H, W, 3)`` uint8 **RGB** (OpenCV's BGR is converted on read). 16-bit files are
  scaled to 8 bits; an alpha channel is dropped.
- mask file: single-channel PNG, 0 = normal, 255 = defect (MVTec AD convention; 1-bit
  PNGs decode to the same 0/255). Other values are "non-binary": a pixel is defect
  when its value is > ``threshold`` (127 by default), and the build records a warning.
  Masks are read by meaning (``read_mask_plane``), each reading recorded as a warning:
  an 8-bit mask holding only 0/1 and any 16-bit mask count every non-zero value as
  defect; a palette PNG is read by index (0 = normal, any other index = defect, whatever
  its colour); of a colour or RGBA mask only the channels that vary are read (a white
  RGBA mask whose alpha carries the defect is read from alpha).
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
from mvtec_ref.limits import MAX_IMAGE_PIXELS

DEFAULT_THRESHOLD = 127


def decode_image(data: bytes, path: str, *, rgb: bool = True) -> np.ndarray:
    """Decode image bytes to ``(H, W)`` or ``(H, W, 3)`` uint8 RGB; CorruptImageError if unreadable.
    ``rgb=False`` skips the colour conversion when only the shape is needed: ``(H, W, 3|4)``
    in OpenCV's order."""
    array = _imdecode(data, path)
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise CorruptImageError(path, f"unsupported pixel type {array.dtype}")
    if array.ndim == 3:
        if array.shape[2] == 1:
            return array[:, :, 0]
        if not rgb:
            return array
        import cv2

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
    mask, labels, note = read_mask_plane(data, path)
    h, w = image_shape
    if mask.shape != (h, w):
        mh, mw = mask.shape
        raise MaskSizeError(path, f"mask is {mw}x{mh} but its image is {w}x{h}")
    if labels:
        return (mask > 0).view(np.uint8), note
    counts = _value_counts(mask)
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
        if note:
            warning = f"{note}; {warning}"
    return (mask > threshold).view(np.uint8), warning or note


def _imdecode(data: bytes, path: str) -> np.ndarray:
    """OpenCV's decode of ``data`` (any depth and channels), after ``check_image_size``."""
    import cv2

    if not data:
        raise CorruptImageError(path, f"cannot decode image ({_why_unreadable(data)})")
    check_image_size(data, path)
    try:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as error:  # a header PIL could not read and OpenCV refused
        reason = str(error).strip().splitlines()[-1][:200]
        raise CorruptImageError(path, f"cannot decode image ({reason})") from None
    if array is None:
        raise CorruptImageError(path, f"cannot decode image ({_why_unreadable(data)})")
    return array


def image_size(data: bytes) -> tuple[int, int] | int | None:
    """``(width, height)`` read from an image file's header, no pixel decoded; the pixel count
    alone when Pillow refuses the size itself (over 178 M pixels); None when the header is not
    one Pillow knows."""
    import io
    import re
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                return int(im.size[0]), int(im.size[1])
    except Image.DecompressionBombError as error:
        found = re.search(r"\((\d+) pixels\)", str(error))
        return int(found.group(1)) if found else MAX_IMAGE_PIXELS + 1
    except Exception:  # noqa: BLE001 - any unreadable header: OpenCV has the last word
        return None


def check_image_size(data: bytes, path: str) -> None:
    """CorruptImageError when the header says the image has more than ``MAX_IMAGE_PIXELS`` pixels
    (a 437 KB PNG can announce 60,000 x 60,000): a bad sample, found before any allocation."""
    size = image_size(data)
    if size is None:
        return
    pixels = size if isinstance(size, int) else size[0] * size[1]
    if pixels > MAX_IMAGE_PIXELS:
        shown = f"is {size[0]}x{size[1]}" if isinstance(size, tuple) else f"has {pixels:,} pixels"
        raise CorruptImageError(
            path, f"header says the image {shown}, over the limit of {MAX_IMAGE_PIXELS:,} pixels"
        )


def _value_counts(mask: np.ndarray) -> np.ndarray:
    """``np.bincount`` of a ``(H, W)`` uint8 plane's values (256 counts) but for value 0, which is
    left out (reported as 0): only the box around the non-zero pixels is counted, and defects are small."""
    import cv2

    x, y, w, h = cv2.boundingRect(mask)
    counts = np.bincount(mask[y : y + h, x : x + w].ravel(), minlength=256)
    counts[0] = 0
    return counts


def read_mask_plane(data: bytes, path: str) -> tuple[np.ndarray, bool, str | None]:
    """Decode a mask file to one ``(H, W)`` plane by what its values mean.

    Returns ``(plane, labels, note)``: ``labels`` True means every non-zero value is defect
    (0/1 masks, 16-bit masks, palette indices); False means an 8-bit 0..255 plane to threshold.
    ``note`` says what was assumed (None for a plain 8-bit single-channel mask).
    """
    array = _imdecode(data, path)
    if array.dtype not in (np.uint8, np.uint16):
        raise CorruptImageError(path, f"unsupported pixel type {array.dtype}")
    notes = []
    indices = _palette_indices(data)
    if indices is not None and indices.shape == array.shape[:2]:
        return indices, True, "palette mask: index 0 read as normal, every other index as defect"
    if array.ndim == 3:
        array, note = _varying_channels(array)
        if note:
            notes.append(note)
    if array.dtype == np.uint16:
        notes.append("16-bit mask: every non-zero value read as defect")
        return array, True, "; ".join(notes)
    if array.max() == 1:  # (an all-zero plane's maximum is 0)
        notes.append("mask holds only 0/1: 1 read as defect")
        return array, True, "; ".join(notes)
    return array, False, "; ".join(notes) or None


def _palette_indices(data: bytes) -> np.ndarray | None:
    """The index plane of a palette PNG (colour type 3), else None."""
    if not (data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 25 and data[25] == 3):
        return None
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("P") if im.mode != "P" else im).copy()
    except (OSError, ValueError):
        return None


def _varying_channels(array: np.ndarray) -> tuple[np.ndarray, str | None]:
    """``(H, W, C)`` BGR(A) -> ``(H, W)``: the maximum over the colour channels that vary; the
    alpha channel alone when only it varies (a white mask whose alpha holds the defect)."""
    colour = array[:, :, :3]
    varies = [c for c in range(colour.shape[2]) if colour[:, :, c].min() != colour[:, :, c].max()]
    if array.shape[2] == 4 and not varies and array[:, :, 3].min() != array[:, :, 3].max():
        return array[:, :, 3], "colour channels are constant: the alpha channel read as the mask"
    if array.shape[2] == 4 and not varies and not array[:, :, 3].any():
        return array[:, :, 3], "fully transparent: read as empty"
    if varies and len(varies) < colour.shape[2]:
        names = "".join("BGR"[c] for c in varies)[::-1]
        return colour[:, :, varies].max(axis=2), f"colour mask: read from its varying channel(s) {names}"
    grey = all(np.array_equal(colour[:, :, 0], colour[:, :, c]) for c in range(1, colour.shape[2]))
    return colour.max(axis=2), None if grey else "colour mask: read as the maximum of its channels"


def encode_rle(binary: np.ndarray) -> dict:
    """``(H, W)`` {0,1} array -> COCO compressed RLE with an ASCII ``counts`` string."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(binary, dtype=np.uint8))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode()}


def encode_rle_window(window: np.ndarray, x0: int, y0: int, shape: tuple[int, int]) -> dict:
    """``encode_rle`` of the ``shape`` (H, W) mask that is zero but for ``window`` ((h, w) {0,1}
    or bool) at column ``x0``, row ``y0``: the same string, from the window's columns alone
    (a region spans a few columns; encoding the whole image for each cost ~0.3 ms)."""
    from pycocotools import mask as mask_utils

    H, W = shape
    h, w = window.shape
    strip = np.zeros((w, H), np.uint8)  # row c = image column x0 + c, top to bottom
    strip[:, y0 : y0 + h] = window.T
    flat = strip.ravel()
    starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], starts, [flat.size]))).tolist()
    if flat[0]:
        runs.insert(0, 0)  # the first run counts zeros
    runs[0] += x0 * H
    after = (W - x0 - w) * H
    if after:
        if flat[-1]:
            runs.append(after)
        else:
            runs[-1] += after
    rle = mask_utils.frPyObjects({"size": [H, W], "counts": runs}, H, W)
    return {"size": [H, W], "counts": rle["counts"].decode()}


def decode_rle(rle: dict) -> np.ndarray:
    """COCO RLE -> ``(H, W)`` {0,1} uint8 array. ``counts`` may be the compressed string (str or
    bytes) or the uncompressed list of run lengths that COCO tools also write. Runs that do not
    add up to ``h * w`` raise ValueError before pycocotools sees them (its decoder does not
    check, and would write past the array)."""
    from pycocotools import mask as mask_utils

    h, w = _rle_size(rle)
    counts = rle["counts"]
    if isinstance(counts, list):
        runs = counts
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in runs):
            raise ValueError("uncompressed RLE counts must be non-negative integers")
        _check_runs(runs, h, w)
        return mask_utils.decode(mask_utils.frPyObjects({"size": [h, w], "counts": runs}, h, w))
    if isinstance(counts, bytes):
        counts = counts.decode("ascii", errors="replace")
    if not isinstance(counts, str):
        raise ValueError(f"RLE counts is a {type(counts).__name__}, not a string or a list")
    _check_runs(_runs_of(counts), h, w)
    return mask_utils.decode({"size": [h, w], "counts": counts.encode()})


def _rle_size(rle) -> tuple[int, int]:
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError('RLE must be an object with "size" and "counts"')
    size = rle["size"]
    if (
        not isinstance(size, list | tuple)
        or len(size) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in size)
    ):
        raise ValueError(f"RLE size {size!r} is not [height, width]")
    if size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise ValueError(f"RLE size {size!r} is over the limit of {MAX_IMAGE_PIXELS:,} pixels")
    return int(size[0]), int(size[1])


def rle_area_bbox(rle: dict) -> tuple[int, list[int] | None]:
    """``(area, bbox or None when empty)`` of a COCO RLE from its runs alone, no pixel array made;
    ValueError when the RLE is malformed or its runs do not cover exactly its ``size``."""
    h, w = _rle_size(rle)
    counts = rle["counts"]
    if isinstance(counts, list):
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in counts):
            raise ValueError("uncompressed RLE counts must be non-negative integers")
        runs = counts
    elif isinstance(counts, str):
        runs = _runs_of(counts)
    else:
        raise ValueError(f"RLE counts is a {type(counts).__name__}, not a string or a list")
    _check_runs(runs, h, w)
    area, start = 0, 0
    x0 = y0 = None
    x1 = y1 = -1
    for i, n in enumerate(runs):
        if i % 2 and n:  # a run of ones, column-major: pixel p is (x, y) = (p // h, p % h)
            end = start + n - 1
            cx0, cx1 = start // h, end // h
            ry0, ry1 = (start % h, end % h) if cx0 == cx1 else (0, h - 1)
            x0 = cx0 if x0 is None else min(x0, cx0)
            y0 = ry0 if y0 is None else min(y0, ry0)
            x1, y1 = max(x1, cx1), max(y1, ry1)
            area += n
        start += n
    if not area:
        return 0, None
    return area, [x0, y0, x1 - x0 + 1, y1 - y0 + 1]


def _runs_of(counts: str) -> list[int]:
    """The run lengths packed in a compressed counts string (pycocotools' format: 5 bits a
    character from '0', a continuation bit, a sign bit on the last, later runs as differences)."""
    runs: list[int] = []
    i = 0
    while i < len(counts):
        x, k, more = 0, 0, True
        while more:
            if i >= len(counts):
                raise ValueError("RLE counts string ends inside a number")
            c = ord(counts[i]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"RLE counts holds {counts[i]!r}, not a compressed-RLE character")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            i += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


def _check_runs(runs: list[int], h: int, w: int) -> None:
    if any(n < 0 for n in runs):
        raise ValueError("RLE counts decode to a negative run (corrupt counts)")
    if sum(runs) != h * w:
        raise ValueError(f"RLE runs cover {sum(runs)} pixels but size {h}x{w} has {h * w}")


def _why_unreadable(data: bytes) -> str:
    if not data:
        return "file is empty"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG is truncated or corrupt"
    if data.startswith(b"version https://git-lfs"):
        return "file is a Git LFS pointer, not the image; run git lfs pull"
    return "not a PNG/JPEG/BMP/TIFF file"
