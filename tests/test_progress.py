"""One progress bar for every long step (mvtec_ref.progress): shown on a terminal, never when piped.

Each command runs twice: with stderr on a pseudo-terminal, where the bar must appear, and with
stderr piped, where nothing of it may appear.
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import textwrap

import pytest

from mvtec_ref.progress import progress_bar

BAR = "%|"  # tqdm's bar: "validate: 100%|██████| 118/118 [...]"


def _run(args: list[str], *, terminal: bool, cwd=None) -> tuple[int, str]:
    """Run ``python ARGS`` with stderr on a pseudo-terminal (``terminal``) or a pipe; (rc, stderr)."""
    env = {**os.environ, "COLUMNS": "120", "PYTHONUNBUFFERED": "1"}
    if not terminal:
        done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd)
        return done.returncode, done.stderr
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a 120-column terminal
    process = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.DEVNULL, stderr=follower, env=env, cwd=cwd
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the other end closed: the process is done
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return process.wait(timeout=300), b"".join(chunks).decode("utf-8", "replace")


def test_the_helper_decides_from_the_terminal(capsys):
    assert progress_bar(range(3), progress=None, desc="x").disable  # pytest's stderr is no terminal
    assert progress_bar(range(3), progress=False, desc="x").disable
    shown = progress_bar(range(3), progress=True, desc="x")
    assert not shown.disable
    shown.close()


@pytest.mark.parametrize(
    "command",
    [
        ["validate", "{dataset}", "--deep"],
        ["stats", "{dataset}"],
        ["evaluate", "{dataset}", "--pred", "{empty}", "--allow-missing"],
        ["report", "{dataset}", "--out", "{tmp}/report"],
        ["export", "{dataset}", "--format", "jsonl", "--out", "{tmp}/export"],
        ["probes", "{dataset}", "--out", "{tmp}/probes.jsonl"],
    ],
    ids=lambda c: c[0],
)
def test_long_commands_show_a_bar_on_a_terminal_only(synth_dataset, tmp_path, command):
    (tmp_path / "empty").mkdir()
    values = {"dataset": synth_dataset, "empty": tmp_path / "empty", "tmp": tmp_path}
    args = ["-m", "mvtec_ref", *(part.format(**values) for part in command)]
    rc, on_terminal = _run(args, terminal=True)
    assert rc == 0, on_terminal
    assert BAR in on_terminal, on_terminal[-2000:]
    for path in ("report", "export", "probes.jsonl"):  # the second run writes the same outputs anew
        target = tmp_path / path
        if target.is_dir():
            import shutil

            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    rc, piped = _run(args, terminal=False)
    assert rc == 0, piped
    assert BAR not in piped and "\r" not in piped, piped[-2000:]
    quiet = (
        _run([*args, "--quiet"], terminal=True) if command[0] in ("validate", "stats", "evaluate") else None
    )
    if quiet is not None:
        assert quiet[0] == 0 and BAR not in quiet[1]


def test_model_scoring_shows_its_bar_on_a_terminal_and_a_slow_step_ticks(tmp_path):
    """``iter_masks`` (predict --dataset, each epoch's validation, the final test scoring) with the
    CLI's default ``progress=None``; and a bar with ``tick`` redraws while its first step runs."""
    script = tmp_path / "score.py"
    script.write_text(
        textwrap.dedent(
            """
            import time
            import torch
            from baselines.dqformer.infer import iter_masks
            from mvtec_ref.progress import progress_bar

            class Model(torch.nn.Module):
                def forward(self, image, text, image_index=None):
                    return torch.zeros(len(image_index), 2, 4, 4), None

            class Data:  # two images, three sentences, as baselines.dqformer.data gives them
                by_record, items = [[0, 1], [2]], ["a", "b", "c"]
                records = [{"height": 8, "width": 8}, {"height": 8, "width": 8}]

                def __len__(self):
                    return 3

                def inputs(self, r, chunk):
                    return {"image": torch.zeros(1, 3, 4, 4),
                            "input_ids": torch.zeros(len(chunk), 3, dtype=torch.long),
                            "attention_mask": torch.ones(len(chunk), 3, dtype=torch.long)}

            masks = list(iter_masks(Model(), Data(), device=torch.device("cpu"), desc="predict"))
            assert len(masks) == 3
            with progress_bar(total=2, desc="epoch 1/1", progress=None, tick=0.1) as bar:
                time.sleep(1.0)  # a slow first step
                bar.update(2)
            """
        )
    )
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rc, on_terminal = _run([str(script)], terminal=True, cwd=repo)
    assert rc == 0, on_terminal
    assert "predict: 100%|" in on_terminal
    epoch = on_terminal[on_terminal.index("epoch 1/1") :]
    assert epoch.count("\r") >= 5  # redrawn while no step ended (about every 0.1 s for 1 s)
    rc, piped = _run([str(script)], terminal=False, cwd=repo)
    assert rc == 0 and BAR not in piped, piped


def test_training_shows_every_long_step_on_a_terminal(tmp_path):
    """train-baseline: the frozen text encoder's features, each epoch, its validation and the final
    test scoring each draw a bar on a terminal (the same helper stays silent when piped, above)."""
    tree, dataset = tmp_path / "tree", tmp_path / "dataset"
    for args in (
        ["synth", "--out", str(tree), "--category", "carpet", "--per-type", "2", "--quiet"],
        ["build", "--root", str(tree), "--out", str(dataset), "--quiet"],
    ):
        assert _run(["-m", "mvtec_ref", *args], terminal=False)[0] == 0
    small = ["--preset", "tiny", "--image-size", "64", "--batch-size", "2", "--sentences-per-image", "2",
             "--epochs", "1", "--workers", "0", "--warmup-steps", "2",
             "--max-eval-sentences", "12"]  # fmt: skip
    rc, on_terminal = _run(
        ["-m", "mvtec_ref", "train-baseline", str(dataset), "--out", str(tmp_path / "run"), *small],
        terminal=True,
    )
    assert rc == 0, on_terminal[-3000:]
    for bar in ("text features: 100%|", "epoch 1/1: 100%|", "val 1/1: 100%|", "test: 100%|"):
        assert bar in on_terminal, (bar, on_terminal[-3000:])


def test_build_and_merge_show_their_last_steps_on_a_terminal(synth_tree, tmp_path):
    """After the per-image bar, build checks every sentence and writes every record; merge first
    reads its shards (profiled on 118 synthetic images: 0.35 s reading, 0.36 s checking and
    writing, so several seconds at MVTec AD's 5,354): each step has its bar, none when piped."""
    shards = [tmp_path / f"s{k}.jsonl" for k in (1, 2)]
    for k, shard in enumerate(shards, start=1):
        args = [
            "build",
            "--root",
            str(synth_tree),
            "--category",
            "bottle",
            "--out",
            str(shard),
            "--shard",
            f"{k}/2",
        ]
        assert _run(["-m", "mvtec_ref", *args, "--quiet"], terminal=False)[0] == 0
    build = ["-m", "mvtec_ref", "build", "--root", str(synth_tree), "--category", "bottle", "--out"]
    merge = ["-m", "mvtec_ref", "merge", *map(str, shards), "--out"]
    for args, bars in ((build, ("build: 100%|", "check: 100%|", "write: 100%|")),
                       (merge, ("read shards: 100%|", "check: 100%|", "write: 100%|"))):  # fmt: skip
        rc, on_terminal = _run([*args, str(tmp_path / f"{args[3]}-tty")], terminal=True)
        assert rc == 0, on_terminal[-2000:]
        for bar in bars:
            assert bar in on_terminal, (bar, on_terminal[-2000:])
        rc, piped = _run([*args, str(tmp_path / f"{args[3]}-piped")], terminal=False)
        assert rc == 0 and BAR not in piped, piped[-2000:]
        rc, quiet = _run([*args, str(tmp_path / f"{args[3]}-quiet"), "--quiet"], terminal=True)
        assert rc == 0 and BAR not in quiet, quiet[-2000:]
