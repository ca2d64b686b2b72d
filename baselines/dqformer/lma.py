"""LMA: language-gated multi-level aggregation.

At each backbone level (strides 4/8/16/32) the pixels attend to the words (pixel-word
cross-attention), giving language-aware features; a gate computed from the pixels, the
language-aware features and the sentence decides, per pixel and channel, how much of them
flows into the level. The gated levels are then aggregated top-down (stride 32 -> 4) into
the high-resolution pixel embedding: small anomalies are only visible at stride 4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_norm(cin: int, cout: int, k: int) -> nn.Sequential:
    groups = 8 if cout % 8 == 0 else 1
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.GroupNorm(groups, cout), nn.ReLU(inplace=True)
    )


class LanguageGate(nn.Module):
    """One level: ``v (B, D, h, w)`` + words -> ``v + g * f`` with f language-aware, g in (0, 1)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.fuse = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.gate_pixels = nn.Linear(2 * dim, dim)
        self.gate_sentence = nn.Linear(dim, dim, bias=False)

    def forward(self, v, words, word_pad, sentence):
        b, d, h, w = v.shape
        pixels = v.flatten(2).transpose(1, 2)  # (B, hw, D)
        lang, _ = self.attn(pixels, words, words, key_padding_mask=word_pad, need_weights=False)
        fused = self.fuse(pixels * lang)  # elementwise product, as in LAVT's PWAM
        gate = torch.sigmoid(
            self.gate_pixels(torch.cat([pixels, fused], dim=-1)) + self.gate_sentence(sentence).unsqueeze(1)
        )
        out = pixels + gate * fused
        return out.transpose(1, 2).reshape(b, d, h, w)


class LanguageGatedAggregation(nn.Module):
    """``forward(features, words, word_mask, sentence)``:

    features: 4 maps ``(B, C_i, H/s, W/s)``, s = 4, 8, 16, 32; words ``(B, L, D)`` and
    sentence ``(B, D)`` already projected to ``dim``; word_mask ``(B, L)`` True = real token.
    Returns ``(pixel_embedding (B, D, H/4, W/4), [p32, p16, p8])`` (the decoder's levels).
    """

    def __init__(self, in_channels: tuple[int, ...], dim: int, heads: int) -> None:
        super().__init__()
        self.proj = nn.ModuleList(conv_norm(c, dim, 1) for c in in_channels)
        self.gates = nn.ModuleList(LanguageGate(dim, heads) for _ in in_channels)
        self.smooth = nn.ModuleList(conv_norm(dim, dim, 3) for _ in in_channels[:-1])
        self.pixel_embedding = nn.Conv2d(dim, dim, 1)

    def forward(self, features, words, word_mask, sentence):
        pad = ~word_mask
        levels = [
            gate(proj(f), words, pad, sentence)
            for f, proj, gate in zip(features, self.proj, self.gates, strict=True)
        ]
        p = levels[-1]
        pyramid = [p]
        for i in range(len(levels) - 2, -1, -1):
            up = F.interpolate(p, size=levels[i].shape[-2:], mode="bilinear", align_corners=False)
            p = self.smooth[i](levels[i] + up)
            pyramid.append(p)
        # pyramid: strides 32, 16, 8, 4
        return self.pixel_embedding(pyramid[-1]), pyramid[:-1]
