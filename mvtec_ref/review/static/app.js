// mvtec-ref review: one image at a time, one sentence at a time. Plain JS, no build step.
// The server sends every sentence as columns of small integers (filters and counts run here);
// an image's regions and refs come on demand, and the next image is fetched before it is shown.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const STATE_NAMES = [null, "accept", "reject", "rewrite"];
const $ = (id) => document.getElementById(id);
const perf = (window.__review = { ready: false, usableMs: null, lastMs: null, renders: 0 });

let idx = null;          // /api/index
let filtered = [];       // item indices that pass the filters
let pos = 0;             // position in filtered
const views = new Map(); // image index -> Promise of /api/image/n
const pixels = new Map(); // image index -> Promise of a decoded <img>
const undo = [];         // [{item, prev: {decision, rewrite}}, ...]: one entry per key press
let editing = false;
let checkTimer = null;

async function api(path, body) {
  const init = { headers: { "X-Review-Token": TOKEN } };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `${path}: HTTP ${response.status}`);
  return { status: response.status, data };
}

function view(image) {
  if (!views.has(image)) {
    views.set(image, api(`api/image/${image}`).then((r) => r.data));
    if (views.size > 200) views.delete(views.keys().next().value);
  }
  return views.get(image);
}

function picture(image) {
  // an ImageBitmap, closed when evicted: the page holds at most 6 decoded images (the current one
  // and those fetched ahead), instead of leaving decoded <img> pixels to the browser's caches
  if (!pixels.has(image)) {
    const ready = fetch(`img/${image}`, { headers: { "X-Review-Token": TOKEN } })
      .then((r) => { if (!r.ok) throw new Error(`image ${image}: HTTP ${r.status}`); return r.blob(); })
      .then((blob) => createImageBitmap(blob))
      .then((bitmap) => { ready.bitmap = bitmap; return bitmap; });
    pixels.set(image, ready);
    if (pixels.size > 6) {
      const [oldest, gone] = pixels.entries().next().value;
      pixels.delete(oldest);
      gone.then((bitmap) => { if (!onScreen.has(bitmap)) bitmap.close(); }, () => {});
    }
  }
  return pixels.get(image);
}

const onScreen = new Set(); // the bitmap being drawn must not be closed under it

// ---- filters and progress --------------------------------------------------------------

function fillSelect(select, names, keep) {
  const current = select.value;
  select.length = 1;
  names.forEach((name, code) => {
    if (keep && !keep(name)) return;
    const option = document.createElement("option");
    option.value = String(code);
    option.textContent = name;
    select.append(option);
  });
  if ([...select.options].some((o) => o.value === current)) select.value = current;
}

function applyFilters(keepItem) {
  const it = idx.items, im = idx.images;
  const cat = $("f-category").value, def = $("f-defect").value;
  const kind = $("f-kind").value, origin = $("f-origin").value, todo = $("f-todo").checked;
  filtered = [];
  for (let i = 0; i < it.image.length; i++) {
    const image = it.image[i];
    if (cat !== "" && im.category[image] !== +cat) continue;
    if (def !== "" && im.defect[image] !== +def) continue;
    if (kind !== "" && it.kind[i] !== +kind) continue;
    if (origin !== "" && it.origin[i] !== +origin) continue;
    if (todo && it.state[i] !== 0) continue;
    filtered.push(i);
  }
  pos = 0;
  if (keepItem !== undefined) {
    const at = filtered.findIndex((i) => i >= keepItem);
    pos = at < 0 ? 0 : at;
  }
}

function progress() {
  // sentences that build --reviews dropped as rejected count as reviewed, as in stats
  const it = idx.items;
  let done = idx.removed;
  for (const s of it.state) if (s) done++;
  const total = it.state.length + idx.removed;
  $("bar-done").style.width = `${total ? (100 * done) / total : 0}%`;
  $("progress-text").textContent = `${done} / ${total} reviewed (${total ? ((100 * done) / total).toFixed(1) : 0}%)`;
  $("progress-text").title = idx.removed ? `${idx.removed} rejected by an earlier review and removed by the build` : "";
  if (!$("progress-panel").hidden) progressTables();
}

function progressTables() {
  const it = idx.items, im = idx.images;
  const table = (title, names, codeOf) => {
    const rows = names.map((name) => ({ name, done: 0, total: 0, accept: 0, reject: 0, rewrite: 0 }));
    for (let i = 0; i < it.state.length; i++) {
      const row = rows[codeOf(i)];
      row.total++;
      if (it.state[i]) { row.done++; row[STATE_NAMES[it.state[i]]]++; }
    }
    const body = rows.map((r) => `<tr><td>${esc(r.name)}</td><td>${r.done} / ${r.total}</td>` +
      `<td>${r.accept}</td><td>${r.reject}</td><td>${r.rewrite}</td></tr>`).join("");
    return `<table><tr><th>${title}</th><th>reviewed</th><th>accepted</th><th>rejected</th><th>rewritten</th></tr>${body}</table>`;
  };
  $("progress-panel").innerHTML = table("kind", idx.names.kind, (i) => it.kind[i]) +
    table("category", idx.names.category, (i) => im.category[it.image[i]]);
}

// ---- drawing ----------------------------------------------------------------------------

const NON_TARGET = "#facc15", TARGET = "#ef4444", TARGET_FILL = "rgba(239, 68, 68, 0.45)";

function fit(canvas, w, h, box) {
  const s = Math.min(box / w, box / h);
  canvas.width = Math.max(1, Math.round(w * s));
  canvas.height = Math.max(1, Math.round(h * s));
  return s;
}

function tracePolygons(ctx, region, tx, ty, s) {
  ctx.beginPath();
  for (const flat of region.polygons) {
    if (flat.length === 2) { // one pixel: its square
      ctx.rect(tx(flat[0]), ty(flat[1]), Math.max(1, s), Math.max(1, s));
      continue;
    }
    ctx.moveTo(tx(flat[0] + 0.5), ty(flat[1] + 0.5));
    for (let k = 2; k < flat.length; k += 2) ctx.lineTo(tx(flat[k] + 0.5), ty(flat[k + 1] + 0.5));
    ctx.closePath();
  }
}

function drawRegions(ctx, v, target, x0, y0, s, width) {
  const tx = (x) => (x - x0) * s, ty = (y) => (y - y0) * s;
  for (const region of v.regions) {
    const isTarget = target.has(region.region_id);
    tracePolygons(ctx, region, tx, ty, s);
    if (isTarget) { ctx.fillStyle = TARGET_FILL; ctx.fill("evenodd"); }
    ctx.lineWidth = width;
    ctx.strokeStyle = isTarget ? TARGET : NON_TARGET;
    ctx.stroke();
  }
}

function zoomWindow(v, target) {
  const chosen = v.regions.filter((r) => target.has(r.region_id));
  const boxes = (chosen.length ? chosen : v.regions).map((r) => r.bbox);
  if (!boxes.length) return [0, 0, v.width, v.height];
  const x0 = Math.min(...boxes.map((b) => b[0])), y0 = Math.min(...boxes.map((b) => b[1]));
  const x1 = Math.max(...boxes.map((b) => b[0] + b[2])), y1 = Math.max(...boxes.map((b) => b[1] + b[3]));
  const side = Math.min(Math.max(v.width, v.height), Math.max(48, 3 * Math.max(x1 - x0, y1 - y0)));
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  const left = Math.max(0, Math.min(v.width - side, cx - side / 2));
  const top = Math.max(0, Math.min(v.height - side, cy - side / 2));
  return [left, top, Math.min(side, v.width), Math.min(side, v.height)];
}

function draw(v, img, ref) {
  const target = new Set(ref ? ref.region_ids : []);
  const full = $("full"), fctx = full.getContext("2d");
  // each view gets half the views' width, less its padding and border
  const box = Math.max(200, Math.min(640, Math.floor(($("views").clientWidth - 12) / 2) - 18));
  const s = fit(full, v.width, v.height, box);
  fctx.drawImage(img, 0, 0, full.width, full.height);
  drawRegions(fctx, v, target, 0, 0, s, 1.5);
  const [zx, zy, zw, zh] = zoomWindow(v, target);
  fctx.strokeStyle = "#60a5fa";
  fctx.setLineDash([4, 3]);
  fctx.lineWidth = 1;
  fctx.strokeRect(zx * s, zy * s, zw * s, zh * s);
  fctx.setLineDash([]);

  const zoom = $("zoom"), zctx = zoom.getContext("2d");
  const zs = fit(zoom, zw, zh, box);
  zctx.imageSmoothingEnabled = false;
  zctx.drawImage(img, zx, zy, zw, zh, 0, 0, zoom.width, zoom.height);
  drawRegions(zctx, v, target, zx, zy, zs, 2);
  $("zoom-info").textContent = target.size ? `${Math.round(zw)}x${Math.round(zh)} px, x${zs.toFixed(1)}` : "(no target: all regions)";
}

// ---- the panel --------------------------------------------------------------------------

function esc(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function sentenceHtml(s, current) {
  const decided = s.decision ? ` decided-${s.decision}` : "";
  let text = esc(s.text);
  if (s.decision === "rewrite") text = `<span class="old">${esc(s.text)}</span>${esc(s.rewrite)}`;
  let badge = s.decision ? `<span class="badge ${s.decision}">${s.decision}ed</span>`.replace("rewriteed", "rewritten") : "";
  if (s.asserted) badge += ` <span class="badge asserted" title="${esc((s.reasons || []).join("; "))}">asserted</span>`;
  return `<div class="sent${current ? " current" : ""}${decided}" data-item="${s.item}">` +
    `<div class="body"><div class="text">${text}</div><div class="tags"><span class="origin">${esc(s.origin)}</span>${badge}</div></div>` +
    `<span class="acts"><button data-act="accept" title="accept (a)">&#10003;</button>` +
    `<button data-act="reject" title="reject (r)">&#10007;</button>` +
    `<button data-act="edit" title="rewrite (e)">&#9998;</button></span></div>`;
}

function panel(v, item) {
  const ref = idx.items.ref[item];
  $("meta").innerHTML = `<b>${esc(v.category)}</b> / ${esc(v.defect_type)} &middot; ${esc(v.split)} &middot; ` +
    `${v.regions.length} region${v.regions.length === 1 ? "" : "s"} &middot; ${v.width}x${v.height}`;
  $("image-name").textContent = v.image_path;
  $("refs").innerHTML = v.refs.map((r, k) =>
    `<div class="ref${k === ref ? " current" : ""}"><div class="ref-head">${esc(r.kind)} &middot; target ` +
    `${r.region_ids.length ? "region " + r.region_ids.join(", ") : "none"}</div>` +
    r.sentences.map((s) => sentenceHtml(s, s.item === item)).join("") + "</div>").join("");
  $("position").textContent = filtered.length
    ? `sentence ${pos + 1} of ${filtered.length} shown (item ${item + 1} of ${idx.items.image.length})`
    : "no sentence matches the filters";
  const current = $("refs").querySelector(".sent.current");
  if (current) current.scrollIntoView({ block: "nearest" });
}

function sentenceOf(v, item) {
  for (const r of v.refs) for (const s of r.sentences) if (s.item === item) return s;
  return null;
}

let renderSeq = 0;
async function render(t0) {
  const seq = ++renderSeq;
  if (!filtered.length) {
    $("refs").innerHTML = "";
    $("meta").textContent = "";
    $("position").textContent = "no sentence matches the filters";
    return;
  }
  const item = filtered[pos], image = idx.items.image[item];
  const [v, img] = await Promise.all([view(image), picture(image)]);
  if (seq !== renderSeq) return; // a later key press won
  onScreen.clear();
  onScreen.add(img);
  draw(v, img, v.refs[idx.items.ref[item]]);
  panel(v, item);
  perf.renders++;
  if (t0 !== undefined) perf.lastMs = performance.now() - t0;
  prefetch();
}

function prefetch() {
  const seen = new Set();
  for (let k = pos + 1; k < filtered.length && seen.size < 3; k++) {
    const image = idx.items.image[filtered[k]];
    if (seen.has(image)) continue;
    seen.add(image);
    view(image).catch(() => {});
    picture(image).catch(() => {});
  }
}

function move(step, t0 = performance.now()) {
  if (!filtered.length) return;
  pos = Math.max(0, Math.min(filtered.length - 1, pos + step));
  return render(t0);
}

function nextUnreviewed() {
  for (let k = pos + 1; k < filtered.length; k++) {
    if (!idx.items.state[filtered[k]]) { pos = k; return render(performance.now()); }
  }
  say("no unreviewed sentence after this one in the current filter");
}

function say(text, error = false) {
  $("message").textContent = text;
  $("message").className = error ? "error" : "";
}

// ---- decisions --------------------------------------------------------------------------

async function decide(item, decision, text, keep) {
  const v = await view(idx.items.image[item]);
  const s = sentenceOf(v, item);
  const prev = { decision: s.decision, rewrite: s.rewrite };
  const { data } = await api("api/decide", { item, decision, text: text || "", keep: !!keep });
  if (data.refused) return data; // a refused rewrite: the caller shows why
  for (const i of data.items) {
    idx.items.state[i] = data.state;
    const same = sentenceOf(v, i);
    if (same) Object.assign(same, { decision: data.state ? data.decision : null, rewrite: data.rewrite,
      asserted: data.asserted, reasons: data.reasons });
  }
  return { ok: true, prev };
}

async function act(decision) {
  if (!filtered.length) return;
  const item = filtered[pos], t0 = performance.now();
  try {
    const result = await decide(item, decision);
    undo.push([{ item, prev: result.prev }]);
    say(`${decision === "accept" ? "accepted" : "rejected"}; saved`);
    progress();
    if (pos < filtered.length - 1) pos++;
    await render(t0); // timed from the key: the write, its fsync and the next sentence drawn
  } catch (error) { say(error.message, true); }
}

async function acceptAll(scope) {
  // every unreviewed sentence of the current ref ("ref") or image ("image"); decided ones stay
  if (!filtered.length) return;
  const item = filtered[pos], it = idx.items, image = it.image[item];
  const v = await view(image);
  const refs = scope === "ref" ? [v.refs[it.ref[item]]] : v.refs;
  const todo = [];
  for (const r of refs) for (const s of r.sentences) if (!it.state[s.item] && !todo.includes(s.item)) todo.push(s.item);
  if (!todo.length) { say(`every sentence of this ${scope} is already reviewed`); return; }
  const done = [];
  try {
    for (const i of todo) {
      if (it.state[i]) continue; // a sentence sharing a key with one just accepted
      const result = await decide(i, "accept");
      done.push({ item: i, prev: result.prev });
    }
  } catch (error) { say(error.message, true); }
  if (done.length) undo.push(done);
  say(`accepted ${done.length} sentence${done.length === 1 ? "" : "s"} of this ${scope}; saved (u undoes them together)`);
  progress();
  await render(performance.now());
}

async function undoLast() {
  const last = undo.pop();
  if (!last) { say("nothing to undo"); return; }
  try {
    for (const { item, prev } of [...last].reverse()) await decide(item, prev.decision || "clear", prev.rewrite, true);
    const { item, prev } = last[0];
    say(last.length > 1 ? `undone: ${last.length} sentences are as they were`
      : `undone: the sentence is ${prev.decision ? prev.decision + "ed" : "unreviewed"} again`.replace("rewriteed", "rewritten"));
    progress();
    const at = filtered.indexOf(item);
    if (at >= 0) pos = at;
    await render(performance.now());
  } catch (error) { say(error.message, true); }
}

async function openEditor() {
  if (!filtered.length) return;
  const item = filtered[pos];
  const s = sentenceOf(await view(idx.items.image[item]), item);
  editing = true;
  $("editor").hidden = false;
  $("keep").hidden = true;
  $("verdict").innerHTML = "";
  const input = $("rewrite");
  input.value = s.decision === "rewrite" ? s.rewrite : s.text;
  input.focus();
  input.select();
}

function closeEditor() {
  editing = false;
  $("editor").hidden = true;
  clearTimeout(checkTimer);
  $("rewrite").blur();
}

function showChecks(checks) {
  $("verdict").innerHTML = checks.map((c) => c.ok
    ? `<div class="ok">&#10003; ${esc(c.check)}: denotes the target</div>`
    : `<div class="bad">&#10007; ${esc(c.check)}: ${esc(c.reason)}</div>`).join("");
  return checks.every((c) => c.ok);
}

async function liveCheck() {
  const item = filtered[pos], text = $("rewrite").value;
  if (!text.trim()) { $("verdict").innerHTML = ""; return; }
  try {
    const { data } = await api("api/check", { item, text });
    if (editing && $("rewrite").value === text) showChecks(data.checks);
  } catch (error) { say(error.message, true); }
}

async function saveRewrite(keep) {
  const item = filtered[pos], text = $("rewrite").value;
  try {
    const result = await decide(item, "rewrite", text, keep);
    if (!result.ok) {
      showChecks(result.checks);
      $("keep").hidden = false;
      say("refused: the rewrite does not denote the target (see why above); keep it anyway with Shift+Enter", true);
      return;
    }
    undo.push([{ item, prev: result.prev }]);
    closeEditor();
    say(keep ? "rewrite kept, marked as asserted by you; saved" : "rewrite accepted by the checks; saved");
    progress();
    if (pos < filtered.length - 1) pos++;
    await render(performance.now());
  } catch (error) { say(error.message, true); }
}

// ---- wiring -----------------------------------------------------------------------------

document.addEventListener("keydown", (event) => {
  if (editing) {
    if (event.key === "Escape") { closeEditor(); event.preventDefault(); }
    else if (event.key === "Enter") { saveRewrite(event.shiftKey); event.preventDefault(); }
    return;
  }
  if (event.target instanceof HTMLSelectElement || event.ctrlKey || event.metaKey || event.altKey) return;
  const keys = {
    j: () => move(1), ArrowRight: () => move(1), ArrowDown: () => move(1),
    k: () => move(-1), ArrowLeft: () => move(-1), ArrowUp: () => move(-1),
    a: () => act("accept"), r: () => act("reject"), e: () => openEditor(),
    A: () => acceptAll("ref"), I: () => acceptAll("image"),
    u: () => undoLast(), z: () => undoLast(), n: () => nextUnreviewed(),
  };
  if (keys[event.key]) { event.preventDefault(); keys[event.key](); }
});

$("refs").addEventListener("click", (event) => {
  const row = event.target.closest(".sent");
  if (!row) return;
  const item = +row.dataset.item;
  const at = filtered.indexOf(item);
  if (at < 0) { say("that sentence is outside the current filter", true); return; }
  pos = at;
  const act_ = event.target.dataset.act;
  if (act_ === "accept" || act_ === "reject") act(act_);
  else if (act_ === "edit") render().then(openEditor);
  else render(performance.now());
});

$("rewrite").addEventListener("input", () => {
  $("keep").hidden = true;
  clearTimeout(checkTimer);
  checkTimer = setTimeout(liveCheck, 200);
});
$("save").addEventListener("click", () => saveRewrite(false));
$("keep").addEventListener("click", () => saveRewrite(true));
$("cancel").addEventListener("click", closeEditor);
$("toggle-progress").addEventListener("click", () => {
  $("progress-panel").hidden = !$("progress-panel").hidden;
  progress();
});
$("accept-ref").addEventListener("click", () => acceptAll("ref"));
$("accept-image").addEventListener("click", () => acceptAll("image"));
// the panel and the progress details sit below the header, whose height depends on the width
const fitHeader = () => document.documentElement.style.setProperty("--header", `${document.querySelector("header").offsetHeight}px`);
new ResizeObserver(fitHeader).observe(document.querySelector("header")); // it wraps as its texts fill in
fitHeader();

function onFilter() {
  const current = filtered[pos];
  applyFilters(current);
  render(performance.now());
}

async function start() {
  if (!TOKEN) { say("this URL has no token: open the URL that mvtec-ref review printed", true); return; }
  try {
    idx = (await api("api/index")).data;
  } catch (error) { say(error.message, true); return; }
  $("dataset").textContent = `${idx.dataset} · reviewer ${idx.reviewer}`;
  $("dataset").title = `decisions go to ${idx.reviews_file}`;
  document.title = `${idx.dataset}: mvtec-ref review`;
  fitHeader();
  fillSelect($("f-category"), idx.names.category);
  fillSelect($("f-defect"), idx.names.defect);
  fillSelect($("f-kind"), idx.names.kind);
  fillSelect($("f-origin"), idx.names.origin);
  $("f-category").addEventListener("change", () => {
    const cat = $("f-category").value;
    const prefix = cat === "" ? "" : idx.names.category[+cat] + "/";
    fillSelect($("f-defect"), idx.names.defect, (name) => name.startsWith(prefix));
    onFilter();
  });
  for (const id of ["f-defect", "f-kind", "f-origin", "f-todo"]) $(id).addEventListener("change", onFilter);
  if (idx.problems.length) say(`${idx.problems.length} unreadable lines in the reviews file were skipped`, true);
  applyFilters();
  progress();
  await render();
  perf.usableMs = performance.now();
  perf.ready = true;
}

start();
