"""``mvtec-ref download`` against an HTTP server on 127.0.0.1: good download, interrupted
download resumed with a Range request, wrong checksum rejected, malicious archives rejected
with nothing written outside (or inside) the target, offline failure in one clear line."""

from __future__ import annotations

import hashlib
import io
import random
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from mvtec_ref.cli import main
from mvtec_ref.download import Archive, DownloadError, download, extract, fetch


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# incompressible contents, so the archive is ~200 kB and can be cut mid-transfer
GOOD = _tar({f"mini/bottle/test/crack/{i:03d}.png": random.Random(i).randbytes(5000) for i in range(40)})


class _Server:
    """Serves ``payload`` at /a.tar.gz; honours Range; ``cut`` bytes then a dropped connection
    on the first request when set."""

    def __init__(self, payload: bytes, cut: int | None = None) -> None:
        self.payload, self.cut, self.requests = payload, cut, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append(self.headers.get("Range"))
                data, start = outer.payload, 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if outer.cut is not None and len(outer.requests) == 1:
                    self.wfile.write(body[: outer.cut])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the link drops mid-transfer
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/a.tar.gz"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    servers = []

    def start(payload=GOOD, cut=None):
        servers.append(_Server(payload, cut))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def _archive(url: str, payload: bytes = GOOD) -> Archive:
    return Archive(url, hashlib.sha256(payload).hexdigest())


def test_good_download_verifies_and_extracts(server, tmp_path):
    s = server()
    target = download("mini", tmp_path / "data", cache=tmp_path / "cache", archive=_archive(s.url))
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*.png"))
    assert len(files) == 40 and files[0] == "mini/bottle/test/crack/000.png"
    assert (tmp_path / "cache/mini/a.tar.gz").read_bytes() == GOOD
    assert not list((tmp_path / "cache/mini").glob("*.part"))
    # a second run finds the verified archive in the cache: no request
    fetch(_archive(s.url), tmp_path / "cache/mini")
    assert len(s.requests) == 1


def test_interrupted_download_resumes_with_range(server, tmp_path):
    s = server(cut=30_000)
    with pytest.raises(
        DownloadError, match=r"connection closed after 30000 of \d+ bytes|partial file a.tar.gz.part"
    ):
        fetch(_archive(s.url), tmp_path / "cache")
    part = tmp_path / "cache/a.tar.gz.part"
    assert part.stat().st_size == 30_000
    path = fetch(_archive(s.url), tmp_path / "cache")
    assert s.requests == [None, "bytes=30000-"]
    assert path.read_bytes() == GOOD


def test_wrong_checksum_is_rejected_and_deleted(server, tmp_path):
    s = server()
    with pytest.raises(DownloadError, match="does not match the recorded"):
        download("mini", tmp_path / "data", cache=tmp_path / "cache", archive=Archive(s.url, "0" * 64))
    assert not list((tmp_path / "cache").rglob("a.tar.gz*"))
    assert not (tmp_path / "data").exists()


def _evil_tar(kind: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        ok = tarfile.TarInfo("mini/ok.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        if kind == "symlink":
            link = tarfile.TarInfo("mini/escape")
            link.type, link.linkname = tarfile.SYMTYPE, "../../outside"
            tar.addfile(link)
        else:
            name = {"dotdot": "mini/../../evil.txt", "absolute": "/tmp/evil-mvtec-ref.txt"}[kind]
            bad = tarfile.TarInfo(name)
            bad.size = 4
            tar.addfile(bad, io.BytesIO(b"evil"))
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_malicious_tar_is_refused_with_nothing_written(server, tmp_path, kind):
    payload = _evil_tar(kind)
    s = server(payload)
    work = tmp_path / "work"
    with pytest.raises(DownloadError, match="refuses"):
        download("mini", work / "data", cache=tmp_path / "cache", archive=_archive(s.url, payload))
    assert not (work / "data").exists() and not work.exists()
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil-mvtec-ref.txt").exists()


def test_malicious_zip_is_refused(tmp_path):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("ok.txt", "ok")
        z.writestr("../evil.txt", "evil")
    with pytest.raises(DownloadError, match=r"refuses member '../evil.txt'"):
        extract(path, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "evil.txt").exists()


def test_from_file_and_offline_message(tmp_path):
    archive = tmp_path / "mine.tar.gz"
    archive.write_bytes(GOOD)
    runner = CliRunner()
    sha = hashlib.sha256(GOOD).hexdigest()
    done = runner.invoke(
        main,
        [
            "download",
            "mini",
            "--from",
            str(archive),
            "--sha256",
            sha,
            "--url",
            "http://127.0.0.1:9/x.tar.gz",
            "--out",
            str(tmp_path / "d"),
        ],
    )
    assert done.exit_code == 0, done.output
    assert len(list((tmp_path / "d").rglob("*.png"))) == 40
    wrong = runner.invoke(
        main, ["download", "mvtec_ad", "--from", str(archive), "--out", str(tmp_path / "e")]
    )
    assert wrong.exit_code == 1 and "is not the recorded" in wrong.output and not (tmp_path / "e").exists()
    # nothing listens on port 9: the one-line error says what to download and where to put it
    offline = runner.invoke(
        main,
        [
            "download",
            "mvtec_ad",
            "--url",
            "http://127.0.0.1:9/mvtec_anomaly_detection.tar.xz",
            "--cache",
            str(tmp_path / "c"),
            "--out",
            str(tmp_path / "f"),
        ],
    )
    assert offline.exit_code == 1
    line = offline.output.strip()
    assert "\n" not in line
    assert "mvtec-ref download mvtec_ad --from /path/to/mvtec_anomaly_detection.tar.xz" in line
    assert "partial file" not in line  # nothing was fetched, so nothing is said to be kept
