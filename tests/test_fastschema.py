"""The compiled schema check (mvtec_ref.fastschema) never calls valid what jsonschema calls invalid,
and schema_errors gives exactly jsonschema's messages, on thousands of mutated records."""

import copy
import json
import random
from decimal import Decimal

import pytest

from mvtec_ref.fastschema import _compilable, fast_check
from mvtec_ref.schema import schema_errors, validator

# Values put in place of every value of a record: every JSON type, the edges of the schemas'
# bounds, the values where Draft 7 and 2020-12 or Python and JSON differ (bool as integer,
# 1.0 as integer, tuple, Decimal, NaN, a trailing newline against a pattern's "$").
REPLACEMENTS = [None, True, False, 0, -1, 1, 1.0, 1.5, 2, 3, 12, 13, 180.5, 255, 256, 360.5, -0.5,
                2**70, float("nan"), Decimal("1"), "", "x", "a\n", "/abs.png", "a/../b.png", "a/..",
                "good", "object", "template", [], [0], [1, 1], [1, True], ["x"], {}, {"x": 1}]  # fmt: skip


def _paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*path, i))


def _mutants(record, rng, limit):
    """Records that differ from ``record`` in one place: a value replaced, a key removed or added,
    an array item dropped or repeated, an array turned into a tuple."""
    out = []
    for path in _paths(record):
        if not path:
            continue
        for edit in [*REPLACEMENTS, "DELETE", "ADD", "TUPLE", "REPEAT"]:
            mutant = copy.deepcopy(record)
            parent = mutant
            for key in path[:-1]:
                parent = parent[key]
            key, value = path[-1], parent[path[-1]]
            if edit == "DELETE":
                del parent[key]
            elif edit == "ADD":
                if not isinstance(value, dict):
                    continue
                value["unknown"] = 1
            elif edit == "TUPLE":
                if not isinstance(value, list):
                    continue
                parent[key] = tuple(value)
            elif edit == "REPEAT":
                if not isinstance(value, list) or not value:
                    continue
                value.append(copy.deepcopy(value[0]))
            else:
                parent[key] = copy.deepcopy(edit)
            out.append(mutant)
    rng.shuffle(out)
    return out[:limit]


def _jsonschema_errors(name, record):
    v = validator(name)
    errors = sorted(v.iter_errors(record), key=lambda e: list(e.absolute_path))
    return [f"{e.json_path}: {e.message}" for e in errors]


@pytest.mark.parametrize("name", ["sample", "manifest"])
def test_compiled_check_agrees_with_jsonschema_on_mutants(synth_dataset, name):
    if name == "sample":
        lines = (synth_dataset / "samples.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        records = [next(r for r in records if len(r["regions"]) > 1 and r["frame"].get("kind") == "round"),
                   next(r for r in records if r["regions"] and r["frame"].get("kind") == "axis"),
                   next(r for r in records if not r["regions"])]  # fmt: skip
        records[0]["source_attributes"] = {"view": "top"}
        records[0]["refs"][0]["sentences"][0].update(review={"status": "accepted", "reviewer": "a"})
    else:
        records = [json.loads((synth_dataset / "manifest.json").read_text())]
    check = fast_check(name)
    assert check is not None
    rng = random.Random(0)
    checked = valid = 0
    for record in records:
        assert check(record) and schema_errors(name, record) == []
        for mutant in _mutants(record, rng, limit=1500):
            expected = _jsonschema_errors(name, mutant)
            if check(mutant):  # the fast path may only ever say "valid" when jsonschema does
                assert expected == [], (mutant, expected)
                valid += 1
            assert schema_errors(name, mutant) == expected
            checked += 1
    # The mutants exercise both verdicts, and the compiled check itself answers most valid ones.
    assert checked > 1000 and valid > 50


def test_tuple_decimal_and_newline_go_to_jsonschema(synth_dataset):
    """Values fastjsonschema would accept (tuple, Decimal) or refuse (a final newline) while
    jsonschema decides otherwise get jsonschema's verdict."""
    record = json.loads((synth_dataset / "samples.jsonl").read_text().splitlines()[0])
    record["frame"]["bbox"] = tuple(record["frame"]["bbox"])
    assert schema_errors("sample", record) == _jsonschema_errors("sample", record) != []
    record["frame"]["bbox"] = [Decimal(v) for v in record["frame"]["bbox"]]
    assert schema_errors("sample", record) == _jsonschema_errors("sample", record) != []
    record["frame"]["bbox"] = list(map(int, record["frame"]["bbox"]))
    record["image_path"] += "\n"  # jsonschema's "$" matches before a final newline: valid for it
    assert not fast_check("sample")(record)
    assert schema_errors("sample", record) == _jsonschema_errors("sample", record) == []


def test_only_keywords_with_one_meaning_are_compiled():
    assert _compilable({"type": "object", "properties": {"a": {"type": "integer", "minimum": 1}}})
    assert not _compilable({"type": "array", "prefixItems": [{"type": "string"}]})
    assert not _compilable({"type": "array", "items": [{"type": "string"}]})  # Draft 7 tuple form
    assert not _compilable({"properties": {"a": {"$ref": "#/$defs/x", "minimum": 1}}})
    assert not _compilable({"anyOf": [{"unevaluatedProperties": False}]})
    assert fast_check("vocabulary") is None  # not a hot schema: jsonschema alone
