"""What every source adapter returns: a table of files, no pixels read."""

from __future__ import annotations

from dataclasses import dataclass, field

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
