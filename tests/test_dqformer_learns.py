"""It learns: the tiny preset on a synthetic dataset, on the CPU, within 10 minutes.

Targets (issue 5): val mIoU >= 0.5 on specific expressions and N-acc >= 0.8 on no-target
ones. Run with ``make learn`` (it prints the figures); deselected by ``make test``.
"""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("torch")

CATEGORIES = ("bottle", "carpet", "hazelnut", "metal_nut")
PER_TYPE = 12


@pytest.mark.slow
def test_tiny_preset_learns_on_cpu_in_ten_minutes(tmp_path):
    from baselines.dqformer.config import PRESETS
    from baselines.dqformer.train import train
    from mvtec_ref.build import BuildConfig, build_dataset
    from mvtec_ref.synth import write_synthetic_tree

    start = time.perf_counter()
    write_synthetic_tree(
        tmp_path / "tree", categories=CATEGORIES, per_type=PER_TYPE, workers=2, progress=False
    )
    build_dataset(tmp_path / "tree", tmp_path / "dataset", BuildConfig(), progress=False, workers=2)
    # 8 epochs, the preset's schedule when issue 5 set these targets: its 24 epochs now are
    # sized for reading the words (make ablation), half an hour per run, and so are its focus
    # epochs (the first 40% of the run on part-scope sentences): off, as in issue 5's recipe
    config = PRESETS["tiny"]().replace(epochs=8, focus_fraction=0.0)
    last = train(config, tmp_path / "dataset", tmp_path / "run", progress=True, test_split=None)
    minutes = (time.perf_counter() - start) / 60
    by = last["by"]["expression"]
    specific, no_target = by["specific"]["mIoU"], by["no-target"]["N-acc"]
    figures = {"minutes": round(minutes, 2), "epochs": last["epoch"], "val_specific_mIoU": specific,
               "val_no_target_N-acc": no_target, "val_universal_mIoU": by["universal"]["mIoU"]}  # fmt: skip
    print(json.dumps(figures))
    assert minutes < 10
    assert specific >= 0.5, f"val mIoU on specific expressions {specific:.3f} < 0.5"
    assert no_target >= 0.8, f"val N-acc on no-target expressions {no_target:.3f} < 0.8"
