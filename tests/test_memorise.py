"""The memorisation check (``make memorise``, issue 33): tiny memorises which defect each sentence
of 16 multi-region training images names, on the CPU in under 10 minutes. Slow: ``make memorise``
runs it; ``make test`` deselects it."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("torch")


@pytest.mark.slow
def test_tiny_memorises_part_scope_sentences_on_the_cpu_in_ten_minutes(tmp_path):
    from benchmarks.memorise import TARGETS, main

    start = time.perf_counter()
    result = main(["--out", str(tmp_path)])  # exits 1 (SystemExit) when a target is missed
    minutes = (time.perf_counter() - start) / 60
    assert result["part_scope"] > 100 and result["location_swaps"] > 20
    assert all(result[name] is not None for name in TARGETS)
    assert minutes < 10, f"{minutes:.1f} minutes"


def test_verdicts_hold_each_bound():
    from benchmarks.memorise import verdicts

    good = {"part_iou_target": 0.85, "gibberish_iou_target": 0.4, "anomaly_iou_target": 0.45,
            "location_swap_moved": 0.55}  # fmt: skip
    assert all(verdicts(good).values())
    plateau = {"part_iou_target": 0.43, "gibberish_iou_target": 0.42, "anomaly_iou_target": 0.43,
               "location_swap_moved": 0.003}  # fmt: skip
    assert verdicts(plateau) == {"part_iou_target": False, "gibberish_iou_target": True,
                                 "anomaly_iou_target": True, "location_swap_moved": False}  # fmt: skip
    assert not verdicts({**good, "gibberish_iou_target": 0.7})["gibberish_iou_target"]
    assert not verdicts({**good, "location_swap_moved": None})["location_swap_moved"]
