"""``show_sentences``: a picture for every sentence, so anyone can check what it claims.

Each PNG shows the source image with the sentence's target regions filled (magenta,
white outline), the image's other regions outlined (cyan), the frame that place words
refer to (yellow box), and below it the sentence(s) with the ref's kind, its target and
the pixel judge's verdict on each sentence. Layout of the output folder::

    show.json      what was drawn: dataset, selection, seed, one row per PNG
    review.tsv     one row per sentence with empty faithful/unambiguous/natural columns
    NNN_<image>_ref<ref_id>.png

The folder is replaced atomically and only if it is empty, absent, or a previous output
(it holds ``show.json``), so a user's own folder is never overwritten.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mvtec_ref.build import iter_samples, load_manifest
from mvtec_ref.errors import DatasetError, MvtecRefError
from mvtec_ref.fileio import dumps_json, staged_directory, write_bytes_atomic, write_text_atomic

MARKER = "show.json"
LONG_SIDE = 640  # image width/height in the picture, in pixels
TARGET_RGB = (255, 0, 200)
OTHER_RGB = (0, 230, 255)
FRAME_RGB = (255, 220, 0)


def show_sentences(dataset: Path, out: Path, *, image: str | None = None, sample: int | None = None,
                   seed: int = 0) -> list[dict]:  # fmt: skip
    """Draw every ref of one image (``image``: its ``id`` or ``image_id``), or ``sample``
    sentences drawn at random (seeded) from the whole dataset, one PNG each; returns the rows
    of ``show.json``."""
    if (image is None) == (sample is None):
        raise MvtecRefError("choose exactly one of --image ID and --sample N")
    if sample is not None and sample < 1:
        raise MvtecRefError(f"--sample must be at least 1, got {sample}")
    manifest = load_manifest(dataset)
    root = Path(manifest["source"]["root"])
    vocab_name = manifest["config"]["refs"].get("vocabulary", manifest["source"]["kind"])
    records = {r["id"]: r for _, r in iter_samples(dataset)}
    picks = _pick(records, image, sample, seed, dataset)  # (record id, ref index, sentence index or None)
    from annotate import load_vocabulary

    vocab = load_vocabulary(vocab_name)
    rows, review = (
        [],
        ["file\tsent_id\timage\tkind\ttarget\ttext\tpixel_judge\tfaithful\tunambiguous\tnatural"],
    )
    with staged_directory(out, marker=MARKER) as stage:
        decoded: dict = {}
        for n, (rid, k, s) in enumerate(picks, start=1):
            record = records[rid]
            if rid not in decoded:
                decoded.clear()  # one image in memory at a time; picks of one image are adjacent
                decoded[rid] = _read_image(root, record)
            ref = record["refs"][k]
            sentences = ref["sentences"] if s is None else [ref["sentences"][s]]
            verdicts = _verdicts(record, decoded[rid], ref, sentences, vocab)
            name = f"{n:03d}_{_safe(rid)}_ref{ref['ref_id']}.png"
            png = render(decoded[rid], record, ref, sentences, verdicts)
            write_bytes_atomic(stage / name, png)
            rows.append({"file": name, "id": rid, "ref_id": ref["ref_id"], "kind": ref["kind"],
                         "region_ids": ref["region_ids"],
                         "sent_ids": [x["sent_id"] for x in sentences]})  # fmt: skip
            for sentence, verdict in zip(sentences, verdicts, strict=True):
                review.append("\t".join([name, str(sentence["sent_id"]), rid, ref["kind"],
                                         ",".join(map(str, ref["region_ids"])) or "none",
                                         sentence["text"], verdict, "", "", ""]))  # fmt: skip
        info = {"dataset": str(Path(dataset).absolute()), "image": image, "sample": sample, "seed": seed,
                "pictures": rows}  # fmt: skip
        write_text_atomic(stage / "review.tsv", "\n".join(review) + "\n")
        write_text_atomic(stage / MARKER, dumps_json(info))
    return rows


def _pick(records: dict, image, sample, seed, dataset) -> list[tuple[str, int, int | None]]:
    if image is not None:
        by_number = {str(r["image_id"]): key for key, r in records.items()}
        key = image if image in records else by_number.get(str(image))
        if key is None:
            example = next(iter(records), "bottle/test/crack/000")
            raise MvtecRefError(f"{dataset}: no image {image!r} (give a sample id such as {example!r} "
                                "or an image_id number)")  # fmt: skip
        return [(key, k, None) for k in range(len(records[key]["refs"]))]
    every = [(key, k, s) for key in sorted(records) for k, ref in enumerate(records[key]["refs"])
             for s in range(len(ref["sentences"]))]  # fmt: skip
    if not every:
        raise DatasetError(f"{dataset}: the dataset holds no sentence")
    chosen = np.random.default_rng(seed).choice(len(every), size=min(sample, len(every)), replace=False)
    return sorted((every[i] for i in chosen), key=lambda p: (p[0], p[1], p[2]))


def _read_image(root: Path, record: dict) -> np.ndarray:
    from mvtec_ref.errors import SampleError
    from mvtec_ref.regions.mask import decode_image

    path = root / record["image_path"]
    try:
        return decode_image(path.read_bytes(), record["image_path"])
    except (OSError, SampleError) as error:
        raise DatasetError(
            f"{path}: cannot read the source image ({error}); moved? rebuild the dataset"
        ) from None


def _verdicts(record: dict, image: np.ndarray, ref: dict, sentences: list[dict], vocab) -> list[str]:
    """The pixel judge on each sentence: "ok" or the rules it breaks."""
    from annotate.pixel_judge import judge_sentence, measure_record

    scene = measure_record(record, image, vocab=vocab)
    out = []
    for sentence in sentences:
        failures = judge_sentence(sentence["text"], ref["region_ids"], record, scene, vocab)
        if not failures and not ref["region_ids"]:
            out.append("no target")
            continue
        out.append("ok" if not failures else "; ".join(f"{f.rule}: {f.detail}" for f in failures))
    return out


def render(image: np.ndarray, record: dict, ref: dict, sentences: list[dict], verdicts: list[str]) -> bytes:
    """PNG bytes: ``image`` (``(H, W)`` or ``(H, W, 3)`` RGB) with the ref's target drawn in, text below."""
    import cv2
    from PIL import Image, ImageDraw, ImageFont

    from mvtec_ref.regions.mask import decode_rle

    rgb = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
    h, w = rgb.shape[:2]
    scale = LONG_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    canvas = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA).copy()
    target = set(ref["region_ids"])
    full = {r["region_id"]: decode_rle(r["segmentation"]) for r in record["regions"]}
    zoom = _zoom(rgb, full, target, size[1])  # the target's pixels unpainted, magnified, outlined
    for region in record["regions"]:
        mask = cv2.resize(full[region["region_id"]], size, interpolation=cv2.INTER_NEAREST)
        if not mask.any():  # a region smaller than one picture pixel: mark where it is
            x, y, bw, bh = region["bbox"]
            cx, cy = round((x + bw / 2) * scale), round((y + bh / 2) * scale)
            mask[max(0, cy - 1) : cy + 2, max(0, cx - 1) : cx + 2] = 1
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        if region["region_id"] in target:
            on = mask.astype(bool)
            canvas[on] = (0.35 * np.asarray(TARGET_RGB) + 0.65 * canvas[on]).astype(np.uint8)
            cv2.drawContours(canvas, contours, -1, TARGET_RGB, 2)
        else:
            cv2.drawContours(canvas, contours, -1, OTHER_RGB, 2)
    fx, fy, fw, fh = record["frame"]["bbox"]
    cv2.rectangle(canvas, (round(fx * scale), round(fy * scale)),
                  (round((fx + fw) * scale) - 1, round((fy + fh) * scale) - 1), FRAME_RGB, 1)  # fmt: skip
    frame = record["frame"]
    if frame.get("kind") == "axis":  # the axis, a dot at its first-named (wider) end
        (x0, y0), (x1, y1) = frame["axis"]["start"], frame["axis"]["end"]
        start = (round(x0 * scale), round(y0 * scale))
        cv2.line(canvas, start, (round(x1 * scale), round(y1 * scale)), FRAME_RGB, 1)
        cv2.circle(canvas, start, 4, FRAME_RGB, -1)
    elif frame.get("kind") == "round":  # the circle clock and rim words refer to
        cx, cy = frame["center"]
        cv2.circle(
            canvas, (round(cx * scale), round(cy * scale)), round(frame["radius"] * scale), FRAME_RGB, 1
        )
    if zoom is not None:
        canvas = np.concatenate([canvas, np.full((size[1], 6, 3), 255, np.uint8), zoom], axis=1)
        size = (canvas.shape[1], canvas.shape[0])

    font = ImageFont.load_default(size=15)
    small = ImageFont.load_default(size=12)
    width = max(size[0], 560)
    grey = (90, 90, 90)
    every = [r["region_id"] for r in record["regions"]]
    lines: list[tuple[str, object, tuple]] = [
        (f"{record['id']}  ({record['category']} / {record['defect_type']}, {w}x{h})", small, grey),
        (f"ref {ref['ref_id']}: {ref['kind']}, target regions {sorted(target) or 'none'} of {every}; "
         f"frame: {record['frame']['source']} {record['frame'].get('kind', '')}", small, grey),
    ]  # fmt: skip
    for sentence, verdict in zip(sentences, verdicts, strict=True):
        for part in _wrap(f'"{sentence["text"]}"', font, width - 16):
            lines.append((part, font, (0, 0, 0)))
        colour = (0, 120, 0) if verdict in ("ok", "no target") else (190, 0, 0)
        for part in _wrap(f"pixel judge: {verdict}", small, width - 28):
            lines.append(("   " + part, small, colour))
    line_h = [(f.size + 5) for _, f, _ in lines]
    panel_h = sum(line_h) + 12
    picture = Image.new("RGB", (width, size[1] + panel_h), (255, 255, 255))
    picture.paste(Image.fromarray(canvas), (0, 0))
    draw = ImageDraw.Draw(picture)
    y = size[1] + 6
    for (text, f, colour), lh in zip(lines, line_h, strict=True):
        draw.text((8, y), text, font=f, fill=colour)
        y += lh
    import io

    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _zoom(rgb: np.ndarray, masks: dict, target: set, height: int) -> np.ndarray | None:
    """``(height, height, 3)``: a square around the target regions (twice their extent, at least
    48 px), magnified, with only a thin outline so that their pixels can be seen as they are."""
    import cv2

    if not target:
        return None
    union = np.zeros(rgb.shape[:2], np.uint8)
    for rid in target:
        union |= masks[rid]
    ys, xs = np.nonzero(union)
    cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
    half = max(24, xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
    x1, y1 = int(min(rgb.shape[1], cx + half + 1)), int(min(rgb.shape[0], cy + half + 1))
    scale = height / max(x1 - x0, y1 - y0)
    dsize = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
    crop = cv2.resize(
        rgb[y0:y1, x0:x1], dsize, interpolation=cv2.INTER_NEAREST if scale > 1 else cv2.INTER_AREA
    )
    crop = np.ascontiguousarray(crop)
    mask = cv2.resize(union[y0:y1, x0:x1], dsize, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(crop, contours, -1, TARGET_RGB, 1)
    panel = np.full((height, height, 3), 255, np.uint8)
    panel[: crop.shape[0], : crop.shape[1]] = crop[:height, :height]
    return panel


def _wrap(text: str, font, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        trial = f"{line} {word}".strip()
        if line and font.getlength(trial) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return [*lines, line] if line else lines


def _safe(sample_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in sample_id)


def load_show(out: Path) -> dict:
    """The ``show.json`` of an output folder (tests, tools)."""
    return json.loads((Path(out) / MARKER).read_text(encoding="utf-8"))
