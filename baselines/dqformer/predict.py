"""``mvtec-ref predict``: masks for one image and its sentences, or for every sentence of a split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mvtec_ref.errors import MvtecRefError
from mvtec_ref.fileio import dumps_json, staged_directory

MARKER = "PREDICTIONS.json"


def _png(array: np.ndarray) -> bytes:
    import cv2

    ok, data = cv2.imencode(".png", array)
    if not ok:
        raise OSError("PNG encoding failed")
    return data.tobytes()


def predict_files(
    run: Path, image: Path, texts: list[str], out: Path, *, checkpoint: str = "best", device=None
) -> int:
    """Write ``mask.png`` (0/255) and ``overlay.png`` per sentence (``_01``, ``_02``... when several)."""
    import cv2

    from baselines.dqformer.infer import load_run, overlay, predict_image
    from mvtec_ref.regions.mask import decode_image

    image = Path(image)
    try:
        pixels = decode_image(image.read_bytes(), str(image))
    except FileNotFoundError:
        raise MvtecRefError(f"{image}: image not found") from None
    except Exception as error:
        raise MvtecRefError(str(error)) from None
    rgb = np.repeat(pixels[:, :, None], 3, axis=2) if pixels.ndim == 2 else pixels[:, :, :3]
    model, config, tokenizer = load_run(run, checkpoint=checkpoint, device=device)
    masks = predict_image(model, config, tokenizer, np.ascontiguousarray(rgb), texts)
    with staged_directory(out, marker=MARKER) as stage:
        for k, mask in enumerate(masks, start=1):
            suffix = "" if len(texts) == 1 else f"_{k:02d}"
            (stage / f"mask{suffix}.png").write_bytes(_png(mask.astype(np.uint8) * 255))
            shown = cv2.cvtColor(overlay(rgb, mask), cv2.COLOR_RGB2BGR)
            (stage / f"overlay{suffix}.png").write_bytes(_png(shown))
        record = {"run": str(run), "checkpoint": checkpoint, "image": str(image), "texts": texts,
                  "anomaly_pixels": [int(m.sum()) for m in masks]}  # fmt: skip
        (stage / MARKER).write_text(dumps_json(record), encoding="utf-8")
    return len(masks)


def predict_dataset(
    run: Path, dataset: Path, split: str, out: Path, *, checkpoint: str = "best", device=None,
    probes: Path | None = None, progress: bool | None = None,
) -> int:  # fmt: skip
    """Write ``<sent_id>.png`` (0/255, original size) for every sentence of ``split``, and with
    ``probes`` (a contrast set of that split) ``<probe_id>.png`` for each probe. ``progress``: as
    ``mvtec_ref.progress.progress_bar``."""
    from baselines.dqformer.data import open_split
    from baselines.dqformer.infer import iter_masks, load_run

    model, config, tokenizer = load_run(run, checkpoint=checkpoint, device=device)
    data = open_split(dataset, split, config, tokenizer)
    names = [str(item.sent_id) for item in data.items]
    if probes is not None:
        names += add_probe_items(data, probes)
    device = next(model.parameters()).device
    with staged_directory(out, marker=MARKER) as stage:
        masks = iter_masks(model, data, device=device, progress=progress, desc="predict")
        for (_, mask), name in zip(masks, _in_yield_order(data, names), strict=True):
            (stage / f"{name}.png").write_bytes(_png(mask.astype(np.uint8) * 255))
        record = {"run": str(run), "checkpoint": checkpoint, "dataset": str(dataset), "split": split,
                  "sentences": len(data)}  # fmt: skip
        if probes is not None:
            record["probes"] = str(probes)
        (stage / MARKER).write_text(dumps_json(record), encoding="utf-8")
    return len(data)


def add_probe_items(data, probes: Path) -> list[str]:
    """Append each probe of ``probes`` to ``data`` as a sentence of its image (no ref: ``ref`` -1,
    ``sent_id`` -1), so ``iter_masks`` predicts it with the image's own sentences; their names."""
    from baselines.dqformer.data import Item
    from mvtec_ref.probes import load_probes

    _, items = load_probes(probes)
    index = {record["id"]: r for r, record in enumerate(data.records)}
    names = []
    for probe in items:
        r = index.get(probe["id"])
        if r is None:
            raise MvtecRefError(f"{probes}: image {probe['id']} is not in this split of {data.dataset}")
        data.by_record[r].append(len(data.items))
        data.items.append(Item(r, -1, -1, probe["text"]))
        names.append(probe["probe_id"])
    return names


def _in_yield_order(data, names: list[str]):
    """``names`` (one per item) in the order ``iter_masks`` yields items: image by image."""
    return (names[i] for mine in data.by_record for i in mine)
