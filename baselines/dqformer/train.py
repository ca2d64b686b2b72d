"""``train(config, dataset, out)``: the training loop, readable top to bottom, in five parts:
data (``load_data``), model (``build_trainer``), step (``train_step``), evaluation
(``evaluate_epoch``, on ``config.eval_split``, never test) and checkpoint (``save_state`` /
``load_state``).

Run folder ``out``:
  config.json      the frozen config (DQFormerConfig.as_record())
  environment.json what else the figures depend on: the code's commit, Python, the device and the
                   libraries' versions; one entry per start and per resume (``environment``)
  tokenizer/       the text encoder's tokenizer, so predict needs no hub
  metrics.jsonl    one line per epoch: train loss, lr, val scores (RefSegMetrics.compute()) and
                   ``language``: the language curves (diagnose.py) on a fixed train subset and on val;
                   ``focus``: whether the epoch was a focus epoch (config.focus_fraction);
                   ``wrong``: whether it trained with a wrong-answer term (config.wrong_start);
                   ``swaps``: val's type and location swaps answered empty (diagnose.py)
  language.png     those curves, redrawn after every epoch, the focus epochs shaded and the
                   start of the wrong-answer terms marked
  last.pt, best.pt checkpoints (best = highest val gIoU), each written atomically
  test_metrics.json  the best checkpoint scored on the test split (metrics schema)

Distributed: launched by ``torchrun`` (WORLD_SIZE > 1) every process trains on its own slice of
each batch-sized step (DDP, NCCL on GPU, gloo on CPU); rank 0 evaluates and writes files.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from baselines.dqformer.config import DQFormerConfig
from mvtec_ref.errors import TrainingError
from mvtec_ref.fileio import dumps_json, write_bytes_atomic, write_text_atomic

log = logging.getLogger(__name__)

BEST_METRIC = "gIoU"


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed():
    """(Dist, device). Under torchrun the process group is initialised here."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), torch.device("cuda" if torch.cuda.is_available() else "cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        dist.init_process_group("nccl")
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank), device


def lr_factor(step: int, total: int, config: DQFormerConfig) -> float:
    """Linear warm-up to 1 over ``warmup_steps``, then poly decay ``(1 - t)^power`` to 0 at ``total``."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    t = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    return max(0.0, 1 - t) ** config.poly_power


def param_groups(model, config: DQFormerConfig) -> list[dict]:
    """Backbone and text encoder at reduced lr (the same warm-up and decay); no weight decay on
    norms, biases and embeddings."""
    import torch

    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    groups: dict[tuple[str, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            decay = p.ndim > 1 and id(p) not in embeddings
            groups.setdefault((name.split(".")[0], decay), []).append(p)
    mult = {"backbone": config.backbone_lr_mult, "text_encoder": config.text_lr_mult}
    return [
        {"params": ps, "lr_mult": mult.get(part, 1.0), "weight_decay": config.weight_decay * decay}
        for (part, decay), ps in sorted(groups.items())
    ]


def _rng_state() -> dict:
    import torch

    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save through a temp file + rename: a kill leaves the previous file whole."""
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes_atomic(path, buffer.getvalue())


# What a run writes before its first checkpoint; a folder holding only these is a run that
# died before it saved anything, and a fresh run may start over in it.
_BEFORE_FIRST_CHECKPOINT = {"config.json", "environment.json", "tokenizer", "metrics.jsonl"}
# The libraries a run's figures depend on. The install asks for lower bounds only, so two fresh
# machines can resolve different releases: tiny's seed 0 on the protocol's dataset ended at val gIoU
# 82.6% in the documented run and 78.5% on a fresh machine, its training code unchanged in between.
ENVIRONMENT_PACKAGES = ("torch", "transformers", "tokenizers", "numpy", "opencv-python-headless", "pillow",
                        "scikit-image", "pycocotools", "efficientnet_lite_pytorch", "mvtec-ref")  # fmt: skip


def code_commit(repo: Path) -> str | None:
    """The HEAD (short, 10) of the checkout whose top folder is ``repo``, ``-dirty`` when tracked files
    differ; None when ``repo`` is not such a top (an installed copy inside someone else's repository
    would otherwise be named by that repository's commit)."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != Path(repo).resolve():
            return None
        head = git("rev-parse", "--short=10", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}-dirty" if dirty else head


def cpu_name() -> str | None:
    """The CPU's model name (Linux: ``/proc/cpuinfo``; elsewhere what ``platform`` knows, or None)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or None


def environment(step: int, device) -> dict:
    """One ``environment.json`` entry: the step it (re)started at, the code's commit, Python, the
    platform, the device, the CPU and the kernels torch picked for it, torch's CPU threads and the
    versions of ``ENVIRONMENT_PACKAGES``. The kernels matter: AVX2 and AVX-512 round differently,
    and a CPU run's figures follow its first steps' rounding."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import torch

    versions = {}
    for name in ENVIRONMENT_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    cpu = cpu_name()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    commit = code_commit(Path(__file__).resolve().parents[2])  # the checkout holding baselines/
    return {"step": step, "commit": commit, "python": platform.python_version(),
            "platform": platform.platform(), "device": device.type, "device_name": name,
            "cpu": cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(), "packages": versions}  # fmt: skip


def record_environment(out: Path, step: int, device) -> None:
    """Append this start's entry to ``out/environment.json`` (a list; a resume adds one)."""
    path = out / "environment.json"
    entries = []
    if step > 0 and path.is_file():
        try:
            entries = json.loads(path.read_text())
        except (OSError, ValueError) as error:  # the run's own file, damaged: a new list, not a failed resume
            log.warning("%s: unreadable (%s); it restarts with this resume's entry", path, error)
            entries = []
        entries = entries if isinstance(entries, list) else []
    write_text_atomic(path, dumps_json([*entries, environment(step, device)]))


def check_config(config: DQFormerConfig) -> None:
    """Refuse settings that cannot train, before any data or weights are loaded: every field in
    its ``config.RANGES``, plus what ties fields together, and local model paths that exist."""
    from baselines.dqformer.config import RANGES, describe_range, in_range

    for name in RANGES:
        value = getattr(config, name)
        if not in_range(name, value):
            raise TrainingError(f"--{name.replace('_', '-')} {value}: must be {describe_range(name)}")
    if config.dim % config.heads:
        raise TrainingError(
            f"--dim {config.dim} --heads {config.heads}: dim must be a multiple of heads (attention splits "
            "dim into heads equal parts), e.g. --dim 128 --heads 4"
        )
    if config.image_size % 32:
        raise TrainingError(
            f"--image-size {config.image_size}: must be a positive multiple of 32 (the backbone "
            "downsamples by 32), e.g. 256, 320 or 480"
        )
    if config.ce_weight == 0 and config.dice_weight == 0:
        raise TrainingError("--ce-weight 0 --dice-weight 0: with no loss term nothing is learnt")
    for flag, name, offline in (("--backbone", config.backbone, "efficientnet-lite0"),
                                ("--text-encoder", config.text_encoder, "minilm")):  # fmt: skip
        if name != offline and _names_a_path(name) and not Path(name).expanduser().is_dir():
            raise TrainingError(
                f"{flag} {name}: no such folder; give a local model folder (config.json + weights) or a "
                "hub name such as microsoft/swin-base-patch4-window12-384"
            )


def _names_a_path(name: str) -> bool:
    """Whether a model name can only be a local path (a hub name is ``org/model`` or ``model``)."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or name.endswith("/") or "\\" in name


def _prepare_run(out: Path, resume: bool) -> None:
    from mvtec_ref.fileio import sweep_leftovers

    if out.is_dir():  # a kill while a checkpoint was written leaves its temp file: not a run's file
        for name in (*_BEFORE_FIRST_CHECKPOINT, "last.pt", "best.pt", "test_metrics.json"):
            sweep_leftovers(out / name)
    never_saved = (
        out.is_dir()
        and not (out / "last.pt").exists()
        and (out / "config.json").exists()
        and {p.name for p in out.iterdir()} <= _BEFORE_FIRST_CHECKPOINT
    )
    if resume:
        if not (out / "last.pt").is_file():
            hint = " (the run stopped before its first checkpoint: start it again without --resume)"
            raise TrainingError(f"{out / 'last.pt'}: nothing to resume{hint if never_saved else ''}")
        return
    if never_saved:
        log.warning("%s: a run that stopped before its first checkpoint; starting over", out)
        for name in _BEFORE_FIRST_CHECKPOINT:
            path = out / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        return
    if (out / "last.pt").exists() or (out / "config.json").exists():
        raise TrainingError(
            f"{out}: already holds a run; pass --resume to continue it or choose another --out"
        )
    if out.exists() and any(out.iterdir()):
        raise TrainingError(f"{out}: folder is not empty; choose a new or empty --out")


def load_resume_config(out: Path, overrides: dict | None = None) -> DQFormerConfig:
    """The config a run was started with; only ``epochs`` may change on resume."""
    path = Path(out) / "config.json"
    try:
        config = DQFormerConfig.from_record(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise TrainingError(f"{path}: not found; start without --resume") from None
    except (json.JSONDecodeError, ValueError, TypeError) as error:
        raise TrainingError(f"{path}: unreadable run config ({error})") from None
    changed = {k: v for k, v in (overrides or {}).items() if getattr(config, k) != v}
    if set(changed) - {"epochs"}:
        raise TrainingError(
            f"{path}: --resume continues the saved config; these options differ: "
            f"{', '.join(sorted(set(changed) - {'epochs'}))} (only --epochs may change)"
        )
    return config.replace(**changed)


@dataclass
class TrainData:
    """The data part: training units, the model-selection split (rank 0 only), the schedule."""

    tokenizer: object
    units: object  # data.TrainGroups
    val: object  # data.RefSegDataset of config.eval_split, or None off rank 0
    steps_per_epoch: int
    total_steps: int
    curves: dict = field(default_factory=dict)  # split -> record indices of the language curves
    probes: list = field(default_factory=list)  # the eval split's swap probes (diagnose.swap_probes)


def load_data(config: DQFormerConfig, dataset: Path, dist: Dist) -> TrainData:
    from baselines.dqformer.backbone import load_tokenizer
    from baselines.dqformer.data import TrainGroups, open_split

    tokenizer = load_tokenizer(config.text_encoder, pretrained=config.text_pretrained)
    units = TrainGroups(open_split(dataset, "train", config, tokenizer, training=True),
                        config.sentences_per_image, config.good_per_epoch,
                        composite_share=config.composite_share,
                        multi_region_share=config.multi_region_share)  # fmt: skip
    val = open_split(dataset, config.eval_split, config, tokenizer) if dist.main else None
    steps_per_epoch = len(units) // (config.batch_size * dist.world)
    if steps_per_epoch == 0:
        raise TrainingError(
            f"{getattr(dataset, 'path', dataset)}: {len(units)} training images fill no batch of "
            f"{config.batch_size} x {dist.world} processes; lower --batch-size"
        )
    curves, probes = {}, []
    if dist.main and config.curve_images > 0:
        from baselines.dqformer.diagnose import curve_records

        curves = {"train": curve_records(units.dataset, config.curve_images),
                  config.eval_split: curve_records(val, config.curve_images)}  # fmt: skip
    if dist.main and config.swap_probes > 0 and not config.no_language:  # no words: every probe is "anomaly"
        from baselines.dqformer.diagnose import swap_probes

        probes = swap_probes(dataset, config.eval_split, config.swap_probes)
    return TrainData(tokenizer, units, val, steps_per_epoch, steps_per_epoch * config.epochs, curves, probes)


@dataclass
class Trainer:
    """The model part: what a step changes and a checkpoint saves."""

    model: object  # DQFormer
    net: object  # the model, or its DDP wrapper
    optimizer: object
    scaler: object
    trained: list  # the parameters the optimizer steps (clipped together)
    device: object
    amp: bool


def build_trainer(
    config: DQFormerConfig, data: TrainData, device, dist: Dist, hf_configs=None,
    progress: bool | None = False,
) -> Trainer:  # fmt: skip
    """``hf_configs``: transformers configs for the backbone and text encoder (random init; see
    ``build_dqformer``), else the config's named parts. ``progress``: a bar while a frozen text
    encoder reads every sentence."""
    import torch

    from baselines.dqformer.model import build_dqformer

    model = build_dqformer(config, hf_configs=hf_configs).to(device)
    training = data.units.dataset.tokenize(data.units.dataset.texts())
    model.text_encoder.prefill(**training, progress=progress)  # a frozen encoder reads every sentence once
    if data.val is not None:
        model.text_encoder.prefill(**data.val.tokenize(data.val.texts()), progress=progress)
    model.text_encoder.fit_whitening(**training)  # a resumed run then loads the checkpoint's
    optimizer = torch.optim.AdamW(param_groups(model, config), lr=config.lr)
    # Clip over what the optimizer steps: a stray .grad on a frozen part cannot move the norm.
    trained = [p for group in optimizer.param_groups for p in group["params"]]
    amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp and not torch.cuda.is_bf16_supported())
    net = model
    if dist.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    return Trainer(model, net, optimizer, scaler, trained, device, amp)


@dataclass
class RunState:
    """Where the run is; saved in every checkpoint, so --resume continues exactly."""

    step: int = 0
    history: list = field(default_factory=list)  # one metrics line per finished epoch
    best: float = -math.inf  # best BEST_METRIC on the eval split so far
    running: list = field(default_factory=lambda: [0.0, 0])  # loss sum and steps this epoch


def train_step(
    trainer: Trainer,
    batch: dict,
    config: DQFormerConfig,
    factor: float,
    dist: Dist,
    wrong: float | None = None,
):
    """One optimisation step on a collated batch at lr ``config.lr * factor`` (``wrong``: the scale
    of the wrong-answer terms, as the model's ``mask_losses``). Returns
    ``(loss, stepped)``: stepped is False, and nothing changed, when the loss is not finite on
    some process."""
    import torch
    import torch.distributed as tdist

    from baselines.dqformer.infer import autocast_for

    for group in trainer.optimizer.param_groups:
        group["lr"] = config.lr * group["lr_mult"] * factor
    device = trainer.device
    images = batch["image"].to(device, non_blocking=True)
    targets = batch["target"].to(device, non_blocking=True)
    text = {k: batch[k].to(device) for k in ("input_ids", "attention_mask")}
    with autocast_for(device, enabled=trainer.amp):
        index = batch["image_index"].to(device)
        defects = batch["defects"].to(device) if config.other_weight > 0 and "defects" in batch else None
        _, losses = trainer.net(images, text, targets, index, wrong, defects)
    loss = losses["loss"]
    finite = torch.isfinite(loss.detach()).float()
    if dist.world > 1:
        tdist.all_reduce(finite, op=tdist.ReduceOp.MIN)
    if finite.item() == 0:
        return loss.item(), False
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.scaler.scale(loss).backward()
    trainer.scaler.unscale_(trainer.optimizer)
    torch.nn.utils.clip_grad_norm_(trainer.trained, config.grad_clip)
    trainer.scaler.step(trainer.optimizer)
    trainer.scaler.update()
    return loss.item(), True


def epoch_loader(config: DQFormerConfig, data: TrainData, epoch: int, step: int, dist: Dist, device):
    """The DataLoader of this process's batches of ``epoch``, from global ``step`` on."""
    import torch

    from baselines.dqformer.data import collate_groups, epoch_batches

    batches = epoch_batches(
        len(data.units), config.batch_size, seed=config.seed, epoch=epoch, rank=dist.rank, world=dist.world
    )[step - epoch * data.steps_per_epoch :]
    return torch.utils.data.DataLoader(
        data.units, batch_sampler=batches, num_workers=config.workers, collate_fn=collate_groups,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(config.seed + epoch),  # keeps the global RNG untouched
    )  # fmt: skip


def evaluate_epoch(
    trainer: Trainer, data: TrainData, config: DQFormerConfig, state: RunState, epoch: int, progress=None
):
    """Score the eval split (rank 0) and draw the language curves, append the metrics line; True
    when it is the best so far."""
    from baselines.dqformer.diagnose import language_figures, swap_figures
    from baselines.dqformer.infer import score_split

    desc = f"{config.eval_split} {epoch + 1}/{config.epochs}"
    result = score_split(trainer.model, data.val, data.probes, device=trainer.device,
                         limit=config.max_eval_sentences, progress=progress, desc=desc)  # fmt: skip
    scores = result["sentences"]
    splits = {"train": data.units.dataset, config.eval_split: data.val}
    language = {split: language_figures(trainer.model, splits[split], records, device=trainer.device)
                for split, records in data.curves.items()}  # fmt: skip
    state.history.append({
        "epoch": epoch + 1, "step": state.step, "train_loss": state.running[0] / max(1, state.running[1]),
        "lr": config.lr * lr_factor(state.step - 1, data.total_steps, config), "split": config.eval_split,
        **scores, "language": language, "focus": epoch < data.units.dataset.focus_epochs,
        "wrong": epoch >= config.wrong_epochs and config.empty_weight + config.other_weight > 0,
        "swaps": swap_figures(result["probes"]) if data.probes else {},
    })  # fmt: skip
    score = scores["overall"][BEST_METRIC]
    if score is None or score <= state.best:
        return False
    state.best = score
    return True


def save_state(path: Path, trainer: Trainer, config: DQFormerConfig, state: RunState, epoch_done: int,
               dist: Dist) -> None:  # fmt: skip
    """Checkpoint: weights, optimizer, scaler, run state and every process's RNG state."""
    import torch.distributed as tdist

    from baselines.dqformer.model import hf_configs_of

    rng = [None] * dist.world
    if dist.world > 1:
        tdist.all_gather_object(rng, _rng_state())
    else:
        rng = [_rng_state()]
    if dist.main:
        save_checkpoint(path, {
            "model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict(),
            "scaler": trainer.scaler.state_dict(), "config": config.as_record(),
            "hf_configs": hf_configs_of(trainer.model), "step": state.step, "epoch": epoch_done,
            "history": state.history, "best": state.best, "rng": rng, "running": state.running,
        })  # fmt: skip


def load_state(out: Path, trainer: Trainer, dist: Dist) -> RunState:
    """Restore ``out/last.pt`` into the trainer and this process's RNGs."""
    import torch

    path = out / "last.pt"
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
        trainer.model.load_state_dict(saved["model"])
        trainer.optimizer.load_state_dict(saved["optimizer"])
        trainer.scaler.load_state_dict(saved["scaler"])
        _set_rng_state(saved["rng"][dist.rank] if dist.rank < len(saved["rng"]) else saved["rng"][0])
        return RunState(saved["step"], saved["history"], saved["best"], saved["running"])
    except Exception as error:  # noqa: BLE001 - truncated, damaged or foreign: one line, the file named
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise TrainingError(
            f"{path}: not a readable checkpoint of this run ({reason}); copy back a good last.pt, or start "
            "again without --resume in a new --out"
        ) from None


def start_run(out: Path, config: DQFormerConfig, tokenizer, dist: Dist) -> RunState:
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "config.json", dumps_json(config.as_record()))
        tokenizer.save_pretrained(str(out / "tokenizer"))
    return RunState()


def train(
    config: DQFormerConfig,
    dataset: Path,
    out: Path,
    *,
    resume: bool = False,
    progress: bool | None = None,
    checkpoint_every: int = 0,
    stop_after: int = 0,
    test_split: str | None = "test",
) -> dict:
    """Train, evaluate each epoch on ``config.eval_split``, keep best/last; score the best
    checkpoint on ``test_split`` once at the end; returns the last metrics line.

    ``checkpoint_every``: also write last.pt every N steps (exact mid-epoch resume).
    ``stop_after``: stop after N steps in total as if killed (after any checkpoint of that step).
    """
    import torch
    import torch.distributed as tdist

    from mvtec_ref.dataset import as_dataset
    from mvtec_ref.progress import progress_bar

    out = Path(out)
    check_config(config)
    dataset = as_dataset(dataset)  # opened and checked once; every split below is read from it
    for split, flag in ((config.eval_split, "--eval-split"), (test_split, "--test-split")):
        if split and not dataset.split(split):
            raise TrainingError(f"{flag} {split}: {dataset.path} has no image in that split")
    dist, device = setup_distributed()
    if dist.main:
        _prepare_run(out, resume)
    torch.manual_seed(config.seed + dist.rank)
    np.random.seed(config.seed + dist.rank)
    random.seed(config.seed + dist.rank)

    data = load_data(config, dataset, dist)
    trainer = build_trainer(config, data, device, dist, progress=progress if dist.main else False)
    state = load_state(out, trainer, dist) if resume else start_run(out, config, data.tokenizer, dist)
    if dist.main:
        record_environment(out, state.step, device)
    show = progress if dist.main else False  # None: a bar on a terminal (rank 0 only)
    trainer.net.train()
    for epoch in range(state.step // data.steps_per_epoch, config.epochs):
        loader = epoch_loader(config, data, epoch, state.step, dist, device)
        # tick: the first step (workers starting, the model warming up) can take a minute
        bar = progress_bar(loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="step", progress=show,
                           tick=1.0) if dist.main else loader  # fmt: skip
        wrong = 1.0 if epoch >= config.wrong_epochs else 0.0  # the wrong-answer terms start late
        for batch in bar:
            factor = lr_factor(state.step, data.total_steps, config)
            loss, stepped = train_step(trainer, batch, config, factor, dist, wrong)
            if not stepped:
                kept = f"the last good checkpoint {out / 'last.pt'} is kept" if (out / "last.pt").exists() \
                    else "no checkpoint was written yet"  # fmt: skip
                raise TrainingError(
                    f"{out}: loss is {loss} at step {state.step + 1} (epoch {epoch + 1}); stopped, {kept}. "
                    "Lower --lr or raise --warmup-steps, then --resume"
                )
            state.step += 1
            state.running[0] += loss
            state.running[1] += 1
            if dist.main and hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{config.lr * factor:.2e}")
            if checkpoint_every and state.step % checkpoint_every == 0 and state.step % data.steps_per_epoch:
                save_state(out / "last.pt", trainer, config, state, epoch, dist)
            if stop_after and state.step >= stop_after:
                return {"stopped_at_step": state.step}
        is_best = evaluate_epoch(trainer, data, config, state, epoch, show) if dist.main else False
        state.running = [0.0, 0]
        if dist.world > 1:
            flag = [is_best]
            tdist.broadcast_object_list(flag, src=0)
            is_best = flag[0]
        save_state(out / "last.pt", trainer, config, state, epoch + 1, dist)
        if is_best:
            save_state(out / "best.pt", trainer, config, state, epoch + 1, dist)
        if dist.main:
            lines = "".join(dumps_json(h, indent=None) + "\n" for h in state.history)
            write_text_atomic(out / "metrics.jsonl", lines)
            _draw_curves(state.history, out / "language.png")
    if dist.main and test_split:
        _score_best(out, dataset, test_split, device, progress=show)
    if dist.world > 1:
        tdist.barrier()
        tdist.destroy_process_group()
    return state.history[-1] if state.history else {}


def _draw_curves(history: list, path: Path) -> None:
    """language.png from the metrics lines; a missing matplotlib costs the picture, not the run."""
    from baselines.dqformer.diagnose import plot_language

    try:
        plot_language(history, path)
    except ImportError:
        log.warning("%s: not drawn, matplotlib is not installed (pip install matplotlib)", path)


def _score_best(out: Path, dataset: Path, split: str, device, progress) -> None:
    from baselines.dqformer.data import open_split
    from baselines.dqformer.infer import evaluate_model, load_run
    from mvtec_ref.schema import schema_errors

    model, config, tokenizer = load_run(out, checkpoint="best" if (out / "best.pt").exists() else "last",
                                        device=device)  # fmt: skip
    data = open_split(dataset, split, config, tokenizer)
    result = {
        "dataset": data.manifest["name"], "split": split, "predictions": str(out / "best.pt"),
        "missing_scored_as_empty": 0, "resolution": "original mask resolution",
        **evaluate_model(model, data, device=device, progress=progress, desc=split),
    }  # fmt: skip
    errors = schema_errors("metrics", result)
    if errors:
        raise TrainingError(f"{out / 'test_metrics.json'}: result fails the metrics schema: {errors[0]}")
    write_text_atomic(out / "test_metrics.json", dumps_json(result))
