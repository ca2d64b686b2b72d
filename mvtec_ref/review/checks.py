"""Every check a sentence must pass to ship, in one place, for rewrites typed by a reviewer.

``sentence_checks`` runs the same checks the build runs on generated sentences. Each check is
a function ``(text, target, record, vocab, image) -> reason or ""`` in ``CHECKS``; adding a
judge is one row. ``image()`` decodes the record's image on first use (``(H, W)`` or
``(H, W, 3)`` uint8 RGB), so checks that read no pixels cost nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class CheckResult:
    check: str  # the check's name
    ok: bool
    reason: str = ""  # why it fails, for the reviewer


def parser_check(text: str, target: list[int], record: dict, vocab, image) -> str:
    """The parser-based checker (annotate.faithful): does the text denote exactly the target?"""
    from annotate.faithful import OK, check_sentence

    verdict = check_sentence(text, target, record, vocab)
    return "" if verdict.verdict == OK else f"{verdict.verdict}: {verdict.reason}"


def pixel_check(text: str, target: list[int], record: dict, vocab, image) -> str:
    """The pixel-based judge (annotate.pixel_judge): is each claim visibly true of the target?"""
    from annotate.pixel_judge import judge_sentence, measure_record

    failures = judge_sentence(
        text, target, record, measure_record(record, image(), vocab=vocab), vocab, first_only=True
    )
    return f"{failures[0].rule}: {failures[0].detail}" if failures else ""


# name -> check, run in order: the same two judges a generated sentence must pass in build.
CHECKS: dict[str, Callable] = {"parser": parser_check, "pixel": pixel_check}


def sentence_checks(
    text: str, target: list[int], record: dict, vocab, image: Callable[[], object]
) -> list[CheckResult]:
    """One result per check in ``CHECKS``, in order; the sentence ships when all are ``ok``."""
    results = []
    for name, check in CHECKS.items():
        reason = check(text, target, record, vocab, image)
        results.append(CheckResult(name, not reason, reason))
    return results
