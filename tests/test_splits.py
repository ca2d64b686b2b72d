import json
from collections import Counter, defaultdict

import pytest

from annotate import load_vocabulary
from annotate.parse import parse
from mvtec_ref.errors import MvtecRefError
from mvtec_ref.sources.mvtec_ad import MVTEC_AD
from mvtec_ref.splits import SplitConfig, assign_splits


def _records():
    """Records with MVTec AD's real per-type image counts (no pixels needed)."""
    records = []
    for spec in MVTEC_AD:
        entries = [("train", "good", spec.train_good), ("test", "good", spec.test_good), *(
            ("test", d, n) for d, n in spec.defects)]  # fmt: skip
        for source_split, defect, n in entries:
            for i in range(n):
                records.append({"id": f"{spec.name}/{source_split}/{defect}/{i:03d}", "category": spec.name,
                                "defect_type": defect, "source_split": source_split,
                                "label_index": int(defect != "good"), "split": None})  # fmt: skip
    return records


def _splits(records):
    return {r["id"]: r["split"] for r in records}


def test_standard_split_is_stratified_and_seeded():
    records = _records()
    assign_splits(records, SplitConfig(), seed=0)
    assert {r["split"] for r in records} == {"train", "val", "test"}
    assert all(r["split"] == "train" for r in records if r["source_split"] == "train")
    per_stratum = defaultdict(Counter)
    for r in records:
        if r["source_split"] == "test":
            per_stratum[r["category"], r["defect_type"]][r["split"]] += 1
    for key, counts in per_stratum.items():
        n = sum(counts.values())
        assert set(counts) == {"train", "val", "test"}, (key, counts)  # every stratum has >= 8 images
        assert abs(counts["test"] - 0.3 * n) <= 1.5 and abs(counts["train"] - 0.6 * n) <= 1.5
    again = _records()
    assign_splits(again, SplitConfig(), seed=0)
    other = _records()
    assign_splits(other, SplitConfig(), seed=1)
    assert _splits(again) == _splits(records) and _splits(other) != _splits(records)


def test_open_set_holds_types_out_of_train_and_val():
    records = _records()
    info = assign_splits(records, SplitConfig(protocol="open-set"), seed=3)
    held = info["heldout_types"]
    assert set(held) == {s.name for s in MVTEC_AD if len(s.defects) >= 2}
    for r in records:
        if r["defect_type"] in held.get(r["category"], ()):
            assert r["split"] == "test"
    seen_in_training = {(r["category"], r["defect_type"]) for r in records if r["split"] != "test"}
    assert not any((c, t) in seen_in_training for c, types in held.items() for t in types)


def test_cross_category_holds_whole_categories_out():
    records = _records()
    info = assign_splits(records, SplitConfig(protocol="cross-category", heldout_categories=3), seed=0)
    assert len(info["heldout_categories"]) == 3
    for r in records:
        if r["category"] in info["heldout_categories"]:
            assert r["split"] == "test"
    other = assign_splits(_records(), SplitConfig(protocol="cross-category"), seed=5)
    assert other["heldout_categories"] != info["heldout_categories"]


def test_bad_split_config():
    with pytest.raises(MvtecRefError, match="summing to 1"):
        assign_splits(_records(), SplitConfig(ratios=(0.5, 0.5, 0.5)), seed=0)


def test_open_set_build_keeps_heldout_names_out_of_training_text(synth_tree, tmp_path):
    from mvtec_ref.build import BuildConfig, build_dataset
    from mvtec_ref.validate import validate_dataset

    out = tmp_path / "os"
    config = BuildConfig(categories=("hazelnut", "pill"), splits=SplitConfig(protocol="open-set"))
    result = build_dataset(synth_tree, out, config, progress=False)
    held = result.manifest["config"]["splits"]["heldout_types"]
    vocab = load_vocabulary("mvtec_ad")
    for line in (out / "samples.jsonl").open():
        r = json.loads(line)
        if r["defect_type"] in held[r["category"]]:
            assert r["split"] == "test"
        if r["split"] != "test":
            for ref in r["refs"]:
                for s in ref["sentences"]:
                    assert parse(s["text"], r["category"], vocab).defect_type not in held[r["category"]]
    assert validate_dataset(out) == []


def test_bad_ratios_fail_before_any_image_is_read(synth_tree, tmp_path, monkeypatch):
    import mvtec_ref.build as build_module

    def must_not_run(*args):
        raise AssertionError("an image was processed before the config was checked")

    monkeypatch.setattr(build_module, "process_image", must_not_run)
    config = build_module.BuildConfig(splits=SplitConfig(ratios=(0.9, 0.9, 0.9)))
    with pytest.raises(MvtecRefError, match="summing to 1"):
        build_module.build_dataset(synth_tree, tmp_path / "o", config, progress=False)
