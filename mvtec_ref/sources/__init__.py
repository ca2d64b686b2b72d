"""Source adapters: each lists a dataset's images and masks as SourceImage records.

Built-in sources are below; third-party packages add theirs through the entry-point group
``mvtec_ref.sources`` without touching this repository::

    # the plugin's pyproject.toml
    [project.entry-points."mvtec_ref.sources"]
    my_line = "my_plugin:SOURCE"     # a mvtec_ref.sources.Source, or a plain scan(root, categories)

A ``Source`` names the vocabulary its defect types are described with: a JSON file in the
format of ``annotate/vocab/*.json`` (``schemas/vocabulary.schema.json``), e.g. shipped in the
plugin and given as an absolute path.
"""

from __future__ import annotations

from functools import cache

from mvtec_ref.errors import DatasetError
from mvtec_ref.sources.base import GOOD, Scanner, ScanResult, Source, SourceImage
from mvtec_ref.sources.mvtec_ad import scan_mvtec_ad

ENTRY_POINT_GROUP = "mvtec_ref.sources"


def _builtin() -> dict[str, Source]:
    from mvtec_ref.sources import btad, folder, mvtec_ad2, mvtec_loco, real_iad, visa

    sources = [
        Source("mvtec_ad", scan_mvtec_ad, "mvtec_ad", "MVTec AD: CATEGORY/{train,test}/TYPE + ground_truth"),
        Source("visa", visa.scan_visa, "visa", "VisA: split_csv/1cls.csv or OBJECT/Data/{Images,Masks}"),
        Source(
            "mvtec_loco", mvtec_loco.scan_mvtec_loco, "mvtec_loco", "MVTec LOCO AD: a mask folder per image"
        ),
        Source(
            "mvtec_ad2", mvtec_ad2.scan_mvtec_ad2, "mvtec_ad2", "MVTec AD 2: test_public + lighting variants"
        ),
        Source("real_iad", real_iad.scan_real_iad, "real_iad", "Real-IAD: realiad_jsons lists"),
        Source("btad", btad.scan_btad, "btad", "BTAD: NN/{train,test}/{ok,ko} + ground_truth/ko"),
        Source("folder", folder.scan_folder, None, "any images/ + masks/ tree with mvtec-ref.yaml"),
    ]
    return {s.name: s for s in sources}


@cache
def available_sources() -> dict[str, Source]:
    """Built-in sources, then those registered by installed packages (a plugin may not replace
    a built-in name)."""
    from importlib.metadata import entry_points

    sources = _builtin()
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in sources:
            continue
        sources[ep.name] = _LazySource(ep)  # loaded when used, so one broken plugin breaks only itself
    return sources


class _LazySource:
    def __init__(self, ep) -> None:
        self.name, self._ep = ep.name, ep

    @property
    def resolved(self) -> Source:
        try:
            obj = self._ep.load()
        except Exception as error:  # a plugin's import error, reported with its name
            raise DatasetError(
                f"source plugin {self.name!r} ({self._ep.value}) failed to load: {error}"
            ) from error
        if isinstance(obj, Source):
            return obj
        if callable(obj):
            return Source(self.name, obj, getattr(obj, "vocabulary", None))
        raise DatasetError(f"source plugin {self.name!r} ({self._ep.value}) is neither a Source nor callable")


def get_source(name: str) -> Source:
    sources = available_sources()
    if name not in sources:
        raise DatasetError(f"unknown source {name!r}; known: {', '.join(sources)}")
    source = sources[name]
    return source.resolved if isinstance(source, _LazySource) else source


__all__ = [
    "GOOD",
    "ENTRY_POINT_GROUP",
    "ScanResult",
    "Scanner",
    "Source",
    "SourceImage",
    "available_sources",
    "get_source",
    "scan_mvtec_ad",
]
