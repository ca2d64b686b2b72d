"""``croissant.json`` of the hf export: MLCommons Croissant 1.1, written with ``mlcroissant``.

Why the export writes it and ``build`` does not: Croissant names every file with its SHA-256
and says how to read records out of it. A dataset folder holds only ``manifest.json`` and
``samples.jsonl``; its images stay in the source root, outside the folder, at an absolute
path, so its Croissant could not list them portably, and ``paraphrase`` or a review rewrite
``samples.jsonl`` after the build (a checksum beside it would go stale). Its records are
also nested (regions and refs inside an image line), which Croissant readers cannot list
one per region. The hf export is the form that is shared: every file it describes lies in
the same folder and was written by the same command (``--images embed`` carries the
pixels), its tables are flat, and the description is a pure function of those bytes, so a
rerun writes the same ``croissant.json``.

Record sets: ``sentences`` (config ``default``), ``images``, ``regions``, ``refs``; each reads
the Parquet files of its config (a FileSet per config; each file also a FileObject with its
SHA-256), with the split taken from the file name.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mvtec_ref.fileio import dumps_json, write_text_atomic

CONFORMS_TO = "http://mlcommons.org/croissant/1.1"
LICENCE_URLS = {
    "cc-by-nc-sa-4.0": "https://creativecommons.org/licenses/by-nc-sa/4.0/",
    "cc-by-sa-4.0": "https://creativecommons.org/licenses/by-sa/4.0/",
    "cc-by-4.0": "https://creativecommons.org/licenses/by/4.0/",
    "apache-2.0": "https://www.apache.org/licenses/LICENSE-2.0",
}
SPLIT_FROM_NAME = r"^(?:.*/)?([a-z]+)-\d{5}-of-\d{5}\.parquet$"
DESCRIPTIONS = {
    "default": "one record per sentence: image, target mask, sentence and ids",
    "images": "one record per image (no pixels; image_path is relative to the source root)",
    "regions": "one record per anomaly region (8-connected component of the ground truth), with COCO RLE",
    "refs": "one record per referring expression: its target regions (none for no-target) and sentences",
}
RECORD_SETS = {"default": "sentences", "images": "images", "regions": "regions", "refs": "refs"}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def croissant_metadata(stage: Path, *, manifest, root, configs, files, images) -> dict:
    """The JSON-LD dict (see the module docstring)."""
    import mlcroissant as mlc

    from mvtec_ref.export.card import RIAS_CITATION, source_terms
    from mvtec_ref.export.hf import HF_SPLITS

    terms = source_terms(manifest)
    distribution: list = []
    folders = {"default": "data"}
    for name in configs:
        folder = folders.get(name, name)
        for rel in (p for split_files in files[name].values() for p in split_files):
            distribution.append(
                mlc.FileObject(
                    id=rel,
                    name=rel,
                    content_url=rel,
                    content_size=f"{(stage / rel).stat().st_size} B",
                    encoding_formats=["application/x-parquet"],
                    sha256=sha256_file(stage / rel),
                )
            )
        distribution.append(
            mlc.FileSet(
                id=f"{folder}-files",
                name=f"{folder}-files",
                description=f"the Parquet shards of config {name!r}",
                encoding_formats=["application/x-parquet"],
                includes=[f"{folder}/*.parquet"],
            )
        )
    record_sets = []
    for name, features in configs.items():
        rs = RECORD_SETS[name]
        source_set = f"{folders.get(name, name)}-files"
        fields = [
            mlc.Field(
                id=f"{rs}/split",
                name="split",
                description=f"train, validation or test (our {', '.join(HF_SPLITS)})",
                data_types=[mlc.DataType.TEXT],
                source=mlc.Source(
                    file_set=source_set,
                    extract=mlc.Extract(file_property="filename"),
                    transforms=[mlc.Transform(regex=SPLIT_FROM_NAME)],
                ),
            )
        ]
        fields += [_field(mlc, rs, source_set, column, f, images) for column, f in features.items()]
        record_sets.append(mlc.RecordSet(id=rs, name=rs, description=DESCRIPTIONS[name], fields=fields))
    metadata = mlc.Metadata(
        name=f"MVTec-Ref ({manifest['name']})",
        description=(
            f"Referring industrial anomaly segmentation benchmark built by mvtec-ref "
            f"{manifest['toolkit_version']} from {terms.name} (source fingerprint "
            f"{manifest['source']['fingerprint']}). See README.md for how the expressions were made "
            "and checked."
        ),
        conforms_to=[CONFORMS_TO],
        license=[LICENCE_URLS.get(terms.licence, terms.statement)],
        cite_as=terms.citation,
        url="https://arxiv.org/abs/2602.03673",
        version=manifest["toolkit_version"],
        keywords=["referring segmentation", "anomaly detection", "industrial inspection", RIAS_CITATION],
        distribution=distribution,
        record_sets=record_sets,
    )
    return metadata.to_json()


def write_croissant(stage: Path, **kwargs) -> None:
    write_text_atomic(stage / "croissant.json", dumps_json(croissant_metadata(stage, **kwargs)))


def _field(mlc, rs: str, source_set: str, column: str, feature, images: str):
    """A Croissant field for one ``datasets`` feature (Image, ClassLabel, List, Value, RLE dict)."""
    from datasets import ClassLabel, Image, List, Value

    extract, transforms, description, is_array = mlc.Extract(column=column), [], None, None
    if isinstance(feature, Image):
        linked = column == "image" and images == "link"
        types = [mlc.DataType.URL if linked else mlc.DataType.IMAGE_OBJECT]
        transforms = [mlc.Transform(json_path="path" if linked else "bytes")]
        description = "PNG, 255 = target" if column == "mask" else "the source image"
    elif isinstance(feature, ClassLabel):
        types = [mlc.DataType.INTEGER]
        description = "class index into: " + ", ".join(f"{i} {n}" for i, n in enumerate(feature.names))
    elif isinstance(feature, List):
        types, is_array = [_data_type(mlc, feature.feature.dtype)], True
    elif isinstance(feature, dict):  # COCO RLE {size, counts}: the counts string, size = [height, width]
        types = [mlc.DataType.TEXT]
        transforms = [mlc.Transform(json_path="counts")]
        description = "COCO compressed RLE counts (size = [height, width])"
    else:
        assert isinstance(feature, Value)
        types = [_data_type(mlc, feature.dtype)]
    return mlc.Field(
        id=f"{rs}/{column}",
        name=column,
        description=description,
        data_types=types,
        is_array=is_array,
        array_shape="-1" if is_array else None,
        source=mlc.Source(file_set=source_set, extract=extract, transforms=transforms),
    )


def _data_type(mlc, dtype: str):
    if dtype.startswith(("int", "uint")):
        return mlc.DataType.INTEGER
    if dtype.startswith("float"):
        return mlc.DataType.FLOAT
    if dtype == "bool":
        return mlc.DataType.BOOL
    return mlc.DataType.TEXT
