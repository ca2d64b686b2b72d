"""Dataset statistics read from a dataset directory (no source files needed).

``summarize`` returns region figures grouped by split, category and defect type, and
expression quality figures by split and category; ``stat_tables`` lays them out as tables,
``format_tables`` prints them, ``mvtec_ref.report`` shows the same tables,
``schemas/stats.schema.json`` describes the JSON form, and ``mvtec_ref.plots`` draws them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mvtec_ref.build import iter_samples, load_manifest

# Fixed area-ratio cut-offs reported whatever the configured size buckets are, so that
# "most anomalies are small" can be checked under any definition of small.
FIXED_CUTS = (0.001, 0.01, 0.05, 0.10)
SIZES = ("small", "medium", "large")


class _RegionGroup:
    def __init__(self) -> None:
        self.images = self.defect_images = 0
        self.ratios: list[float] = []
        self.per_image: list[int] = []
        self.sizes: dict[str, int] = defaultdict(int)

    def update(self, record: dict) -> None:
        self.images += 1
        self.defect_images += record["label_index"]
        if record["label_index"]:
            self.per_image.append(len(record["regions"]))
        for region in record["regions"]:
            self.ratios.append(region["area_ratio"])
            self.sizes[region["size"]] += 1

    def compute(self) -> dict:
        ratios = np.asarray(self.ratios, dtype=np.float64)
        n = len(ratios)
        quantiles = {f"p{q}": float(np.percentile(ratios, q)) if n else None for q in (10, 50, 90)}
        return {
            "images": self.images,
            "defect_images": self.defect_images,
            "regions": n,
            "regions_per_defect_image": round(n / self.defect_images, 3) if self.defect_images else 0.0,
            "area_ratio": quantiles,
            "size_share": {s: round(self.sizes[s] / n, 4) if n else 0.0 for s in SIZES},
            "share_below": {f"{c:g}": round(float((ratios < c).mean()), 4) if n else 0.0 for c in FIXED_CUTS},
        }


def summarize(dataset: Path, *, with_raw: bool = False, progress: bool | None = False) -> dict:
    """Figures by split, category and defect type (``ALL`` rows included).

    With ``with_raw`` the result also holds the raw lists the plots need (not in the JSON).
    ``progress``: as ``mvtec_ref.progress.progress_bar``.
    """
    from annotate import load_vocabulary
    from annotate.quality import ExpressionQuality, sentence_verdicts
    from mvtec_ref.progress import progress_bar

    manifest = load_manifest(dataset)
    vocab = load_vocabulary(manifest["config"]["refs"].get("vocabulary", "mvtec_ad"))
    regions = {by: defaultdict(_RegionGroup) for by in ("split", "category", "defect_type")}
    quality = {by: defaultdict(ExpressionQuality) for by in ("split", "category")}
    records = progress_bar(
        iter_samples(dataset), desc="stats", unit="img", total=manifest["counts"]["images"], progress=progress
    )
    for _, record in records:
        keys = {"split": record["split"], "category": record["category"],
                "defect_type": f"{record['category']}/{record['defect_type']}"}  # fmt: skip
        for by, table in regions.items():
            for key in (keys[by], "ALL"):
                table[key].update(record)
        verdicts = sentence_verdicts(record, vocab)  # once, not once per group
        for by, table in quality.items():
            for key in (keys[by], "ALL"):
                table[key].update(record, vocab, verdicts)
    summary = {
        "name": manifest["name"],
        "size_cuts": manifest["config"]["regions"]["size_cuts"],
        "fixed_cuts": list(FIXED_CUTS),
        "regions": {by: {k: t[k].compute() for k in _order(t)} for by, t in regions.items()},
        "expressions": {by: {k: t[k].compute() for k in _order(t)} for by, t in quality.items()},
    }
    if "review" in manifest:  # build --reviews: what people decided (mvtec_ref/review/summary.py)
        summary["review"] = manifest["review"]
    if "pixel_judge" in manifest:
        summary["pixel_judge"] = manifest["pixel_judge"]
    if with_raw:
        summary["raw"] = {
            "ratios": {k: g.ratios for k, g in regions["category"].items() if k != "ALL"},
            "per_image": regions["category"]["ALL"].per_image,
            "lengths": quality["split"]["ALL"].lengths,
        }
    return summary


def _order(table: dict) -> list[str]:
    return sorted(table, key=lambda k: (k == "ALL", k))


@dataclass(frozen=True)
class Table:
    """One table of ``stats``. ``note``: a line said before it (a note alone has no header);
    ``gap``: a blank line before it in the terminal; ``terse``: the terminal prints the note only."""

    title: str
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""
    gap: bool = True
    terse: bool = False


def stat_tables(summary: dict) -> list[Table]:
    """Every table ``stats`` prints, in order; ``report`` shows the same ones."""
    tables = [
        Table(f"Regions by {by.replace('_', ' ')}", *_region_table(by, summary["regions"][by]))
        for by in ("split", "category", "defect_type")
    ]
    lo, hi = summary["size_cuts"]
    buckets = f"size buckets by area ratio: small < {lo:.0%} <= medium < {hi:.0%} <= large"
    tables.append(Table("Size buckets", note=buckets))
    for by in ("split", "category"):
        tables.append(Table(f"Expressions by {by}", *_expression_table(by, summary["expressions"][by])))
    kinds = summary["expressions"]["split"]["ALL"]["kinds"]
    note = "kinds (share of sentences): " + ", ".join(f"{k} {v:.0%}" for k, v in kinds.items())
    rows = [[k, f"{v:.0%}"] for k, v in kinds.items()]
    tables.append(Table("Expression kinds", ["kind", "share"], rows, note, gap=False, terse=True))
    if summary.get("review"):
        from mvtec_ref.review.summary import review_tables

        tables += review_tables(summary["review"])
    if "pixel_judge" in summary:
        tables.append(_judge_table(summary["pixel_judge"]))
    return tables


def format_tables(summary: dict) -> str:
    """Plain-text tables: regions by split / category / defect type, then expressions, review, judge."""
    lines: list[str] = []
    for table in stat_tables(summary):
        if lines and table.gap:
            lines.append("")
        lines += [table.note] if table.note else []
        lines += _align(table.header, table.rows) if table.header and not table.terse else []
    return "\n".join(lines)


def _pct(value) -> str:
    return "-" if value is None else f"{value:.3%}"


def _region_table(by: str, rows: dict) -> tuple[list[str], list[list[str]]]:
    cuts = [f"<{c * 100:g}%" for c in FIXED_CUTS]
    header = [by, "images", "defect", "regions", "reg/img", "p10 ratio", "median", "p90", *SIZES, *cuts]
    body = [
        [
            name, str(r["images"]), str(r["defect_images"]), str(r["regions"]),
            f"{r['regions_per_defect_image']:.2f}", *(_pct(v) for v in r["area_ratio"].values()),
            *(f"{r['size_share'][s]:.0%}" for s in SIZES), *(f"{v:.0%}" for v in r["share_below"].values()),
        ]
        for name, r in rows.items()
    ]  # fmt: skip
    return header, body


def _expression_table(by: str, groups: dict) -> tuple[list[str], list[list[str]]]:
    header = [f"expressions by {by}", "sentences", "per defect img", "distinct", "w/o 'anomaly'", "vocab",
              "mean words", "p90 words", "faithful", "unambiguous"]  # fmt: skip
    body = []
    for name, q in groups.items():
        faithful = min((v for k, v in q.items() if k.endswith("_faithful")), default=1.0)
        unambiguous = min((v for k, v in q.items() if k.endswith("_unambiguous")), default=1.0)
        body.append([
            name, str(q["sentences"]), f"{q['sentences_per_defect_image']:.1f}", f"{q['distinct_ratio']:.2f}",
            f"{q['distinct_ratio_without_prompt']:.2f}", str(q["vocabulary"]), f"{q['mean_words']:.1f}",
            f"{q['p90_words']:.0f}", f"{faithful:.1%}", f"{unambiguous:.1%}",
        ])  # fmt: skip
    return header, body


def _judge_table(judge: dict) -> Table:
    """Candidate template sentences the pixel judge rejected in build, by the first rule each broke;
    only the rules that rejected something get a row."""
    from mvtec_ref.wording import count, plural

    checked, removed = judge["sentences_checked"], judge["sentences_removed"]
    share = f"{removed / checked:.1%}" if checked else "-"
    fired = {rule: n for rule, n in judge["removed_by_rule"].items() if n}
    silent = len(judge["removed_by_rule"]) - len(fired)
    head = (f"pixel judge ({judge['version']}): rejected {removed} of {count(checked, 'candidate sentence')} "
            f"with a target ({share}; each redrawn or left out); {count(judge['refs_dropped'], 'ref')} lost "
            f"every sentence after generation; {silent} other {plural(silent, 'rule')} "
            "rejected none")  # fmt: skip
    body = [[rule, f"{judge['thresholds'].get(rule, 0):g}", str(n)] for rule, n in fired.items()]
    return Table("Pixel judge", ["rule", "threshold", "removed"] if body else [], body, note=head)


def _align(header: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    return [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in [header, *body]
    ]


def save_stats_json(summary: dict, path: Path) -> None:
    """Validate against ``schemas/stats.schema.json`` and write atomically."""
    from mvtec_ref.errors import DatasetError
    from mvtec_ref.fileio import dumps_json, write_text_atomic
    from mvtec_ref.schema import schema_errors

    data = {k: v for k, v in summary.items() if k != "raw"}
    errors = schema_errors("stats", data)
    if errors:
        raise DatasetError(f"{path}: {errors[0]} (a toolkit bug)")
    write_text_atomic(Path(path), dumps_json(data))
