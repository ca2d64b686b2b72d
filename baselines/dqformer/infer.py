"""Inference: masks at the original resolution, scoring a split, loading a run folder.

A mask is ``argmax`` over the two channels after the ``(2, H/4, W/4)`` logits are upsampled
bilinearly to the image's original ``(H, W)``: no threshold anywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mvtec_ref.errors import MvtecRefError

CHECKPOINTS = ("best", "last")


def masks_at(logits, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    """``(B, 2, h, w)`` logits -> B ``(H_i, W_i)`` bool masks at each original size."""
    import torch.nn.functional as F

    out = []
    for row, size in zip(logits.float(), sizes, strict=True):
        up = F.interpolate(row[None], size=size, mode="bilinear", align_corners=False)[0]
        out.append((up[1] > up[0]).cpu().numpy())  # argmax(0), ties to background; argmax took 1/3 of eval
    return out


def iter_masks(
    model, data, *, device, batch_size: int = 16, limit: int = 0, progress: bool | None = None, desc="eval"
):
    """``(item, (H, W) bool mask)`` for the first ``limit`` sentences of ``data`` (all when 0), in
    order, masks at each image's original size. Each image is read and encoded once for up to
    ``batch_size`` of its sentences. ``progress``: as ``mvtec_ref.progress.progress_bar``."""
    import torch

    from mvtec_ref.progress import progress_bar

    n = len(data) if limit <= 0 else min(limit, len(data))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for r, mine in enumerate(progress_bar(data.by_record, desc=desc, unit="img", progress=progress)):
            mine = [i for i in mine if i < n]
            record = data.records[r]
            for start in range(0, len(mine), batch_size):
                chunk = mine[start : start + batch_size]
                inputs = {k: v.to(device) for k, v in data.inputs(r, chunk).items()}
                text = {k: inputs[k] for k in ("input_ids", "attention_mask")}
                index = torch.zeros(len(chunk), dtype=torch.long, device=device)
                with autocast_for(device):
                    logits, _ = model(inputs["image"], text, image_index=index)
                masks = masks_at(logits, [(record["height"], record["width"])] * len(chunk))
                yield from zip([data.items[i] for i in chunk], masks, strict=True)
    model.train(was_training)


def evaluate_model(
    model, data, *, device, batch_size: int = 16, limit: int = 0, progress: bool | None = None, desc="eval"
) -> dict:
    """Score every sentence of ``data`` at the original mask resolution; returns
    ``RefSegMetrics.compute()`` with the usual breakdowns."""
    return score_split(
        model, data, device=device, batch_size=batch_size, limit=limit, progress=progress, desc=desc
    )["sentences"]


def score_split(
    model, data, probes=(), *, device, batch_size: int = 16, limit: int = 0, progress=None, desc="eval"
) -> dict:
    """The sentences of ``data`` (the first ``limit`` when > 0) and the probes made from them
    (``mvtec_ref.probes`` records), in one pass: each image is encoded once for both. Masks at the
    original resolution. Returns ``sentences`` (``RefSegMetrics.compute()``), ``probes``
    (``ContrastMetrics.compute()``, a probe judged against its source sentence's mask) and
    ``part_scope`` (part-scope sentences: how many, and their masks' mean IoU with every region of
    the image: 1.0 is the union plateau)."""
    import copy

    from baselines.dqformer.data import Item
    from mvtec_ref.evaluate import ref_groups, target_scope
    from mvtec_ref.metrics import ContrastMetrics, RefSegMetrics, mask_iou

    n = len(data.items) if limit <= 0 else min(limit, len(data.items))
    scored = {data.items[i].sent_id for i in range(n)}
    probes = [p for p in probes if p["sent_id"] in scored]
    index = {record["id"]: r for r, record in enumerate(data.records)}
    view = copy.copy(data)  # the sentences, then each image's probes (sent_id -1 - probe number)
    view.items = data.items[:n]
    view.by_record = [[i for i in ids if i < n] for ids in data.by_record]
    for j, probe in enumerate(probes):
        r = index[probe["id"]]
        view.by_record[r].append(len(view.items))
        view.items.append(Item(r, -1, -1 - j, probe["text"]))
    cuts = tuple(data.manifest["config"]["regions"]["size_cuts"])
    sentences, contrast = RefSegMetrics(), ContrastMetrics()
    every_region: list[float] = []
    current, masks, waiting, union = None, {}, [], None

    def flush():
        for probe, pred in waiting:
            gt = data.union(index[probe["id"]], probe["region_ids"])
            gt_source = data.union(index[probe["id"]], probe["source_region_ids"])
            contrast.update(pred, masks[probe["sent_id"]], gt, gt_source, probe["edit"])
        waiting.clear()
        masks.clear()

    masks_of = iter_masks(model, view, device=device, batch_size=batch_size, progress=progress, desc=desc)
    for item, pred in masks_of:
        if item.record != current:
            flush()
            current, union = item.record, None
        if item.sent_id < 0:
            waiting.append((probes[-1 - item.sent_id], pred))
            continue
        record = data.records[item.record]
        gt = data.target(item)
        sentences.update(pred, gt, ref_groups(record, record["refs"][item.ref], gt, cuts))
        if probes:
            masks[item.sent_id] = pred
        if target_scope(record, record["refs"][item.ref]) == "part":
            if union is None:  # decoded once per image, and only where it has part-scope sentences
                union = data.union(item.record) > 0
            every_region.append(mask_iou(pred > 0, union))  # at the image's size
    flush()
    mean = sum(every_region) / len(every_region) if every_region else None
    return {"sentences": sentences.compute(), "probes": contrast.compute(),
            "part_scope": {"sentences": len(every_region), "iou_every_region": mean}}  # fmt: skip


def autocast_for(device, enabled: bool = True):
    """bf16 autocast on CUDA (fp16 where bf16 is missing); nothing on the CPU or when disabled."""
    import contextlib

    import torch

    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def load_run(run: Path, *, checkpoint: str = "best", device=None):
    """(model in eval mode, config, tokenizer) from a ``train-baseline`` run folder; no download."""
    import torch
    from transformers import AutoTokenizer

    from baselines.dqformer.config import DQFormerConfig
    from baselines.dqformer.model import build_dqformer

    run = Path(run)
    path = run / f"{checkpoint}.pt"
    if not path.is_file():
        present = [c for c in CHECKPOINTS if (run / f"{c}.pt").is_file()]
        hint = f"present: {', '.join(present)}" if present else "is it a train-baseline --out folder?"
        raise MvtecRefError(f"{path}: checkpoint not found ({hint})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        config = DQFormerConfig.from_record(state["config"])
    except Exception as error:  # a truncated or foreign file: say which
        raise MvtecRefError(f"{path}: not a readable mvtec-ref checkpoint ({error})") from None
    model = build_dqformer(config, pretrained=False, hf_configs=state["hf_configs"])
    model.load_state_dict(state["model"])
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(run / "tokenizer"))
    return model, config, tokenizer


def predict_image(model, config, tokenizer, image: np.ndarray, texts: list[str]) -> list[np.ndarray]:
    """``(H, W, 3)`` uint8 RGB image + sentences -> one ``(H, W)`` bool mask per sentence."""
    import torch

    from baselines.dqformer.data import resize_image

    device = next(model.parameters()).device
    small = resize_image(image, config.image_size)
    x = torch.from_numpy(small.astype(np.float32).transpose(2, 0, 1) / 255.0)[None].to(device)
    tokens = tokenizer(texts, padding="max_length", max_length=config.max_tokens, truncation=True,
                       return_tensors="pt")  # fmt: skip
    text = {k: tokens[k].to(device) for k in ("input_ids", "attention_mask")}
    with torch.no_grad(), autocast_for(device):
        logits, _ = model(x.expand(len(texts), -1, -1, -1), text)
    return masks_at(logits, [image.shape[:2]] * len(texts))


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with the mask tinted red and outlined: ``(H, W, 3)`` uint8 RGB."""
    import cv2

    out = image.copy()
    red = np.array([255, 0, 0], np.float32)
    out[mask] = (0.5 * out[mask] + 0.5 * red).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, (255, 0, 0), 1)
    return out
