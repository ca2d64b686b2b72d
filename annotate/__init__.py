"""Referring expressions for anomaly regions: vocabulary, templates, parser and checker.

``refs_for`` writes template refs for one image from its regions; ``check_record``
re-reads every sentence with an independent parser and reports those that are
unfaithful to, or ambiguous among, the image's regions.
"""

from annotate.faithful import check_record, check_sentence
from annotate.generate import TEMPLATES_VERSION, refs_for, universal_refs
from annotate.vocab import Vocabulary, load_vocabulary

__all__ = [
    "TEMPLATES_VERSION",
    "Vocabulary",
    "check_record",
    "check_sentence",
    "load_vocabulary",
    "refs_for",
    "universal_refs",
]
