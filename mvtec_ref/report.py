"""``build_report``: a static HTML report of a dataset directory (opens from disk, no server).

Layout of the output folder::

    index.html     page, styles and script (no external resources)
    data.js        one entry per sample: ids, split, thumbnail, region boxes, refs, and the link to
                   the source image (relative to the report)
    thumbs/*.jpg   thumbnails (longest side 256 px) with each region filled in its colour
    overlays/*.svg each defect image's regions at full resolution, drawn over the source image
                   when a thumbnail is clicked
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

from mvtec_ref.build import iter_samples, load_manifest
from mvtec_ref.errors import DatasetError
from mvtec_ref.fileio import staged_directory, write_text_atomic
from mvtec_ref.progress import progress_bar

MARKER = "index.html"
THUMB = 256
POOL_MIN = 500  # samples from which the default report draws thumbnails in a pool
# Region colours (RGB), distinct on both dark and light backgrounds.
PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212))  # fmt: skip


def build_report(
    dataset: Path, out: Path, *, progress: bool | None = None, workers: int | None = None
) -> dict:
    """Write the report folder (replaced atomically); returns counts. ``workers`` processes draw
    the thumbnails (decoding every image is most of the time) while this one computes the
    tables and figures; the output is the same for any number. ``None``: ``default_workers``."""
    from mvtec_ref.plots import draw_plots
    from mvtec_ref.stats import summarize

    manifest = load_manifest(dataset)
    root = Path(manifest["source"]["root"])
    # Defect images first within each category, so the gallery opens on anomalies.
    records = sorted(
        (r for _, r in iter_samples(dataset)), key=lambda r: (r["category"], -r["label_index"], r["id"])
    )
    workers = default_workers(len(records)) if workers is None else workers
    with staged_directory(out, marker=MARKER) as stage, _pool(workers) as pool:
        (stage / "thumbs").mkdir()
        (stage / "overlays").mkdir()
        jobs = ((r, root, stage, Path(out).resolve()) for r in records)
        if pool is None:
            thumbnails = map(_thumbnail_job, jobs)
        else:  # the pool starts on them now; the tables and figures are computed meanwhile
            chunk = max(1, min(32, len(records) // (workers * 8)))
            thumbnails = pool.imap(_thumbnail_job, jobs, chunksize=chunk)
        summary = summarize(dataset, with_raw=True, progress=progress)
        plots = [(p.name, _png_size(p)) for p in draw_plots(summary, stage / "plots")]
        bar = progress_bar(total=len(records), desc="report", unit="img", progress=progress)
        with bar:
            entries = []
            for entry in thumbnails:
                entries.append(entry)
                bar.update()
        data = json.dumps(entries, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
        write_text_atomic(stage / "data.js", f"const SAMPLES = {data};\n")
        write_text_atomic(stage / "index.html", _page(manifest, summary, plots, dataset))
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


def _thumbnail_job(job: tuple[dict, Path, Path, Path]) -> dict:
    return _thumbnail(*job)


def _thumbnail(record: dict, root: Path, stage: Path, final: Path) -> dict:
    """Draw the thumbnail and the full-size overlay of one sample (``stage``: the report folder being
    written, ``final``: where it will be, for the link to the source image); its data.js entry."""
    import os
    import urllib.request

    import cv2

    from mvtec_ref.regions.mask import decode_rle

    path = root / record["image_path"]
    w, h = record["width"], record["height"]
    scale = THUMB / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    thumb = shrink_image(path, (w, h), size)
    boxes, shapes = [], []
    for k, region in enumerate(record["regions"]):
        colour = PALETTE[k % len(PALETTE)][::-1]  # BGR for OpenCV
        full = decode_rle(region["segmentation"])
        shapes.append(_svg_path(full, PALETTE[k % len(PALETTE)]))
        mask = cv2.resize(full, size, interpolation=cv2.INTER_NEAREST).astype(bool)
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
    (stage / "thumbs" / name).write_bytes(data.tobytes())
    overlay = None
    if shapes:
        overlay = f"overlays/{record['image_id']}.svg"
        svg = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}">'
               + "".join(shapes) + "</svg>\n")  # fmt: skip
        (stage / overlay).write_text(svg, encoding="utf-8")
    # the source image, linked relative to the report so that both can move together
    link = urllib.request.pathname2url(os.path.relpath(path.resolve(), final))
    refs = [
        {"k": ref["kind"], "g": ref["region_ids"], "x": [s["text"] for s in ref["sentences"]]}
        for ref in record["refs"]
    ]
    return {"id": record["id"], "c": record["category"], "d": record["defect_type"], "s": record["split"],
            "t": f"thumbs/{name}", "w": size[0], "h": size[1], "b": boxes, "r": refs,
            "f": link, "W": w, "H": h, **({"o": overlay} if overlay else {})}  # fmt: skip


def _svg_path(mask: np.ndarray, colour: tuple[int, int, int]) -> str:
    """One region of an ``(H, W)`` 0/1 mask as an SVG path in image pixels (outer and hole rings,
    even-odd fill), outlined in ``colour`` at any zoom."""
    import cv2

    contours, _ = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    rings = []
    for c in contours:
        points = c.reshape(-1, 2)
        if len(points) == 1:  # one pixel: its square
            x, y = points[0]
            rings.append(f"M{x} {y}h1v1h-1Z")
        else:
            rings.append("M" + "L".join(f"{x + 0.5:g} {y + 0.5:g}" for x, y in points) + "Z")
    rgb = "rgb({},{},{})".format(*colour)
    return (
        f'<path d="{"".join(rings)}" fill="{rgb}" fill-opacity="0.3" fill-rule="evenodd" stroke="{rgb}" '
        'stroke-width="2" vector-effect="non-scaling-stroke"/>'
    )


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
    image = cv2.imread(str(path), flag)
    if image is None:
        raise DatasetError(f"{path}: cannot read the source image (moved? rebuild the dataset)")
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _html_table(table) -> str:
    """A ``stats`` table (``mvtec_ref.stats.Table``) as HTML: the note, then the rows."""
    note = f"<p>{html.escape(table.note)}</p>" if table.note else ""
    if not table.header:
        return note
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table.rows
    )
    scroll = ' class="scroll"' if len(table.rows) > 20 else ""
    return f"{note}<div{scroll}><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _facts(manifest: dict, dataset: Path) -> str:
    """The build's facts: what was read, with which settings, by which version."""
    from mvtec_ref.wording import count

    source, config, counts = manifest["source"], manifest["config"], manifest["counts"]
    splits = config.get("splits", {})
    ratios = "/".join(f"{r:g}" for r in splits.get("ratios", []))
    rows = [
        ("dataset", str(Path(dataset).resolve())),
        ("source", f"{source['kind']} at {source['root']}"),
        ("files read", count(source.get("files", 0), "file")),
        ("fingerprint", f"SHA-256 {source.get('fingerprint', '-')}"),
        ("seed", str(config.get("seed", "-"))),
        ("splits", f"{splits.get('protocol', '-')} protocol, train/val/test {ratios}"),
        ("expressions", f"templates {config['refs'].get('templates_version', '-')}, vocabulary "
                        f"{config['refs'].get('vocabulary', 'mvtec_ad')}"),
        ("size buckets",
         "small < {:.0%} <= medium < {:.0%} <= large".format(*config["regions"]["size_cuts"])),
        ("counts", f"{count(counts['images'], 'image')} ({counts['defect_images']} defective), "
                   f"{count(counts['regions'], 'region')}, {count(counts['refs'], 'ref')}, "
                   f"{count(counts['sentences'], 'sentence')}"),
        ("problems", count(len(manifest.get("problems", [])), "problem") + " (listed in manifest.json)"),
        ("toolkit", f"mvtec-ref {manifest['toolkit_version']}, schema {manifest['schema_version']}"),
    ]  # fmt: skip
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="facts">{body}</table>'


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's header."""
    head = path.read_bytes()[16:24]
    return int.from_bytes(head[:4], "big"), int.from_bytes(head[4:], "big")


def _page(manifest: dict, summary: dict, plots: list[tuple[str, tuple[int, int]]], dataset: Path) -> str:
    from mvtec_ref.plots import WIDE
    from mvtec_ref.stats import stat_tables
    from mvtec_ref.wording import count

    counts = manifest["counts"]
    # the folder names the dataset (every manifest says "mvtec-ref")
    title = html.escape(f"{Path(dataset).resolve().name}: {count(counts['images'], 'image')}, "
                        f"{count(counts['regions'], 'region')}, "
                        f"{count(counts['sentences'], 'sentence')}")  # fmt: skip
    sections, toc = (
        [],
        [
            ("facts", "Build"),
        ],
    )
    for k, table in enumerate(stat_tables(summary)):
        anchor = f"t{k}"
        if table.header:
            toc.append((anchor, table.title))
            sections.append(f'<h3 id="{anchor}">{html.escape(table.title)}</h3>{_html_table(table)}')
        else:  # a note alone joins the table before it
            sections.append(_html_table(table))
    toc += [("figures", "Figures"), ("samples", "Samples")]
    figures = "".join(
        f'<img class="plot{" wide" if p == WIDE else ""}" src="plots/{html.escape(p)}" '
        f'width="{w}" height="{h}" alt="{html.escape(p)}">'
        for p, (w, h) in plots
    )
    nav = "".join(f'<li><a href="#{a}">{html.escape(t)}</a></li>' for a, t in toc)
    page = PAGE
    for key, value in {
        "TITLE": title,
        "TOC": nav,
        "FACTS": _facts(manifest, dataset),
        "TABLES": "".join(sections),
        "FIGURES": figures,
        "PALETTE": json.dumps(["rgb({},{},{})".format(*c) for c in PALETTE]),
    }.items():
        page = page.replace(f"%%{key}%%", value)
    return page


# %%NAME%% markers are filled by _page (the CSS and JavaScript keep their own braces).
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>%%TITLE%%</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #222; }
main { max-width: 1400px; margin: 0 auto; padding: 1em 1.5em 3em; }
h1 { font-size: 22px; margin: .3em 0 .6em; }
h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { margin: 1.2em 0 .3em; font-size: 15px; }
nav.toc { background: #f6f7f9; border: 1px solid #e2e5ea; border-radius: 6px; padding: 6px 14px; }
nav.toc ul { margin: 4px 0; padding-left: 0; list-style: none; columns: 3 220px; }
nav.toc li { margin: 2px 0; }
table { border-collapse: collapse; margin: .4em 0 1em; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d6d9de; padding: 2px 8px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f3f4f6; position: sticky; top: 0; }
.scroll { max-height: 420px; overflow: auto; display: inline-block; max-width: 100%;
  border: 1px solid #e2e5ea; }
.scroll table { margin: 0; }
table.facts th { text-align: left; background: #f6f7f9; font-weight: 600; }
table.facts td { text-align: left; white-space: normal; overflow-wrap: anywhere;
  font: 13px ui-monospace, monospace; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 12px; }
/* figures are never enlarged, and shrink only when the window is narrower than they are */
.plot { max-width: 100%; height: auto; border: 1px solid #ddd; justify-self: start; }
.plot.wide { grid-column: 1 / -1; }
#filters { position: sticky; top: 0; background: #fff; padding: 6px 0; z-index: 2; }
#filters select { margin-right: 1em; }
#gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 12px;
  align-items: start; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: 8px; }
.frame { position: relative; display: inline-block; cursor: zoom-in; }
.frame img { display: block; max-width: 100%; height: auto; }
.box { position: absolute; border: 1px dashed rgba(255,255,255,.6); pointer-events: none; }
.box.on { border: 3px solid; box-shadow: 0 0 0 2px #000; }
.id { font-weight: 600; margin: 4px 0; overflow-wrap: break-word; }
.id .split { font-weight: 400; color: #666; white-space: nowrap; }
.kind { color: #666; font-size: 12px; text-transform: uppercase; margin-top: 4px; }
.ref { cursor: default; padding: 1px 4px; border-radius: 3px; }
.ref:hover { background: #ffe9a8; }
.none { color: #999; }
dialog { border: 0; padding: 0; max-width: 96vw; max-height: 96vh; background: #111; color: #eee; }
dialog::backdrop { background: rgba(0, 0, 0, .75); }
dialog .bar { display: flex; justify-content: space-between; gap: 12px; padding: 6px 10px; font-size: 13px; }
dialog .bar a { color: #9cc4ff; }
dialog .stage { position: relative; overflow: auto; max-width: 96vw; max-height: calc(96vh - 36px); }
dialog .stage img { display: block; }
dialog .stage img.overlay { position: absolute; left: 0; top: 0; pointer-events: none; }
dialog button { font: inherit; }
</style></head>
<body><main>
<h1>%%TITLE%%</h1>
<nav class="toc"><b>Contents</b><ul>%%TOC%%</ul></nav>
<h2 id="facts">Build</h2>%%FACTS%%
<h2 id="tables">Tables</h2>%%TABLES%%
<h2 id="figures">Figures</h2><div class="figures">%%FIGURES%%</div>
<h2 id="samples">Samples</h2>
<div id="filters">
  <label>category <select id="f-category"></select></label>
  <label>defect type <select id="f-defect"></select></label>
  <label>split <select id="f-split"></select></label>
  <span id="count"></span>
</div>
<p>Hover a sentence to outline the regions it refers to (no outline: it refers to nothing).
Click a thumbnail to open the image at full resolution with its regions.</p>
<div id="gallery"></div>
<p><button id="more">show more</button></p>
<dialog id="viewer"><div class="bar"><span id="viewer-title"></span>
  <span><a id="viewer-file" target="_blank">image file</a>
  &middot; <label><input type="checkbox" id="viewer-overlay" checked> regions</label>
  &middot; <button id="viewer-close">close (Esc)</button></span></div>
  <div class="stage"><img id="viewer-image" alt=""><img id="viewer-svg" class="overlay" alt=""></div></dialog>
</main>
<script src="data.js"></script>
<script>
const PALETTE = %%PALETTE%%;
const PAGE_SIZE = 48;
let shown = 0, visible = [];
function options(select, values, keep) {
  const current = select.value;
  select.replaceChildren(new Option("all", ""));
  for (const v of [...new Set(values)].sort()) select.append(new Option(v, v));
  select.value = [...select.options].some(o => o.value === current) ? current : "";
}
const fc = document.getElementById("f-category"), fd = document.getElementById("f-defect"),
      fs = document.getElementById("f-split");
options(fc, SAMPLES.map(s => s.c)); options(fd, SAMPLES.map(s => s.d)); options(fs, SAMPLES.map(s => s.s));
function openViewer(s) {
  const dialog = document.getElementById("viewer"), image = document.getElementById("viewer-image"),
        svg = document.getElementById("viewer-svg");
  document.getElementById("viewer-title").textContent = `${s.id} (${s.s}), ${s.W}x${s.H} px`;
  document.getElementById("viewer-file").href = s.f;
  image.onerror = () => {  // the source tree moved: the thumbnail is better than nothing
    image.onerror = null; image.src = s.t;
    document.getElementById("viewer-title").textContent =
      `${s.id}: source image not found at ${s.f}; thumbnail shown`;
  };
  // every source pixel shown; a small image is enlarged by a whole factor to fill the window
  const k = Math.max(1, Math.floor(Math.min(0.94 * innerWidth / s.W, (0.94 * innerHeight - 40) / s.H)));
  Object.assign(image, {src: s.f, width: s.W * k, height: s.H * k, alt: s.id});
  image.style.imageRendering = k > 1 ? "pixelated" : "auto";
  document.getElementById("viewer-title").textContent += k > 1 ? `, shown x${k}` : "";
  svg.hidden = !s.o; if (s.o) Object.assign(svg, {src: s.o, width: s.W * k, height: s.H * k});
  dialog.showModal();
}
const viewer = document.getElementById("viewer");
document.getElementById("viewer-close").addEventListener("click", () => viewer.close());
viewer.addEventListener("click", e => { if (e.target === viewer) viewer.close(); });
document.getElementById("viewer-overlay").addEventListener("change", e => {
  document.getElementById("viewer-svg").style.visibility = e.target.checked ? "visible" : "hidden";
});
function card(s) {
  const div = document.createElement("div"); div.className = "card"; div.dataset.category = s.c;
  div.dataset.defect = s.d; div.dataset.split = s.s;
  const frame = document.createElement("div"); frame.className = "frame";
  frame.title = "open at full resolution";
  frame.addEventListener("click", () => openViewer(s));
  const img = document.createElement("img");
  Object.assign(img, {loading: "lazy", src: s.t, width: s.w, height: s.h, alt: s.id}); frame.append(img);
  const boxes = {};
  for (const [x, y, w, h, k] of s.b) {
    const b = document.createElement("div"); b.className = "box";
    Object.assign(b.style, {left: x + "px", top: y + "px", width: w + "px", height: h + "px",
                            borderColor: PALETTE[k % PALETTE.length]});
    frame.append(b); boxes[k] = b;
  }
  div.append(frame);
  const title = document.createElement("div"); title.className = "id";
  // break only after a "/", never inside a name
  s.id.split("/").forEach((part, i, all) => {
    const last = i === all.length - 1;
    title.append(part + (last ? "" : "/"));
    if (!last) title.append(document.createElement("wbr"));
  });
  const split = document.createElement("span"); split.className = "split"; split.textContent = ` (${s.s})`;
  title.append(split); div.append(title);
  const byKind = {};
  for (const r of s.r) (byKind[r.k] = byKind[r.k] || []).push(r);
  for (const [kind, refs] of Object.entries(byKind)) {
    const k = document.createElement("div"); k.className = "kind"; k.textContent = kind; div.append(k);
    for (const r of refs) for (const text of r.x) {
      const line = document.createElement("div"); line.className = "ref" + (r.g.length ? "" : " none");
      line.textContent = text; line.dataset.targets = r.g.join(",");
      const mark = on => r.g.forEach(i => boxes[i] && boxes[i].classList.toggle("on", on));
      line.addEventListener("mouseenter", () => mark(true));
      line.addEventListener("mouseleave", () => mark(false));
      div.append(line);
    }
  }
  return div;
}
function more() {
  const gallery = document.getElementById("gallery");
  for (const s of visible.slice(shown, shown + PAGE_SIZE)) gallery.append(card(s));
  shown = Math.min(visible.length, shown + PAGE_SIZE);
  document.getElementById("more").hidden = shown >= visible.length;
  document.getElementById("count").textContent = `${visible.length} samples, ${shown} shown`;
}
function apply() {
  visible = SAMPLES.filter(s => (!fc.value || s.c === fc.value) && (!fd.value || s.d === fd.value) &&
                                (!fs.value || s.s === fs.value));
  document.getElementById("gallery").replaceChildren(); shown = 0; more();
}
// picking a category narrows the defect types to its own
fc.addEventListener("change", () => {
  options(fd, SAMPLES.filter(s => !fc.value || s.c === fc.value).map(s => s.d));
  apply();
});
for (const f of [fd, fs]) f.addEventListener("change", apply);
document.getElementById("more").addEventListener("click", more);
apply();
</script>
</body></html>
"""
