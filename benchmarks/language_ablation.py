"""``make ablation``: does the baseline read the sentence? Issue 23's protocol, and its table.

1. A synthetic MVTec AD tree (``--categories``, ``--per-type``, seed 0) is built into a dataset;
   its test split gets a contrast set (``mvtec_ref.probes``: each sentence with one claim edited).
2. For each seed (``--seeds``, default 0,1,2) the preset (default ``tiny``, on the CPU) and its
   no-language ablation (the same config and seed, every sentence replaced by "anomaly") are
   trained on the same commit. Model selection happens inside ``train`` on the val split only.
3. Each run's selected checkpoint (``best.pt``) then reads the test split once: every test
   sentence (``RefSegMetrics``) and every probe (``ContrastMetrics``), in one pass.
4. The table gives mean +- sample standard deviation over the seeds, per model, and the target:

   - part-scope mIoU (targets that are some of the image's defects): at least 0.15 above the ablation;
   - probes whose correct answer is empty, answered empty: >= 80% for type swaps, >= 60% for
     location swaps;
   - universal-prompt mIoU: no more than 0.02 below the ablation;
   - probe sensitivity (mean 1 - IoU between a probe's mask and its source's, over probes whose
     target moved): "well above the ablation's", read here as at least twice it and 0.10 more.

   Beside them, unjudged: part-scope sentences' mask IoU with every region of the image (near 1
   when the model segments every defect whatever the sentence says), location-scope mIoU,
   gIoU and N-acc.

   Targets compare means; the spread is printed beside them, and each seed's figures are in
   ``ablation.json``.

Resumable: everything lives under ``--out/<commit>-<preset>-<categories>-<per-type>``, plus
``-e<epochs>`` and ``-set<hash>`` when those are given, one folder per run; a scored run is
reused, an interrupted one resumed from its ``last.pt``. A dirty working tree is named
``<commit>-dirty`` and said so. ``--jobs 2`` trains two runs at once (one CPU thread each).
Training and scoring use the GPU when there is one (``make gpu-check`` runs this protocol at
``lite`` size); ``--set field=value`` changes a preset's field for every run (a smoke run's sizes),
named in the runs' folder and the table's header.

    python -m benchmarks.language_ablation [--preset tiny] [--seeds 0,1,2] [--categories a,b]
        [--per-type N] [--epochs N] [--jobs N] [--out DIR] [--set field=value ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CATEGORIES = "carpet,hazelnut"
PER_TYPE = 24

# (row, where the figure lives, what it must meet: (kind, number))
ROWS = (
    ("part-scope mIoU", ("test", "scope", "part", "mIoU"), ("above_by", 0.15)),
    ("type swap: empty answered empty", ("probes", "type", "empty_answered_empty"), ("at_least", 0.80)),
    ("location swap: empty answered empty", ("probes", "location", "empty_answered_empty"),
     ("at_least", 0.60)),
    ("universal-prompt mIoU", ("test", "expression", "universal", "mIoU"), ("below_by_at_most", 0.02)),
    ("probe sensitivity (moved)", ("probes", "overall", "sensitivity_moved"), ("well_above", (2.0, 0.10))),
    ("probe sensitivity (same)", ("probes", "overall", "sensitivity_same"), None),
    ("part-scope: mask IoU with every region", ("part_scope", "overall", "iou_every_region"), None),
    ("location-scope mIoU", ("test", "kind", "location", "mIoU"), None),
    ("overall gIoU", ("test", "overall", None, "gIoU"), None),
    ("no-target N-acc", ("test", "overall", None, "N-acc"), None),
)  # fmt: skip


def commit_name(repo: Path) -> str:
    """Short HEAD commit, with ``-dirty`` when tracked files differ from it."""
    from baselines.dqformer.train import code_commit

    commit = code_commit(repo)
    if commit is None:
        raise SystemExit(f"{repo}: not a git checkout; name the code with --commit")
    return commit


def prepare(out: Path, categories: str, per_type: int) -> tuple[Path, Path]:
    """(dataset, probes file of its test split), built once under ``out``."""
    from mvtec_ref.build import BuildConfig, build_dataset
    from mvtec_ref.probes import build_probes, default_path, save_probes
    from mvtec_ref.synth import write_synthetic_tree

    dataset = out / "dataset"
    if not (dataset / "manifest.json").is_file():
        tree = out / "tree"
        if not (tree / "SYNTHETIC.json").is_file():
            write_synthetic_tree(tree, categories=tuple(categories.split(",")), per_type=per_type, seed=0,
                                 workers=2, progress=False)  # fmt: skip
        build_dataset(tree, dataset, BuildConfig(), progress=False, workers=2)
    probes = default_path(dataset, "test")
    if not probes.is_file():
        header, items = build_probes(dataset, split="test", seed=0, progress=False)
        save_probes(header, items, probes)
    return dataset, probes


def score_run(run: Path, dataset: Path, probes_path: Path, split: str = "test") -> dict:
    """The selected checkpoint on ``split``, read once: sentences and probes together. The
    protocol reads test; design choices are compared with ``split="val"`` and val's probes."""
    import torch

    from baselines.dqformer.data import open_split
    from baselines.dqformer.infer import load_run, score_split
    from mvtec_ref.probes import check_matches, load_probes

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, config, tokenizer = load_run(run, checkpoint="best", device=device)
    data = open_split(dataset, split, config, tokenizer)
    header, probes = load_probes(probes_path)
    check_matches(header, dataset, probes_path)
    if header.get("split") != split:
        raise SystemExit(f"{probes_path}: probes of split {header.get('split')!r}, not {split!r}")
    result = score_split(model, data, probes, device=device)
    return {"test": result["sentences"], "probes": result["probes"],
            "part_scope": {"overall": result["part_scope"]}}  # fmt: skip


def figure(scores: dict, where: tuple) -> float | None:
    """One figure of a run's scores; None where the run was scored before that figure existed."""
    part = scores.get(where[0])
    if part is None:
        return None
    if where[0] == "test":
        table = part["overall"] if where[1] == "overall" else part["by"].get(where[1], {}).get(where[2], {})
        return table.get(where[3])
    table = part["overall"] if where[1] == "overall" else part["by_edit"].get(where[1], {})
    return table.get(where[2])


def verdict(rule, lang: list[float], ablation: list[float]) -> str:
    if rule is None or not lang or not ablation:
        return ""
    kind, value = rule
    a, b = statistics.mean(lang), statistics.mean(ablation)
    # shares are said as percentages, differences between them in points
    if kind == "above_by":
        ok, text = a - b >= value, f">= ablation + {100 * value:g} points"
    elif kind == "at_least":
        ok, text = a >= value, f">= {100 * value:g}%"
    elif kind == "below_by_at_most":
        ok, text = b - a <= value, f">= ablation - {100 * value:g} points"
    else:  # well_above: (times, plus)
        ok = a >= value[0] * b and a - b >= value[1]
        text = f">= {value[0]:g} x ablation and + {100 * value[1]:g} points"
    return f"{'met' if ok else 'NOT met'} ({text})"


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f}% +- {100 * sd:.1f}"


def table(results: dict, preset: str) -> str:
    """Rows of ``ROWS``: the preset and its ablation (mean +- sd over seeds) and the target's verdict."""
    lines = [f"{'':38} {preset:>16} {'no-language':>16}  target"]
    for name, where, rule in ROWS:
        cols = []
        for mode in ("lang", "nolang"):
            values = [figure(s, where) for s in results[mode].values()]
            cols.append([v for v in values if v is not None])
        lines.append(f"{name:38} {spread(cols[0]):>16} {spread(cols[1]):>16}  {verdict(rule, *cols)}")
    return "\n".join(lines)


def run_one(name: str, args, base: Path, dataset: Path, probes: Path, commit: str) -> dict:
    """Train (or resume) one run, then score it once; its ``scores.json`` is the record."""
    from baselines.dqformer.config import PRESETS
    from baselines.dqformer.train import train
    from mvtec_ref.fileio import dumps_json, write_text_atomic

    run = base / name
    done = run / "scores.json"
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))
    mode, seed = name.split("-")[1], int(name.split("-s")[-1])
    config = PRESETS[args.preset]().replace(**overrides(args.set), seed=seed, no_language=mode == "nolang")
    if args.epochs:
        config = config.replace(epochs=args.epochs)
    train(config, dataset, run, resume=(run / "last.pt").is_file(), progress=False, test_split=None)
    scores = {"commit": commit, "seed": seed, "mode": mode, "config": config.as_record(),
              **score_run(run, dataset, probes)}  # fmt: skip
    write_text_atomic(done, dumps_json(scores))
    return scores


def overrides(pairs: list[str]) -> dict:
    """``["dim=32", "freeze_text=true"]`` -> config fields, each cast to its default's type."""
    import dataclasses

    from baselines.dqformer.config import DQFormerConfig

    types = {f.name: type(f.default) for f in dataclasses.fields(DQFormerConfig)}
    out = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in types or not value:
            raise SystemExit(f"--set {pair}: expected field=value with a DQFormerConfig field")
        kind = types[name]
        out[name] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return out


def run_folder(out: Path, commit: str, preset: str, categories: str, per_type: int, epochs: int | None,
               sets: list[str]) -> Path:  # fmt: skip
    """The protocol's folder: one per commit, preset, dataset, schedule and changed fields, so that
    a run is reused only by the protocol that trained it (no ``--epochs``: the preset's, the name
    of earlier folders)."""
    changed = f"-set{hashlib.sha1(' '.join(sorted(sets)).encode()).hexdigest()[:8]}" if sets else ""
    length = f"-e{epochs}" if epochs else ""
    return out / f"{commit}-{preset}-{categories.replace(',', '+')}-{per_type}{length}{changed}"


def main(argv=None) -> dict:
    from baselines.dqformer.config import PRESETS
    from mvtec_ref.fileio import dumps_json, write_text_atomic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--categories", default=CATEGORIES)
    parser.add_argument("--per-type", type=int, default=PER_TYPE)
    parser.add_argument("--epochs", type=int, help="default: the preset's")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once (each its own process)")
    parser.add_argument("--out", type=Path, default=Path(".cache/ablation"))
    parser.add_argument("--commit", help="name of the code's commit (default: git HEAD of this checkout)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="change a preset field for every run (repeatable)")  # fmt: skip
    parser.add_argument("--run", help=argparse.SUPPRESS)  # one run, in a --jobs child process
    args = parser.parse_args(argv)
    overrides(args.set)  # refuse a bad one before any work

    commit = args.commit or commit_name(Path(__file__).resolve().parents[1])
    base = run_folder(args.out, commit, args.preset, args.categories, args.per_type, args.epochs, args.set)
    base.mkdir(parents=True, exist_ok=True)
    dataset, probes = prepare(base, args.categories, args.per_type)
    seeds = [int(s) for s in args.seeds.split(",")]
    names = [f"{args.preset}-{mode}-s{seed}" for seed in seeds for mode in ("lang", "nolang")]
    if args.run:
        run_one(args.run, args, base, dataset, probes, commit)
        return
    if args.jobs > 1:
        passed = [a for a in (argv if argv is not None else sys.argv[1:])]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        todo = [n for n in names if not (base / n / "scores.json").is_file()]
        running: list[subprocess.Popen] = []
        for name in todo:
            while len(running) >= args.jobs:  # start the next run as soon as any one ends
                time.sleep(5)
                running = [p for p in running if p.poll() is None]
            log = (base / f"{name}.log").open("w")
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.language_ablation",
                *passed,
                "--commit",
                commit,
                "--run",
                name,
            ]
            running.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
        for p in running:
            p.wait()
        failed = [n for n in todo if not (base / n / "scores.json").is_file()]
        if failed:
            raise SystemExit(f"runs failed: {', '.join(failed)} (see {base}/<run>.log); rerun to resume")
    results: dict = {"lang": {}, "nolang": {}}
    for name in names:
        scores = run_one(name, args, base, dataset, probes, commit)
        results[scores["mode"]][scores["seed"]] = scores
    commits = sorted({s["commit"] for mode in results.values() for s in mode.values()})
    header = (
        f"{args.preset} vs its no-language ablation, test split of {dataset} (read once per run, "
        f"after selection on val); seeds {','.join(map(str, seeds))}; commit {', '.join(commits)}; "
        f"mean +- sd over seeds" + (f"; fields changed: {', '.join(sorted(args.set))}" if args.set else "")
    )
    text = header + "\n" + table(results, args.preset)
    if any(c.endswith("-dirty") for c in commits):
        text += "\n(warning: trained from a working tree with uncommitted changes)"
    print(text)
    runs = {mode: {str(seed): {name: figure(scores, where) for name, where, _ in ROWS}
                   for seed, scores in by_seed.items()} for mode, by_seed in results.items()}  # fmt: skip
    summary = {"commit": commits, "seeds": seeds, "preset": args.preset, "dataset": str(dataset),
               "categories": args.categories, "per_type": args.per_type, "table": text,
               "runs": runs}  # fmt: skip
    write_text_atomic(base / "ablation.json", dumps_json(summary))
    return summary


if __name__ == "__main__":
    main()
