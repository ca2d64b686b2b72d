"""PNG figures for ``mvtec-ref stats --plots DIR`` and the report (matplotlib, imported only here).

Every text in a figure is at least ``MIN_FONT_PT`` points at ``DPI``, so a figure shown at its
natural size (the report never enlarges one) has text of at least MIN_FONT_PT * DPI / 72 px;
``tests/test_report.py`` checks the rendered sizes in a browser. Axes that count things have
integer ticks only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DPI = 110
MIN_FONT_PT = 10
WIDE = "area_ratio_by_category.png"  # the one figure the report gives the full width
TICKS = (1e-5, 1e-3, 1e-1)  # area-ratio axis labels


def draw_plots(summary: dict, out: Path) -> list[Path]:
    """Draw four figures from ``summarize(..., with_raw=True)``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator, NullFormatter

    from mvtec_ref.wording import count

    sizes = {key: MIN_FONT_PT for key in ("font.size", "axes.labelsize", "xtick.labelsize", "ytick.labelsize",
                                          "legend.fontsize")}  # fmt: skip
    sizes.update({"axes.titlesize": MIN_FONT_PT + 1, "figure.titlesize": MIN_FONT_PT + 2})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    raw = summary["raw"]
    paths = []
    integer = MaxNLocator(integer=True)

    with plt.rc_context(sizes):
        ratios = {k: v for k, v in raw["ratios"].items() if v}
        cols = max(1, min(4, len(ratios)))
        rows = max(1, -(-len(ratios) // cols))
        # 4 panels of 3 in: 1,320 px at DPI, which fits a 1,366 px laptop screen at natural size
        fig, axes = plt.subplots(
            rows, cols, figsize=(3.0 * cols, 2.1 * rows + 0.6), sharex=True, squeeze=False
        )
        bins = np.logspace(-6, 0, 31)
        cuts = summary["size_cuts"]
        for ax, (category, values) in zip(axes.flat, sorted(ratios.items()), strict=False):
            ax.hist(values, bins=bins, color="#4c72b0")
            ax.set_xscale("log")
            # plain labels: a log axis's 10^-n superscripts would be smaller than MIN_FONT_PT
            ax.set_xticks(TICKS, [f"{100 * t:g}%" for t in TICKS])
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            for cut in cuts:
                ax.axvline(cut, color="#c44e52", linestyle="--", linewidth=1)
            ax.set_title(f"{category} ({count(len(values), 'region')})")
        for ax in axes.flat[len(ratios) :]:
            ax.axis("off")
        for ax in axes[-1]:
            ax.set_xlabel("share of the image")
        for ax in axes[:, 0]:
            ax.set_ylabel("regions")
        fig.suptitle(f"Region area ratio per category (dashed: size buckets {cuts[0]:.0%}, {cuts[1]:.0%})")
        paths.append(_save(fig, out / WIDE))

        fig, ax = plt.subplots(figsize=(6, 4))
        per_image = [n for n in raw["per_image"] if n > 0]
        counts = np.bincount(per_image) if per_image else np.zeros(2, int)
        ax.bar(range(1, len(counts)), counts[1:], color="#55a868")
        ax.set_xlim(0.4, max(2, len(counts)) - 0.4)
        ax.xaxis.set_major_locator(integer)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("regions in a defect image")
        ax.set_ylabel("defect images")
        ax.set_title("Regions per defect image")
        paths.append(_save(fig, out / "regions_per_image.png"))

        fig, ax = plt.subplots(figsize=(6, 4))
        lengths = raw["lengths"] or [0]
        ax.hist(lengths, bins=np.arange(0.5, max(lengths) + 1.5), color="#8172b2")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("words per sentence")
        ax.set_ylabel("sentences")
        ax.set_title(f"Expression length (mean {np.mean(lengths):.1f} words)")
        paths.append(_save(fig, out / "expression_length.png"))

        kinds = summary["expressions"]["split"]["ALL"]["kinds"]
        fig, ax = plt.subplots(figsize=(6, 4))
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
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())
    return path
