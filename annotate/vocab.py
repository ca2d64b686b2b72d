"""Vocabulary per source dataset: what each defect type's region IS, and its words, stored as data.

Per category: the object's noun, its parts (how many, where in the frame they can be), its own
colours and the facts the entry was checked against; per defect type: its role (``ROLES``: a
thing on the object, damage to a named part, a part in a wrong state, a missing part or object,
a state of the whole object, a logical fault, an unnamed anomaly), the part it concerns and its
phrases. The generator (``annotate.generate``), the parser-based checker (``annotate.roles``) and
the pixel judge read the same entry. A new dataset adds ``annotate/vocab/<source>.json``
(checked against ``schemas/vocabulary.schema.json`` and ``entry_problem``); no code changes. A
defect type missing from the file gets a readable phrase made from its name (``glue_strip`` ->
"glue strip"), is taken as ``unnamed`` and flagged ``fallback=True`` so that the build can
report it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from mvtec_ref.errors import MvtecRefError
from mvtec_ref.schema import schema_errors

# What each nature of defect may be described by (roles "on" and "part_damage": the region is a
# thing of its own). A gap (a broken-off piece) shows what is behind it, so it has no colour or tone
# and its size is the gap's; a deformation (a fold, a dent) is a play of light and shade, so it gets a
# size only; a strand (a thread, a hair) is long and thin by nature, so no size word, only its look.
NATURE_LOOKS = {
    "spot": ("size", "shape", "colour", "tone"),  # stains, contamination, glue, oil
    "line": ("size", "colour", "tone"),  # scratches, cracks, cuts
    "strand": ("shape", "colour", "tone"),  # threads, fibres: "a long thread", never "a large thread"
    "mark": ("size", "colour", "tone"),  # imprints, rough patches, damaged areas
    "hole": ("size", "shape"),  # holes and punctures: what shows through is not the defect's look
    "gap": ("size",),  # broken-off pieces
    "form": ("size",),  # folds, dents, squeezed spots
    "logical": (),
}


@dataclass(frozen=True)
class Role:
    """What a defect type's region IS relative to its object, and what words that allows."""

    name: str
    looks: tuple[str, ...] | None  # claims its words may make (None: those of the type's nature)
    part: str  # "required", "optional" or "none": does the role name a part of the object
    reason: str


# The one statement of the roles. The generator writes only these looks; annotate.roles (the
# parser-based checker's role rules) and the pixel judge refuse any other.
ROLES = {
    "on": Role("on", None, "none",
               "a thing on or in the object (spot, scratch, hole): size and look belong to the region"),
    "part_damage": Role("part_damage", None, "required",
                        "damage to a named part: the damage is the noun, the part is named and counted as "
                        "the object has it (one case, three leads); size words describe the damage, not "
                        "the part"),
    "part_state": Role("part_state", (), "required",
                       "a part in a wrong state (a bent lead): the part's noun, no size or look word (the "
                       "part's size and colour are the part's, not the fault's)"),
    "missing": Role("missing", (), "optional",
                    "a missing part or object: said as missing, never present, moved or 'on' it, with no "
                    "look or size (the region shows what is behind the gap)"),
    "whole_object": Role("whole_object", (), "none",
                         "a state of the whole object (flipped, misplaced, wrong type): the object's noun, "
                         "no size, look or place word"),
    "logical": Role("logical", (), "optional",
                    "a logical fault (a wrong count, mix, label or fill level): named and placed, never "
                    "given a look or a size"),
    "unnamed": Role("unnamed", ("size",), "none",
                    "an anomaly the source does not name (BTAD's and MVTec AD 2's 'defect', a binarized "
                    "mask's folder): anomaly words, a place and a size, never a look (it may be a gap)"),
}  # fmt: skip
FRAME_DEFAULT_ENDS = ("one end", "other end")
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "brown", "black", "white", "gray")


@dataclass(frozen=True)
class Part:
    """A named part of an object: ``count`` of them (None: many or varying), found only at the
    frame places ``where`` (empty: anywhere)."""

    noun: str
    plural: str
    count: int | None = None
    where: tuple[str, ...] = ()
    also: tuple[tuple[str, str], ...] = ()  # other names ("leg" for a lead)

    @property
    def names(self) -> tuple[tuple[str, str], ...]:
        """Every (singular, plural) name of the part, its main one first."""
        return ((self.noun, self.plural), *self.also)


@dataclass(frozen=True)
class DefectWords:
    phrases: tuple[tuple[str, str], ...]  # (singular, plural)
    sized: bool = False
    fallback: bool = False
    placed: bool = False  # the phrase says where on the object ("scratch on the head")
    nature: str = "mark"
    role: str = "on"
    part: str | None = None  # the part the type concerns (roles part_damage, part_state, missing)
    may_be_absent: bool = False  # the object or part it names may be gone from the image
    prep: str | None = None  # before the object's noun ("in the bottle"); None: the frame's

    @property
    def looks(self) -> tuple[str, ...]:
        own = ROLES[self.role].looks
        return NATURE_LOOKS[self.nature] if own is None else own

    @property
    def whole_object(self) -> bool:
        """The phrase names the object itself ("upside-down nut"): no "on the NOUN", no place."""
        return self.role == "whole_object"

    @property
    def absent(self) -> bool:
        """The region may show no object at all: a missing object, or one that may be gone."""
        return self.may_be_absent or (self.role == "missing" and self.part is None)


@dataclass
class Vocabulary:
    source: str
    nouns: dict[str, str]
    defects: dict[str, dict[str, DefectWords]]
    frames: dict[str, dict] = field(default_factory=dict)
    confusable: dict[str, tuple[frozenset, ...]] = field(default_factory=dict)
    parts: dict[str, dict[str, Part]] = field(default_factory=dict)
    colours: dict[str, frozenset] = field(default_factory=dict)
    facts: dict[str, str] = field(default_factory=dict)
    objects: dict[str, int | None] = field(default_factory=dict)

    def object_count(self, category: str) -> int | None:
        """How many objects an image of the category shows (None: many)."""
        return self.objects.get(category, 1)

    def noun(self, category: str) -> str:
        return self.nouns.get(category) or category.replace("_", " ")

    def frame(self, category: str, default_kind: str = "box") -> dict:
        """The category's frame rule ``{"kind", "ends", "rim", "edges"}`` (``default_kind`` when unset)."""
        frame = dict(self.frames.get(category) or {"kind": default_kind})
        frame.setdefault("ends", FRAME_DEFAULT_ENDS)
        frame.setdefault("rim", "edge")
        frame.setdefault("edges", True)
        return frame

    def words(self, category: str, defect_type: str) -> DefectWords:
        known = self.defects.get(category, {}).get(defect_type)
        if known is not None:
            return known
        name = defect_type.replace("_", " ").replace("-", " ").strip().lower() or "defect"
        return DefectWords(((name, _plural(name)),), fallback=True, role="unnamed")

    def part(self, category: str, defect_type: str) -> Part | None:
        """The part a defect type concerns, or None."""
        name = self.words(category, defect_type).part
        return self.parts.get(category, {}).get(name) if name else None

    def looks_like(self, category: str, defect_type: str) -> set[str]:
        """Types of the category that a reader could take for ``defect_type`` (its own
        included): the vocabulary's ``confusable`` groups that contain it."""
        out = {defect_type}
        for group in self.confusable.get(category, ()):
            if defect_type in group:
                out |= group
        return out

    def category_types(self, category: str) -> list[str]:
        return sorted(self.defects.get(category, {}))


def _plural(phrase: str) -> str:
    head, _, last = phrase.rpartition(" ")
    if last.endswith(("s", "x", "ch", "sh")):
        last += "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        last = last[:-1] + "ies"
    else:
        last += "s"
    return f"{head} {last}".strip()


@cache
def load_vocabulary(source: str) -> Vocabulary:
    """The vocabulary for ``source``: the file shipped in ``annotate/vocab/`` for a built-in name
    (empty, all fallbacks, if none ships), or a file path: a vocabulary JSON (a plugin's) or a
    folder source's description (``mvtec-ref.yaml``/``.json``), whose phrases are used."""
    if source.endswith((".json", ".yaml", ".yml")) and ("/" in source or "\\" in source):
        from pathlib import Path

        path = Path(source)
        if not path.is_file():
            raise MvtecRefError(f"{path}: vocabulary file not found")
        if path.name.startswith("mvtec-ref."):
            from mvtec_ref.sources.folder import description_vocabulary

            return _from_data(description_vocabulary(path), path)
    else:
        path = resources.files("annotate").joinpath("vocab", f"{source}.json")
        if not path.is_file():
            return Vocabulary(source, {}, {})
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise MvtecRefError(f"{path}: malformed JSON at line {error.lineno}: {error.msg}") from None
    return _from_data(data, path)


def _from_data(data: dict, path) -> Vocabulary:
    errors = schema_errors("vocabulary", data)
    if errors:
        raise MvtecRefError(f"{path}: {errors[0]}")
    categories = data["categories"]
    nouns = {c: v["noun"] for c, v in categories.items()}
    parts = {
        c: {
            name: Part(
                name, p["plural"], p["count"], tuple(p.get("where", ())), tuple(map(tuple, p.get("also", ())))
            )
            for name, p in v.get("parts", {}).items()
        }
        for c, v in categories.items()
    }
    defects = {
        c: {
            d: DefectWords(
                tuple((s, p) for s, p in w["phrases"]),
                sized=w.get("sized", False),
                placed=w.get("placed", False),
                nature=w.get("nature", "mark"),
                role=w["role"],
                part=w.get("part"),
                may_be_absent=w.get("may_be_absent", False),
                prep=w.get("prep"),
            )
            for d, w in v["defects"].items()
        }
        for c, v in categories.items()
    }
    frames = {c: v["frame"] for c, v in categories.items() if "frame" in v}
    confusable = {
        c: tuple(frozenset(g) for g in v["confusable"]) for c, v in categories.items() if "confusable" in v
    }
    colours = {c: frozenset(v.get("colours", ())) for c, v in categories.items()}
    facts = {c: v["facts"] for c, v in categories.items() if "facts" in v}
    objects = {c: v["objects"] for c, v in categories.items() if "objects" in v}
    vocab = Vocabulary(data["source"], nouns, defects, frames, confusable, parts, colours, facts, objects)
    problem = entry_problem(vocab)
    if problem:
        raise MvtecRefError(f"{path}: {problem}")
    return vocab


def entry_problem(vocab: Vocabulary) -> str | None:
    """What the schema cannot check: every part a type names is one of its category's parts; a part
    type's phrases name its part, and a part the object has once is never made plural by a damage
    phrase ("cracks in the cases": the damage is what is counted); part places are words of the
    category's frame."""
    for category, types in sorted(vocab.defects.items()):
        parts = vocab.parts.get(category, {})
        frame = vocab.frame(category)
        for name, part in sorted(parts.items()):
            bad = [w for w in part.where if w not in frame_places(frame)]
            if bad:
                kind = frame["kind"]
                return f"{category}: part {name!r} is placed at {bad[0]!r}, not a place of a {kind} frame"
        for defect_type, words in sorted(types.items()):
            where = f"{category}/{defect_type}"
            need = ROLES[words.role].part
            if words.part is None and need == "required":
                return f"{where}: role {words.role} needs a part"
            if words.part is not None and need == "none":
                return f"{where}: role {words.role} names no part (found {words.part!r})"
            if words.part is None:
                continue
            part = parts.get(words.part)
            if part is None:
                known = ", ".join(sorted(parts)) or "none"
                return f"{where}: part {words.part!r} is not one of {category}'s parts ({known})"
            for singular, plural in words.phrases:
                said = f" {singular} " + f" {plural} "
                if not any(f" {n} " in said for pair in part.names for n in pair):
                    return f"{where}: phrase {singular!r} does not name its part {part.noun!r}"
                many = [n for _, n in part.names if f" {n} " in f" {plural} "]
                if words.role == "part_damage" and part.count == 1 and many:
                    return f"{where}: {category} has one {part.noun}, but {plural!r} makes it several"
    return None


def frame_places(frame: dict) -> tuple[str, ...]:
    """The words a part's ``where`` may use in a frame of this kind."""
    if frame["kind"] == "axis":
        return (*frame["ends"], "middle")
    if frame["kind"] == "round":
        return ("center", "rim")
    from annotate.claims import TERM_CELLS

    return (*TERM_CELLS, "middle")  # "middle": the middle column, top to bottom (a zipper's teeth)
