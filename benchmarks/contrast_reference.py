"""Two reference answers to a contrast set, written as prediction files for ``evaluate --probes``.

- ``every_defect.jsonl``: for every probe and every source sentence, the union of all of the
  image's regions, from the truth: a model that finds every defect perfectly and ignores the words.
- ``nothing.jsonl``: an empty mask for every one of them.

Both use the evaluate JSONL format (``{"probe_id" | "sent_id": key, "mask": RLE}``), so they are
scored by the same command as any model::

    python -m benchmarks.contrast_reference DATASET --probes DATASET.probes-test.jsonl --out refs/
    mvtec-ref evaluate DATASET --probes DATASET.probes-test.jsonl --pred refs/every_defect.jsonl
    mvtec-ref evaluate DATASET --probes DATASET.probes-test.jsonl --pred refs/nothing.jsonl
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def write_references(dataset: Path, probes: Path, out: Path) -> dict[str, int]:
    """Write both files into ``out``; returns the number of masks in each."""
    from mvtec_ref.dataset import open_dataset
    from mvtec_ref.fileio import dumps_json, write_text_atomic
    from mvtec_ref.probes import check_matches, load_probes
    from mvtec_ref.regions.mask import decode_rle, encode_rle

    header, items = load_probes(probes)
    data = open_dataset(dataset)
    check_matches(header, data, probes)
    keys: dict[str, list] = {}
    for probe in items:
        mine = keys.setdefault(probe["id"], [])
        if probe["sent_id"] not in mine:
            mine.append(probe["sent_id"])
        mine.append(probe["probe_id"])
    lines = {"every_defect": [], "nothing": []}
    for record in data:
        if record["id"] not in keys:
            continue
        shape = (record["height"], record["width"])
        union = np.zeros(shape, np.uint8)
        for region in record["regions"]:
            union |= decode_rle(region["segmentation"])
        masks = {"every_defect": encode_rle(union), "nothing": encode_rle(np.zeros(shape, np.uint8))}
        for key in keys[record["id"]]:
            name = "probe_id" if isinstance(key, str) else "sent_id"
            for kind, mask in masks.items():
                lines[kind].append(dumps_json({name: key, "mask": mask}, indent=None) + "\n")
    for kind, text in lines.items():
        write_text_atomic(Path(out) / f"{kind}.jsonl", "".join(text))
    return {kind: len(text) for kind, text in lines.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--probes", type=Path, required=True)
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for every_defect.jsonl and nothing.jsonl"
    )
    args = parser.parse_args()
    counts = write_references(args.dataset, args.probes, args.out)
    for kind, n in counts.items():
        print(f"wrote {n} masks to {args.out / f'{kind}.jsonl'}")


if __name__ == "__main__":
    main()
