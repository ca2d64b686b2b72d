"""DQFormer: backbone + text encoder + LMA + two-query mask group decoder, and its losses.

``model(images, text, targets=None, image_index=None)`` -> ``(logits, losses)``:
images ``(N, 3, H, W)`` float in [0, 1]; text ``{"input_ids": (B, L), "attention_mask": (B, L)}``;
targets ``(B, H, W)`` long in {0, 1} or None; image_index ``(B,)`` long: the image of each
sentence when N < B (the backbone then runs once per image), else None (N = B).
logits ``(B, 2, H/4, W/4)`` (channel 0 background, 1 anomaly): the predicted mask is
``logits.argmax(1)`` after upsampling, no threshold, the same in training and inference.
losses: None without targets, else ``{"loss": total, "ce": .., "dice": ..}`` (scalars).

Every word reaches the mask through the two sentence-conditioned queries and the
language-gated pixel features (LMA); nothing else reads the text. A sentence whose target is
empty (it names a type or a place the image does not have, or the image is defect-free) is
trained, as gRefCOCO's no-target rule says, on an empty mask: the background query wins at
every pixel. So reading the words is the only way to tell "the scratch" from "the dent" on
an image with a dent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from baselines.dqformer.backbone import build_backbone, build_text_encoder
from baselines.dqformer.config import DQFormerConfig
from baselines.dqformer.decoder import MaskGroupDecoder
from baselines.dqformer.lma import LanguageGatedAggregation


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 - (2 sum(p t) + 1) / (sum p + sum t + 1) on the anomaly probability, summed over the
    samples whose target is not empty and divided by B (so DDP's gradient mean over processes
    equals one process with the whole batch). Empty targets are left to the cross-entropy:
    Dice on them is ~1 for any stray probability and, with most sentences of a batch having
    no target, drove the model to predict nothing at all."""
    p = logits.float().softmax(1)[:, 1].flatten(1)
    t = targets.flatten(1).float()
    dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
    return (dice * (t.sum(1) > 0)).sum() / len(dice)


def empty_loss(logits: torch.Tensor, targets: torch.Tensor, topk: float) -> torch.Tensor:
    """For samples whose target is empty: the cross-entropy towards background of their ``topk``
    share of pixels with the highest anomaly margin, summed and divided by B (as Dice). The mean
    CE over all pixels charges a wrongly answered defect only its area (0.1-1% of the image), while
    Dice charges a missed one about 1: one word apart, "the crack" and "the hole" then both get the
    crack. This charges the wrong answer at the scale of the right one."""
    margin = (logits[:, 1] - logits[:, 0]).float().flatten(1)
    k = max(1, round(topk * margin.shape[1]))
    top = F.softplus(margin.topk(k, dim=1).values).mean(1)  # CE of background = log(1 + e^margin)
    empty = targets.flatten(1).sum(1) == 0
    return (top * empty).sum() / len(top)


def other_loss(logits: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """For each sample: the mean cross-entropy towards background over ``others`` ``(B, H, W)``
    bool, the image's defects that are not its target; summed over the samples that have some and
    divided by B (as Dice). Answering the wrong defect is then charged per pixel of that defect, at
    the scale Dice charges a missed one, not by its share of the image (0.1-1%) as the mean CE
    does: "the hole" on a crack, "the left crack" answered with both cracks."""
    margin = (logits[:, 1] - logits[:, 0]).float().flatten(1)
    weight = others.flatten(1).float()
    ce = (F.softplus(margin) * weight).sum(1) / weight.sum(1).clamp(min=1)  # log(1 + e^margin)
    return ce.sum() / len(ce)


def weighted_ce(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Class-weighted cross-entropy, the weighted mean over each sample's pixels, then the mean
    over samples: unlike one weighted mean over the whole batch (whose normaliser mixes the samples'
    class balances), DDP's mean over processes equals one process with the whole batch."""
    per_pixel = F.cross_entropy(logits, targets, weight=weights, reduction="none").flatten(1)
    norm = weights[targets].flatten(1).sum(1)
    return (per_pixel.sum(1) / norm).mean()


class DQFormer(nn.Module):
    def __init__(self, backbone, text_encoder, lma, decoder, config: DQFormerConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.text_encoder = text_encoder
        self.word_proj = nn.Linear(text_encoder.dim, config.dim)
        self.sentence_proj = nn.Linear(text_encoder.dim, config.dim)
        self.lma = lma
        self.decoder = decoder
        self.config = config
        self.register_buffer("class_weights", torch.tensor(config.ce_class_weights), persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.config.freeze_backbone_bn:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, images, text, targets=None, image_index=None, wrong=None, defects=None):
        features = self.backbone(images)
        words, word_mask, sentence = self.text_encoder(text["input_ids"], text["attention_mask"])
        if image_index is None:
            image_index = torch.arange(len(sentence), device=sentence.device)
        projected = self.sentence_proj(sentence)
        pixel_embedding, levels = self.lma(features, image_index, self.word_proj(words), word_mask, projected)
        masks = self.decoder(levels, pixel_embedding, projected)
        if targets is None:
            return masks[-1], None
        # The ablation's every sentence is "anomaly", which names every defect: nothing is left for
        # the other term to charge (its targets are the original sentences', words it never reads).
        others = None if defects is None or self.config.no_language else defects[image_index] & (targets == 0)
        return masks[-1], self.mask_losses(masks, targets, wrong, others)

    def mask_losses(self, masks: list[torch.Tensor], targets: torch.Tensor, wrong=None, others=None) -> dict:
        """CE + Dice of every decoder prediction (earlier ones x aux_weight) at the input
        resolution; an empty target is learned by the CE, plus the wrong-answer terms:
        ``config.empty_weight`` x ``empty_loss`` and ``config.other_weight`` x ``other_loss`` where
        ``others`` (the image's defects that are not each sentence's target, ``defects`` in
        ``forward``) is given, both scaled by ``wrong`` (None: 1; the trainer passes 0 before
        ``config.wrong_epochs``)."""
        cfg = self.config
        wrong = 1.0 if wrong is None else wrong
        empty_weight, other_weight = wrong * cfg.empty_weight, wrong * cfg.other_weight
        total = ce = dice = 0.0
        for i, logits in enumerate(masks):
            up = F.interpolate(logits.float(), size=targets.shape[-2:], mode="bilinear", align_corners=False)
            ce = weighted_ce(up, targets, self.class_weights)
            dice = dice_loss(up, targets)
            weight = 1.0 if i == len(masks) - 1 else cfg.aux_weight
            total = total + weight * (cfg.ce_weight * ce + cfg.dice_weight * dice)
            if empty_weight > 0:
                total = total + weight * empty_weight * empty_loss(up, targets, cfg.empty_topk)
            if other_weight > 0 and others is not None:
                total = total + weight * other_weight * other_loss(up, others)
        return {"loss": total, "ce": ce.detach(), "dice": dice.detach()}


def build_dqformer(config: DQFormerConfig, *, pretrained: bool = True, hf_configs: dict | None = None):
    """Assemble the model from its parts. ``pretrained=False`` skips loading weights (a checkpoint
    follows); ``hf_configs`` (saved in checkpoints) rebuilds transformers parts without the hub."""
    hf_configs = hf_configs or {}
    backbone = build_backbone(
        config.backbone, pretrained=pretrained and config.backbone_pretrained, image_size=config.image_size,
        drop_path=config.drop_path, hf_config=hf_configs.get("backbone"),
    )  # fmt: skip
    if config.freeze_stem:
        backbone.freeze_stem()
    text_encoder = build_text_encoder(
        config.text_encoder, pretrained=pretrained and config.text_pretrained, frozen=config.freeze_text,
        hf_config=hf_configs.get("text_encoder"), whiten=config.text_whiten,
    )  # fmt: skip
    lma = LanguageGatedAggregation(backbone.channels, config.dim, config.heads,
                                   cosine=config.cosine_attention, norm=config.lma_norm)  # fmt: skip
    decoder = MaskGroupDecoder(
        config.dim, config.heads, config.decoder_layers, config.ffn_dim, config.dropout
    )
    model = DQFormer(backbone, text_encoder, lma, decoder, config)
    # Channels-last convolutions: a tiny CPU step took 11% less (1.74 -> 1.55 s).
    return model.to(memory_format=torch.channels_last)


def hf_configs_of(model: DQFormer) -> dict:
    return {"backbone": model.backbone.hf_config, "text_encoder": model.text_encoder.hf_config}
