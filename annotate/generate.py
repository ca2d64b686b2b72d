"""Template referring expressions for one image, written from its regions.

``refs_for(record, vocab, rng)`` returns refs (kind, target region ids, sentences).
Each ref has discriminating claims (its type, a place, an extreme such as "largest",
an attribute) whose denotation among the image's regions is exactly its target; when
two regions share type and place, the generator refers to both ("the two scratches
near the top") or singles one out by size or relative position instead. Sentences
may add further words that are true of every target region (size, tone, colour,
shape, place), which keeps the denotation and varies the wording. Every choice is
drawn from the seeded ``rng``; every sentence is verified against its target before
it is kept.
"""

from __future__ import annotations

import numpy as np

from annotate.claims import CELL_OF_WORD, TERM_CELLS, Claims, denotation
from annotate.parse import tokenize
from annotate.vocab import DefectWords, Vocabulary

TEMPLATES_VERSION = "templates-2"
NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}
SIZE_WORDS = {"small": ("small",), "medium": ("medium-sized",), "large": ("large", "big")}
TONE_WORDS = {"darker": ("dark", "darker"), "brighter": ("bright", "brighter")}
SHAPE_WORDS = {"elongated": ("elongated", "thin", "long", "narrow"), "round": ("round", "circular"),
               "irregular": ("irregular", "ragged")}  # fmt: skip
EXTREME_WORDS = {
    "largest": ("largest", "biggest"),
    "smallest": ("smallest",),
    "leftmost": ("leftmost",),
    "rightmost": ("rightmost",),
    "topmost": ("uppermost", "topmost", "highest"),
    "lowest": ("lowest", "bottommost"),
}
FARTHEST = {
    "leftmost": ("farthest to the left", "furthest left"),
    "rightmost": ("farthest to the right", "furthest right"),
    "topmost": ("closest to the top", "nearest the top"),
    "lowest": ("closest to the bottom", "nearest the bottom"),
}
PLACES = {
    "corner": ("near the {t} corner of the {n}", "in the {t} corner of the {n}", "at the {t} of the {n}",
               "toward the {t} of the {n}"),
    "row": ("near the {t} of the {n}", "at the {t} of the {n}", "in the {part} part of the {n}",
            "along the {t} of the {n}", "close to the {t} edge of the {n}"),
    "side": ("on the {t} side of the {n}", "near the {t} edge of the {n}", "on the {t} of the {n}",
             "along the {t} side of the {n}"),
    "center": ("in the center of the {n}", "in the middle of the {n}", "near the center of the {n}",
               "at the middle of the {n}"),
}  # fmt: skip
UNIVERSAL = ("the anomaly", "the defect", "all anomalies", "any defect", "every anomaly on the {n}",
             "all defects on the {n}", "the anomalous region", "everything abnormal on the {n}",
             "any anomaly on the {n}", "the defects of the {n}")  # fmt: skip
RETRIES = 5  # redraws of a sentence the pixel judge rejects (build's ``accept``)
# Relative sizes/positions are only used when a reader would see them at a glance.
CLEAR_AREA_RATIO = 1.25
CLEAR_OFFSET = 0.1
MAX_GROUP_REFS = 3
DECORATE_P = 0.8  # twice the chance of each optional true word (adjective or place)
ADJECTIVE_ORDER = ("size", "shape", "colour", "tone")  # English order: size, shape, colour


def universal_refs(record: dict) -> list[dict]:
    """Only the universal prompt: every region of a defect image, nothing on a good one."""
    target = [r["region_id"] for r in record["regions"]]
    kind = "universal" if target else "no_target"
    return [_ref(kind, target, [("anomaly", f"{kind}/anomaly")])]


def refs_for(record: dict, vocab: Vocabulary, rng: np.random.Generator, accept=None) -> list[dict]:
    """Refs for one sample record (needs category, defect_type, regions, frame).

    ``accept(text, target_ids) -> bool`` (the build passes the pixel judge) vets every
    sentence with a target; a rejected one is drawn again with other optional words, then
    plain, and dropped if even that fails."""
    category, regions = record["category"], record["regions"]
    noun = vocab.noun(category)
    if not regions:
        return _no_target_refs(record, vocab, noun, rng)
    w = _Writer(record, vocab.words(category, record["defect_type"]), noun, rng, accept)
    everything = [r["region_id"] for r in regions]
    universal = [str(rng.choice(UNIVERSAL)).format(n=noun)]
    for _ in range(RETRIES if accept else 0):
        if accept(universal[0], everything):
            break
        universal = [str(rng.choice(UNIVERSAL)).format(n=noun)]
    refs = [
        _ref("universal", everything, [("anomaly", "universal/anomaly"), (universal[0], "universal/other")])
    ]
    refs.append(w.type_ref(everything))
    if len(regions) > 1:
        refs.append(w.count_ref(everything))
    refs += w.location_refs()
    refs += w.size_refs()
    refs += w.relative_refs()
    refs += w.attribute_refs()
    refs.append(_other_type_ref(record, vocab, noun, rng))
    return [ref for ref in refs if ref is not None]


class _Writer:
    def __init__(self, record: dict, words: DefectWords, noun: str, rng: np.random.Generator, accept=None):
        self.accept = accept
        self.regions = record["regions"]
        self.by_id = {r["region_id"]: r for r in self.regions}
        self.type = record["defect_type"]
        self.words, self.noun, self.rng = words, noun, rng
        self.prep = "in" if record["frame"]["source"] == "image" else "on"
        self.phrase_words = set(tokenize(" ".join(p for pair in words.phrases for p in pair)))

    # -- one sentence ---------------------------------------------------------
    def sentence(self, target, claims: Claims, det: str, **kw) -> str | None:
        """``_compose`` vetted by ``accept``. A rejected sentence is tried plain (no optional
        words); if that fails too, only another wording of its place can help (up to RETRIES);
        if it passes, up to RETRIES other optional words are tried before settling for it."""
        text = self._compose(target, claims, det, **kw)
        if self.accept is None or text is None or self.accept(text, target):
            return text
        plain = {**kw, "decorate": ""}
        text = self._compose(target, claims, det, **plain)
        if text is None:
            return None
        if not self.accept(text, target):
            if not kw.get("place") or claims.cells is None:
                return None  # its own claim is what fails
            term = next(t for t, c in TERM_CELLS.items() if c == claims.cells)
            for _ in range(RETRIES):  # "near the top edge" may be false where "near the top" is true
                text = self._compose(target, claims, det, **{**plain, "place": self.place(term)})
                if text is not None and self.accept(text, target):
                    return text
            return None
        for _ in range(RETRIES):
            decorated = self._compose(target, claims, det, **kw)
            if decorated is not None and self.accept(decorated, target):
                return decorated
        return text

    def _compose(self, target, claims: Claims, det: str, *, own: tuple[str, str] | None = None,
                 synonym: int = 0, place: str | None = None, tail: str = "",
                 decorate: str = "words+place") -> str | None:  # fmt: skip
        """``det [adjectives] head [place | on the noun] [tail]``, verified to denote ``target``.

        ``own`` is the ref's own adjective (claim field, word); optional true adjectives
        (and, with ``decorate="words+place"``, a place) are added at random.
        """
        plural = len(target) > 1
        slots = {field: None for field in ADJECTIVE_ORDER}
        if own is not None:
            slots[own[0]] = own[1]
        if decorate:
            for field, value, options in self.shared_attributes(target):
                if field == "size" and claims.extreme in ("largest", "smallest"):
                    continue
                if (
                    slots[field] is None
                    and getattr(claims, field) is None
                    and self.rng.random() < DECORATE_P / 2
                ):
                    slots[field] = str(self.rng.choice(options))
                    claims = claims.with_(**{field: value})
            if decorate == "words+place" and place is None and not tail:
                term = self.shared_place(target)
                if term is not None and claims.cells is None and self.rng.random() < DECORATE_P / 2:
                    place, claims = self.place(term), claims.with_(cells=TERM_CELLS[term])
        if denotation(claims, self.regions, self.type) != set(target):
            return None
        singular, many = self.words.phrases[synonym % len(self.words.phrases)]
        words = [det, *(w for w in slots.values() if w), many if plural else singular]
        if place:
            words.append(place)
        elif not self.words.whole_object and not tail and self.rng.random() < 0.5:
            words.append(f"{self.prep} the {self.noun}")
        if tail:
            words.append(tail)
        return " ".join(w for w in words if w)

    def shared_attributes(self, target) -> list[tuple[str, str, tuple[str, ...]]]:
        """(claim field, value, words) true of every target region, in adjective order."""
        regions = [self.by_id[i] for i in target]

        def common(get):
            values = {get(r) for r in regions}
            return values.pop() if len(values) == 1 else None

        out = []
        size = common(lambda r: r["size"])
        if size and not self.words.sized:
            out.append(("size", size, SIZE_WORDS[size]))
        shape = common(lambda r: r["shape"]["word"])
        if shape in SHAPE_WORDS:
            out.append(("shape", shape, SHAPE_WORDS[shape]))
        tone = common(lambda r: r["appearance"]["tone"])
        colour = common(lambda r: r["appearance"]["colour"])
        if colour and colour not in self.phrase_words:
            out.append(("colour", colour, (colour,)))
        elif tone in TONE_WORDS:
            out.append(("tone", tone, TONE_WORDS[tone]))
        return out

    def shared_place(self, target) -> str | None:
        cells = {CELL_OF_WORD[self.by_id[i]["location"]] for i in target}
        fitting = [t for t, allowed in TERM_CELLS.items() if cells <= allowed]
        return min(fitting, key=lambda t: len(TERM_CELLS[t])) if fitting else None

    def place(self, term: str) -> str:
        kind = _term_kind(term)
        frame = str(self.rng.choice(PLACES[kind]))
        return frame.format(t=term, n=self.noun, part={"top": "upper", "bottom": "lower"}.get(term, ""))

    def base(self) -> Claims:
        return Claims(defect_type=self.type)

    def two(self, kind: str, target, build) -> dict | None:
        """A ref of up to two different sentences from ``build(synonym) -> (text, template)``."""
        sentences = [s for s in (build(0), build(1)) if s and s[0]]
        return _ref(kind, target, sentences)

    # -- kinds ------------------------------------------------------------------
    def type_ref(self, target) -> dict | None:
        dets = ["the", "all the"] if len(target) > 1 else ["the"]
        return self.two("type", target, lambda k: (
            self.sentence(target, self.base(), str(self.rng.choice(dets)), synonym=k, decorate="words"),
            "type/the-TYPE"))  # fmt: skip

    def count_ref(self, target) -> dict | None:
        n = len(target)
        number = NUMBERS.get(n, str(n))
        dets = [f"the {number}", "both" if n == 2 else f"all {number}"]
        claims = self.base().with_(count=n)
        return self.two("count", target, lambda k: (
            self.sentence(target, claims, dets[k], synonym=k, decorate="words"),
            f"count/{dets[k].split()[0]}-N-TYPE"))  # fmt: skip

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
            det = "the" if len(target) == 1 else f"the {NUMBERS.get(len(target), len(target))}"

            def build(k, terms=terms, target=target, det=det):
                term = terms[k % len(terms)]
                claims = self.base().with_(cells=TERM_CELLS[term])
                text = self.sentence(target, claims, det, synonym=k, place=self.place(term))
                return text, f"location/{_term_kind(term)}"

            refs.append(self.two("location", target, build))
        return refs[:MAX_GROUP_REFS]

    def size_refs(self) -> list[dict]:
        if self.words.sized:
            return []
        if len(self.regions) == 1:
            (r,) = self.regions
            claims = self.base().with_(size=r["size"])

            def build(k):
                word = str(self.rng.choice(SIZE_WORDS[r["size"]]))
                return self.sentence(
                    [r["region_id"]], claims, "the", own=("size", word), synonym=k
                ), f"size/{r['size']}"

            return [self.two("size", [r["region_id"]], build)]
        refs = []
        by_area = sorted(self.regions, key=lambda r: r["area"])
        for extreme, first, second in (
            ("largest", by_area[-1], by_area[-2]),
            ("smallest", by_area[0], by_area[1]),
        ):
            if max(first["area"], second["area"]) < CLEAR_AREA_RATIO * min(first["area"], second["area"]):
                continue
            target = [first["region_id"]]
            claims = self.base().with_(extreme=extreme)
            word = str(self.rng.choice(EXTREME_WORDS[extreme]))
            refs.append(
                _ref("size", target, [(self.sentence(target, claims, f"the {word}"), f"size/{extreme}")])
            )
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
            target = [ranked[0]["region_id"]]
            claims = self.base().with_(extreme=extreme)
            word = str(self.rng.choice(EXTREME_WORDS[extreme]))
            far = str(self.rng.choice(FARTHEST[extreme]))
            sentences = [
                (self.sentence(target, claims, f"the {word}"), f"relative/{extreme}"),
                (self.sentence(target, claims, "the", synonym=1, tail=far), f"relative/TYPE-{extreme}"),
            ]
            refs.append(_ref("relative", target, sentences))
        return [r for r in refs if r][:2]

    def attribute_refs(self) -> list[dict]:
        refs = []
        for r in self.regions:
            target = [r["region_id"]]
            sentences = []
            for field, value, options in self.shared_attributes(target):
                if field == "size" or len(sentences) == 2:
                    continue
                claims = self.base().with_(**{field: value})
                if self.denotes(claims, target):
                    own = (field, str(self.rng.choice(options)))
                    text = self.sentence(target, claims, "the", own=own, synonym=len(sentences))
                    sentences.append((text, f"attribute/{field}"))
            if sentences:
                refs.append(_ref("attribute", target, sentences))
        return [r for r in refs if r][:MAX_GROUP_REFS]

    def denotes(self, claims: Claims, target) -> bool:
        return denotation(claims, self.regions, self.type) == set(target)


def _no_target_refs(record: dict, vocab: Vocabulary, noun: str, rng) -> list[dict]:
    """Good image: the universal prompt, and two plausible defects of the category, placed at random."""
    refs = [_ref("no_target", [], [("anomaly", "no_target/anomaly")])]
    types = [t for t in vocab.category_types(record["category"]) if t != "combined"]
    sentences = [
        (_absent_phrase(vocab, record, t, noun, rng), "no_target/type") for t in _pick(rng, types, 2)
    ]
    refs.append(_ref("no_target", [], sentences))
    return refs


def _pick(rng: np.random.Generator, options: list, k: int) -> list:
    """Up to ``k`` distinct options, in their original order."""
    if len(options) <= k:
        return list(options)
    return [options[i] for i in sorted(rng.choice(len(options), size=k, replace=False))]


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
    text = _absent_phrase(vocab, record, str(rng.choice(types)), noun, rng)
    return _ref("other_type", [], [(text, "other_type")])


ABSENT_SIZE = ("", "small", "tiny", "large", "big")
ABSENT_LOOK = (
    "",
    "dark",
    "bright",
    "thin",
    "long",
    "round",
    "red",
    "brown",
    "black",
    "white",
    "gray",
    "yellow",
)


def _absent_phrase(vocab: Vocabulary, record: dict, defect_type: str, noun: str, rng) -> str:
    """A plausible but absent defect of the category: size/look words and a place at random
    (no colour words on grayscale images, where they would be implausible)."""
    words = vocab.words(record["category"], defect_type)
    head = words.phrases[int(rng.integers(len(words.phrases)))][0]
    size = "" if words.sized else str(rng.choice(ABSENT_SIZE))
    looks = ABSENT_LOOK if record.get("channels", 3) == 3 else ABSENT_LOOK[:6]
    look = str(rng.choice(looks))
    det = " ".join(w for w in ("the", size, look) if w)
    term = str(rng.choice(list(TERM_CELLS)))
    frame = str(rng.choice(PLACES[_term_kind(term)]))
    place = frame.format(t=term, n=noun, part={"top": "upper", "bottom": "lower"}.get(term, ""))
    return f"{det} {head} {place}"


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


def _ref(kind: str, target: list[int], sentences: list[tuple[str | None, str]]) -> dict | None:
    seen, unique = set(), []
    for text, template in sentences:
        if text and text not in seen:
            seen.add(text)
            unique.append(
                {"text": text, "tokens": tokenize(text), "origin": "template", "template": template}
            )
    if not unique:
        return None
    return {"kind": kind, "region_ids": sorted(target), "sentences": unique}
