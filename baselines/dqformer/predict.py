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
    run: Path, dataset: Path, split: str, out: Path, *, checkpoint: str = "best", device=None
) -> int:
    """Write ``<sent_id>.png`` (0/255, original size) for every sentence of ``split``."""
    from baselines.dqformer.data import RefSegDataset
    from baselines.dqformer.infer import iter_masks, load_run

    model, config, tokenizer = load_run(run, checkpoint=checkpoint, device=device)
    data = RefSegDataset(dataset, split, tokenizer=tokenizer, image_size=config.image_size,
                         max_tokens=config.max_tokens, no_language=config.no_language)  # fmt: skip
    device = next(model.parameters()).device
    with staged_directory(out, marker=MARKER) as stage:
        for item, mask in iter_masks(model, data, device=device):
            (stage / f"{item.sent_id}.png").write_bytes(_png(mask.astype(np.uint8) * 255))
        record = {"run": str(run), "checkpoint": checkpoint, "dataset": str(dataset), "split": split,
                  "sentences": len(data)}  # fmt: skip
        (stage / MARKER).write_text(dumps_json(record), encoding="utf-8")
    return len(data)
