"""``write_synthetic_tree``: a procedurally drawn tree in MVTec AD's exact layout.

``scale="full"`` reproduces the real release's structure (15 categories, 73 defect
types, 3,629 / 467 / 1,258 images, per-category sizes, grayscale grid/screw/zipper, about
1,888 regions); ``scale="small"`` keeps every category and defect type with one
defective image each, at a quarter of the side, for demos and tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mvtec_ref.fileio import dumps_json, staged_directory
from mvtec_ref.sources.mvtec_ad import MVTEC_AD

MARKER = "SYNTHETIC.json"
SYNTH_VERSION = 1
# Regions per defective image in the full release: 1,888 DatasetNinja objects over 1,258
# images. We split them as 803 x 1, 320 x 2, 95 x 3, 40 x 4 (our choice; sums to 1,888).
REGION_PLAN = {1: 803, 2: 320, 3: 95, 4: 40}


@dataclass(frozen=True)
class Job:
    category: str
    split: str
    defect_type: str
    index: int
    size: int
    gray: bool
    regions: int
    seed: int


def plan_jobs(
    scale: str, seed: int, *, categories: tuple[str, ...] = (), per_type: int | None = None
) -> list[Job]:
    """Every image to draw, in path order, with its region count.

    ``categories`` keeps only those (all when empty); ``per_type`` overrides the number of
    defective images per defect type (good test images: the same number, train good: twice
    it), e.g. a small-scale tree large enough to train the baseline on.
    """
    if scale not in ("small", "full"):
        raise ValueError(f"unknown scale {scale!r}; use 'small' or 'full'")
    known = {spec.name for spec in MVTEC_AD}
    unknown = sorted(set(categories) - known)
    if unknown:
        raise ValueError(f"unknown category {unknown[0]!r}; choose from {', '.join(sorted(known))}")
    jobs = []
    for spec in MVTEC_AD:
        if categories and spec.name not in categories:
            continue
        size = spec.size if scale == "full" else spec.size // 4
        train = spec.train_good if scale == "full" else 2
        test_good = spec.test_good if scale == "full" else 1
        if per_type is not None:
            train, test_good = 2 * per_type, per_type
        entries = [("train", "good", train), ("test", "good", test_good)]
        entries += [
            ("test", d, per_type if per_type is not None else n if scale == "full" else 1)
            for d, n in spec.defects
        ]
        for split, defect, n in entries:
            jobs += [Job(spec.name, split, defect, i, size, spec.grayscale, 0, seed) for i in range(n)]
    defective = [k for k, job in enumerate(jobs) if job.defect_type != "good"]
    counts = _allocate(len(defective), np.random.default_rng(seed))
    for k, n in zip(defective, counts, strict=True):
        job = jobs[k]
        jobs[k] = Job(job.category, job.split, job.defect_type, job.index, job.size, job.gray, n, seed)
    return jobs


def write_synthetic_tree(
    out: Path,
    *,
    scale: str = "small",
    seed: int = 0,
    workers: int = 1,
    progress: bool | None = None,
    categories: tuple[str, ...] = (),
    per_type: int | None = None,
) -> dict:
    """Write the tree to ``out`` atomically; returns a summary (images, regions planned)."""
    from mvtec_ref.progress import progress_bar

    jobs = plan_jobs(scale, seed, categories=categories, per_type=per_type)
    with staged_directory(out, marker=MARKER) as stage:
        bar = progress_bar(total=len(jobs), desc="synth", unit="img", progress=progress)
        with bar:
            if workers <= 1:
                for job in jobs:
                    draw_job(stage, job)
                    bar.update()
            else:
                import multiprocessing

                with multiprocessing.get_context("spawn").Pool(workers) as pool:
                    for _ in pool.imap_unordered(_draw_packed, [(stage, j) for j in jobs], chunksize=8):
                        bar.update()
        summary = {
            "generator": "mvtec-ref synth",
            "version": SYNTH_VERSION,
            "scale": scale,
            "seed": seed,
            "categories": sorted({j.category for j in jobs}),
            "per_type": per_type,
            "images": len(jobs),
            "defect_images": sum(j.defect_type != "good" for j in jobs),
            "regions_planned": sum(j.regions for j in jobs),
            "licence": "synthetic pictures drawn by mvtec-ref; same licence as the toolkit",
        }
        (stage / MARKER).write_text(dumps_json(summary), encoding="utf-8")
    return summary


def draw_job(root: Path, job: Job) -> None:
    """Draw one image (and its mask) and write them as PNG under ``root``."""
    import cv2

    from mvtec_ref.synth.draw import draw_defects, draw_good, stable_seed

    rng = np.random.default_rng(stable_seed(job.seed, job.category, job.split, job.defect_type, job.index))
    img, area = draw_good(job.category, job.size, job.gray, rng)
    name = f"{job.index:03d}"
    image_dir = root / job.category / job.split / job.defect_type
    image_dir.mkdir(parents=True, exist_ok=True)
    if job.defect_type != "good":
        mask = draw_defects(img, area, job.defect_type, job.regions, rng)
        mask_dir = root / job.category / "ground_truth" / job.defect_type
        mask_dir.mkdir(parents=True, exist_ok=True)
        _write_png(mask_dir / f"{name}_mask.png", mask)
    pixels = img[:, :, 0] if job.gray else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    _write_png(image_dir / f"{name}.png", pixels)


def _draw_packed(args: tuple[Path, Job]) -> None:
    import cv2

    cv2.setNumThreads(1)
    draw_job(*args)


def _write_png(path: Path, array: np.ndarray) -> None:
    import cv2

    # Deflate level 1 with every row "Up"-filtered (PNG filter type 2, which every reader
    # decodes): half the encoding time of libpng's per-row filter search for 3% more bytes
    # on these noisy pictures, and faster to decode. Still lossless, so the pixels are the same.
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    ok, data = cv2.imencode(".png", array, params)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    path.write_bytes(data.tobytes())


def _allocate(n: int, rng: np.random.Generator) -> list[int]:
    """Region counts for ``n`` defective images in REGION_PLAN's proportions, shuffled."""
    total = sum(REGION_PLAN.values())
    exact = {k: v * n / total for k, v in REGION_PLAN.items()}
    counts = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True)[: n - sum(counts.values())]:
        counts[k] += 1
    plan = [k for k, v in sorted(counts.items()) for _ in range(v)]
    return [int(v) for v in rng.permutation(plan)]


def read_marker(root: Path) -> dict | None:
    path = Path(root) / MARKER
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
