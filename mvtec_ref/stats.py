"""Dataset statistics read from a dataset directory (no source files needed)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from mvtec_ref.build import iter_samples, load_manifest

# Fixed area-ratio cut-offs reported whatever the configured size buckets are, so that
# "most anomalies are small" can be checked under any definition of small.
FIXED_CUTS = (0.001, 0.01, 0.05, 0.10)


def summarize(dataset: Path) -> dict:
    """Per-category and overall figures: images, regions, area ratios, size shares, refs."""
    from annotate import load_vocabulary
    from annotate.quality import ExpressionQuality

    manifest = load_manifest(dataset)
    vocab = load_vocabulary(manifest["config"]["refs"].get("vocabulary", "mvtec_ad"))
    quality: dict[str, ExpressionQuality] = defaultdict(ExpressionQuality)
    groups: dict[str, dict] = defaultdict(
        lambda: {
            "images": 0,
            "defect_images": 0,
            "ratios": [],
            "sizes": defaultdict(int),
            "refs": 0,
            "sentences": 0,
        }
    )
    for _, record in iter_samples(dataset):
        for key in (f"split {record['split']}", record["category"], "ALL"):
            quality[key].update(record, vocab)
        for key in (record["category"], "ALL"):
            g = groups[key]
            g["images"] += 1
            g["defect_images"] += record["label_index"]
            g["refs"] += len(record["refs"])
            g["sentences"] += sum(len(ref["sentences"]) for ref in record["refs"])
            for region in record["regions"]:
                g["ratios"].append(region["area_ratio"])
                g["sizes"][region["size"]] += 1
    rows = {}
    for key in sorted(groups, key=lambda k: (k == "ALL", k)):
        g = groups[key]
        ratios = np.asarray(g["ratios"], dtype=np.float64)
        n = len(ratios)
        rows[key] = {
            "images": g["images"],
            "defect_images": g["defect_images"],
            "regions": n,
            "regions_per_defect_image": round(n / g["defect_images"], 3) if g["defect_images"] else 0.0,
            "area_ratio_median": float(np.median(ratios)) if n else None,
            "size_share": {
                s: round(g["sizes"][s] / n, 4) if n else 0.0 for s in ("small", "medium", "large")
            },
            "share_below": {f"{c:g}": round(float((ratios < c).mean()), 4) if n else 0.0 for c in FIXED_CUTS},
            "refs": g["refs"],
            "sentences": g["sentences"],
        }
    order = sorted(quality, key=lambda k: (k == "ALL", not k.startswith("split"), k))
    return {
        "name": manifest["name"],
        "size_cuts": manifest["config"]["regions"]["size_cuts"],
        "categories": rows,
        "expressions": {key: quality[key].compute() for key in order},
    }


def format_table(summary: dict) -> str:
    """Plain-text table of ``summarize`` output, one row per category and a total row."""
    cuts = [f"<{float(c) * 100:g}%" for c in FIXED_CUTS]
    header = [
        "category",
        "images",
        "defect",
        "regions",
        "reg/img",
        "median ratio",
        "small",
        "medium",
        "large",
        *cuts,
    ]
    body = []
    for name, row in summary["categories"].items():
        median = row["area_ratio_median"]
        body.append(
            [
                name,
                str(row["images"]),
                str(row["defect_images"]),
                str(row["regions"]),
                f"{row['regions_per_defect_image']:.2f}",
                "-" if median is None else f"{median:.4%}",
                *(f"{row['size_share'][s]:.0%}" for s in ("small", "medium", "large")),
                *(f"{v:.0%}" for v in row["share_below"].values()),
            ]
        )
    lines = _align(header, body)
    lo, hi = summary["size_cuts"]
    lines.append(f"size buckets by area ratio: small < {lo:.0%} <= medium < {hi:.0%} <= large")
    lines += ["", *_expression_table(summary["expressions"])]
    return "\n".join(lines)


def _expression_table(groups: dict) -> list[str]:
    header = ["expressions", "sentences", "per defect img", "distinct", "w/o 'anomaly'", "vocab",
              "mean words", "p90 words", "faithful", "unambiguous"]  # fmt: skip
    body = []
    for name, q in groups.items():
        rates = {k: v for k, v in q.items() if k.endswith(("_faithful", "_unambiguous"))}
        faithful = min((v for k, v in rates.items() if k.endswith("_faithful")), default=1.0)
        unambiguous = min((v for k, v in rates.items() if k.endswith("_unambiguous")), default=1.0)
        body.append([
            name, str(q["sentences"]), f"{q['sentences_per_defect_image']:.1f}", f"{q['distinct_ratio']:.2f}",
            f"{q['distinct_ratio_without_prompt']:.2f}", str(q["vocabulary"]), f"{q['mean_words']:.1f}",
            f"{q['p90_words']:.0f}", f"{faithful:.1%}", f"{unambiguous:.1%}",
        ])  # fmt: skip
    lines = _align(header, body)
    kinds = groups["ALL"]["kinds"]
    lines.append("kinds (share of sentences): " + ", ".join(f"{k} {v:.0%}" for k, v in kinds.items()))
    return lines


def _align(header: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    return [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in [header, *body]
    ]
