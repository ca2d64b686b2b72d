"""The hf export read back by Hugging Face ``datasets`` and its croissant.json by ``mlcroissant``:
every row against samples.jsonl, masks pixel for pixel; same bytes on a rerun; the output rules."""

import hashlib
import io
import json
import re

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import REAL_AD, needs_real_data
from PIL import Image

from mvtec_ref.cli import main
from mvtec_ref.errors import DatasetError, OutputError
from mvtec_ref.export import export_dataset
from mvtec_ref.regions.mask import decode_rle

pytest.importorskip("datasets")
pytest.importorskip("mlcroissant")

HF_SPLIT = {"train": "train", "val": "validation", "test": "test"}


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """Nothing may reach the Hub; the datasets cache lives in the test's folder."""
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


@pytest.fixture(scope="module")
def hf_export(synth_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("hf") / "export"
    summary = export_dataset(synth_dataset, "hf", out, images="embed", progress=False)
    return out, summary


def _load(folder, tmp_path, config=None):
    from datasets import load_dataset

    return load_dataset(str(folder), config, cache_dir=str(tmp_path / "cache"))


def _expected(dataset):
    """sent_id -> (record, ref, sentence, target mask) from samples.jsonl."""
    out = {}
    for line in (dataset / "samples.jsonl").open():
        r = json.loads(line)
        masks = {g["region_id"]: decode_rle(g["segmentation"]) for g in r["regions"]}
        for ref in r["refs"]:
            m = np.zeros((r["height"], r["width"]), np.uint8)
            for i in ref["region_ids"]:
                m |= masks[i]
            for s in ref["sentences"]:
                out[s["sent_id"]] = (r, ref, s, m)
    return out


def test_every_row_matches_samples(hf_export, synth_dataset, tmp_path):
    out, summary = hf_export
    _compare_rows(out, synth_dataset, summary, tmp_path)


@needs_real_data
def test_real_mvtec_sample(tmp_path):
    from mvtec_ref.build import BuildConfig, build_dataset

    dataset = tmp_path / "real"
    build_dataset(REAL_AD, dataset, BuildConfig(), progress=False)
    out = tmp_path / "hf"
    summary = export_dataset(dataset, "hf", out, images="embed", progress=False)
    _compare_rows(out, dataset, summary, tmp_path)
    header = (out / "README.md").read_text().split("---")[1]
    assert "license: cc-by-nc-sa-4.0" in header  # MVTec AD's, not the toolkit's
    assert "@inproceedings{bergmann2019mvtec" in (out / "README.md").read_text()
    metadata = json.loads((out / "croissant.json").read_text())
    assert metadata["license"] == "https://creativecommons.org/licenses/by-nc-sa/4.0/"


def _compare_rows(out, dataset, summary, tmp_path):
    """Every row of the export against samples.jsonl; masks pixel for pixel, images as decoded."""
    from mvtec_ref.metrics import target_size

    ds = _load(out, tmp_path)  # no argument but the folder
    expected = _expected(dataset)
    manifest = json.loads((dataset / "manifest.json").read_text())
    root = manifest["source"]["root"]
    cuts = manifest["config"]["regions"]["size_cuts"]
    assert set(ds) == {"train", "validation", "test"}
    assert sum(len(ds[s]) for s in ds) == len(expected) == manifest["counts"]["sentences"]
    assert {s: len(ds[s]) for s in ds} == summary["rows"]
    features = ds["test"].features
    seen = set()
    for split in ds:
        for row in ds[split]:
            r, ref, s, mask = expected[row["sent_id"]]
            seen.add(row["sent_id"])
            assert HF_SPLIT[r["split"]] == split
            assert (row["sentence"], row["tokens"]) == (s["text"], s["tokens"])
            assert features["origin"].int2str(row["origin"]) == s["origin"]
            assert features["kind"].int2str(row["kind"]) == ref["kind"]
            assert (row["ref_id"], row["image_id"], row["id"]) == (ref["ref_id"], r["image_id"], r["id"])
            assert row["region_ids"] == ref["region_ids"] and row["no_target"] == (not ref["region_ids"])
            assert features["category"].int2str(row["category"]) == r["category"]
            assert features["defect_type"].int2str(row["defect_type"]) == r["defect_type"]
            size = features["size"].int2str(row["size"])
            assert size == target_size(mask.sum() / mask.size, cuts) and row["target_area"] == mask.sum()
            got = np.asarray(row["mask"])
            assert got.shape == mask.shape and set(np.unique(got)) <= {0, 255}
            assert np.array_equal(got > 0, mask.astype(bool)), row["sent_id"]
            assert np.array_equal(decode_rle(row["segmentation"]), mask)
            image = row["image"]
            assert image.size == (r["width"], r["height"]) == (row["width"], row["height"])
            with open(f"{root}/{r['image_path']}", "rb") as f:  # the source file's own bytes
                assert np.array_equal(np.asarray(image), np.asarray(Image.open(io.BytesIO(f.read()))))
    assert seen == set(expected)


def test_tables_and_card(hf_export, synth_dataset, tmp_path):
    out, _ = hf_export
    records = [json.loads(line) for line in (synth_dataset / "samples.jsonl").open()]
    regions = _load(out, tmp_path, "regions")
    by_ann = {g["ann_id"]: g for r in records for g in r["regions"]}
    assert sum(len(regions[s]) for s in regions) == len(by_ann)
    for row in regions["test"]:
        assert row["segmentation"] == by_ann[row["ann_id"]]["segmentation"]
    refs = _load(out, tmp_path, "refs")
    assert sum(len(refs[s]) for s in refs) == sum(len(r["refs"]) for r in records)
    images = _load(out, tmp_path, "images")
    assert sorted(i for s in images for i in images[s]["image_id"]) == sorted(r["image_id"] for r in records)
    card = (out / "README.md").read_text()
    header = card.split("---")[1]
    assert "license: apache-2.0" in header  # a synthetic tree: the toolkit's own pictures
    assert "task_categories:\n- image-segmentation" in header and "size_categories:" in header
    manifest = json.loads((synth_dataset / "manifest.json").read_text())
    assert manifest["source"]["fingerprint"] in card and '"templates_version"' in card
    assert "pixel judge" in card and "```bibtex" not in card  # MVTec's BibTeX only for MVTec pixels


def test_licence_follows_the_source(tmp_path):
    from mvtec_ref.download import ARCHIVES
    from mvtec_ref.export.card import SOURCES, source_terms

    manifest = {"source": {"root": str(tmp_path), "kind": "mvtec_ad"}}
    assert source_terms(manifest).licence == "cc-by-nc-sa-4.0"
    assert source_terms({"source": {"root": str(tmp_path), "kind": "folder"}}).licence == "other"
    for kind, archive in ARCHIVES.items():  # one statement of each licence, two places agree
        words = SOURCES[kind].licence.upper().replace("-", " ")
        assert archive.licence.replace("-", " ").startswith(words.rsplit(" 4.0", 1)[0]), kind


def test_rerun_is_byte_identical(hf_export, synth_dataset, tmp_path):
    first_out, _ = hf_export
    out = tmp_path / "again"
    export_dataset(synth_dataset, "hf", out, images="embed", progress=False)
    first = {p.relative_to(first_out): p.read_bytes() for p in sorted(first_out.rglob("*")) if p.is_file()}
    second = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert first.keys() == second.keys() and any(p.suffix == ".parquet" for p in first)
    assert [p for p in first if first[p] != second[p]] == []
    export_dataset(synth_dataset, "hf", out, images="embed", progress=False)  # replaces its own output
    assert {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == first


def test_link_and_none(synth_dataset, tmp_path):
    manifest = json.loads((synth_dataset / "manifest.json").read_text())
    linked = tmp_path / "linked"
    export_dataset(synth_dataset, "hf", linked, progress=False)  # link: the default
    image = _load(linked, tmp_path)["validation"][0]["image"]
    assert image.filename.startswith(manifest["source"]["root"])  # decoded from the source file
    bare = tmp_path / "bare"
    export_dataset(synth_dataset, "hf", bare, images="none", progress=False)
    ds = _load(bare, tmp_path)
    assert "image" not in ds["test"].column_names and "mask" in ds["test"].column_names
    assert sum(p.stat().st_size for p in bare.rglob("*.parquet")) < sum(
        p.stat().st_size for p in linked.rglob("*.parquet")
    )


def test_output_rules(synth_dataset, tmp_path):
    out = tmp_path / "hf"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty"):
        export_dataset(synth_dataset, "hf", out, progress=False)
    assert (out / "notes.txt").read_text() == "mine"
    with pytest.raises(DatasetError, match="does not apply to the hf export"):
        export_dataset(synth_dataset, "hf", tmp_path / "x", images="copy")
    args = ["export", str(synth_dataset), "--format", "coco", "--images", "embed"]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "c")])
    assert result.exit_code == 1 and "does not apply to the coco export" in result.output
    assert not (tmp_path / "c").exists() and not (tmp_path / "x").exists()
    done = tmp_path / "done"
    export_dataset(synth_dataset, "hf", done, images="none", progress=False)
    owned = json.loads((done / ".mvtec-ref-owned.json").read_text())["entries"]
    assert "croissant.json" in owned and "data/test-00000-of-00001.parquet" in owned
    (done / "data" / "extra.parquet").write_bytes(b"yours")
    with pytest.raises(OutputError, match="did not write"):
        export_dataset(synth_dataset, "hf", done, images="none", progress=False)
    assert (done / "data" / "extra.parquet").read_bytes() == b"yours"


def test_croissant_validates_and_loads(hf_export, synth_dataset):
    import mlcroissant as mlc

    out, _ = hf_export
    metadata = json.loads((out / "croissant.json").read_text())
    assert metadata["conformsTo"] == "http://mlcommons.org/croissant/1.1"
    files = [d for d in metadata["distribution"] if d["@type"] == "cr:FileObject"]
    assert files and all(
        hashlib.sha256((out / d["contentUrl"]).read_bytes()).hexdigest() == d["sha256"] for d in files
    )
    ds = mlc.Dataset(jsonld=out / "croissant.json")  # raises ValidationError on any error
    expected = _expected(synth_dataset)
    sentences = list(ds.records("sentences"))
    assert len(sentences) == len(expected)
    for rec in sentences:
        r, ref, s, mask = expected[rec["sentences/sent_id"]]
        assert rec["sentences/sentence"].decode() == s["text"]
        assert rec["sentences/split"].decode() == HF_SPLIT[r["split"]]
        assert list(rec["sentences/region_ids"]) == ref["region_ids"]
        assert np.array_equal(np.asarray(rec["sentences/mask"]) > 0, mask.astype(bool))
    records = [json.loads(line) for line in (synth_dataset / "samples.jsonl").open()]
    assert len(list(ds.records("images"))) == len(records)
    assert len(list(ds.records("regions"))) == sum(len(r["regions"]) for r in records)
    assert len(list(ds.records("refs"))) == sum(len(r["refs"]) for r in records)


def test_the_summary_line_is_words(synth_dataset, tmp_path):
    """ "3 shardss" once: every count in the line agrees with its noun, rows add up over the splits."""
    args = ["export", str(synth_dataset), "--format", "hf", "--images", "none", "--quiet"]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "hf")])
    assert result.exit_code == 0, result.output
    line = result.output.strip().splitlines()[-1]
    rows = json.loads((tmp_path / "hf" / "EXPORT.json").read_text())["rows"]
    assert f"{sum(rows.values()):,} rows (" in line and "shardss" not in line
    assert re.search(r"\b1 shard\b|\b[0-9,]+ shards\b", line), line
