"""LLM paraphrase end to end: the real openai client against a server on 127.0.0.1."""

import json
import shutil

import pytest
from click.testing import CliRunner
from llm_server import FakeLLM

from annotate.paraphrase import EndpointError, ParaphraseConfig, ResponseCache, paraphrase_dataset
from mvtec_ref.cli import main
from mvtec_ref.validate import validate_dataset

KEY = "sk-test-secret-0123456789"


@pytest.fixture(scope="module")
def llm():
    server = FakeLLM()
    yield server
    server.close()


@pytest.fixture
def dataset(synth_tree, tmp_path, monkeypatch):
    from mvtec_ref.build import BuildConfig, build_dataset

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    out = tmp_path / "ds"
    build_dataset(synth_tree, out, BuildConfig(categories=("hazelnut", "grid")), progress=False)
    return out


def _run(dataset, llm, tmp_path, n=6, **overrides):
    config = ParaphraseConfig(base_url=llm.base_url, model="test-model", max_sentences=n, **overrides)
    return paraphrase_dataset(
        dataset, config, cache_path=tmp_path / "cache.jsonl", progress=False, sleep=lambda s: None
    )


def _llm_sentences(dataset):
    records = [json.loads(line) for line in (dataset / "samples.jsonl").open()]
    return [
        (ref["region_ids"], s)
        for r in records
        for ref in r["refs"]
        for s in ref["sentences"]
        if s["origin"] == "llm"
    ]


def _snapshot(dataset):
    return (dataset / "samples.jsonl").read_bytes()


def test_good_answers_are_checked_added_and_cached(dataset, llm, tmp_path):
    llm.reset("good")
    outcome = _run(dataset, llm, tmp_path)
    assert outcome["accepted"] == 6 and outcome["requests"] == 6 and llm.calls == 6
    added = _llm_sentences(dataset)
    assert len(added) == 6 and all(s["text"].startswith("look at ") for _, s in added)
    assert all(isinstance(s["paraphrase_of"], int) for _, s in added)
    assert validate_dataset(dataset) == []
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["config"]["refs"]["paraphrase"]["outcome"]["accepted"] == 6
    assert llm.auth_headers == [f"Bearer {KEY}"] * 6
    for path in [*dataset.iterdir(), tmp_path / "cache.jsonl"]:
        assert KEY not in path.read_text()  # the key is never written


def test_rerun_pays_nothing_and_gives_the_same_bytes(dataset, llm, tmp_path, synth_tree):
    llm.reset("good")
    pristine = tmp_path / "pristine"
    shutil.copytree(dataset, pristine)
    _run(dataset, llm, tmp_path)
    first = _snapshot(dataset)
    llm.reset("good")
    outcome = _run(pristine, llm, tmp_path)
    assert llm.calls == 0 and outcome["cached"] == 6
    assert _snapshot(pristine) == first


def test_interrupted_run_keeps_paid_answers(dataset, llm, tmp_path):
    llm.reset("good")
    _run(dataset, llm, tmp_path, n=3)
    with open(tmp_path / "cache.jsonl", "a") as f:
        f.write('{"key": "torn')  # what a kill in the middle of an append leaves
    assert len(ResponseCache(tmp_path / "cache.jsonl").entries) == 3
    llm.reset("good")
    outcome = _run(dataset, llm, tmp_path, n=6)
    assert llm.calls == 3 and outcome["cached"] >= 3


def test_unfaithful_answers_are_rejected(dataset, llm, tmp_path):
    llm.reset("unfaithful")
    outcome = _run(dataset, llm, tmp_path)
    assert outcome["accepted"] == 0 and outcome["rejected_unfaithful"] == 6
    assert _llm_sentences(dataset) == []


def test_malformed_answers_fall_back_to_the_template(dataset, llm, tmp_path):
    llm.reset("malformed")
    outcome = _run(dataset, llm, tmp_path)
    assert outcome["failed"] == 6 and _llm_sentences(dataset) == []


@pytest.mark.parametrize("status", ["429", "500"])
def test_transient_errors_are_retried(dataset, llm, tmp_path, status):
    llm.reset(status, failures=2)
    outcome = _run(dataset, llm, tmp_path, n=2)
    assert outcome["accepted"] == 2 and llm.calls == 4


def test_persistent_errors_give_up_and_keep_templates(dataset, llm, tmp_path):
    llm.reset("500", failures=10**6)
    before = _snapshot(dataset)
    outcome = _run(dataset, llm, tmp_path, n=2, retries=2)
    assert outcome["failed"] == 2 and llm.calls == 6
    assert _snapshot(dataset) == before


def test_slow_answers_time_out_and_are_retried(dataset, llm, tmp_path):
    llm.reset("slow", failures=1, delay=1.5)
    outcome = _run(dataset, llm, tmp_path, n=1, timeout_s=0.4)
    assert outcome["accepted"] == 1 and llm.calls == 2


def test_bad_key_stops_with_clear_error_and_dataset_untouched(dataset, llm, tmp_path):
    llm.reset("401")
    before = _snapshot(dataset)
    with pytest.raises(EndpointError, match="AuthenticationError"):
        _run(dataset, llm, tmp_path)
    assert _snapshot(dataset) == before


def test_cli_paraphrase_and_missing_key(dataset, llm, tmp_path, monkeypatch):
    llm.reset("good")
    args = ["paraphrase", str(dataset), "--base-url", llm.base_url, "--model", "m", "--max-sentences", "2",
            "--cache", str(tmp_path / "c.jsonl"), "--quiet"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and "accepted 2" in result.output, result.output
    monkeypatch.delenv("OPENAI_API_KEY")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "OPENAI_API_KEY is not set" in result.output
    result = CliRunner().invoke(main, ["paraphrase", str(dataset)])
    assert result.exit_code == 2 and "needs --base-url and --model" in result.output


def test_build_with_paraphrase(synth_tree, llm, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    llm.reset("good")
    out = tmp_path / "built"
    args = ["build", "--root", str(synth_tree), "--out", str(out), "--category", "screw", "--paraphrase"]
    args += [
        "--base-url",
        llm.base_url,
        "--model",
        "m",
        "--max-sentences",
        "3",
        "--cache",
        str(tmp_path / "c"),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert len(_llm_sentences(out)) == 3 and validate_dataset(out) == []
