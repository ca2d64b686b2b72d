"""Issue 32's promise as a property, checked on a seeded mutation corpus.

Every case takes a good input (a dataset folder, a shard, a predictions file, a probes file, a
reviews file, or one option of one command), breaks it one way (the file truncated, a line
replaced, a field removed, retyped, NaN or huge, an RLE corrupted, a byte made invalid UTF-8, a
line repeated...) and runs every command that reads it. Each run must:

- exit 0, 1 or 2, with no traceback;
- leave every input byte for byte as it was;
- leave nothing behind when it fails: no output, no staging folder, no temp file.

And where the dataset loader (``mvtec_ref.dataset.open_dataset``) refuses a mutated dataset, every
reader command must refuse it with the loader's very line: they all read through it.

The corpus is generated from ``SEED``; ``CASES`` says how many cases of each kind (a case id
names its kind, number and mutation, so a failure is replayed with ``-k``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_hostile_input import snapshot

from mvtec_ref.cli import main

SEED = 32
CASES = {"dataset": 96, "manifest": 24, "shard": 40, "predictions": 40, "probes": 32, "reviews": 32,
         "options": 180}  # fmt: skip


# -- mutations ----------------------------------------------------------------------------------

OPS = ("truncate", "replace_line", "remove_field", "retype_field", "nan", "huge", "rle", "utf8",
       "duplicate_line", "blank_line", "swap_lines", "empty")  # fmt: skip
VALUES = (None, True, 0, -1, 1.5, 10**30, "", "x", [], [1, 2, 3], {}, {"a": 1})


def _spots(value, path=()):
    """Every ``(path to a container, key)`` inside a parsed JSON value."""
    found = []
    stack = [(value, path)]
    while stack:
        node, at = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in items:
            found.append((at, key))
            stack.append((child, (*at, key)))
    return found


def _get(value, path):
    for key in path:
        value = value[key]
    return value


def _edit_value(value, op: str, rng) -> object:
    """``value`` (parsed JSON) changed by ``op`` at a random spot; the same object when no spot fits."""
    spots = _spots(value)
    if op == "rle":
        spots = [s for s in spots if s[1] in ("counts", "size")] or spots
    elif op in ("nan", "huge"):
        spots = [s for s in spots if isinstance(_get(value, s[0])[s[1]], int | float)] or spots
    if not spots:
        return value
    at, key = spots[int(rng.integers(len(spots)))]
    parent = _get(value, at)
    if op == "remove_field":
        del parent[key]
    elif op == "retype_field":
        parent[key] = VALUES[int(rng.integers(len(VALUES)))]
    elif op == "nan":
        parent[key] = float(("nan", "inf", "-inf")[int(rng.integers(3))])
    elif op == "huge":
        parent[key] = ("__HUGE__", 10**40, -(10**12), 2**63)[int(rng.integers(4))]
    elif op == "rle":
        parent[key] = ("!!corrupt", "0" * 50, [5, -3, 2], [10**9, 1], [0], "zz")[int(rng.integers(6))]
    return value


def mutate(data: bytes, rng, *, document: bool = False) -> tuple[bytes, str]:
    """``data`` (a JSON Lines file, or with ``document`` one JSON value over several lines) broken
    one way; returns the bytes and the way."""
    op = OPS[int(rng.integers(len(OPS)))]
    lines = data.split(b"\n")
    body = [i for i, line in enumerate(lines) if line.strip()]
    n = body[int(rng.integers(len(body)))] if body else 0
    if op == "truncate":
        return data[: int(rng.integers(len(data)))], op
    if op == "empty":
        return b"", op
    if op == "utf8":
        at = int(rng.integers(len(data)))
        return data[:at] + (b"\xff", b"\xc3\x28", b"\xed\xa0\x80")[int(rng.integers(3))] + data[at:], op
    if op == "replace_line":
        lines[n] = json.dumps(VALUES[int(rng.integers(len(VALUES)))]).encode()
    elif op == "duplicate_line":
        lines.insert(n, lines[n])
    elif op == "blank_line":
        lines.insert(n, b"   ")
    elif op == "swap_lines" and len(body) > 1:
        m = body[int(rng.integers(len(body)))]
        lines[n], lines[m] = lines[m], lines[n]
    else:
        try:
            value = json.loads(data if document else lines[n])
        except ValueError:
            return data[:-1], "truncate"
        changed = json.dumps(_edit_value(value, op, rng)).replace('"__HUGE__"', "1e400").encode()
        if document:
            return changed, op
        lines[n] = changed
    return b"\n".join(lines), op


def _cases(kind: str) -> list[tuple[str, int]]:
    return [(kind, i) for i in range(CASES[kind])]


def _id(case) -> str:
    return f"{case[0]}-{case[1]:03d}"


# -- the corpus's good inputs, made once -------------------------------------------------------


def run(*args) -> object:
    result = CliRunner().invoke(main, [str(a) for a in args])
    log = os.environ.get("MVTEC_REF_FUZZ_LOG")  # a tally of the outcomes, for the report
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"command": str(args[0]), "exit": result.exit_code}) + "\n")
    return result


@pytest.fixture(scope="module")
def good(synth_tree, tmp_path_factory) -> dict[str, Path]:
    """A dataset (bottle + grid), two shards of bottle, predictions, probes and reviews of it."""
    from mvtec_ref.dataset import open_dataset
    from mvtec_ref.regions.mask import encode_rle
    from mvtec_ref.review.keys import target_key
    from mvtec_ref.review.store import ReviewWriter

    base = tmp_path_factory.mktemp("fuzz_good")
    ds = base / "ds"
    done = run("build", "--root", synth_tree, "--out", ds, "--category", "bottle", "--category", "grid",
               "--quiet")  # fmt: skip
    assert done.exit_code == 0, done.output
    for k in (1, 2):
        done = run("build", "--root", synth_tree, "--out", base / f"shard{k}.jsonl", "--shard", f"{k}/2",
                   "--category", "bottle", "--quiet")  # fmt: skip
        assert done.exit_code == 0, done.output
    data = open_dataset(ds)
    with (base / "pred.jsonl").open("w") as f:
        for record in data.split("test"):
            for ref in record["refs"]:
                mask = encode_rle(data.mask(record, ref["region_ids"]))
                for s in ref["sentences"]:
                    f.write(json.dumps({"sent_id": s["sent_id"], "mask": mask}) + "\n")
    done = run("probes", ds, "--out", base / "probes.jsonl", "--quiet")
    assert done.exit_code == 0, done.output
    writer = ReviewWriter(base / "reviews.jsonl")
    for record in data.records[:4]:
        for ref in record["refs"][:2]:
            target, text = target_key(record, ref["region_ids"]), ref["sentences"][0]["text"]
            writer.append({"image": record["image_path"], "target": target, "text": text,
                           "decision": "accept", "reviewer": "f"})  # fmt: skip
    names = ("shard1.jsonl", "shard2.jsonl", "pred.jsonl", "probes.jsonl", "reviews.jsonl")
    return {"ds": ds, **{name.split(".")[0]: base / name for name in names}}


@pytest.fixture
def stopped(monkeypatch):
    """``review`` returns instead of serving; ``train-baseline`` stops after its checks."""
    import baselines.dqformer.train as train
    import mvtec_ref.review.app as app
    from mvtec_ref.errors import TrainingError

    monkeypatch.setattr(app, "serve", lambda session, **kwargs: None)

    def stop(*args, **kwargs):
        raise TrainingError("fuzz: stopped after the checks")

    monkeypatch.setattr(train, "load_data", stop)
    monkeypatch.setattr("mvtec_ref.cli._quiet_transformers", lambda: None)


def check_run(result, work: Path, before: dict, outs: list[Path], inputs_skip=()) -> None:
    """The three properties: exit code and no traceback; inputs unchanged; nothing left on failure."""
    assert result.exit_code in (0, 1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output, result.output
    after = snapshot(work, skip=tuple(o.relative_to(work).as_posix() for o in outs))
    leftovers = [k for k in after if ".staging-" in k or ".tmp-" in k]
    assert not leftovers, leftovers
    assert {k: v for k, v in after.items() if k not in inputs_skip} == {
        k: v for k, v in before.items() if k not in inputs_skip
    }
    if result.exit_code != 0:
        assert not any(o.exists() for o in outs), (result.output, [o for o in outs if o.exists()])


# -- dataset folders ------------------------------------------------------------------------------

READERS = {
    "validate": lambda w, g: (["validate", w / "ds", "--no-files"], []),
    "stats": lambda w, g: (["stats", w / "ds", "--json", w / "s.json"], [w / "s.json"]),
    "export": lambda w, g: (["export", w / "ds", "--format", "jsonl", "--out", w / "e"], [w / "e"]),
    "probes": lambda w, g: (["probes", w / "ds", "--out", w / "p.jsonl", "--quiet"], [w / "p.jsonl"]),
    "evaluate": lambda w, g: (
        ["evaluate", w / "ds", "--pred", g["pred"], "--allow-missing", "--out", w / "m.json"],
        [w / "m.json"],
    ),  # fmt: skip
    "review": lambda w, g: (["review", w / "ds", "--reviews", w / "r.jsonl"], []),
    "show": lambda w, g: (["show", w / "ds", "--sample", "2", "--out", w / "sh"], [w / "sh"]),
    "report": lambda w, g: (["report", w / "ds", "--out", w / "rep", "--quiet"], [w / "rep"]),
    "paraphrase": lambda w, g: (
        [
            "paraphrase",
            w / "ds",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--model",
            "m",
            "--cache",
            w / "c.jsonl",
            "--quiet",
        ],
        [w / "c.jsonl"],
    ),  # fmt: skip
    "train-baseline": lambda w, g: (
        ["train-baseline", w / "ds", "--out", w / "run", "--preset", "tiny"],
        [w / "run"],
    ),  # fmt: skip
    "predict": lambda w, g: (["predict", w / "norun", "--dataset", w / "ds", "--out", w / "pr"], [w / "pr"]),
}
FAST = ("validate", "stats", "export", "probes", "evaluate", "review")


@pytest.mark.parametrize("case", _cases("dataset") + _cases("manifest"), ids=_id)
def test_dataset_mutations(case, good, tmp_path, stopped):
    from mvtec_ref.dataset import open_dataset
    from mvtec_ref.errors import DatasetError

    kind, i = case
    rng = np.random.default_rng([SEED, 1, i, kind == "manifest"])
    shutil.copytree(good["ds"], tmp_path / "ds")
    target = tmp_path / "ds" / ("manifest.json" if kind == "manifest" else "samples.jsonl")
    target.write_bytes(mutate(target.read_bytes(), rng, document=kind == "manifest")[0])
    try:
        open_dataset(tmp_path / "ds")
        refusal = None
    except DatasetError as error:
        refusal = str(error)
    slow = [name for name in READERS if name not in FAST]
    commands = [*FAST, slow[i % len(slow)]]  # every slow reader gets every len(slow)-th case
    for name in commands:
        args, outs = READERS[name](tmp_path, good)
        before = snapshot(tmp_path)
        result = run(*args)
        check_run(result, tmp_path, before, outs)
        if refusal is not None:
            assert result.exit_code == 1, (name, result.output)
            if name != "validate":  # validate lists every problem; the others stop at the first
                assert result.output.strip().splitlines()[-1] == f"Error: {refusal}", (name, result.output)
        for out in outs:  # the next command starts clean
            if out.is_dir():
                shutil.rmtree(out)
            elif out.exists():
                out.unlink()


# -- shards, predictions, probes, reviews ----------------------------------------------------------


@pytest.mark.parametrize("case", _cases("shard"), ids=_id)
def test_shard_mutations(case, good, tmp_path):
    rng = np.random.default_rng([SEED, 2, case[1]])
    shards = [tmp_path / "s1.jsonl", tmp_path / "s2.jsonl"]
    shutil.copy(good["shard1"], shards[0])
    shards[1].write_bytes(mutate(good["shard2"].read_bytes(), rng)[0])
    if rng.integers(2):
        shards.reverse()
    before = snapshot(tmp_path)
    check_run(run("merge", *shards, "--out", tmp_path / "merged", "--quiet"), tmp_path, before,
              [tmp_path / "merged"])  # fmt: skip


@pytest.mark.parametrize("case", _cases("predictions") + _cases("probes"), ids=_id)
def test_prediction_and_probe_mutations(case, good, tmp_path):
    kind, i = case
    rng = np.random.default_rng([SEED, 3 if kind == "predictions" else 4, i])
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(mutate(good["pred" if kind == "predictions" else "probes"].read_bytes(), rng)[0])
    before = snapshot(tmp_path)
    out = tmp_path / "m.json"
    if kind == "predictions":
        args = ["--pred", broken, *(["--allow-missing"] * (i % 2))]
    else:
        args = ["--probes", broken, "--pred", good["pred"], "--allow-missing"]
    check_run(run("evaluate", good["ds"], *args, "--out", out), tmp_path, before, [out])


@pytest.mark.parametrize("case", _cases("reviews"), ids=_id)
def test_review_file_mutations(case, good, tmp_path, stopped):
    rng = np.random.default_rng([SEED, 5, case[1]])
    reviews = tmp_path / "reviews.jsonl"
    reviews.write_bytes(mutate(good["reviews"].read_bytes(), rng)[0])
    before = snapshot(tmp_path)
    check_run(run("review", good["ds"], "--reviews", reviews), tmp_path, before, [])
    merged = tmp_path / "merged"
    result = run("merge", good["shard1"], good["shard2"], "--reviews", reviews, "--out", merged, "--quiet")
    check_run(result, tmp_path, before, [merged])


# -- option values ----------------------------------------------------------------------------------

# A valid, quick call of each command ("{w}": the case's folder, "{ds}" etc.: the good inputs).
BASE = {
    "validate": ["validate", "{ds}", "--no-files"],
    "stats": ["stats", "{ds}"],
    "export": ["export", "{ds}", "--format", "jsonl", "--out", "{w}/out"],
    "show": ["show", "{ds}", "--sample", "1", "--out", "{w}/out"],
    "probes": ["probes", "{ds}", "--out", "{w}/out.jsonl", "--quiet"],
    "evaluate": ["evaluate", "{ds}", "--pred", "{pred}", "--allow-missing"],
    "merge": ["merge", "{shard1}", "{shard2}", "--out", "{w}/out", "--quiet"],
    "synth": ["synth", "--out", "{w}/out", "--category", "bottle", "--per-type", "1", "--quiet"],
    "build": ["build", "--root", "{tree}", "--out", "{w}/out", "--category", "bottle", "--quiet"],
    "review": ["review", "{ds}", "--reviews", "{w}/r.jsonl"],
    "train-baseline": ["train-baseline", "{ds}", "--out", "{w}/out", "--preset", "tiny"],
    "predict": ["predict", "{w}/norun", "--dataset", "{ds}", "--out", "{w}/out"],
    "paraphrase": [
        "paraphrase",
        "{ds}",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--model",
        "m",
        "--cache",
        "{w}/c.jsonl",
    ],  # fmt: skip
}
HOSTILE = ("-1", "0", "1", "-0.5", "1e309", "nan", "inf", "", " ", "abc", "99999999999999999999", "3/2",
           "1/0", "0.6,0.1", "☃", "--help", "{w}/notes.txt", "{ds}", "{ds}/samples.jsonl", "{w}",
           "{w}/new/x")  # fmt: skip
SKIP = {"help", "version", "verbose"}


def _options() -> list[tuple[str, str]]:
    import click

    found = []
    for name in BASE:
        for param in main.commands[name].params:
            if isinstance(param, click.Option) and not param.is_flag and param.name not in SKIP:
                found.append((name, param.opts[0]))
    return sorted(found)


@pytest.mark.parametrize("case", _cases("options"), ids=_id)
def test_option_values(case, good, synth_tree, tmp_path, stopped, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative value ("nan", "1") names a path: here, not in the checkout
    rng = np.random.default_rng([SEED, 6, case[1]])
    options = _options()
    command, option = options[int(rng.integers(len(options)))]
    value = HOSTILE[int(rng.integers(len(HOSTILE)))]
    (tmp_path / "notes.txt").write_text("a file of the user's\n")
    fill = {"w": tmp_path, "tree": synth_tree, **good}
    if "{ds}" not in BASE[command]:  # a dataset it does not read is an output of ours it may replace
        shutil.copytree(good["ds"], tmp_path / "ds")
        fill["ds"] = tmp_path / "ds"
    args = [a.format(**fill) for a in BASE[command]]
    if option in args:  # replace the base's own value of that option
        args[args.index(option) + 1] = value.format(**fill)
    else:
        args += [option, value.format(**fill)]
    inputs = {k: snapshot(p.parent)[p.name] if p.is_file() else snapshot(p) for k, p in good.items()}
    before = snapshot(tmp_path)
    result = run(*args)
    assert result.exit_code in (0, 1, 2), (args, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args,
        repr(result.exception),
    )
    assert "Traceback" not in result.output, (args, result.output)
    after = snapshot(tmp_path)
    assert after["notes.txt"] == before["notes.txt"], args  # a file of the user's is never replaced
    assert not [k for k in after if ".staging-" in k or ".tmp-" in k], args
    assert {k: snapshot(p.parent)[p.name] if p.is_file() else snapshot(p) for k, p in good.items()} == inputs
    if result.exit_code != 0:  # a failed command leaves nothing behind
        assert sorted(after) == sorted(before), (args, result.output, sorted(set(after) - set(before)))
