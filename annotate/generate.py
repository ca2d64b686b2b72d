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

from functools import cache, lru_cache

import numpy as np

from annotate.claims import TERM_CELLS, Claims, denotation, matches, region_place
from annotate.parse import tokenize
from annotate.roles import _wrong_place
from annotate.vocab import DefectWords, Part, Vocabulary

TEMPLATES_VERSION = "templates-4"
NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}
SIZE_WORDS = {"small": ("small",), "medium": ("medium-sized",), "large": ("large", "big")}
# Tone words are positive forms that compare a region with its own surround ("a dark spot"): the
# only thing a single region can be compared with. Comparatives ("darker") are never written.
TONE_WORDS = {"darker": ("dark",), "brighter": ("bright",)}
SHAPE_WORDS = {"elongated": ("elongated", "thin", "long", "narrow"), "round": ("round", "circular"),
               "irregular": ("irregular", "ragged")}  # fmt: skip
# Of exactly two regions people compare: "the smaller of the two", "the larger scratch".
COMPARATIVE_SIZE_WORDS = {"largest": ("larger", "bigger"), "smallest": ("smaller",)}
EXTREME_WORDS = {
    "largest": ("largest", "biggest"),
    "smallest": ("smallest",),
    "leftmost": ("leftmost",),
    "rightmost": ("rightmost",),
    "topmost": ("uppermost", "highest"),
    "lowest": ("lowest",),  # not "bottommost": people say "the lowest" or "nearest the bottom"
}
FARTHEST = {
    "leftmost": (
        "farthest to the left",
        "furthest left",
        "nearest the left side",
        "closest to the left side",
    ),
    "rightmost": (
        "farthest to the right",
        "furthest right",
        "nearest the right side",
        "closest to the right side",
    ),
    "topmost": ("closest to the top", "nearest the top"),
    "lowest": ("closest to the bottom", "nearest the bottom"),
}
# Place words per frame (mvtec_ref.regions.frame). A grid cell of a box/texture frame is a "part"
# (never an edge or a corner); edges and corners need the region within EDGE_BAND of that side.
PART_PLACES = {
    "corner": ("in the {part} part of the {n}", "toward the {t} of the {n}"),
    "row": ("in the {part} part of the {n}", "in the {part} third of the {n}", "toward the {t} of the {n}"),
    "side": ("on the {t} side of the {n}", "in the {t} part of the {n}", "toward the {t} of the {n}"),
    "center": ("in the middle of the {n}", "in the center of the {n}", "near the center of the {n}"),
}
EDGE_PLACES = (
    "near the {t} edge of the {n}",
    "close to the {t} edge of the {n}",
    "along the {t} edge of the {n}",
)
CORNER_PLACES = ("in the {t} corner of the {n}", "near the {t} corner of the {n}")
AXIS_PLACES = {
    "end": ("near the {e} of the {n}", "at the {e} of the {n}", "close to the {e} of the {n}"),
    "middle": ("halfway along the {n}", "about halfway along the {n}"),
}
ROUND_PLACES = {
    "center": ("in the center of the {n}", "at the center of the {n}"),
    "rim": ("near the {rim} of the {n}", "at the {rim} of the {n}", "along the {rim} of the {n}"),
    "clock": ("at {c} o'clock on the {n}", "at the {c} o'clock position on the {n}"),
    "rimclock": ("at {c} o'clock near the {rim} of the {n}", "on the {rim} of the {n} at {c} o'clock"),
}
# Universal paraphrases by grammatical number: singular ones only for one region, plural ones
# only for several, quantified ones ("any", "every") for either.
UNIVERSAL_ONE = (
    "the anomaly", "the defect", "the anomalous region", "the abnormal region",
    "the abnormal region on the {n}", "the defect on the {n}", "the anomaly on the {n}",
    "the abnormality on the {n}",
)  # fmt: skip
UNIVERSAL_MANY = (
    "all anomalies", "all defects on the {n}", "the defects of the {n}", "the anomalous regions",
    "the anomalies", "all the anomalies on the {n}", "the abnormalities on the {n}",
    "the defects on the {n}", "all defects",
)  # fmt: skip
UNIVERSAL_ANY = (
    "any defect", "any anomaly on the {n}", "every anomaly on the {n}", "everything abnormal on the {n}",
    "any defect on the {n}", "every defect on the {n}", "anything anomalous on the {n}",
    "any abnormality on the {n}", "any anomaly", "anything anomalous",
)  # fmt: skip
RETRIES = 5  # redraws of a sentence the pixel judge rejects (build's ``accept``)
# Relative sizes/positions are only used when a reader would see them at a glance.
CLEAR_AREA_RATIO = 1.25
CLEAR_OFFSET = 0.1
MAX_GROUP_REFS = 3
# Counts people say at a glance; beyond, a count of mask pieces (a thread cut by a mesh into 17)
# is no count of things a reader sees.
MAX_COUNTED = 6
FILL_SHARE = 0.6  # a region this wide and tall within its frame gets no place words
PART_MARGIN = 0.03  # a part word ("upper", "left") needs the centroid this far inside its third
NO_TARGET_TYPES = 3  # absent types named on a good image
MIN_SENTENCES = 8  # per defect image; reached by rewording the type ref when few kinds apply
TOP_UP_TRIES = 12
DECORATE_P = 0.8  # twice the chance of each optional true word (adjective or place)
ADJECTIVE_ORDER = ("size", "shape", "colour", "tone")  # English order: size, shape, colour
PREPOSITIONS = {"in", "on", "of", "between", "by", "where", "at", "from"}


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
    frame = _frame_rule(record, vocab)
    if not regions:
        return _no_target_refs(record, vocab, noun, frame, rng)
    words = vocab.words(category, record["defect_type"])
    w = _Writer(record, words, noun, frame, rng, accept, vocab)
    everything = [r["region_id"] for r in regions]
    options = (UNIVERSAL_ONE if len(regions) == 1 else UNIVERSAL_MANY) + UNIVERSAL_ANY
    if words.absent:  # "the anomaly on the transistor" where the transistor may be gone
        options = tuple(o for o in options if "{n}" not in o)
    universal = [_draw(rng, options).format(n=noun)]
    for _ in range(RETRIES if accept else 0):
        if accept(universal[0], everything):
            break
        universal = [_draw(rng, options).format(n=noun)]
    refs = [
        _ref("universal", everything, [("anomaly", "universal/anomaly"), (universal[0], "universal/other")])
    ]
    if w.nameable:
        refs.append(w.type_ref(everything))
        if 1 < len(regions) <= MAX_COUNTED:
            refs.append(w.count_ref(everything))
        refs += w.location_refs()
        refs += w.size_refs()
        refs += w.relative_refs()
        refs += w.attribute_refs()
    refs.append(_other_type_ref(record, vocab, noun, frame, rng))
    refs = _unique([ref for ref in refs if ref is not None])
    if w.nameable:
        w.top_up(refs, everything)
    _top_up_universal(refs, options, noun, rng, accept)
    return refs


def _top_up_universal(refs: list[dict], options: tuple[str, ...], noun: str, rng, accept) -> None:
    """Other universal phrasings of the right number for an image that still has fewer than
    MIN_SENTENCES (a single gap with no clear place or size word leaves few kinds of ref)."""
    count = sum(len(ref["sentences"]) for ref in refs)
    ref = next((r for r in refs if r["kind"] == "universal"), None)
    if ref is None or count >= MIN_SENTENCES:
        return
    seen = {s["text"] for r in refs for s in r["sentences"]}
    for i in rng.permutation(len(options)):
        text = options[int(i)].format(n=noun)
        if text in seen or (accept is not None and not accept(text, ref["region_ids"])):
            continue
        seen.add(text)
        ref["sentences"].append(
            {"text": text, "tokens": tokenize(text), "origin": "template", "template": "universal/other-more"}
        )
        count += 1
        if count >= MIN_SENTENCES:
            return


def _unique(refs: list[dict]) -> list[dict]:
    """Each sentence once per image (the first ref that wrote it keeps it); empty refs go."""
    seen, out = set(), []
    for ref in refs:
        sentences = [s for s in ref["sentences"] if s["text"] not in seen]
        seen |= {s["text"] for s in sentences}
        if sentences:
            out.append({**ref, "sentences": sentences})
    return out


def _frame_rule(record: dict, vocab: Vocabulary) -> dict:
    """The category's frame rule, with the kind the record's frame actually has (an object that
    could not be separated from its background falls back to the whole image)."""
    rule = vocab.frame(record["category"])
    kind = record["frame"].get("kind")
    if kind is None:  # a record written before frames had kinds
        kind = "texture" if record["frame"]["source"] == "image" else "box"
    # several objects on a background (VisA's candles): places are the image's, not one candle's
    scene = kind == "texture" and vocab.object_count(record["category"]) != 1
    return {**rule, "kind": kind, "bbox": record["frame"].get("bbox"), "scene": scene}


def _place_rule(frame: dict) -> tuple:
    """The hashable part of a frame rule that place phrases depend on."""
    return (
        frame["kind"],
        tuple(frame["ends"]),
        frame["rim"],
        frame.get("edges", True),
        frame.get("scene", False),
    )


class _Writer:
    def __init__(
        self,
        record: dict,
        words: DefectWords,
        noun: str,
        frame: dict,
        rng: np.random.Generator,
        accept=None,
        vocab: Vocabulary | None = None,
    ):
        self.accept = accept
        category = record["category"]
        self.part = vocab.part(category, record["defect_type"]) if vocab else None
        self.colours = vocab.colours.get(category, frozenset()) if vocab else frozenset()
        # How many there are of what the type's noun names: a part in a wrong state or missing is
        # counted as the object has it, a whole object as the image shows it. More regions than
        # that (one tip annotated in two pieces) cannot be named by the type: anomaly words only.
        if words.role == "whole_object":
            most = vocab.object_count(category) if vocab else 1
        elif self.part is not None and words.role in ("part_state", "missing"):
            most = self.part.count
        else:
            most = None
        if vocab and _pluralizes_one_of(words, vocab.parts.get(category, {})):
            most = 1  # "cables of the wrong colour" where the object has one cable
        self.nameable = most is None or len(record["regions"]) <= most
        self.one_of = most == 1  # no counts, comparisons or plurals of it
        self.regions = record["regions"]
        self.by_id = {r["region_id"]: r for r in self.regions}
        self.type = record["defect_type"]
        self.words, self.noun, self.frame, self.rng = words, noun, frame, rng
        self.prep = words.prep or ("in" if record["frame"]["source"] == "image" else "on")
        self.on_noun = f"on one of the {noun}" if frame.get("scene") else f"{self.prep} the {noun}"
        self.phrase_words = set(tokenize(" ".join(p for pair in words.phrases for p in pair)))
        self.heads = _heads(words)
        # No place words when the name already says where ("scratch on the head") or names the
        # whole object ("upside-down nut"); no "on the NOUN" after a phrase that has its own.
        self.placed = words.placed or words.whole_object
        # Synonym k of this image is phrase order[k]: the two sentences of a ref differ, and the
        # first name is not always the vocabulary's first.
        self.order = [int(i) for i in rng.permutation(len(words.phrases))]

    # -- one sentence ---------------------------------------------------------
    def sentence(self, target, claims: Claims, det: str, *, places: tuple[str, ...] = (), **kw) -> str | None:
        """``_compose`` vetted by ``accept``. A rejected sentence is tried plain (no optional
        words); if that fails too, only another phrasing of its place (``places``) can help
        (up to RETRIES); if it passes, up to RETRIES other optional words are tried before
        settling for it."""
        text = self._compose(target, claims, det, **kw)
        if self.accept is None or text is None or self.accept(text, target):
            return text
        plain = {**kw, "decorate": ""}
        text = self._compose(target, claims, det, **plain)
        if text is None:
            return None
        if not self.accept(text, target):
            others = [p for p in places if p != kw.get("place")]
            if not kw.get("place") or not others:
                return None  # its own claim is what fails
            # "near the head of the screw" may fail where "close to the head" passes
            for i in self.rng.permutation(len(others))[:RETRIES]:
                text = self._compose(target, claims, det, **{**plain, "place": others[int(i)]})
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
        (and, with ``decorate="words+place"``, a place) are added at random. At most one
        size-like word: a size word and an elongated-shape word ("long", "thin") exclude each
        other; no place is added to a ref that picks by an extreme ("the leftmost").
        """
        plural = len(target) > 1
        slots = {field: None for field in ADJECTIVE_ORDER}
        if own is not None:
            slots[own[0]] = own[1]
        if decorate:
            for field, value, options in self.shared_attributes(target):
                if field == "size" and claims.extreme is not None:
                    continue  # "the lowest large crack" reads as the lowest of the large ones
                if (field == "size" and claims.shape == "elongated") or (
                    field == "shape" and value == "elongated" and claims.size is not None
                ):
                    continue
                if (
                    slots[field] is None
                    and getattr(claims, field) is None
                    and self.rng.random() < DECORATE_P / 2
                ):
                    slots[field] = _draw(self.rng, options)
                    claims = claims.with_(**{field: value})
            if (
                decorate == "words+place"
                and place is None
                and not tail
                and claims.extreme is None
                and not self.placed
                and not _has_place(claims)
            ):
                shared = [(c, t) for c, t in self.shared_places(target) if _no_echo(t, self.heads)]
                if shared and self.rng.random() < DECORATE_P / 2:
                    changes, texts = shared[0]
                    texts = _no_echo(texts, self.heads)
                    place, claims = _draw(self.rng, texts), claims.with_(**changes)
        if denotation(claims, self.regions, self.type) != set(target):
            return None
        singular, many = self.words.phrases[self.order[synonym % len(self.order)]]
        head = many if plural else singular
        words = [det, *(w for w in slots.values() if w), head]
        own_prep = bool(set(tokenize(head)) & PREPOSITIONS)  # "gap left by ..." takes no "on the cable"
        if place:
            words.append(place)
        elif not self.words.whole_object and not self.words.absent and not tail and self.rng.random() < 0.5:
            if self.words.placed:  # the phrase names a part: "the damaged tip of the screw"
                if not own_prep or " on the " in f" {head} ":  # "the scratch on the head of the screw"
                    words.append(f"of the {self.noun}")
            elif not own_prep:
                words.append(self.on_noun)
        if tail:
            words.append(tail)
        return " ".join(w for w in words if w)

    def shared_attributes(self, target) -> list[tuple[str, str, tuple[str, ...]]]:
        """(claim field, value, words) true of every target region, in adjective order, limited
        to the looks the defect's nature has (a gap has no colour, tone or shape)."""
        regions = [self.by_id[i] for i in target]
        looks = self.words.looks

        def common(get):
            values = {get(r) for r in regions}
            return values.pop() if len(values) == 1 else None

        out = []
        size = common(lambda r: r["size"])
        # "medium-sized" is no size a reader would single a defect out by: it is never said
        if size not in (None, "medium") and not self.words.sized and "size" in looks:
            out.append(("size", size, SIZE_WORDS[size]))
        shape = common(lambda r: r["shape"]["word"])
        if shape in SHAPE_WORDS and "shape" in looks:
            out.append(("shape", shape, SHAPE_WORDS[shape]))
        tone = common(lambda r: r["appearance"]["tone"])
        colour = common(lambda r: r["appearance"]["colour"])
        if colour and colour not in self.phrase_words and colour not in self.colours and "colour" in looks:
            out.append(("colour", colour, (colour,)))
        elif tone in TONE_WORDS and "tone" in looks and not self.phrase_words & set(TONE_WORDS[tone]):
            out.append(("tone", tone, TONE_WORDS[tone]))
        return out

    def shared_places(self, target) -> list[tuple[dict, tuple[str, ...]]]:
        """Place terms (claim changes, phrasings) true of every target region, most specific first."""
        per_region = [self.places(self.by_id[i]) for i in target]
        keys = set.intersection(*({_key(c) for c, _ in terms} for terms in per_region))
        return [(c, texts) for c, texts in per_region[0] if _key(c) in keys]

    def places(self, region: dict) -> list[tuple[dict, tuple[str, ...]]]:
        """``place_terms`` of a region that fit where the type's part can be."""
        return [
            (c, t)
            for c, t in place_terms(region, self.frame, self.noun)
            if _part_allows(self.part, c, self.frame)
        ]

    def term_keys(self, region_id: int) -> set:
        return {_key(c) for c, _ in self.places(self.by_id[region_id])}

    def base(self) -> Claims:
        return Claims(defect_type=self.type)

    def two(self, kind: str, target, build) -> dict | None:
        """A ref of up to two different sentences from ``build(synonym) -> (text, template)``."""
        sentences = [s for s in (build(0), build(1)) if s and s[0]]
        return _ref(kind, target, sentences)

    # -- kinds ------------------------------------------------------------------
    def top_up(self, refs: list[dict], everything: list[int]) -> None:
        """Add differently worded type sentences (place and true adjectives drawn again) to the
        type ref until the image has MIN_SENTENCES, for images whose defect leaves few kinds of
        ref (one region of a type that already names its place or size)."""
        count = sum(len(ref["sentences"]) for ref in refs)
        ref = next((r for r in refs if r["kind"] == "type"), None)
        if ref is None or count >= MIN_SENTENCES:
            return
        seen = {s["text"] for r in refs for s in r["sentences"]}
        dets = ["the", "all the"] if len(everything) > 1 else ["the"]
        for attempt in range(TOP_UP_TRIES):
            text = self.sentence(everything, self.base(), _draw(self.rng, dets), synonym=attempt)
            if text and text not in seen:
                seen.add(text)
                ref["sentences"].append(
                    {
                        "text": text,
                        "tokens": tokenize(text),
                        "origin": "template",
                        "template": "type/the-TYPE-more",
                    }
                )
                count += 1
                if count >= MIN_SENTENCES:
                    return

    def type_ref(self, target) -> dict | None:
        dets = ["the", "all the"] if len(target) > 1 else ["the"]
        return self.two("type", target, lambda k: (
            self.sentence(target, self.base(), _draw(self.rng, dets), synonym=k, decorate="words"),
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
        """Refs by place: every place term of the frame that picks out a set of regions."""
        if self.placed:
            return []
        groups: dict[tuple, list] = {}
        seen = set()
        for r in self.regions:
            for changes, texts in self.places(r):
                if _key(changes) in seen:
                    continue
                seen.add(_key(changes))
                picked = denotation(self.base().with_(**changes), self.regions, self.type)
                # every picked region must have this place of its own (a region that fills the
                # frame has none, although its centroid lies in the middle)
                if picked and all(_key(changes) in self.term_keys(i) for i in picked):
                    groups.setdefault(tuple(sorted(picked)), []).append((changes, texts))
        refs = []
        for target, terms in sorted(groups.items(), key=lambda item: len(item[0])):  # single regions first
            det = "the" if len(target) == 1 else f"the {NUMBERS.get(len(target), len(target))}"

            terms = [(c, _no_echo(t, self.heads)) for c, t in terms]
            terms = [(c, t) for c, t in terms if t]  # "the bent edge near the outer edge": no
            if not terms:
                continue

            def build(k, terms=terms, target=target, det=det):
                changes, texts = terms[k % len(terms)]
                place = _draw(self.rng, texts)
                text = self.sentence(
                    list(target), self.base().with_(**changes), det, synonym=k, place=place, places=texts
                )
                return text, f"location/{_template_kind(changes)}"

            refs.append(self.two("location", list(target), build))
        return [r for r in refs if r][:MAX_GROUP_REFS]

    def size_refs(self) -> list[dict]:
        if self.words.sized or "size" not in self.words.looks:
            return []  # "the small flipped nut", "the larger bent lead": a part's size is the part's
        if len(self.regions) == 1:
            if self.regions[0]["size"] == "medium":
                return []  # a logical anomaly's area is where the fault may be, not its size
            (r,) = self.regions
            claims = self.base().with_(size=r["size"])

            def build(k):
                word = _draw(self.rng, SIZE_WORDS[r["size"]])
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
            words = COMPARATIVE_SIZE_WORDS if len(self.regions) == 2 else EXTREME_WORDS
            word = _draw(self.rng, words[extreme])
            refs.append(
                _ref("size", target, [(self.sentence(target, claims, f"the {word}"), f"size/{extreme}")])
            )
        return refs

    def relative_refs(self) -> list[dict]:
        if len(self.regions) < 2 or self.one_of:
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
            word = _draw(self.rng, EXTREME_WORDS[extreme])
            far, other = (str(f) for f in self.rng.permutation(FARTHEST[extreme])[:2])
            first = (self.sentence(target, claims, f"the {word}"), f"relative/{extreme}")
            if len(self.regions) == 2:  # of two, "the crack nearest the bottom", not "the lowest crack"
                first = (self.sentence(target, claims, "the", tail=other), f"relative/TYPE-{extreme}")
            sentences = [
                first,
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
                    own = (field, _draw(self.rng, options))
                    text = self.sentence(target, claims, "the", own=own, synonym=len(sentences))
                    sentences.append((text, f"attribute/{field}"))
            if sentences:
                refs.append(_ref("attribute", target, sentences))
        return [r for r in refs if r][:MAX_GROUP_REFS]

    def denotes(self, claims: Claims, target) -> bool:
        return denotation(claims, self.regions, self.type) == set(target)


def place_terms(region: dict, frame: dict, noun: str) -> list[tuple[dict, tuple[str, ...]]]:
    """Place terms true of ``region`` in ``frame`` (a frame rule with its kind): (claim changes,
    phrasings), most specific first."""
    place = region_place(region)
    kind = frame["kind"]
    if frame.get("bbox") and _fills(region["bbox"], frame["bbox"]):
        return []  # a region that fills its frame (an empty bottle) is not anywhere on it
    if kind == "axis":
        end = place.get("end")
        if end == "middle":
            return [({"end": "middle"}, tuple(t.format(n=noun) for t in AXIS_PLACES["middle"]))]
        if end in ("start", "end"):
            name = frame["ends"][0 if end == "start" else 1]
            return [({"end": end}, tuple(t.format(e=name, n=noun) for t in AXIS_PLACES["end"]))]
        return []
    if kind == "round":
        ring, clock, rim = place.get("ring"), place.get("clock"), frame["rim"]
        terms = []
        if ring == "center":
            terms.append(({"ring": "center"}, ROUND_PLACES["center"]))
        if ring == "rim" and clock:
            terms.append(({"ring": "rim", "clock": clock}, ROUND_PLACES["rimclock"]))
        if clock:
            terms.append(({"clock": clock}, ROUND_PLACES["clock"]))
        if ring == "rim":
            terms.append(({"ring": "rim"}, ROUND_PLACES["rim"]))
        return [(c, _along_only_long(region, tuple(t.format(n=noun, c=clock, rim=rim) for t in texts)))
                for c, texts in terms]  # fmt: skip
    edges = place.get("edges") or [] if frame.get("edges", True) else []
    terms = []
    side = _edge_noun(kind, noun)
    if len(edges) == 2:
        corner = " ".join(edges)
        terms.append(({"edges": frozenset(edges)}, tuple(t.format(t=corner, n=side) for t in CORNER_PLACES)))
    for edge in edges:
        texts = _along_only_long(region, tuple(t.format(t=edge, n=side) for t in EDGE_PLACES))
        terms.append(({"edges": frozenset({edge})}, texts))
    for term in _terms_for(region["location"]):
        if not _clearly_in(term, region["rel_position"]):
            continue
        part = " ".join({"top": "upper", "bottom": "lower"}.get(w, w) for w in term.split())
        texts = PART_PLACES[_term_kind(term)]
        where = "image" if frame.get("scene") else noun
        terms.append(
            ({"cells": TERM_CELLS[term]}, tuple(t.format(t=term, part=part, n=where) for t in texts))
        )
    return terms


def _pluralizes_one_of(words: DefectWords, parts: dict[str, Part]) -> bool:
    """Do the type's plural forms make several of a part the object has one of?"""
    plurals = [f" {' '.join(tokenize(plural))} " for _, plural in words.phrases]
    return any(
        f" {name} " in form
        for part in parts.values()
        if part.count == 1
        for _, name in part.names
        for form in plurals
    )


def _edge_noun(kind: str, noun: str) -> str:
    """Whose edges and corners a frame's place words name: a texture shows no edge of its own,
    only the image's ("near the top edge of the image", never "of the leather")."""
    return "image" if kind == "texture" else noun


def _part_allows(part: Part | None, changes: dict, frame: dict) -> bool:
    """Can the type's part be at the place ``changes`` claims (a lead is never at the top)?"""
    if part is None or not part.where:
        return True
    claims = Claims(**{k: v for k, v in changes.items() if k in ("cells", "edges", "end", "ring", "clock")})
    return _wrong_place(claims, part.where, frame) is None


def _heads(words: DefectWords) -> frozenset:
    """The head nouns of a type's phrases ("edge" of "bent edge", "part" of "squeezed part")."""
    return frozenset(tokenize(form)[-1] for pair in words.phrases for form in pair if form)


@lru_cache(maxsize=4096)
def _no_echo(texts: tuple[str, ...], heads: frozenset) -> tuple[str, ...]:
    """Place phrasings that do not repeat the defect's head noun ("the bent edge near the outer
    edge of the metal nut", "the squeezed part in the upper part of the capsule"). Kept: the
    same few place tuples and heads come back for every image."""
    return tuple(t for t in texts if not heads & set(tokenize(t)))


def _along_only_long(region: dict, texts: tuple[str, ...]) -> tuple[str, ...]:
    """ "along the top edge" / "along the rim" only for an elongated region (a small blob lies near
    an edge, it does not run along it)."""
    if region["shape"]["word"] == "elongated":
        return texts
    return tuple(t for t in texts if not t.startswith("along ")) or texts


def _fills(box: list[int], frame: list[int]) -> bool:
    """Does a region's box span most of the frame's width and height (FILL_SHARE)?"""
    return box[2] >= FILL_SHARE * frame[2] and box[3] >= FILL_SHARE * frame[3]


def _clearly_in(term: str, rel: list[float]) -> bool:
    """Is the centroid inside the term's rows/columns of the 3x3 grid by PART_MARGIN (so that a
    region on a cell border is not called "upper" or "left")?"""
    rx, ry = rel
    lo, hi = 1 / 3 - PART_MARGIN, 2 / 3 + PART_MARGIN
    inside = {"top": ry <= lo, "bottom": ry >= hi, "left": rx <= lo, "right": rx >= hi,
              "center": lo + 2 * PART_MARGIN <= rx <= hi - 2 * PART_MARGIN
              and lo + 2 * PART_MARGIN <= ry <= hi - 2 * PART_MARGIN}  # fmt: skip
    return all(inside[word] for word in term.split())


def _key(changes: dict) -> tuple:
    return tuple(sorted((k, tuple(sorted(map(str, v))) if isinstance(v, frozenset) else v)
                        for k, v in changes.items()))  # fmt: skip


def _has_place(claims: Claims) -> bool:
    return any(v is not None for v in (claims.cells, claims.edges, claims.end, claims.ring, claims.clock))


def _template_kind(changes: dict) -> str:
    if "edges" in changes:
        return "corner" if len(changes["edges"]) == 2 else "edge"
    if "cells" in changes:
        return "part"
    if "end" in changes:
        return "axis"
    return "round"


def _no_target_refs(record: dict, vocab: Vocabulary, noun: str, frame: dict, rng) -> list[dict]:
    """Good image: the universal prompt, and two plausible defects of the category, placed at random."""
    refs = [_ref("no_target", [], [("anomaly", "no_target/anomaly")])]
    # "combined", folder names, "other": no kind a reader could look for
    types = [
        t
        for t in vocab.category_types(record["category"])
        if vocab.words(record["category"], t).role != "unnamed"
    ]
    sentences = [
        (_absent_phrase(vocab, record, t, noun, frame, rng), "no_target/type")
        for t in _pick(rng, types, NO_TARGET_TYPES)
    ]
    refs.append(_ref("no_target", [], sentences))
    return [ref for ref in refs if ref is not None]


def _draw(rng: np.random.Generator, options) -> str:
    """``str(rng.choice(options))`` of a sequence of strings: the same draw from the same stream
    (``choice`` takes one ``integers(len)``), without turning the options into an array each time."""
    return str(options[int(rng.integers(len(options)))])


def _pick(rng: np.random.Generator, options: list, k: int) -> list:
    """Up to ``k`` distinct options, in their original order."""
    if len(options) <= k:
        return list(options)
    return [options[i] for i in sorted(rng.choice(len(options), size=k, replace=False))]


def _other_type_ref(record: dict, vocab: Vocabulary, noun: str, frame: dict, rng) -> dict | None:
    """A phrase of another defect type of the category: it refers to nothing here."""
    category, own = record["category"], record["defect_type"]
    if vocab.words(category, own).role == "unnamed":
        return None  # a region of no named kind (combined, a folder's name) may be of any type
    own_words = set(vocab.words(category, own).phrases)
    alike = vocab.looks_like(category, own)  # "a deformed thread" next to a cut-off tip misleads
    types = [
        t
        for t in vocab.category_types(category)
        if t not in alike and vocab.words(category, t).role != "unnamed"
    ]
    types = [t for t in types if not own_words & set(vocab.words(category, t).phrases)]
    # ... and so does an absent type placed where the present defect is
    places = _free_places(frame, noun, record["regions"], own)  # each type drops its echoes below
    picked = _pick(rng, types, 2)
    sentences = [(_absent_phrase(vocab, record, t, noun, frame, rng, places), "other_type") for t in picked]
    return _ref("other_type", [], sentences)


def _free_places(frame: dict, noun: str, regions: list[dict], defect_type: str) -> tuple[str, ...]:
    """Place phrases of the frame that no region of the image lies in (read back with the
    parser's place reading, so "close to the tip" excludes a region at the tip)."""
    free = []
    for text, changes in _place_claims(_place_rule(frame), noun):
        claims = Claims(universal=True, **changes)
        if not any(matches(claims, r, defect_type) or _reaches(changes, r, frame) for r in regions):
            free.append(text)
    return tuple(free)


def _reaches(changes: dict, region: dict, frame: dict) -> bool:
    """Does any part of a region (its box, not only its centroid) lie in the cells or at the edges a
    place phrase names? A long thread that starts in the bottom right corner is there too."""
    if frame["kind"] not in ("box", "texture") or not frame.get("bbox"):
        return False
    fx, fy, fw, fh = frame["bbox"]
    x, y, w, h = region["bbox"]
    x0, x1 = (x - fx) / max(fw, 1), (x + w - fx) / max(fw, 1)
    y0, y1 = (y - fy) / max(fh, 1), (y + h - fy) / max(fh, 1)
    if changes.get("edges"):
        from mvtec_ref.regions.frame import EDGE_BAND

        near = {"top": y0 <= EDGE_BAND, "bottom": y1 >= 1 - EDGE_BAND, "left": x0 <= EDGE_BAND,
                "right": x1 >= 1 - EDGE_BAND}  # fmt: skip
        return all(near[side] for side in changes["edges"])
    if changes.get("cells"):

        def span(a, b):
            return range(min(max(int(a * 3), 0), 2), min(max(int(min(b, 0.999) * 3), 0), 2) + 1)

        touched = {(r, c) for r in span(y0, y1) for c in span(x0, x1)}
        return bool(touched & changes["cells"])
    return False


def _places_for(part: Part | None, frame: dict, noun: str, places: tuple[str, ...] | None) -> tuple[str, ...]:
    """``places`` (default: every place phrase of the frame) where the type's part can be."""
    if places is None:
        places = _all_places(_place_rule(frame), noun)
    if part is None or not part.where:
        return places
    claims = dict(_place_claims(_place_rule(frame), noun))
    return tuple(p for p in places if _part_allows(part, claims[p], frame))


@cache
def _place_claims(rule_key: tuple, noun: str) -> tuple[tuple[str, dict], ...]:
    """(place phrase, claim changes) of every place phrase of a frame."""
    from annotate.parse import _take_frame_places, _take_places

    kind, ends, rim, _, _ = rule_key
    out = []
    rule = {"kind": kind, "ends": ends, "rim": rim}
    for text in _all_places(rule_key, noun):
        tokens, changes = _take_frame_places(_without(tokenize(text), tokenize(noun)), rule)
        _, cells, _, edges = _take_places(tokens)
        out.append((text, {**changes, "cells": cells, "edges": edges}))
    return tuple(out)


def _without(tokens: list[str], run: list[str]) -> list[str]:
    n = len(run)
    out, i = [], 0
    while i < len(tokens):
        if run and tokens[i : i + n] == run:
            i += n
        else:
            out.append(tokens[i])
            i += 1
    return out


ABSENT_SIZE = ("", "small", "tiny", "large", "big")
ABSENT_ARTICLES = ("the", "a", "any")  # "a crack near ...", "any scratch on the head": nothing here
# Shapes only: a colour or tone is said only where the pixel judge measures it against the
# surround, and a defect that is not there has no pixels to measure.
ABSENT_LOOK = {"shape": ("thin", "long", "round")}


def _absent_phrase(
    vocab: Vocabulary, record: dict, defect_type: str, noun: str, frame: dict, rng, places=None
) -> str:
    """A plausible but absent defect of the category: size and shape words its role allows and a
    place of the frame where its part can be (one of ``places`` when given), at random."""
    words = vocab.words(record["category"], defect_type)
    head = words.phrases[int(rng.integers(len(words.phrases)))][0]
    size = "" if words.sized or "size" not in words.looks else _draw(rng, ABSENT_SIZE)
    looks = [""]
    for field in ABSENT_LOOK:
        if field in words.looks:
            looks += [w for w in ABSENT_LOOK[field] if not (size and w in ("thin", "long"))]
    look = _draw(rng, looks)
    article = _draw(rng, ABSENT_ARTICLES)
    first = next(w for w in (size, look, head) if w)
    if article == "a" and first[0] in "aeiou":
        article = "an"
    det = " ".join(w for w in (article, size, look) if w)
    if words.whole_object:
        return f"{det} {head}"
    if words.placed:  # the phrase names a part of the object: "a damaged tip of the screw"
        part = not set(tokenize(head)) & PREPOSITIONS or " on the " in f" {head} "
        return f"{det} {head}" + _draw(rng, ("", f" of the {noun}" if part else ""))
    # "an extra washer", "a missing nectarine" (logical: where it is is what is wrong), an absent
    # object: no place; a missing part of an object that is there has one ("a missing lead on the
    # left side of the transistor"), where the part can be
    if (
        words.role in ("logical", "unnamed")
        or words.absent
        or (words.role == "missing" and words.nature == "logical")
    ):
        own = set(tokenize(head)) & PREPOSITIONS or words.absent
        return f"{det} {head}" + _draw(rng, ("", "" if own else f" {words.prep or 'on'} the {noun}"))
    # a good image: any place phrase of the frame, each equally likely; only where its part can be
    places = _places_for(vocab.part(record["category"], defect_type), frame, noun, places)
    places = _no_echo(places, _heads(words))
    prep = words.prep or ("in" if frame["kind"] == "texture" else "on")
    return f"{det} {head} {_draw(rng, places)}" if places else f"{det} {head} {prep} the {noun}"


@cache
def _all_places(rule_key: tuple, noun: str) -> tuple[str, ...]:
    kind, ends, rim, edges, scene = rule_key
    if kind == "axis":
        out = [t.format(e=e, n=noun) for e in ends for t in AXIS_PLACES["end"]]
        return tuple(out + [t.format(n=noun) for t in AXIS_PLACES["middle"]])
    if kind == "round":
        out = [t.format(n=noun, rim=rim) for part in ("center", "rim") for t in ROUND_PLACES[part]]
        return tuple(out + [t.format(n=noun, c=c, rim=rim) for part in ("clock", "rimclock")
                            for t in ROUND_PLACES[part] for c in range(1, 13)])  # fmt: skip
    out = []
    side = _edge_noun(kind, noun)
    for term in TERM_CELLS:
        if not edges:
            pass  # a box that is no outline of its own has no edges or corners to name
        elif " " in term:
            out += [t.format(t=term, n=side) for t in CORNER_PLACES]
        elif term != "center":
            out += [t.format(t=term, n=side) for t in EDGE_PLACES]
        part = " ".join({"top": "upper", "bottom": "lower"}.get(w, w) for w in term.split())
        out += [
            t.format(t=term, part=part, n="image" if scene else noun) for t in PART_PLACES[_term_kind(term)]
        ]
    return tuple(out)


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
