import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import REAL_AD, needs_real_data

from mvtec_ref.build import BuildConfig, build_dataset
from mvtec_ref.dataset import open_dataset
from mvtec_ref.schema import schema_errors
from mvtec_ref.validate import validate_dataset


def _files(out):
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_synthetic_build_is_valid_and_complete(synth_tree, synth_dataset):
    manifest = open_dataset(synth_dataset).manifest
    assert schema_errors("manifest", manifest) == []
    counts = manifest["counts"]
    assert counts["images"] == 118 and counts["defect_images"] == 73 and counts["good_images"] == 45
    assert counts["regions"] >= 73 and len(counts["by_defect_type"]) == 73 + 15
    assert manifest["problems"] == []
    assert validate_dataset(synth_dataset, deep=True) == []
    records = [json.loads(line) for line in (synth_dataset / "samples.jsonl").read_text().splitlines()]
    for r in records:
        first = r["refs"][0]
        assert first["sentences"][0]["text"] == "anomaly"
        if r["label_index"]:
            assert first["kind"] == "universal"
            assert first["region_ids"] == [g["region_id"] for g in r["regions"]]
        else:
            assert r["regions"] == [] and {ref["kind"] for ref in r["refs"]} == {"no_target"}
            assert all(ref["region_ids"] == [] for ref in r["refs"])
    grays = {r["category"] for r in records if r["channels"] == 1}
    assert grays == {"grid", "screw", "zipper"}


def test_rebuild_is_byte_identical_and_workers_do_not_change_output(synth_tree, synth_dataset, tmp_path):
    again = tmp_path / "again"
    build_dataset(synth_tree, again, BuildConfig(), progress=False)
    assert _files(again) == _files(synth_dataset)
    parallel = tmp_path / "parallel"
    build_dataset(synth_tree, parallel, BuildConfig(), workers=2, progress=False)
    assert _files(parallel) == _files(synth_dataset)


def test_failed_build_leaves_previous_output_intact(tree_copy, tmp_path, monkeypatch):
    import mvtec_ref.build as build_module

    out = tmp_path / "out"
    build_dataset(tree_copy, out, BuildConfig(), progress=False)
    before = _files(out)
    real = build_module.write_text_atomic

    def write_then_fail(path, text):
        real(path, text)
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C while files were written

    monkeypatch.setattr(build_module, "write_text_atomic", write_then_fail)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(tree_copy, out, BuildConfig(seed=1), progress=False)
    assert _files(out) == before
    assert not list(tmp_path.glob(".out.staging-*"))


KILL_SCRIPT = """
import sys, time
import mvtec_ref.build as b
real = b.write_text_atomic
def slow(path, text):
    real(path, text)
    print("WROTE", path, flush=True)
    time.sleep(60)
b.write_text_atomic = slow
from mvtec_ref.cli import main
main(["build", "--root", sys.argv[1], "--out", sys.argv[2], "--seed", "7", "--quiet"])
"""


def test_killed_build_leaves_previous_output_intact(tree_copy, tmp_path):
    out = tmp_path / "out"
    build_dataset(tree_copy, out, BuildConfig(), progress=False)
    before = _files(out)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(tree_copy), str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline()  # blocks until the first file of the new build exists
        assert line.startswith("WROTE")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert _files(out) == before
    assert list(tmp_path.glob(".out.staging-*"))  # the half-written build is still lying there
    build_dataset(tree_copy, out, BuildConfig(), progress=False)  # ... and the next run sweeps it
    assert _files(out) == before and not list(tmp_path.glob(".out.staging-*"))


def test_refuses_to_replace_an_unrelated_folder(tree_copy, tmp_path):
    from mvtec_ref.errors import OutputError

    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("...")
    with pytest.raises(OutputError, match="is not empty, so mvtec-ref cannot tell its files from yours"):
        build_dataset(tree_copy, precious, BuildConfig(), progress=False)
    assert (precious / "chapter1.tex").read_text() == "..."


@needs_real_data
def test_real_sample_builds_and_validates(tmp_path):
    out = tmp_path / "real"
    result = build_dataset(REAL_AD, out, BuildConfig(categories=("grid", "hazelnut")), progress=False)
    assert result.problems == []
    assert validate_dataset(out, deep=True) == []
    records = {json.loads(line)["id"]: json.loads(line) for line in (out / "samples.jsonl").open()}
    assert len(records) == 26
    assert len(records["grid/test/bent/000"]["regions"]) == 3
    hazelnut = records["hazelnut/test/crack/000"]
    assert hazelnut["frame"]["source"] == "object" and hazelnut["channels"] == 3
    assert records["grid/test/bent/000"]["channels"] == 1


def test_build_does_not_import_heavy_packages(synth_tree, tmp_path):
    code = (
        "import sys\nfrom mvtec_ref.cli import main\n"
        f"try:\n    main(['build', '--root', {str(synth_tree)!r}, '--out', {str(tmp_path / 'o')!r},"
        " '--category', 'bottle', '--quiet'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('torch', 'transformers', 'openai', 'matplotlib', 'pandas')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out, out


@needs_real_data
def test_real_downscaled_sample_with_one_bit_masks(tmp_path):
    from conftest import REAL_AD_256

    out = tmp_path / "r256"
    result = build_dataset(REAL_AD_256, out, BuildConfig(), progress=False)
    assert result.problems == []  # 1-bit masks decode to clean 0/255, no warning
    assert result.manifest["counts"]["defect_images"] == 16
    assert validate_dataset(out, deep=True) == []
