"""DQFormer: backbone + text encoder + LMA + two-query mask group decoder + presence head +
spatial prior, and its losses.

``model(images, text, targets=None, image_index=None, extra=None)`` -> ``(logits, losses)``:
images ``(N, 3, H, W)`` float in [0, 1]; text ``{"input_ids": (B, L), "attention_mask": (B, L)}``;
targets ``(B, H, W)`` long in {0, 1} or None; image_index ``(B,)`` long: the image of each
sentence when N < B (the backbone then runs once per image), else None (N = B).
extra (training only, optional): ``{"regions": (N, H, W)}``, the union of each image's true
regions, and presence-only sentences ``"input_ids"``/``"attention_mask"`` ``(E, L)``,
``"image_index"`` ``(E,)``, ``"label"`` ``(E,)`` float, scored by the presence head alone (the
decoder does not run for them): the type check gets many sentences per step for the price of
encoding them (once each, with a frozen text encoder).
logits ``(B, 2, H/4, W/4)`` (channel 0 background, 1 anomaly; where the presence logit says
absent, the anomaly margin is capped at it): the predicted mask is ``logits.argmax(1)`` after
upsampling, no threshold.
losses: None without targets, else ``{"loss": total, "ce": .., "dice": .., "presence": ..}`` (scalars).

Two outputs, two jobs. The decoder's raw masks say *where* the sentence's candidate is: its
target when it names something here, else (given ``regions``) every defect the image has, so
"the scratch" on an image with a dent still shows the dent. The presence head says *whether*
the words fit that candidate. Training the raw masks of absent-target sentences to an empty
mask instead taught the decoder to hold back on every sentence: a lite model with language
segmented worse than the same model given only "anomaly" (val, 8 synthetic categories).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from baselines.dqformer.backbone import build_backbone, build_text_encoder
from baselines.dqformer.config import DQFormerConfig
from baselines.dqformer.decoder import MaskGroupDecoder, SpatialPrior
from baselines.dqformer.lma import LanguageGatedAggregation
from baselines.dqformer.presence import PresenceHead


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


def weighted_ce(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Class-weighted cross-entropy, the weighted mean over each sample's pixels, then the mean
    over samples: unlike one weighted mean over the whole batch (whose normaliser mixes the samples'
    class balances), DDP's mean over processes equals one process with the whole batch."""
    per_pixel = F.cross_entropy(logits, targets, weight=weights, reduction="none").flatten(1)
    norm = weights[targets].flatten(1).sum(1)
    return (per_pixel.sum(1) / norm).mean()


def with_presence(masks: torch.Tensor, presence: torch.Tensor) -> torch.Tensor:
    """Where the presence logit says the target is there (> 0) the raw masks stand; where it
    says not, the anomaly channel's margin over background is capped at that negative logit,
    so the argmax claims nothing. (Capping at the logit in both cases also shrank present
    masks: a small positive cap beside the background's large negative margin, upsampled
    bilinearly, moved the boundary inward by up to a stride-4 cell; on the tiny test split
    mIoU on "anomaly" fell from 0.80 to 0.72 with every sentence judged present. Adding
    log P(present) instead was too weak: confident masks outvoted it.)"""
    cap = presence.to(masks.dtype)[:, None, None]
    margin = masks[:, 1] - masks[:, 0]
    margin = torch.where(cap > 0, margin, torch.minimum(margin, cap))
    return torch.stack([masks[:, 0], masks[:, 0] + margin], dim=1)


class DQFormer(nn.Module):
    def __init__(
        self, backbone, text_encoder, lma, decoder, presence, config: DQFormerConfig, prior=None
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.text_encoder = text_encoder
        self.word_proj = nn.Linear(text_encoder.dim, config.dim)
        self.sentence_proj = nn.Linear(text_encoder.dim, config.dim)
        self.lma = lma
        self.decoder = decoder
        self.presence = presence
        self.prior = prior
        self.config = config
        self.register_buffer("class_weights", torch.tensor(config.ce_class_weights), persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.config.freeze_backbone_bn:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, images, text, targets=None, image_index=None, extra=None):
        features = self.backbone(images)
        words, word_mask, sentence = self.text_encoder(text["input_ids"], text["attention_mask"])
        if image_index is None:
            image_index = torch.arange(len(sentence), device=sentence.device)
        projected = self.sentence_proj(sentence)
        pixel_embedding, levels = self.lma(features, image_index, self.word_proj(words), word_mask, projected)
        prior = None
        if self.prior is not None:
            prior = self.prior(text["input_ids"], text["attention_mask"])
            if targets is not None:
                # A sentence naming something absent carries location words that fit nothing
                # here while its raw mask is trained to show every defect (below): no prior.
                prior = prior * (targets.flatten(1).amax(1) > 0).to(prior.dtype)[:, None, None, None]
        masks = self.decoder(levels, pixel_embedding, projected, prior)
        probability = masks[-1].detach().float().softmax(1)[:, 1]
        regions = None if extra is None else extra.get("regions")
        weights = probability if regions is None else teacher_weights(regions, probability, image_index)
        presence = self.presence(self.presence.describe(weights, features, image_index), sentence)
        logits = with_presence(masks[-1], presence) if self.config.presence_weight > 0 else masks[-1]
        if targets is None:
            return logits, None
        present = targets.flatten(1).amax(1) > 0
        if regions is not None:  # absent target: the raw mask shows what is there instead
            size = targets.shape[-2:]
            candidates = F.interpolate(regions[:, None].float(), size=size, mode="nearest").squeeze(1).long()
            targets = torch.where(present[:, None, None], targets, candidates.index_select(0, image_index))
        losses = self.mask_losses(masks, targets)
        logits_all, labels = presence, present.float()
        if extra is not None and len(extra.get("label", ())):
            more = self.extra_presence(extra, probability, features, image_index)
            logits_all, labels = torch.cat([presence, more]), torch.cat([labels, extra["label"].float()])
        bce = F.binary_cross_entropy_with_logits(logits_all.float(), labels)
        losses["loss"] = losses["loss"] + self.config.presence_weight * bce
        losses["presence"] = bce.detach()
        return logits, losses

    def extra_presence(self, extra: dict, probability, features, image_index) -> torch.Tensor:
        """Presence logits of the presence-only sentences, each pooled like its image's decoded
        sentences: under the true regions, or on a defect-free image under the mean raw anomaly
        probability of its decoded sentences."""
        n = len(features[0])
        per_image = probability.new_zeros((n, *probability.shape[1:])).index_add_(0, image_index, probability)
        count = probability.new_zeros(n).index_add_(0, image_index, probability.new_ones(len(probability)))
        per_image = per_image / count.clamp(min=1)[:, None, None]
        index = extra["image_index"]
        weights = teacher_weights(extra["regions"], per_image.index_select(0, index), index)
        sentence = self.text_encoder.sentences(extra["input_ids"], extra["attention_mask"])
        return self.presence(self.presence.describe(weights, features, index), sentence)

    def mask_losses(self, masks: list[torch.Tensor], targets: torch.Tensor) -> dict:
        """CE + Dice of every decoder prediction (earlier ones x aux_weight) on the raw masks,
        at the input resolution."""
        cfg = self.config
        total = ce = dice = 0.0
        for i, logits in enumerate(masks):
            up = F.interpolate(logits.float(), size=targets.shape[-2:], mode="bilinear", align_corners=False)
            ce = weighted_ce(up, targets, self.class_weights)
            dice = dice_loss(up, targets)
            weight = 1.0 if i == len(masks) - 1 else cfg.aux_weight
            total = total + weight * (cfg.ce_weight * ce + cfg.dice_weight * dice)
        return {"loss": total, "ce": ce.detach(), "dice": dice.detach()}


def teacher_weights(regions: torch.Tensor, probability: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Presence pooling weights in training: the true regions of each sentence's image
    (``regions (N, H, W)`` at the raw masks' size), or the raw anomaly probability
    ``(B, h, w)`` where the image has none."""
    truth = F.adaptive_avg_pool2d(regions.float()[:, None], probability.shape[-2:]).squeeze(1)
    truth = truth.index_select(0, index)
    return torch.where(truth.flatten(1).amax(1)[:, None, None] > 0, truth, probability)


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
        hf_config=hf_configs.get("text_encoder"),
    )  # fmt: skip
    lma = LanguageGatedAggregation(backbone.channels, config.dim, config.heads)
    decoder = MaskGroupDecoder(
        config.dim, config.heads, config.decoder_layers, config.ffn_dim, config.dropout
    )
    presence = PresenceHead(backbone.channels, text_encoder.dim, config.dim)
    vocabulary = text_encoder.model.config.vocab_size
    prior = SpatialPrior(vocabulary, config.prior_grid, config.prior_strength) if config.prior_grid else None
    model = DQFormer(backbone, text_encoder, lma, decoder, presence, config, prior)
    # Channels-last convolutions: a tiny CPU step took 11% less (1.74 -> 1.55 s).
    return model.to(memory_format=torch.channels_last)


def hf_configs_of(model: DQFormer) -> dict:
    return {"backbone": model.backbone.hf_config, "text_encoder": model.text_encoder.hf_config}
