"""What a sentence may say about a defect type, given what the type's region IS.

The vocabulary states, per defect type, its role (``annotate.vocab.ROLES``): a thing on the object,
damage to a named part, a part in a wrong state, a missing part or object, a state of the whole
object, a logical fault or an unnamed anomaly; and per category its parts (how many, where), its
own colours and its frame. The parser-based checker (``annotate.faithful``) asks whether a
sentence's claims denote its target; these rules ask whether its words fit that role. They read
the words themselves, so a paraphrase or a reviewer's rewrite is held to them as a template is.

``RULES`` is the one table: each row names a rule and why. ``role_faults`` returns the rules a
sentence breaks, each with what it found.
"""

from __future__ import annotations

from dataclasses import dataclass

from annotate.claims import TERM_CELLS, Claims
from annotate.parse import (
    CORNER_FIRST,
    COUNTS,
    EDGE_WORDS,
    SIDES,
    ParseError,
    _phrase_tokens,
    parse,
    tokenize,
)
from annotate.vocab import Vocabulary, frame_places


@dataclass(frozen=True)
class RoleRule:
    name: str
    reason: str


RULES: tuple[RoleRule, ...] = (
    RoleRule("role_size",
             "no size word for a part in a wrong state, a missing part or object, a whole object or a "
             "logical fault (a pin's size is the pin's: 'small bent pin' says nothing), nor for a strand "
             "or a phrase that already says its size; no comparison of sizes either"),
    RoleRule("role_look",
             "no tone, colour or shape word where the role has no look of its own (a gap shows what is "
             "behind it, a part's colour is the part's, a fold is light and shade)"),
    RoleRule("material_colour",
             "no colour word that is the object's own colour ('brown fold' on brown leather)"),
    RoleRule("part_number",
             "a part is counted as the object has it: one case is never 'cases' nor 'the larger case', "
             "three leads are never four"),
    RoleRule("part_place",
             "a part is placed only where the object has it (a transistor's leads are at its bottom), "
             "and a whole object nowhere on itself"),
    RoleRule("frame_edges",
             "edges and corners only of what has them: a texture has none of its own (only the "
             "image's), nor has a box that holds an object and its leads; a box has only the corners "
             "its object's outline fills (the frame's measured corners: none on an oval pill)"),
    RoleRule("absent_presence",
             "an object that may be missing is never said to be there: not 'on' or 'of' it, not "
             "shifted, moved or turned"),
)  # fmt: skip
RULE = {rule.name: rule for rule in RULES}

SIZE_EXTREMES = ("largest", "smallest")
MIDDLE_COLUMN = frozenset((row, 1) for row in range(3))  # a box part's "middle": top to bottom
MOVED = {"shifted", "moved", "displaced", "rotated", "turned", "tilted", "misaligned", "present", "visible"}
NOUN_PREPOSITIONS = {"on", "of", "in", "inside"}


@dataclass(frozen=True)
class RoleFault:
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.detail}"


def role_faults(text: str, record: dict, vocab: Vocabulary, claims: Claims | None = None) -> list[RoleFault]:
    """The role rules ``text`` breaks, read against the vocabulary entry of the type it names (or,
    for an anomaly word on a defect image, the image's own type). ``claims``: the parser's reading
    when the caller has it. A sentence the parser cannot read breaks none here (the checker
    refuses it already)."""
    category = record["category"]
    if claims is None:
        try:
            claims = parse(text, category, vocab, (record["defect_type"],))
        except ParseError:
            return []
    named = claims.defect_type
    # an anomaly word, or words the parser cannot place, speak of the image's own regions
    subject = named or (record["defect_type"] if record.get("regions") else None)
    if subject is None:
        return []
    words = vocab.words(category, subject)
    tokens = tokenize(text)
    free = _outside_phrase(tokens, words)
    faults: list[RoleFault] = []

    def fault(rule: str, detail: str) -> None:
        faults.append(RoleFault(rule, detail))

    looks = words.looks
    if named is not None:
        said = claims.size is not None or claims.extreme in SIZE_EXTREMES
        if said and ("size" not in looks or words.sized):
            why = (
                "its phrase says its size"
                if words.sized
                else f"role {words.role}, nature {words.nature}: no size"
            )
            fault("role_size", f"{claims.size or claims.extreme} on {subject} ({why})")
    for look in ("tone", "colour", "shape"):
        value = getattr(claims, look)
        if value is not None and look not in looks:
            fault("role_look", f"{look} '{value}' on {subject} (role {words.role}, nature {words.nature})")
    if claims.colour is not None and claims.colour in vocab.colours.get(category, ()):
        fault("material_colour", f"'{claims.colour}' is the {vocab.noun(category)}'s own colour")
    faults += _part_faults(claims, tokens, record, vocab, subject, named is not None)
    faults += _edge_faults(free, record, vocab)
    if words.absent:
        faults += _presence_faults(free, vocab.noun(category), subject)
    return faults


def _outside_phrase(tokens: list[str], words) -> list[str]:
    """``tokens`` without the longest of the type's phrase forms found in them (its own words,
    "missing" in "misplaced or missing transistor", are its name, not claims)."""
    forms = sorted((_phrase_tokens(f) for pair in words.phrases for f in pair), key=len, reverse=True)
    for form in forms:
        n = len(form)
        for start in range(len(tokens) - n + 1):
            if tuple(tokens[start : start + n]) == form:
                return tokens[:start] + tokens[start + n :]
    return tokens


def _part_faults(
    claims: Claims, tokens: list[str], record: dict, vocab: Vocabulary, subject: str, named: bool
) -> list[RoleFault]:
    """Parts counted and placed as the object has them. Plural names of a part the object has once
    are refused whatever the sentence names; counts and places, for the type it names."""
    category = record["category"]
    words = vocab.words(category, subject)
    part = vocab.part(category, subject)
    out = []
    if words.role == "whole_object":
        count, name = vocab.object_count(category), vocab.noun(category)
    elif part is not None and words.role in ("part_state", "missing"):
        count, name = part.count, part.noun
    else:
        count, name = None, None
    for one in vocab.parts.get(category, {}).values():  # "cases", "both cracked housings": it has one
        plural = sorted({p for s, p in one.names if p != s and p in tokens}) if one.count == 1 else []
        if plural:
            out.append(
                RoleFault("part_number", f"'{plural[0]}': the {vocab.noun(category)} has one {one.noun}")
            )
    if not named:
        return out
    if count is not None:
        if claims.count is not None and claims.count > count:
            out.append(RoleFault("part_number", f"{claims.count} of a {name} the object has {count} of"))
        elif count == 1 and (claims.plural or claims.extreme is not None or _counted(tokens)):
            what = claims.extreme or "several"
            out.append(RoleFault("part_number", f"'{what}' {name}: the {vocab.noun(category)} has one"))
    placed = any(v is not None for v in (claims.cells, claims.edges, claims.end, claims.ring, claims.clock))
    if words.role == "whole_object" and placed:
        out.append(
            RoleFault(
                "part_place", f"{subject} is the whole {vocab.noun(category)}: it has no place on itself"
            )
        )
    if part is not None and part.where:
        wrong = _wrong_place(claims, part.where, vocab.frame(category))
        if wrong:
            out.append(
                RoleFault("part_place", f"{part.noun} {wrong}: it is only at the {' / '.join(part.where)}")
            )
    return out


def _counted(tokens: list[str]) -> bool:
    return any(t in COUNTS and COUNTS[t] > 1 for t in tokens)


def _wrong_place(claims: Claims, where: tuple[str, ...], frame: dict) -> str | None:
    """How a place claim misses every place the part can be, or None. ``where`` is in the words of
    the category's frame; when the object was measured as another kind (a round bottle too small
    to find its rim falls back to a box), no claim can be checked against it, so any is refused."""
    kind = frame["kind"]
    if not set(where) <= set(frame_places(frame)):
        claimed = (claims.cells, claims.edges, claims.end, claims.ring, claims.clock)
        if any(c is not None for c in claimed):
            return f"placed, but the {kind} frame measured here cannot show where the part is"
        return None
    if kind == "axis":
        allowed = {e for e, name in zip(("start", "end"), frame["ends"], strict=True) if name in where}
        allowed |= {"middle"} if "middle" in where else set()
        if claims.end is not None and claims.end not in allowed:
            names = {"start": frame["ends"][0], "end": frame["ends"][1], "middle": "middle"}
            return f"said to be at the {names[claims.end]}"
        return None
    if kind == "round":
        if claims.ring is not None and claims.ring not in where:
            return f"said to be at the {claims.ring}"
        return None
    cells = frozenset().union(*(MIDDLE_COLUMN if w == "middle" else TERM_CELLS[w] for w in where))
    claimed = claims.cells
    if claims.edges:
        edge_cells = frozenset.intersection(*(TERM_CELLS[side] for side in claims.edges))
        claimed = edge_cells if claimed is None else claimed & edge_cells
    if claimed is not None and not claimed & cells:
        return "said to be where it is not"
    return None


def _edge_faults(tokens: list[str], record: dict, vocab: Vocabulary) -> list[RoleFault]:
    """A texture's edges are the image's; a box marked ``edges: false`` has none to name, and any
    other box only the corners its object has."""
    frame = vocab.frame(record["category"])
    measured = record.get("frame") or {}
    kind = measured.get("kind", frame["kind"])
    if kind == "box" and frame.get("edges", True):
        return _corner_faults(tokens, measured.get("corners"), vocab.noun(record["category"]))
    if kind not in ("texture", "box"):
        return []
    noun = list(_phrase_tokens(vocab.noun(record["category"])))
    for i, t in enumerate(tokens):
        if t not in EDGE_WORDS or tokens[i + 1 : i + 4] == ["of", "the", "image"]:
            continue  # "the top edge of the image" is the image's
        own = tokens[i + 1 : i + 3 + len(noun)] == ["of", "the", *noun] or (
            i >= len(noun) and tokens[i - len(noun) : i] == noun
        )
        if kind == "box" or own:
            what = (
                "a texture shows no edge of its own"
                if kind == "texture"
                else "its box is no outline of its own"
            )
            return [RoleFault("frame_edges", f"'{t}' of the {vocab.noun(record['category'])}: {what}")]
    return []


def _corner_faults(tokens: list[str], corners: list[str] | None, noun: str) -> list[RoleFault]:
    """Corner words of a box name only ``corners``, those its object's outline has (the record's
    frame; None in a record written before frames measured them: any). "Of the image" is the image's."""
    if corners is None:
        return []
    for i, t in enumerate(tokens):
        if t not in ("corner", "corners") or tokens[i + 1 : i + 4] == ["of", "the", "image"]:
            continue
        side = SIDES.get(tokens[i - 1]) if i else None
        row = CORNER_FIRST.get(tokens[i - 2]) if i > 1 else None
        named = f"{row} {side}" if row and side else None
        if named not in corners if named else not corners:
            what = f"no {named} corner" if named else "no corner"
            return [RoleFault("frame_edges", f"'{t}' of the {noun}: its outline has {what}")]
    return []


def _presence_faults(free: list[str], noun: str, subject: str) -> list[RoleFault]:
    """Words outside the type's name that say the object is there."""
    run = list(_phrase_tokens(noun))
    moved = sorted(MOVED & set(free))
    if "out" in free and "place" in free:
        moved.append("out of place")
    if moved:
        return [RoleFault("absent_presence", f"'{moved[0]}' said of {subject}, whose object may be missing")]
    for i in range(2, len(free) - len(run) + 1):
        if free[i : i + len(run)] == run and free[i - 1] == "the" and free[i - 2] in NOUN_PREPOSITIONS:
            return [
                RoleFault("absent_presence", f"'{free[i - 2]} the {noun}' where the {noun} may be missing")
            ]
    return []
