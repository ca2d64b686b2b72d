"""Template referring expressions for one image, written from its regions.

``refs_for(record, vocab, rng)`` returns refs (kind, target region ids, sentences).
Every specific ref is built from a set of claims whose denotation among the image's
regions is exactly its target; when two regions share type and place, the generator
refers to both ("the two scratches near the top") or singles one out by size or
relative position instead. Phrasings are picked with the seeded ``rng``.
"""

from __future__ import annotations

import numpy as np

from annotate.claims import CELL_OF_WORD, TERM_CELLS, Claims, denotation
from annotate.parse import tokenize
from annotate.vocab import DefectWords, Vocabulary

TEMPLATES_VERSION = "templates-1"
NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}
SIZE_WORDS = {"small": ("small",), "medium": ("medium-sized",), "large": ("large", "big")}
TONE_WORDS = {"darker": ("dark",), "brighter": ("bright",)}
SHAPE_WORDS = {"elongated": ("elongated", "thin", "long"), "round": ("round",), "irregular": ("irregular",)}
EXTREME_WORDS = {
    "largest": ("largest", "biggest"),
    "smallest": ("smallest",),
    "leftmost": ("leftmost",),
    "rightmost": ("rightmost",),
    "topmost": ("uppermost", "topmost"),
    "lowest": ("lowest",),
}
FARTHEST = {
    "leftmost": "farthest to the left",
    "rightmost": "farthest to the right",
    "topmost": "closest to the top",
    "lowest": "closest to the bottom",
}
PLACES = {
    "corner": ("near the {t} corner of the {n}", "in the {t} corner of the {n}", "at the {t} of the {n}"),
    "row": ("near the {t} of the {n}", "at the {t} of the {n}", "in the {part} part of the {n}"),
    "side": ("on the {t} side of the {n}", "near the {t} edge of the {n}", "on the {t} of the {n}"),
    "center": ("in the center of the {n}", "in the middle of the {n}", "near the center of the {n}"),
}
UNIVERSAL_ONE = ("the anomaly", "the defect", "all anomalies", "any defect")
UNIVERSAL_MANY = ("the anomalies", "the defects", "all anomalies", "all defects")
NO_TARGET_UNIVERSAL = ("the anomaly", "the defect", "any defect", "all anomalies")
# Relative sizes/positions are only used when a reader would see them at a glance.
CLEAR_AREA_RATIO = 1.25
CLEAR_OFFSET = 0.1
MAX_GROUP_REFS = 3


def universal_refs(record: dict) -> list[dict]:
    """Only the universal prompt: every region of a defect image, nothing on a good one."""
    target = [r["region_id"] for r in record["regions"]]
    kind = "universal" if target else "no_target"
    return [_ref(kind, target, [("anomaly", f"{kind}/anomaly")])]


def refs_for(record: dict, vocab: Vocabulary, rng: np.random.Generator) -> list[dict]:
    """Refs for one sample record (needs category, defect_type, regions, frame)."""
    category, regions = record["category"], record["regions"]
    noun = vocab.noun(category)
    if not regions:
        return _no_target_refs(category, vocab, noun, rng)
    g = _Writer(record, vocab.words(category, record["defect_type"]), noun, rng)
    n = len(regions)
    everything = [r["region_id"] for r in regions]
    universal = ["anomaly", *_pick(rng, UNIVERSAL_MANY if n > 1 else UNIVERSAL_ONE, 2)]
    refs = [_ref("universal", everything, [(s, f"universal/{s}") for s in universal])]
    refs.append(g.type_ref(everything))
    if n > 1:
        refs.append(g.count_ref(everything))
    refs += g.location_refs()
    refs += g.size_refs()
    refs += g.relative_refs()
    refs += g.attribute_refs()
    other = _other_type_ref(record, vocab, noun, rng)
    if other is not None:
        refs.append(other)
    return [ref for ref in refs if ref is not None]


class _Writer:
    def __init__(self, record: dict, words: DefectWords, noun: str, rng: np.random.Generator):
        self.regions = record["regions"]
        self.type = record["defect_type"]
        self.words, self.noun, self.rng = words, noun, rng
        self.texture = record["frame"]["source"] == "image"

    # -- pieces ---------------------------------------------------------------
    def head(self, plural: bool, k: int = 0) -> str:
        singular, many = self.words.phrases[k % len(self.words.phrases)]
        return many if plural else singular

    def on_noun(self) -> str:
        if self.words.whole_object:
            return ""
        return f" {'in' if self.texture else 'on'} the {self.noun}"

    def denotes(self, claims: Claims, target: list[int]) -> bool:
        return denotation(claims, self.regions, self.type) == set(target)

    def base(self) -> Claims:
        return Claims(defect_type=self.type)

    # -- kinds ------------------------------------------------------------------
    def type_ref(self, target: list[int]) -> dict:
        plural = len(target) > 1
        frames = ["the {h}{on}", "the {h}"] + (["all {h}{on}"] if plural else [])
        return _ref("type", target, self._fill("type", frames, plural, 2))

    def count_ref(self, target: list[int]) -> dict:
        n = len(target)
        number = NUMBERS.get(n, str(n))
        frames = [f"the {number} {{h}}{{on}}", f"the {number} {{h}}"]
        frames.append("both {h}" if n == 2 else f"all {number} {{h}}")
        return _ref("count", target, self._fill("count", frames, True, 2))

    def _fill(self, kind: str, frames: list[str], plural: bool, k: int) -> list[tuple[str, str]]:
        """Up to ``k`` sentences from ``frames``, each with the next synonym of the type."""
        out = []
        for i, frame in enumerate(_pick(self.rng, frames, k)):
            text = frame.format(h=self.head(plural, i), on=self.on_noun())
            template = frame.replace("{h}", "TYPE").replace("{on}", " on NOUN").replace(" ", "_")
            out.append((text, f"{kind}/{template}"))
        return out

    def location_refs(self) -> list[dict]:
        groups: dict[str, list[int]] = {}
        for r in self.regions:
            groups.setdefault(r["location"], []).append(r["region_id"])
        refs = []
        for word in sorted(groups, key=lambda w: CELL_OF_WORD[w]):
            target = groups[word]
            terms = [
                t for t in _terms_for(word) if self.denotes(self.base().with_(cells=TERM_CELLS[t]), target)
            ]
            if not terms:
                continue
            sentences = []
            for k, term in enumerate(_pick(self.rng, terms, 2)):
                place = self.place(term)
                head = self.head(len(target) > 1, k)
                if len(target) > 1:
                    head = f"{NUMBERS.get(len(target), len(target))} {head}"
                sentences.append((f"the {head} {place}", f"location/{_term_kind(term)}"))
            refs.append(_ref("location", target, sentences))
        return refs[:MAX_GROUP_REFS]

    def place(self, term: str) -> str:
        kind = _term_kind(term)
        frame = str(self.rng.choice(PLACES[kind]))
        part = {"top": "upper", "bottom": "lower"}.get(term, "")
        return frame.format(t=term, n=self.noun, part=part)

    def size_refs(self) -> list[dict]:
        if self.words.sized:
            return []
        if len(self.regions) == 1:
            (r,) = self.regions
            word = str(self.rng.choice(SIZE_WORDS[r["size"]]))
            text = f"the {word} {self.head(False)}{self.on_noun()}"
            return [_ref("size", [r["region_id"]], [(text, f"size/{r['size']}")])]
        refs = []
        by_area = sorted(self.regions, key=lambda r: r["area"])
        for extreme, first, second in (
            ("largest", by_area[-1], by_area[-2]),
            ("smallest", by_area[0], by_area[1]),
        ):
            big, small = max(first["area"], second["area"]), min(first["area"], second["area"])
            if big < CLEAR_AREA_RATIO * small:
                continue
            rid = first["region_id"]
            if self.denotes(self.base().with_(extreme=extreme), [rid]):
                word = str(self.rng.choice(EXTREME_WORDS[extreme]))
                refs.append(_ref("size", [rid], [(f"the {word} {self.head(False)}", f"size/{extreme}")]))
        return refs

    def relative_refs(self) -> list[dict]:
        if len(self.regions) < 2:
            return []
        refs = []
        for extreme, axis, sign in (
            ("leftmost", 0, -1),
            ("rightmost", 0, 1),
            ("topmost", 1, -1),
            ("lowest", 1, 1),
        ):
            ranked = sorted(self.regions, key=lambda r: sign * r["rel_position"][axis], reverse=True)
            if abs(ranked[0]["rel_position"][axis] - ranked[1]["rel_position"][axis]) < CLEAR_OFFSET:
                continue
            rid = ranked[0]["region_id"]
            if not self.denotes(self.base().with_(extreme=extreme), [rid]):
                continue
            word = str(self.rng.choice(EXTREME_WORDS[extreme]))
            sentences = [(f"the {word} {self.head(False)}", f"relative/{extreme}")]
            far = f"the {self.head(False, 1)} {FARTHEST[extreme]}"
            sentences.append((far, f"relative/{FARTHEST[extreme].replace(' ', '_')}"))
            refs.append(_ref("relative", [rid], sentences))
        return refs[:2]

    def attribute_refs(self) -> list[dict]:
        refs = []
        phrase_words = set(tokenize(" ".join(p for pair in self.words.phrases for p in pair)))
        for r in self.regions:
            options = []
            tone = r["appearance"]["tone"]
            if tone in TONE_WORDS:
                options.append(("tone", self.base().with_(tone=tone), TONE_WORDS[tone]))
            colour = r["appearance"]["colour"]
            if colour and colour not in phrase_words:
                options.append(("colour", self.base().with_(colour=colour), (colour,)))
            shape = r["shape"]["word"]
            if shape in SHAPE_WORDS:
                options.append(("shape", self.base().with_(shape=shape), SHAPE_WORDS[shape]))
            sentences = []
            for name, claims, words in options:
                if self.denotes(claims, [r["region_id"]]):
                    word = str(self.rng.choice(words))
                    sentences.append((f"the {word} {self.head(False, len(sentences))}", f"attribute/{name}"))
            if sentences:
                refs.append(_ref("attribute", [r["region_id"]], sentences[:2]))
        return refs[:MAX_GROUP_REFS]


def _no_target_refs(category: str, vocab: Vocabulary, noun: str, rng) -> list[dict]:
    universal = ["anomaly", *_pick(rng, NO_TARGET_UNIVERSAL, 2)]
    refs = [_ref("no_target", [], [(s, f"no_target/{s}") for s in universal])]
    types = [t for t in vocab.category_types(category) if t != "combined"]
    sentences = []
    for defect_type in _pick(rng, types, 2):
        singular = vocab.words(category, defect_type).phrases[0][0]
        sentences.append((f"the {singular} on the {noun}", "no_target/type"))
    if sentences:
        refs.append(_ref("no_target", [], sentences))
    return refs


def _other_type_ref(record: dict, vocab: Vocabulary, noun: str, rng) -> dict | None:
    """A phrase of another defect type of the category: it refers to nothing here."""
    category, own = record["category"], record["defect_type"]
    if own == "combined":
        return None  # a combined image may show any type
    own_words = set(vocab.words(category, own).phrases)
    types = [t for t in vocab.category_types(category) if t not in (own, "combined")]
    types = [t for t in types if not own_words & set(vocab.words(category, t).phrases)]
    if not types:
        return None
    other = str(rng.choice(types))
    text = f"the {vocab.words(category, other).phrases[0][0]} on the {noun}"
    return _ref("other_type", [], [(text, "other_type")])


def _terms_for(word: str) -> list[str]:
    """Location terms that include a region whose cell is ``word``, most specific first."""
    if word in ("top left", "top right", "bottom left", "bottom right"):
        row, side = word.split()
        return [word, row, side]
    return [word]


def _term_kind(term: str) -> str:
    if " " in term:
        return "corner"
    if term == "center":
        return "center"
    return "row" if term in ("top", "bottom") else "side"


def _pick(rng: np.random.Generator, options, k: int) -> list:
    options = list(options)
    if len(options) <= k:
        return options
    idx = sorted(rng.choice(len(options), size=k, replace=False))
    return [options[i] for i in idx]


def _ref(kind: str, target: list[int], sentences: list[tuple[str, str]]) -> dict | None:
    seen, unique = set(), []
    for text, template in sentences:
        if text not in seen:
            seen.add(text)
            unique.append(
                {"text": text, "tokens": tokenize(text), "origin": "template", "template": template}
            )
    if not unique:
        return None
    return {"kind": kind, "region_ids": sorted(target), "sentences": unique}
