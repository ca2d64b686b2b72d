"""Read a sentence back into Claims, independently of how the generator wrote it.

The parser knows the vocabulary's defect phrases (longest match first, so "little chip"
or "gap left by a missing conductor" are read as types before their words could be read as
sizes or places) and a closed list of words for places, sizes, tones, colours, shapes,
extremes and counts, and the place words of the category's frame (edges and corners of a
box, the named ends of an elongated object, clock directions and the rim of a round one).
Words it does not know are ignored.
"""

from __future__ import annotations

import re
from functools import lru_cache

from annotate.claims import TERM_CELLS, Claims
from annotate.vocab import Vocabulary

UNIVERSAL = {"anomaly": False, "anomalies": True, "defect": False, "defects": True,
             "anomalous": None, "abnormal": None, "abnormality": False, "abnormalities": True}  # fmt: skip
CORNER_FIRST = {"top": "top", "upper": "top", "bottom": "bottom", "lower": "bottom"}
SIDES = {"left": "left", "right": "right"}
ROWS = {"top": "top", "upper": "top", "bottom": "bottom", "lower": "bottom"}
CENTRE = {"center", "centre", "middle", "central"}
EXTREME_WORDS = {"leftmost": "leftmost", "rightmost": "rightmost", "topmost": "topmost",
                 "uppermost": "topmost", "highest": "topmost", "lowest": "lowest",
                 "lowermost": "lowest", "bottommost": "lowest", "largest": "largest",
                 "biggest": "largest", "smallest": "smallest",
                 # of two regions the comparative is the extreme ("the smaller scratch")
                 "larger": "largest", "bigger": "largest", "smaller": "smallest"}  # fmt: skip
FARTHEST = {"farthest", "furthest", "closest", "nearest"}
SIZES = {
    "small": "small",
    "tiny": "small",
    "medium-sized": "medium",
    "medium": "medium",
    "large": "large",
    "big": "large",
}
TONES = {"dark": "darker", "darker": "darker", "bright": "brighter", "brighter": "brighter"}
COLOURS = {"red", "orange", "yellow", "green", "blue", "purple", "brown", "black", "white", "gray", "grey"}
SHAPES = {"elongated": "elongated", "long": "elongated", "thin": "elongated", "narrow": "elongated",
          "round": "round", "circular": "round", "roundish": "round", "irregular": "irregular",
          "irregularly": "irregular", "ragged": "irregular"}  # fmt: skip
EDGE_WORDS = {"edge", "edges", "corner", "corners", "border"}
QUANTIFIERS = {"any", "every", "each", "everything"}
COUNTS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
          "nine": 9, "ten": 10, "both": 2, "single": 1, "sole": 1}  # fmt: skip


_TOKEN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens; hyphenated words stay whole ("medium-sized")."""
    return _TOKEN.findall(text.lower())


@lru_cache(maxsize=8192)
def _phrase_tokens(phrase: str) -> tuple[str, ...]:
    """``tokenize`` of a vocabulary phrase or noun, kept: every parse reads all of a category's."""
    return tuple(tokenize(phrase))


class ParseError(ValueError):
    """The sentence says contradictory things (two defect types, two sizes...)."""


# (id(vocab), text, category, extra_types) -> (vocab, Claims or the ParseError's message): a build
# checks the same sentence for many images (full scale: 31,220 template sentences, 20,201 distinct
# per category). Claims are frozen; the vocabulary is kept, as in _PHRASES below.
_PARSED: dict[tuple, tuple] = {}


def parse(text: str, category: str, vocab: Vocabulary, extra_types: tuple[str, ...] = ()) -> Claims:
    """``extra_types``: defect types the vocabulary does not list (their fallback phrases, made
    from the name, are then recognised too): the type of the image being checked."""
    key = (id(vocab), text, category, tuple(extra_types))
    entry = _PARSED.get(key)
    if entry is None or entry[0] is not vocab:
        try:
            result = _parse(text, category, vocab, extra_types)
        except ParseError as error:
            result = str(error)
        if len(_PARSED) > 16384:
            _PARSED.clear()
        entry = _PARSED[key] = (vocab, result)
    if isinstance(entry[1], str):
        raise ParseError(entry[1])
    return entry[1]


def _parse(text: str, category: str, vocab: Vocabulary, extra_types: tuple[str, ...]) -> Claims:
    tokens = tokenize(text)
    claims = Claims()
    tokens, claims = _take_type(tokens, claims, category, vocab, extra_types)
    noun = list(_phrase_tokens(vocab.noun(category)))
    tokens = _remove_run(tokens, noun)
    if claims.defect_type is None:
        forms = [UNIVERSAL[t] for t in tokens if t in UNIVERSAL]
        if forms:
            plural = next((f for f in forms if f is not None), None)
            claims = claims.with_(universal=True, plural=plural)
    if claims.universal and (len(tokens) == 1 or any(t in QUANTIFIERS for t in tokens)):
        claims = claims.with_(plural=None)  # the bare prompt, "any defect", "every anomaly"
    frame = vocab.frame(category)
    tokens, frame_changes = _take_frame_places(tokens, frame)
    tokens, cells, extreme, edges = _take_places(tokens)
    changes: dict = {"cells": cells, "extreme": extreme, "edges": edges, **frame_changes}
    for token in tokens:
        for table, field in ((SIZES, "size"), (TONES, "tone"), (SHAPES, "shape"), (COUNTS, "count")):
            if token in table:
                changes[field] = _one(changes.get(field), table[token], field, text)
        if token in EXTREME_WORDS:
            changes["extreme"] = _one(changes.get("extreme"), EXTREME_WORDS[token], "extreme", text)
        if token in COLOURS:
            colour = "gray" if token == "grey" else token
            changes["colour"] = _one(changes.get("colour"), colour, "colour", text)
    return claims.with_(**changes)


def _type_phrases(category, vocab, extra_types):
    """``[(words, defect_type, number)]``, longest first: every phrase form the parser looks for."""
    phrases = []
    known = vocab.category_types(category)
    for defect_type in known + sorted({t for t in extra_types if t not in known}):
        for singular, plural in vocab.words(category, defect_type).phrases:
            for form, is_plural in ((singular, False), (plural, True)):
                number = None if singular == plural else is_plural
                words = list(_phrase_tokens(form))
                if not all(w in UNIVERSAL for w in words):  # "anomaly" names no kind: read below
                    phrases.append((words, defect_type, number))
    # A phrase several types share ("wrong fruit") names the image's own type when it is one.
    phrases.sort(key=lambda p: (-len(p[0]), p[1] not in extra_types))
    return phrases


# (id(vocab), category, extra_types) -> (vocab, phrases). The vocabulary is kept, so its id is not
# reused while the entry lives; vocabularies are not changed once loaded (load_vocabulary shares them).
_PHRASES: dict[tuple, tuple] = {}


def _cached_type_phrases(category, vocab, extra_types):
    key = (id(vocab), category, tuple(extra_types))
    entry = _PHRASES.get(key)
    if entry is None or entry[0] is not vocab:
        if len(_PHRASES) > 4096:
            _PHRASES.clear()
        entry = _PHRASES[key] = (vocab, _type_phrases(category, vocab, extra_types))
    return entry[1]


def _take_type(tokens, claims, category, vocab, extra_types=()):
    found = None
    for words, defect_type, number in _cached_type_phrases(category, vocab, extra_types):
        start = _find(tokens, words)
        if start is None:
            continue
        if found is not None and found[0] != defect_type:
            raise ParseError(f"names two defect types ({found[0]}, {defect_type})")
        found = (defect_type, number if found is None else found[1])
        tokens = tokens[:start] + tokens[start + len(words) :]
    if found is None:
        return tokens, claims
    return tokens, claims.with_(defect_type=found[0], plural=found[1])


def _take_frame_places(tokens, frame: dict):
    """Words of an axis or round frame: the ends' names and "halfway" (axis); "N o'clock", the
    rim word (or a bare "edge") and "center"/"middle" (round). Returns (rest, claim changes)."""
    changes, rest, i = {}, [], 0
    kind = frame["kind"]
    ends = [tokenize(e) for e in frame["ends"]]
    rim = tokenize(frame["rim"])
    while i < len(tokens):
        t = tokens[i]
        if kind == "axis":
            hit = next((k for k, words in enumerate(ends) if tokens[i : i + len(words)] == words), None)
            if hit is not None:
                changes["end"] = _one(changes.get("end"), ("start", "end")[hit], "end", " ".join(tokens))
                i += len(ends[hit])
                continue
            if t == "halfway":
                changes["end"] = _one(changes.get("end"), "middle", "end", " ".join(tokens))
                i += 1
                continue
        if kind == "round":
            if t.isdigit() and tokens[i + 1 : i + 3] == ["o", "clock"] and 1 <= int(t) <= 12:
                changes["clock"] = _one(changes.get("clock"), int(t), "clock", " ".join(tokens))
                i += 3
                continue
            previous = tokens[i - 1] if i else None
            if tokens[i : i + len(rim)] == rim or (t in ("edge", "rim") and previous not in SIDES | ROWS):
                changes["ring"] = _one(changes.get("ring"), "rim", "ring", " ".join(tokens))
                i += len(rim) if tokens[i : i + len(rim)] == rim else 1
                continue
            if t in CENTRE:
                changes["ring"] = _one(changes.get("ring"), "center", "ring", " ".join(tokens))
                i += 1
                continue
        rest.append(t)
        i += 1
    return rest, changes


def _take_places(tokens):
    """Location terms (intersected), edges and corners ("near the top edge", "in the top left
    corner": the region lies near those sides) and directional extremes ("farthest to the left")."""
    cells, extreme, edges, rest, i = None, None, None, [], 0
    farthest = any(t in FARTHEST for t in tokens)
    while i < len(tokens):
        t = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        term = None
        if t in CORNER_FIRST and nxt in SIDES:
            term, i = f"{CORNER_FIRST[t]} {SIDES[nxt]}", i + 2
        elif t in ROWS:
            term, i = ROWS[t], i + 1
        elif t in SIDES:
            term, i = SIDES[t], i + 1
        elif t in CENTRE:
            term, i = "center", i + 1
        else:
            rest.append(t)
            i += 1
            continue
        if farthest and term in ("left", "right", "top", "bottom"):
            extreme = {"left": "leftmost", "right": "rightmost", "top": "topmost", "bottom": "lowest"}[term]
            continue
        if i < len(tokens) and tokens[i] in EDGE_WORDS and term != "center":
            sides = frozenset(term.split())
            edges = sides if edges is None else edges | sides
            i += 1
            continue
        allowed = TERM_CELLS[term]
        cells = allowed if cells is None else cells & allowed
    return rest, cells, extreme, edges


def _find(tokens, words):
    n = len(words)
    if n and words[0] not in tokens:  # the common case, answered by one scan in C
        return None
    for start in range(len(tokens) - n + 1):
        if tokens[start : start + n] == words:
            return start
    return None


def _remove_run(tokens, words):
    start = _find(tokens, words) if words else None
    while start is not None:
        tokens = tokens[:start] + tokens[start + len(words) :]
        start = _find(tokens, words)
    return tokens


def _one(old, new, field, text):
    if old is not None and old != new:
        raise ParseError(f"says two different {field}s ({old}, {new}) in {text!r}")
    return new
