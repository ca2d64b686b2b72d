"""PNG figures for ``mvtec-ref stats --plots DIR`` (matplotlib, imported only here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def draw_plots(summary: dict, out: Path) -> list[Path]:
    """Draw four figures from ``summarize(..., with_raw=True)``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    raw = summary["raw"]
    paths = []

    ratios = {k: v for k, v in raw["ratios"].items() if v}
    cols = 5
    rows = max(1, -(-len(ratios) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), sharex=True, squeeze=False)
    bins = np.logspace(-6, 0, 31)
    cuts = summary["size_cuts"]
    for ax, (category, values) in zip(axes.flat, sorted(ratios.items()), strict=False):
        ax.hist(values, bins=bins, color="#4c72b0")
        ax.set_xscale("log")
        for cut in cuts:
            ax.axvline(cut, color="#c44e52", linestyle="--", linewidth=1)
        ax.set_title(f"{category} ({len(values)} regions)", fontsize=10)
    for ax in axes.flat[len(ratios) :]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("region area / image area (log)")
    fig.suptitle(f"Region area ratio per category (dashed: size buckets {cuts[0]:.0%}, {cuts[1]:.0%})")
    paths.append(_save(fig, out / "area_ratio_by_category.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    counts = np.bincount(raw["per_image"]) if raw["per_image"] else np.zeros(1, int)
    ax.bar(range(len(counts)), counts, color="#55a868")
    ax.set_xlabel("regions in a defect image")
    ax.set_ylabel("defect images")
    ax.set_title("Regions per defect image")
    paths.append(_save(fig, out / "regions_per_image.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    lengths = raw["lengths"] or [0]
    ax.hist(lengths, bins=np.arange(0.5, max(lengths) + 1.5), color="#8172b2")
    ax.set_xlabel("words per sentence")
    ax.set_ylabel("sentences")
    ax.set_title(f"Expression length (mean {np.mean(lengths):.1f} words)")
    paths.append(_save(fig, out / "expression_length.png"))

    kinds = summary["expressions"]["split"]["ALL"]["kinds"]
    fig, ax = plt.subplots(figsize=(7, 4))
    names = sorted(kinds, key=kinds.get)
    ax.barh(names, [kinds[k] * 100 for k in names], color="#dd8452")
    ax.set_xlabel("share of sentences (%)")
    ax.set_title("Expression kinds")
    paths.append(_save(fig, out / "expression_kinds.png"))
    return paths


def _save(fig, path: Path) -> Path:
    import io

    import matplotlib.pyplot as plt

    from mvtec_ref.fileio import write_bytes_atomic

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())
    return path
