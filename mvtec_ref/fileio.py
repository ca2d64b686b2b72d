"""The one writer: every output of every command goes through here.

Rules (README, "What each command may replace, and what it never touches"):

- Folders (``staged_directory``) are written into a staging folder beside ``--out`` and renamed
  into place on success; an existing folder is replaced only when its ``OWNED`` record says the
  same command wrote every entry in it.
- Single files (``check_output_file`` then ``write_text_atomic``) go through a temp file and a
  rename; an existing file is replaced only when it is the toolkit's own file of that kind
  (recognised by its ``format`` marker) or with ``--force``, and never when it is one of the
  command's inputs.
- Appended files (``append_line``) get whole lines: one ``write`` under an exclusive lock, the
  file cut back to its old size when the write falls short (a full disk), and a torn last line
  (a kill, a power cut) closed with a newline before the next line, so it stays a line of its
  own that readers skip and report.
- Leftovers of a killed run (staging folders, temp files) carry the writer's process id in
  their name, ``.<name>.staging-<pid>-<random>`` and ``.<name>.tmp-<pid>-<random>``; they are
  found by comparing names (never a glob built from a user's path) and removed only once that
  process is gone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent)
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


# -- single files ------------------------------------------------------------------------------

# The ``format`` value each kind of single-file output carries (top-level key of a JSON file,
# or of the header line of a JSON Lines file): what proves a file is the toolkit's to replace.
FORMATS = {
    "stats": "mvtec-ref-stats",
    "metrics": "mvtec-ref-metrics",
    "contrast-metrics": "mvtec-ref-contrast-metrics",
    "probes": "mvtec-ref-probes",
    "shard": "mvtec-ref-shard/1",
}
_MARKER_READ = 64 << 20  # a marker is looked for in at most this many bytes


def check_output_file(
    out: Path, *, kind: str, inputs: Iterable[Path] = (), force: bool = False, flag: str = "--out"
) -> None:
    """OutputError unless the single file ``out`` may be written now.

    Never, even with ``force``: ``out`` is a folder, or is or lies inside one of ``inputs``
    (the files and folders the command reads). Otherwise an existing file is replaced only when
    it carries ``FORMATS[kind]`` (an earlier output of the same kind) or with ``force``. When it
    may be written, the temp files that killed writes of ``out`` left are removed.
    """
    out = Path(out)
    check_not_input(out, inputs, flag=flag)
    if out.is_dir():
        raise OutputError(f"{out}: {flag} is a folder; give a file name")
    owner = _owning_output(out)
    if owner is not None and out.exists():
        raise OutputError(
            f"{out}: is part of the mvtec-ref output {owner} (listed in its {OWNED}); refusing to replace "
            f"it, even with --force (choose another {flag})"
        )
    replaceable = not out.exists() or force or (out.is_file() and out.stat().st_size == 0)
    if not replaceable and (not out.is_file() or format_of(out) != FORMATS[kind]):
        raise OutputError(
            f"{out}: exists and is not a {kind} file written by mvtec-ref; refusing to replace it "
            f"(choose another {flag}, or pass --force to replace it)"
        )
    if out.parent.is_dir():
        sweep_leftovers(out)


def _owning_output(path: Path) -> Path | None:
    """The toolkit output folder whose ``OWNED`` record lists ``path``, if any (a file of a dataset,
    an export...: replacing it alone would leave that output half of another)."""
    path = Path(path).absolute()
    for folder in list(path.parents)[:8]:
        record = _read_owned(folder) if (folder / OWNED).is_file() else None
        if record is not None and path.relative_to(folder).as_posix() in record["entries"]:
            return folder
    return None


def check_not_input(out: Path, inputs: Iterable[Path], *, flag: str = "--out") -> None:
    """OutputError when ``out`` is one of ``inputs`` or lies inside one of them."""
    target = Path(out).expanduser().resolve()
    given = [(g, Path(g).expanduser().resolve()) for g in inputs if g is not None]
    for name, source in given:
        if source == target:
            raise OutputError(f"{out}: {flag} is {name}, which this command reads; choose another {flag}")
    for name, source in given:
        if source in target.parents:
            raise OutputError(
                f"{out}: {flag} lies inside {name}, which this command reads; choose a {flag} outside it"
            )


def format_of(path: Path) -> str | None:
    """The ``format`` marker of a JSON file or of a JSON Lines file's first line; None if none."""
    try:
        with open(path, "rb") as f:
            head = f.read(_MARKER_READ)
    except OSError:
        return None
    for text in (head, head.split(b"\n", 1)[0]):
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict) and isinstance(value.get("format"), str):
            return value["format"]
    return None


def write_json_output(out: Path, kind: str, data: dict) -> None:
    """Write ``data`` as the JSON file ``out`` of ``kind``, marked (``format`` first) so that a later
    run knows it may replace it. Call ``check_output_file`` before the work that makes ``data``."""
    write_text_atomic(out, dumps_json({"format": FORMATS[kind], **data}))


# -- appended files --------------------------------------------------------------------------


def check_append_file(
    path: Path, *, what: str, ours: Callable[[object], bool], inputs: Iterable[Path] = (), flag: str
) -> None:
    """OutputError unless lines may be appended to ``path``: it is not an input, not a folder, and
    absent, empty, or a file whose first line ``ours`` recognises (a ``what`` file)."""
    path = Path(path)
    check_not_input(path, inputs, flag=flag)
    if path.is_dir():
        raise OutputError(f"{path}: {flag} is a folder; give a file name")
    if not path.exists():
        return
    if not path.is_file():
        raise OutputError(f"{path}: {flag} is not a regular file; choose another {flag}")
    try:
        with open(path, "rb") as f:
            first = f.readline(_MARKER_READ)
    except OSError as error:
        raise OutputError(f"{path}: cannot read ({error.strerror})") from None
    if not first.strip():
        return
    try:
        value = json.loads(first)
    except (ValueError, RecursionError):
        value = None
    if not ours(value):
        raise OutputError(
            f"{path}: exists and is not a {what} written by mvtec-ref; refusing to append to it "
            f"(choose another {flag})"
        )


def append_line(path: Path, line: str) -> None:
    """Append ``line`` (no newline inside) as one whole line, fsynced.

    One ``write`` under an exclusive ``flock``, so writers on one file interleave whole lines. A
    short write (a full disk) is undone by cutting the file back to its size before, and the
    error raised; a last line left torn by a kill is first closed with a newline, so it stays a
    line of its own (readers skip and report it) and never swallows this one.
    """
    import fcntl

    if "\n" in line:
        raise ValueError("append_line: a line must not hold a newline")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (line + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, f"wrote {written} of {len(data)} bytes", str(path))
            os.fsync(fd)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise OSError(error.errno, error.strerror, str(path)) from None
    finally:
        os.close(fd)  # closing releases the lock


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
    sweep_leftovers(out)
    stage = make_staging(out)
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
        old = out.parent / f".{out.name}{_STAGING}old-{os.getpid()}"
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
    if out.exists() or out.is_symlink():
        return
    olds = sorted(path for path, pid, old in leftovers(out, _STAGING) if old and not _alive(pid))
    if olds:
        os.replace(olds[-1], out)


# Suffixes of the leftovers' names: ``.<name>.staging-<pid>-<8 random>`` (a folder being
# written), ``.<name>.staging-old-<pid>`` (the previous output between the two renames),
# ``.<name>.tmp-<pid>-<8 random>`` (a file being written). Versions before these carried no
# pid (``.<name>.staging-<8 random>``): such a leftover counts as a dead process's.
_STAGING, _TMP = ".staging-", ".tmp-"
_LEFTOVER = re.compile(r"(?:(old-)(\d+)|(\d+)-[a-z0-9_]{8}|()[a-z0-9_]{8})")


def leftovers(out: Path, kind: str = _STAGING) -> list[tuple[Path, int | None, bool]]:
    """``(path, pid or None, is_old)`` of every leftover named for ``out`` in its parent folder.

    Names are compared as strings, so a ``--out`` holding ``*``, ``?`` or ``[`` matches only
    its own leftovers (a glob built from it would match other folders' too)."""
    out = Path(out).absolute()
    prefix = f".{out.name}{kind}"
    found = []
    try:
        names = os.listdir(out.parent)
    except OSError:
        return []
    for name in names:
        if not name.startswith(prefix):
            continue
        match = _LEFTOVER.fullmatch(name[len(prefix) :])
        if match is None:
            continue
        old, old_pid, pid, _ = match.groups()
        number = old_pid or pid
        found.append((out.parent / name, int(number) if number else None, old is not None))
    return found


def sweep_leftovers(out: Path) -> None:
    """Remove the staging folders and temp files that killed runs left for ``out`` (those of a
    process still running are left alone). A previous output under its ``-old-`` name goes only
    once ``out`` exists: a kill after the second rename left it half deleted; before that rename,
    ``_recover_interrupted_swap`` puts it back first."""
    out = Path(out).absolute()
    for kind in (_STAGING, _TMP):
        for path, pid, old in leftovers(out, kind):
            if _alive(pid) or (old and not (out.exists() or out.is_symlink())):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.unlink()


def make_staging(out: Path) -> Path:
    """An empty folder beside ``out``, named for this process (``sweep_leftovers`` finds it)."""
    out = Path(out).absolute()
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}{_STAGING}{os.getpid()}-", dir=out.parent))
    os.chmod(stage, 0o777 & ~_umask())  # mkdtemp makes 0700; the output is an ordinary folder
    return stage


def _alive(pid: int | None) -> bool:
    """Whether process ``pid`` may still be writing (this process counts as alive; a zombie, killed
    but not yet reaped by its parent, does not)."""
    if pid is None:
        return False
    if pid == os.getpid():
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        state = None  # no /proc (macOS) or no such process: ask the kernel below
    if state in ("Z", "X"):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


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
