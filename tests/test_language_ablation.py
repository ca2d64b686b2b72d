"""``make ablation`` (benchmarks/language_ablation.py): its one test read scores what predict +
evaluate would, and its table holds each figure to its target."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

# The rows of the table that carry a target verdict.
TARGET_ROWS = (
    "part-scope mIoU",
    "type swap: empty answered empty",
    "location swap: empty answered empty",
    "universal-prompt mIoU",
    "probe sensitivity (moved)",
)


def small_config(**changes):
    from baselines.dqformer.config import PRESETS, DQFormerConfig

    small = dict(image_size=64, batch_size=2, sentences_per_image=2, epochs=1, workers=0, warmup_steps=2,
                 max_eval_sentences=12, prior_steps=50)  # fmt: skip
    known = {f.name for f in dataclasses.fields(DQFormerConfig)}
    return PRESETS["tiny"]().replace(**{k: v for k, v in {**small, **changes}.items() if k in known})


def flat(table: dict) -> dict:
    """Nested dict -> {"a/b/c": number}; None kept as NaN so approx compares it."""
    out = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out |= {f"{key}/{k}": v for k, v in flat(value).items()}
        else:
            out[key] = float("nan") if value is None else value
    return out


def test_score_run_matches_predict_then_evaluate(tmp_path, monkeypatch):
    from baselines.dqformer.predict import predict_dataset
    from baselines.dqformer.train import train
    from benchmarks.language_ablation import prepare, score_run
    from mvtec_ref.dataset import open_dataset
    from mvtec_ref.evaluate import NO_TARGET, evaluate_predictions, load_predictions, target_scope
    from mvtec_ref.probes import evaluate_probes
    from mvtec_ref.regions.mask import decode_rle

    dataset, probes = prepare(tmp_path, "carpet,hazelnut", 2)
    run = tmp_path / "run"
    train(small_config(), dataset, run, progress=False, test_split=None)
    got = score_run(run, dataset, probes)
    pred = tmp_path / "pred"
    predict_dataset(run, dataset, "test", pred, probes=probes)
    want_test = evaluate_predictions(dataset, pred, split="test")
    want_probes = evaluate_probes(dataset, probes, pred)
    for part, want in (("test", want_test), ("probes", want_probes)):
        keys = ("overall", "by") if part == "test" else ("overall", "by_edit")
        mine = flat({k: got[part][k] for k in keys})
        assert mine == pytest.approx(flat({k: want[k] for k in keys}), nan_ok=True), part
    assert got["probes"]["overall"]["probes"] > 0
    # the training curves' reading of the same result: swaps answered empty, per kind
    from baselines.dqformer.diagnose import swap_figures

    for kind, figures in swap_figures(got["probes"]).items():
        table = want_probes["by_edit"].get(kind, {})
        assert figures == {"answered_empty": table.get("empty_answered_empty"),
                           "probes": table.get("without_target", 0)}  # fmt: skip
    assert any(f["probes"] for f in swap_figures(got["probes"]).values())
    # part-scope sentences: the mask's IoU with every region, from the PNGs predict wrote
    ious = []
    get = load_predictions(pred)
    for record in open_dataset(dataset):
        if record["split"] != "test" or not record["regions"]:
            continue
        every = np.zeros((record["height"], record["width"]), bool)
        for region in record["regions"]:
            every |= decode_rle(region["segmentation"]) > 0
        for ref in record["refs"]:
            if target_scope(record, ref) == "part":
                for sentence in ref["sentences"]:
                    mask = get(sentence["sent_id"])
                    mask = np.zeros_like(every) if mask is None or mask is NO_TARGET else mask > 0
                    ious.append((mask & every).sum() / (mask | every).sum())
    assert got["part_scope"]["overall"]["sentences"] == len(ious) > 0
    assert got["part_scope"]["overall"]["iou_every_region"] == pytest.approx(np.mean(ious))
    # a model that segments every defect whatever the sentence says: IoU 1 with every region
    import baselines.dqformer.infer as infer

    def every_defect(model, data, device, **options):
        for mine in data.by_record:
            for i in mine:
                yield data.items[i], data.union(data.items[i].record)

    monkeypatch.setattr(infer, "iter_masks", every_defect)
    union_model = score_run(run, dataset, probes)
    assert union_model["part_scope"]["overall"]["iou_every_region"] == 1.0
    assert union_model["test"]["by"]["scope"]["part"]["mIoU"] < 0.9
    # val read with test's probes: refused in one line, not a KeyError on a test image's id
    with pytest.raises(SystemExit, match="probes of split 'test', not 'val'"):
        score_run(run, dataset, probes, split="val")


def scores(part, type_empty, location_empty, universal, moved):
    return {
        "test": {"overall": {"gIoU": 0.5, "N-acc": 1.0}, "by": {"scope": {"part": {"mIoU": part}},
                 "expression": {"universal": {"mIoU": universal}}, "kind": {}}},
        "probes": {"overall": {"sensitivity_moved": moved, "sensitivity_same": 0.0},
                   "by_edit": {"type": {"empty_answered_empty": type_empty},
                               "location": {"empty_answered_empty": location_empty}}},
    }  # fmt: skip


def test_table_gives_mean_and_spread_and_holds_each_target():
    from benchmarks.language_ablation import table

    ablation = {s: scores(0.30, 0.0, 0.0, 0.80, 0.05) for s in range(3)}
    good = {0: scores(0.44, 0.9, 0.7, 0.79, 0.4), 1: scores(0.46, 0.8, 0.6, 0.79, 0.5),
            2: scores(0.48, 0.85, 0.65, 0.79, 0.6)}  # fmt: skip
    rows = {
        line[:38].strip(): line for line in table({"lang": good, "nolang": ablation}, "tiny").splitlines()
    }
    assert "46.0% +- 2.0" in rows["part-scope mIoU"] and "30.0% +- 0.0" in rows["part-scope mIoU"]
    # "NOT met (" also holds " met (": a met row must hold the one and not the other
    assert all(" met (" in rows[name] and "NOT met" not in rows[name] for name in TARGET_ROWS)
    bad = {s: scores(0.40, 0.7, 0.5, 0.75, 0.08) for s in range(3)}
    rows = {line[:38].strip(): line for line in table({"lang": bad, "nolang": ablation}, "tiny").splitlines()}
    assert all("NOT met" in rows[name] for name in TARGET_ROWS)


def test_run_folder_tells_apart_what_changes_the_runs():
    from benchmarks.language_ablation import run_folder

    out = Path("abl")
    plain = run_folder(out, "abc", "tiny", "carpet,hazelnut", 24, None, [])
    assert plain == out / "abc-tiny-carpet+hazelnut-24"  # the name of folders written before
    longer = run_folder(out, "abc", "tiny", "carpet,hazelnut", 24, 48, [])
    assert longer == out / "abc-tiny-carpet+hazelnut-24-e48"
    one = run_folder(out, "abc", "tiny", "carpet,hazelnut", 24, 48, ["dim=32", "focus_fraction=0.2"])
    other = run_folder(out, "abc", "tiny", "carpet,hazelnut", 24, 48, ["focus_fraction=0.2", "dim=32"])
    assert one == other and one.name.startswith("abc-tiny-carpet+hazelnut-24-e48-set")
    assert run_folder(out, "abc", "tiny", "carpet,hazelnut", 24, 48, ["dim=16"]) != one
