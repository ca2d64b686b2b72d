"""Every stage against its floor, on a cached ``synth --scale full`` tree (``make bench``).

For each stage: its wall time, the time of its floor (the work it cannot avoid, measured in
one process right before the stage, so both see the same machine load) and the ratio; every
stage runs ``--runs`` times (2 by default) and the summary gives the spread (max - min over
the mean) of the times and of the ratios.

Stages and floors:

- ``build``: ``build --workers 1`` and ``--workers 2`` (peak RSS of the main process and of
  the largest worker); floor: ``cv2.imread`` of every image and mask the build reads.
  Targets: <= 1.1x with 1 worker, <= 0.6x with 2, peak RSS < 300 MB.
- ``validate``: ``validate --deep`` with ``--workers 1`` and ``2``; floor: ``cv2.imread`` of
  every mask and of every image the pixel judge reads (records with a sentence that has a target).
- ``export``: each format, ``--images none``; floor: reading the dataset's records, writing
  its output bytes plus the RLE work it cannot avoid (decoding the regions of each distinct
  multi-region target of an image and encoding their union, for refcoco and jsonl).
  Target: jsonl <= 10 s.
- ``report``: ``report --workers 1`` and ``--workers 2``; floor: decoding every image it
  shows and shrinking it to its thumbnail the way the report does (``shrink_image``, one
  process). Target: <= 60 s.
- ``synth``: ``synth --scale full --workers 2`` into a temporary folder; floor: encoding the
  tree's own pixels as synth does and writing them (the same bytes; one process, decoding
  them first not timed). Target: <= 180 s.

Every floor runs in this process with glibc told to keep freed memory (``mallopt``, see
``_keep_freed_memory``): a plain ``cv2.imread`` loop gets fresh pages from the kernel for every
image (3.9 M minor page faults, 7-9 s of system time on the full tree, and a floor that moved
between 47 and 60 s), which is the allocator's cost, not decoding's. The stages that run in
this process (validate, export, report, synth; not their pool workers) share the setting; the
build runs in its own process as a user runs it (it faults 79 K pages, not millions).

Rows of the in-process stages (report, synth) also give CPU seconds of all processes against
the floor's, which vary much less than wall times when the machine is shared.

The tree: ``MVTEC_REF_BENCH_TREE`` names an existing full-scale tree to read (never written),
else it is drawn once into ``$MVTEC_REF_BENCH_CACHE`` (default ``.cache/bench``) and kept.
``python -m benchmarks.bench_build --stages build,export --runs 2``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CACHE = Path(os.environ.get("MVTEC_REF_BENCH_CACHE", ".cache/bench"))
STAGES = ("build", "validate", "export", "report", "synth")

CHILD = """
import json, resource, sys, time
from mvtec_ref.build import BuildConfig, build_dataset
start = time.perf_counter()
result = build_dataset(sys.argv[1], sys.argv[2], BuildConfig(), workers=int(sys.argv[3]), progress=False)
wall = time.perf_counter() - start
own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
# ru_maxrss keeps the bench's own peak across fork + exec (Linux); VmHWM is this program's alone.
try:
    status = open("/proc/self/status").read()
    main_kb = int(status.split("VmHWM:")[1].split()[0])
except (OSError, IndexError, ValueError):
    main_kb = own.ru_maxrss
print(json.dumps({"wall": wall, "cpu": cpu, "rss_main_kb": main_kb, "rss_worker_kb": kids.ru_maxrss}))
"""


def ensure_tree(seed: int = 0) -> Path:
    from mvtec_ref.synth import write_synthetic_tree
    from mvtec_ref.synth.tree import SYNTH_VERSION, read_marker

    given = os.environ.get("MVTEC_REF_BENCH_TREE")
    if given:
        if read_marker(Path(given)) is None:
            sys.exit(f"MVTEC_REF_BENCH_TREE={given}: not a tree written by mvtec-ref synth")
        return Path(given)
    root = CACHE / f"mvtec_full_seed{seed}_v{SYNTH_VERSION}"
    if read_marker(root) is None:
        print(f"drawing the full-scale synthetic tree once into {root} ...", flush=True)
        start = time.perf_counter()
        write_synthetic_tree(root, scale="full", seed=seed, workers=os.cpu_count() or 1)
        print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
    return root


def _timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def _imread_all(paths: list[Path]) -> None:
    import cv2

    cv2.setNumThreads(1)
    for path in paths:
        if cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is None:
            raise RuntimeError(f"{path}: cannot decode")


def _records(dataset: Path) -> list[dict]:
    from mvtec_ref.dataset import open_dataset

    return open_dataset(dataset).records


# --- stages: each returns [(label, seconds, floor seconds, note)] for one run ---------------


def stage_build(root: Path, work: Path) -> list[tuple]:
    from mvtec_ref.sources import scan_mvtec_ad

    scan = scan_mvtec_ad(root)
    paths = [root / p for im in scan.images for p in (im.image_path, im.mask_path) if p]
    cpu = time.process_time()
    floor = _timed(_imread_all, paths)
    cpu = time.process_time() - cpu
    rows = []
    for workers in (1, 2):
        args = [str(root), str(work / "dataset"), str(workers)]
        run = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=True)
        r = json.loads(run.stdout.strip().splitlines()[-1])
        # CPU seconds (all processes) against the floor's: steadier than wall time on a shared machine.
        rss = f"CPU {r['cpu']:.0f} s = {r['cpu'] / cpu:.2f}x the floor's {cpu:.0f} s; "
        rss += f"peak RSS {r['rss_main_kb'] / 1024:.0f} MB main"
        if workers > 1:
            rss += f", {r['rss_worker_kb'] / 1024:.0f} MB largest worker"
        rows.append((f"build --workers {workers}", r["wall"], floor, rss))
    return rows


def stage_validate(root: Path, work: Path) -> list[tuple]:
    from mvtec_ref.validate import validate_dataset

    dataset = _dataset(root, work)
    records = _records(dataset)
    masks = [root / r["mask_path"] for r in records if r["mask_path"]]
    # The pixel judge reads the image of every record with a sentence that has a target.
    images = [root / r["image_path"] for r in records if any(ref["region_ids"] for ref in r["refs"])]
    floor = _timed(_imread_all, masks + images)
    rows = []
    for workers in (1, 2):
        start = time.perf_counter()
        problems = validate_dataset(dataset, deep=True, workers=workers)
        wall = time.perf_counter() - start
        note = f"{len(masks)} masks + {len(images)} judged images, {len(problems)} problems"
        rows.append((f"validate --deep --workers {workers}", wall, floor, note))
    return rows


def stage_export(root: Path, work: Path) -> list[tuple]:
    from mvtec_ref.export import FORMATS, export_dataset

    dataset = _dataset(root, work)
    records = _records(dataset)
    rows = []
    for fmt in FORMATS:
        out = work / f"export_{fmt}"
        wall = _timed(export_dataset, dataset, fmt, out, images="none")
        read = _timed(_records, dataset)  # an export reads the whole dataset: unavoidable too
        rle = _timed(_unavoidable_rle, records, fmt)
        write = _timed(_rewrite, out, work / "rewrite")
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
        note = f"{size:.0f} MB; floor = read {read:.1f} s + RLE {rle:.1f} s + write {write:.1f} s"
        rows.append((f"export {fmt}", wall, read + rle + write, note))
    return rows


def _unavoidable_rle(records: list[dict], fmt: str) -> None:
    """Decode + union + encode once per distinct multi-region target of an image (refcoco and
    jsonl store that union; single-region targets and coco/grefcoco reuse the stored RLEs)."""
    from mvtec_ref.export.common import target_mask
    from mvtec_ref.regions.mask import encode_rle

    if fmt not in ("refcoco", "jsonl"):
        return
    for r in records:
        for ids in {tuple(ref["region_ids"]) for ref in r["refs"] if len(ref["region_ids"]) > 1}:
            encode_rle(target_mask(r, ids))


def _rewrite(src: Path, dst: Path) -> None:
    """Write every file of ``src`` again (same bytes, fsync'd like the toolkit's writes)."""
    shutil.rmtree(dst, ignore_errors=True)
    for path in src.rglob("*"):
        if path.is_file():
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            data = path.read_bytes()
            with open(target, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
    shutil.rmtree(dst)


def stage_report(root: Path, work: Path) -> list[tuple]:
    from mvtec_ref.report import THUMB, build_report, shrink_image

    dataset = _dataset(root, work)
    jobs = []
    for r in _records(dataset):
        w, h = r["width"], r["height"]
        scale = THUMB / max(w, h)
        jobs.append((root / r["image_path"], (w, h), (max(1, round(w * scale)), max(1, round(h * scale)))))

    def shrink_all():
        _init_cv2()
        for job in jobs:
            shrink_image(*job)

    floor, floor_cpu = _timed_cpu(shrink_all)
    rows = []
    for workers in (1, 2):
        wall, cpu = _timed_cpu(build_report, dataset, work / "report", progress=False, workers=workers)
        note = f"{len(jobs)} thumbnails; {_cpu_note(cpu, floor_cpu)}"
        rows.append((f"report --workers {workers}", wall, floor, note))
    return rows


def stage_synth(root: Path, work: Path) -> list[tuple]:
    """Floor: encoding and writing the tree's own pixels the way synth does (same encoder, same
    parameters, so the same bytes), one process; decoding them first is not timed."""
    import cv2

    from mvtec_ref.synth import write_synthetic_tree
    from mvtec_ref.synth.tree import _write_png

    _init_cv2()
    files = sorted(root.rglob("*.png"))
    scratch = work / "synth_floor"
    scratch.mkdir()
    floor = floor_cpu = 0.0
    written = 0
    for k, path in enumerate(files):
        pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        wall, cpu = _timed_cpu(_write_png, scratch / f"{k}.png", pixels)
        floor, floor_cpu = floor + wall, floor_cpu + cpu
        written += (scratch / f"{k}.png").stat().st_size
        (scratch / f"{k}.png").unlink()
    scratch.rmdir()
    out = work / "synth"
    wall, cpu = _timed_cpu(write_synthetic_tree, out, scale="full", seed=0, workers=2, progress=False)
    size = sum(p.stat().st_size for p in out.rglob("*.png"))
    shutil.rmtree(out)
    note = f"{len(files)} files, {size / 1e9:.2f} GB (floor wrote {written / 1e9:.2f} GB); "
    return [("synth --scale full --workers 2", wall, floor, note + _cpu_note(cpu, floor_cpu))]


def _keep_freed_memory() -> None:
    """Ask glibc to keep freed memory in the heap (no trimming, no mmap for buffers up to
    32 MiB, its maximum), so a floor that decodes image after image reuses its pages instead
    of faulting fresh ones in. No-op without glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 1 << 30)


def _init_cv2() -> None:
    import cv2

    cv2.setNumThreads(1)  # the floors are one process on one core, like each worker


def _timed_cpu(fn, *args, **kwargs) -> tuple[float, float]:
    """Wall and CPU seconds of ``fn``: this process plus the child processes it waited for
    (pool workers), which is steadier than wall time on a shared machine."""
    import resource

    def cpu() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    start_cpu, start = cpu(), time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start, cpu() - start_cpu


def _cpu_note(cpu: float, floor_cpu: float) -> str:
    return f"CPU {cpu:.1f} s = {cpu / floor_cpu:.2f}x the floor's {floor_cpu:.1f} s"


def _dataset(root: Path, work: Path) -> Path:
    """A built dataset of the tree (built once per bench run, not timed here)."""
    from mvtec_ref.build import BuildConfig, build_dataset

    dataset = work / "dataset"
    if not (dataset / "manifest.json").is_file():
        build_dataset(root, dataset, BuildConfig(), workers=2, progress=False)
    return dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated: {','.join(STAGES)}")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    stages = [s for s in args.stages.split(",") if s]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        sys.exit(f"unknown stage(s) {', '.join(unknown)}; use {', '.join(STAGES)}")
    root = ensure_tree()
    _keep_freed_memory()
    size_gb = sum(p.stat().st_size for p in root.rglob("*.png")) / 1e9
    print(f"tree: {root} ({size_gb:.2f} GB); load average at start: {os.getloadavg()}", flush=True)
    for path in sorted(root.rglob("*.png")):  # warm the page cache so every side reads from memory
        path.read_bytes()  # (reading is enough; decoding all of them cost a minute of CPU)
    results: dict[str, list[tuple[float, float]]] = {}
    work = Path(tempfile.mkdtemp(prefix="mvtec-ref-bench-", dir=CACHE if CACHE.is_dir() else None))
    try:
        for run in range(1, args.runs + 1):
            for stage in stages:
                for label, wall, floor, note in globals()[f"stage_{stage}"](root, work):
                    results.setdefault(label, []).append((wall, floor))
                    print(f"run {run} | {label}: {wall:.1f} s, floor {floor:.1f} s, {wall / floor:.2f}x "
                          f"({note}) [load {os.getloadavg()[0]:.1f}]", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nsummary over {args.runs} runs (spread = (max - min) / mean):")
    for label, runs in results.items():
        walls = [w for w, _ in runs]
        ratios = [w / f for w, f in runs]
        print(f"  {label:32s} time {statistics.mean(walls):7.1f} s (spread {_spread(walls):4.0%}), "
              f"floor {statistics.mean(f for _, f in runs):7.1f} s, ratio {statistics.mean(ratios):.2f}x "
              f"(spread {_spread(ratios):4.0%})")  # fmt: skip


def _spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.mean(values) if len(values) > 1 else 0.0


if __name__ == "__main__":
    main()
