"""Presence: does the sentence name something in this image?

A defect type is a matter of look (a dark thin crack, a red stain, a bright particle), and the
words that name it are a handful per category, so the check is a small classifier on two
descriptors rather than something the mask queries have to discover:

- the region: the backbone's features at strides 4, 8 and 16 (no gradient into the backbone:
  the check should not bend the features the masks are made from) averaged under a weight
  map, and the same features averaged over the whole image (what the surroundings look like);
- the sentence: the text encoder's embedding (no gradient into the encoder).

The weight map is the anomaly probability of the sentence's raw mask at inference. The raw
mask of a sentence that names an absent type is trained to show the defects that are there
(``model.py``), so the check compares what the words name with what the mask found. In
training the map is the union of the image's true regions where it has any (teacher forcing:
early masks are noise, and a classifier trained on noise learns only the label prior), else
the raw mask.

``describe(weights, features, image_index)`` -> region descriptors ``(B, D)``;
``forward(region, sentence)`` -> ``(B,)`` logits.

Measured on the synthetic set of ``make learn``: a probe of this head on frozen ImageNet
features, 4 images and 40 sentence pairs per step, rejected 90% of the val "other type"
sentences and accepted 95-100% of the true ones after 200 steps, but at 100 steps accepted
only 30-50% of the true ones. In the tiny preset (8 epochs, 304 steps, 24 presence-only
sentences per image) val N-acc reached 1.0 with 98.6% of specific sentences accepted (``make
learn``, 2026-11-23); a check that read the anomaly query instead learned no type at all
(N-acc 0.39-0.49).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LEVELS = 3  # strides 4, 8, 16; stride 32 is too coarse to sit under a small defect


class PresenceHead(nn.Module):
    def __init__(self, channels: tuple[int, ...], text_dim: int, dim: int) -> None:
        super().__init__()
        width = 2 * sum(channels[:LEVELS])
        self.region = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim)
        )
        self.text = nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, dim))
        self.out = nn.Sequential(nn.Linear(3 * dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, 1))

    def describe(
        self, weights: torch.Tensor, features: list[torch.Tensor], image_index: torch.Tensor
    ) -> torch.Tensor:
        """weights ``(B, h, w)`` >= 0 (no gradient is taken through them); features: the
        backbone's per-image maps ``(N, C_i, H/s, W/s)``, s = 4, 8, 16, ...; image_index ``(B,)``."""
        weights = weights.detach().float()
        parts = []
        for f in features[:LEVELS]:
            f = f.detach().float()
            w = F.adaptive_avg_pool2d(weights[:, None], f.shape[-2:])[:, 0]  # (B, h_l, w_l)
            # every (image, weight map) pair as one matrix product, then each sentence's own image:
            # cheaper than copying the stride-4 map once per sentence
            region = torch.einsum("nchw,bhw->bnc", f, w)[torch.arange(len(w)), image_index]
            whole = f.mean((2, 3)).index_select(0, image_index)
            parts += [region / w.sum((1, 2)).clamp(min=1e-4)[:, None], whole]
        return self.region(torch.cat(parts, dim=-1))

    def forward(self, region: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        text = self.text(sentence.detach().float())
        return self.out(torch.cat([region, text, region * text], dim=-1)).squeeze(-1)
