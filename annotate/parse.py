"""Read a sentence back into Claims, independently of how the generator wrote it.

The parser knows the vocabulary's defect phrases (longest match first, so "little chip"
or "gap left by a missing cable" are read as types before their words could be read as
sizes or places) and a closed list of words for places, sizes, tones, colours, shapes,
extremes and counts. Words it does not know are ignored.
"""

from __future__ import annotations

import re

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
                 "biggest": "largest", "smallest": "smallest"}  # fmt: skip
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
COUNTS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
          "nine": 9, "ten": 10, "both": 2, "single": 1, "sole": 1}  # fmt: skip


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens; hyphenated words stay whole ("medium-sized")."""
    return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", text.lower())


class ParseError(ValueError):
    """The sentence says contradictory things (two defect types, two sizes...)."""


def parse(text: str, category: str, vocab: Vocabulary, extra_types: tuple[str, ...] = ()) -> Claims:
    """``extra_types``: defect types the vocabulary does not list (their fallback phrases, made
    from the name, are then recognised too): the type of the image being checked."""
    tokens = tokenize(text)
    claims = Claims()
    tokens, claims = _take_type(tokens, claims, category, vocab, extra_types)
    noun = tokenize(vocab.noun(category))
    tokens = _remove_run(tokens, noun)
    if claims.defect_type is None:
        forms = [UNIVERSAL[t] for t in tokens if t in UNIVERSAL]
        if forms:
            plural = next((f for f in forms if f is not None), None)
            claims = claims.with_(universal=True, plural=plural)
    tokens, cells, extreme = _take_places(tokens)
    changes: dict = {"cells": cells, "extreme": extreme}
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


def _take_type(tokens, claims, category, vocab, extra_types=()):
    phrases = []
    known = vocab.category_types(category)
    for defect_type in known + sorted({t for t in extra_types if t not in known}):
        for singular, plural in vocab.words(category, defect_type).phrases:
            for form, is_plural in ((singular, False), (plural, True)):
                number = None if singular == plural else is_plural
                phrases.append((tokenize(form), defect_type, number))
    phrases.sort(key=lambda p: -len(p[0]))
    found = None
    for words, defect_type, number in phrases:
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


def _take_places(tokens):
    """Location terms (intersected) and directional extremes ("farthest to the left")."""
    cells, extreme, rest, i = None, None, [], 0
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
        allowed = TERM_CELLS[term]
        cells = allowed if cells is None else cells & allowed
    return rest, cells, extreme


def _find(tokens, words):
    n = len(words)
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
