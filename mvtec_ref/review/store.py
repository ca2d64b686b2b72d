"""The reviews file: append-only JSONL, one line per decision, the latest line per key wins.

Each line is appended by ``fileio.append_line``: one ``write`` on a file opened with ``O_APPEND``
under an exclusive ``flock``, fsynced before the request returns, so two servers (or two tabs)
on one file interleave whole lines, and a kill loses at most the decision being written. A
write cut short (a full disk) is undone and answered as an error; a torn last line (a kill in
mid-write) is closed before the next line, skipped on reading and reported, never fatal. The
file is read through ``mvtec_ref.dataset.read_jsonl``, which skips and lists every bad line.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from mvtec_ref.errors import DatasetError

DECISIONS = ("accept", "reject", "rewrite", "clear")


def decision_key(line: dict) -> tuple[str, str, str]:
    return (line["image"], line["target"], line["text"])


def load_decisions(path: Path) -> tuple[dict[tuple[str, str, str], dict], list[str]]:
    """``({key: latest line}, [problems])`` of a reviews file; an absent file has no decisions.

    A ``clear`` line removes its key. Lines that are not JSON objects with the key fields and a
    known decision are reported as problems (``"<file> line N: ..."``) and skipped.
    """
    from mvtec_ref.dataset import read_jsonl

    path = Path(path)
    latest: dict[tuple[str, str, str], dict] = {}
    problems: list[str] = []
    if not path.exists():
        return latest, problems
    if not path.is_file():
        raise DatasetError(f"{path}: not a reviews file (a folder?)")

    def check(line) -> list[str]:
        fault = _fault(line)
        return [fault] if fault else []

    for _, line in read_jsonl(path, what="reviews file", check=check, problems=problems):
        key = decision_key(line)
        if line["decision"] == "clear":
            latest.pop(key, None)
        else:
            latest.pop(key, None)  # re-insert so that iteration order is the order of decisions
            latest[key] = line
    return latest, problems


def is_decision(line) -> bool:
    """Whether ``line`` (a parsed JSON value) is a decision line: what makes a file a reviews file."""
    return not _fault(line)


def _fault(line) -> str:
    """The first way ``line`` fails ``schemas/review.schema.json`` (or a rewrite lacks its text)."""
    from mvtec_ref.dataset import schema_problems

    found = schema_problems("review", line)
    if found:
        return found[0]
    if line["decision"] == "rewrite" and not (
        isinstance(line.get("rewrite"), str) and line["rewrite"].strip()
    ):
        return "rewrite: a rewrite without its 'rewrite' text"
    return ""


class ReviewWriter:
    """Appends decision lines to one file; safe across threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, line: dict) -> None:
        from mvtec_ref.fileio import append_line

        fault = _fault(line)
        if fault:
            raise ValueError(f"refusing to write a bad decision: {fault}")
        with self._lock:
            append_line(self.path, json.dumps(line, ensure_ascii=False, separators=(",", ":")))
