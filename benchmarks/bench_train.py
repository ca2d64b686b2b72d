"""``make bench-train``: training and inference throughput of the DQFormer baseline.

On CUDA: training images/s, inference images/s and peak GPU memory for the ``lite`` and a
``paper``-sized model (random init: Swin-B + BERT-base shapes, no download) at 480x480,
batch 8, AMP on. Without CUDA: CPU seconds per training step for ``tiny`` and ``lite`` at
320x320 (the preset's batch), and inference images/s. Random inputs; median of the timed
steps after warm-up steps. Prints a table; nothing is written.

    python -m benchmarks.bench_train [--device cpu|cuda] [--size N] [--steps N] [--models a,b]
"""

from __future__ import annotations

import argparse
import statistics
import time


def bench(preset: str, *, device, size: int, batch: int | None, steps: int, warmup: int) -> dict:
    import torch

    from baselines.dqformer.config import PRESETS
    from baselines.dqformer.model import build_dqformer
    from baselines.dqformer.train import param_groups

    config = PRESETS[preset]().replace(image_size=size, **({"batch_size": batch} if batch else {}))
    random_init = preset == "paper"
    config = config.replace(backbone_pretrained=not random_init, text_pretrained=not random_init)
    torch.manual_seed(0)
    model = build_dqformer(config).to(device).train()
    n_images, k = config.batch_size, config.sentences_per_image
    images = torch.rand(n_images, 3, size, size, device=device)
    b = n_images * k
    text = {
        "input_ids": torch.randint(1000, 3000, (b, config.max_tokens), device=device),
        "attention_mask": torch.ones(b, config.max_tokens, dtype=torch.long, device=device),
    }
    targets = (torch.rand(b, size, size, device=device) > 0.99).long()
    index = torch.arange(n_images, device=device).repeat_interleave(k) if k > 1 else None
    optimizer = torch.optim.AdamW(param_groups(model, config), lr=1e-5)
    cuda = device.type == "cuda"
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else _null()

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def train_step():
        with amp:
            _, losses = model(images, text, targets, index)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()

    times = []
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for i in range(warmup + steps):
        sync()
        t = time.perf_counter()
        train_step()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    train_peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    step = statistics.median(times)
    model.eval()
    infer = []
    with torch.no_grad():
        for i in range(warmup + steps):
            sync()
            t = time.perf_counter()
            with amp:
                model(images, text, image_index=index)
            sync()
            if i >= warmup:
                infer.append(time.perf_counter() - t)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return {
        "model": preset + (" (random init)" if random_init else ""),
        "size": size,
        "images/step": n_images,
        "sentences/step": b,
        "params_M": params,
        "train_s/step": step,
        "train_sent/s": b / step,
        "infer_sent/s": b / statistics.median(infer),
        "peak_GiB": train_peak,
    }


def _null():
    import contextlib

    return contextlib.nullcontext()


def main(argv=None) -> None:
    import os

    import torch

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int)
    parser.add_argument("--batch", type=int, help="images per step (default: 8 on CUDA, the preset's on CPU)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--models", help="comma-separated presets")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    size = args.size or (480 if cuda else 320)
    batch = args.batch or (8 if cuda else None)
    models = (args.models or ("lite,paper" if cuda else "tiny,lite")).split(",")
    where = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"DQFormer training benchmark on {where}; torch {torch.__version__}; AMP {'bf16' if cuda else 'off'}"
    )
    rows = [
        bench(m, device=device, size=size, batch=batch, steps=args.steps, warmup=args.warmup) for m in models
    ]
    keys = list(rows[0])
    print("  ".join(f"{k:>14}" for k in keys))
    for row in rows:
        cells = []
        for k in keys:
            v = row[k]
            cells.append(f"{v:>14.2f}" if isinstance(v, float) else f"{'-' if v is None else v:>14}")
        print("  ".join(cells))


if __name__ == "__main__":
    main()
