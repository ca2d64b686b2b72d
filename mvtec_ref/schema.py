"""Load the JSON Schemas in ``schemas/`` and check records against them."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources


@cache
def validator(name: str):
    """Compiled Draft 2020-12 validator for ``schemas/<name>.schema.json``."""
    from jsonschema import Draft202012Validator

    schema = _load(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(_inline_refs(schema, schema.get("$defs", {})))


def _load(name: str) -> dict:
    text = resources.files("schemas").joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def _inline_refs(node, defs: dict):
    """``schema`` with every bare ``{"$ref": "#/$defs/NAME"}`` replaced by that definition (the same
    rules; checking a build's samples spent a third of its time resolving references)."""
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if len(node) == 1 and ref.startswith("#/$defs/") and ref[8:] in defs:
            return _inline_refs(defs[ref[8:]], defs)
        return {key: _inline_refs(value, defs) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline_refs(value, defs) for value in node]
    return node


def schema_errors(name: str, record: dict) -> list[str]:
    """Readable messages ``"<json path>: <problem>"``; empty when ``record`` is valid."""
    from mvtec_ref.fastschema import fast_check

    check = fast_check(name)
    if check is not None and check(record):
        return []  # valid for the compiled check, so valid for jsonschema (mvtec_ref.fastschema)
    v = validator(name)
    if v.is_valid(record):
        return []
    errors = sorted(v.iter_errors(record), key=lambda e: list(e.absolute_path))
    return [f"{e.json_path}: {e.message}" for e in errors]
