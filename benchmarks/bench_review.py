"""How fast ``mvtec-ref review`` is on a real-sized dataset, measured in headless Chromium.

Usage: ``python -m benchmarks.bench_review DATASET [--presses N]`` (DATASET built from
``synth --scale full``: 5,354 images, about 28,000 sentences). Decisions go to a temporary
file, so the dataset and any reviews file are left alone.

Prints one JSON object:
- ``server_start_s``: from launching the command to its printed URL (samples.jsonl indexed);
- ``usable_ms``: from navigation start to the first image drawn with its sentences (the page's
  own ``performance.now()``);
- ``next_ms``: p50 / p95 / max over N presses of ``j``, from the key handler to the next
  sentence drawn (crossing images, which the page fetched ahead);
- ``cold_ms``: the same after choosing a category not yet seen in the filter (nothing fetched
  ahead: the record, its outlines and the image come from the server while the reviewer waits);
- ``accept_ms``: ``a``, from the key to the next sentence drawn, the decision written and
  fsynced on the way;
- ``server_rss_mb``, ``server_peak_rss_mb`` (VmRSS, VmHWM), ``browser_pss_mb`` (proportional
  set size of the Chromium processes by type, on about:blank first and after the run) and the
  page's JS heap.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def _pss_mb(pid: int) -> float:
    """Proportional set size: shared pages split among the processes that map them, so a sum over
    processes counts each page once (0 for a process that is gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0.0
    found = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) / 1024 if found else 0.0


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        children.setdefault(int(fields["PPid"]), []).append(int(status.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _browser_pss(driver) -> dict:
    """PSS in MB of every process under chromedriver, by Chromium process type, and the total."""
    found: dict[str, float] = {}
    for pid in _descendants(driver.service.process.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        typed = re.search(r"--type=(\S+)", cmdline)  # Chromium rewrites argv into one string
        kind = typed.group(1) if typed else Path(cmdline.split(" ")[0]).name
        found[kind] = found.get(kind, 0.0) + _pss_mb(pid)
    found = {k: round(v, 1) for k, v in sorted(found.items())}
    return {**found, "total": round(sum(found.values()), 1)}


def _quantiles(values: list[float]) -> dict:
    values = sorted(values)
    return {
        "n": len(values),
        "p50": round(statistics.median(values), 1),
        "p95": round(values[int(0.95 * (len(values) - 1))], 1),
        "max": round(values[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--presses", type=int, default=300)
    parser.add_argument("--screenshot", type=Path)
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import Select, WebDriverWait

    work = Path(tempfile.mkdtemp(prefix="bench_review_"))
    start = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "mvtec_ref", "review", str(args.dataset), "--reviews", str(work / "r.jsonl"),
         "--port", "0", "--reviewer", "bench"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = None
    while url is None:
        line = server.stdout.readline()
        if not line:
            raise SystemExit(f"server exited: {server.wait()}")
        found = re.search(r"open (http://\S+)", line)
        url = found.group(1) if found else None
    result = {"server_start_s": round(time.perf_counter() - start, 2)}

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={work / 'profile'}", "--window-size=1500,950",
                "--enable-precise-memory-info"]:  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    wait = WebDriverWait(driver, 60)
    state = "return window.__review"
    try:
        driver.get("about:blank")
        time.sleep(2)
        result["browser_pss_blank_mb"] = _browser_pss(driver)
        driver.get(url)
        wait.until(lambda d: d.execute_script("return window.__review && window.__review.ready"))
        result["usable_ms"] = round(driver.execute_script(state)["usableMs"], 1)
        result["sentences"] = driver.execute_script("return idx.items.image.length")
        result["browser_pss_open_mb"] = _browser_pss(driver)

        def press(key: str) -> float:
            before = driver.execute_script(state)["renders"]
            ActionChains(driver).send_keys(key).perform()
            wait.until(lambda d: d.execute_script(state)["renders"] > before)
            return driver.execute_script(state)["lastMs"]

        result["next_ms"] = _quantiles([press("j") for _ in range(args.presses)])
        cold = []
        names = driver.execute_script("return idx.names.category")
        for code in range(len(names) - 1, len(names) - 6, -1):  # categories the page has not fetched
            before = driver.execute_script(state)["renders"]
            Select(driver.find_element("id", "f-category")).select_by_value(str(code))
            wait.until(lambda d, b=before: d.execute_script(state)["renders"] > b)
            cold.append(driver.execute_script(state)["lastMs"])
            driver.find_element("tag name", "body").click()
        result["cold_ms"] = _quantiles(cold)
        result["accept_ms"] = _quantiles([press("a") for _ in range(50)])
        rss, peak = _rss_mb(server.pid)
        result["server_rss_mb"], result["server_peak_rss_mb"] = round(rss, 1), round(peak, 1)
        result["browser_pss_mb"] = _browser_pss(driver)
        heap = driver.execute_script("return performance.memory && performance.memory.usedJSHeapSize")
        result["page_js_heap_mb"] = round(heap / 2**20, 1) if heap else None
        if args.screenshot:
            driver.save_screenshot(str(args.screenshot))
    finally:
        driver.quit()
        server.terminate()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
