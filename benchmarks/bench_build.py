"""Build speed against its practical floor, on a cached ``synth --scale full`` tree.

Prints: build wall time, images/s and peak RSS for --workers 1 and 2, and the ratio of
build time to the time a plain loop takes just to decode every image and mask the build
reads (cv2.imread, one process). Targets: <= 1.5x the floor with 1 worker, below the
floor with 2. Run with ``make bench``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

CACHE = Path(os.environ.get("MVTEC_REF_BENCH_CACHE", ".cache/bench"))

CHILD = """
import json, resource, sys, time
from mvtec_ref.build import BuildConfig, build_dataset
start = time.perf_counter()
config = BuildConfig(expressions=sys.argv[4] == "1")
result = build_dataset(sys.argv[1], sys.argv[2], config, workers=int(sys.argv[3]), progress=False)
wall = time.perf_counter() - start
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"wall": wall, "rss_main_kb": own, "rss_worker_kb": kids,
                  "images": result.manifest["counts"]["images"],
                  "sentences": result.manifest["counts"]["sentences"],
                  "regions": result.manifest["counts"]["regions"]}))
"""


def ensure_tree(seed: int = 0) -> Path:
    from mvtec_ref.synth import write_synthetic_tree
    from mvtec_ref.synth.tree import SYNTH_VERSION, read_marker

    root = CACHE / f"mvtec_full_seed{seed}_v{SYNTH_VERSION}"
    if read_marker(root) is None:
        print(f"drawing the full-scale synthetic tree once into {root} ...", flush=True)
        start = time.perf_counter()
        write_synthetic_tree(root, scale="full", seed=seed, workers=os.cpu_count() or 1)
        print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
    return root


def decode_floor(root: Path) -> tuple[float, int]:
    import cv2

    from mvtec_ref.sources import scan_mvtec_ad

    cv2.setNumThreads(1)
    scan = scan_mvtec_ad(root)
    paths = [root / p for im in scan.images for p in (im.image_path, im.mask_path) if p]
    start = time.perf_counter()
    for path in paths:
        if cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is None:
            raise RuntimeError(f"{path}: cannot decode")
    return time.perf_counter() - start, len(paths)


def main() -> None:
    root = ensure_tree()
    size_gb = sum(p.stat().st_size for p in root.rglob("*.png")) / 1e9
    decode_floor(root)  # warm the page cache so both sides read from memory
    floor, files = decode_floor(root)
    print(f"tree: {root} ({files} files, {size_gb:.2f} GB)")
    print(f"decode floor (cv2.imread of every image and mask, 1 process): {floor:.1f} s")
    out = CACHE / "dataset"
    walls = {}
    for workers, expressions in ((1, False), (1, True), (2, True)):
        args = [str(root), str(out), str(workers), str(int(expressions))]
        run = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=True)
        r = json.loads(run.stdout.strip().splitlines()[-1])
        walls[workers, expressions] = r["wall"]
        rss = f"peak RSS {r['rss_main_kb'] / 1024:.0f} MB main"
        if workers > 1:
            rss += f", {r['rss_worker_kb'] / 1024:.0f} MB largest worker"
        what = "all expressions" if expressions else "universal prompt only"
        print(f"build --workers {workers} ({what}): {r['wall']:.1f} s, "
              f"{r['images'] / r['wall']:.1f} images/s, {rss}, {r['wall'] / floor:.2f}x the decode floor "
              f"({r['images']} images, {r['regions']} regions, {r['sentences']} sentences)")  # fmt: skip
    overhead = walls[1, True] / walls[1, False] - 1
    print(f"expression overhead (generation + checker), --workers 1: {overhead:+.1%} (target <= +20%)")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(this benchmark process: peak RSS {own:.0f} MB)")


if __name__ == "__main__":
    main()
