"""``build --reviews``: apply a reviews file to freshly built records.

Accepted sentences get ``review: {"status": "accepted", ...}``; rejected ones are dropped;
a rewrite replaces its sentence with the reviewer's text (origin ``human``, ``review.status``
``written``, ``rewrite_of`` the old text). A ref left without sentences is dropped. Decisions
that match no sentence become manifest problems, so none is lost silently. The returned
summary (``manifest["review"]``) counts what generation proposed and what people decided, by
kind, origin and category.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

from mvtec_ref.review.keys import target_key
from mvtec_ref.review.store import load_decisions

OUTCOMES = ("accepted", "rejected", "rewritten")


def apply_reviews(records: list[dict], path: Path) -> tuple[dict, list[dict]]:
    """Change ``records`` in place; return ``(manifest review block, manifest problems)``."""
    from annotate.parse import tokenize

    path = Path(path)
    decisions, bad_lines = load_decisions(path)
    problems = [
        {"path": str(path), "kind": "review_line", "problem": p, "action": "ignored"} for p in bad_lines
    ]
    groups: dict[str, dict] = defaultdict(
        lambda: defaultdict(lambda: dict.fromkeys(("sentences", *OUTCOMES), 0))
    )
    used, asserted = set(), 0
    for record in records:
        for ref in record["refs"]:
            target = target_key(record, ref["region_ids"])
            kept = []
            for sentence in ref["sentences"]:
                key = (record["image_path"], target, sentence["text"])
                line = decisions.get(key)
                rows = [
                    groups["kind"][ref["kind"]],
                    groups["origin"][sentence["origin"]],
                    groups["category"][record["category"]],
                    groups["all"]["ALL"],
                ]
                for row in rows:
                    row["sentences"] += 1
                if line is None:
                    kept.append(sentence)
                    continue
                used.add(key)
                outcome = {"accept": "accepted", "reject": "rejected", "rewrite": "rewritten"}[
                    line["decision"]
                ]
                for row in rows:
                    row[outcome] += 1
                review = {"reviewer": str(line.get("reviewer", ""))}
                if outcome == "accepted":
                    kept.append({**sentence, "review": {"status": "accepted", **review}})
                elif outcome == "rewritten":
                    text = " ".join(line["rewrite"].split())
                    asserted += bool(line.get("asserted"))
                    kept.append(
                        {
                            "sent_id": sentence["sent_id"],
                            "text": text,
                            "tokens": tokenize(text) or [text],
                            "origin": "human",
                            "template": None,
                            "rewrite_of": sentence["text"],
                            "review": {"status": "written", **review, "asserted": bool(line.get("asserted"))},
                        }
                    )
            ref["sentences"] = _unique(kept)
        record["refs"] = [ref for ref in record["refs"] if ref["sentences"]]
    for key, line in decisions.items():
        if key not in used:
            problems.append(
                {
                    "path": key[0],
                    "kind": "review_unmatched",
                    "action": "ignored",
                    "problem": f"{line['decision']} of {key[2]!r} (target {key[1]}) matches no "
                    "sentence of this build; kept in the reviews file",
                }
            )
    summary = {
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None,
        "decisions": len(decisions),
        "matched": len(used),
        "unmatched": len(decisions) - len(used),
        "asserted": asserted,
        **{
            f"by_{by}": {k: dict(v) for k, v in sorted(groups[by].items())}
            for by in ("kind", "origin", "category")
        },
        "total": dict(groups["all"]["ALL"]) if groups["all"] else dict.fromkeys(("sentences", *OUTCOMES), 0),
    }
    return summary, problems


def _unique(sentences: list[dict]) -> list[dict]:
    """A rewrite may repeat a sentence the ref already has: keep the first, reviewed one preferred."""
    seen: dict[str, int] = {}
    out: list[dict] = []
    for s in sentences:
        if s["text"] not in seen:
            seen[s["text"]] = len(out)
            out.append(s)
        elif "review" in s and "review" not in out[seen[s["text"]]]:
            out[seen[s["text"]]] = s
    return out


def reviewed_records(records: list[dict]) -> list[dict]:
    """Only what a person accepted or wrote: other sentences, then empty refs and images, removed."""
    kept = []
    for record in records:
        refs = [
            {**ref, "sentences": [s for s in ref["sentences"] if "review" in s]} for ref in record["refs"]
        ]
        refs = [ref for ref in refs if ref["sentences"]]
        if refs:
            kept.append({**record, "refs": refs})
    return kept
