"""Shared fixtures: a synthetic MVTec tree written once per session, and the real samples."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# ../shared/data from the repository root; MVTEC_REF_SHARED_DATA points elsewhere (a worktree).
SHARED_DATA = Path(
    os.environ.get("MVTEC_REF_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)
REAL_AD = SHARED_DATA / "mvtec_ad_sample"
REAL_AD_256 = SHARED_DATA / "mvtec_ad_sample_resized256"

needs_real_data = pytest.mark.skipif(
    not REAL_AD.is_dir(), reason=f"real MVTec AD sample not found at {REAL_AD}"
)


@pytest.fixture(autouse=True)
def _no_api_keys(monkeypatch):
    """Nothing in the tests may call a paid or remote API by accident."""
    for key in list(os.environ):
        if key.endswith("_API_KEY") or key in ("OPENAI_BASE_URL", "HF_TOKEN"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def synth_tree(tmp_path_factory) -> Path:
    """A small synthetic MVTec AD tree (all 15 categories, 73 defect types); read-only."""
    from mvtec_ref.synth import write_synthetic_tree

    root = tmp_path_factory.mktemp("synth") / "mvtec"
    write_synthetic_tree(root, scale="small", seed=0, progress=False)
    return root


@pytest.fixture(scope="session")
def synth_dataset(synth_tree, tmp_path_factory) -> Path:
    from mvtec_ref.build import BuildConfig, build_dataset

    out = tmp_path_factory.mktemp("built") / "dataset"
    build_dataset(synth_tree, out, BuildConfig(), progress=False)
    return out


@pytest.fixture(scope="session")
def built(synth_tree, tmp_path_factory) -> Path:
    """A dataset built from the bottle category; copy it before changing it."""
    from mvtec_ref.build import BuildConfig, build_dataset

    out = tmp_path_factory.mktemp("bottle") / "ds"
    build_dataset(synth_tree, out, BuildConfig(categories=("bottle",)), progress=False)
    return out


@pytest.fixture
def tree_copy(synth_tree, tmp_path) -> Path:
    """A private copy of two categories of the synthetic tree, safe to break."""
    root = tmp_path / "mvtec"
    for category in ("bottle", "grid"):
        shutil.copytree(synth_tree / category, root / category)
    return root


# Debian's Chromium and its driver, for the browser tests (.ci/run installs them).
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
needs_chromium = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver"
)


def headless_chromium(profile: Path, size: str):
    """A headless Chromium driver that keeps the browser's console log and calls nowhere."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    sandbox = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
    quiet = [
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    for arg in [*sandbox, *quiet, f"--user-data-dir={profile}", f"--window-size={size}"]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
