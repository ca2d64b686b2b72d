"""``mvtec-ref download NAME``: fetch a dataset's official archive, verify it, extract it safely.

The archive goes to ``CACHE/NAME/<file>`` through ``<file>.part``: an interrupted download
resumes with an HTTP Range request; the finished file is checked against the recorded size
(when known) and SHA-256 before it takes its final name, and a mismatch deletes it. Extraction
refuses, before writing anything, archives with absolute paths, ``..`` components, links
(symbolic or hard) or special files, then unpacks into a staging folder beside the target and
renames it into place, so nothing is ever written outside the target and an interrupted run
leaves no half-extracted tree. ``--from FILE`` verifies and extracts an archive the user already
has. URLs and checksums are anomalib's (see ``shared/reference/datasets-and-formats.md``).
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mvtec_ref.errors import MvtecRefError

CHUNK = 1 << 20
# No archive we know of unpacks to more; a larger declared total is a decompression bomb or a
# wrong file. The free space at the target is checked too.
MAX_EXTRACTED_BYTES = 1 << 41  # 2 TiB


class DownloadError(MvtecRefError):
    pass


@dataclass(frozen=True)
class Archive:
    url: str
    sha256: str
    size: int | None = None  # bytes, when recorded
    licence: str = ""
    page: str = ""  # where a person gets it by hand

    @property
    def filename(self) -> str:
        return PurePosixPath(self.url.split("?")[0]).name


ARCHIVES = {
    "mvtec_ad": Archive(
        "https://www.mydrive.ch/shares/150996/b52ecdcbf521176e9db9c731f2304b27/download/420938113-1629960298/"
        "mvtec_anomaly_detection.tar.xz",
        "cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d",
        licence="CC BY-NC-SA 4.0",
        page="https://www.mvtec.com/company/research/datasets/mvtec-ad",
    ),
    "visa": Archive(
        "https://amazon-visual-anomaly.s3.us-west-2.amazonaws.com/VisA_20220922.tar",
        "2eb8690c803ab37de0324772964100169ec8ba1fa3f7e94291c9ca673f40f362",
        licence="CC BY 4.0",
        page="https://github.com/amazon-science/spot-diff",
    ),
    "mvtec_loco": Archive(
        "https://www.mydrive.ch/shares/48237/1b9106ccdfbb09a0c414bd49fe44a14a/download/430647091-1646842701/"
        "mvtec_loco_anomaly_detection.tar.xz",
        "9e7c84dba550fd2e59d8e9e231c929c45ba737b6b6a6d3814100f54d63aae687",
        licence="CC BY-NC-SA 4.0",
        page="https://www.mvtec.com/company/research/datasets/mvtec-loco",
    ),
    "mvtec_ad2": Archive(
        "https://www.mydrive.ch/shares/121573/7f68fe2c4f7c2ceaa08f463aaeb2f414/download/466712769-1743422799/"
        "mvtec_ad_2.tar.gz",
        "c0ded99ef32bfc8e352d52beb44515e5b292b8598cb963aadfa91ca0763505e4",
        licence="CC BY-NC-SA 4.0",
        page="https://www.mvtec.com/company/research/datasets/mvtec-ad-2",
    ),
    "btad": Archive(
        "https://avires.dimi.uniud.it/papers/btad/btad.zip",
        "461c9387e515bfed41ecaae07c50cf6b10def647b36c9e31d239ab2736b10d2a",
        licence="CC BY-SA (the dataset's README)",
        page="https://github.com/pankajmishra000/VT-ADL",
    ),
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(archive: Archive, cache: Path, *, timeout: float = 30.0, progress=None) -> Path:
    """The verified archive in ``cache`` (downloaded, or resumed from its ``.part``)."""
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / archive.filename
    if final.is_file() and sha256_of(final) == archive.sha256:
        return final
    part = final.with_name(final.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(archive.url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if have and response.status != 206:  # the server ignored Range: start again
                have = 0
            mode = "ab" if have else "wb"
            total = response.headers.get("Content-Length")
            total = int(total) + have if total is not None else archive.size
            with part.open(mode) as out:
                done = have
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
            if total is not None and done < total:
                raise DownloadError(
                    _offline(
                        archive,
                        cache,
                        f"connection closed after {done} of {total} bytes; "
                        f"the partial file {part.name} is kept, run again to resume",
                    )
                )
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # nothing left to fetch: the .part is complete
            pass
        else:
            raise DownloadError(_offline(archive, cache, f"HTTP {error.code} {error.reason}")) from None
    except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as error:
        reason = f"{getattr(error, 'reason', error)}"
        if part.is_file() and part.stat().st_size:
            reason += f"; the partial file {part.name} is kept, run again to resume"
        raise DownloadError(_offline(archive, cache, reason)) from None
    verify(part, archive)
    part.replace(final)
    return final


def verify(path: Path, archive: Archive) -> None:
    """Size (when recorded) and SHA-256; a file that fails is deleted (it can only be wrong)."""
    size = path.stat().st_size
    if archive.size is not None and size != archive.size:
        path.unlink()
        raise DownloadError(f"{path}: {size} bytes, expected {archive.size}; deleted, run again")
    digest = sha256_of(path)
    if digest != archive.sha256:
        path.unlink()
        raise DownloadError(f"{path}: SHA-256 {digest} does not match the recorded {archive.sha256}; deleted")


def _offline(archive: Archive, cache: Path, reason: str) -> str:
    return (
        f"cannot download {archive.url} ({reason}). Download it by hand (see {archive.page or archive.url}), "
        f"then run: mvtec-ref download {cache.name} --from /path/to/{archive.filename} "
        f"(or put it in {cache}/)"
    )


def check_members(archive: Path) -> list[str]:
    """Member names, after refusing anything ``scan_members`` refuses."""
    return scan_members(archive)[0]


def scan_members(archive: Path) -> tuple[list[str], int]:
    """(member names, bytes they unpack to), after refusing anything that could write outside
    the target, a file that is also a folder (``x`` and ``x/y``), or over ``MAX_EXTRACTED_BYTES``."""
    names, files, total = [], set(), 0
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                mode = info.external_attr >> 16
                if (mode & 0o170000) == 0o120000:
                    raise DownloadError(
                        f"{archive}: refuses symbolic link {info.filename!r}; nothing extracted"
                    )
                names.append(info.filename)
                total += info.file_size  # zipfile stops reading a member at its declared size
                if not info.is_dir():
                    files.add(info.filename.replace("\\", "/").rstrip("/"))
    else:
        try:
            with tarfile.open(archive) as t:
                for member in t.getmembers():
                    if member.issym() or member.islnk():
                        raise DownloadError(
                            f"{archive}: refuses link {member.name!r} -> {member.linkname!r}; "
                            "nothing extracted"
                        )
                    if not (member.isfile() or member.isdir()):
                        raise DownloadError(
                            f"{archive}: refuses special file {member.name!r}; nothing extracted"
                        )
                    names.append(member.name)
                    total += member.size
                    if member.isfile():
                        files.add(member.name.rstrip("/"))
        except tarfile.TarError as error:
            raise DownloadError(f"{archive}: not a tar or zip archive ({error})") from None
    for name in names:
        path = PurePosixPath(name.replace("\\", "/"))
        if path.is_absolute() or name.startswith(("/", "\\")) or ".." in path.parts or ":" in path.parts[0]:
            raise DownloadError(
                f"{archive}: refuses member {name!r} (absolute or '..' path); nothing extracted"
            )
        for parent in list(path.parents)[:-1]:
            if parent.as_posix() in files:
                raise DownloadError(
                    f"{archive}: member {parent.as_posix()!r} is a file but {name!r} needs it to be "
                    "a folder; nothing extracted"
                )
    if total > MAX_EXTRACTED_BYTES:
        raise DownloadError(
            f"{archive}: would unpack to {total / 2**30:.1f} GiB, over the {MAX_EXTRACTED_BYTES / 2**30:.0f} "
            "GiB cap (a damaged or hostile archive?); nothing extracted"
        )
    return names, total


def extract(archive: Path, target: Path) -> Path:
    """Unpack into ``target`` (created; must not exist or be empty) through a staging folder."""
    check_target(target)
    total = scan_members(archive)[1]
    target.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target.parent).free
    if total > free:
        raise DownloadError(
            f"{archive}: needs {total / 2**30:.1f} GiB to unpack but {target.parent} has "
            f"{free / 2**30:.1f} GiB free; nothing extracted"
        )
    from mvtec_ref.fileio import make_staging, sweep_leftovers

    sweep_leftovers(target)  # what killed extractions into target left (their process is gone)
    stage = make_staging(target)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                z.extractall(stage)
        else:
            with tarfile.open(archive) as t:
                t.extractall(stage, filter="data")  # a second guard on top of check_members
        if target.exists():
            target.rmdir()
        stage.replace(target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return target


def check_target(target: Path) -> None:
    """The extraction target must be absent or an empty folder."""
    if target.exists() and not target.is_dir():
        raise DownloadError(f"{target}: exists and is not a folder; choose another --out")
    if target.exists() and any(target.iterdir()):
        raise DownloadError(f"{target}: exists and is not empty; choose another --out or remove it")


def download(
    name: str,
    out: Path,
    *,
    cache: Path,
    source_file: Path | None = None,
    archive: Archive | None = None,
    progress=None,
) -> Path:
    """Fetch (or take ``source_file``), verify and extract dataset ``name`` into ``out``."""
    if archive is None:
        if name not in ARCHIVES:
            if source_file is not None:
                raise DownloadError(
                    f"{source_file}: no recorded checksum for {name!r}; give the archive's SHA-256 "
                    "with --sha256 (from whoever gave you the file)"
                )
            raise DownloadError(
                f"no recorded archive for {name!r}; known: {', '.join(ARCHIVES)} "
                "(Real-IAD is given on request by its authors: use --from FILE --sha256 HASH)"
            )
        archive = ARCHIVES[name]
    check_target(out)
    if source_file is not None:
        if not source_file.is_file():
            raise DownloadError(f"{source_file}: no such file")
        digest = sha256_of(source_file)
        if digest != archive.sha256:
            raise DownloadError(
                f"{source_file}: SHA-256 {digest} is not the recorded {archive.sha256} "
                f"of {archive.filename}; not extracted"
            )
        path = source_file
    else:
        path = fetch(archive, cache / name, progress=progress)
    return extract(path, out)
