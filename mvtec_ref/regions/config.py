"""How masks become regions: every threshold is here, with the reason for its default."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class RegionConfig:
    # MVTec masks are 0/255; the midpoint keeps anti-aliased or resized masks sensible.
    threshold: int = 127
    # 8-connectivity: a thin diagonal scratch drawn pixel by pixel stays one region.
    connectivity: int = 8
    # Components under this many pixels are "specks" (annotation brush artefacts) ...
    speck_area: int = 16
    # ... and join the nearest larger region within this distance (pixels); a speck with
    # no region that close stays a region of its own, so no annotated pixel is ever lost.
    speck_merge_distance: int = 16
    # Size buckets by area ratio (region pixels / image pixels): small < 1% <= medium < 5%
    # <= large. Most MVTec AD defects fall under 1%; stats also reports fixed cut-offs.
    size_cuts: tuple[float, float] = (0.01, 0.05)
    # Ring around a region for contrast, in pixels: wide enough to average the texture.
    ring_width: int = 8
    # Mean-gray difference (0-255 scale) beyond which a region is "darker"/"brighter" than its
    # ring: a step a reader sees at once ...
    tone_delta: float = 25.0
    # ... and at least this many standard deviations of the ring's own gray levels, so that a
    # region in a busy texture is toned only when it stands out of the texture's variation.
    tone_spread: float = 1.0
    # CIE76 colour difference (Lab) beyond which a region's colour counts as distinct.
    colour_delta_e: float = 12.0
    # Second-moment axis ratio at or above which a region is "elongated".
    elongated_ratio: float = 3.0
    # Objects: location words use the object's extent, found by separating it from the
    # uniform background; textures (and failed separations) use the whole image.
    object_frame: bool = True

    def as_record(self) -> dict:
        record = asdict(self)
        record["size_cuts"] = list(self.size_cuts)
        return record

    @classmethod
    def from_record(cls, record: dict) -> RegionConfig:
        """Undo ``as_record`` (a manifest's ``config.regions``); absent fields keep their default."""
        record = dict(record)
        if "size_cuts" in record:
            record["size_cuts"] = tuple(record["size_cuts"])
        return cls(**record)


SIZE_BUCKETS = ("small", "medium", "large")
