"""Issue 32's hand-made cases: every reader command goes through one checked loader, every output
through one writer, no glob is built from a user's path, sizes are bounded before allocation and
options are checked before any work. Each case asserts the exit code, one line without a
traceback, and that nothing it did not own changed (the folder is hashed before and after)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_hostile_input import snapshot

from mvtec_ref.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def refused(result, *words, code: int = 1) -> str:
    """The last line of a refusal: exit ``code``, no traceback, ``words`` in that line."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and not (
        result.exception and not isinstance(result.exception, SystemExit)
    ), result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error: "), result.output
    for word in words:
        assert str(word) in line, line
    return line


def dead_pid() -> int:
    """The id of a process that has exited (what a killed run leaves in its leftovers' names)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def ds(built, tmp_path) -> Path:
    """A copy of the bottle dataset (conftest's ``built``), safe to break."""
    shutil.copytree(built, tmp_path / "ds")
    return tmp_path / "ds"


def _lines(ds: Path) -> list[str]:
    return (ds / "samples.jsonl").read_text().splitlines()


def _write(ds: Path, lines: list[str]) -> None:
    (ds / "samples.jsonl").write_text("\n".join(lines) + "\n")


def _defect_line(ds: Path) -> int:
    return next(i for i, line in enumerate(_lines(ds)) if json.loads(line)["regions"])


# Every command that reads a dataset, with what it needs beside it (run from tmp_path).
READERS = {
    "stats": lambda ds, t: ["stats", ds],
    "export": lambda ds, t: ["export", ds, "--format", "jsonl", "--out", t / "e"],
    "show": lambda ds, t: ["show", ds, "--sample", "2", "--out", t / "s"],
    "report": lambda ds, t: ["report", ds, "--out", t / "r", "--quiet"],
    "probes": lambda ds, t: ["probes", ds, "--out", t / "p.jsonl", "--quiet"],
    "evaluate": lambda ds, t: ["evaluate", ds, "--pred", t, "--allow-missing"],
    "paraphrase": lambda ds, t: [
        "paraphrase",
        ds,
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--model",
        "m",
        "--cache",
        t / "c.jsonl",
        "--quiet",
    ],  # fmt: skip
    "train-baseline": lambda ds, t: ["train-baseline", ds, "--out", t / "run", "--preset", "tiny"],
    "predict": lambda ds, t: ["predict", t / "run", "--dataset", ds, "--out", t / "pr"],
}


# -- 1. one reader --------------------------------------------------------------------------------


@pytest.mark.parametrize("command", sorted(READERS))
@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("array_line", ":{n}: (line): is a JSON array, not an object"),
        ("bad_utf8", ":{n}: not UTF-8 text"),
        ("nan_ratio", ":{n}: NaN is not a JSON number"),
        ("empty", ":1: the file is empty"),
        ("huge_width", ":{n}: width: 60000x"),
        ("broken_rle", ":{n}: regions[0].segmentation.counts: RLE does not decode"),
        ("area_changed", ":{n}: regions[0].area: "),
        ("duplicate_id", ":{n}: id: duplicate id"),
    ],
)
def test_every_reader_refuses_a_bad_dataset_line_in_one_line(command, case, words, ds, tmp_path):
    lines = _lines(ds)
    n = _defect_line(ds)
    record = json.loads(lines[n])
    if case == "array_line":
        lines[n] = "[1,2,3]"
    elif case == "nan_ratio":
        lines[n] = lines[n].replace(
            f'"area_ratio":{record["regions"][0]["area_ratio"]}', '"area_ratio":NaN', 1
        )
        assert "NaN" in lines[n]
    elif case == "huge_width":
        record["width"] = record["height"] = 60000
        lines[n] = json.dumps(record)
    elif case == "broken_rle":
        record["regions"][0]["segmentation"]["counts"] = "!!corrupt"
        lines[n] = json.dumps(record)
    elif case == "area_changed":
        record["regions"][0]["area"] += 1
        lines[n] = json.dumps(record)
    elif case == "duplicate_id":  # the last line takes the first line's id
        n = len(lines) - 1
        lines[n] = json.dumps({**json.loads(lines[n]), "id": json.loads(lines[0])["id"]})
    if case == "bad_utf8":
        data = "\n".join(lines).encode() + b"\n"
        start = data.index(b'"text":"', sum(len(x) + 1 for x in lines[:n]))
        data = data[: start + 8] + b"\xff" + data[start + 8 :]
        (ds / "samples.jsonl").write_bytes(data)
    elif case == "empty":
        (ds / "samples.jsonl").write_bytes(b"")
    else:
        _write(ds, lines)
    before = snapshot(tmp_path)
    result = invoke(*READERS[command](ds, tmp_path))
    refused(result, f"{ds / 'samples.jsonl'}{words.format(n=n + 1)}")
    assert snapshot(tmp_path) == before  # nothing read was changed, nothing written


def test_validate_reports_the_loader_problems_and_its_own(ds, tmp_path):
    lines = _lines(ds)
    lines[0] = lines[0][:40]  # cut short
    lines[1] = "[1,2,3]"
    _write(ds, lines)
    result = invoke("validate", ds, "--no-files")
    assert result.exit_code == 1 and "Traceback" not in result.output
    out = result.output.splitlines()
    assert out[0].startswith(f"{ds / 'samples.jsonl'}:1: malformed JSON")
    assert out[1] == f"{ds / 'samples.jsonl'}:2: (line): is a JSON array, not an object"


def test_a_dataset_is_opened_once_per_command(ds, tmp_path, monkeypatch):
    """report used to read it twice (its own listing, then stats.summarize)."""
    import mvtec_ref.dataset as loader

    opened = []
    real = loader.open_dataset

    def counting(folder, **kwargs):
        opened.append(Path(folder))
        return real(folder, **kwargs)

    monkeypatch.setattr(loader, "open_dataset", counting)
    for args in (["report", ds, "--out", tmp_path / "r", "--quiet"], ["stats", ds],
                 ["export", ds, "--format", "coco", "--out", tmp_path / "c", "--images", "none"],
                 ["show", ds, "--sample", "1", "--out", tmp_path / "s"],
                 ["probes", ds, "--out", tmp_path / "p.jsonl", "--quiet"]):  # fmt: skip
        opened.clear()
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        assert len(opened) == 1, (args[0], opened)


def test_the_dataset_type_reads_records_splits_and_masks(built):
    from mvtec_ref.dataset import open_dataset

    data = open_dataset(built)
    assert len(data) == data.manifest["counts"]["images"] == len(list(data))
    assert sum(len(data.split(s)) for s in ("train", "val", "test")) == len(data)
    record = next(r for r in data if r["regions"])
    mask = data.mask(record)
    assert mask.shape == (record["height"], record["width"])
    assert int(mask.sum()) == sum(g["area"] for g in record["regions"])
    assert data.image(record).shape[:2] == mask.shape and data.where(0).endswith("samples.jsonl:1")


def _shards(synth_tree, tmp_path) -> list[Path]:
    paths = []
    for k in (1, 2):
        path = tmp_path / f"s{k}.jsonl"
        result = invoke("build", "--root", synth_tree, "--out", path, "--shard", f"{k}/2",
                        "--category", "bottle", "--quiet")  # fmt: skip
        assert result.exit_code == 0, result.output
        paths.append(path)
    return paths


def _edit_shard(path: Path, edit) -> None:
    lines = path.read_text().splitlines()
    for i in range(1, len(lines)):
        item = json.loads(lines[i])
        if item["record"] and item["record"]["regions"]:
            edit(item["record"])
            lines[i] = json.dumps(item)
            break
    path.write_text("\n".join(lines) + "\n")


def _false_sentence(record):
    from annotate.parse import tokenize

    ref = next(r for r in record["refs"] if r["region_ids"] and r["kind"] != "universal")
    text = "the three huge scratches in the top left corner"
    ref["sentences"][0].update(text=text, tokens=tokenize(text))


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda r: r["regions"][0].update(area=r["regions"][0]["area"] + 1), "record.regions[0].area: "),
        (lambda r: r["regions"][0]["segmentation"].update(counts="zz!"), "RLE does not decode"),
        (_false_sentence, "fail the checker (the shard files were edited or damaged"),
        (lambda r: r["refs"][0]["sentences"][0].update(origin="human"), "holds template sentences only"),
    ],
)
def test_merge_refuses_a_hand_edited_shard(edit, words, synth_tree, tmp_path):
    shards = _shards(synth_tree, tmp_path)
    _edit_shard(shards[1], edit)
    before = snapshot(tmp_path)
    refused(invoke("merge", *shards, "--out", tmp_path / "merged"), words)
    assert snapshot(tmp_path) == before


def test_merge_refuses_an_unbounded_shard_header(synth_tree, tmp_path):
    shards = _shards(synth_tree, tmp_path)
    lines = shards[0].read_text().splitlines()
    header = json.loads(lines[0])
    header["shard"] = [1, 99999999999]
    shards[0].write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    refused(invoke("merge", *shards, "--out", tmp_path / "m"), "not a shard file", "shard[1]")
    refused(invoke("build", "--root", synth_tree, "--out", tmp_path / "x.jsonl", "--shard", "1/99999999999"),
            code=2)  # fmt: skip


def test_duplicated_sent_id_in_predictions_is_refused(ds, tmp_path):
    from mvtec_ref.regions.mask import encode_rle

    record = json.loads(_lines(ds)[_defect_line(ds)])
    sent_id = record["refs"][0]["sentences"][0]["sent_id"]
    import numpy as np

    empty = encode_rle(np.zeros((record["height"], record["width"]), np.uint8))
    pred = tmp_path / "p.jsonl"
    pred.write_text(json.dumps({"sent_id": sent_id, "mask": empty}) + "\n"
                    + json.dumps({"sent_id": sent_id, "no_target": True}) + "\n")  # fmt: skip
    refused(
        invoke("evaluate", ds, "--pred", pred, "--allow-missing"),
        f"{pred}:2: sent_id: {sent_id} is given twice",
    )


# -- 2. one writer --------------------------------------------------------------------------------


def test_no_single_file_output_replaces_an_input(ds, tmp_path):
    pred = tmp_path / "p.jsonl"
    pred.write_text("")
    before = snapshot(tmp_path)
    refused(
        invoke("evaluate", ds, "--pred", ds, "--out", ds / "samples.jsonl"), "is", "which this command reads"
    )
    refused(invoke("stats", ds, "--json", ds / "manifest.json"), "lies inside", "which this command reads")
    refused(invoke("evaluate", ds, "--pred", pred, "--out", pred, "--force"), f"--out is {pred}")
    refused(invoke("probes", ds, "--out", ds / "samples.jsonl", "--force"), "which this command reads")
    refused(invoke("review", ds, "--reviews", ds / "samples.jsonl"), "which this command reads")
    assert snapshot(tmp_path) == before


def test_a_users_file_is_replaced_only_with_force(ds, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    preds = tmp_path / "preds"
    for args in (["stats", ds, "--json", notes], ["probes", ds, "--out", notes, "--quiet"],
                 ["evaluate", ds, "--pred", preds, "--allow-missing", "--out", notes]):  # fmt: skip
        preds.mkdir(exist_ok=True)
        refused(invoke(*args), "is not a", "written by mvtec-ref", "--force")
        assert notes.read_text() == "mine\n"
    result = invoke("stats", ds, "--json", notes, "--force")
    assert result.exit_code == 0, result.output
    assert json.loads(notes.read_text())["format"] == "mvtec-ref-stats"
    again = invoke("stats", ds, "--json", notes)  # now ours: replaced without --force
    assert again.exit_code == 0, again.output


def test_stats_plots_never_touch_a_users_pngs(ds, tmp_path):
    plots = tmp_path / "figures"
    plots.mkdir()
    (plots / "area_ratio_by_category.png").write_bytes(b"my own figure")
    refused(invoke("stats", ds, "--plots", plots), "cannot tell its files from yours")
    assert (plots / "area_ratio_by_category.png").read_bytes() == b"my own figure"
    fresh = tmp_path / "plots"
    assert invoke("stats", ds, "--plots", fresh).exit_code == 0
    assert invoke("stats", ds, "--plots", fresh).exit_code == 0  # its own folder: replaced


def test_appends_go_only_to_files_of_their_kind(ds, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    refused(invoke("review", ds, "--reviews", notes), "not a reviews file", "refusing to append")
    refused(invoke("paraphrase", ds, "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--cache", notes),
            "not a paraphrase cache", "refusing to append")  # fmt: skip
    assert notes.read_text() == "mine\n"


def test_a_short_append_is_undone_and_a_torn_line_is_closed(tmp_path, monkeypatch):
    from mvtec_ref.review.store import ReviewWriter, load_decisions

    path = tmp_path / "reviews.jsonl"
    writer = ReviewWriter(path)
    base = {"image": "a.png", "target": "4x4:empty", "text": "anomaly", "reviewer": "r"}
    writer.append({**base, "decision": "accept"})
    size = path.stat().st_size
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[: len(data) // 2]))  # a full disk
    with pytest.raises(OSError, match="wrote"):
        writer.append({**base, "text": "other", "decision": "reject"})
    monkeypatch.setattr(os, "write", real_write)
    assert path.stat().st_size == size  # the half line was cut off again
    with path.open("a") as f:
        f.write('{"image": "a.png", "target": "4x4:empty", "text": "anom')  # a kill in mid-write
    writer.append({**base, "text": "third", "decision": "reject"})
    decisions, problems = load_decisions(path)
    assert sorted(k[2] for k in decisions) == ["anomaly", "third"]  # nothing earlier lost, nothing glued
    assert len(problems) == 1 and f"{path}:2: malformed JSON" in problems[0]


# -- 3. no glob built from a user's path ----------------------------------------------------------


def test_a_bracketed_out_leaves_another_outputs_leftovers_alone(ds, tmp_path):
    data1 = tmp_path / "data1"  # an export whose swap a kill interrupted: its output sits under -old-
    old = tmp_path / f".data1.staging-old-{dead_pid()}"
    assert invoke("export", ds, "--format", "jsonl", "--out", old).exit_code == 0
    before = snapshot(tmp_path, skip=("data[1]",))
    result = invoke("export", ds, "--format", "jsonl", "--out", tmp_path / "data[1]")
    assert result.exit_code == 0, result.output
    assert snapshot(tmp_path, skip=("data[1]",)) == before and not data1.exists()
    assert invoke("export", ds, "--format", "jsonl", "--out", data1).exit_code == 0
    assert not old.exists() and (data1 / "refs.jsonl").is_file()  # recovered, then replaced


def test_a_running_commands_staging_folder_is_never_swept(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        running = tmp_path / f".sy1.staging-{sleeper.pid}-abcd1234"
        running.mkdir()
        (running / "bottle").mkdir()
        result = invoke("synth", "--out", tmp_path / "sy?", "--category", "bottle", "--per-type", "1")
        assert result.exit_code == 0, result.output
        result = invoke("synth", "--out", tmp_path / "sy1", "--category", "bottle", "--per-type", "1")
        assert result.exit_code == 0, result.output
        assert running.is_dir()  # its process is alive: left alone even by a run of the same --out
    finally:
        sleeper.kill()
        sleeper.wait()
    stale = tmp_path / f".sy1.staging-{dead_pid()}-abcd1234"
    stale.mkdir()
    assert (
        invoke("synth", "--out", tmp_path / "sy1", "--category", "bottle", "--per-type", "1").exit_code == 0
    )
    assert not stale.exists() and not running.exists()


def test_a_killed_extraction_is_swept_by_the_next(tmp_path):
    import io
    import tarfile

    from mvtec_ref.download import extract

    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as t:
        info = tarfile.TarInfo("x/readme.txt")
        info.size = 2
        t.addfile(info, io.BytesIO(b"hi"))
    left = tmp_path / f".data.staging-{dead_pid()}-qwertyui"
    (left / "x").mkdir(parents=True)
    extract(archive, tmp_path / "data")
    assert (tmp_path / "data/x/readme.txt").read_text() == "hi"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar", "data"]


# -- 4. sizes bounded before allocation -----------------------------------------------------------


def _png_announcing(width: int, height: int) -> bytes:
    """A small PNG whose header announces ``width`` x ``height`` (its data is one empty row)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )


def test_an_image_announcing_60000_squared_is_a_skipped_sample(synth_tree, tmp_path):
    root = tmp_path / "src"
    shutil.copytree(synth_tree / "bottle", root / "bottle")
    bomb = root / "bottle/test/good/000.png"
    bomb.write_bytes(_png_announcing(60000, 60000))
    result = invoke("build", "--root", root, "--out", tmp_path / "ds")
    assert result.exit_code == 0, result.output
    assert "bottle/test/good/000.png: header says the image has 3,600,000,000 pixels, over the limit" in (
        result.output
    )
    assert "1 sample skipped" in result.output


def _asgi(app, method: str, path: str, body: bytes, headers: dict) -> int:
    """The status of one request to an ASGI ``app`` (no HTTP client needed)."""
    sent, status = [body], []

    async def receive():
        if sent:
            return {"type": "http.request", "body": sent.pop(), "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1),
             "root_path": ""}  # fmt: skip
    asyncio.run(app(scope, receive, send))
    return status[0]


def test_review_requests_are_bounded_and_keep_must_be_a_boolean(ds, tmp_path):
    from mvtec_ref.review.app import create_app
    from mvtec_ref.review.session import ReviewSession

    session = ReviewSession(ds, tmp_path / "r.jsonl", "tester")
    app = create_app(session, "t0ken")
    headers = {"X-Review-Token": "t0ken", "Content-Type": "application/json"}

    def decide(body: bytes, **extra) -> int:
        return _asgi(app, "POST", "/api/decide", body, {**headers, "Content-Length": str(len(body)), **extra})

    assert decide(json.dumps({"item": 0, "decision": "accept"}).encode()) == 200
    assert decide(json.dumps({"item": 0, "decision": "rewrite", "text": "x", "keep": "no"}).encode()) == 400
    assert decide(b'{"item": 0, "decision": "accept", "pad": "' + b"x" * 70_000 + b'"}') == 400
    assert decide(b"[" * 10_000 + b"]" * 10_000) == 400
    assert decide(b"{}", **{"Content-Length": "999999999999"}) == 400
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["decision"] == "accept"


# -- 5. options checked before any work, with their range in --help -------------------------------


def test_every_numeric_option_shows_its_range_in_help():
    import click

    for name, command in main.commands.items():
        for param in command.params:
            if isinstance(param.type, click.types.IntParamType | click.types.FloatParamType):
                assert isinstance(param.type, click.IntRange | click.FloatRange), (name, param.name)
                help_text = CliRunner().invoke(main, [name, "--help"]).output
                assert f"{param.opts[0]} " in help_text and "RANGE" in help_text, (name, param.name)


def test_every_config_field_has_its_range():
    import dataclasses

    from baselines.dqformer.config import RANGES, DQFormerConfig

    for field in dataclasses.fields(DQFormerConfig):
        if field.type in ("int", "float", "tuple[float, float]") or field.name == "eval_split":
            assert field.name in RANGES, f"add {field.name!r} to baselines.dqformer.config.RANGES"


@pytest.mark.parametrize(
    ("options", "code", "words"),
    [
        (["--grad-clip", "-1"], 2, "--grad-clip"),
        (["--grad-clip", "0"], 2, "--grad-clip"),
        (["--warmup-steps", "-5"], 2, "--warmup-steps"),
        (["--batch-size", "0"], 2, "--batch-size"),
        (["--dim", "7", "--heads", "3"], 2, "--dim"),
        (["--dim", "64", "--heads", "3"], 1, "dim must be a multiple of heads"),
        (["--max-tokens", "0"], 2, "--max-tokens"),
        (["--sentences-per-image", "0"], 2, "--sentences-per-image"),
        (["--test-split", "bogus"], 2, "--test-split"),
        (["--lr", "nan"], 2, "--lr"),
        (["--eval-split", "test"], 2, "--eval-split"),
        (["--preset", "paper", "--backbone", "/bad/path"], 1, "--backbone /bad/path: no such folder"),
        (["--text-encoder", "./no/such/model"], 1, "--text-encoder ./no/such/model: no such folder"),
    ],
)
def test_training_options_are_refused_before_any_work(options, code, words, ds, tmp_path, monkeypatch):
    import mvtec_ref.cli as cli

    def no_work():
        raise AssertionError("transformers was loaded before the options were checked")

    monkeypatch.setattr(cli, "_quiet_transformers", no_work)
    before = snapshot(tmp_path)
    result = invoke("train-baseline", ds, "--out", tmp_path / "run", *options)
    assert result.exit_code == code and "Traceback" not in result.output, result.output
    assert words in result.output
    assert snapshot(tmp_path) == before


def test_a_test_split_the_dataset_lacks_is_refused_before_training(ds, tmp_path, monkeypatch):
    import baselines.dqformer.train as train

    def no_start():
        raise AssertionError("training started before the splits were checked")

    monkeypatch.setattr(train, "setup_distributed", no_start)
    lines = [json.loads(x) for x in _lines(ds)]
    _write(ds, [json.dumps({**r, "split": "test" if r["split"] == "val" else r["split"]}) for r in lines])
    counts = json.loads((ds / "manifest.json").read_text())
    from mvtec_ref.build import count_records

    counts["counts"] = count_records([json.loads(x) for x in _lines(ds)])
    (ds / "manifest.json").write_text(json.dumps(counts))
    result = invoke("train-baseline", ds, "--out", tmp_path / "run", "--preset", "tiny")
    refused(result, "--eval-split val:", "has no image in that split")


@pytest.mark.parametrize(
    "args",
    [
        ["validate", "{ds}", "--max-lines", "-1"],
        ["probes", "{ds}", "--seed", "-1"],
        ["show", "{ds}", "--sample", "1", "--seed", "-3", "--out", "{t}/s"],
        ["build", "--root", "{t}", "--out", "{t}/b", "--workers", "100000"],
        ["paraphrase", "{ds}", "--base-url", "http://x/v1", "--model", "m", "--temperature", "nan"],
        ["paraphrase", "{ds}", "--base-url", "http://x/v1", "--model", "m", "--timeout", "-1"],
        ["predict", "{t}", "--dataset", "{ds}", "--out", "{t}/p", "--device", "gpu0"],
        ["download", "mvtec_ad", "--url", "http://x", "--sha256", "zz"],
    ],
)
def test_other_options_are_refused_with_their_range(args, ds, tmp_path):
    before = snapshot(tmp_path)
    result = invoke(*[a.format(ds=ds, t=tmp_path) for a in args])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "Invalid value" in result.output
    assert snapshot(tmp_path) == before


# -- 7. the rest of the list ----------------------------------------------------------------


@pytest.mark.parametrize("folder", ["rug", "Carpet"])
def test_a_category_the_vocabulary_lacks_builds_with_a_problem(folder, synth_tree, tmp_path):
    root = tmp_path / "src"
    shutil.copytree(synth_tree / ("bottle" if folder == "rug" else "carpet"), root / folder)
    result = invoke("build", "--root", root, "--out", tmp_path / "ds")
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "no phrase for defect type" in result.output and f"of '{folder}'" in result.output


def test_two_files_with_one_sample_id_are_a_problem_not_a_duplicate(synth_tree, tmp_path):
    root = tmp_path / "src"
    shutil.copytree(synth_tree / "bottle", root / "bottle")
    good = root / "bottle/test/good"
    shutil.copy(good / "000.png", good / "000.PNG")
    result = invoke("build", "--root", root, "--out", tmp_path / "ds")
    assert result.exit_code == 0, result.output
    assert "has the sample id 'bottle/test/good/000' of bottle/test/good/000.PNG" in result.output
    assert invoke("validate", tmp_path / "ds").exit_code == 0


def test_a_truncated_checkpoint_on_resume_is_one_line(tmp_path):
    import torch

    from baselines.dqformer.train import Dist, load_state
    from mvtec_ref.errors import TrainingError

    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": {"w": torch.zeros(1000)}, "step": 3}, run / "last.pt")
    data = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(TrainingError, match=r"last.pt: not a readable checkpoint of this run"):
        load_state(run, trainer=None, dist=Dist(0, 1, 0))


def test_a_kill_during_the_first_checkpoint_leaves_no_dead_end(tmp_path):
    from baselines.dqformer.train import _prepare_run
    from mvtec_ref.errors import TrainingError

    run = tmp_path / "run"
    (run / "tokenizer").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / f".last.pt.tmp-{dead_pid()}-abcd1234").write_bytes(b"half a checkpoint")
    with pytest.raises(TrainingError, match="start it again without --resume"):
        _prepare_run(run, resume=True)
    _prepare_run(run, resume=False)  # starts over: what the dead run wrote is cleared
    assert list(run.iterdir()) == []


def test_force_never_replaces_a_file_of_another_output(ds, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(ds, other)  # a second dataset of ours: its manifest is listed in its record
    before = snapshot(other)
    refused(
        invoke("stats", ds, "--json", other / "manifest.json", "--force"), "is part of the mvtec-ref output"
    )
    assert snapshot(other) == before


def test_a_probe_that_disagrees_with_its_sentence_is_refused(ds, tmp_path):
    probes = tmp_path / "p.jsonl"
    assert invoke("probes", ds, "--out", probes, "--quiet").exit_code == 0
    lines = probes.read_text().splitlines()
    probe = json.loads(lines[1])
    lines[1] = json.dumps({**probe, "source_text": "something else"})
    probes.write_text("\n".join(lines) + "\n")
    refused(invoke("evaluate", ds, "--probes", probes, "--pred", tmp_path, "--allow-missing"),
            f"probe {probe['probe_id']}: source_text or source_region_ids are not those of")  # fmt: skip


def test_a_decision_line_of_the_wrong_shape_is_skipped_and_listed(tmp_path):
    from mvtec_ref.review.store import load_decisions

    path = tmp_path / "reviews.jsonl"
    good = {"image": "a.png", "target": "4x4:empty", "text": "anomaly", "decision": "accept"}
    path.write_text(
        "\n".join(json.dumps(x) for x in (good, {**good, "asserted": "yes"}, {**good, "extra": 1})) + "\n"
    )
    decisions, problems = load_decisions(path)
    assert len(decisions) == 1 and len(problems) == 2
    assert "reviews.jsonl:2: asserted: 'yes' is not of type 'boolean'; skipped" in problems[0]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="zombies are read from /proc (Linux)")
def test_a_killed_but_unreaped_writer_counts_as_gone(tmp_path):
    """A kill -9 in a container whose init reaps late leaves a zombie: its staging is still swept."""
    from mvtec_ref.fileio import leftovers, sweep_leftovers

    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # exits, and is not waited for yet
    try:
        for _ in range(200):
            state = Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state == "Z":
                break
            time.sleep(0.05)
        (tmp_path / f".out.staging-{zombie.pid}-abcdefgh").mkdir()
        sweep_leftovers(tmp_path / "out")
        assert leftovers(tmp_path / "out") == []
    finally:
        zombie.wait()


def test_a_kill_while_the_old_output_was_deleted_is_finished_by_the_next_run(ds, tmp_path):
    out = tmp_path / "e"
    assert invoke("export", ds, "--format", "jsonl", "--out", out).exit_code == 0
    half = tmp_path / f".e.staging-old-{dead_pid()}"  # the replaced output, its deletion cut short
    half.mkdir()
    (half / "refs.jsonl").write_text("partly deleted\n")
    assert invoke("export", ds, "--format", "jsonl", "--out", out).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "e"]
