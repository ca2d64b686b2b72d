"""Review coverage and acceptance rates, from a manifest's ``review`` block (``build --reviews``)."""

from __future__ import annotations


def review_rates(review: dict) -> dict:
    """``{by: {group: {sentences, reviewed, coverage, accepted, rejected, rewritten, acceptance}}}``
    for by = kind, origin, category and ``ALL``; coverage = reviewed / generated sentences,
    acceptance = accepted as generated / reviewed (None when nothing was reviewed)."""
    tables = {by: review[f"by_{by}"] for by in ("kind", "origin", "category")}
    tables["all"] = {"ALL": review["total"]}
    return {by: {name: _rates(row) for name, row in rows.items()} for by, rows in tables.items()}


def _rates(row: dict) -> dict:
    reviewed = row["accepted"] + row["rejected"] + row["rewritten"]
    return {
        **row,
        "reviewed": reviewed,
        "coverage": round(reviewed / row["sentences"], 4) if row["sentences"] else 0.0,
        "acceptance": round(row["accepted"] / reviewed, 4) if reviewed else None,
    }


def format_review(review: dict) -> list[str]:
    """Plain-text lines: one table per grouping, then the unmatched decisions."""
    from mvtec_ref.stats import _align

    rates = review_rates(review)
    lines = [
        f"human review ({review['file']}): {review['matched']} of {review['decisions']} decisions "
        f"applied, {review['unmatched']} match nothing (listed in the manifest's problems), "
        f"{review.get('asserted', 0)} rewrites asserted against the checks"
    ]
    header = ["sentences", "reviewed", "coverage", "accepted", "rejected", "rewritten", "acceptance"]
    for by in ("kind", "origin", "category"):
        body = [
            [
                name,
                str(r["sentences"]),
                str(r["reviewed"]),
                f"{r['coverage']:.1%}",
                str(r["accepted"]),
                str(r["rejected"]),
                str(r["rewritten"]),
                "-" if r["acceptance"] is None else f"{r['acceptance']:.1%}",
            ]
            for name, r in [*rates[by].items(), ("ALL", rates["all"]["ALL"])]
        ]
        lines += ["", *_align([f"review by {by}", *header], body)]
    return lines
