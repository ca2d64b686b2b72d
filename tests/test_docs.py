"""The README stays short and its links reach real pages and headings (docs/ itself is checked by
``mkdocs build --strict`` in ``make docs``)."""

import re
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """Python-Markdown's toc slug (what MkDocs uses for anchors)."""
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {slug(line.lstrip("#").strip()) for line in text.splitlines() if line.startswith("#")}


def test_readme_is_short_and_its_links_resolve():
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    links = [m for m in LINK.findall(text) if not m.startswith(("http://", "https://", "mailto:"))]
    assert len(links) > 10  # the README points into docs/
    broken = []
    for link in links:
        path, _, anchor = link.partition("#")
        target = (readme.parent / path).resolve()
        if not target.is_file() or anchor and anchor not in anchors(target):
            broken.append(link)
    assert not broken, f"README links to missing pages or headings: {broken}"


def test_every_docs_page_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert pages and all(f": {name}" in nav for name in pages)
