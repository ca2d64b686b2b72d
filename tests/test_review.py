"""mvtec-ref review: decision keys, the reviews file, build --reviews, stats, export, and the app
in headless Chromium (accept, reject, rewrites checked live, reload, rebuild, token, traversal)."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner
from conftest import headless_chromium, needs_chromium

from mvtec_ref.build import BuildConfig, build_dataset, iter_samples, load_manifest
from mvtec_ref.cli import main
from mvtec_ref.review.keys import target_key
from mvtec_ref.review.store import ReviewWriter, load_decisions


def _records(dataset):
    return [r for _, r in iter_samples(dataset)]


def _line(record, ref, text, decision, **extra):
    return {
        "image": record["image_path"],
        "target": target_key(record, ref["region_ids"]),
        "text": text,
        "decision": decision,
        "reviewer": "tester",
        **extra,
    }


# -- keys ------------------------------------------------------------------------------------


def test_target_key_names_pixels_not_ids(synth_dataset):
    record = next(r for r in _records(synth_dataset) if len(r["regions"]) >= 2)
    a, b = record["regions"][:2]
    one = target_key(record, [a["region_id"]])
    both = target_key(record, [a["region_id"], b["region_id"]])
    assert one != both and both == target_key(record, [b["region_id"], a["region_id"]])
    # the same pixels under other region ids (another build numbering them differently)
    renumbered = {**record, "regions": [{**a, "region_id": 7}, {**b, "region_id": 3}]}
    assert target_key(renumbered, [7]) == one and target_key(renumbered, [3, 7]) == both
    # the union's key is the key of the merged mask's own RLE
    from mvtec_ref.export.common import target_mask
    from mvtec_ref.regions.mask import encode_rle

    merged = {
        **record,
        "regions": [
            {
                **a,
                "region_id": 0,
                "segmentation": encode_rle(target_mask(record, [a["region_id"], b["region_id"]])),
            }
        ],
    }
    assert target_key(merged, [0]) == both
    assert target_key(record, []) == f"{record['height']}x{record['width']}:empty"


# -- the reviews file ------------------------------------------------------------------------


def test_latest_line_wins_clear_undoes_torn_line_skipped(tmp_path):
    path = tmp_path / "reviews.jsonl"
    writer = ReviewWriter(path)
    base = {"image": "a.png", "target": "4x4:empty", "text": "anomaly"}
    writer.append({**base, "decision": "accept"})
    writer.append({**base, "decision": "reject"})
    writer.append({**base, "text": "other", "decision": "accept"})
    writer.append({**base, "text": "other", "decision": "clear"})
    with path.open("a") as f:
        f.write('{"image": "a.png", "target": "4x4:empty", "text": "anom')  # a kill in mid-write
    decisions, problems = load_decisions(path)
    assert list(decisions) == [("a.png", "4x4:empty", "anomaly")]
    assert decisions["a.png", "4x4:empty", "anomaly"]["decision"] == "reject"
    assert len(problems) == 1 and "line 5" in problems[0] and "not JSON" in problems[0]
    with pytest.raises(ValueError, match="rewrite"):
        writer.append({**base, "decision": "rewrite"})  # a rewrite needs its text


def test_concurrent_writers_interleave_whole_lines(tmp_path):
    path = tmp_path / "reviews.jsonl"
    writers = [ReviewWriter(path), ReviewWriter(path)]  # two tabs' servers on one file

    def write(w, tag):
        for i in range(200):
            w.append(
                {
                    "image": f"{tag}.png",
                    "target": "1x1:empty",
                    "text": "x" * (i % 50 + 1) + " " * 3000,
                    "decision": "accept",
                }
            )

    threads = [threading.Thread(target=write, args=(w, t)) for w, t in zip(writers, "ab", strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 400 and all(json.loads(line)["decision"] == "accept" for line in lines)


# -- build --reviews, stats, export ----------------------------------------------------------


def test_build_applies_reviews_across_seeds(synth_tree, synth_dataset, tmp_path):
    """Decisions made on the seed-0 build apply to a seed-1 build wherever the same sentence exists."""
    records = _records(synth_dataset)
    other = tmp_path / "seed1"
    build_dataset(synth_tree, other, BuildConfig(seed=1), progress=False)
    seed1 = {
        (r["image_path"], target_key(r, ref["region_ids"]), s["text"])
        for r in _records(other)
        for ref in r["refs"]
        for s in ref["sentences"]
    }
    shared = [
        (r, ref, s["text"])
        for r in records
        for ref in r["refs"]
        for s in ref["sentences"]
        if (r["image_path"], target_key(r, ref["region_ids"]), s["text"]) in seed1
        and ref["region_ids"]
        and len(ref["sentences"]) >= 2
    ]
    (acc_r, acc_ref, acc_t), (rej_r, rej_ref, rej_t), (rw_r, rw_ref, rw_t) = shared[0], shared[40], shared[80]
    reviews = tmp_path / "reviews.jsonl"
    writer = ReviewWriter(reviews)
    writer.append(_line(acc_r, acc_ref, acc_t, "accept"))
    writer.append(_line(rej_r, rej_ref, rej_t, "reject"))
    writer.append(_line(rw_r, rw_ref, rw_t, "rewrite", rewrite="the  anomalies ", asserted=False))
    writer.append(
        {"image": "bottle/test/none.png", "target": "1x1:empty", "text": "gone", "decision": "accept"}
    )

    out = tmp_path / "reviewed"
    result = runner_ok(
        [
            "build",
            "--root",
            str(synth_tree),
            "--out",
            str(out),
            "--seed",
            "1",
            "--quiet",
            "--reviews",
            str(reviews),
        ]
    )
    assert "1 problem," in result.output
    # build says what it applied, in the line stats prints, and the app counts the same
    said = [line for line in result.output.splitlines() if line.startswith("human review")]
    assert len(said) == 1 and "3 of 4 decisions applied, 1 match nothing" in said[0]
    samples = {r["image_path"]: r for r in _records(out)}

    def sentences(record, ref):
        key = target_key(record, ref["region_ids"])
        rec = samples[record["image_path"]]
        return [s for g in rec["refs"] if target_key(rec, g["region_ids"]) == key for s in g["sentences"]]

    accepted = [s for s in sentences(acc_r, acc_ref) if s["text"] == acc_t]
    assert accepted and all(s["review"] == {"status": "accepted", "reviewer": "tester"} for s in accepted)
    assert not [s for s in sentences(rej_r, rej_ref) if s["text"] == rej_t]
    written = [s for s in sentences(rw_r, rw_ref) if s["origin"] == "human"]
    assert [s["text"] for s in written] == ["the anomalies"] and written[0]["rewrite_of"] == rw_t
    assert written[0]["review"] == {"status": "written", "reviewer": "tester", "asserted": False}
    assert not [s for s in sentences(rw_r, rw_ref) if s["text"] == rw_t]

    manifest = load_manifest(out)
    review = manifest["review"]
    assert (review["decisions"], review["matched"], review["unmatched"]) == (4, 3, 1)
    assert review["total"]["accepted"] == 1 and review["total"]["rejected"] == 1
    assert review["total"]["rewritten"] == 1
    assert [p["kind"] for p in manifest["problems"]] == ["review_unmatched"]
    assert "'gone'" in manifest["problems"][0]["problem"]
    assert runner_ok(["validate", str(out), "--no-files"]).output.strip().endswith("valid")

    stats = runner_ok(["stats", str(out)]).output
    assert "review by kind" in stats and "review by origin" in stats and "review by category" in stats
    assert said[0] in stats.splitlines()
    total = review["total"]["sentences"]
    assert f"3 of {total:,} sentences reviewed" in said[0]
    from mvtec_ref.review.session import ReviewSession

    index = ReviewSession(out, reviews, "tester").index()  # the app on the rebuilt dataset
    states = index["items"]["state"]
    assert (sum(1 for s in states if s) + index["removed"], len(states) + index["removed"]) == (3, total)
    human = [i for i, o in enumerate(index["items"]["origin"]) if index["names"]["origin"][o] == "human"]
    assert len(human) == 1 and states[human[0]] == 3  # the reviewer's own rewrite counts as reviewed
    rows = [line.split() for line in stats.split("review by kind")[1].splitlines() if line.startswith("ALL")]
    assert rows[0] == ["ALL", str(total), "3", f"{3 / total:.1%}", "1", "1", "1", "33.3%"]

    exported = tmp_path / "export"
    runner_ok(
        [
            "export",
            str(out),
            "--format",
            "jsonl",
            "--out",
            str(exported),
            "--images",
            "none",
            "--reviewed-only",
        ]
    )
    lines = [json.loads(x) for x in (exported / "refs.jsonl").read_text().splitlines()]
    assert sorted(x["text"] for x in lines) == sorted([acc_t] * len(accepted) + ["the anomalies"])
    refused = CliRunner().invoke(
        main, ["export", str(other), "--format", "jsonl", "--out", str(tmp_path / "x"), "--reviewed-only"]
    )
    assert refused.exit_code == 1 and "no review applied" in refused.output


def runner_ok(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result


def test_review_cli_checks_options(tmp_path):
    assert "--reviewer" in runner_ok(["review", "--help"]).output
    missing = CliRunner().invoke(main, ["review", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    absent = CliRunner().invoke(
        main,
        [
            "build",
            "--root",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--reviews",
            str(tmp_path / "none.jsonl"),
        ],
    )
    assert absent.exit_code == 2 and "none.jsonl" in absent.output
    not_dataset = CliRunner().invoke(main, ["review", str(tmp_path)])
    assert not_dataset.exit_code == 1 and "manifest.json: not found" in not_dataset.output


def test_every_registered_check_can_refuse_a_rewrite(synth_dataset, tmp_path, monkeypatch):
    """A judge added to CHECKS (as the pixel judge will be) is run on rewrites and can refuse them."""
    from mvtec_ref.review import checks
    from mvtec_ref.review.session import ReviewSession

    seen = []

    def picky(text, target, record, vocab, image):
        seen.append(image().shape[:2] == (record["height"], record["width"]))
        return "too picky" if "defect" in text else ""

    monkeypatch.setitem(checks.CHECKS, "picky", picky)
    session = ReviewSession(synth_dataset, tmp_path / "r.jsonl", "tester")
    item = next(i for i, k in enumerate(session.keys) if k[1].endswith(":empty") is False)
    refused = session.decide(item, "rewrite", "any defect")  # number-neutral: true of any target
    assert refused["refused"] and [c["check"] for c in refused["checks"]] == ["parser", "pixel", "picky"]
    assert refused["checks"][2] == {"check": "picky", "ok": False, "reason": "too picky"}
    assert not (tmp_path / "r.jsonl").exists()
    kept = session.decide(item, "rewrite", "any defect", keep=True)
    assert kept["asserted"] and kept["reasons"] == ["picky: too picky"]
    assert session.decide(item + 1, "rewrite", "the anomaly")["asserted"] is False
    assert seen and all(seen)


def test_session_reads_the_file_it_indexed_after_a_rebuild(synth_tree, tmp_path):
    """A rebuild replaces the dataset folder under a running server: pages must not mix builds."""
    from mvtec_ref.review.session import ReviewSession

    dataset = tmp_path / "ds"
    build_dataset(synth_tree, dataset, BuildConfig(categories=("bottle", "grid")), progress=False)
    session = ReviewSession(dataset, tmp_path / "r.jsonl", "tester")
    ids = list(session.images["id"])
    build_dataset(synth_tree, dataset, BuildConfig(categories=("grid", "hazelnut")), progress=False)
    assert [session.record(i)["id"] for i in range(len(ids))] == ids
    assert session.image_view(len(ids) - 1)["id"] == ids[-1]


def test_images_a_browser_cannot_show_are_sent_as_png(tmp_path):
    import cv2
    import numpy as np

    from mvtec_ref.review.session import ReviewSession

    root, dataset = tmp_path / "src", tmp_path / "ds"
    root.mkdir()
    dataset.mkdir()
    pixels = np.zeros((6, 8, 3), np.uint8)
    pixels[1, 2] = (255, 0, 0)  # red in RGB
    assert cv2.imwrite(str(root / "a.tif"), pixels[:, :, ::-1])
    assert cv2.imwrite(str(root / "b.png"), pixels[:, :, ::-1])
    (dataset / "manifest.json").write_text(json.dumps({"name": "t", "source": {"root": str(root)}}))
    refs = [{"kind": "no_target", "region_ids": [], "sentences": [{"text": "anomaly", "origin": "template"}]}]
    lines = [
        {
            "id": n,
            "image_path": n,
            "category": "c",
            "defect_type": "good",
            "height": 6,
            "width": 8,
            "regions": [],
            "refs": refs,
        }
        for n in ("a.tif", "b.png")
    ]
    (dataset / "samples.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    session = ReviewSession(dataset, tmp_path / "r.jsonl", "tester")
    data, media = session.image_bytes(0)
    assert media == "image/png" and data.startswith(b"\x89PNG")
    back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    assert (back == pixels).all()
    assert session.image_bytes(1) == ((root / "b.png").read_bytes(), "image/png")  # sent as stored


# -- the app ---------------------------------------------------------------------------------


def _start_server(dataset, reviews):
    """``mvtec-ref review`` in a subprocess on a free port; returns (process, url)."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mvtec_ref",
            "review",
            str(dataset),
            "--reviews",
            str(reviews),
            "--port",
            "0",
            "--reviewer",
            "tester",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        found = re.search(r"open (http://\S+)", line)
        if found:
            return process, found.group(1)
        if process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"server did not start: {line!r}")


def _raw(url, method, path, body=None, headers=None):
    """One request with the path sent exactly as given (no client-side ``..`` folding)."""
    host, port = re.match(r"http://([^:/]+):(\d+)", url).groups()
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest(method, path, skip_accept_encoding=True, skip_host="Host" in (headers or {}))
    data = json.dumps(body).encode() if body is not None else b""
    for k, v in {
        "Content-Type": "application/json",
        "Content-Length": str(len(data)),
        **(headers or {}),
    }.items():
        conn.putheader(k, v)
    conn.endheaders(data)
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    return response.status, payload


@pytest.fixture
def server(synth_dataset, tmp_path):
    reviews = tmp_path / "reviews.jsonl"
    process, url = _start_server(synth_dataset, reviews)
    yield url, reviews, process
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def test_token_required_and_no_path_escapes(server):
    url, reviews, _ = server
    token = url.split("token=")[1]
    assert _raw(url, "GET", "/")[0] == 200  # the page itself holds nothing
    # bound to loopback, only loopback names are served (a rebinding DNS name gets 400)
    assert _raw(url, "GET", f"/api/index?token={token}", headers={"Host": "evil.example"})[0] == 400
    assert _raw(url, "GET", "/api/index")[0] == 403
    assert _raw(url, "GET", f"/api/index?token={token}")[0] == 200
    write = {"item": 0, "decision": "accept"}
    assert _raw(url, "POST", "/api/decide", write)[0] == 403
    assert _raw(url, "POST", "/api/decide", write, {"X-Review-Token": "wrong"})[0] == 403
    assert _raw(url, "POST", f"/api/decide?token={token}", write)[0] == 403  # writes need the header
    assert not reviews.exists()
    for path in [
        "/static/../manifest.json",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/../samples.jsonl",
        "/static/..%2f..%2fapp.py",
        f"/img/../../etc/passwd?token={token}",
        "/static/../../../etc/passwd",
        f"/img/999999?token={token}",
    ]:
        status, body = _raw(url, "GET", path)
        assert status == 404, (path, status)
        assert b"root:" not in body and b"import" not in body
    bad = _raw(url, "POST", "/api/decide", {"item": 10**9, "decision": "accept"}, {"X-Review-Token": token})
    assert bad[0] == 400
    assert _raw(url, "POST", "/api/decide", write, {"X-Review-Token": token})[0] == 200
    assert len(reviews.read_text().splitlines()) == 1


def test_kill_loses_nothing_written(server):
    url, reviews, process = server
    token = url.split("token=")[1]
    for item, decision in enumerate(["accept", "reject", "accept"]):
        body = {"item": item, "decision": decision}
        assert _raw(url, "POST", "/api/decide", body, {"X-Review-Token": token})[0] == 200
    process.kill()  # SIGKILL: no shutdown code runs
    process.wait(10)
    decisions, problems = load_decisions(reviews)
    assert len(decisions) == 3 and not problems


@needs_chromium
def test_review_in_headless_chromium(server, synth_tree, synth_dataset, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    url, reviews, _ = server
    driver = headless_chromium(tmp_path / "profile", "1500,950")
    wait = WebDriverWait(driver, 20)

    def ready():
        wait.until(lambda d: d.execute_script("return window.__review && window.__review.ready"))

    def press(*keys):
        ActionChains(driver).send_keys(*keys).perform()

    def lines():
        return [json.loads(x) for x in reviews.read_text().splitlines()] if reviews.exists() else []

    def current_text():
        # read in one script: the panel is re-drawn after each key, so element handles go stale
        return driver.execute_script(
            "const e = document.querySelector('.sent.current .text'); return e && e.textContent"
        )

    try:
        driver.get(url)
        ready()
        assert driver.find_element(By.ID, "progress-text").text.startswith("0 / ")
        first = current_text()
        press("a")  # accept, then the page moves on
        wait.until(lambda d: len(lines()) == 1)
        wait.until(lambda d: current_text() != first)
        second = current_text()
        press("r")
        wait.until(lambda d: len(lines()) == 2)
        wait.until(lambda d: current_text() != second)
        third = current_text()
        press("e")  # a true rewrite: the checks accept it
        box = driver.find_element(By.ID, "rewrite")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys("any defect")
        wait.until(lambda d: "denotes the target" in d.find_element(By.ID, "verdict").text)  # checked live
        box.send_keys(Keys.ENTER)
        wait.until(lambda d: len(lines()) == 3)
        wait.until(lambda d: current_text() != third)
        fourth = current_text()
        press("e")  # a false rewrite: refused with the checker's reason
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys("the scratch at the top left of the bottle")
        box.send_keys(Keys.ENTER)
        wait.until(lambda d: "refused" in d.find_element(By.ID, "message").text)
        assert "names no defect type" in driver.find_element(By.ID, "verdict").text
        assert driver.find_element(By.ID, "keep").is_displayed()
        assert len(lines()) == 3  # nothing written
        box.send_keys(Keys.ESCAPE)
        press("u")  # undo the rewrite of the third
        wait.until(lambda d: len(lines()) == 4)
        assert lines()[-1]["decision"] == "clear" and lines()[-1]["text"] == third
        press("e")  # and rewrite it again (the editor opens on the third, where undo moved)
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys("any defect")
        box.send_keys(Keys.ENTER)
        wait.until(lambda d: len(lines()) == 5)
        assert [x["decision"] for x in lines()] == ["accept", "reject", "rewrite", "clear", "rewrite"]
        assert [x["text"] for x in lines()] == [first, second, third, third, third]
        assert lines()[2]["rewrite"] == "any defect" and lines()[2]["asserted"] is False
        wait.until(lambda d: current_text() == fourth)  # the file is written before the page moves on
        # keep a false rewrite anyway: it is marked as asserted by the reviewer
        press("e")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys("the scratch at the top left of the bottle")
        box.send_keys(Keys.ENTER)
        wait.until(lambda d: d.find_element(By.ID, "keep").is_displayed())
        box.send_keys(Keys.SHIFT, Keys.ENTER)
        wait.until(lambda d: len(lines()) == 6)
        assert lines()[-1]["asserted"] is True and "names no defect type" in lines()[-1]["reasons"][0]

        driver.refresh()  # the state is kept across a reload
        ready()
        progress = driver.find_element(By.ID, "progress-text").text
        assert progress.startswith("4 / ")
        total = int(progress.split(" / ")[1].split()[0])
        badges = driver.execute_script(
            "return [...document.querySelectorAll('.sent .badge')].map(e => e.textContent)"
        )
        assert badges[:5] == ["accepted", "rejected", "rewritten", "rewritten", "asserted"]
        driver.find_element(By.ID, "f-todo").click()  # the filters: not yet reviewed, then a category
        wait.until(lambda d: f"of {total - 4} shown" in d.find_element(By.ID, "position").text)
        assert current_text() not in (first, second, third, fourth)
        Select(driver.find_element(By.ID, "f-category")).select_by_visible_text("hazelnut")
        wait.until(lambda d: d.find_element(By.ID, "meta").text.startswith("hazelnut /"))
        driver.find_element(By.ID, "toggle-progress").click()
        table = driver.find_element(By.ID, "progress-panel").text
        assert "bottle 4 / " in table and "universal" in table
        shot = os.environ.get("MVTEC_REF_REVIEW_SCREENSHOT", str(tmp_path / "review.png"))
        assert driver.save_screenshot(shot)
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()

    out = tmp_path / "rebuilt"
    build_dataset(synth_tree, out, BuildConfig(), progress=False, reviews=reviews)
    record = _records(out)[0]
    texts = [s for ref in record["refs"] for s in ref["sentences"]]
    assert [s["review"]["status"] for s in texts if s["text"] == first] == ["accepted"]
    assert second not in [s["text"] for s in texts]
    human = [s for s in texts if s["origin"] == "human"]
    assert [(s["text"], s["rewrite_of"], s["review"]["asserted"]) for s in human] == [
        ("any defect", third, False),
        ("the scratch at the top left of the bottle", fourth, True),
    ]
    assert load_manifest(out)["review"]["unmatched"] == 0


@needs_chromium
def test_batch_accept_undo_and_layout_at_1366x768(synth_tree, tmp_path):
    """Shift+A accepts a ref, Shift+I an image, one u undoes either; the editor's save button and
    the progress details stay in view at 1366x768; a rebuilt dataset counts as stats does."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    dataset = tmp_path / "carpet"
    build_dataset(synth_tree, dataset, BuildConfig(categories=("carpet",)), progress=False)
    reviews = tmp_path / "carpet.reviews.jsonl"
    process, url = _start_server(dataset, reviews)
    driver = headless_chromium(tmp_path / "profile", "1366,768")
    wait = WebDriverWait(driver, 20)

    def lines():
        return [json.loads(x) for x in reviews.read_text().splitlines()] if reviews.exists() else []

    def done():
        return int(driver.find_element(By.ID, "progress-text").text.split(" / ")[0])

    def in_view(element_id):
        return driver.execute_script(
            "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
            "return r.width > 0 && r.top >= 0 && r.bottom <= innerHeight && r.right <= innerWidth",
            element_id,
        )

    try:
        driver.get(url)
        wait.until(lambda d: d.execute_script("return window.__review && window.__review.ready"))
        assert driver.find_element(By.ID, "dataset").text.startswith("carpet ·")  # the folder's name
        ref_size, image_size = driver.execute_script(
            "const cur = document.querySelector('.ref.current');"
            "return [cur.querySelectorAll('.sent').length, document.querySelectorAll('#refs .sent').length]"
        )
        assert 1 <= ref_size < image_size
        ActionChains(driver).send_keys("A").perform()  # the current ref
        wait.until(lambda d: done() == ref_size)
        n_ref = len(lines())  # a text repeated under one target is one decision
        ActionChains(driver).send_keys("I").perform()  # the rest of the image
        wait.until(lambda d: done() == image_size)
        n_image = len(lines())
        assert 1 <= n_ref < n_image and {x["decision"] for x in lines()} == {"accept"}
        ActionChains(driver).send_keys("u").perform()  # undoes the image's batch only
        wait.until(lambda d: done() == ref_size and len(lines()) == 2 * n_image - n_ref)
        assert {x["decision"] for x in lines()[n_image:]} == {"clear"}
        ActionChains(driver).send_keys("u").perform()
        wait.until(lambda d: done() == 0)
        assert load_decisions(reviews)[0] == {}

        ActionChains(driver).send_keys("e").perform()  # the editor opens in view
        wait.until(lambda d: d.find_element(By.ID, "save").is_displayed())
        assert in_view("save") and in_view("rewrite") and in_view("message")
        driver.find_element(By.ID, "rewrite").send_keys(Keys.ESCAPE)
        driver.find_element(By.ID, "toggle-progress").click()
        assert in_view("progress-panel")
        # below the header: the progress bar and its button stay visible and clickable
        assert driver.execute_script(
            "const h = document.querySelector('header').getBoundingClientRect().bottom;"
            "return document.getElementById('progress-panel').getBoundingClientRect().top >= h"
            " && document.querySelector('.panel').getBoundingClientRect().top >= h"
        )
        shot = os.environ.get("MVTEC_REF_REVIEW_SCREENSHOT_1366", str(tmp_path / "review-1366.png"))
        assert driver.save_screenshot(shot)
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        driver.quit()
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
