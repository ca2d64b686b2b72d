"""Source adapters: each lists a dataset's images and masks as SourceImage records."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from mvtec_ref.sources.base import GOOD, ScanResult, SourceImage
from mvtec_ref.sources.mvtec_ad import scan_mvtec_ad

Scanner = Callable[[Path, "Iterable[str] | None"], ScanResult]

SOURCES: dict[str, Scanner] = {"mvtec_ad": scan_mvtec_ad}

__all__ = ["GOOD", "SOURCES", "ScanResult", "SourceImage", "scan_mvtec_ad"]
