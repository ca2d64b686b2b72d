"""``TorchDataset``: (image, sentence, mask) for every sentence of a split, for any
referring-segmentation model (torch is imported here only)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from mvtec_ref.api import Split, resize_pair


class TorchDataset(Dataset):
    """Item ``i`` is sentence ``i`` of ``split`` (every sentence, no-target ones included):

    - ``image``: ``(3, H, W)`` float32 in [0, 1] (RGB);
    - ``sentence``: the text;
    - ``mask``: ``(H, W)`` uint8 {0, 1}, the target (all zero when the sentence names nothing).

    ``size=None`` keeps each image's own size, as the exports do (batch with ``batch_size=1`` or
    your own collate); ``size=S`` resizes to ``S x S`` with ``resize_pair`` (image: area/bilinear,
    mask: nearest neighbour), so the default collate batches them. ``split.sentences[i]`` has the
    ids (``sent_id`` for ``mvtec-ref evaluate``).
    """

    def __init__(self, split: Split, size: int | None = None) -> None:
        if size is not None and size < 1:
            raise ValueError(f"size must be a positive number of pixels, not {size}")
        self.split, self.size = split, size
        self.sentences = split.sentences

    def __len__(self) -> int:
        return len(self.sentences)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str, torch.Tensor]:
        sentence = self.sentences[index]
        image, mask = sentence.image(), sentence.mask()
        if self.size is not None:
            image, mask = resize_pair(image, mask, self.size)
        pixels = torch.from_numpy(image).permute(2, 0, 1).float().div_(255)
        return pixels, sentence.text, torch.from_numpy(mask)
