"""LMA: language-gated multi-level aggregation.

At each backbone level (strides 4/8/16/32) the pixels attend to the words (pixel-word
cross-attention), giving language-aware features; a gate computed from the pixels, the
language-aware features and the sentence decides, per pixel and channel, how much of them
flows into the level. The gated levels are then aggregated top-down (stride 32 -> 4) into
the high-resolution pixel embedding: small anomalies are only visible at stride 4.

Each level's pixels also carry their position: a learned code of the normalised (x, y) added
to the projected features, as referring segmentation has done since Hu et al. (2016, 8-D
spatial features), so "near the top" or "the leftmost one" has something to match. Without
it the features know position only through zero padding, and in the tiny preset location
and relative sentences were the worst kinds (val mIoU 0.43 and 0.34 vs 0.58 for type).

What depends on the image alone (projection, position, the attention queries, the pixels'
share of the gate) is computed once per image and then shared by its sentences (tiny
preset, 4 sentences per image: a CPU step went from 2.0 to 1.73 s).

Why the language path is built to start loud (issue 33). In the plain form (``cosine=False,
norm=False``) the language-aware features are a product of small default-initialised projections
(words -> keys/values -> out, times the pixels, then the two-layer fuse), and the attention is
uniform over the words (logit spread 0.05), so each pixel receives the sentence's mean word: at
initialisation one image's sentences changed LMA's stride-4 output by 0.4% (std across
sentences / std), the pixel embedding by 0.3%. The union of the defects is learnt first from the
pixels alone and the sentence stays that quiet: on 16 training images, after 200 steps at 2.5x the
tiny preset's lr, 3% for the pixel embedding and part-scope IoU 0.46. Two changes make the
sentence's effect O(1) from the start, where it lives:

- ``cosine``: pixel-word attention on unit-length queries and keys, times a learnable temperature
  per head (starting at 10, as Swin v2's scaled cosine attention): how selective it is no longer
  waits for several projections to grow.
- ``norm``: LayerNorm on the language-aware features and on the fused product, so they enter the
  gate at the pixels' scale (variation at initialisation 24% and 17% instead of 0.4% and 0.3%).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

TEMPERATURE = 10.0  # cosine attention's starting temperature (Swin v2 starts at 10 too)


def conv_norm(cin: int, cout: int, k: int) -> nn.Sequential:
    groups = 8 if cout % 8 == 0 else 1
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.GroupNorm(groups, cout), nn.ReLU(inplace=True)
    )


def grid(h: int, w: int, device) -> torch.Tensor:
    """``(h * w, 2)`` pixel-centre (x, y) in [-1, 1], row-major."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w * 2 - 1
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(h * w, 2)


class LanguageGate(nn.Module):
    """One level: pixels ``(N, hw, D)`` of N images -> ``(B, hw, D)`` for B sentences,
    ``own + g * f`` with f language-aware and g in (0, 1)."""

    def __init__(self, dim: int, heads: int, *, cosine: bool = True, norm: bool = True) -> None:
        super().__init__()
        self.heads = heads
        self.cosine = cosine
        if cosine:  # log of each head's temperature
            self.log_temperature = nn.Parameter(torch.full((heads,), math.log(TEMPERATURE)))
        self.lang_norm = nn.LayerNorm(dim) if norm else nn.Identity()
        self.fused_norm = nn.LayerNorm(dim) if norm else nn.Identity()
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.fuse = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.gate_pixels = nn.Linear(dim, dim)
        self.gate_fused = nn.Linear(dim, dim, bias=False)
        self.gate_sentence = nn.Linear(dim, dim, bias=False)

    def forward(self, pixels, image_index, words, word_pad, sentence):
        d = pixels.shape[-1]

        def split(x):  # (B, n, D) -> (B, heads, n, D / heads)
            return x.unflatten(-1, (self.heads, d // self.heads)).transpose(1, 2)

        query = split(self.query(pixels))
        key, value = self.key_value(words).chunk(2, dim=-1)
        key, value = split(key), split(value)
        scale = None  # SDPA's default, 1 / sqrt(D / heads)
        if self.cosine:
            query = F.normalize(query, dim=-1)
            key = F.normalize(key, dim=-1) * self.log_temperature.exp().clamp(max=100).view(-1, 1, 1)
            scale = 1.0
        query = query.index_select(0, image_index)
        lang = F.scaled_dot_product_attention(
            query, key, value, attn_mask=~word_pad[:, None, None, :], scale=scale
        )
        lang = self.lang_norm(self.out(lang.transpose(1, 2).flatten(2)))
        own = pixels.index_select(0, image_index)
        fused = self.fused_norm(self.fuse(own * lang))  # elementwise product, as in LAVT's PWAM
        gate = torch.sigmoid(
            self.gate_pixels(pixels).index_select(0, image_index)
            + self.gate_fused(fused)
            + self.gate_sentence(sentence).unsqueeze(1)
        )
        return own + gate * fused


class LanguageGatedAggregation(nn.Module):
    """``forward(features, image_index, words, word_mask, sentence)``:

    features: 4 maps ``(N, C_i, H/s, W/s)`` of N images, s = 4, 8, 16, 32; image_index ``(B,)``
    the image of each sentence; words ``(B, L, D)`` and sentence ``(B, D)`` already projected
    to ``dim``; word_mask ``(B, L)`` True = real token.
    Returns ``(pixel_embedding (B, D, H/4, W/4), [p32, p16, p8])`` (the decoder's levels).
    """

    def __init__(self, in_channels: tuple[int, ...], dim: int, heads: int, *, cosine: bool = True,
                 norm: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.proj = nn.ModuleList(conv_norm(c, dim, 1) for c in in_channels)
        self.position = nn.ModuleList(
            nn.Sequential(nn.Linear(2, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim)) for _ in in_channels
        )
        self.gates = nn.ModuleList(LanguageGate(dim, heads, cosine=cosine, norm=norm) for _ in in_channels)
        self.smooth = nn.ModuleList(conv_norm(dim, dim, 3) for _ in in_channels[:-1])
        self.pixel_embedding = nn.Conv2d(dim, dim, 1)

    def forward(self, features, image_index, words, word_mask, sentence):
        pad = ~word_mask
        levels = []
        for f, proj, position, gate in zip(features, self.proj, self.position, self.gates, strict=True):
            h, w = f.shape[-2:]
            pixels = proj(f).flatten(2).transpose(1, 2) + position(grid(h, w, f.device)).to(f.dtype)
            out = gate(pixels, image_index, words, pad, sentence)  # (B, hw, D)
            levels.append(out.unflatten(1, (h, w)).permute(0, 3, 1, 2))  # (B, D, h, w), channels last
        p = levels[-1]
        pyramid = [p]
        for i in range(len(levels) - 2, -1, -1):
            up = F.interpolate(p, size=levels[i].shape[-2:], mode="bilinear", align_corners=False)
            p = self.smooth[i](levels[i] + up)
            pyramid.append(p)
        # pyramid: strides 32, 16, 8, 4
        return self.pixel_embedding(pyramid[-1]), pyramid[:-1]
