"""The faithfulness and unambiguity checker: does each sentence denote exactly its target?

For every sentence of a ref: parse it (``annotate.parse``), compute which regions of the
image it picks out (``annotate.claims.denotation``) and compare with the ref's target:

- **unfaithful**: a claim is false of a target region (wrong type, place, size, tone...),
  the count or grammatical number disagrees with the target (universal phrases too: "the
  anomaly" is one region, "the defects" several; "any defect" and the bare prompt are
  number-neutral), or the sentence names
  nothing at all;
- **ambiguous**: every claim is true of the target but also of another region;
- **ok**: it denotes exactly the target (empty for no-target refs).

Its words must also fit what the named type's region is (``annotate.roles``: no size word on a
bent pin, no "cases" of a one-case transistor, no "on the transistor" where it may be missing):
a sentence that breaks a role rule is unfaithful, whatever its denotation.
"""

from __future__ import annotations

from dataclasses import dataclass

from annotate.claims import Claims, denotation, matches
from annotate.parse import ParseError, parse
from annotate.roles import role_faults
from annotate.vocab import Vocabulary

OK, UNFAITHFUL, AMBIGUOUS = "ok", "unfaithful", "ambiguous"


@dataclass(frozen=True)
class Verdict:
    verdict: str
    reason: str = ""


def check_sentence(text: str, target: list[int], record: dict, vocab: Vocabulary) -> Verdict:
    """Judge one sentence against its target region ids within ``record`` (a sample record)."""
    try:
        claims = parse(text, record["category"], vocab, (record["defect_type"],))
    except ParseError as error:
        return Verdict(UNFAITHFUL, str(error))
    faults = role_faults(text, record, vocab, claims)
    if faults:
        return Verdict(UNFAITHFUL, str(faults[0]))
    return judge(claims, set(target), record["regions"], record["defect_type"])


def judge(claims: Claims, target: set[int], regions: list[dict], defect_type: str) -> Verdict:
    if claims.is_empty():
        return Verdict(UNFAITHFUL, "names no defect type and no universal word")
    by_id = {r["region_id"]: r for r in regions}
    for region_id in sorted(target):
        if not matches(claims, by_id[region_id], defect_type):
            return Verdict(UNFAITHFUL, f"a claim is false of region {region_id}")
    if target and claims.count is not None and claims.count != len(target):
        return Verdict(UNFAITHFUL, f"says {claims.count} but the target has {len(target)}")
    if target and claims.plural is not None and claims.plural != (len(target) > 1):
        number = "plural" if claims.plural else "singular"
        return Verdict(UNFAITHFUL, f"{number} noun for {len(target)} target region(s)")
    picked = denotation(claims, regions, defect_type)
    if not target <= picked:
        return Verdict(UNFAITHFUL, f"'{claims.extreme}' picks {sorted(picked)}, not {sorted(target)}")
    if picked != target:
        return Verdict(AMBIGUOUS, f"also fits region(s) {sorted(picked - target)}")
    return Verdict(OK)


def check_record(
    record: dict, vocab: Vocabulary, *, origins=("template",)
) -> list[tuple[dict, dict, Verdict]]:
    """(ref, sentence, verdict) for every sentence of the given origins that is not ok."""
    bad = []
    for ref in record["refs"]:
        for sentence in ref["sentences"]:
            if sentence["origin"] not in origins:
                continue
            verdict = check_sentence(sentence["text"], ref["region_ids"], record, vocab)
            if verdict.verdict != OK:
                bad.append((ref, sentence, verdict))
    return bad
