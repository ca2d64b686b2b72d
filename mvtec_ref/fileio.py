"""Atomic writes: readers see either the previous complete file/directory or the new one."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mvtec_ref.errors import OutputError


def dumps_json(obj, *, indent: int | None = 2) -> str:
    """Stable JSON text: fixed separators, no NaN, UTF-8 kept as is, trailing newline."""
    if indent is None:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, indent=indent) + "\n"


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8, newlines as given) through a temp file in the same folder, fsync, rename."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are shared like open() would
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def staged_directory(out: Path, *, marker: str) -> Iterator[Path]:
    """Yield an empty staging folder next to ``out``; on success it replaces ``out``.

    If the body raises (or the process is killed), ``out`` is untouched: the staging
    folder is removed on exceptions and swept up by the next run after a kill.
    ``out`` may be absent, empty, or a previous output (it must contain ``marker``);
    anything else is refused so that a typo cannot replace an unrelated folder.
    """
    out = Path(out).absolute()
    if out.exists():
        if not out.is_dir():
            raise OutputError(f"{out}: exists and is not a directory; choose another --out")
        if any(out.iterdir()) and not (out / marker).is_file():
            raise OutputError(
                f"{out}: folder is not empty and holds no {marker}; refusing to replace it "
                "(choose a new or empty --out)"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    _recover_interrupted_swap(out)
    for stale in out.parent.glob(f".{out.name}.staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    os.chmod(stage, 0o777 & ~_umask())  # mkdtemp makes 0700; the output is an ordinary folder
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    _fsync_dir(stage)
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.staging-old-{os.getpid()}"
        os.replace(out, old)
    os.replace(stage, out)
    _fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _recover_interrupted_swap(out: Path) -> None:
    """A kill between the two renames leaves the previous output under a ``-old-`` name."""
    if out.exists():
        return
    olds = sorted(out.parent.glob(f".{out.name}.staging-old-*"))
    if olds:
        os.replace(olds[-1], out)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
