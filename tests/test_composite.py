"""Composite training images (baselines/dqformer/composite.py): seeded, true to their pixels,
every sentence passed by both judges, and off means the old units exactly."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def train_data(tmp_path_factory):
    from baselines.dqformer.backbone import load_tokenizer
    from baselines.dqformer.data import RefSegDataset
    from mvtec_ref.build import BuildConfig, build_dataset
    from mvtec_ref.synth import write_synthetic_tree

    base = tmp_path_factory.mktemp("composite")
    write_synthetic_tree(base / "tree", categories=("carpet", "hazelnut"), per_type=3, progress=False)
    build_dataset(base / "tree", base / "dataset", BuildConfig(), progress=False)
    return RefSegDataset(base / "dataset", "train", tokenizer=load_tokenizer("minilm"), image_size=64,
                         augment=True, seed=0)  # fmt: skip


def composites(data, epochs=(0, 1)):
    from baselines.dqformer.composite import Composites

    maker = Composites(data, share=1.0)
    made = [(e, r, maker.composite(e, r)) for e in epochs for r in range(len(data.records))]
    return [(e, r, c) for e, r, c in made if c is not None]


def test_same_seed_same_composites_and_epochs_differ(train_data):
    from baselines.dqformer.composite import Composites

    a, b = Composites(train_data, 1.0), Composites(train_data, 1.0)
    for r in range(0, len(train_data.records), 5):
        x, y = a.composite(0, r), b.composite(0, r)
        assert (x is None) == (y is None)
        if x is not None:
            assert x.image.tobytes() == y.image.tobytes() and x.record == y.record
    seen = [a.composite(e, 3) for e in range(4)]
    assert len({c.image.tobytes() for c in seen if c is not None}) > 1


def test_regions_and_pixels_agree_with_what_was_pasted(train_data):
    from baselines.dqformer.composite import BLEND_PAD
    from mvtec_ref.regions.mask import decode_rle

    made = composites(train_data)
    assert len(made) > 0.8 * 2 * len(train_data.records)  # nearly every image takes a donor
    for _, r, c in made:
        host = train_data.records[r]
        host_image = train_data.image(host)
        host_mask = train_data.union(r) > 0
        by_type: dict[str, np.ndarray] = {}
        for g in c.record["regions"]:
            mask = decode_rle(g["segmentation"]) > 0
            assert not (mask & host_mask).any() or not (mask & c.pasted).any()
            key = "host" if (mask & host_mask).any() else "pasted"
            by_type[key] = by_type.get(key, np.zeros_like(mask)) | mask
        if host["regions"]:
            assert np.array_equal(by_type["host"], host_mask)
            named = {
                g["defect_type"]
                for g in c.record["regions"]
                if (decode_rle(g["segmentation"]) & host_mask).any()
            }
            assert named == {host["defect_type"]}
        assert np.array_equal(by_type["pasted"], c.pasted)
        # pixels change only at the paste (mask + blending margin), and the pasted ones visibly
        import cv2

        near = cv2.distanceTransform((~c.pasted).astype(np.uint8), cv2.DIST_L2, 3) < BLEND_PAD + 1
        assert np.array_equal(c.image[~near], host_image[~near])
        diff = np.abs(c.image.astype(int) - host_image.astype(int)).max(axis=-1)
        assert diff[c.pasted].mean() > 10


def test_every_sentence_passes_both_judges_and_many_need_the_words(train_data):
    from annotate import check_sentence, load_vocabulary
    from annotate.faithful import OK
    from annotate.parse import parse
    from annotate.pixel_judge import judge_sentence, measure_record

    vocab = load_vocabulary("mvtec_ad")
    scopes = {"part": 0, "empty, type present": 0, "empty, type absent": 0}
    for _, _, c in composites(train_data, epochs=(0,)):
        record, image = c.record, c.image
        everything = {g["region_id"] for g in record["regions"]}
        types = {g["defect_type"] for g in record["regions"]}
        for ref in record["refs"]:
            target = ref["region_ids"]
            for s in ref["sentences"]:
                named = parse(s["text"], record["category"], vocab, tuple(types)).defect_type
                # judged among the regions of the type it names (all regions for a universal phrase)
                sub = record if named is None else {**record, "defect_type": named,
                       "regions": [g for g in record["regions"] if g["defect_type"] == named]}  # fmt: skip
                assert check_sentence(s["text"], target, sub, vocab).verdict == OK, (s["text"], target)
                if target:
                    assert judge_sentence(s["text"], target, sub, measure_record(sub, image), vocab) == []
            if target and set(target) != everything:
                scopes["part"] += 1
            elif not target:
                present = any(parse(s["text"], record["category"], vocab, tuple(types)).defect_type in types
                              for s in ref["sentences"])  # fmt: skip
                scopes["empty, type present" if present else "empty, type absent"] += 1
    assert all(n > 0 for n in scopes.values()), scopes


def test_units_follow_the_composite_and_share_zero_is_the_old_behaviour(train_data):
    import cv2

    from baselines.dqformer.data import TrainGroups

    off = TrainGroups(train_data, 2, composite_share=0.0)
    assert off.composites is None
    for j in range(len(off)):
        a, b = off[(0, j)], train_data.group(0, off.epoch_records(0)[j], 2)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    on = TrainGroups(train_data, 2, composite_share=1.0)
    changed = 0
    for j in range(len(on)):
        unit = on[(0, j)]
        view = on.composites.view(0, on.epoch_records(0)[j])
        changed += view is not None
        if view is not None:  # the targets lie on the composite's regions, at the input size
            regions = cv2.resize(view.union(0), (64, 64), interpolation=cv2.INTER_NEAREST).astype(bool)
            flipped = regions[:, ::-1]
            assert all(
                not (t.numpy().astype(bool) & ~regions).any() or not (t.numpy().astype(bool) & ~flipped).any()
                for t in unit["target"]
            )
    assert changed > 0.8 * len(on)
    half = TrainGroups(train_data, 2, composite_share=0.5)
    n = sum(half.composites.view(0, r) is not None for r in half.epoch_records(0))
    assert 0.2 * len(half) < n < 0.8 * len(half)


def test_no_language_composites_name_every_region_with_the_universal_prompt(train_data):
    import copy

    data = copy.copy(train_data)
    data.no_language = True
    for _, _, c in composites(data, epochs=(0,))[:10]:
        (ref,) = c.record["refs"]
        assert [s["text"] for s in ref["sentences"]] == ["anomaly"]
        assert ref["region_ids"] == [g["region_id"] for g in c.record["regions"]]
