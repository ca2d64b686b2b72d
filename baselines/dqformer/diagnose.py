"""Language curves: does the sentence change what the model computes, and does it pick the part?

A model that ignores the words segments every defect of an image whatever the sentence says
(the "union plateau"). These figures show that state, and its end, on any run:

- ``part_iou_target`` / ``part_iou_union``: for each part-scope sentence (its target is some but
  not all of the image's regions), the IoU of its mask with the target and with the union of all
  the image's regions; means. On the plateau the first is ~0.4 and the second ~0.9.
- ``var_lma`` / ``var_pixel`` / ``var_logits``: how much the sentences of one image change LMA's
  stride-4 output, the pixel embedding and the mask logits (anomaly minus background): the
  standard deviation across the image's sentences, averaged over positions and channels, divided
  by the standard deviation of all their values (0: the sentence changes nothing); mean over images.

- ``swaps``: on the eval split, per swap kind (``type``, ``location``), the share of probes
  (``mvtec-ref probes``: a sentence with one claim edited) whose answer is empty that the model
  answers empty, at the original resolution, over a fixed seeded subset of at most
  ``swap_probes`` probes per kind: the protocol's swap targets, as a curve.

Masks are the argmax of the two logits at the input resolution ``S x S`` (not the original size:
these are curves, not the reported scores). ``curve_records`` picks the images: those with at
least two regions and a part-scope sentence, in a seeded order, so every epoch and every run of
a dataset reads the same ones.
"""

from __future__ import annotations

import numpy as np

FIGURES = ("part_iou_target", "part_iou_union", "var_lma", "var_pixel", "var_logits")
CURVE_SEED = 33
SWAPS = ("type", "location")  # the edits whose empty answers the protocol counts


def curve_records(data, limit: int = 0) -> list[int]:
    """Indices of ``data.records`` with >= 2 regions and a part-scope sentence, in a seeded order;
    the first ``limit`` (all when 0)."""
    from mvtec_ref.evaluate import target_scope

    found = [
        r
        for r, record in enumerate(data.records)
        if len(record["regions"]) >= 2
        and any(target_scope(record, record["refs"][data.items[i].ref]) == "part" for i in data.by_record[r])
    ]
    order = np.random.default_rng(CURVE_SEED).permutation(len(found))
    chosen = [found[j] for j in order]
    return sorted(chosen[:limit] if limit > 0 else chosen)


def swap_probes(dataset, split: str, limit: int) -> list[dict]:
    """Probes of ``split``'s defect images whose answer is empty, at most ``limit`` per swap kind,
    a seeded choice in file order (the same ones every epoch and every run of a dataset)."""
    from mvtec_ref.errors import DatasetError
    from mvtec_ref.probes import build_probes

    try:
        _, probes = build_probes(dataset, split=split, seed=0, progress=False)
    except DatasetError:  # no defect image in the split: no swap curve
        return []
    chosen = []
    for kind in SWAPS:
        found = [j for j, p in enumerate(probes) if p["edit"] == kind and not p["region_ids"]]
        order = np.random.default_rng([CURVE_SEED, SWAPS.index(kind)]).permutation(len(found))
        chosen += [found[j] for j in order[:limit]]
    return [probes[j] for j in sorted(chosen)]


def swap_figures(contrast: dict) -> dict:
    """``{kind: {"answered_empty": share or None, "probes": n}}`` from ``ContrastMetrics``' result."""
    out = {}
    for kind in SWAPS:
        table = contrast["by_edit"].get(kind, {})
        out[kind] = {
            "answered_empty": table.get("empty_answered_empty"),
            "probes": table.get("without_target", 0),
        }
    return out


def spread_across(x) -> float:
    """``(S, ...)`` values of S sentences: mean std across sentences / std of everything."""
    total = float(x.float().std())
    return float(x.float().std(0, unbiased=False).mean()) / total if total > 0 and len(x) > 1 else 0.0


def language_figures(model, data, records: list[int], *, device) -> dict:
    """The figures above for ``records`` of ``data`` (a ``RefSegDataset``), every sentence of each
    image that has a target; ``{name: float or None}`` plus ``sentences`` (part-scope, counted)."""
    import cv2
    import torch
    import torch.nn.functional as F

    from baselines.dqformer.infer import autocast_for
    from mvtec_ref.evaluate import target_scope
    from mvtec_ref.metrics import mask_iou

    seen: dict = {}

    def keep(name):
        return lambda module, inputs, output: seen.__setitem__(name, output.detach())

    hooks = [model.lma.gates[0].register_forward_hook(keep("lma")),
             model.lma.pixel_embedding.register_forward_hook(keep("pixel"))]  # fmt: skip
    figures: dict[str, list[float]] = {name: [] for name in FIGURES}
    was_training = model.training
    model.eval()
    s = data.image_size
    try:
        for r in records:
            record = data.records[r]
            mine = [i for i in data.by_record[r] if data.has_target(data.items[i])]
            if not mine:
                continue
            inputs = {k: v.to(device) for k, v in data.inputs(r, mine).items()}
            index = torch.zeros(len(mine), dtype=torch.long, device=device)
            with torch.no_grad(), autocast_for(device):
                text = {k: inputs[k] for k in ("input_ids", "attention_mask")}
                logits, _ = model(inputs["image"], text, image_index=index)
            up = F.interpolate(logits.float(), size=(s, s), mode="bilinear", align_corners=False)
            margin = up[:, 1] - up[:, 0]
            figures["var_lma"].append(spread_across(seen["lma"]))
            figures["var_pixel"].append(spread_across(seen["pixel"]))
            figures["var_logits"].append(spread_across(margin))
            masks = (margin > 0).cpu().numpy()
            union = cv2.resize(data.union(r), (s, s), interpolation=cv2.INTER_NEAREST) > 0
            for mask, i in zip(masks, mine, strict=True):
                item = data.items[i]
                if target_scope(record, record["refs"][item.ref]) != "part":
                    continue
                target = cv2.resize(data.target(item), (s, s), interpolation=cv2.INTER_NEAREST) > 0
                figures["part_iou_target"].append(mask_iou(mask, target))
                figures["part_iou_union"].append(mask_iou(mask, union))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    out = {name: (float(np.mean(v)) if v else None) for name, v in figures.items()}
    return {**out, "sentences": len(figures["part_iou_target"])}


def plot_language(history: list[dict], path) -> None:
    """Draw the per-epoch ``language`` figures of a run's metrics lines into one PNG (atomic), and
    the ``swaps`` curves in a third panel when the run has them; the focus epochs (lines with
    ``focus`` true) shaded on every panel, and a dotted line where ``wrong`` (a wrong-answer
    term in the loss) first holds."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from mvtec_ref.fileio import write_bytes_atomic

    lines = [h for h in history if h.get("language")]
    if not lines:
        return
    epochs = [h["epoch"] for h in lines]
    splits = list(lines[-1]["language"])
    swaps = any(h.get("swaps") for h in lines)
    fig, axes = plt.subplots(1, 3 if swaps else 2, figsize=(16.5 if swaps else 11, 4))
    iou_ax, var_ax = axes[:2]
    styles = {"part_iou_target": "-", "part_iou_union": "--"}
    colours = dict(zip(splits, ("#4c72b0", "#dd8452", "#55a868"), strict=False))
    for split in splits:
        for name, style in styles.items():
            values = [h["language"].get(split, {}).get(name) for h in lines]
            what = "target" if name.endswith("target") else "every region"
            iou_ax.plot(epochs, [np.nan if v is None else v for v in values], style, color=colours[split],
                        label=f"{split}: IoU with {what}")  # fmt: skip
    iou_ax.set_ylim(0, 1)
    iou_ax.set_xlabel("epoch")
    iou_ax.set_ylabel("mean mask IoU, part-scope sentences")
    iou_ax.set_title("Part-scope: the target, or every region?")
    for name, style in (("var_lma", "-"), ("var_pixel", "--"), ("var_logits", ":")):
        for split in splits:
            values = [h["language"].get(split, {}).get(name) for h in lines]
            var_ax.plot(epochs, [np.nan if v is None else v for v in values], style, color=colours[split],
                        label=f"{split}: {name[4:]}")  # fmt: skip
    var_ax.set_xlabel("epoch")
    var_ax.set_ylabel("std across one image's sentences / std")
    var_ax.set_title("How much the sentence changes LMA, pixels, logits")
    if swaps:
        swap_ax, split = axes[2], lines[-1].get("split", "eval")
        colour = colours.get(split, "#55a868")  # the eval split's colour on the other panels
        for kind, style in zip(SWAPS, ("-", "--"), strict=True):
            values = [(h.get("swaps") or {}).get(kind, {}).get("answered_empty") for h in lines]
            swap_ax.plot(epochs, [np.nan if v is None else v for v in values], style, color=colour,
                         label=f"{split}: {kind} swaps")  # fmt: skip
        swap_ax.set_ylim(0, 1)
        swap_ax.set_xlabel("epoch")
        swap_ax.set_ylabel("share answered empty")
        swap_ax.set_title("Edited sentences that name nothing: answered empty?")
    focus = [h["epoch"] for h in lines if h.get("focus")]
    wrong = [h["epoch"] for h in lines if h.get("wrong")]
    for ax in axes:
        if focus:  # an epoch's point sits at its end: the span covers the epochs' training
            ax.axvspan(min(focus) - 1, max(focus), color="#999999", alpha=0.15, lw=0, label="focus epochs")
        if wrong:
            ax.axvline(min(wrong) - 1, color="#c44e52", ls=":", lw=1.5, label="wrong-answer terms from here")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())
