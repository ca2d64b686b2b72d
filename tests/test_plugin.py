"""A third-party source registers through the entry-point group ``mvtec_ref.sources``: a tiny
plugin package is pip-installed into a folder on the test's PYTHONPATH and used by ``build``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np

PLUGIN = '''
"""tinyline: one category 'washer', files NAME.png + NAME.defect.png side by side."""
from pathlib import Path

from mvtec_ref.sources import ScanResult, Source, SourceImage

VOCAB = str(Path(__file__).with_name("tinyline_vocab.json"))


def scan(root, categories=None):
    result = ScanResult()
    for path in sorted(Path(root).glob("*.png")):
        if path.name.endswith(".defect.png"):
            continue
        mask = path.with_name(path.stem + ".defect.png")
        kind = "dent" if mask.exists() else "good"
        mask_name = mask.name if mask.exists() else None
        result.images.append(SourceImage("washer", kind, path.name, mask_name, "test"))
    return result.finish()


SOURCE = Source("tinyline", scan, VOCAB, "a plugin's line camera")
'''

VOCAB = {
    "source": "tinyline",
    "categories": {
        "washer": {
            "noun": "washer",
            "defects": {"dent": {"role": "on", "phrases": [["pressed-in dent", "pressed-in dents"]]}},
        }
    },
}

PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "mvtec-ref-tinyline"
version = "0.0.1"

[project.entry-points."mvtec_ref.sources"]
tinyline = "tinyline:SOURCE"

[tool.setuptools]
py-modules = ["tinyline"]
"""


def test_plugin_source_installs_and_builds(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (pkg / "tinyline.py").write_text(PLUGIN)
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(pkg),
        ],
        check=True,
    )
    # the vocabulary travels beside the module (py-modules ship no data; the plugin decides where)
    (site / "tinyline_vocab.json").write_text(json.dumps(VOCAB))
    assert list(site.glob("*.dist-info/entry_points.txt"))

    root = tmp_path / "line"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(root / f"{i}.png"), (rng.random((64, 64, 3)) * 50 + 100).astype(np.uint8))
        if i % 2:
            mask = np.zeros((64, 64), np.uint8)
            mask[10 + i : 20 + i, 30:40] = 255
            cv2.imwrite(str(root / f"{i}.defect.png"), mask)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(Path(__file__).resolve().parents[1])])}
    out = tmp_path / "dataset"
    done = _build_with_tinyline(root, out, env)
    assert done.returncode == 0, done.stderr
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert sorted(s["defect_type"] for s in samples) == ["dent"] * 3 + ["good"] * 3
    texts = [s["text"] for r in samples for ref in r["refs"] for s in ref["sentences"]]
    assert any("pressed-in dent" in t for t in texts)  # the plugin's own vocabulary was used
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "tinyline"
    assert manifest["config"]["refs"]["vocabulary"].endswith("tinyline_vocab.json")
    # without the plugin on the path, the name is unknown and the error lists what is known
    bare = _build_with_tinyline(root, tmp_path / "d2")
    assert bare.returncode != 0 and "unknown source 'tinyline'" in bare.stderr and "mvtec_ad" in bare.stderr


def _build_with_tinyline(root: Path, out: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """``mvtec-ref build --source tinyline`` in a fresh interpreter (entry points are read at start)."""
    command = [
        sys.executable,
        "-m",
        "mvtec_ref",
        "build",
        "--source",
        "tinyline",
        "--root",
        str(root),
        "--out",
        str(out),
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True)
