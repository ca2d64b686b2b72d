"""Masks -> regions: connected components, descriptors and COCO RLE."""

from mvtec_ref.regions.config import SIZE_BUCKETS, RegionConfig
from mvtec_ref.regions.region import Region, regions_from_mask

__all__ = ["SIZE_BUCKETS", "Region", "RegionConfig", "regions_from_mask"]
