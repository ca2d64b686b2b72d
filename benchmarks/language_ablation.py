"""``make ablation``: does the baseline read the sentence?

Trains a preset and its no-language ablation (the same model, config and seed, with every
sentence replaced by the universal prompt "anomaly") on a synthetic dataset, then prints both
on the test split (each run's best checkpoint), per kind of sentence:

- ``type (present)``: sentences naming a defect type the image has (mIoU). Every MVTec AD
  and synthetic image has one type, so the target is all of its anomalies, which is what
  "anomaly" names too: here the ablation is at no disadvantage and can only be tied.
- ``type (present or absent)``: the same with the sentences naming a type the image lacks
  (gIoU: an empty prediction for an empty target scores 1). Reading the type is this.
- ``location``: sentences that place their target (mIoU).
- ``scope=part`` / ``scope=all``: targets that are some / all of the image's anomalies (mIoU).

    python -m benchmarks.language_ablation [--preset lite] [--epochs N] [--image-size S] [--out DIR]
        [--categories a,b,...] [--per-type N] [--workers N]

Runs and the dataset are kept in ``--out``; a finished run is reused, an interrupted one resumed.

Measured on 2 CPU cores, ``--categories bottle,carpet,hazelnut,metal_nut`` (755 test sentences):

================================  ============  ===========  ============  ===========
test split                        lite          no-language  tiny          no-language
================================  ============  ===========  ============  ===========
type (present), mIoU              0.706         0.713        0.775         0.797
type (present or absent), gIoU    **0.798**     0.476        **0.838**     0.532
location, mIoU                    **0.553**     0.508        **0.605**     0.561
scope=part, mIoU                  **0.406**     0.324        **0.462**     0.363
overall, gIoU                     **0.668**     0.572        **0.707**     0.630
================================  ============  ===========  ============  ===========

lite: ``--epochs 10`` at 320, about 4.7 min an epoch, both runs on commit cc272f7; tiny: its
preset's 8 epochs at 256, on 858a441 (the no-language run on 837886e, before the spatial
prior, which gives "anomaly" a no-op anyway). lite loses 0.026 of location mIoU to sentences
its presence head rejects (10 of 156, 8 of them naming some of the image's defects, not
all).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

CATEGORIES = "bottle,cable,capsule,carpet,hazelnut,metal_nut,pill,tile"


def figures(result: dict) -> dict[str, float | None]:
    """The rows of the table from a ``test_metrics.json``."""
    by = result["by"]
    kinds, scope = by["kind"], by.get("scope", {})

    def pooled_giou(names):  # gIoU is a mean over samples, so kinds pool by their counts
        rows = [kinds[n] for n in names if n in kinds and kinds[n]["samples"]]
        total = sum(r["samples"] for r in rows)
        return sum(r["gIoU"] * r["samples"] for r in rows) / total if total else None

    def get(table, name, key):
        return table.get(name, {}).get(key)

    return {
        "type (present), mIoU": get(kinds, "type", "mIoU"),
        "type (present or absent), gIoU": pooled_giou(["type", "other_type"]),
        "location, mIoU": get(kinds, "location", "mIoU"),
        "scope=part, mIoU": get(scope, "part", "mIoU"),
        "scope=all, mIoU": get(scope, "all", "mIoU"),
        "overall, gIoU": result["overall"]["gIoU"],
    }


def table(runs: dict[str, dict]) -> str:
    names = list(runs)
    rows = list(next(iter(runs.values())))
    width = max(len(r) for r in rows)
    lines = [" ".join([" " * width, *(f"{n:>12}" for n in names)])]
    for row in rows:
        cells = [f"{'-' if runs[n][row] is None else f'{runs[n][row]:.3f}':>12}" for n in names]
        lines.append(" ".join([row.ljust(width), *cells]))
    return "\n".join(lines)


def main(argv=None) -> None:
    from baselines.dqformer.config import PRESETS
    from baselines.dqformer.train import train
    from mvtec_ref.build import BuildConfig, build_dataset
    from mvtec_ref.synth import write_synthetic_tree

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="lite", choices=sorted(PRESETS))
    parser.add_argument("--epochs", type=int, help="default: the preset's")
    parser.add_argument("--image-size", type=int, help="default: the preset's (a multiple of 32)")
    parser.add_argument("--out", type=Path, default=Path(".cache/ablation"))
    parser.add_argument("--categories", default=CATEGORIES)
    parser.add_argument("--per-type", type=int, default=12)
    parser.add_argument("--workers", type=int, help="DataLoader processes (default: the preset's)")
    args = parser.parse_args(argv)

    dataset = args.out / "dataset"
    if not (dataset / "manifest.json").is_file():
        tree = args.out / "tree"
        write_synthetic_tree(tree, categories=tuple(args.categories.split(",")), per_type=args.per_type,
                             workers=2, progress=False)  # fmt: skip
        build_dataset(tree, dataset, BuildConfig(), progress=False, workers=2)
    config = PRESETS[args.preset]()
    if args.workers is not None:
        config = config.replace(workers=args.workers)
    if args.epochs:
        config = config.replace(epochs=args.epochs)
    if args.image_size:
        config = config.replace(image_size=args.image_size)
    results = {}
    for name, no_language in ((args.preset, False), ("no-language", True)):
        run = args.out / f"{args.preset}-{'nolang' if no_language else 'lang'}"
        if not (run / "test_metrics.json").is_file():
            train(config.replace(no_language=no_language), dataset, run, resume=(run / "last.pt").is_file())
        results[name] = figures(json.loads((run / "test_metrics.json").read_text(encoding="utf-8")))
    print(
        f"{args.preset} vs its no-language ablation, test split, {config.epochs} epochs at "
        f"{config.image_size}x{config.image_size}, {dataset}"
    )
    print(table(results))


if __name__ == "__main__":
    main()
