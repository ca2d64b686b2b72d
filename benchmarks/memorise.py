"""``make memorise``: can the model learn to read? The first check to run after any model change.

A model that cannot memorise which of an image's defects a sentence names, on the very images and
sentences it was trained on, will not show reading in any protocol run. So: the preset (default
``tiny``) is trained on ``--images`` (16) multi-region training images of the ablation's synthetic
dataset and every sentence of theirs that has a target, then scored on those same sentences:

- **part-scope IoU with the target** (mean over part-scope sentences: the target is some, not all,
  of the image's regions) at least 0.8;
- **the words, not the image, choose the part**: gibberish and the universal prompt "anomaly" both
  give (about) every region, so their mask's IoU with each part-scope sentence's target is at most
  0.6 (mean);
- **location swaps move the mask**: each location sentence with its place edited as the contrast
  sets do (``annotate.contrast``), where the edit's target differs from the source's: mean
  1 - IoU(edited sentence's mask, source sentence's mask) at least 0.5.

It fails when the model keeps the union of the regions (the plateau of issue 33: part-scope IoU
0.43, gibberish IoU 0.84 with every region, location swaps moving 0.003 of the mask).

To fit a 2-core CPU in under 10 minutes, the backbone is frozen and its features computed once per
image (the words never reach it); everything after it is the preset's model, optimiser, learning-rate
schedule and training step (``train.train_step``). Each step takes ``--batch`` images with
``--sentences`` sentences each, drawn by the preset's sampler share (``part_share``). Masks are the
argmax of the two logits at the original size (the synthetic images are the preset's 256 x 256).

    python -m benchmarks.memorise [--preset tiny] [--steps N] [--images 16] [--out DIR] [--seed 0]
        [--set field=value ...]

Prints the figures and the verdicts, writes ``OUT/memorise.json``; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

GIBBERISH = "blorf zint quave dropple mur"
STEPS = 300
TARGETS = {  # figure: (kind, bound)
    "part_iou_target": ("at_least", 0.8),
    "gibberish_iou_target": ("at_most", 0.6),
    "anomaly_iou_target": ("at_most", 0.6),
    "location_swap_moved": ("at_least", 0.5),
}


def cached_backbone(backbone, images):
    """A module standing in for ``backbone``: ``(n,)`` long image numbers -> the four feature maps of
    those of ``images`` ``(N, 3, S, S)``, computed once, frozen."""
    import torch
    from torch import nn

    class Cached(nn.Module):
        channels = backbone.channels

        def __init__(self, features):
            super().__init__()
            self.features = features

        def forward(self, index):
            return [f.index_select(0, index) for f in self.features]

    backbone.eval()
    with torch.no_grad():
        return Cached([f.contiguous() for f in backbone(images)])


def location_swaps(data, records: list[int], sentences: dict[int, list[int]]) -> list[tuple[int, str, list]]:
    """``(item index, edited text, edited target)`` for each location edit whose target moved."""
    from annotate import load_vocabulary
    from annotate.contrast import Evidence, probes_for_sentence

    vocab = load_vocabulary(data.manifest.get("config", {}).get("refs", {}).get("vocabulary", "mvtec_ad"))
    swaps = []
    for r in records:
        evidence = Evidence(data.records[r], vocab, data.root)
        for i in sentences[r]:
            item = data.items[i]
            rng = np.random.default_rng([0, item.sent_id])
            for edit in probes_for_sentence(item.text, evidence, rng):
                if edit["edit"] == "location" and sorted(edit["region_ids"]) != sorted(data.region_ids(item)):
                    swaps.append((i, edit["text"], edit["region_ids"]))
    return swaps


def memorise(config, dataset: Path, *, images: int, steps: int, batch: int, sentences: int,
             progress: bool = True) -> dict:  # fmt: skip
    """Train ``config`` on the part-scope images' sentences for ``steps`` steps; return the figures."""
    import cv2
    import torch

    from baselines.dqformer.backbone import load_tokenizer
    from baselines.dqformer.data import open_split
    from baselines.dqformer.diagnose import curve_records
    from baselines.dqformer.infer import masks_at
    from baselines.dqformer.model import build_dqformer
    from baselines.dqformer.train import Dist, Trainer, lr_factor, param_groups, train_step
    from mvtec_ref.evaluate import target_scope
    from mvtec_ref.metrics import mask_iou

    began = time.perf_counter()
    torch.manual_seed(config.seed)
    tokenizer = load_tokenizer(config.text_encoder, pretrained=config.text_pretrained)
    data = open_split(dataset, "train", config, tokenizer)
    records = curve_records(data, images)
    mine = {r: [i for i in data.by_record[r] if data.has_target(data.items[i])] for r in records}
    part = {
        i
        for r in records
        for i in mine[r]
        if target_scope(data.records[r], data.records[r]["refs"][data.items[i].ref]) == "part"
    }
    swaps = location_swaps(data, records, mine)
    s = config.image_size
    pixels = torch.stack([torch.from_numpy(data.resized_image(r).transpose(2, 0, 1).copy()) for r in records])
    targets = {i: torch.from_numpy(cv2.resize(data.target(data.items[i]), (s, s),
                                              interpolation=cv2.INTER_NEAREST)).long()
               for r in records for i in mine[r]}  # fmt: skip
    model = build_dqformer(config)
    texts = sorted({data.items[i].text for r in records for i in mine[r]} | {t for _, t, _ in swaps}
                   | {GIBBERISH, "anomaly"})  # fmt: skip
    model.text_encoder.prefill(**data.tokenize(texts))
    # on the training split's own sentences; training also reads their flips, negatives and edits
    model.text_encoder.fit_whitening(**data.tokenize(data.texts()))
    model.backbone = cached_backbone(model.backbone, pixels)
    optimizer = torch.optim.AdamW(param_groups(model, config), lr=config.lr)
    trained = [p for group in optimizer.param_groups for p in group["params"]]
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    trainer = Trainer(model, model, optimizer, scaler, trained, torch.device("cpu"), False)
    model.train()
    rng = np.random.default_rng([config.seed, 33])
    order: list[int] = []
    losses = []
    for step in range(steps):
        if len(order) < batch:
            order += rng.permutation(len(records)).tolist()
        chosen, order = order[:batch], order[batch:]
        picks = []
        for n in chosen:
            own = mine[records[n]]
            parts = [i for i in own if i in part]
            for _ in range(sentences):
                pool = parts if parts and rng.random() < config.part_share else own
                picks.append(pool[int(rng.integers(len(pool)))])
        batch_data = {
            "image": torch.tensor(chosen),
            "target": torch.stack([targets[i] for i in picks]),
            **data.tokenize([data.items[i].text for i in picks]),
            "image_index": torch.arange(len(chosen)).repeat_interleave(sentences),
        }
        loss, _ = train_step(trainer, batch_data, config, lr_factor(step, steps, config), Dist())
        losses.append(loss)
        if progress and (step + 1) % 25 == 0:
            print(f"step {step + 1}/{steps}: loss {np.mean(losses[-25:]):.3f} "
                  f"({time.perf_counter() - began:.0f} s)", flush=True)  # fmt: skip
    trained_s = time.perf_counter() - began

    model.eval()

    def masks(n: int, texts: list[str]) -> list[np.ndarray]:
        with torch.no_grad():
            tokens = data.tokenize(texts)
            logits, _ = model(
                torch.tensor([n]), tokens, image_index=torch.zeros(len(texts), dtype=torch.long)
            )
        record = data.records[records[n]]
        return masks_at(logits, [(record["height"], record["width"])] * len(texts))

    figures: dict[str, list[float]] = {
        name: [] for name in (*TARGETS, "part_iou_union", "gibberish_iou_union")
    }
    own_mask = {}
    for n, r in enumerate(records):
        got = masks(n, [data.items[i].text for i in mine[r]])
        gibberish, anomaly = masks(n, [GIBBERISH, "anomaly"])
        union = data.union(r) > 0
        for i, mask in zip(mine[r], got, strict=True):
            own_mask[i] = mask
            if i not in part:
                continue
            target = data.target(data.items[i]) > 0
            figures["part_iou_target"].append(mask_iou(mask, target))
            figures["part_iou_union"].append(mask_iou(mask, union))
            figures["gibberish_iou_target"].append(mask_iou(gibberish, target))
            figures["gibberish_iou_union"].append(mask_iou(gibberish, union))
            figures["anomaly_iou_target"].append(mask_iou(anomaly, target))
        edits = [(i, t) for i, t, _ in swaps if data.items[i].record == r]
        if edits:
            for (i, _), mask in zip(edits, masks(n, [t for _, t in edits]), strict=True):
                figures["location_swap_moved"].append(1 - mask_iou(mask, own_mask[i]))
    result = {name: (float(np.mean(v)) if v else None) for name, v in figures.items()}
    return {
        **result,
        "images": len(records), "sentences": sum(len(v) for v in mine.values()), "part_scope": len(part),
        "location_swaps": len(swaps), "steps": steps, "batch": f"{batch} x {sentences}",
        "final_loss": float(np.mean(losses[-25:])), "train_s": trained_s,
        "total_s": time.perf_counter() - began,
    }  # fmt: skip


def verdicts(result: dict) -> dict[str, bool]:
    out = {}
    for name, (kind, bound) in TARGETS.items():
        value = result[name]
        out[name] = value is not None and (value >= bound if kind == "at_least" else value <= bound)
    return out


def main(argv=None) -> dict:
    import torch

    from baselines.dqformer.config import PRESETS
    from benchmarks.language_ablation import CATEGORIES, PER_TYPE, overrides, prepare
    from mvtec_ref.fileio import dumps_json, write_text_atomic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4, help="images per step")
    parser.add_argument("--sentences", type=int, default=4, help="sentences per image and step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=Path(".cache/memorise"))
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="change a preset field (repeatable), e.g. --set lma_norm=false")  # fmt: skip
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = PRESETS[args.preset]().replace(**overrides(args.set), seed=args.seed)
    steps = args.steps
    dataset, _ = prepare(args.out, CATEGORIES, PER_TYPE)
    result = memorise(config, dataset, images=args.images, steps=steps, batch=args.batch,
                      sentences=args.sentences)  # fmt: skip
    ok = verdicts(result)
    changed = f" ({', '.join(args.set)})" if args.set else ""
    lines = [f"memorise: {args.preset}{changed}, {result['images']} images, {result['sentences']} sentences "
             f"({result['part_scope']} part-scope, {result['location_swaps']} location swaps), "
             f"{steps} steps of {result['batch']}, {result['total_s']:.0f} s"]  # fmt: skip
    for name, (kind, bound) in TARGETS.items():
        sign = ">=" if kind == "at_least" else "<="
        lines.append(f"  {name:24s} {result[name]:.3f}  {'met' if ok[name] else 'NOT met'} ({sign} {bound})")
    for name in ("part_iou_union", "gibberish_iou_union"):
        lines.append(f"  {name:24s} {result[name]:.3f}")
    print("\n".join(lines))
    write_text_atomic(args.out / "memorise.json",
                      dumps_json({**result, "met": ok, "preset": args.preset, "set": args.set}))  # fmt: skip
    if not all(ok.values()):
        sys.exit(1)
    return result


if __name__ == "__main__":
    main()
