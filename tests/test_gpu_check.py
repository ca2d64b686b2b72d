"""``make gpu-check`` cannot rot: its CPU dry run (same steps, tiny sizes) runs in the suite."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")


def test_gpu_check_dry_run_measures_trains_and_scores_contrast_sets(tmp_path, capsys):
    from benchmarks.gpu_check import main

    result = main(["--dry-run", "--out", str(tmp_path)])
    written = json.loads((tmp_path / "gpu_check.json").read_text())
    assert written["dry_run"] is True and set(written["throughput"]) == {"lite", "paper"}
    for preset, backbone in (("lite", "efficientnet-lite0"), ("paper", "microsoft/swin-base")):
        row = result["throughput"][preset]
        assert row["model"].startswith(backbone)
        assert row["train_images_per_s"] > 0 and row["infer_images_per_s"] > 0
        assert row["train_peak_GiB"] is None  # no device memory on the CPU, and none claimed
    assert "(random init)" in result["throughput"]["paper"]["model"]
    run = result["lite_run"]
    assert run["epochs"] >= 1 and (tmp_path / "lite_run" / "test_metrics.json").is_file()
    assert run["test_overall"]["samples"] > 0 and run["contrast"]["overall"]["probes"] > 0
    out = capsys.readouterr().out
    assert "contrast sets (test split)" in out and "empty-ok" in out
    # step 4: issue 23's protocol at lite size (here one seed, one epoch, tiny sizes), its table
    table = result["protocol"]["table"]
    assert "lite vs its no-language ablation" in table and "part-scope mIoU" in table
    assert set(result["protocol"]["runs"]) == {"lang", "nolang"} and table in out
