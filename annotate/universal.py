"""Universal prompts: one text that means "every anomaly in this image".

On a defect image the ref targets all regions; on a defect-free image the same prompts
form a no-target ref (empty target mask), which is how a model is scored on saying
"nothing here".
"""

from __future__ import annotations

TEMPLATES_VERSION = "universal-1"

# "anomaly" is the universal prompt of the RIAS paper; "defect" is its plain-English twin
# used by inspection engineers. Both are true of any non-empty set of anomaly regions.
UNIVERSAL_PROMPTS = ("anomaly", "defect")


def universal_refs(region_ids: list[int]) -> list[dict]:
    """Refs for one image: a single ref whose sentences are the universal prompts.

    ``region_ids`` are the image's region ids; empty means a defect-free image, and the
    ref is then a no-target ref. Ids (``ref_id``, ``sent_id``) are assigned later, when
    the whole dataset is numbered.
    """
    kind = "universal" if region_ids else "no_target"
    sentences = [
        {"text": text, "tokens": text.split(), "origin": "template", "template": f"{kind}/{text}"}
        for text in UNIVERSAL_PROMPTS
    ]
    return [{"kind": kind, "region_ids": list(region_ids), "sentences": sentences}]
