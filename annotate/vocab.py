"""Vocabulary per source dataset: object nouns and defect-type phrases, stored as data.

A new dataset adds ``annotate/vocab/<source>.json`` (checked against
``schemas/vocabulary.schema.json``); no code changes. A defect type missing from the
file gets a readable phrase made from its name (``glue_strip`` -> "glue strip") and is
flagged ``fallback=True`` so that the build can report it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from mvtec_ref.errors import MvtecRefError
from mvtec_ref.schema import schema_errors

# What each nature of defect may be described by. A gap (a missing or broken-off part) shows
# nothing of its own, so it has no colour or tone and its size is the gap's; a deformation (bent,
# squeezed, misplaced) or a line (scratch, crack) has no shape word of its own beyond its name.
NATURE_LOOKS = {
    "spot": ("size", "shape", "colour", "tone"),  # stains, contamination, glue, oil
    "line": ("size", "colour", "tone"),  # scratches, cracks, cuts, threads, folds
    "mark": ("size", "colour", "tone"),  # imprints, rough patches, damaged areas
    "hole": ("size", "shape"),  # holes and punctures: what shows through is not the defect's look
    "gap": ("size",),  # missing and broken-off parts
    "form": ("size",),  # bent, squeezed, flipped, misplaced, swapped parts
    # A logical anomaly (a wrong count, mix or arrangement, a part judged against what it should
    # be such as a label or the juice's colour, or an anomaly whose kind the masks cannot tell) is
    # named and placed, never given a look or a size: the annotated area is where the fault could
    # be, not a thing with a look of its own. Absent ones are never placed.
    "logical": (),
}
FRAME_DEFAULT_ENDS = ("one end", "other end")


@dataclass(frozen=True)
class DefectWords:
    phrases: tuple[tuple[str, str], ...]  # (singular, plural)
    sized: bool = False
    whole_object: bool = False
    fallback: bool = False
    placed: bool = False  # the phrase says where on the object ("scratch on the head")
    nature: str = "mark"

    @property
    def looks(self) -> tuple[str, ...]:
        return NATURE_LOOKS[self.nature]


@dataclass
class Vocabulary:
    source: str
    nouns: dict[str, str]
    defects: dict[str, dict[str, DefectWords]]
    frames: dict[str, dict] = field(default_factory=dict)
    confusable: dict[str, tuple[frozenset, ...]] = field(default_factory=dict)

    def noun(self, category: str) -> str:
        return self.nouns.get(category) or category.replace("_", " ")

    def frame(self, category: str, default_kind: str = "box") -> dict:
        """The category's frame rule ``{"kind", "ends", "rim"}`` (``default_kind`` when unset)."""
        frame = dict(self.frames.get(category) or {"kind": default_kind})
        frame.setdefault("ends", FRAME_DEFAULT_ENDS)
        frame.setdefault("rim", "edge")
        return frame

    def words(self, category: str, defect_type: str) -> DefectWords:
        known = self.defects.get(category, {}).get(defect_type)
        if known is not None:
            return known
        name = defect_type.replace("_", " ").replace("-", " ").strip().lower() or "defect"
        return DefectWords(((name, _plural(name)),), fallback=True)

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
    except UnicodeDecodeError as error:
        raise MvtecRefError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    return _from_data(data, path)


def _from_data(data: dict, path) -> Vocabulary:
    errors = schema_errors("vocabulary", data)
    if errors:
        raise MvtecRefError(f"{path}: {errors[0]}")
    nouns = {c: v["noun"] for c, v in data["categories"].items()}
    defects = {
        c: {
            d: DefectWords(
                tuple((s, p) for s, p in w["phrases"]),
                sized=w.get("sized", False),
                whole_object=w.get("whole_object", False),
                placed=w.get("placed", False),
                nature=w.get("nature", "mark"),
            )
            for d, w in v["defects"].items()
        }
        for c, v in data["categories"].items()
    }
    frames = {c: v["frame"] for c, v in data["categories"].items() if "frame" in v}
    confusable = {
        c: tuple(frozenset(g) for g in v["confusable"])
        for c, v in data["categories"].items()
        if "confusable" in v
    }
    return Vocabulary(data["source"], nouns, defects, frames, confusable)
