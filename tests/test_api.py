"""The public API, driven exactly as the README shows it (the block is read from README.md)."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import mvtec_ref
from mvtec_ref.regions.mask import decode_rle

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- api-example[^>]*-->\n```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its API example"
    return match.group(1)


def test_readme_example_runs(synth_dataset, monkeypatch):
    import mvtec_ref.api as api

    reads = []
    real = api.read_image
    monkeypatch.setattr(api, "read_image", lambda *a: reads.append(a[0]) or real(*a))
    code = _readme_example().replace('"~/data/mvtec_ref"', repr(str(synth_dataset)))
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)

    ds, s, record = scope["ds"], scope["s"], scope["record"]
    lines = [json.loads(line) for line in (synth_dataset / "samples.jsonl").open()]
    assert list(ds.splits) == ["train", "val", "test"]
    assert len(ds.records) == len(lines) and len(ds.sentences) == sum(
        len(ref["sentences"]) for r in lines for ref in r["refs"]
    )
    first_test = next(r for r in lines if r["split"] == "test")
    ref = first_test["refs"][0]
    assert (s.sent_id, s.text, list(s.region_ids)) == (
        ref["sentences"][0]["sent_id"], ref["sentences"][0]["text"], ref["region_ids"]
    )  # fmt: skip
    want = np.zeros((first_test["height"], first_test["width"]), np.uint8)
    for g in first_test["regions"]:
        if g["region_id"] in ref["region_ids"]:
            want |= decode_rle(g["segmentation"])
    assert np.array_equal(scope["mask"], want) and scope["image"].shape == (*want.shape, 3)
    assert record.id == first_test["id"] and scope["everything"].sum() == sum(
        g["area"] for g in first_test["regions"]
    )
    images, sentences, masks = scope["images"], scope["sentences"], scope["masks"]
    assert tuple(images.shape) == (8, 3, 480, 480) and str(images.dtype) == "torch.float32"
    assert len(sentences) == 8 and all(isinstance(t, str) for t in sentences)
    assert tuple(masks.shape) == (8, 480, 480) and set(masks.unique().tolist()) <= {0, 1}
    assert float(images.min()) >= 0 and float(images.max()) <= 1
    assert len(reads) == 1 + 8  # s.image() and one batch of 8; load() and the masks read no image


def test_load_reads_no_pixels(synth_dataset, monkeypatch):
    import mvtec_ref.api as api

    def refuse(*args):
        raise AssertionError("an image was read")

    monkeypatch.setattr(api, "read_image", refuse)
    ds = mvtec_ref.load(synth_dataset)
    assert ds.sentences[0].mask().dtype == np.uint8  # masks come from the RLE, not from files
    with pytest.raises(AssertionError, match="an image was read"):
        ds.sentences[0].image()


def test_items_match_the_dataset(synth_dataset):
    ds = mvtec_ref.load(synth_dataset)
    items = ds["val"].torch()
    assert len(items) == len(ds["val"].sentences)
    for i in range(len(items)):
        image, text, mask = items[i]
        s = ds["val"].sentences[i]
        assert text == s.text and tuple(image.shape) == (3, s.record.height, s.record.width)
        assert np.array_equal(mask.numpy(), s.mask()) and (mask.sum() == 0) == s.no_target
    with pytest.raises(KeyError, match="no split 'dev'"):
        ds["dev"]


def test_public_names_only_and_no_heavy_imports():
    import subprocess

    code = "import sys, mvtec_ref; print(sorted(m for m in ('torch', 'cv2', 'datasets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert set(mvtec_ref.__all__) == {"load", "RefDataset", "Split", "Record", "Sentence", "TorchDataset",
                                      "__version__"}  # fmt: skip
    for name in mvtec_ref.__all__:
        assert getattr(mvtec_ref, name) is not None
    with pytest.raises(AttributeError):
        mvtec_ref.iter_samples  # noqa: B018


def test_missing_image_is_one_line(synth_dataset, tmp_path):
    from mvtec_ref.errors import DatasetError

    ds = mvtec_ref.load(synth_dataset)
    record = ds["test"].records[0]
    moved = type(record)(**{**record.__dict__, "image_path": tmp_path / "gone.png"})
    with pytest.raises(DatasetError, match="gone.png: image not found"):
        moved.image()


def test_load_reads_through_the_checked_loader(synth_dataset, tmp_path):
    """A hand-edited samples.jsonl is refused by ``load`` as by every command: file, line, field."""
    import shutil

    from mvtec_ref.errors import DatasetError

    broken = tmp_path / "broken"
    shutil.copytree(synth_dataset, broken)
    lines = (broken / "samples.jsonl").read_text().splitlines()
    record = json.loads(lines[1])
    record["width"] = -1
    lines[1] = json.dumps(record)
    (broken / "samples.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"samples.jsonl:2: "):
        mvtec_ref.load(broken)
