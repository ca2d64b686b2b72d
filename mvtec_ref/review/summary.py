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


def review_line(review: dict) -> str:
    """The one line that ``build --reviews``, ``stats`` and ``report`` say about the review; its
    "N of M sentences reviewed" is what the review app counts on the rebuilt dataset."""
    from mvtec_ref.wording import count, plural

    total = review["total"]
    reviewed = total["accepted"] + total["rejected"] + total["rewritten"]
    share = f"{reviewed / total['sentences']:.1%}" if total["sentences"] else "-"
    asserted = count(review.get("asserted", 0), "rewrite")
    decisions = plural(review["decisions"], "decision")
    return (
        f"human review ({review['file']}): {review['matched']} of {review['decisions']} {decisions} applied, "
        f"{review['unmatched']} match nothing (listed in the manifest's problems); {reviewed} of "
        f"{count(total['sentences'], 'sentence')} reviewed ({share}): {total['accepted']} accepted, "
        f"{total['rejected']} rejected, {total['rewritten']} rewritten "
        f"({asserted} asserted against the checks)"
    )


def review_tables(review: dict) -> list:
    """The head line, then one table per grouping (``mvtec_ref.stats.Table``)."""
    from mvtec_ref.stats import Table

    rates = review_rates(review)
    head = Table("Human review", note=review_line(review))
    header = ["sentences", "reviewed", "coverage", "accepted", "rejected", "rewritten", "acceptance"]
    tables = [head]
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
        tables.append(Table(f"Review by {by}", [f"review by {by}", *header], body))
    return tables
