"""What every source adapter returns: a table of files, no pixels read; and shared helpers."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mvtec_ref.errors import SampleError

GOOD = "good"


@dataclass(frozen=True)
class SourceImage:
    """One image of a source dataset, as found on disk.

    Paths are POSIX strings relative to the source root. ``mask_path`` is None for
    defect-free images. ``source_split`` is the split the source itself assigns
    ("train", "test", "validation"...), kept apart from the benchmark split.
    """

    category: str
    defect_type: str
    image_path: str
    mask_path: str | None
    source_split: str
    kind: str = "object"  # "object" or "texture": picks the frame for location words
    # More mask files of the same image (MVTec LOCO: one file per defect); their union is the mask.
    extra_masks: tuple[str, ...] = ()
    # "binary": 0/255, values > threshold are defect (non-binary values reported);
    # "ids": every non-zero value is defect and names a class (VisA class ids, LOCO pixel values).
    mask_values: str = "binary"
    # For "ids" masks: (pixel value, defect name). When given, the record's defect type is the
    # name found in the mask ("combined" for several) and each region keeps its class name.
    value_names: tuple[tuple[int, str], ...] = ()
    # Facts the source states per image, kept in the record ("anomaly_kind": "logical", ...).
    attributes: tuple[tuple[str, str], ...] = ()

    @property
    def is_good(self) -> bool:
        return self.defect_type == GOOD

    @property
    def sample_id(self) -> str:
        """Readable unique id: the image path without its extension."""
        return self.image_path.rsplit(".", 1)[0]


@dataclass
class ScanResult:
    """Images found plus the problems met while listing them (files not read yet)."""

    images: list[SourceImage] = field(default_factory=list)
    problems: list[SampleError] = field(default_factory=list)
    # Vocabulary to describe these images (a source name or a file path); None = the source's own.
    vocabulary: str | None = None

    def finish(self) -> ScanResult:
        self.images.sort(key=lambda im: im.image_path)
        self.problems.sort(key=lambda p: p.path)
        return self


Scanner = Callable[[Path, "Iterable[str] | None"], ScanResult]


@dataclass(frozen=True)
class Source:
    """A registered source: its scanner, and the vocabulary its defect types are described with
    (a name of a file in ``annotate/vocab/`` or a path to a vocabulary JSON; None = fallbacks)."""

    name: str
    scan: Scanner
    vocabulary: str | None = None
    summary: str = ""


# Files that operating systems and notebooks drop into folders; never samples.
KNOWN_STRAYS = {".DS_Store", "Thumbs.db", "desktop.ini", ".ipynb_checkpoints"}


def dirs(folder: Path) -> list[Path]:
    """Sub-folders of ``folder`` (hidden ones skipped), sorted by name; a link loop is no folder."""
    with os.scandir(folder) as it:
        return sorted(
            (Path(e.path) for e in it if _stat_ok(e, "is_dir") and not e.name.startswith(".")),
            key=lambda p: p.name,
        )


def entries(root: Path, folder: Path, result: ScanResult) -> list[os.DirEntry]:
    """The entries of ``folder`` whose type can be read. A folder that cannot be listed, and a
    link that loops or points nowhere, are recorded as problems (their samples are skipped)."""
    from mvtec_ref.errors import UnreadablePathError

    try:
        with os.scandir(folder) as it:
            listed = list(it)
    except OSError as error:
        why = f"cannot list folder ({error.strerror}); its files are skipped"
        result.problems.append(UnreadablePathError(rel(root, Path(folder)), why))
        return []
    kept = []
    for entry in listed:
        try:
            entry.is_file()
            if entry.is_symlink():
                os.stat(entry.path)  # a loop or a dangling link raises here
        except OSError as error:
            why = f"cannot follow symbolic link ({error.strerror}); skipped"
            result.problems.append(UnreadablePathError(rel(root, Path(entry.path)), why))
            continue
        kept.append(entry)
    return kept


def _stat_ok(entry: os.DirEntry, test: str) -> bool:
    try:
        return getattr(entry, test)()
    except OSError:
        return False


def files(root: Path, folder: Path, suffixes: Iterable[str], result: ScanResult) -> list[tuple[str, Path]]:
    """(stem, path) of each file in ``folder`` with one of ``suffixes`` (case-insensitive);
    anything else is recorded as a stray."""
    from mvtec_ref.errors import StrayFileError

    allowed = {s.lower() for s in suffixes}
    found = []
    for entry in entries(root, folder, result):
        path = Path(entry.path)
        if entry.is_file() and path.suffix.lower() in allowed and not entry.name.startswith("."):
            found.append((path.stem, path))
        else:
            kinds = "/".join(sorted(allowed))
            what = "known system file" if entry.name in KNOWN_STRAYS else f"not a {kinds} file"
            result.problems.append(StrayFileError(rel(root, path), f"stray file ({what}); ignored"))
    return sorted(found)


def rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def check_root(root: Path, what: str) -> Path:
    from mvtec_ref.errors import SourceLayoutError

    root = Path(root)
    if not root.is_dir():
        raise SourceLayoutError(f"{root}: source root does not exist or is not a folder ({what})")
    return root


def pick_categories(root: Path, present: list[str], wanted: Iterable[str] | None, expected: str) -> list[str]:
    """The categories to scan: all present, or the wanted ones (each must be present)."""
    from mvtec_ref.errors import SourceLayoutError

    if not present:
        raise SourceLayoutError(f"{root}: no category found (expected {expected})")
    chosen = list(dict.fromkeys(wanted)) if wanted else present
    missing = [c for c in chosen if c not in present]
    if missing:
        raise SourceLayoutError(
            f"{root}: category {', '.join(missing)} not found; present: {', '.join(present)}"
        )
    return sorted(chosen)
