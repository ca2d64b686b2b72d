"""Referring expressions for anomaly regions.

For now: the universal prompts, which refer to every region of a defect image and to
nothing on a defect-free one. Specific expressions (type, location, size, count,
attribute) come with the expression generator.
"""

from annotate.universal import TEMPLATES_VERSION, UNIVERSAL_PROMPTS, universal_refs

__all__ = ["TEMPLATES_VERSION", "UNIVERSAL_PROMPTS", "universal_refs"]
