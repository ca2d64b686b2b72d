"""A compiled yes/no check for the hot schemas (samples, manifests), equal to jsonschema's verdict.

jsonschema (Draft 2020-12) walks a record through Python objects per keyword: about 0.5 ms per
sample record, the largest cost of ``build`` and ``validate`` after decoding images.
fastjsonschema compiles a schema to one Python function, ~10x faster, but it implements Draft 7,
so it is used only where both drafts mean the same:

- only schemas whose every keyword is in ``SAME_IN_BOTH`` (after inlining ``$ref``s; any other
  keyword, a ``$ref`` with siblings or an array-form ``items`` keeps that schema on jsonschema);
- no formats asserted (jsonschema does not assert them either), no defaults filled in;
- only plain JSON values: fastjsonschema also takes tuples as arrays and ``Decimal`` as numbers,
  jsonschema does not, so a record holding either goes to jsonschema.

It answers "valid" or "ask jsonschema": ``schema_errors`` returns ``[]`` when this check passes
and otherwise asks jsonschema for both the verdict and the messages, so every message is
jsonschema's, and a stricter answer here (fastjsonschema reads a pattern's ``$`` as the end of
the string, jsonschema also before a final newline) costs time, never a different result.
``tests/test_fastschema.py`` compares both verdicts on thousands of mutated records.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import cache

# Keywords whose meaning is the same in Draft 7 and Draft 2020-12 (annotations included).
SAME_IN_BOTH = frozenset(
    {"type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
     "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
     "pattern", "enum", "const", "oneOf", "anyOf", "allOf", "not", "uniqueItems",
     "description", "title", "$comment", "$schema", "$id", "examples"}
)  # fmt: skip
# The schemas checked often enough for the compiled check to pay for its compile time.
HOT = ("sample", "manifest")


@cache
def fast_check(name: str) -> Callable[[object], bool] | None:
    """``check(record) -> bool`` (True: valid) for a hot schema whose keywords allow it, else None."""
    if name not in HOT:
        return None
    from mvtec_ref.schema import _inline_refs, _load

    schema = _load(name)
    schema = _inline_refs(schema, schema.pop("$defs", {}))
    if not _compilable(schema):
        return None
    import fastjsonschema

    compiled = fastjsonschema.compile(schema, use_default=False, use_formats=False)
    invalid = fastjsonschema.JsonSchemaValueException

    def check(record) -> bool:
        if not _plain_json(record):
            return False
        try:
            compiled(record)
        except invalid:
            return False
        return True

    return check


def _compilable(node) -> bool:
    """Every keyword of ``node`` (a schema) is in SAME_IN_BOTH, recursively."""
    if isinstance(node, bool):
        return True
    if not isinstance(node, dict) or not set(node) <= SAME_IN_BOTH:
        return False
    children = []
    for key in ("properties",):
        children += list(node.get(key, {}).values())
    for key in ("additionalProperties", "items", "not"):
        if key in node:
            if key == "items" and not isinstance(node[key], (dict, bool)):
                return False  # the array form means prefixItems in 2020-12
            children.append(node[key])
    for key in ("oneOf", "anyOf", "allOf"):
        children += list(node.get(key, []))
    return all(_compilable(child) for child in children)


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _plain_json(value) -> bool:
    """True when ``value`` holds no tuple and no Decimal (what fastjsonschema accepts and
    jsonschema refuses); everything else is judged alike by both. A loop, not recursion: it walks
    every value of every record."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind is dict:
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif isinstance(item, (tuple, Decimal)):
            return False
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True
