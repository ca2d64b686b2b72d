"""Quality figures for the expressions of a set of sample records."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from annotate.faithful import AMBIGUOUS, UNFAITHFUL, check_sentence
from annotate.vocab import Vocabulary

UNIVERSAL_PROMPT = "anomaly"


def _distinct(texts: list[str]) -> float:
    return round(len(set(texts)) / len(texts), 4) if texts else 0.0


def sentence_verdicts(record: dict, vocab: Vocabulary) -> list[str]:
    """The judge's verdict on each sentence of ``record``, in ref then sentence order."""
    return [
        check_sentence(s["text"], ref["region_ids"], record, vocab).verdict
        for ref in record["refs"]
        for s in ref["sentences"]
    ]


class ExpressionQuality:
    """Accumulates sentences of one group (split, category, or everything)."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.lengths: list[int] = []
        self.kinds: Counter = Counter()
        self.origins: Counter = Counter()
        self.verdicts: dict[str, Counter] = defaultdict(Counter)  # origin -> verdict counts
        self.defect_images = 0

    def update(self, record: dict, vocab: Vocabulary, verdicts: list[str] | None = None) -> None:
        """Add one record; ``verdicts``: its ``sentence_verdicts``, when the caller adds the
        record to several groups (parsing every sentence is most of the cost)."""
        self.defect_images += record["label_index"]
        verdicts = iter(sentence_verdicts(record, vocab) if verdicts is None else verdicts)
        for ref in record["refs"]:
            for s in ref["sentences"]:
                self.texts.append(s["text"])
                self.lengths.append(len(s["tokens"]))
                self.kinds[ref["kind"]] += 1
                self.origins[s["origin"]] += 1
                self.verdicts[s["origin"]][next(verdicts)] += 1

    def compute(self) -> dict:
        n = len(self.texts)
        lengths = np.asarray(self.lengths or [0])
        defect_sentences = n - self.kinds["no_target"]
        result = {
            "sentences": n,
            "sentences_per_defect_image": round(defect_sentences / self.defect_images, 2)
            if self.defect_images
            else 0.0,
            "distinct_ratio": round(len(set(self.texts)) / n, 4) if n else 0.0,
            # the same without the fixed universal prompt, which is identical by design
            "distinct_ratio_without_prompt": _distinct([t for t in self.texts if t != UNIVERSAL_PROMPT]),
            "vocabulary": len({t for text in self.texts for t in text.split()}),
            "mean_words": round(float(lengths.mean()), 2),
            "p90_words": float(np.percentile(lengths, 90)),
            "kinds": {k: round(v / n, 4) for k, v in sorted(self.kinds.items())},
            "origins": dict(sorted(self.origins.items())),
        }
        for origin, counts in sorted(self.verdicts.items()):
            total = sum(counts.values())
            result[f"{origin}_faithful"] = round(1 - counts[UNFAITHFUL] / total, 4)
            result[f"{origin}_unambiguous"] = round(1 - counts[AMBIGUOUS] / total, 4)
        return result
