"""The hf export's dataset card: ``README.md`` with the YAML header the Hub and ``datasets`` read.

The licence is the source's, never the toolkit's: the images and masks are the source's
work, and the regions and sentences are derived from them. ``SOURCES`` states it per source
kind (its Hub id agrees with ``download.ARCHIVES``' licence strings, which a test checks);
a tree drawn by ``mvtec-ref synth`` (its ``SYNTHETIC.json``) is the toolkit's own work, under
the toolkit's licence; any other source (``folder``, a plugin) is "other" with a line telling
the user to state its terms.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mvtec_ref import __version__
from mvtec_ref.fileio import dumps_json, write_text_atomic

TOOLKIT_LICENCE = "apache-2.0"  # pyproject.toml


@dataclass(frozen=True)
class SourceTerms:
    name: str
    licence: str  # a Hub licence id
    statement: str
    citation: str  # BibTeX or a plain reference


_MVTEC_AD_BIB = """@inproceedings{bergmann2019mvtec,
  title     = {{MVTec AD} -- A Comprehensive Real-World Dataset for Unsupervised Anomaly Detection},
  author    = {Bergmann, Paul and Fauser, Michael and Sattlegger, David and Steger, Carsten},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2019}
}
@article{bergmann2021mvtec,
  title   = {The {MVTec} Anomaly Detection Dataset: A Comprehensive Real-World Dataset for
             Unsupervised Anomaly Detection},
  author  = {Bergmann, Paul and Batzner, Kilian and Fauser, Michael and Sattlegger, David and
             Steger, Carsten},
  journal = {International Journal of Computer Vision},
  volume  = {129},
  number  = {4},
  pages   = {1038--1059},
  year    = {2021},
  doi     = {10.1007/s11263-020-01400-4}
}"""

SOURCES = {
    "mvtec_ad": SourceTerms(
        "MVTec AD", "cc-by-nc-sa-4.0",
        "CC BY-NC-SA 4.0, (c) 2019 MVTec Software GmbH; for commercial use, contact MVTec.", _MVTEC_AD_BIB,
    ),
    "mvtec_loco": SourceTerms(
        "MVTec LOCO AD", "cc-by-nc-sa-4.0", "CC BY-NC-SA 4.0, (c) 2022 MVTec Software GmbH.",
        "Bergmann et al., Beyond Dents and Scratches: Logical Constraints in Unsupervised Anomaly "
        "Detection and Localization, IJCV 2022.",
    ),
    "mvtec_ad2": SourceTerms(
        "MVTec AD 2", "cc-by-nc-sa-4.0", "CC BY-NC-SA 4.0, MVTec Software GmbH.",
        "Heckler-Kram et al., The MVTec AD 2 Dataset: Advanced Scenarios for Unsupervised Anomaly "
        "Detection, arXiv:2503.21622, 2025.",
    ),
    "visa": SourceTerms(
        "VisA", "cc-by-4.0", "CC BY 4.0 (the dataset's LICENSE-DATASET), Amazon.",
        "Zou et al., SPot-the-Difference Self-supervised Pre-training for Anomaly Detection and "
        "Segmentation, ECCV 2022.",
    ),
    "real_iad": SourceTerms(
        "Real-IAD", "cc-by-nc-sa-4.0", "CC BY-NC-SA 4.0, given on request by its authors.",
        "Wang et al., Real-IAD: A Real-World Multi-View Dataset for Benchmarking Versatile Industrial "
        "Anomaly Detection, CVPR 2024.",
    ),
    "btad": SourceTerms(
        "BTAD", "cc-by-sa-4.0", "CC BY-SA (the dataset's README; anomalib lists CC BY-NC-SA 4.0).",
        "Mishra et al., VT-ADL: A Vision Transformer Network for Image Anomaly Detection and "
        "Localization, ISIE 2021.",
    ),
}  # fmt: skip

RIAS_CITATION = "Referring Industrial Anomaly Segmentation, arXiv:2602.03673"


def source_terms(manifest: dict) -> SourceTerms:
    """The licence and citation of the images a dataset was built from."""
    root = Path(manifest["source"]["root"])
    try:
        synth = json.loads((root / "SYNTHETIC.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        synth = None
    if isinstance(synth, dict) and synth.get("generator") == "mvtec-ref synth":
        return SourceTerms(
            "a synthetic tree drawn by mvtec-ref synth (MVTec AD's layout, no MVTec pixels)",
            TOOLKIT_LICENCE,
            "Apache-2.0, like the toolkit that drew the pictures.",
            f"mvtec-ref {__version__} (synthetic data).",
        )
    kind = manifest["source"]["kind"]
    return SOURCES.get(kind) or SourceTerms(
        f"the {kind!r} source",
        "other",
        "Unknown to mvtec-ref: state the source images' licence here before sharing this dataset.",
        "Cite the source dataset.",
    )


def size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M")):  # fmt: skip
        if n < limit:
            return label
    return "1M<n<10M"


def write_card(stage: Path, *, manifest, root, records, configs, files, sizes, images) -> None:
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from huggingface_hub import DatasetCardData

    terms = source_terms(manifest)
    infos = []
    for name, features in configs.items():
        splits = SplitDict()
        for split, size in sizes[name].items():
            splits.add(SplitInfo(split, num_bytes=size["num_bytes"], num_examples=size["num_examples"]))
        info = DatasetInfo(
            features=features,
            splits=splits,
            download_size=sum(s["download_size"] for s in sizes[name].values()),
            dataset_size=sum(s["num_bytes"] for s in sizes[name].values()),
        )._to_yaml_dict()
        infos.append({"config_name": name, **info})
    folders = {"default": "data"}
    configs_yaml = [
        {
            "config_name": name,
            "data_files": [{"split": s, "path": f"{folders.get(name, name)}/{s}-*"} for s in files[name]],
            **({"default": True} if name == "default" else {}),
        }
        for name in configs
    ]
    rows = sum(s["num_examples"] for s in sizes["default"].values())
    card = DatasetCardData(
        pretty_name=f"MVTec-Ref ({manifest['name']}, built from {terms.name})",
        license=terms.licence,
        language=["en"],
        task_categories=["image-segmentation"],
        size_categories=[size_category(rows)],
        tags=["referring-segmentation", "referring-expressions", "anomaly-detection", "industrial-inspection",
              "mvtec-ref"],
        configs=configs_yaml,
        dataset_info=infos,
    )  # fmt: skip
    text = f"---\n{card.to_yaml()}\n---\n\n{_body(manifest, records, sizes, images, terms)}"
    write_text_atomic(stage / "README.md", text)


def _body(manifest, records, sizes, images, terms) -> str:
    from collections import Counter

    counts = manifest["counts"]
    origins = Counter(s["origin"] for r in records for ref in r["refs"] for s in ref["sentences"])
    kinds = Counter(ref["kind"] for r in records for ref in r["refs"])
    split_rows = ", ".join(f"{s} {v['num_examples']}" for s, v in sizes["default"].items())
    judge = manifest.get("pixel_judge", {})
    image_line = {
        "embed": "- `image`: the source file's bytes (not re-encoded): this folder is self-contained.",
        "link": "- `image`: only the absolute path of the source image on the machine that exported it "
        "(`--images link`): it decodes there, nowhere else. Export with `--images embed` to share.",
        "none": "- no `image` column (`--images none`): read `image_path` under the source root.",
    }[images]
    review = manifest.get("review")
    lines = [
        f"# MVTec-Ref: referring industrial anomaly segmentation ({manifest['name']})",
        "",
        f"Built by mvtec-ref {manifest['toolkit_version']} from {terms.name}: {counts['images']} images "
        f"({counts['defect_images']} with defects), {counts['regions']} anomaly regions, {counts['refs']} "
        f"referring expressions (refs) with {counts['sentences']} sentences. One row per sentence: "
        f"{split_rows}. The task (MVTec-Ref, {RIAS_CITATION}): given an image and a sentence, "
        "segment exactly the anomalous pixels the sentence refers to; a sentence that refers to "
        "nothing in the image (any prompt on a defect-free image) has an empty mask.",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        'ds = load_dataset("path/to/this/folder")           # config "default": one row per sentence',
        'row = ds["test"][0]',
        'row["image"], row["mask"], row["sentence"]         # PIL image, PIL mask (255 = target), text',
        'regions = load_dataset("path/to/this/folder", "regions")  # also "images" and "refs"',
        "```",
        "",
        "## Columns (config `default`)",
        "",
        image_line,
        "- `mask`: the target: an 8-bit PNG of the image's size, 255 on the union of the target "
        "regions, all 0 when `no_target`; `segmentation` is the same mask as COCO RLE "
        "(`pycocotools.mask.decode`).",
        f"- `sentence`, `tokens`, `origin` (template, llm or human), `kind` ({', '.join(sorted(kinds))}).",
        "- `region_ids` (within the image), `ann_ids` (config `regions`; the refcoco/grefcoco exports' "
        "annotation ids), `no_target`, `target_area` (pixels), `target_bbox` (`[x, y, w, h]`), "
        "`size` (the target's share of the image: small < "
        f"{manifest['config']['regions']['size_cuts'][0]:g} <= medium < "
        f"{manifest['config']['regions']['size_cuts'][1]:g} <= large; none when empty).",
        "- `category`, `defect_type` (`good` for defect-free images), `image_id`, `id` (the source path "
        "without extension), `image_path` (relative to the source root), `width`, `height`, `ref_id`, "
        "`sent_id` (the ids `mvtec-ref evaluate` scores predictions by).",
        "",
        "Splits are per image, never per sentence: `train`, `validation`, `test`. Configs `images`, "
        "`regions` and `refs` list the same data one row per image, region and ref (no pixels but "
        "the regions' RLE).",
        "",
        "## How the expressions were made and checked",
        "",
        "Regions are the 8-connected components of each ground-truth mask (rules below). Every ref "
        "names a target set of regions: all, some or none of the image's. Sentences come from "
        f"templates ({manifest['config']['refs']['templates_version']}) over a per-source vocabulary "
        f"({manifest['config']['refs']['vocabulary']}) of what each defect type is. A sentence ships "
        "only when two independent checks agree: a parser-based checker that its logic denotes "
        "exactly the target among the image's regions, and a pixel judge that re-measures each claim "
        "(tone, colour, size, shape, place) from the mask and image with stricter margins than "
        "generation uses"
        + (
            f" ({judge['sentences_checked']} template sentences checked, {judge['sentences_removed']} "
            f"removed, {judge.get('version', '')})."
            if judge
            else "."
        ),
        "",
        "Sentence origins: "
        + ", ".join(f"{k} {v}" for k, v in sorted(origins.items()))
        + ". "
        + ("LLM paraphrases are kept only when the checker agrees with them. " if origins.get("llm") else "")
        + (
            f"People reviewed sentences: {json.dumps(review, sort_keys=True)}."
            if review
            else "No human review was applied."
        ),
        "",
        "Refs per kind: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + ".",
        "",
        "## Build configuration and fingerprint",
        "",
        f"Source kind `{manifest['source']['kind']}`, {manifest['source']['files']} files, SHA-256 "
        f"fingerprint `{manifest['source']['fingerprint']}`; toolkit {manifest['toolkit_version']}, schema "
        f"{manifest['schema_version']}. Rebuilding from the same source files with this configuration "
        "gives the same bytes:",
        "",
        "```json",
        dumps_json(manifest["config"]).rstrip("\n"),
        "```",
        "",
        "## Licence",
        "",
        f"{terms.statement} The regions, masks and sentences are derived from the source's images and "
        "ground truth and are shared under the same terms. `croissant.json` beside this card describes "
        "the files with their SHA-256.",
        "",
        "## Citation",
        "",
        "```bibtex" if terms.citation.startswith("@") else "```text",
        terms.citation,
        "```",
        "",
        f"and the task: {RIAS_CITATION}.",
        "",
    ]
    return "\n".join(lines)
