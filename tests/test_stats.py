import json

import numpy as np
from click.testing import CliRunner

from mvtec_ref.cli import main
from mvtec_ref.schema import schema_errors
from mvtec_ref.stats import summarize


def test_stats_figures_match_a_direct_count(synth_dataset):
    summary = summarize(synth_dataset)
    records = [json.loads(line) for line in (synth_dataset / "samples.jsonl").open()]
    ratios = np.array([g["area_ratio"] for r in records for g in r["regions"]])
    overall = summary["regions"]["category"]["ALL"]
    assert overall["regions"] == len(ratios) and overall["images"] == len(records)
    assert overall["area_ratio"]["p50"] == float(np.percentile(ratios, 50))
    assert overall["share_below"]["0.01"] == round(float((ratios < 0.01).mean()), 4)
    small = sum(g["size"] == "small" for r in records for g in r["regions"])
    assert overall["size_share"]["small"] == round(small / len(ratios), 4)
    splits = summary["regions"]["split"]
    assert sum(v["images"] for k, v in splits.items() if k != "ALL") == len(records)
    assert len(summary["regions"]["defect_type"]) == 73 + 15 + 1  # every type, 'good' per category, ALL
    sentences = sum(len(ref["sentences"]) for r in records for ref in r["refs"])
    assert summary["expressions"]["split"]["ALL"]["sentences"] == sentences
    assert summary["expressions"]["split"]["ALL"]["template_faithful"] == 1.0


def test_stats_cli_json_and_plots(synth_dataset, tmp_path):
    result = CliRunner().invoke(main, ["stats", str(synth_dataset), "--json", str(tmp_path / "s.json"),
                                       "--plots", str(tmp_path / "plots")])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "s.json").read_text())
    assert schema_errors("stats", data) == []
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir() if p.suffix == ".png")
    assert pngs == ["area_ratio_by_category.png", "expression_kinds.png", "expression_length.png",
                    "regions_per_image.png"]  # fmt: skip
    for name in pngs:
        data = (tmp_path / "plots" / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000
