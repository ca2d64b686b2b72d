"""``build_report``: a static HTML report of a dataset directory (opens from disk, no server).

Layout of the output folder::

    index.html     page, styles and script (no external resources)
    data.js        one entry per sample: ids, split, thumbnail, region boxes, refs
    thumbs/*.jpg   thumbnails (longest side 256 px) with each region filled in its colour
    plots/*.png    the figures of ``mvtec-ref stats --plots``

The gallery renders 48 cards at a time (a "show more" button adds more) and the
thumbnails load lazily, so a full MVTec AD scale dataset stays quick to open.
"""

from __future__ import annotations

import html
import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from mvtec_ref.dataset import Dataset, as_dataset
from mvtec_ref.errors import DatasetError
from mvtec_ref.fileio import staged_directory, write_text_atomic

MARKER = "index.html"
THUMB = 256
POOL_MIN = 500  # samples from which the default report draws thumbnails in a pool
# Region colours (RGB), distinct on both dark and light backgrounds.
PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212))  # fmt: skip


def build_report(
    dataset: Dataset | Path, out: Path, *, progress: bool | None = None, workers: int | None = None
) -> dict:
    """Write the report folder (replaced atomically); returns counts. ``workers`` processes draw
    the thumbnails (decoding every image is most of the time) while this one computes the
    tables and figures; the output is the same for any number. ``None``: ``default_workers``."""
    from tqdm import tqdm

    from mvtec_ref.plots import draw_plots
    from mvtec_ref.stats import summarize

    dataset = as_dataset(dataset)  # opened and checked once: the tables below read the same records
    manifest, root = dataset.manifest, dataset.root
    # Defect images first within each category, so the gallery opens on anomalies.
    records = sorted(dataset, key=lambda r: (r["category"], -r["label_index"], r["id"]))
    from mvtec_ref.limits import processes

    workers = default_workers(len(records)) if workers is None else processes(workers, len(records))
    with staged_directory(out, marker=MARKER) as stage, _pool(workers) as pool:
        (stage / "thumbs").mkdir()
        jobs = ((r, root, stage / "thumbs") for r in records)
        if pool is None:
            thumbnails = map(_thumbnail_job, jobs)
        else:  # the pool starts on them now; the tables and figures are computed meanwhile
            chunk = max(1, min(32, len(records) // (workers * 8)))
            thumbnails = pool.imap(_thumbnail_job, jobs, chunksize=chunk)
        summary = summarize(dataset, with_raw=True)
        plots = [p.name for p in draw_plots(summary, stage / "plots")]
        bar = tqdm(
            total=len(records), desc="report", unit="img", disable=None if progress is None else not progress
        )
        with bar:
            entries = []
            for entry in thumbnails:
                entries.append(entry)
                bar.update()
        data = json.dumps(entries, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
        write_text_atomic(stage / "data.js", f"const SAMPLES = {data};\n")
        write_text_atomic(stage / "index.html", _page(manifest, summary, plots))
    return {"samples": len(entries), "plots": len(plots)}


def default_workers(samples: int) -> int:
    """One process per CPU core this process may use (at most 8), or 1 below POOL_MIN samples,
    where starting processes (about a second each to import numpy and OpenCV) costs more than
    it saves (thumbnails take about 10 ms each)."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 1 if samples < POOL_MIN else max(1, min(8, cores))


@contextmanager
def _pool(workers: int):
    """A spawn pool of ``workers`` processes, or None for 1 (everything in this process)."""
    if workers <= 1:
        yield None
        return
    import multiprocessing

    from mvtec_ref.build import _init_worker

    with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        yield pool


def _thumbnail_job(job: tuple[dict, Path, Path]) -> dict:
    return _thumbnail(*job)


def _thumbnail(record: dict, root: Path, folder: Path) -> dict:
    import cv2

    from mvtec_ref.regions.mask import decode_rle

    path = root / record["image_path"]
    w, h = record["width"], record["height"]
    scale = THUMB / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    thumb = shrink_image(path, (w, h), size)
    boxes = []
    for k, region in enumerate(record["regions"]):
        colour = PALETTE[k % len(PALETTE)][::-1]  # BGR for OpenCV
        mask = cv2.resize(decode_rle(region["segmentation"]), size, interpolation=cv2.INTER_NEAREST).astype(
            bool
        )
        thumb[mask] = (0.45 * np.asarray(colour) + 0.55 * thumb[mask]).astype(np.uint8)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(thumb, contours, -1, colour, 1)
        x, y, bw, bh = region["bbox"]
        boxes.append(
            [round(x * scale, 1), round(y * scale, 1), round(bw * scale, 1), round(bh * scale, 1), k]
        )
    name = f"{record['image_id']}.jpg"
    ok, data = cv2.imencode(".jpg", thumb, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise DatasetError(f"{path}: thumbnail encoding failed")
    (folder / name).write_bytes(data.tobytes())
    refs = [
        {"k": ref["kind"], "g": ref["region_ids"], "x": [s["text"] for s in ref["sentences"]]}
        for ref in record["refs"]
    ]
    return {"id": record["id"], "c": record["category"], "d": record["defect_type"], "s": record["split"],
            "t": f"thumbs/{name}", "w": size[0], "h": size[1], "b": boxes, "r": refs}  # fmt: skip


def shrink_image(path: Path, full: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """The image at ``path`` (``full`` = (W, H) as the dataset records it) as
    ``(size[1], size[0], 3)`` uint8 BGR, area-averaged.

    JPEGs are decoded at 1/8, 1/4 or 1/2 of their size (libjpeg's DCT scaling skips most of the
    decoding and is itself an area average), the largest factor that still leaves at least
    ``size``; other formats are decoded whole (a PNG row depends on the row above it, and
    OpenCV's reduced modes for PNG only swap the area average for a coarser resize).
    """
    import cv2

    flag = cv2.IMREAD_COLOR
    if path.suffix.lower() in (".jpg", ".jpeg"):
        for factor, reduced in (
            (8, cv2.IMREAD_REDUCED_COLOR_8),
            (4, cv2.IMREAD_REDUCED_COLOR_4),
            (2, cv2.IMREAD_REDUCED_COLOR_2),
        ):
            if full[0] // factor >= size[0] and full[1] // factor >= size[1]:
                flag = reduced
                break
    from mvtec_ref.errors import SampleError
    from mvtec_ref.regions.mask import check_image_size

    try:
        data = path.read_bytes()
        check_image_size(data, str(path))  # the header's size, before anything is allocated
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    except SampleError as error:  # re-raised as a DatasetError, which crosses a process pool whole
        raise DatasetError(str(error)) from None
    except (OSError, cv2.error):
        image = None
    if image is None:
        raise DatasetError(f"{path}: cannot read the source image (moved? rebuild the dataset)")
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _table(rows: dict, columns: list[tuple[str, callable]]) -> str:
    head = "".join(f"<th>{html.escape(name)}</th>" for name, _ in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(get(key, row)))}</td>" for _, get in columns) + "</tr>"
        for key, row in rows.items()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _page(manifest: dict, summary: dict, plots: list[str]) -> str:
    def pct(v):
        return "-" if v is None else f"{v:.2%}"

    region_columns = [
        ("", lambda k, r: k),
        ("images", lambda k, r: r["images"]),
        ("defect images", lambda k, r: r["defect_images"]),
        ("regions", lambda k, r: r["regions"]),
        ("regions / defect image", lambda k, r: r["regions_per_defect_image"]),
        ("median area ratio", lambda k, r: pct(r["area_ratio"]["p50"])),
        *(
            (size, lambda k, r, size=size: f"{r['size_share'][size]:.0%}")
            for size in ("small", "medium", "large")
        ),
    ]
    expression_columns = [
        ("", lambda k, q: k),
        ("sentences", lambda k, q: q["sentences"]),
        ("per defect image", lambda k, q: q["sentences_per_defect_image"]),
        ("distinct", lambda k, q: f"{q['distinct_ratio']:.2f}"),
        ("vocabulary", lambda k, q: q["vocabulary"]),
        ("mean words", lambda k, q: q["mean_words"]),
        ("faithful", lambda k, q: f"{q.get('template_faithful', 1.0):.1%}"),
        ("unambiguous", lambda k, q: f"{q.get('template_unambiguous', 1.0):.1%}"),
    ]
    counts = manifest["counts"]
    title = html.escape(f"{manifest['name']}: {counts['images']} images, {counts['regions']} regions, "
                        f"{counts['sentences']} sentences")  # fmt: skip
    figures = "".join(
        f'<img class="plot" src="plots/{html.escape(p)}" alt="{html.escape(p)}">' for p in plots
    )
    return PAGE.format(
        title=title,
        regions=_table(summary["regions"]["category"], region_columns),
        splits=_table(summary["regions"]["split"], region_columns),
        expressions=_table(summary["expressions"]["category"], expression_columns),
        figures=figures,
        palette=json.dumps(["rgb({},{},{})".format(*c) for c in PALETTE]),
    )


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin: .5em 0 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 2px 8px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
.plot {{ max-width: 48%; margin: 4px; border: 1px solid #ddd; }}
#filters select {{ margin-right: 1em; }}
#gallery {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 12px; }}
.card {{ border: 1px solid #ccc; border-radius: 6px; padding: 8px; }}
.frame {{ position: relative; display: inline-block; }}
.frame img {{ display: block; }}
.box {{ position: absolute; border: 1px dashed rgba(255,255,255,.6); pointer-events: none; }}
.box.on {{ border: 3px solid; box-shadow: 0 0 0 2px #000; }}
.id {{ font-weight: 600; margin: 4px 0; word-break: break-all; }}
.kind {{ color: #666; font-size: 12px; text-transform: uppercase; margin-top: 4px; }}
.ref {{ cursor: default; padding: 1px 4px; border-radius: 3px; }}
.ref:hover {{ background: #ffe9a8; }}
.none {{ color: #999; }}
</style></head>
<body>
<h1>{title}</h1>
<h2>Regions by category</h2>{regions}
<h2>Regions by split</h2>{splits}
<h2>Expressions by category</h2>{expressions}
<h2>Figures</h2>{figures}
<h2>Samples</h2>
<div id="filters">
  <label>category <select id="f-category"></select></label>
  <label>defect type <select id="f-defect"></select></label>
  <label>split <select id="f-split"></select></label>
  <span id="count"></span>
</div>
<p>Hover a sentence to outline the regions it refers to (no outline: it refers to nothing).</p>
<div id="gallery"></div>
<p><button id="more">show more</button></p>
<script src="data.js"></script>
<script>
const PALETTE = {palette};
const PAGE_SIZE = 48;
let shown = 0, visible = [];
function options(select, values) {{
  select.append(new Option("all", ""));
  for (const v of [...new Set(values)].sort()) select.append(new Option(v, v));
}}
const fc = document.getElementById("f-category"), fd = document.getElementById("f-defect"),
      fs = document.getElementById("f-split");
options(fc, SAMPLES.map(s => s.c)); options(fd, SAMPLES.map(s => s.d)); options(fs, SAMPLES.map(s => s.s));
function card(s) {{
  const div = document.createElement("div"); div.className = "card"; div.dataset.category = s.c;
  div.dataset.defect = s.d; div.dataset.split = s.s;
  const frame = document.createElement("div"); frame.className = "frame";
  const img = document.createElement("img");
  Object.assign(img, {{loading: "lazy", src: s.t, width: s.w, height: s.h, alt: s.id}}); frame.append(img);
  const boxes = {{}};
  for (const [x, y, w, h, k] of s.b) {{
    const b = document.createElement("div"); b.className = "box";
    Object.assign(b.style, {{left: x + "px", top: y + "px", width: w + "px", height: h + "px",
                            borderColor: PALETTE[k % PALETTE.length]}});
    frame.append(b); boxes[k] = b;
  }}
  div.append(frame);
  const title = document.createElement("div"); title.className = "id";
  title.textContent = `${{s.id}} (${{s.s}})`; div.append(title);
  const byKind = {{}};
  for (const r of s.r) (byKind[r.k] = byKind[r.k] || []).push(r);
  for (const [kind, refs] of Object.entries(byKind)) {{
    const k = document.createElement("div"); k.className = "kind"; k.textContent = kind; div.append(k);
    for (const r of refs) for (const text of r.x) {{
      const line = document.createElement("div"); line.className = "ref" + (r.g.length ? "" : " none");
      line.textContent = text; line.dataset.targets = r.g.join(",");
      const mark = on => r.g.forEach(i => boxes[i] && boxes[i].classList.toggle("on", on));
      line.addEventListener("mouseenter", () => mark(true));
      line.addEventListener("mouseleave", () => mark(false));
      div.append(line);
    }}
  }}
  return div;
}}
function more() {{
  const gallery = document.getElementById("gallery");
  for (const s of visible.slice(shown, shown + PAGE_SIZE)) gallery.append(card(s));
  shown = Math.min(visible.length, shown + PAGE_SIZE);
  document.getElementById("more").hidden = shown >= visible.length;
  document.getElementById("count").textContent = `${{visible.length}} samples, ${{shown}} shown`;
}}
function apply() {{
  visible = SAMPLES.filter(s => (!fc.value || s.c === fc.value) && (!fd.value || s.d === fd.value) &&
                                (!fs.value || s.s === fs.value));
  document.getElementById("gallery").replaceChildren(); shown = 0; more();
}}
for (const f of [fc, fd, fs]) f.addEventListener("change", apply);
document.getElementById("more").addEventListener("click", more);
apply();
</script>
</body></html>
"""
