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


# Every folder ``staged_directory`` writes holds this record of its own entries; a folder is
# replaced only when it holds nothing else, so a user's files beside ours are never deleted.
OWNED = ".mvtec-ref-owned.json"


def check_replaceable(out: Path, *, marker: str) -> None:
    """Raise OutputError unless ``out`` is absent, empty, or provably a previous output of ours.

    Provably ours: it holds ``OWNED`` written for the same ``marker`` (the same command), and
    every entry below it is one that record lists. A marker file alone proves nothing.
    """
    out = Path(out).absolute()
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise OutputError(f"{out}: exists and is not a directory; choose another --out")
    if not any(out.iterdir()):
        return
    record = _read_owned(out)
    if record is None:
        what = f"holds {marker} but no {OWNED}" if (out / marker).exists() else "is not empty"
        raise OutputError(
            f"{out}: folder {what}, so mvtec-ref cannot tell its files from yours; refusing to "
            "replace it (choose a new or empty --out, or move the folder aside)"
        )
    if record.get("marker") != marker:
        raise OutputError(
            f"{out}: folder was written by another mvtec-ref command (its marker is "
            f"{record.get('marker')!r}, not {marker!r}); refusing to replace it (choose another --out)"
        )
    ours = {e for e in record["entries"] if isinstance(e, str)}
    extra = set(list_entries(out)) - ours - {OWNED}
    # A foreign folder is named once, not with each file inside it.
    foreign = sorted(e for e in extra if not any(p.as_posix() in extra for p in Path(e).parents))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise OutputError(
            f"{out}: folder holds {len(foreign)} entries mvtec-ref did not write ({shown}); "
            "refusing to replace it (move them out, or choose another --out)"
        )


def list_entries(folder: Path) -> list[str]:
    """Every file, folder and link below ``folder`` as sorted POSIX paths; links are not followed."""
    folder = Path(folder)
    found = []
    for parent, dirs, files in os.walk(folder, onerror=_raise):
        rel = Path(parent).relative_to(folder)
        found += [(rel / name).as_posix() for name in (*dirs, *files)]
    return sorted(found)


def check_apart(
    given: Path, out: Path, *, given_flag: str, out_flag: str = "--out", inside_ok: bool = False
) -> None:
    """OutputError when ``out`` is ``given`` or holds it (replacing ``out`` would delete the
    input), or lies inside it unless ``inside_ok`` (a build would read its own output back as
    source; a command that reads only named files from ``given`` may write inside it)."""
    a, b = Path(given).expanduser().resolve(), Path(out).expanduser().resolve()
    if a == b or b in a.parents or (a in b.parents and not inside_ok):
        where = "is" if a == b else "lies inside" if a in b.parents else "holds"
        raise OutputError(f"{out}: {out_flag} {where} {given_flag} {given}; choose an {out_flag} outside it")


@contextlib.contextmanager
def staged_directory(out: Path, *, marker: str) -> Iterator[Path]:
    """Yield an empty staging folder next to ``out``; on success it replaces ``out``.

    If the body raises (or the process is killed), ``out`` is untouched: the staging
    folder is removed on exceptions and swept up by the next run after a kill.
    ``out`` may be absent, empty, or a previous output of the same command holding only
    the entries its ``OWNED`` record lists (see ``check_replaceable``); anything else is
    refused so that neither a typo nor a user's file beside ours is ever deleted.
    """
    out = Path(out).absolute()
    check_replaceable(out, marker=marker)
    out.parent.mkdir(parents=True, exist_ok=True)
    _recover_interrupted_swap(out)
    for stale in out.parent.glob(f".{out.name}.staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    os.chmod(stage, 0o777 & ~_umask())  # mkdtemp makes 0700; the output is an ordinary folder
    try:
        yield stage
        entries = list_entries(stage)
        write_text_atomic(stage / OWNED, dumps_json({"marker": marker, "entries": entries}))
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    _fsync_dir(stage)
    old = None
    if out.exists():
        check_replaceable(out, marker=marker)  # the user may have added files meanwhile
        old = out.parent / f".{out.name}.staging-old-{os.getpid()}"
        os.replace(out, old)
    os.replace(stage, out)
    _fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _read_owned(out: Path) -> dict | None:
    try:
        record = json.loads((out / OWNED).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("entries"), list) else None


def _raise(error: OSError) -> None:
    raise OutputError(f"{error.filename}: cannot list ({error.strerror}); refusing to replace it")


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
