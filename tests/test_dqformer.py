"""DQFormer baseline: data, model, training loop (resume, NaN stop, DDP), predict.

Small runs on a 2-category synthetic dataset at 64x64 so every test takes seconds; the
"it learns" check at real size is in test_dqformer_learns.py (slow).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from baselines.dqformer.config import PRESETS, DQFormerConfig, field_help
from baselines.dqformer.data import epoch_batches, mirror_text
from mvtec_ref.cli import main
from mvtec_ref.schema import schema_errors

torch = pytest.importorskip("torch")

SMALL = dict(image_size=64, batch_size=2, sentences_per_image=2, epochs=2, workers=0, warmup_steps=2,
             max_eval_sentences=12)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    from mvtec_ref.build import BuildConfig, build_dataset
    from mvtec_ref.synth import write_synthetic_tree

    base = tmp_path_factory.mktemp("dq")
    write_synthetic_tree(base / "tree", categories=("bottle", "carpet"), per_type=2, progress=False)
    build_dataset(base / "tree", base / "dataset", BuildConfig(), progress=False)
    return base / "dataset"


def small_config(**changes) -> DQFormerConfig:
    return PRESETS["tiny"]().replace(**{**SMALL, **changes})


@pytest.fixture(scope="module")
def trained_run(tiny_dataset, tmp_path_factory) -> Path:
    from baselines.dqformer.train import train

    out = tmp_path_factory.mktemp("runs") / "run"
    train(small_config(), tiny_dataset, out, progress=False)
    return out


def test_mirror_text_swaps_sides_but_not_the_verb():
    assert mirror_text("the crack in the top left corner") == "the crack in the top right corner"
    assert mirror_text("the break at 2 o'clock on the bottle") == "the break at 10 o'clock on the bottle"
    assert mirror_text("at 12 o'clock and at 6 o'clock") == "at 12 o'clock and at 6 o'clock"
    assert mirror_text("the rightmost hole; Left of it") == "the leftmost hole; Right of it"
    assert mirror_text("the gap left by a missing cable on the right") == (
        "the gap left by a missing cable on the left"
    )
    assert mirror_text("the bright scratch") == "the bright scratch"


def test_epoch_batches_split_one_permutation_between_processes():
    single = epoch_batches(10, 4, seed=3, epoch=1)
    ranks = [epoch_batches(10, 2, seed=3, epoch=1, rank=r, world=2) for r in (0, 1)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 2  # 10 // 4, tail dropped everywhere
    for step in range(2):
        assert single[step] == ranks[0][step] + ranks[1][step]
    assert epoch_batches(10, 4, seed=3, epoch=1) == single
    assert epoch_batches(10, 4, seed=3, epoch=2) != single


def test_lr_schedule_warms_up_then_decays_to_zero():
    from baselines.dqformer.train import lr_factor

    config = DQFormerConfig(warmup_steps=4, poly_power=1.0)
    assert [lr_factor(s, 10, config) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(7, 10, config) == pytest.approx(0.5)
    assert lr_factor(10, 10, config) == 0.0


def test_every_config_field_has_a_reason_and_a_cli_option():
    import dataclasses

    reasons = field_help()
    names = [f.name for f in dataclasses.fields(DQFormerConfig)]
    assert [n for n in names if n not in reasons] == []
    result = CliRunner().invoke(main, ["train-baseline", "--help"])
    assert all(f"--{n.replace('_', '-')}" in result.output for n in names)
    paper = PRESETS["paper"]()
    assert paper.backbone == "microsoft/swin-base-patch4-window12-384"
    assert paper.text_encoder == "bert-base-uncased"


def test_param_groups_slow_the_pretrained_parts_and_spare_norms_from_decay():
    from baselines.dqformer.model import build_dqformer
    from baselines.dqformer.train import param_groups

    config = small_config(lr=1e-4, backbone_lr_mult=0.1, text_lr_mult=0.2, freeze_text=False)
    model = build_dqformer(config, pretrained=False)
    groups = param_groups(model, config)
    owner = {id(p): name.split(".")[0] for name, p in model.named_parameters()}
    for group in groups:
        parts = {owner[id(p)] for p in group["params"]}
        assert len(parts) == 1  # one part per group
        part = parts.pop()
        expected = {"backbone": 1e-5, "text_encoder": 2e-5}.get(part, 1e-4)
        assert config.lr * group["lr_mult"] == pytest.approx(expected)
        if group["weight_decay"] > 0:
            assert all(p.ndim > 1 for p in group["params"])
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for g in groups for p in g["params"]} == trainable


def test_the_sentence_moves_lma_from_the_first_step():
    """Issue 33's mechanism: with plain attention and no norms, one image's sentences change LMA's
    output by ~0.2% at initialisation (a product of small projections behind uniform attention);
    cosine attention and the norms make it O(10%), and it is the sentences that make it."""
    from baselines.dqformer.backbone import build_text_encoder, load_tokenizer
    from baselines.dqformer.diagnose import spread_across
    from baselines.dqformer.lma import LanguageGatedAggregation

    texts = ["the small stain on the left of the carpet", "the small stain on the right of the carpet",
             "the larger stain in the carpet", "the stain closest to the top edge"]  # fmt: skip
    tokens = load_tokenizer("minilm")(texts, padding=True, return_tensors="pt")
    words, mask, sentence = build_text_encoder("minilm", pretrained=True, frozen=True)(
        tokens["input_ids"], tokens["attention_mask"]
    )
    channels = (24, 40, 112, 320)
    spread, seen = {}, {}
    for loud in (False, True):
        torch.manual_seed(0)
        lma = LanguageGatedAggregation(channels, 64, 2, cosine=loud, norm=loud)
        project_words, project_sentence = torch.nn.Linear(384, 64), torch.nn.Linear(384, 64)
        features = [torch.randn(1, c, 64 // s, 64 // s) for c, s in zip(channels, (1, 2, 4, 8), strict=True)]
        lma.gates[0].register_forward_hook(lambda m, i, out: seen.__setitem__("level", out))
        with torch.no_grad():
            index = torch.zeros(4, dtype=torch.long)
            pixels, _ = lma(features, index, project_words(words), mask, project_sentence(sentence))
            spread[loud] = (spread_across(seen["level"]), spread_across(pixels))
            same, _ = lma(features, index, project_words(words[:1]).expand(4, -1, -1), mask[:1].expand(4, -1),
                          project_sentence(sentence[:1]).expand(4, -1))  # fmt: skip
        assert spread_across(same) == 0.0
    assert max(spread[False]) < 0.01 and min(spread[True]) > 0.05, spread


def test_a_run_saved_before_the_lma_switches_loads_without_them():
    record = PRESETS["tiny"]().as_record()
    for name in ("cosine_attention", "lma_norm", "text_whiten"):
        del record[name]
    old = DQFormerConfig.from_record(record)
    assert not old.cosine_attention and not old.lma_norm and not old.text_whiten
    assert PRESETS["tiny"]().cosine_attention and PRESETS["paper"]().lma_norm


def _edited_token_cosine(encoder, tokenizer, pairs) -> float:
    """Mean cosine, at the token that differs, between the two sentences of each pair."""
    cosines = []
    for a, b in pairs:
        tokens = tokenizer([a, b], return_tensors="pt")
        words, _, _ = encoder(tokens["input_ids"], tokens["attention_mask"])
        edited = tokens["input_ids"][0] != tokens["input_ids"][1]
        assert edited.sum() == 1, (a, b)
        cosines.append(torch.cosine_similarity(words[0, edited], words[1, edited]).item())
    return sum(cosines) / len(cosines)


def test_whitening_centres_the_training_words_and_tells_left_from_right(tiny_dataset):
    from baselines.dqformer.backbone import build_text_encoder, load_tokenizer
    from baselines.dqformer.data import open_split

    tokenizer = load_tokenizer("minilm")
    split = open_split(tiny_dataset, "train", small_config(), tokenizer, training=True)
    sentences = split.texts()
    tokens = split.tokenize(sentences)  # as training reads them
    plain = build_text_encoder("minilm", pretrained=True, frozen=True)
    white = build_text_encoder("minilm", pretrained=True, frozen=True, whiten=True)
    tuned = build_text_encoder("minilm", pretrained=True, frozen=False, whiten=True).train()
    white.fit_whitening(tokens["input_ids"], tokens["attention_mask"])
    first = white.white_map.clone()
    white.fit_whitening(tokens["input_ids"], tokens["attention_mask"])
    assert torch.equal(first, white.white_map)  # the same sentences, the same map, bit for bit
    tuned.fit_whitening(tokens["input_ids"], tokens["attention_mask"])  # read as it starts, in eval mode
    torch.testing.assert_close(tuned.white_map, white.white_map, rtol=1e-4, atol=1e-5)
    assert tuned.training and tuned.model.training

    def real_words(encoder):
        with torch.no_grad():
            words, mask, _ = encoder(tokens["input_ids"], tokens["attention_mask"])
        return words[mask].double()

    raw, whitened = real_words(plain), real_words(white)
    assert whitened.mean(0).abs().max() < 1e-4
    total = raw.var(0).sum()
    assert abs(whitened.var(0).sum() - total) < 1e-4 * total  # the shape changes, not the scale
    spread = [torch.linalg.eigvalsh(torch.cov(x.T)).flip(0) for x in (raw, whitened)]
    assert spread[1][0] / spread[1][20] < 0.5 * spread[0][0] / spread[0][20]  # spread over more directions
    pairs = [(t, t.replace(" left ", " right ")) for t in sentences
             if t.count(" left ") == 1 and " right " not in t]  # fmt: skip
    assert len(pairs) >= 10
    before, after = (_edited_token_cosine(e, tokenizer, pairs) for e in (plain, white))
    assert after < before - 0.15, (before, after)  # 0.86 -> 0.53 on this split
    assert {"white_mean", "white_map"} <= set(white.state_dict()) and "white_map" not in plain.state_dict()


def test_a_whitened_run_keeps_its_whitening_and_resumes_exactly(tiny_dataset, tmp_path):
    from baselines.dqformer.infer import load_run
    from baselines.dqformer.train import train

    config = small_config(text_whiten=True)
    train(config, tiny_dataset, tmp_path / "whole", progress=False, test_split=None)
    train(config, tiny_dataset, tmp_path / "resumed", progress=False, checkpoint_every=1, stop_after=3,
          test_split=None)  # fmt: skip
    train(config, tiny_dataset, tmp_path / "resumed", resume=True, progress=False, test_split=None)
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)["model"]
    assert not torch.equal(a["text_encoder.white_map"], torch.eye(len(a["text_encoder.white_map"])))
    for key, value in a.items():
        assert torch.equal(value, b[key]), key
    model, loaded, _ = load_run(tmp_path / "whole", checkpoint="last")
    assert loaded.text_whiten and torch.equal(model.text_encoder.white_map, a["text_encoder.white_map"])


def test_focus_epochs_are_a_share_of_the_run_and_reach_the_training_split(tiny_dataset):
    from baselines.dqformer.backbone import load_tokenizer
    from baselines.dqformer.data import open_split

    tiny = PRESETS["tiny"]()
    assert (tiny.focus_epochs, tiny.replace(epochs=8).focus_epochs, tiny.replace(epochs=1).focus_epochs) == (
        10,
        3,
        0,
    )
    assert (
        tiny.replace(focus_fraction=0.0).focus_epochs == 0
        and tiny.replace(focus_fraction=1.0).focus_epochs == 24
    )
    assert DQFormerConfig.from_record({}).focus_epochs == 0  # a run saved before them had none
    tokenizer = load_tokenizer("minilm")
    config = small_config(epochs=5, focus_fraction=0.4)
    train = open_split(tiny_dataset, "train", config, tokenizer, training=True)
    assert train.focus_epochs == 2 and train.part_share_at(1) == config.focus_share
    assert train.part_share_at(2) == config.part_share
    assert open_split(tiny_dataset, "val", config, tokenizer).focus_epochs == 0  # scoring draws nothing


def test_model_shapes_losses_and_shared_backbone():
    from baselines.dqformer.model import build_dqformer

    torch.manual_seed(0)
    config = small_config()
    model = build_dqformer(config).train()
    images = torch.rand(2, 3, 64, 64)
    ids = torch.randint(1000, 2000, (4, 20))
    text = {"input_ids": ids, "attention_mask": torch.ones(4, 20, dtype=torch.long)}
    targets = torch.zeros(4, 64, 64, dtype=torch.long)
    targets[:, 10:20, 10:20] = 1
    index = torch.tensor([0, 0, 1, 1])
    logits, losses = model(images, text, targets, index)
    assert logits.shape == (4, 2, 16, 16)
    assert set(losses) == {"loss", "ce", "dice"} and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert model.decoder.query.weight.grad.abs().sum() > 0
    assert model.backbone.blocks[-1]._project_conv.weight.grad is not None
    assert all(p.grad is None for p in model.text_encoder.parameters())  # frozen in tiny
    taps = model.backbone.TAPS  # tiny freezes the stem and the stride-4 blocks, not the rest
    assert all(p.grad is None for p in [*model.backbone.stem.parameters(),
                                        *model.backbone.blocks[: taps[0] + 1].parameters()])  # fmt: skip
    assert model.backbone.blocks[taps[0] + 1]._project_conv.weight.grad.abs().sum() > 0
    assert all(model.lma.position[i][0].weight.grad.abs().sum() > 0 for i in range(4))  # (x, y) codes learn
    # Sharing the backbone gives the same logits as repeating the images.
    model.eval()
    with torch.no_grad():
        shared, _ = model(images, text, image_index=index)
        repeated, none = model(images[index], text)
    assert none is None
    torch.testing.assert_close(shared, repeated)


def test_only_the_image_and_the_sentence_make_the_mask():
    """No side part reads token ids (no spatial prior) or gates the mask (no presence head)."""
    import dataclasses

    from baselines.dqformer.model import build_dqformer

    model = build_dqformer(small_config(), pretrained=False)
    parts = {name for name, _ in model.named_children()}
    assert parts == {"backbone", "text_encoder", "word_proj", "sentence_proj", "lma", "decoder"}
    fields = {f.name for f in dataclasses.fields(DQFormerConfig)}
    assert not {f for f in fields if f.startswith(("prior", "presence"))}


def test_training_and_inference_compute_the_same_mask():
    """No teacher forcing: with targets (training) the logits equal those without (inference)."""
    from baselines.dqformer.model import build_dqformer

    torch.manual_seed(0)
    model = build_dqformer(small_config()).train()  # tiny: no dropout, no drop path, BN frozen
    images = torch.rand(2, 3, 64, 64)
    text = {
        "input_ids": torch.randint(1000, 2000, (4, 20)),
        "attention_mask": torch.ones(4, 20, dtype=torch.long),
    }
    targets = torch.zeros(4, 64, 64, dtype=torch.long)
    targets[0, 5:20, 5:20] = 1
    index = torch.tensor([0, 0, 1, 1])
    with torch.no_grad():
        trained, losses = model(images, text, targets, index)
        model.eval()
        inferred, none = model(images, text, image_index=index)
    assert losses is not None and none is None
    torch.testing.assert_close(trained, inferred)


def test_an_empty_target_is_learned_as_an_empty_mask():
    """Absent target (gRefCOCO rule): the loss is lowest for background everywhere, and a few
    steps on one image teach one sentence its defect and another sentence nothing there."""
    from baselines.dqformer.model import build_dqformer

    torch.manual_seed(0)
    model = build_dqformer(small_config(image_size=32)).train()
    empty = torch.zeros(1, 32, 32, dtype=torch.long)
    quiet = torch.zeros(1, 2, 8, 8)
    quiet[:, 0] = 4.0  # background wins everywhere
    claims = quiet.clone()
    claims[:, 1, 1:3, 1:3] = 8.0  # claims a region that is not the target
    assert model.mask_losses([quiet], empty)["loss"] < model.mask_losses([claims], empty)["loss"]

    image = torch.rand(1, 3, 32, 32)
    ids = torch.randint(1000, 2000, (2, 8))
    text = {"input_ids": ids, "attention_mask": torch.ones(2, 8, dtype=torch.long)}
    targets = torch.zeros(2, 32, 32, dtype=torch.long)
    targets[0, 4:20, 4:20] = 1  # sentence 0 names the defect (a quarter); sentence 1 nothing there
    index = torch.tensor([0, 0])
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(20):
        _, losses = model(image, text, targets, index)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        logits, _ = model(image, text, image_index=index)
    area = (logits[:, 1] > logits[:, 0]).float().mean((1, 2))
    assert area[0] > 0.15 and area[1] < 0.02, area.tolist()


def test_frozen_text_encoder_keeps_each_sentence_as_the_encoder_gives_it():
    from baselines.dqformer.backbone import build_text_encoder

    encoder = build_text_encoder("minilm", pretrained=True, frozen=True).train()
    ids = torch.randint(1000, 2000, (4, 20))
    ids[1] = ids[0]  # a repeat is encoded once
    mask = torch.ones(4, 20, dtype=torch.long)
    mask[2, 7:] = 0  # a short sentence, padded
    mask[3, 12:] = 0
    words, word_mask, sentence = encoder(ids, mask)
    assert len(encoder.cache) == 3 and words.shape == (4, 20, encoder.dim)
    assert torch.equal(word_mask, mask.bool())
    direct = encoder.model(input_ids=ids, attention_mask=mask).last_hidden_state
    for row, n in enumerate(mask.sum(1).tolist()):
        assert torch.allclose(words[row, :n], direct[row, :n], atol=1e-4)
        assert torch.allclose(sentence[row], direct[row, :n].mean(0), atol=1e-4)
    # shorter batches are cut to their longest sentence; order and company change nothing
    short = encoder(ids[[3, 2]], mask[[3, 2]])
    assert short[0].shape[1] == 12 and torch.equal(short[2], sentence[[3, 2]])
    assert torch.equal(encoder.sentences(ids.flip(0), mask.flip(0)), sentence.flip(0))


def test_dice_counts_only_sentences_with_a_target():
    from baselines.dqformer.model import dice_loss

    logits = torch.zeros(2, 2, 4, 4)
    logits[:, 0] = 20.0
    logits[:, 0, :2, :2], logits[:, 1, :2, :2] = 0.0, 20.0  # anomaly in the top-left quarter only
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    target[0, :2, :2] = 1  # sample 0: exactly that; sample 1: no target
    assert float(dice_loss(logits, target)) == pytest.approx(0.0, abs=1e-6)
    assert float(dice_loss(logits, target[1:].expand(2, 4, 4))) == 0.0  # no target anywhere
    target[0] = 0
    target[0, 2:, 2:] = 1  # disjoint: 1 - 1 / (4 + 4 + 1)
    assert float(dice_loss(logits[:1], target[:1])) == pytest.approx(1 - 1 / 9, abs=1e-6)
    assert float(dice_loss(logits, target)) == pytest.approx((1 - 1 / 9) / 2, abs=1e-6)  # sum / B


def test_empty_loss_charges_a_wrong_answer_at_the_scale_of_a_missed_one():
    import torch.nn.functional as F

    from baselines.dqformer.model import empty_loss, weighted_ce

    logits = torch.zeros(2, 2, 32, 32)
    logits[:, 0] = 10.0  # background everywhere, margin -10 ...
    logits[:, 0, :2, :2], logits[:, 1, :2, :2] = 0.0, 10.0  # ... but a 4-pixel defect answered
    target = torch.zeros(2, 32, 32, dtype=torch.long)
    target[0, :2, :2] = 1  # sample 0 names that defect; sample 1 names nothing
    hit, miss = F.softplus(torch.tensor(10.0)).item(), F.softplus(torch.tensor(-10.0)).item()
    # sample 0 has a target: no term; sample 1: the top 4 pixels (0.004 of 1024) are the answer
    assert float(empty_loss(logits, target, 0.004)) == pytest.approx(hit / 2, rel=1e-5)  # sum / B
    # the top 8: half answer, half background
    assert float(empty_loss(logits, target, 0.008)) == pytest.approx((hit + miss) / 4, rel=1e-5)
    # k is at least one pixel
    assert float(empty_loss(logits[1:], target[1:], 1e-9)) == pytest.approx(hit, rel=1e-5)
    # the mean CE over the image charges the same wrong answer by its area: 4 / 1024 of it
    ce = float(weighted_ce(logits[1:], target[1:], torch.ones(2)))
    assert ce == pytest.approx((4 * hit + 1020 * miss) / 1024, rel=1e-4) and ce < hit / 100
    # nothing answered: nearly nothing to pay
    quiet = logits.clone()
    quiet[:, 1, :2, :2] = -10.0
    assert float(empty_loss(quiet, target, 0.004)) == pytest.approx(miss / 2, rel=1e-4)


def test_empty_weight_adds_the_term_and_zero_leaves_the_loss_as_it_was():
    from types import SimpleNamespace

    import torch.nn.functional as F

    from baselines.dqformer.model import DQFormer, empty_loss

    torch.manual_seed(0)
    masks = [torch.randn(2, 2, 8, 8) for _ in range(2)]
    target = torch.zeros(2, 16, 16, dtype=torch.long)
    target[0, 4:8, 4:8] = 1  # sample 1: no target

    def losses(**fields):
        fake = SimpleNamespace(config=DQFormerConfig(aux_weight=0.5, **fields), class_weights=torch.ones(2))
        return DQFormer.mask_losses(fake, masks, target)["loss"]

    up = [F.interpolate(m, size=(16, 16), mode="bilinear", align_corners=False) for m in masks]
    extra = 0.5 * empty_loss(up[0], target, 0.01) + empty_loss(up[1], target, 0.01)
    added = float(losses(empty_weight=2.0, empty_topk=0.01) - losses())
    assert added == pytest.approx(2 * float(extra), rel=1e-5) and added > 0
    assert torch.equal(losses(empty_weight=0.0, empty_topk=0.01), losses())
    # the trainer scales the wrong-answer terms (0 before config.wrong_epochs)
    fake = SimpleNamespace(config=DQFormerConfig(aux_weight=0.5, empty_weight=2.0, empty_topk=0.01),
                           class_weights=torch.ones(2))  # fmt: skip
    assert torch.equal(DQFormer.mask_losses(fake, masks, target, 0.0)["loss"], losses())
    doubled = DQFormer.mask_losses(fake, masks, target, 2.0)["loss"]
    assert float(doubled - losses()) == pytest.approx(2 * added)


def test_other_loss_charges_a_wrong_defect_per_pixel_of_that_defect():
    """Answering a defect the sentence does not name costs the mean CE over that defect's pixels,
    the same whatever its area; pixels of the target or off every defect cost nothing here."""
    from baselines.dqformer.model import other_loss

    logits = torch.zeros(3, 2, 16, 16)
    logits[:, 1] = -5.0  # background everywhere ...
    logits[:, 1, 2:4, 2:4] = 5.0  # ... but a small defect answered
    logits[:, 1, 8:16, 8:16] = 5.0  # and a large one
    others = torch.zeros(3, 16, 16, dtype=torch.bool)
    others[0, 2:4, 2:4] = True  # sample 0: the small one is not its target
    others[1, 8:16, 8:16] = True  # sample 1: the large one is not; sample 2: nothing to charge
    hit = float(torch.nn.functional.softplus(torch.tensor(5.0)))
    assert float(other_loss(logits, others)) == pytest.approx(2 * hit / 3, rel=1e-5)  # area plays no part
    assert float(other_loss(logits[2:], others[2:])) == 0.0
    logits[1, 1, 8:12] = -5.0  # half of the large one left out: half its charge
    assert float(other_loss(logits[1:2], others[1:2])) == pytest.approx((hit + softplus(-5.0)) / 2, rel=1e-5)

    # forward: a sentence's others are its image's defects outside its target
    from baselines.dqformer.model import build_dqformer

    torch.manual_seed(0)
    model = build_dqformer(small_config(image_size=32, other_weight=1.0)).train()
    s = 32
    images = torch.rand(2, 3, s, s)
    defects = torch.zeros(2, s, s, dtype=torch.bool)
    defects[0, :4, :4] = defects[0, -4:, -4:] = True  # image 0: two defects, image 1: none
    targets = torch.zeros(3, s, s, dtype=torch.long)
    targets[0, :4, :4] = 1  # names one of image 0's two; sentence 1: nothing there; sentence 2: image 1
    index = torch.tensor([0, 0, 1])
    ids = torch.randint(1000, 2000, (3, 8))
    text = {"input_ids": ids, "attention_mask": torch.ones(3, 8, dtype=torch.long)}
    seen = []
    model.mask_losses = lambda masks, t, wrong, others: seen.append(others) or {"loss": 0}
    model(images, text, targets, index, defects=defects)
    expected = defects[index] & (targets == 0)
    assert torch.equal(seen[0], expected) and seen[0][0].sum() == 16 and seen[0][1].sum() == 32
    model(images, text, targets, index)
    assert seen[1] is None  # no defects given: no term
    # the no-language ablation reads "anomaly", which names every defect: nothing to charge
    blind = build_dqformer(small_config(image_size=32, other_weight=1.0, no_language=True)).train()
    blind.mask_losses = model.mask_losses
    blind(images, text, targets, index, defects=defects)
    assert seen[2] is None


def softplus(x: float) -> float:
    return float(torch.nn.functional.softplus(torch.tensor(x)))


def test_wrong_start_leaves_the_first_epochs_without_the_wrong_answer_terms(
    tiny_dataset, tmp_path, monkeypatch
):
    import baselines.dqformer.train as train_module

    tiny = PRESETS["tiny"]().replace(empty_weight=1.0)
    starts = [tiny.replace(wrong_start=share).wrong_epochs for share in (0.0, 0.4, 1.0)]
    assert starts == [0, tiny.focus_epochs, 24]
    assert DQFormerConfig.from_record({}).wrong_epochs == 0  # a run saved before the field: from step 1
    step = train_module.train_step
    seen = []

    def recording(trainer, batch, config, factor, dist, wrong=None):
        seen.append(wrong)
        return step(trainer, batch, config, factor, dist, wrong)

    monkeypatch.setattr(train_module, "train_step", recording)
    config = small_config(epochs=4, empty_weight=3.0, other_weight=1.0, wrong_start=0.5)
    train_module.train(config, tiny_dataset, tmp_path / "run", progress=False, test_split=None)
    per_epoch = len(seen) // 4
    assert seen == [0.0] * (2 * per_epoch) + [1.0] * (2 * per_epoch) and per_epoch > 0


def test_sampler_by_sentence_kind_sets_the_part_scope_share(tiny_dataset):
    from baselines.dqformer.backbone import load_tokenizer
    from baselines.dqformer.data import RefSegDataset, TrainGroups
    from mvtec_ref.evaluate import target_scope

    def open_train(**options):  # no flips, so a slot's tokens are its sentence's
        return RefSegDataset(tiny_dataset, "train", tokenizer=load_tokenizer("minilm"), image_size=32,
                             augment=True, hflip=False, negative_share=0.5, **options)  # fmt: skip

    def rows(ids):
        return {row.tobytes() for row in ids.numpy()}

    plain, parts = open_train(), open_train(part_share=1.0)
    multi = [r for r, pool in enumerate(parts.parts) if pool]
    assert multi and all(len(parts.records[r]["regions"]) >= 2 for r in multi)
    part_rows = rows(parts.tokenize([item.text for r in multi for item in parts.parts[r]])["input_ids"])
    for r in multi:
        record = parts.records[r]
        assert all(target_scope(record, record["refs"][item.ref]) == "part" for item in parts.parts[r])
        assert rows(parts.group(0, r, 8)["input_ids"]) <= part_rows  # every slot, negatives or not
    assert not rows(plain.group(0, multi[0], 8)["input_ids"]) <= part_rows
    # share 0 draws nothing: the units are those of a run without the sampler
    off = open_train(part_share=0.0)
    assert all(torch.equal(off.group(1, r, 4)["input_ids"], plain.group(1, r, 4)["input_ids"]) for r in multi)
    # multi_region_share 1: every unit is an image with part-scope sentences; seeded; draws differ
    units = TrainGroups(parts, 4, multi_region_share=1.0)
    again = TrainGroups(open_train(part_share=1.0), 4, multi_region_share=1.0)
    drawn = [units[(0, j)] for j in range(len(units))]
    assert all(torch.equal(u["input_ids"], again[(0, j)]["input_ids"]) for j, u in enumerate(drawn))
    assert all(rows(u["input_ids"]) <= part_rows for u in drawn)
    assert len({u["input_ids"].numpy().tobytes() for u in drawn}) > len(multi)
    # focus epochs: every unit an image with part-scope sentences, focus_share of its slots those;
    # afterwards the run's own shares (here none); the no-language ablation gets no focus
    focus = open_train(focus_epochs=2, focus_share=1.0)
    units = TrainGroups(focus, 4)
    own = [it.text for it in focus.items if it.record in multi]
    multi_texts = rows(focus.tokenize(own)["input_ids"])
    for epoch in (0, 1):
        drawn = [units[(epoch, j)] for j in range(len(units))]
        assert all(rows(u["input_ids"]) <= part_rows for u in drawn)
    after = [units[(2, j)]["input_ids"] for j in range(len(units))]
    assert not all(rows(ids) <= multi_texts | part_rows for ids in after)  # single-region images again
    assert all(torch.equal(focus.group(2, r, 4)["input_ids"], plain.group(2, r, 4)["input_ids"])
               for r in multi)  # fmt: skip
    ablation = open_train(no_language=True, focus_epochs=2, focus_share=1.0)
    assert ablation.focus_epochs == 0 and ablation.part_share_at(0) == 0.0


def test_universal_share_makes_defect_slots_the_universal_prompt_with_every_region(tiny_dataset):
    from baselines.dqformer.backbone import load_tokenizer
    from baselines.dqformer.composite import Composites
    from baselines.dqformer.data import RefSegDataset

    def open_train(**options):  # no flips, so a slot's tokens are its sentence's
        return RefSegDataset(tiny_dataset, "train", tokenizer=load_tokenizer("minilm"), image_size=32,
                             augment=True, hflip=False, negative_share=0.5, **options)  # fmt: skip

    plain, every = open_train(), open_train(universal_share=1.0)
    defect = [r for r, record in enumerate(every.records) if record["regions"]]
    assert defect and all(every.universals[r] for r in defect)
    assert not any(every.universals[r] for r, rec in enumerate(every.records) if not rec["regions"])
    for r in defect:
        pool = every.universals[r]
        assert all(every.records[r]["refs"][it.ref]["kind"] == "universal" for it in pool)
        texts = {row.tobytes() for row in every.tokenize([it.text for it in pool])["input_ids"].numpy()}
        unit = every.group(0, r, 6)
        assert {row.tobytes() for row in unit["input_ids"].numpy()} <= texts  # negatives swapped out
        assert all(torch.equal(t.bool(), unit["defects"]) for t in unit["target"])  # every region
    # share 0 draws nothing; the ablation reads only the universal prompt already and gets no share
    off = open_train(universal_share=0.0)
    same = [torch.equal(off.group(1, r, 4)["input_ids"], plain.group(1, r, 4)["input_ids"]) for r in defect]
    assert all(same)
    assert open_train(no_language=True, universal_share=1.0).universal_share == 0.0
    # none in the focus epochs, where the union should answer few slots; the share from their end
    focus = open_train(universal_share=1.0, focus_epochs=2)
    assert [focus.universal_share_at(e) for e in (0, 1, 2)] == [0.0, 0.0, 1.0]
    same = [torch.equal(focus.group(0, r, 4)["input_ids"], plain.group(0, r, 4)["input_ids"]) for r in defect]
    assert all(same)
    # composites draw from their own universal sentences, re-targeted at every region they hold
    composites = Composites(every, 1.0)
    views = [v for v in (composites.view(0, r) for r in defect) if v is not None]
    assert views
    for view in views:
        unit = view.group(0, 0, 4)
        assert view.universals[0] and all(torch.equal(t.bool(), unit["defects"]) for t in unit["target"])


def test_negative_pools_hold_only_sentences_that_name_nothing_there(tiny_dataset):
    import cv2

    from annotate import load_vocabulary
    from annotate.faithful import OK, check_sentence
    from baselines.dqformer.backbone import load_tokenizer
    from baselines.dqformer.data import RefSegDataset, TrainGroups

    data = RefSegDataset(tiny_dataset, "train", tokenizer=load_tokenizer("minilm"), image_size=32,
                         augment=True, negative_share=1.0)  # fmt: skip
    vocab = load_vocabulary("mvtec_ad")
    defect = [r for r, rec in enumerate(data.records) if rec["regions"]]
    assert defect and all(data.negatives[r] for r in defect)
    assert not any(data.negatives[r] for r, rec in enumerate(data.records) if not rec["regions"])
    borrowed = [item for r in defect for item in data.negatives[r] if item.ref < 0]
    assert borrowed  # sentences written for another defect type of the category
    for item in borrowed:
        assert check_sentence(item.text, [], data.records[item.record], vocab).verdict == OK
    # every slot swapped: a defect image's unit has only empty targets, from its pool
    group = data.group(0, defect[0], 4)
    assert int(group["target"].sum()) == 0
    # the ablation reads no text, so it gets no extra negatives
    blind = RefSegDataset(tiny_dataset, "train", tokenizer=load_tokenizer("minilm"), image_size=32,
                          augment=True, negative_share=1.0, no_language=True)  # fmt: skip
    assert blind.negative_share == 0 and not any(blind.negatives)
    # "anomaly" on a defect image names every defect: no slot of it may carry an empty target,
    # and every target lies inside the image's defects, flipped or not with them
    union = cv2.resize(blind.union(defect[0]), (32, 32), interpolation=cv2.INTER_NEAREST)
    for epoch in range(3):
        unit = blind.group(epoch, defect[0], 8)
        assert all(int(t.sum()) > 0 for t in unit["target"])
        inside = [
            (unit["target"] <= torch.from_numpy(u.copy()).long()).all() for u in (union, union[:, ::-1])
        ]
        assert any(inside)
        assert any(
            torch.equal(unit["defects"], torch.from_numpy(u.copy()).bool()) for u in (union, union[:, ::-1])
        )

    units = TrainGroups(data, 2, good_per_epoch=0.5)
    assert len(units) == len(units.defect) + round(0.5 * len(units.good))
    first, second = units.epoch_records(0), units.epoch_records(1)
    assert set(units.defect) <= set(first) and len(first) == len(second) == len(units)
    assert TrainGroups(data, 2, good_per_epoch=0.5).epoch_records(1) == second  # seeded


def test_every_unit_carries_its_image_defects_and_each_target_lies_inside(tiny_dataset):
    """``defects`` is what ``other_loss`` charges outside a slot's target: it must be the unit's own
    image, composites and flips included, or a right answer would be charged as a wrong one."""
    from baselines.dqformer.backbone import load_tokenizer
    from baselines.dqformer.data import TrainGroups, collate_groups, open_split

    config = small_config(image_size=32)
    data = open_split(tiny_dataset, "train", config, load_tokenizer("minilm"), training=True)
    units = TrainGroups(data, 4, 1.0, composite_share=1.0, multi_region_share=0.5)
    charged = 0  # slots with a defect outside their target: what the term charges
    for epoch in range(2):
        for j in range(len(units)):
            unit = units[(epoch, j)]
            assert (unit["target"].bool() <= unit["defects"]).all()
            charged += int((unit["defects"] & (unit["target"] == 0)).flatten(1).any(1).sum())
    assert charged > 0
    batch = collate_groups([units[(0, j)] for j in range(3)])
    assert batch["defects"].shape == (3, 32, 32) and batch["defects"].dtype == torch.bool


def test_contrast_pools_hold_edited_sentences_with_their_judged_targets(tiny_dataset):
    from annotate import load_vocabulary
    from annotate.contrast import Evidence, confirmed
    from annotate.parse import parse
    from baselines.dqformer.backbone import load_tokenizer
    from baselines.dqformer.data import RefSegDataset

    def open_train(**options):
        return RefSegDataset(tiny_dataset, "train", tokenizer=load_tokenizer("minilm"), image_size=32,
                             augment=True, **options)  # fmt: skip

    data = open_train(contrast_share=1.0)
    vocab = load_vocabulary("mvtec_ad")
    defect = [r for r, rec in enumerate(data.records) if rec["regions"]]
    assert not any(data.contrast[r] for r, rec in enumerate(data.records) if not rec["regions"])
    pooled = [item for r in defect for item in data.contrast[r]]
    assert pooled and any(not item.region_ids for item in pooled) and any(item.region_ids for item in pooled)
    own = {(item.record, item.text) for item in data.items}
    for item in pooled:
        record = data.records[item.record]
        assert (item.record, item.text) not in own  # an edit, not the sentence itself
        parse(item.text, record["category"], vocab)  # the words say something the parser reads
        assert confirmed(item.text, set(item.region_ids), Evidence(record, vocab, data.root))
        assert data.has_target(item) == bool(item.region_ids)
        assert np.array_equal(data.target(item), data.union(item.record, list(item.region_ids)))
    assert [list(p) for p in open_train(contrast_share=1.0).contrast] == [list(p) for p in data.contrast]
    # every slot of a defect image with a pool is an edited sentence, its target the judged one
    r = next(r for r in defect if data.contrast[r])
    texts = sorted({mirror_text(i.text) for i in data.contrast[r]} | {i.text for i in data.contrast[r]})
    allowed = {tuple(row.tolist()) for row in data.tokenize(texts)["input_ids"]}
    unit = data.group(0, r, 4)
    assert {tuple(row.tolist()) for row in unit["input_ids"]} <= allowed
    # a unit that takes no edited sentence draws nothing more from its generator: its flip,
    # jitter and sentences are those of a run without contrast_share
    plain, unused = open_train(), open_train(contrast_share=1.0)
    unused.contrast[r] = []
    a, b = plain.group(1, r, 4), unused.group(1, r, 4)
    assert all(torch.equal(a[key], b[key]) for key in ("image", "target", "input_ids"))
    # the ablation reads no text: an edited sentence would be "anomaly" with another answer
    blind = open_train(contrast_share=1.0, no_language=True)
    assert blind.contrast_share == 0 and not any(blind.contrast)


def test_masks_are_the_argmax_at_the_original_size():
    from baselines.dqformer.infer import masks_at

    logits = torch.zeros(1, 2, 4, 4)
    logits[0, 1, :2, :2] = 1.0  # anomaly wins in the top-left quarter
    (mask,) = masks_at(logits, [(40, 60)])
    assert mask.shape == (40, 60) and mask.dtype == bool
    assert mask[:10, :15].all() and not mask[30:, 40:].any()


def test_train_writes_run_folder(trained_run, tiny_dataset, tmp_path, monkeypatch):
    import matplotlib.axes

    from baselines.dqformer.diagnose import plot_language

    names = {p.name for p in trained_run.iterdir()}
    assert {"config.json", "environment.json", "metrics.jsonl", "last.pt", "best.pt", "test_metrics.json",
            "tokenizer", "language.png"} <= names  # fmt: skip
    # what the figures depend on besides config and data: one entry, the run's start
    (env,) = json.loads((trained_run / "environment.json").read_text())
    assert env["step"] == 0 and env["device"] == "cpu" and env["threads"] == torch.get_num_threads()
    assert env["packages"]["torch"] == torch.__version__ and env["packages"]["numpy"] == np.__version__
    # the CPU's kernel set (AVX2, AVX512, ...) sets a CPU run's rounding, and so its figures
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["device_name"] == env["cpu"]  # a CPU run's device is its CPU
    lines = [json.loads(x) for x in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]
    assert all(x["overall"]["samples"] == 12 and np.isfinite(x["train_loss"]) for x in lines)
    for line in lines:  # the language curves: a fixed train subset and the eval split, every epoch
        assert set(line["language"]) == {"train", "val"}
        for figures in line["language"].values():
            assert figures["sentences"] > 0
            assert all(0 <= figures[name] <= 1 for name in ("part_iou_target", "part_iou_union"))
            assert all(figures[name] >= 0 for name in ("var_lma", "var_pixel", "var_logits"))
    assert (trained_run / "language.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [x["focus"] for x in lines] == [True, False]  # tiny's 0.4 of 2 epochs: the first
    assert [x["wrong"] for x in lines] == [False, False]  # tiny has no wrong-answer term
    # the swap curves: val probes whose answer is empty, per kind, made from the scored sentences
    from baselines.dqformer.diagnose import swap_probes
    from mvtec_ref.dataset import open_dataset

    val = [s["sent_id"] for r in open_dataset(tiny_dataset) if r["split"] == "val"
           for ref in r["refs"] for s in ref["sentences"]][: small_config().max_eval_sentences]  # fmt: skip
    probes = swap_probes(tiny_dataset, "val", small_config().swap_probes)
    for line in lines:
        assert set(line["swaps"]) == {"type", "location"}
        for kind, figures in line["swaps"].items():
            assert figures["probes"] == sum(p["edit"] == kind and p["sent_id"] in val for p in probes)
            share = figures["answered_empty"]
            assert share is None if not figures["probes"] else 0 <= share <= 1
    assert sum(f["probes"] for f in lines[0]["swaps"].values()) > 0
    spans = []  # shaded on all three panels, from the start of epoch 1's training to its point
    monkeypatch.setattr(matplotlib.axes.Axes, "axvspan", lambda ax, a, b, **kw: spans.append((a, b)))
    plot_language(lines, tmp_path / "language.png")
    assert spans == [(0, 1)] * 3
    spans.clear()  # a run without probes (no-language, or swap_probes 0): the two panels
    plot_language([{**x, "swaps": {}} for x in lines], tmp_path / "language.png")
    assert spans == [(0, 1)] * 2
    marks = []  # where the wrong-answer terms start (config.wrong_start): the start of that epoch
    monkeypatch.setattr(matplotlib.axes.Axes, "axvline", lambda ax, x, **kw: marks.append(x))
    plot_language(lines, tmp_path / "language.png")
    assert marks == []
    plot_language([{**x, "wrong": x["epoch"] == 2} for x in lines], tmp_path / "language.png")
    assert marks == [1] * 3
    test = json.loads((trained_run / "test_metrics.json").read_text())
    assert schema_errors("metrics", test) == []
    assert test["split"] == "test" and test["overall"]["samples"] > 12  # every test sentence
    assert {"expression", "kind", "size", "category"} <= set(test["by"])
    config = DQFormerConfig.from_record(json.loads((trained_run / "config.json").read_text()))
    assert config == small_config()


def test_swap_probes_are_a_seeded_capped_choice_of_empty_swaps(tiny_dataset):
    from baselines.dqformer.diagnose import swap_probes
    from mvtec_ref.probes import build_probes

    every = swap_probes(tiny_dataset, "train", 1000)
    _, probes = build_probes(tiny_dataset, split="train", seed=0, progress=False)
    want = [p for p in probes if p["edit"] in ("type", "location") and not p["region_ids"]]
    assert every == want and len({p["edit"] for p in want}) == 2
    two = swap_probes(tiny_dataset, "train", 2)
    assert sorted(p["edit"] for p in two) == ["location", "location", "type", "type"]
    assert all(p in every for p in two) and two == swap_probes(tiny_dataset, "train", 2)
    first = [p for p in want if p["edit"] == "type"][:2]
    assert [p for p in two if p["edit"] == "type"] != first  # drawn across the split, not its head


def test_spread_across_sentences_is_zero_when_the_sentence_changes_nothing():
    import torch

    from baselines.dqformer.diagnose import spread_across

    x = torch.randn(1, 8, 5, 5)
    assert spread_across(x.expand(4, -1, -1, -1)) == 0.0
    moved = torch.cat([x, x + 0.5 * torch.randn_like(x)])
    assert 0.1 < spread_across(moved) == pytest.approx(spread_across(10 * moved))


def test_language_figures_tell_every_region_from_the_target(trained_run, tiny_dataset):
    import torch
    from torch import nn

    from baselines.dqformer.data import open_split
    from baselines.dqformer.diagnose import curve_records, language_figures
    from baselines.dqformer.infer import load_run
    from mvtec_ref.evaluate import target_scope

    model, config, tokenizer = load_run(trained_run, device="cpu")
    data = open_split(tiny_dataset, "train", config, tokenizer)
    records = curve_records(data)
    refs = [(data.records[r], ref) for r in records for ref in data.records[r]["refs"]]
    part = sum(len(ref["sentences"]) for record, ref in refs if target_scope(record, ref) == "part")
    figures = language_figures(model, data, records, device=torch.device("cpu"))
    assert figures["sentences"] == part > 0 and figures["var_lma"] > 0

    class EveryRegion(nn.Module):
        """The trained model's internals, but a mask of every region whatever the sentence."""

        def __init__(self):
            super().__init__()
            self.lma, self.current = model.lma, None

        def forward(self, images, text, image_index):
            model(images, text, image_index=image_index)  # LMA runs, so its hooks see it
            union = torch.from_numpy(data.union(self.current)).float()
            every = torch.nn.functional.interpolate(union[None, None], size=images.shape[-2:])[0, 0]
            return torch.stack([-every, every]).expand(len(image_index), -1, -1, -1), None

    blind = EveryRegion()
    for r in records:
        blind.current = r
        got = language_figures(blind, data, [r], device=torch.device("cpu"))
        assert got["part_iou_union"] == 1.0 and got["var_logits"] == 0.0
        assert got["part_iou_target"] < 0.9
    # the no-language ablation reads "anomaly" for every sentence: nothing varies
    ablation = open_split(tiny_dataset, "train", config.replace(no_language=True), tokenizer)
    same = language_figures(model, ablation, records, device=torch.device("cpu"))
    assert same["var_lma"] == same["var_pixel"] == same["var_logits"] == 0.0


def test_resume_continues_exactly(tiny_dataset, trained_run, tmp_path):
    from baselines.dqformer.train import train

    out = tmp_path / "run"
    stopped = train(small_config(), tiny_dataset, out, progress=False, checkpoint_every=1, stop_after=3,
                    test_split=None)  # fmt: skip
    assert stopped == {"stopped_at_step": 3}
    assert torch.load(out / "last.pt", weights_only=False)["step"] == 3
    train(small_config(), tiny_dataset, out, resume=True, progress=False, test_split=None)
    a = torch.load(trained_run / "last.pt", weights_only=False)
    b = torch.load(out / "last.pt", weights_only=False)
    assert a["step"] == b["step"] > 3
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert (trained_run / "metrics.jsonl").read_text() == (out / "metrics.jsonl").read_text()
    assert [e["step"] for e in json.loads((out / "environment.json").read_text())] == [0, 3]  # start, resume


def test_a_stray_grad_on_a_frozen_part_changes_nothing(tiny_dataset, trained_run, tmp_path, monkeypatch):
    import baselines.dqformer.model as model_module
    import baselines.dqformer.train as train_module

    build = model_module.build_dqformer

    def build_and_leave_a_gradient(config, **options):
        model = build(config, **options)
        stem = next(model.backbone.stem.parameters())  # frozen in tiny
        stem.grad = torch.full_like(stem, 1e6)  # would swamp the clip norm
        return model

    monkeypatch.setattr(model_module, "build_dqformer", build_and_leave_a_gradient)
    out = tmp_path / "run"
    train_module.train(small_config(), tiny_dataset, out, progress=False, test_split=None)
    a = torch.load(trained_run / "last.pt", weights_only=False)["model"]
    b = torch.load(out / "last.pt", weights_only=False)["model"]
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_dataset, tmp_path, monkeypatch):
    from baselines.dqformer.model import DQFormer
    from baselines.dqformer.train import train
    from mvtec_ref.errors import TrainingError

    calls = {"n": 0}
    original = DQFormer.mask_losses

    def poisoned(self, masks, targets, *wrong_answer_terms):
        calls["n"] += 1
        losses = original(self, masks, targets, *wrong_answer_terms)
        if calls["n"] == 3:
            losses["loss"] = losses["loss"] * float("nan")
        return losses

    monkeypatch.setattr(DQFormer, "mask_losses", poisoned)
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"loss is nan at step 3 .*last good checkpoint .*last\.pt"):
        train(small_config(), tiny_dataset, out, progress=False, checkpoint_every=1, test_split=None)
    state = torch.load(out / "last.pt", weights_only=False)
    assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_cli_refuses_to_overwrite_or_resume_nothing(trained_run, tiny_dataset, tmp_path):
    args = ["train-baseline", str(tiny_dataset), "--preset", "tiny", "--quiet"]
    result = CliRunner().invoke(main, [*args, "--out", str(trained_run)])
    assert result.exit_code == 1 and "already holds a run" in result.output
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "none"), "--resume"])
    assert result.exit_code == 1 and "start without --resume" in result.output
    result = CliRunner().invoke(main, [*args, "--out", str(trained_run), "--resume", "--image-size", "96"])
    assert result.exit_code == 1 and "image_size" in result.output
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "x"), "--batch-size", "500"])
    assert result.exit_code == 1 and "lower --batch-size" in result.output


def test_model_selection_on_the_test_split_is_refused(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    args = ["train-baseline", str(tiny_dataset), "--preset", "tiny", "--quiet", "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--eval-split", "test"])
    assert (
        result.exit_code == 2
        and "Invalid value for '--eval-split': 'test' is not one of 'val', 'train'" in (result.output)
    )
    assert not out.exists()  # refused before anything was written
    from baselines.dqformer.config import tiny
    from baselines.dqformer.train import check_config
    from mvtec_ref.errors import TrainingError

    with pytest.raises(TrainingError, match="--eval-split test: must be one of val, train"):
        check_config(tiny().replace(eval_split="test"))  # the library call says the same


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [("--composite-share", "1.5", "1.5 is not in the range 0.0<=x<=1.0"),
     ("--negative-share", "-0.1", "-0.1 is not in the range 0.0<=x<=1.0"),
     ("--lr", "nan", "nan is not a finite number"), ("--lr", "0", "0.0 is not in the range 0.0<x<=1.0")],
)  # fmt: skip
def test_nonsense_training_options_are_refused_before_any_work(tiny_dataset, tmp_path, option, value, says):
    out = tmp_path / "run"
    args = ["train-baseline", str(tiny_dataset), "--preset", "tiny", "--quiet", "--out", str(out)]
    result = CliRunner().invoke(main, [*args, option, value])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"Invalid value for '{option}': {says}" in result.output
    assert not out.exists()


def test_predict_image_and_dataset_then_evaluate(trained_run, tiny_dataset, tmp_path):
    record = json.loads((tiny_dataset / "samples.jsonl").read_text().splitlines()[-1])
    root = Path(json.loads((tiny_dataset / "manifest.json").read_text())["source"]["root"])
    image = root / record["image_path"]
    out = tmp_path / "pred"
    result = CliRunner().invoke(
        main, ["predict", str(trained_run), "--image", str(image), "--text", "anomaly", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    import cv2

    mask = cv2.imread(str(out / "mask.png"), cv2.IMREAD_UNCHANGED)
    overlay = cv2.imread(str(out / "overlay.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (record["height"], record["width"]) and set(np.unique(mask)) <= {0, 255}
    assert overlay.shape == (record["height"], record["width"], 3)

    pred = tmp_path / "test_pred"
    result = CliRunner().invoke(
        main,
        ["predict", str(trained_run), "--dataset", str(tiny_dataset), "--split", "test", "--out", str(pred)],
    )
    assert result.exit_code == 0, result.output
    scores = tmp_path / "scores.json"
    result = CliRunner().invoke(
        main, ["evaluate", str(tiny_dataset), "--pred", str(pred), "--out", str(scores)]
    )
    assert result.exit_code == 0, result.output
    # The same checkpoint scored by train-baseline at the end gives the same figures.
    trained = json.loads((trained_run / "test_metrics.json").read_text())
    assert json.loads(scores.read_text())["overall"] == trained["overall"]

    result = CliRunner().invoke(main, ["predict", str(tmp_path), "--image", str(image), "--text", "x",
                                       "--out", str(tmp_path / "p2")])  # fmt: skip
    assert result.exit_code == 1 and "checkpoint not found" in result.output
    result = CliRunner().invoke(main, ["predict", str(trained_run), "--image", str(image), "--out", str(out)])
    assert result.exit_code == 2 and "--text" in result.output


def test_predict_probes_then_evaluate_them(trained_run, tiny_dataset, tmp_path):
    runner = CliRunner()
    probes = tmp_path / "probes.jsonl"
    assert runner.invoke(main, ["probes", str(tiny_dataset), "--out", str(probes), "--quiet"]).exit_code == 0
    lines = [json.loads(line) for line in probes.read_text().splitlines()]
    pred = tmp_path / "pred"
    result = runner.invoke(main, ["predict", str(trained_run), "--dataset", str(tiny_dataset), "--probes",
                                  str(probes), "--out", str(pred)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert all((pred / f"{p['probe_id']}.png").is_file() for p in lines[1:])
    scores = tmp_path / "contrast.json"
    result = runner.invoke(main, ["evaluate", str(tiny_dataset), "--pred", str(pred), "--probes", str(probes),
                                  "--out", str(scores)])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(scores.read_text())
    assert schema_errors("contrast_metrics", data) == [] and data["missing_scored_as_empty"] == 0
    assert data["overall"]["probes"] == len(lines) - 1


def test_ddp_on_two_cpu_processes_matches_one_process(tiny_dataset, tmp_path):
    """torchrun with the gloo backend: 2 processes x 1 image = 1 process x 2 images, step for step."""
    from baselines.dqformer.train import train

    one = tmp_path / "one"
    config = small_config(epochs=1, max_eval_sentences=4)
    train(config, tiny_dataset, one, progress=False, test_split=None)
    two = tmp_path / "two"
    fields = {"--image-size": 64, "--batch-size": 1, "--sentences-per-image": 2, "--epochs": 1,
              "--workers": 0, "--warmup-steps": 2, "--max-eval-sentences": 4}  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "mvtec_ref", "train-baseline", str(tiny_dataset), "--out", str(two), "--preset", "tiny",
           "--quiet", "--test-split", "none"]  # fmt: skip
    cmd += [str(x) for kv in fields.items() for x in kv]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    a = torch.load(one / "last.pt", weights_only=False)
    b = torch.load(two / "last.pt", weights_only=False)
    assert a["step"] == b["step"] > 0 and len(b["rng"]) == 2
    # The same start as train(): seed 0, then the model (DDP copies rank 0's weights to rank 1).
    from baselines.dqformer.model import build_dqformer

    torch.manual_seed(config.seed)
    start = build_dqformer(config).state_dict()
    moved = diff = 0.0
    for key, value in a["model"].items():
        if value.is_floating_point():
            moved += float((value - start[key]).double().pow(2).sum())
            diff += float((value - b["model"][key]).double().pow(2).sum())
    # Adam turns float-rounding noise in near-zero gradients into lr-sized steps, so equality is
    # checked against how far training moved the weights, not element by element.
    assert moved > 0 and (diff / moved) ** 0.5 < 0.02, (diff / moved) ** 0.5
