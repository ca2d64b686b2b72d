"""Issue 19, as a hostile new user: every case exits with its code and one line naming the file
and the problem, and nothing outside the toolkit's own files changes (the whole folder is hashed
before and after)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from llm_server import FakeLLM

from mvtec_ref.cli import main

IMAGE = "bottle/test/broken_large/000.png"
MASK = "bottle/ground_truth/broken_large/000_mask.png"


def snapshot(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """relative path -> content hash ("dir", "link:<target>") of everything below ``folder``."""
    found = {}
    for parent, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            path = Path(parent) / name
            rel = path.relative_to(folder).as_posix()
            if any(rel == s or rel.startswith(s + "/") for s in skip):
                continue
            if path.is_symlink():
                found[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def one_line(result, code: int = 1) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == code, result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def invoke(*args) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def work(synth_tree, tmp_path) -> Path:
    """tmp_path holding ``src`` (the bottle category of the synthetic tree)."""
    shutil.copytree(synth_tree / "bottle", tmp_path / "src" / "bottle")
    return tmp_path


@pytest.fixture
def dataset(built, tmp_path) -> Path:
    shutil.copytree(built, tmp_path / "ds")
    return tmp_path / "ds"


# ---------------------------------------------------------------------------------------------
# Data loss: an output folder is replaced only when every entry in it is one we wrote.


def _foreign_webapp(out: Path, marker: str) -> None:
    (out / "src").mkdir(parents=True)
    (out / marker).write_text("{}")
    (out / "src" / "app.js").write_text("code")
    (out / "thesis.tex").write_text("t")


@pytest.mark.parametrize(
    ("command", "marker"),
    [
        ("build", "manifest.json"),
        ("report", "index.html"),
        ("export", "EXPORT.json"),
        ("synth", "SYNTHETIC.json"),
        ("predict", "PREDICTIONS.json"),
    ],
)
def test_a_marker_file_alone_never_licenses_a_replace(command, marker, work, built):
    out = work / "webapp"
    _foreign_webapp(out, marker)
    shutil.copy(work / "src" / IMAGE, work / "img.png")
    before = snapshot(work)
    args = {
        "build": ("build", "--root", work / "src", "--out", out, "--quiet"),
        "report": ("report", built, "--out", out, "--quiet"),
        "export": ("export", built, "--format", "jsonl", "--out", out, "--quiet"),
        "synth": ("synth", "--out", out, "--category", "bottle", "--per-type", "1", "--quiet"),
        "predict": ("predict", work / "run", "--image", work / "img.png", "--text", "crack", "--out", out),
    }[command]
    line = one_line(invoke(*args))
    assert str(out) in line and "refusing to replace it" in line
    assert snapshot(work) == before


@pytest.mark.parametrize("marker", ["PREDICTIONS.json", "manifest.json", "index.html"])
def test_staged_directory_refuses_what_its_record_does_not_list(marker, tmp_path):
    from mvtec_ref.errors import OutputError
    from mvtec_ref.fileio import staged_directory

    out = tmp_path / "out"
    with staged_directory(out, marker=marker) as stage:
        (stage / marker).write_text("v1")
        (stage / "sub").mkdir()
        (stage / "sub" / "a.png").write_bytes(b"x")
    with staged_directory(out, marker=marker) as stage:  # our own previous output: replaced
        (stage / marker).write_text("v2")
    assert (out / marker).read_text() == "v2" and not (out / "sub").exists()
    (out / "NOTES.md").write_text("mine")
    before = snapshot(tmp_path)
    refused = pytest.raises(OutputError, match=r"1 entries mvtec-ref did not write \(NOTES.md\)")
    with refused, staged_directory(out, marker=marker) as stage:
        (stage / marker).write_text("v3")
    assert snapshot(tmp_path) == before
    with (
        pytest.raises(OutputError, match="written by another mvtec-ref command"),
        staged_directory(out, marker="OTHER.json"),
    ):
        pass


@pytest.mark.parametrize("extra", ["NOTES.md", "figures/loss.png", "export/EXPORT.json"])
def test_rebuild_refuses_a_dataset_folder_holding_user_files(extra, work):
    out = work / "ds"
    assert invoke("build", "--root", work / "src", "--out", out, "--quiet").exit_code == 0
    (out / extra).parent.mkdir(parents=True, exist_ok=True)
    (out / extra).write_text("the user's")
    before = snapshot(work)
    line = one_line(invoke("build", "--root", work / "src", "--out", out, "--quiet"))
    assert "did not write" in line and extra.split("/")[0] in line
    assert snapshot(work) == before


def test_rebuild_of_our_own_output_replaces_it(work):
    out = work / "ds"
    assert invoke("build", "--root", work / "src", "--out", out, "--quiet").exit_code == 0
    first = snapshot(out)
    assert invoke("build", "--root", work / "src", "--out", out, "--quiet").exit_code == 0
    assert snapshot(out) == first  # byte-identical rerun


def test_an_export_is_not_a_dataset_folder(work, built):
    out = work / "exp"
    assert invoke("export", built, "--format", "jsonl", "--out", out, "--quiet").exit_code == 0
    before = snapshot(work)
    line = one_line(invoke("build", "--root", work / "src", "--out", out, "--quiet"))
    assert "written by another mvtec-ref command" in line
    assert snapshot(work) == before


@pytest.mark.parametrize("where", ["out_in_root", "root_in_out", "same"])
def test_out_and_root_must_not_overlap(where, work, monkeypatch):
    import mvtec_ref.build

    def no_scan(name):
        raise AssertionError("the source was read before the options were checked")

    monkeypatch.setattr(mvtec_ref.build, "get_source", no_scan)
    root, out = {
        "out_in_root": (work / "src", work / "src" / "ds"),
        "root_in_out": (work / "src" / "bottle", work / "src"),
        "same": (work / "src", work / "src"),
    }[where]
    before = snapshot(work)
    line = one_line(invoke("build", "--root", root, "--out", out, "--quiet"))
    assert "--out" in line and "--root" in line
    assert snapshot(work) == before


def test_export_and_report_refuse_an_out_that_is_or_holds_the_dataset(dataset):
    before = snapshot(dataset.parent)
    line = one_line(invoke("export", dataset, "--format", "jsonl", "--out", dataset.parent, "--quiet"))
    assert "--out holds DATASET" in line
    line = one_line(invoke("report", dataset, "--out", dataset, "--quiet"))
    assert "--out is DATASET" in line
    assert snapshot(dataset.parent) == before
    # Inside is fine (only manifest.json and samples.jsonl are read); a rebuild of the dataset
    # folder then refuses, naming the export, instead of deleting it.
    assert invoke("export", dataset, "--format", "jsonl", "--out", dataset / "exp", "--quiet").exit_code == 0


# ---------------------------------------------------------------------------------------------
# build: tracebacks become one line (strict) or a recorded skip (default).


def _link_loop(root: Path) -> str:
    folder = root / "bottle/test/broken_large"
    os.symlink("b.png", folder / "a.png")
    os.symlink("a.png", folder / "b.png")
    return "bottle/test/broken_large/a.png"


def _dangling_category_link(root: Path) -> str:
    os.symlink("nowhere", root / "bottle" / "test" / "loopy")
    return "bottle/test/loopy"


def _newline_name(root: Path) -> str:
    shutil.copy(root / "bottle/test/good/000.png", root / "bottle/test/good/0\n01x.png")
    return "bottle/test/good/0\\n01x.png"


def _unreadable_folder(root: Path, monkeypatch) -> str:
    """chmod 000 has no effect on root, so listing the folder fails as it would for a user."""
    import mvtec_ref.sources.base as base

    denied = str(root / "bottle/test/broken_large")
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path) == denied:
            raise PermissionError(13, "Permission denied", denied)
        return real(path)

    monkeypatch.setattr(base.os, "scandir", scandir)
    return "bottle/test/broken_large"


BUILD_BREAKERS = {
    "symlink_loop": (_link_loop, "cannot follow symbolic link (Too many levels of symbolic links)"),
    "dangling_link": (_dangling_category_link, "cannot follow symbolic link"),
    "newline_in_name": (_newline_name, "file name holds a newline or control character"),
    "unreadable_folder": (_unreadable_folder, "cannot list folder (Permission denied)"),
}


@pytest.mark.parametrize("case", sorted(BUILD_BREAKERS))
def test_build_skips_or_stops_with_one_line(case, work, monkeypatch):
    breaker, problem = BUILD_BREAKERS[case]
    root = work / "src"
    args = (root,) if breaker is not _unreadable_folder else (root, monkeypatch)
    path = breaker(*args)
    before = snapshot(work)
    line = one_line(invoke("build", "--root", root, "--out", work / "strict", "--strict", "--quiet"))
    assert line.startswith(f"Error: {path}: {problem}"), line
    assert snapshot(work) == before
    result = invoke("build", "--root", root, "--out", work / "ds", "--quiet")
    assert result.exit_code == 0, result.output
    assert snapshot(work, skip=("ds",)) == before
    problems = json.loads((work / "ds" / "manifest.json").read_text())["problems"]
    assert {"path": path, "kind": "unreadable", "action": "skipped"}.items() <= next(
        p for p in problems if p["path"] == path
    ).items()


def test_link_loops_at_category_level_are_no_category(work):
    clean = work / "clean"
    assert invoke("build", "--root", work / "src", "--out", clean, "--quiet").exit_code == 0
    os.symlink("x", work / "src" / "x")
    os.symlink("b", work / "src" / "a")
    os.symlink("a", work / "src" / "b")
    before = snapshot(work)
    for flag in ("--quiet", "--strict"):
        result = invoke("build", "--root", work / "src", "--out", work / "ds", flag)
        assert result.exit_code == 0, result.output
        assert (work / "ds" / "samples.jsonl").read_bytes() == (clean / "samples.jsonl").read_bytes()
    assert snapshot(work, skip=("ds",)) == before


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--split-ratios", "nan,0,1", "'nan,0,1' is not three shares >= 0 summing to 1"),
        ("--split-ratios", "inf,0,-inf", "is not three shares >= 0 summing to 1"),
        ("--seed", "-5", "-5 is not in the range x>=0"),
    ],
)
def test_bad_options_fail_before_any_image_is_read(option, value, words, work, monkeypatch):
    import mvtec_ref.build

    def no_scan(name):
        raise AssertionError("the source was read before the options were checked")

    monkeypatch.setattr(mvtec_ref.build, "get_source", no_scan)
    before = snapshot(work)
    result = invoke("build", "--root", work / "src", "--out", work / "ds", option, value)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert words in result.output.strip().splitlines()[-1], result.output
    assert snapshot(work) == before


def test_root_is_recorded_resolved(work):
    os.symlink(work / "src", work / "alias")
    for name, root in (("a", work / "src"), ("b", work / "src" / ".." / "src"), ("c", work / "alias")):
        assert invoke("build", "--root", root, "--out", work / name, "--quiet").exit_code == 0
    manifests = {(work / n / "manifest.json").read_bytes() for n in "abc"}
    assert len(manifests) == 1
    assert json.loads(manifests.pop())["source"]["root"] == str((work / "src").resolve())


# ---------------------------------------------------------------------------------------------
# Masks read by meaning: each variant of the 0/255 mask gives the same regions, with a warning.


def _as_01(mask):
    return cv2.imencode(".png", (mask > 0).astype(np.uint8))[1].tobytes()


def _as_16bit_255(mask):
    return cv2.imencode(".png", mask.astype(np.uint16))[1].tobytes()


def _as_16bit_1(mask):
    return cv2.imencode(".png", (mask > 0).astype(np.uint16))[1].tobytes()


def _as_dark_palette(mask):
    from PIL import Image

    image = Image.fromarray((mask > 0).astype(np.uint8), mode="P")
    image.putpalette([255, 255, 255, 30, 0, 0] + [0] * 762)  # normal white, defect almost black
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _as_white_rgba(mask):
    rgba = np.full((*mask.shape, 4), 255, np.uint8)
    rgba[:, :, 3] = mask
    return cv2.imencode(".png", rgba)[1].tobytes()


MASK_VARIANTS = {
    "zero_one": (_as_01, "mask holds only 0/1: 1 read as defect"),
    "16bit_0_255": (_as_16bit_255, "16-bit mask: every non-zero value read as defect"),
    "16bit_0_1": (_as_16bit_1, "16-bit mask: every non-zero value read as defect"),
    "dark_palette": (_as_dark_palette, "palette mask: index 0 read as normal"),
    "white_rgba_alpha": (_as_white_rgba, "the alpha channel read as the mask"),
}


@pytest.mark.parametrize("variant", sorted(MASK_VARIANTS))
def test_masks_are_read_by_meaning(variant, work, built):
    encode, note = MASK_VARIANTS[variant]
    root = work / "src"
    mask = cv2.imread(str(root / MASK), cv2.IMREAD_UNCHANGED)
    (root / MASK).write_bytes(encode(mask))
    before = snapshot(work)
    result = invoke("build", "--root", root, "--out", work / "ds", "--quiet")
    assert result.exit_code == 0, result.output
    assert snapshot(work, skip=("ds",)) == before
    problems = json.loads((work / "ds" / "manifest.json").read_text())["problems"]
    mine = [p for p in problems if p["path"] == MASK]
    assert len(mine) == 1 and mine[0]["kind"] == "mask_values" and mine[0]["action"] == "accepted"
    assert note in mine[0]["problem"]

    def regions(ds):
        for line in (ds / "samples.jsonl").open():
            record = json.loads(line)
            if record["image_path"] == IMAGE:
                return [r["segmentation"] for r in record["regions"]]

    assert regions(work / "ds") == regions(built) and regions(built)


# ---------------------------------------------------------------------------------------------
# validate --deep: every malformed shape is a problem line, never a traceback.


def _region_rle(change):
    def mutate(manifest, lines):
        out = []
        for line in lines:
            record = json.loads(line)
            if record["regions"]:
                change(record["regions"][0]["segmentation"], record)
            out.append(json.dumps(record))
        return manifest, out

    return mutate


VALIDATE_CASES = {
    "garbage_rle": (
        _region_rle(lambda rle, r: rle.update(counts="!!!!zzz{{")),
        "RLE does not decode (RLE counts holds '!'",
    ),
    "rle_runs_overflow": (
        _region_rle(lambda rle, r: rle.update(counts="0" + "o" * 12 + "1")),
        "RLE does not decode",
    ),
    "rle_size_differs": (
        _region_rle(lambda rle, r: rle.update(size=[r["height"] + 1, r["width"]])),
        "is not the image's",
    ),
    "null_line": (
        lambda m, lines: (m, ["null", *lines]),
        "samples.jsonl:1: (line): is a JSON null, not an object",
    ),
    "list_line": (
        lambda m, lines: (m, ["[1,2,3]", *lines]),
        "samples.jsonl:1: (line): is a JSON array, not an object",
    ),
    "manifest_array": (lambda m, lines: ([], lines), "manifest.json: (line): is a JSON array, not an object"),
    "source_string": (
        lambda m, lines: ({**m, "source": "x"}, lines),
        "manifest.json: source: 'x' is not of type",
    ),
    "refs_string": (
        lambda m, lines: ({**m, "config": {**m["config"], "refs": "x"}}, lines),
        "manifest.json: config.refs: 'x' is not of type 'object'",
    ),
    "no_config": (
        lambda m, lines: ({k: v for k, v in m.items() if k != "config"}, lines),
        "'config' is a required property",
    ),
}


@pytest.mark.parametrize("case", sorted(VALIDATE_CASES))
def test_validate_answers_malformed_datasets_with_problem_lines(case, dataset):
    mutate, words = VALIDATE_CASES[case]
    manifest = json.loads((dataset / "manifest.json").read_text())
    lines = (dataset / "samples.jsonl").read_text().splitlines()
    manifest, lines = mutate(manifest, lines)
    (dataset / "manifest.json").write_text(json.dumps(manifest))
    (dataset / "samples.jsonl").write_text("\n".join(lines) + "\n")
    before = snapshot(dataset.parent)
    result = invoke("validate", "--deep", dataset)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert words in result.output, result.output
    assert result.output.strip().splitlines()[-1].startswith(f"Error: {dataset}: ")
    assert snapshot(dataset.parent) == before


# ---------------------------------------------------------------------------------------------
# paraphrase: bodies that are not chat completions, an unreachable endpoint, keys in the URL.


@pytest.fixture(scope="module")
def llm():
    server = FakeLLM()
    yield server
    server.close()


def _paraphrase(dataset, base_url, tmp_path, *extra):
    return invoke("paraphrase", dataset, "--base-url", base_url, "--model", "m", "--max-sentences", "2",
                  "--cache", tmp_path / "cache.jsonl", "--quiet", *extra)  # fmt: skip


@pytest.mark.parametrize(
    "mode", ["body_text", "body_badjson", "body_nochoices", "body_emptychoices", "body_list"]
)
def test_paraphrase_refuses_a_body_that_is_not_a_chat_completion(mode, dataset, llm, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    llm.reset(mode)
    before = snapshot(tmp_path)
    line = one_line(_paraphrase(dataset, llm.base_url, tmp_path))
    assert line.startswith(f"Error: {llm.base_url}: answered with a body that is not a chat completion")
    assert snapshot(tmp_path) == before


def test_unreachable_endpoint_keeps_the_provenance(dataset, llm, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    llm.reset("good")
    assert _paraphrase(dataset, llm.base_url, tmp_path).exit_code == 0
    before = snapshot(tmp_path)
    fresh = ("--cache", tmp_path / "fresh.jsonl", "--retries", "0")  # the paid answers would be reused
    line = one_line(_paraphrase(dataset, "http://127.0.0.1:9/v1", tmp_path, *fresh))
    assert "http://127.0.0.1:9/v1: cannot reach the endpoint after 1 tries" in line
    assert snapshot(tmp_path, skip=("fresh.jsonl",)) == before


def test_no_accepted_paraphrase_writes_nothing(dataset, llm, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    llm.reset("unfaithful")
    before = snapshot(dataset)
    result = _paraphrase(dataset, llm.base_url, tmp_path)
    assert result.exit_code == 0 and "dataset unchanged" in result.output
    assert snapshot(dataset) == before


def test_credentials_in_the_base_url_are_never_stored(dataset, llm, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    llm.reset("good")
    port = llm.base_url.split(":")[2].split("/")[0]
    secret_url = f"http://user:hunter2@127.0.0.1:{port}/v1?api-key=hunter3"
    result = _paraphrase(dataset, secret_url, tmp_path)
    assert result.exit_code == 0, result.output
    text = (dataset / "manifest.json").read_text()
    assert "hunter" not in text and "user" not in json.loads(text)["config"]["refs"]["paraphrase"]["base_url"]
    assert json.loads(text)["config"]["refs"]["paraphrase"]["base_url"] == f"http://127.0.0.1:{port}/v1"


def test_paraphrase_refuses_a_dataset_folder_with_user_files_before_any_request(dataset, llm, tmp_path,
                                                                                monkeypatch):  # fmt: skip
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    llm.reset("good")
    (dataset / "NOTES.md").write_text("mine")
    (dataset / "figures").mkdir()
    (dataset / "figures" / "f.png").write_bytes(b"png")
    before = snapshot(tmp_path)
    line = one_line(_paraphrase(dataset, llm.base_url, tmp_path))
    assert "2 entries mvtec-ref did not write (NOTES.md, figures" in line
    assert llm.calls == 0 and snapshot(tmp_path) == before


# ---------------------------------------------------------------------------------------------
# download


def _tar(members: dict[str, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_custom_from_file_with_sha256(tmp_path):
    archive = tmp_path / "mine.tar.gz"
    archive.write_bytes(_tar({"d/": None, "d/a.png": b"x"}))
    before = snapshot(tmp_path)
    old = os.umask(0o022)
    try:
        result = invoke(
            "download", "custom", "--from", archive, "--sha256", _sha(archive), "--out", tmp_path / "x"
        )
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert snapshot(tmp_path, skip=("x",)) == before
    assert (tmp_path / "x" / "d" / "a.png").read_bytes() == b"x"
    assert (tmp_path / "x").stat().st_mode & 0o777 == 0o755  # shared like any folder, not 0700


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("out_is_a_file", "exists and is not a folder"),
        ("file_and_folder", "member 'x' is a file but 'x/y' needs it to be a folder"),
        ("real_iad_from", "no recorded checksum for 'real_iad'; give the archive's SHA-256 with --sha256"),
        ("from_without_name", "name the dataset, e.g. mvtec-ref download mvtec_ad --from FILE"),
        ("over_the_cap", "GiB cap"),
    ],
)
def test_download_refusals(case, words, tmp_path, monkeypatch):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(
        _tar({"x": b"file", "x/y": b"inside"} if case == "file_and_folder" else {"d/a": b"1"})
    )
    (tmp_path / "taken").write_text("a file")
    if case == "over_the_cap":
        monkeypatch.setattr("mvtec_ref.download.MAX_EXTRACTED_BYTES", 0)
    out = tmp_path / ("taken" if case == "out_is_a_file" else "new")
    name = {"real_iad_from": ("real_iad",), "from_without_name": ()}.get(case, ("custom",))
    sha = () if case in ("real_iad_from", "from_without_name") else ("--sha256", _sha(archive))
    before = snapshot(tmp_path)
    line = one_line(invoke("download", *name, "--from", archive, *sha, "--out", out))
    assert words in line
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------------------------------------
# evaluate: corrupt and uncompressed RLE, 16-bit and RGBA PNGs, resized predictions.


def _truth(dataset: Path) -> dict[int, np.ndarray]:
    from mvtec_ref.regions.mask import decode_rle

    masks = {}
    for line in (dataset / "samples.jsonl").open():
        record = json.loads(line)
        if record["split"] != "test":
            continue
        regions = {r["region_id"]: decode_rle(r["segmentation"]) for r in record["regions"]}
        for ref in record["refs"]:
            gt = np.zeros((record["height"], record["width"]), np.uint8)
            for i in ref["region_ids"]:
                gt |= regions[i]
            for s in ref["sentences"]:
                masks[s["sent_id"]] = gt
    return masks


def _uncompressed(mask: np.ndarray) -> dict:
    flat = mask.ravel(order="F")
    runs, value, n = [], 0, 0
    for v in flat:
        if v != value:
            runs.append(n)
            value, n = v, 0
        n += 1
    runs.append(n)
    return {"size": list(mask.shape), "counts": [int(r) for r in runs]}


def test_evaluate_accepts_uncompressed_rle_and_refuses_corrupt_counts(dataset, tmp_path):
    from mvtec_ref.regions.mask import encode_rle

    truth = _truth(dataset)
    for name, encode in (("packed", encode_rle), ("plain", _uncompressed)):
        with (tmp_path / f"{name}.jsonl").open("w") as f:
            for sent_id, mask in truth.items():
                f.write(json.dumps({"sent_id": sent_id, "mask": encode(mask)}) + "\n")
    scores = {}
    for name in ("packed", "plain"):
        result = invoke(
            "evaluate", dataset, "--pred", tmp_path / f"{name}.jsonl", "--out", tmp_path / f"{name}.json"
        )
        assert result.exit_code == 0, result.output
        scores[name] = json.loads((tmp_path / f"{name}.json").read_text())["overall"]
    assert scores["plain"] == scores["packed"] and scores["plain"]["gIoU"] == 1.0
    bad = tmp_path / "bad.jsonl"
    first = next(iter(truth))
    corrupt = [{"sent_id": s, "mask": {"size": list(m.shape), "counts": "!!bad"}} for s, m in truth.items()]
    bad.write_text("".join(json.dumps(item) + "\n" for item in corrupt))
    before = snapshot(tmp_path)
    line = one_line(invoke("evaluate", dataset, "--pred", bad))
    assert line.startswith(f"Error: {bad}:1: mask: not a valid COCO RLE") and first
    assert snapshot(tmp_path) == before


PNG_VARIANTS = {
    "8bit_0_255": lambda m: (m * 255).astype(np.uint8),
    "16bit_0_255": lambda m: (m * 255).astype(np.uint16),
    "16bit_0_1": lambda m: m.astype(np.uint16),
    "rgba_alpha": lambda m: np.dstack([np.full(m.shape, 255, np.uint8)] * 3 + [(m * 255).astype(np.uint8)]),
}


@pytest.mark.parametrize("variant", sorted(PNG_VARIANTS))
def test_evaluate_reads_prediction_pngs_by_meaning(variant, dataset, tmp_path):
    preds = tmp_path / "preds"
    preds.mkdir()
    for sent_id, mask in _truth(dataset).items():
        cv2.imwrite(str(preds / f"{sent_id}.png"), PNG_VARIANTS[variant](mask))
    before = snapshot(tmp_path)
    result = invoke("evaluate", dataset, "--pred", preds, "--out", tmp_path / "s.json")
    assert result.exit_code == 0, result.output
    assert snapshot(tmp_path, skip=("s.json",)) == before
    overall = json.loads((tmp_path / "s.json").read_text())["overall"]
    assert overall["gIoU"] == 1.0 and overall["mIoU"] == 1.0


def test_evaluate_says_when_and_how_a_prediction_was_resized(dataset, tmp_path, caplog):
    preds = tmp_path / "preds"
    preds.mkdir()
    for sent_id in _truth(dataset):
        cv2.imwrite(str(preds / f"{sent_id}.png"), np.full((1, 1), 255, np.uint8))
    with caplog.at_level("WARNING"):
        result = invoke("evaluate", dataset, "--pred", preds)
    assert result.exit_code == 0, result.output
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "differ in size from their image" in said and "is 1x1" in said and "INTER_NEAREST" in said


# ---------------------------------------------------------------------------------------------
# train-baseline and predict: options refused up front; a run that died early is no dead end.


@pytest.mark.parametrize(
    ("option", "value", "code", "words"),
    [("--epochs", "0", 2, "0 is not in the range 1<=x<=1000000"),
     ("--image-size", "7", 2, "7 is not in the range 32<=x<=4096"),
     ("--image-size", "48", 1, "--image-size 48: must be a positive multiple of 32")],
)  # fmt: skip
def test_train_refuses_impossible_settings_up_front(
    option, value, code, words, dataset, tmp_path, monkeypatch
):
    import baselines.dqformer.train as train

    def no_start():
        raise AssertionError("training started before its settings were checked")

    monkeypatch.setattr(train, "setup_distributed", no_start)
    before = snapshot(tmp_path)
    result = invoke("train-baseline", dataset, "--out", tmp_path / "run", "--preset", "tiny", option, value)
    assert result.exit_code == code and "Traceback" not in result.output
    assert words in result.output.strip().splitlines()[-1], result.output
    assert snapshot(tmp_path) == before


def test_a_run_that_died_before_its_first_checkpoint_is_no_dead_end(tmp_path):
    from baselines.dqformer.train import _prepare_run
    from mvtec_ref.errors import TrainingError

    run = tmp_path / "run"
    (run / "tokenizer").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "environment.json").write_text("[]")
    (run / "tokenizer" / "vocab.txt").write_text("a")
    with pytest.raises(
        TrainingError, match="stopped before its first checkpoint: start it again without --resume"
    ):
        _prepare_run(run, resume=True)
    _prepare_run(run, resume=False)  # a fresh run starts over in it
    assert list(run.iterdir()) == []
    (run / "config.json").write_text("{}")
    (run / "thesis.tex").write_text("mine")  # not only what a run writes: refused, nothing deleted
    with pytest.raises(TrainingError, match="already holds a run"):
        _prepare_run(run, resume=False)
    assert (run / "thesis.tex").read_text() == "mine"


def test_a_damaged_environment_record_does_not_stop_a_resume(tmp_path, caplog):
    import torch

    from baselines.dqformer.train import record_environment

    (tmp_path / "environment.json").write_text('[{"step": 0')  # cut off mid-write by hand
    with caplog.at_level("WARNING"):
        record_environment(tmp_path, 7, torch.device("cpu"))
    assert [e["step"] for e in json.loads((tmp_path / "environment.json").read_text())] == [7]
    assert "environment.json: unreadable" in caplog.text
    record_environment(tmp_path, 9, torch.device("cpu"))  # a later resume appends to the good list
    assert [e["step"] for e in json.loads((tmp_path / "environment.json").read_text())] == [7, 9]


def test_the_code_commit_is_only_a_checkout_of_its_own(tmp_path):
    import subprocess

    from baselines.dqformer.train import code_commit

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "a.txt").write_text("a")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a")
    head = code_commit(tmp_path)
    assert head is not None and len(head) == 10 and not head.endswith("-dirty")
    (tmp_path / "a.txt").write_text("b")
    assert code_commit(tmp_path) == f"{head}-dirty"
    (tmp_path / "site" / "baselines").mkdir(parents=True)  # an install inside someone's repository
    assert code_commit(tmp_path / "site") is None
    assert code_commit(tmp_path.parent / "nowhere") is None


def test_predict_refuses_an_empty_expression(tmp_path):
    (tmp_path / "img.png").write_bytes(cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes())
    before = snapshot(tmp_path)
    for text in ("", " "):
        args = ("predict", tmp_path / "run", "--image", tmp_path / "img.png", "--text", text)
        result = invoke(*args, "--out", tmp_path / "o")
        assert one_line(result) == "Error: --text: an expression is empty; say what to segment"
    assert snapshot(tmp_path) == before
