"""DQFormer: backbone + text encoder + LMA + two-query mask group decoder, and its losses.

``model(images, text, targets=None, image_index=None)`` -> ``(logits, losses)``:
images ``(N, 3, H, W)`` float in [0, 1]; text ``{"input_ids": (B, L), "attention_mask": (B, L)}``;
targets ``(B, H, W)`` long in {0, 1} or None; image_index ``(B,)`` long: the image of each
sentence when N < B (the backbone then runs once per image), else None (N = B).
logits ``(B, 2, H/4, W/4)`` (channel 0 background, 1 anomaly; the anomaly margin is capped by
the presence logit): the predicted mask is ``logits.argmax(1)`` after
upsampling, no threshold.
losses: None without targets, else ``{"loss": total, "ce": .., "dice": .., "presence": ..}`` (scalars).
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


def with_presence(masks: torch.Tensor, presence: torch.Tensor) -> torch.Tensor:
    """The anomaly channel's margin over background becomes min(mask margin, presence logit): a
    pixel is anomalous under argmax only where the anomaly query claims it *and* says its target
    is present. (Adding log P(present) instead was too weak: confident masks outvoted it.)"""
    margin = torch.minimum(masks[:, 1] - masks[:, 0], presence.to(masks.dtype)[:, None, None])
    return torch.stack([masks[:, 0], masks[:, 0] + margin], dim=1)


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

    def forward(self, images, text, targets=None, image_index=None):
        features = self.backbone(images)
        if image_index is not None:
            features = [f.index_select(0, image_index) for f in features]
        words, word_mask, sentence = self.text_encoder(text["input_ids"], text["attention_mask"])
        words, sentence = self.word_proj(words), self.sentence_proj(sentence)
        pixel_embedding, levels = self.lma(features, words, word_mask, sentence)
        outputs = [
            (with_presence(m, p) if self.config.presence_weight > 0 else m, p)
            for m, p in self.decoder(levels, pixel_embedding, sentence)
        ]
        return outputs[-1][0], (None if targets is None else self.losses(outputs, targets))

    def losses(self, outputs: list[tuple[torch.Tensor, torch.Tensor]], targets: torch.Tensor) -> dict:
        """CE + Dice at the input resolution, and BCE on presence (does the sentence name anything
        here?), for every decoder prediction (earlier ones x aux_weight). The pixel losses barely
        notice a sentence that names nothing (its wrong pixels are ~1% of the image); presence
        gives every such sentence the weight of one whole sample."""
        cfg = self.config
        total = ce_last = dice_last = presence_last = 0.0
        present = (targets.flatten(1).amax(1) > 0).float()
        for i, (logits, presence) in enumerate(outputs):
            up = F.interpolate(logits.float(), size=targets.shape[-2:], mode="bilinear", align_corners=False)
            ce = F.cross_entropy(up, targets, weight=self.class_weights)
            dice = dice_loss(up, targets)
            bce = F.binary_cross_entropy_with_logits(presence.float(), present)
            weight = 1.0 if i == len(outputs) - 1 else cfg.aux_weight
            total = total + weight * (cfg.ce_weight * ce + cfg.dice_weight * dice + cfg.presence_weight * bce)
            ce_last, dice_last, presence_last = ce, dice, bce
        return {"loss": total, "ce": ce_last.detach(), "dice": dice_last.detach(),
                "presence": presence_last.detach()}  # fmt: skip


def build_dqformer(config: DQFormerConfig, *, pretrained: bool = True, hf_configs: dict | None = None):
    """Assemble the model from its parts. ``pretrained=False`` skips loading weights (a checkpoint
    follows); ``hf_configs`` (saved in checkpoints) rebuilds transformers parts without the hub."""
    hf_configs = hf_configs or {}
    backbone = build_backbone(
        config.backbone, pretrained=pretrained and config.backbone_pretrained, image_size=config.image_size,
        drop_path=config.drop_path, hf_config=hf_configs.get("backbone"),
    )  # fmt: skip
    text_encoder = build_text_encoder(
        config.text_encoder, pretrained=pretrained and config.text_pretrained, frozen=config.freeze_text,
        hf_config=hf_configs.get("text_encoder"),
    )  # fmt: skip
    lma = LanguageGatedAggregation(backbone.channels, config.dim, config.heads)
    decoder = MaskGroupDecoder(
        config.dim, config.heads, config.decoder_layers, config.ffn_dim, config.dropout
    )
    return DQFormer(backbone, text_encoder, lma, decoder, config)


def hf_configs_of(model: DQFormer) -> dict:
    return {"backbone": model.backbone.hf_config, "text_encoder": model.text_encoder.hf_config}
