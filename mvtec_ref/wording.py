"""Numbers in words people read: "1 mask", "2 masks", and percentages always with "%".

Machine-readable files (JSON, JSONL) keep shares as fractions in [0, 1]; text for people says
them as percentages with a "%" sign, through ``percent``.
"""

from __future__ import annotations


def plural(n: int, word: str, words: str | None = None) -> str:
    """``word`` for 1, else ``words`` (default: ``word`` + "s")."""
    return word if n == 1 else (words or word + "s")


def count(n: int, word: str, words: str | None = None) -> str:
    """``"1 mask"``, ``"2 masks"``, ``"1,024 images"``."""
    return f"{n:,} {plural(n, word, words)}"


def percent(fraction: float | None, digits: int = 1) -> str:
    """A fraction in [0, 1] as a percentage: ``percent(0.406) == "40.6%"``; None is "-"."""
    return "-" if fraction is None else f"{100 * fraction:.{digits}f}%"
