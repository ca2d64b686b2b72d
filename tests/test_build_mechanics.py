"""Where the build's checks run (issue 24): sentences judged in the worker that made them, records
checked by the compiled schema check; the same dataset and the same one-line errors as before."""

import pytest

import annotate.faithful as faithful
import mvtec_ref.build as build_module
from mvtec_ref.build import BuildConfig, build_dataset
from mvtec_ref.errors import DatasetError
from mvtec_ref.splits import SplitConfig


def _refuse_left(monkeypatch):
    """The checker refuses every template sentence with "left" in it (as a generator bug would make
    it); returns the list of texts it was asked about."""
    real, asked = faithful.check_sentence, []

    def check(text, target, record, vocab):
        asked.append(text)
        if "left" in text.split():
            return faithful.Verdict(faithful.UNFAITHFUL, "test refusal")
        return real(text, target, record, vocab)

    monkeypatch.setattr(faithful, "check_sentence", check)
    return asked


@pytest.mark.parametrize("protocol", ["standard", "open-set"])
def test_refused_sentence_gives_the_same_error_judged_in_worker_or_main(
    synth_tree, tmp_path, monkeypatch, protocol
):
    config = BuildConfig(splits=SplitConfig(protocol=protocol))
    asked = _refuse_left(monkeypatch)
    with pytest.raises(DatasetError) as in_worker:
        build_dataset(synth_tree, tmp_path / "a", config, progress=False)
    in_workers = len(asked)
    asked.clear()
    monkeypatch.setattr(build_module, "_unfaithful", lambda record, config: None)  # the old way: all in main
    with pytest.raises(DatasetError) as in_main:
        build_dataset(synth_tree, tmp_path / "b", config, progress=False)
    # Each template sentence was judged once, where it was made: none parsed again after the pool
    # (open-set: main judges only what held-out types leave, the workers judged all).
    assert len(asked) > 100
    assert in_workers == len(asked) if protocol == "standard" else in_workers > len(asked)
    assert str(in_worker.value) == str(in_main.value)
    assert "template sentences fail the checker (a toolkit bug)" in str(in_worker.value)
    assert "left" in str(in_worker.value) and "test refusal" in str(in_worker.value)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_sentences_without_a_worker_verdict_are_judged_in_main(synth_tree, tmp_path, monkeypatch):
    """A record whose worker verdicts do not cover a sentence (here: none given) is judged whole."""
    import dataclasses

    real = build_module.process_image

    def no_verdicts(root, src, config):
        return dataclasses.replace(real(root, src, config), unfaithful=None)

    monkeypatch.setattr(build_module, "process_image", no_verdicts)
    asked = _refuse_left(monkeypatch)
    with pytest.raises(DatasetError, match="template sentences fail the checker"):
        build_dataset(synth_tree, tmp_path / "a", BuildConfig(), progress=False)
    assert len(asked) > 100


def _break_after_numbering(monkeypatch, edit):
    real = build_module._number

    def number_then_edit(records):
        real(records)
        edit(records)

    monkeypatch.setattr(build_module, "_number", number_then_edit)


def test_record_failing_the_schema_gives_jsonschemas_message(synth_tree, tmp_path, monkeypatch):
    _break_after_numbering(monkeypatch, lambda records: records[2].update(width=0))
    with pytest.raises(DatasetError) as raised:
        build_dataset(synth_tree, tmp_path / "a", BuildConfig(), progress=False)
    message = str(raised.value)
    assert message == "samples.jsonl:3: width: 0 is less than the minimum of 1 (a toolkit bug)"
    assert not (tmp_path / "a").exists()


def test_tuple_in_a_record_is_refused_as_jsonschema_refuses_it(synth_tree, tmp_path, monkeypatch):
    """fastjsonschema would take a tuple for an array; the build still refuses it, in jsonschema's words."""

    def tuple_bbox(records):
        records[3]["frame"]["bbox"] = tuple(records[3]["frame"]["bbox"])

    _break_after_numbering(monkeypatch, tuple_bbox)
    with pytest.raises(DatasetError) as raised:
        build_dataset(synth_tree, tmp_path / "a", BuildConfig(), progress=False)
    message = str(raised.value)
    assert message.startswith("samples.jsonl:4: frame.bbox: (")
    assert message.endswith("is not of type 'array' (a toolkit bug)")
