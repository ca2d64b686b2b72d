"""The reviews file: append-only JSONL, one line per decision, the latest line per key wins.

Each line is written with one ``write`` on a file opened with ``O_APPEND`` under an exclusive
``flock`` and fsynced before the request returns, so two servers (or two tabs) on one file
interleave whole lines, and a kill loses at most the decision being written. A torn last line
(a kill in mid-write) is skipped on reading and reported, never fatal.
"""

from __future__ import annotations

import json
import os
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
    path = Path(path)
    latest: dict[tuple[str, str, str], dict] = {}
    problems: list[str] = []
    try:
        f = path.open(encoding="utf-8")
    except FileNotFoundError:
        return latest, problems
    except OSError as error:
        raise DatasetError(f"{path}: cannot read reviews file ({error.strerror})") from None
    with f:
        for n, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except json.JSONDecodeError:
                problems.append(f"{path} line {n}: not JSON (a write cut short?); skipped")
                continue
            fault = _fault(line)
            if fault:
                problems.append(f"{path} line {n}: {fault}; skipped")
                continue
            key = decision_key(line)
            if line["decision"] == "clear":
                latest.pop(key, None)
            else:
                latest.pop(key, None)  # re-insert so that iteration order is the order of decisions
                latest[key] = line
    return latest, problems


def _fault(line) -> str:
    if not isinstance(line, dict):
        return "not a JSON object"
    for field in ("image", "target", "text", "decision"):
        if not isinstance(line.get(field), str) or not line[field]:
            return f"no {field!r} string"
    if line["decision"] not in DECISIONS:
        return f"unknown decision {line['decision']!r} (expected one of {', '.join(DECISIONS)})"
    if line["decision"] == "rewrite" and not (
        isinstance(line.get("rewrite"), str) and line["rewrite"].strip()
    ):
        return "a rewrite without its 'rewrite' text"
    return ""


class ReviewWriter:
    """Appends decision lines to one file; safe across threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, line: dict) -> None:
        import fcntl

        fault = _fault(line)
        if fault:
            raise ValueError(f"refusing to write a bad decision: {fault}")
        data = (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                written = os.write(fd, data)
                if written != len(data):  # a full disk: say so rather than leave half a line unnoticed
                    raise OSError(f"{self.path}: wrote {written} of {len(data)} bytes")
                os.fsync(fd)
            finally:
                os.close(fd)  # closing releases the lock
