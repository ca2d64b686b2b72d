"""Mask group transformer decoder with exactly two queries: background (0) and anomaly (1).

The queries start from learned embeddings plus a projection of the sentence. Each layer
does masked cross-attention to one pixel level (strides 32, 16, 8 in turn): a query attends
only to the group of pixels its current mask assigns to it (the argmax of the two masks),
or to every pixel when its group is empty; then self-attention between the two queries and
an FFN. A mask is predicted before the first layer and after each one (deep supervision):
``mask_embed(query) . pixel_embedding``, ``(B, 2, H/4, W/4)`` logits, plus on the anomaly
channel the sentence's spatial prior when one is given (``SpatialPrior``).

These are the raw masks: where the presence logit computed from each (``presence.py``) says
absent, the model caps the anomaly channel with it; and the query groups follow the raw
masks, so the anomaly query keeps looking at the candidate region even when the sentence
names something absent.
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


class SpatialPrior(nn.Module):
    """Which of the image's defects the sentence can mean, by where they are: ``(B, 1, g, g)``
    log-weights (<= 0) over a ``g x g`` grid of the image, added to the anomaly logits (upsampled).

    A bag of words over token ids: each token adds its own ``g x g`` map to a bias, and
    ``strength * logsigmoid`` of the sum is the prior. ``fit`` trains it, before the masks, as a
    per-cell logistic regression on the training sentences: in each cell, the share of the
    image's anomaly area that the sentence's target covers, weighted by that area (``where``
    in ``data.py``). So it learns P(the target is here | a defect is here, words), and
    never where defects are: "anomaly" and plain type sentences (whose target is every defect)
    get ~0 everywhere, and the no-language ablation a no-op; "the crack near the top" drops
    the cells where only lower defects were meant.

    Why: location words reached the masks only through pixel-word attention, and the tiny
    preset's masks ignored them (test location mIoU 0.536 against 0.561 for the ablation that
    reads "anomaly" for every sentence). Learned through the mask losses, a prior from the
    sentence embedding gave one map for all sentences; one fitted to where targets lie (a
    distribution over cells) also learned where each type of defect was seen in training, and
    lowered type sentences' masks elsewhere (type mIoU 0.78 -> 0.65 at the strength that helped
    location). Fitted to the selection among defects, on the same checkpoint: location mIoU
    0.536 -> 0.591, type 0.780 -> 0.772 (``prior_strength`` 5; 10 gave 0.610 and 0.747).
    Trained with it end to end, tiny and lite beat their no-language ablations on location
    (``benchmarks/language_ablation.py`` has the table).
    """

    def __init__(self, vocabulary: int, grid: int, strength: float) -> None:
        super().__init__()
        self.grid = grid
        self.strength = strength
        self.word = nn.Embedding(vocabulary, grid * grid)
        nn.init.zeros_(self.word.weight)
        self.bias = nn.Parameter(torch.full((grid * grid,), 4.0))  # sigmoid 0.98: near a no-op unfitted

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # per cell, the logit of "the target covers this cell's defect"
        cells = self.bias + (self.word(input_ids) * attention_mask[..., None].to(self.bias.dtype)).sum(1)
        return (self.strength * F.logsigmoid(cells)).view(-1, 1, self.grid, self.grid)

    def fit(self, input_ids, attention_mask, share, weight, *, steps: int, lr: float, l2: float, seed: int):
        """Adam on the weighted per-cell BCE against ``share (N, g, g)`` with ``weight (N, g, g)``,
        64 random sentences a step (a fixed generator: same data => same maps), plus ``l2`` times
        the mean squared norm of their tokens' maps. Returns the last step's loss."""
        share, weight = share.flatten(1).float(), weight.flatten(1).float()
        # Only the tokens in the data get gradients: fit their rows (Adam leaves the others as
        # they are anyway), 30x faster than the whole vocabulary's table. Words enter as counts
        # times the table (a matmul): an indexed lookup's backward adds rows in a thread-dependent
        # order, and two fits of the same data differed.
        used, compact = torch.unique(input_ids, return_inverse=True)
        # Copies, written back at the end: fitting the module's own bias left a .grad on it that
        # the training step's clip_grad_norm_ counted (and a resumed run, which skips the fit, did
        # not), so --resume drifted from the uninterrupted run.
        table = nn.Parameter(self.word.weight.detach()[used].clone())
        bias = nn.Parameter(self.bias.detach().clone())
        optimizer = torch.optim.Adam([table, bias], lr=lr)
        generator = torch.Generator().manual_seed(seed)
        loss = torch.zeros(())
        for _ in range(steps):
            pick = torch.randint(len(share), (64,), generator=generator)
            tokens = F.one_hot(compact[pick], len(used)).float()  # (64, L, U)
            counts = (tokens * attention_mask[pick, :, None].float()).sum(1)
            cells = bias + counts @ table
            bce = F.binary_cross_entropy_with_logits(cells, share[pick], reduction="none")
            loss = (bce * weight[pick]).sum() / weight[pick].sum().clamp(min=1e-9)
            norms = tokens.sum(1) @ table.pow(2).sum(-1) / tokens.shape[1]  # each position's squared norm
            optimizer.zero_grad()
            (loss + l2 * norms.mean()).backward()
            optimizer.step()
        with torch.no_grad():
            self.word.weight[used] = table
            self.bias.copy_(bias)
        return loss.detach()


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
    """``forward(levels, pixel_embedding, sentence, prior=None)`` -> list of ``(B, 2, H/4, W/4)``
    mask logits, one per prediction (0 = from the initial queries, last = the output).

    levels: ``[(B, D, H/32, W/32), (B, D, H/16, W/16), (B, D, H/8, W/8)]``;
    pixel_embedding ``(B, D, H/4, W/4)``; sentence ``(B, D)``; prior ``(B, 1, g, g)`` or None,
    added to the anomaly channel of every prediction (so the query groups follow it too).
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

    def predict(self, q, pixel_embedding, prior=None):
        """``(B, 2, h, w)`` mask logits from the queries (and the prior, upsampled to h x w)."""
        masks = torch.einsum("bqd,bdhw->bqhw", self.mask_embed(self.norm(q)), pixel_embedding)
        if prior is None:
            return masks
        return torch.cat([masks[:, :1], masks[:, 1:] + prior.to(masks.dtype)], dim=1)

    def group_mask(self, logits, size) -> torch.Tensor:
        """``(B * heads, 2, h * w)`` bool, True = may not attend: pixels of the other group."""
        with torch.no_grad():
            small = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)
            label = small.argmax(1).flatten(1)  # (B, hw)
            blocked = torch.stack([label != k for k in (BACKGROUND, ANOMALY)], dim=1)  # (B, 2, hw)
            blocked[blocked.all(-1)] = False  # an empty group attends everywhere
        return blocked.repeat_interleave(self.heads, dim=0)

    def forward(self, levels, pixel_embedding, sentence, prior=None):
        b = pixel_embedding.shape[0]
        if prior is not None:
            size = pixel_embedding.shape[-2:]
            prior = F.interpolate(prior, size=size, mode="bilinear", align_corners=False)
        q = self.query.weight.unsqueeze(0).expand(b, -1, -1) + self.from_sentence(sentence).unsqueeze(1)
        pos = self.query_pos.weight.unsqueeze(0).expand(b, -1, -1)
        outputs = [self.predict(q, pixel_embedding, prior)]
        for i, layer in enumerate(self.layers):
            level = levels[i % len(levels)]
            h, w = level.shape[-2:]
            memory = level.flatten(2).transpose(1, 2)
            memory_pos = (sine_position(h, w, memory.shape[-1], memory.device, memory.dtype)
                          + self.level_embed.weight[i % len(levels)]).unsqueeze(0)  # fmt: skip
            q = layer(q, pos, memory, memory_pos, self.group_mask(outputs[-1], (h, w)))
            outputs.append(self.predict(q, pixel_embedding, prior))
        return outputs
