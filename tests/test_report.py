"""The HTML report: files, the figures' integer axes, and the page in headless Chromium (loads without
console errors, filters, the viewer, figure sizes at 1400 px and on a 1366x768 laptop, screenshots)."""

import json
import os

import pytest
from conftest import headless_chromium, needs_chromium

from mvtec_ref.report import build_report


@pytest.fixture(scope="module")
def report(synth_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "site"
    build_report(synth_dataset, out, progress=False)
    return out


def test_report_with_workers_is_identical(report, synth_dataset, tmp_path):
    out = tmp_path / "site"
    build_report(synth_dataset, out, progress=False, workers=2)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(report) for p in report.rglob("*") if p.is_file())
    for name in files:
        assert (out / name).read_bytes() == (report / name).read_bytes(), name


def test_report_files(report, synth_dataset):
    n = sum(1 for _ in (synth_dataset / "samples.jsonl").open())
    assert len(list((report / "thumbs").iterdir())) == n
    defective = sum(1 for line in (synth_dataset / "samples.jsonl").open() if json.loads(line)["regions"])
    assert len(list((report / "overlays").glob("*.svg"))) == defective > 0
    assert sorted(p.name for p in (report / "plots").iterdir())[0] == "area_ratio_by_category.png"
    page = (report / "index.html").read_text()
    assert "http://" not in page and "https://" not in page  # opens offline, nothing fetched


@needs_chromium
def test_report_in_headless_chromium(report, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = headless_chromium(tmp_path / "profile", "1400,1000")
    try:
        driver.get((report / "index.html").as_uri())
        cards = driver.find_elements(By.CSS_SELECTOR, ".card")
        assert len(cards) == 48  # first page of the gallery
        Select(driver.find_element(By.ID, "f-category")).select_by_value("hazelnut")
        cards = driver.find_elements(By.CSS_SELECTOR, ".card")
        assert 0 < len(cards) < 48 and {c.get_attribute("data-category") for c in cards} == {"hazelnut"}
        # the defect-type filter narrows to the category's own types
        types = [o.get_attribute("value") for o in Select(driver.find_element(By.ID, "f-defect")).options]
        assert types == ["", "crack", "cut", "good", "hole", "print"]
        Select(driver.find_element(By.ID, "f-defect")).select_by_value("crack")
        (card,) = driver.find_elements(By.CSS_SELECTOR, ".card")
        line = next(e for e in card.find_elements(By.CSS_SELECTOR, ".ref") if e.get_attribute("data-targets"))
        ActionChains(driver).move_to_element(line).perform()
        targets = line.get_attribute("data-targets").split(",")
        assert len(card.find_elements(By.CSS_SELECTOR, ".box.on")) == len(targets)
        Select(driver.find_element(By.ID, "f-defect")).select_by_value("")
        driver.execute_script("window.scrollTo(0, document.body.scrollHeight / 2)")
        shot = os.environ.get("MVTEC_REF_SCREENSHOT", str(tmp_path / "report.png"))
        assert driver.save_screenshot(shot)
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()


def test_count_axes_are_integer_and_titles_agree_in_number(synth_dataset, tmp_path, monkeypatch):
    from mvtec_ref import plots
    from mvtec_ref.stats import summarize

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    plots.draw_plots(summarize(synth_dataset, with_raw=True), tmp_path)
    counted = 0
    for fig in figures:
        for ax in fig.axes:
            if not ax.get_visible() or not ax.axison:
                continue
            if ax.get_title().endswith("regions)"):
                assert not ax.get_title().endswith("(1 regions)")
            for axis, label in ((ax.yaxis, ax.get_ylabel()), (ax.xaxis, ax.get_xlabel())):
                if label in ("regions", "defect images", "sentences", "regions in a defect image",
                             "words per sentence"):  # fmt: skip
                    lo, hi = sorted(axis.get_view_interval())
                    ticks = [t for t in axis.get_ticklocs() if lo <= t <= hi]
                    assert ticks and all(float(t).is_integer() for t in ticks), (ax.get_title(), label, ticks)
                    counted += 1
    assert counted >= 5
    titles = [ax.get_title() for fig in figures for ax in fig.axes]
    assert any(t.endswith("(1 region)") for t in titles)  # toothbrush has one region in the small tree


def test_jpeg_thumbnails_decode_at_reduced_size_and_match_a_full_decode(tmp_path, monkeypatch):
    import cv2
    import numpy as np

    from mvtec_ref import report as report_module
    from mvtec_ref.synth.draw import draw_good

    picture, _ = draw_good("hazelnut", 1024, False, np.random.default_rng(0))
    picture = np.ascontiguousarray(picture[:768])  # 1024 x 768: not square
    for name in ("a.jpg", "a.png"):
        assert cv2.imwrite(str(tmp_path / name), picture, [cv2.IMWRITE_JPEG_QUALITY, 95])
    flags = []
    imread = cv2.imread
    monkeypatch.setattr(cv2, "imread", lambda path, flag: flags.append(flag) or imread(path, flag))
    thumb = report_module.shrink_image(tmp_path / "a.jpg", (1024, 768), (256, 192))
    full = cv2.resize(
        imread(str(tmp_path / "a.jpg"), cv2.IMREAD_COLOR), (256, 192), interpolation=cv2.INTER_AREA
    )
    assert flags == [cv2.IMREAD_REDUCED_COLOR_4]  # 1024 / 4 = 256: one decode at a quarter size
    assert thumb.shape == full.shape == (192, 256, 3)
    diff = np.abs(thumb.astype(int) - full)
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 4
    # 1/8 would leave 128 < 200 px: a quarter; a PNG is decoded whole.
    flags.clear()
    report_module.shrink_image(tmp_path / "a.jpg", (1024, 768), (200, 150))
    report_module.shrink_image(tmp_path / "a.png", (1024, 768), (200, 150))
    assert flags == [cv2.IMREAD_REDUCED_COLOR_4, cv2.IMREAD_COLOR]


def test_default_workers_use_the_cores_only_for_large_datasets(monkeypatch):
    import os

    from mvtec_ref.report import POOL_MIN, default_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert default_workers(POOL_MIN - 1) == 1
    assert default_workers(5354) == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert default_workers(5354) == 8


def _text_px(driver, image) -> float:
    """On-screen size in px of a figure's smallest text: MIN_FONT_PT at DPI, times the image's scale."""
    from mvtec_ref.plots import DPI, MIN_FONT_PT

    natural, shown = driver.execute_script(
        "const i = arguments[0]; return [i.naturalWidth, i.clientWidth]", image
    )
    assert natural > 0, image.get_attribute("src")
    return MIN_FONT_PT * DPI / 72 * shown / natural


@needs_chromium
@pytest.mark.parametrize("size", ["1400,1000", "1366,768"])
def test_report_reads_well_at_1400_px_and_on_a_laptop(report, synth_dataset, tmp_path, size):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from mvtec_ref.build import iter_samples
    from mvtec_ref.stats import stat_tables, summarize

    driver = headless_chromium(tmp_path / "profile", size)
    try:
        driver.get((report / "index.html").as_uri())
        WebDriverWait(driver, 20).until(
            lambda d: d.execute_script(
                "return [...document.images].filter(i => i.classList.contains('plot'))"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )  # fmt: skip
        )
        plots = driver.find_elements(By.CSS_SELECTOR, "img.plot")
        assert len(plots) == 4
        for image in plots:  # every figure's text at least 10 px on screen
            assert _text_px(driver, image) >= 10, (image.get_attribute("src"), size)
        wide = driver.find_element(By.CSS_SELECTOR, "img.plot.wide")
        assert "area_ratio_by_category" in wide.get_attribute("src")

        # every table stats prints, each in the table of contents; the build's facts
        titles = [t.title for t in stat_tables(summarize(synth_dataset)) if t.header]
        assert {"Regions by defect type", "Expressions by split", "Pixel judge"} <= set(titles)
        headings = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "h3")]
        assert headings == titles
        links = [a.get_attribute("hash") for a in driver.find_elements(By.CSS_SELECTOR, "nav.toc a")]
        assert len(links) == len(titles) + 3
        assert all(
            driver.execute_script("return !!document.getElementById(arguments[0])", h[1:]) for h in links
        )
        facts = driver.find_element(By.CSS_SELECTOR, "table.facts").text
        manifest = json.loads((synth_dataset / "manifest.json").read_text())
        assert manifest["source"]["fingerprint"] in facts and "seed 0" in facts.replace("\n", " ")

        # card titles break only after a "/", cards keep their own height
        broken = driver.execute_script(
            "const bad = [];"
            "for (const t of document.querySelectorAll('.card .id')) for (const n of t.childNodes) {"
            "  if (n.nodeType !== 3) continue; const r = document.createRange(); r.selectNodeContents(n);"
            "  if (r.getClientRects().length > 1) bad.push(n.textContent); }"
            "return bad"
        )
        assert broken == []
        heights = driver.execute_script(
            "return [...document.querySelectorAll('.card')].slice(0, 3).map(c => c.offsetHeight)"
        )
        assert len(set(heights)) > 1

        # a thumbnail opens the source image at full resolution with its regions drawn over it
        first = next(r for _, r in iter_samples(synth_dataset) if r["regions"])
        driver.execute_script("document.querySelector('.card .frame').click()")
        WebDriverWait(driver, 20).until(
            lambda d: d.execute_script(
                "const i = document.getElementById('viewer-image');return i.complete && i.naturalWidth > 0"
            )  # fmt: skip
        )
        natural = driver.execute_script(
            "const i = document.getElementById('viewer-image'), o = document.getElementById('viewer-svg');"
            "return [i.naturalWidth, i.naturalHeight, o.complete && o.naturalWidth > 0, "
            "document.getElementById('viewer').open, i.src]"
        )
        assert natural[:4] == [first["width"], first["height"], True, True]
        assert natural[4].endswith(first["image_path"])  # the source file itself, not the thumbnail
        shot = os.environ.get("MVTEC_REF_VIEWER_SCREENSHOT", str(tmp_path / f"viewer-{size}.png"))
        assert driver.save_screenshot(shot.replace(".png", f"-{size.replace(',', 'x')}.png"))
        driver.execute_script("document.getElementById('viewer').close()")
        driver.execute_script("document.getElementById('figures').scrollIntoView()")
        shot = os.environ.get("MVTEC_REF_FIGURES_SCREENSHOT", str(tmp_path / "figures.png"))
        assert driver.save_screenshot(shot.replace(".png", f"-{size.replace(',', 'x')}.png"))
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        driver.quit()
