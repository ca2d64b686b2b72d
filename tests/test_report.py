"""The HTML report in headless Chromium: loads without console errors, filters work, screenshot."""

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
    imread, imdecode = cv2.imread, cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda data, flag: flags.append(flag) or imdecode(data, flag))
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
