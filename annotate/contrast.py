"""Contrast edits: change one claim of a sentence and compute what the new sentence refers to.

A sentence's claims come from the parser (``annotate.parse``). An edit is one row of
``EDITS``: an operation on the claims (``change``) and the matching rewrite of the words
(``rewrite``). A probe is kept only when

1. the parser reads the rewritten text as exactly the changed claims (grammatical number
   aside), so the words say what the edit means;
2. its target, ``target_of(changed claims)``, is confirmed by every judge (``confirmed``).

Targets follow ``annotate.claims.denotation``, with one rule added for counts: a count
that disagrees with the regions the other claims pick out ("the three cracks" where
there are two) makes the sentence refer to nothing (empty target), as GRES treats
expressions that match nothing. A rewrite never touches the words of the defect-type
phrase ("gap left by a missing cable" keeps its "left").

Edit kinds: ``location`` (left/right or top/bottom mirrored, a corner gives both, and so
are the edges and clock hours of newer parsers' frames; an axis frame's two ends swapped),
``type`` (another defect type of the category; a sentence naming a type the image lacks
is given the image's own type), ``size`` (small/large), ``extreme`` (largest/smallest,
leftmost/rightmost, topmost/lowest), ``count`` (n to n+1 and n-1 >= 2), ``attribute``
(dark/bright) and ``universal`` (the type phrase replaced by "anomaly"/"anomalies"; the
other claims stay, so the target is every region they fit: every region when the type
was the only claim). A new kind of claim is a new row.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from annotate.claims import Claims, denotation
from annotate.faithful import OK, check_sentence, judge
from annotate.parse import FARTHEST, ParseError, parse, tokenize
from annotate.vocab import Vocabulary

CONTRAST_VERSION = "contrast-1"
NOT_SWAPPED = ("combined",)  # a combined image may show any type: swapping it away proves nothing
WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*", re.IGNORECASE)  # the parser's tokens, with positions


@dataclass(frozen=True)
class Surface:
    """A sentence as the rewrites see it: its token spans and where its type phrase is."""

    text: str
    spans: tuple[tuple[int, int], ...]  # (start, end) character offsets of each token
    words: tuple[str, ...]  # lower-case tokens, as ``annotate.parse.tokenize`` gives them
    type_tokens: tuple[int, int] | None  # [first, last) token index of the type phrase
    type_plural: bool | None  # number of the phrase as written (None: same in both numbers)
    ends: tuple[str, ...] = ()  # an axis frame's two end names ("head", "tip"), where the vocabulary has them

    def replace_words(
        self, table: dict[str, str], *, after_farthest: dict[str, str] | None = None,
        oclock: dict[str, str] | None = None,
    ):  # fmt: skip
        """The text with every token in ``table`` (outside the type phrase) replaced, and the list
        of ``old -> new``; ``after_farthest`` words are replaced only in a sentence that has a
        "farthest"/"closest" word (there "left"/"top" say an extreme, not a place); ``oclock``
        hours only where "o'clock" follows."""
        extra = after_farthest if after_farthest and any(w in FARTHEST for w in self.words) else {}
        out, changes, last = [], [], 0
        for k, ((start, end), word) in enumerate(zip(self.spans, self.words, strict=True)):
            if self.type_tokens and self.type_tokens[0] <= k < self.type_tokens[1]:
                continue
            new = table.get(word, extra.get(word))
            if new is None and oclock and self.words[k + 1 : k + 3] == ("o", "clock"):
                new = oclock.get(word)
            if new is None:
                continue
            old = self.text[start:end]
            out += [self.text[last:start], new.capitalize() if old[0].isupper() else new]
            changes.append(f"{word} -> {new}")
            last = end
        if not changes:
            return None, ""
        return "".join([*out, self.text[last:]]), ", ".join(changes)

    def replace_type(self, singular: str, plural: str):
        """The text with its type phrase replaced by ``singular`` or ``plural`` (its own number)."""
        if self.type_tokens is None:
            return None, ""
        first, last = self.type_tokens
        start, end = self.spans[first][0], self.spans[last - 1][1]
        new = plural if self.type_plural else singular
        old = self.text[start:end]
        return self.text[:start] + new + self.text[end:], f"{old.lower()} -> {new}"


def surface(text: str, category: str, vocab: Vocabulary, extra_types: tuple[str, ...] = ()) -> Surface | None:
    """Token spans of ``text`` and its type phrase, found longest phrase first as the parser does;
    None when the spans do not give the parser's tokens (letters whose lower case differs in length)."""
    matches = list(WORD.finditer(text))
    words = tuple(m.group(0).lower() for m in matches)
    if list(words) != tokenize(text):
        return None
    phrases = []
    known = vocab.category_types(category)
    for defect_type in known + sorted({t for t in extra_types if t not in known}):
        for singular, plural in vocab.words(category, defect_type).phrases:
            for form, is_plural in ((singular, False), (plural, True)):
                phrases.append((tuple(tokenize(form)), None if singular == plural else is_plural))
    phrases.sort(key=lambda p: -len(p[0]))
    found, number = None, None
    for phrase, is_plural in phrases:
        for start in range(len(words) - len(phrase) + 1):
            if words[start : start + len(phrase)] == phrase:
                found, number = (start, start + len(phrase)), is_plural
                break
        if found:
            break
    spans = tuple((m.start(), m.end()) for m in matches)
    frame = vocab.frame(category) if hasattr(vocab, "frame") else {}  # frames come with newer vocabularies
    return Surface(text, spans, words, found, number, tuple(frame.get("ends", ())))


# -- the rows -------------------------------------------------------------------------


@dataclass(frozen=True)
class Edit:
    """One edit: ``change(claims) -> claims or None`` (None: it does not apply) and
    ``rewrite(surface) -> (text or None, "old -> new")``."""

    kind: str
    change: Callable[[Claims], Claims | None]
    rewrite: Callable[[Surface], tuple[str | None, str]]


def _swap_field(field: str, pairs: dict) -> Callable[[Claims], Claims | None]:
    def change(claims: Claims) -> Claims | None:
        value = getattr(claims, field, None)  # None too where this parser has no such claim
        return claims.with_(**{field: pairs[value]}) if value in pairs else None

    return change


EDGE_MIRROR = ({"top": "bottom", "bottom": "top"}, {"left": "right", "right": "left"})  # by axis
CLOCK_MIRROR = ({h: (18 - h) % 12 or 12 for h in range(1, 13)},  # top-bottom: 12 <-> 6, 1 <-> 5
                {h: (12 - h) % 12 or 12 for h in range(1, 13)})  # left-right: 3 <-> 9, 1 <-> 11  # fmt: skip


def _mirror(axis: int) -> Callable[[Claims], Claims | None]:
    """Location cells (and, where the parser reads them, a box frame's edges and a round one's
    clock hour) mirrored top-bottom (axis 0) or left-right (axis 1); None if nothing changes."""

    def change(claims: Claims) -> Claims | None:
        changes = {}
        if claims.cells is not None:
            changes["cells"] = frozenset((2 - r, c) if axis == 0 else (r, 2 - c) for r, c in claims.cells)
        edges = getattr(claims, "edges", None)  # "near the top edge": a field of newer parsers
        if edges is not None:
            changes["edges"] = frozenset(EDGE_MIRROR[axis].get(e, e) for e in edges)
        clock = getattr(claims, "clock", None)
        if clock is not None:
            changes["clock"] = CLOCK_MIRROR[axis][clock]
        mirrored = claims.with_(**changes)
        return mirrored if mirrored != claims else None

    return change


def _count_by(step: int) -> Callable[[Claims], Claims | None]:
    def change(claims: Claims) -> Claims | None:
        n = claims.count
        return claims.with_(count=n + step) if n is not None and 2 <= n + step <= max(NUMBER) else None

    return change


def _words(table: dict[str, str], after_farthest: dict[str, str] | None = None, axis: int | None = None):
    """Swap the words of ``table``; with ``axis``, also mirror "N o'clock" hours."""
    oclock = None if axis is None else {str(h): str(m) for h, m in CLOCK_MIRROR[axis].items()}
    return lambda s: s.replace_words(table, after_farthest=after_farthest, oclock=oclock)


def _swap_ends(s: Surface) -> tuple[str | None, str]:
    """An axis frame's two one-word end names swapped ("near the head" -> "near the tip")."""
    if len(s.ends) != 2 or any(len(tokenize(e)) != 1 for e in s.ends):
        return None, ""
    a, b = (e.lower() for e in s.ends)
    return s.replace_words({a: b, b: a})


def _fewer(s: Surface) -> tuple[str | None, str]:
    """One fewer: "the three cracks" -> "the two cracks", "all three" -> "both"."""
    text, change = s.replace_words({NUMBER[n]: NUMBER[n - 1] for n in range(3, 11)})
    if text is not None:
        text = re.sub(r"\b(A|a)ll two\b", lambda m: "Both" if m.group(1) == "A" else "both", text)
    return text, change


NUMBER = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}
SIDE_WORDS = {"left": "right", "right": "left"}
ROW_WORDS = {"top": "bottom", "bottom": "top", "upper": "lower", "lower": "upper"}
EDITS: tuple[Edit, ...] = (
    Edit("location", _mirror(1), _words(SIDE_WORDS, axis=1)),
    Edit("location", _mirror(0), _words(ROW_WORDS, axis=0)),
    Edit("location", _swap_field("end", {"start": "end", "end": "start"}), _swap_ends),
    Edit("size", _swap_field("size", {"small": "large", "large": "small"}),
         _words({"small": "large", "tiny": "large", "large": "small", "big": "small"})),
    Edit("extreme", _swap_field("extreme", {"largest": "smallest", "smallest": "largest"}),
         _words({"largest": "smallest", "biggest": "smallest", "smallest": "largest"})),
    Edit("extreme", _swap_field("extreme", {"leftmost": "rightmost", "rightmost": "leftmost"}),
         _words({"leftmost": "rightmost", "rightmost": "leftmost"}, SIDE_WORDS)),
    Edit("extreme", _swap_field("extreme", {"topmost": "lowest", "lowest": "topmost"}),
         _words({"topmost": "lowest", "uppermost": "lowest", "highest": "lowest", "lowest": "topmost",
                 "bottommost": "topmost"}, ROW_WORDS)),
    Edit("count", _count_by(1),
         _words({"both": "all three", **{NUMBER[n]: NUMBER[n + 1] for n in range(2, 10)}})),
    Edit("count", _count_by(-1), _fewer),
    Edit("attribute", _swap_field("tone", {"darker": "brighter", "brighter": "darker"}),
         _words({"dark": "bright", "darker": "brighter", "bright": "dark", "brighter": "darker"})),
    Edit("universal",
         lambda c: c.with_(defect_type=None, universal=True) if c.defect_type is not None else None,
         lambda s: s.replace_type("anomaly", "anomalies")),
)  # fmt: skip


def type_edit(defect_type: str, singular: str, plural: str) -> Edit:
    """The row that names ``defect_type`` instead (its phrase in the sentence's number)."""
    return Edit(
        "type",
        lambda c: c.with_(defect_type=defect_type) if c.defect_type not in (None, defect_type) else None,
        lambda s: s.replace_type(singular, plural),
    )


# -- targets and judges -------------------------------------------------------------------


def target_of(claims: Claims, record: dict) -> set[int]:
    """Region ids the claims refer to: their denotation, or nothing when a count disagrees with it."""
    picked = denotation(claims, record["regions"], record["defect_type"])
    if claims.count is not None and picked and claims.count != len(picked):
        return set()
    return picked


def parser_accepts(text: str, target: set[int], record: dict, vocab: Vocabulary) -> bool:
    """The parser-based checker finds ``text`` denotes exactly ``target`` in ``record``; for an
    empty target it also accepts a sentence whose count alone is false of what its other claims
    pick out (the checker rejects it for that count and accepts it without it)."""
    if check_sentence(text, sorted(target), record, vocab).verdict == OK:
        return True
    if target:
        return False
    try:
        claims = parse(text, record["category"], vocab, (record["defect_type"],))
    except ParseError:
        return False
    if claims.count is None:
        return False
    regions, defect_type = record["regions"], record["defect_type"]
    picked = denotation(claims, regions, defect_type)
    uncounted = claims.with_(count=None)
    return (
        bool(picked)
        and judge(claims, picked, regions, defect_type).verdict != OK
        and (judge(uncounted, picked, regions, defect_type).verdict == OK)
    )


class Evidence:
    """What a judge may look at for one image: its sample record, the vocabulary and, read on
    first use, its pixels (``(H, W)`` or ``(H, W, 3)`` uint8 RGB) from the source ``root``."""

    def __init__(self, record: dict, vocab: Vocabulary, root: Path | None = None) -> None:
        self.record, self.vocab, self.root = record, vocab, root
        self._memo: dict = {}

    def image(self) -> np.ndarray:
        def read():
            from mvtec_ref.errors import DatasetError
            from mvtec_ref.regions.mask import decode_image

            if self.root is None:
                raise DatasetError(f"{self.record['id']}: no source root to read the image from")
            path = Path(self.root) / self.record["image_path"]
            try:
                return decode_image(path.read_bytes(), str(path))
            except FileNotFoundError:
                raise DatasetError(
                    f"{path}: image not found (is the source root {self.root} right?)"
                ) from None

        return self.memo("image", read)

    def memo(self, key: str, make: Callable[[], object]):
        """``make()`` once per image (a judge's measurements of it, say), then the same value."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]


def pixel_accepts(text: str, target: set[int], ev: Evidence) -> bool:
    """The pixel-based judge (annotate.pixel_judge): every claim visibly true of the target."""
    from annotate.pixel_judge import judge_sentence, measure_record

    scene = ev.memo("scene", lambda: measure_record(ev.record, ev.image(), vocab=ev.vocab))
    return not judge_sentence(text, sorted(target), ev.record, scene, ev.vocab, first_only=True)


# Every judge that must accept a probe: (name, accepts(text, target, evidence) -> bool), the same
# two a generated sentence must pass in build.
JUDGES: tuple[tuple[str, Callable[[str, set[int], Evidence], bool]], ...] = (
    ("parser", lambda text, target, ev: parser_accepts(text, target, ev.record, ev.vocab)),
    ("pixel", pixel_accepts),
)


def confirmed(text: str, target: set[int], evidence: Evidence) -> bool:
    """Does every judge in ``JUDGES`` agree that ``text`` refers to exactly ``target``?"""
    return all(accepts(text, target, evidence) for _, accepts in JUDGES)


# -- probes of one image ----------------------------------------------------------------------


def _same_meaning(a: Claims, b: Claims) -> bool:
    return a.with_(plural=None) == b.with_(plural=None)


def _type_rows(record: dict, claims: Claims, vocab: Vocabulary, rng: np.random.Generator) -> list[Edit]:
    """One type swap: to the image's own type when the sentence names another, else to one other
    type of the category drawn by ``rng`` (not 'combined', none sharing a phrase with the own type,
    no built-in size word when the sentence has one)."""
    category, own = record["category"], record["defect_type"]
    if claims.defect_type is None or own in NOT_SWAPPED:
        return []
    if claims.defect_type != own:
        choices = [own]
    else:
        own_phrases = set(vocab.words(category, own).phrases)
        choices = [
            t for t in vocab.category_types(category)
            if t != own and t not in NOT_SWAPPED and not own_phrases & set(vocab.words(category, t).phrases)
            and not (claims.size is not None and vocab.words(category, t).sized)
        ]  # fmt: skip
    if not choices:
        return []
    new = choices[int(rng.integers(len(choices)))] if len(choices) > 1 else choices[0]
    singular, plural = vocab.words(category, new).phrases[0]
    return [type_edit(new, singular, plural)]


def probes_for_sentence(text: str, evidence: Evidence, rng: np.random.Generator) -> list[dict]:
    """Every confirmed one-claim edit of ``text`` (a sentence of ``evidence.record``), in row
    order: ``{"edit", "change", "text", "region_ids"}``."""
    record, vocab = evidence.record, evidence.vocab
    category, extra = record["category"], (record["defect_type"],)
    try:
        claims = parse(text, category, vocab, extra)
    except ParseError:
        return []
    view = surface(text, category, vocab, extra)
    if view is None:
        return []
    out, seen = [], {text}
    for edit in (*EDITS[:3], *_type_rows(record, claims, vocab, rng), *EDITS[3:]):
        changed = edit.change(claims)
        if changed is None:
            continue
        new_text, change = edit.rewrite(view)
        if new_text is None or new_text in seen:
            continue
        try:
            read = parse(new_text, category, vocab, extra)
        except ParseError:
            continue
        if not _same_meaning(read, changed):
            continue
        target = target_of(changed, record)
        if not confirmed(new_text, target, evidence):
            continue
        seen.add(new_text)
        out.append({"edit": edit.kind, "change": change, "text": new_text, "region_ids": sorted(target)})
    return out
