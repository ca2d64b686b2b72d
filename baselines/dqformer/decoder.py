"""Mask group transformer decoder with exactly two queries: background (0) and anomaly (1).

The queries start from learned embeddings plus a projection of the sentence. Each layer
does masked cross-attention to one pixel level (strides 32, 16, 8 in turn): a query attends
only to the group of pixels its current mask assigns to it (the argmax of the two masks),
or to every pixel when its group is empty; then self-attention between the two queries and
an FFN. A mask is predicted before the first layer and after each one (deep supervision):
``mask_embed(query) . pixel_embedding``, ``(B, 2, H/4, W/4)`` logits. The groups come from
the model's own previous mask in training as in inference (no ground truth is fed in).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BACKGROUND, ANOMALY = 0, 1


def sine_position(h: int, w: int, dim: int, device, dtype) -> torch.Tensor:
    """2-D sine/cosine position code ``(h * w, dim)`` (DETR style, normalised coordinates)."""
    quarter = dim // 4
    freq = torch.exp(torch.arange(quarter, device=device, dtype=torch.float32) * (-math.log(1e4) / quarter))
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h * 2 * math.pi
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w * 2 * math.pi
    y = ys[:, None] * freq[None]
    x = xs[:, None] * freq[None]
    code = torch.cat(
        [
            y.sin()[:, None].expand(h, w, quarter),
            y.cos()[:, None].expand(h, w, quarter),
            x.sin()[None].expand(h, w, quarter),
            x.cos()[None].expand(h, w, quarter),
        ],
        dim=-1,
    )
    code = F.pad(code, (0, dim - 4 * quarter))
    return code.reshape(h * w, dim).to(dtype)


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.cross = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(ffn_dim, dim)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))

    def forward(self, q, pos, memory, memory_pos, attn_mask):
        out, _ = self.cross(q + pos, memory + memory_pos, memory, attn_mask=attn_mask, need_weights=False)
        q = self.norms[0](q + out)
        out, _ = self.self_attn(q + pos, q + pos, q, need_weights=False)
        q = self.norms[1](q + out)
        return self.norms[2](q + self.ffn(q))


class MaskGroupDecoder(nn.Module):
    """``forward(levels, pixel_embedding, sentence)`` -> list of ``(B, 2, H/4, W/4)`` mask
    logits, one per prediction (0 = from the initial queries, last = the output).

    levels: ``[(B, D, H/32, W/32), (B, D, H/16, W/16), (B, D, H/8, W/8)]``;
    pixel_embedding ``(B, D, H/4, W/4)``; sentence ``(B, D)``: both queries start from it.
    """

    def __init__(self, dim: int, heads: int, layers: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Embedding(2, dim)
        self.query_pos = nn.Embedding(2, dim)
        self.from_sentence = nn.Linear(dim, dim)
        self.level_embed = nn.Embedding(3, dim)
        self.layers = nn.ModuleList(DecoderLayer(dim, heads, ffn_dim, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.mask_embed = nn.Sequential(
            nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim), nn.ReLU(inplace=True),
            nn.Linear(dim, dim),
        )  # fmt: skip

    def predict(self, q, pixel_embedding):
        """``(B, 2, h, w)`` mask logits from the queries ``(B, 2, D)``."""
        return torch.einsum("bqd,bdhw->bqhw", self.mask_embed(self.norm(q)), pixel_embedding)

    def group_mask(self, logits, size) -> torch.Tensor:
        """``(B * heads, 2, h * w)`` bool, True = may not attend: pixels of the other group."""
        with torch.no_grad():
            small = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)
            label = small.argmax(1).flatten(1)  # (B, hw)
            blocked = torch.stack([label != k for k in (BACKGROUND, ANOMALY)], dim=1)  # (B, 2, hw)
            blocked[blocked.all(-1)] = False  # an empty group attends everywhere
        return blocked.repeat_interleave(self.heads, dim=0)

    def forward(self, levels, pixel_embedding, sentence):
        b = pixel_embedding.shape[0]
        q = self.query.weight.unsqueeze(0).expand(b, -1, -1) + self.from_sentence(sentence).unsqueeze(1)
        pos = self.query_pos.weight.unsqueeze(0).expand(b, -1, -1)
        outputs = [self.predict(q, pixel_embedding)]
        for i, layer in enumerate(self.layers):
            level = levels[i % len(levels)]
            h, w = level.shape[-2:]
            memory = level.flatten(2).transpose(1, 2)
            memory_pos = (sine_position(h, w, memory.shape[-1], memory.device, memory.dtype)
                          + self.level_embed.weight[i % len(levels)]).unsqueeze(0)  # fmt: skip
            q = layer(q, pos, memory, memory_pos, self.group_mask(outputs[-1], (h, w)))
            outputs.append(self.predict(q, pixel_embedding))
        return outputs
