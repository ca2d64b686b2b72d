import os

import pytest

from mvtec_ref.errors import OutputError
from mvtec_ref.fileio import staged_directory, write_text_atomic


def test_write_text_atomic_replaces_whole_file(tmp_path):
    path = tmp_path / "a" / "f.json"
    write_text_atomic(path, "one")
    write_text_atomic(path, "two")
    assert path.read_text() == "two" and [p.name for p in path.parent.iterdir()] == ["f.json"]


def test_staged_directory_swaps_only_on_success(tmp_path):
    out = tmp_path / "out"
    with staged_directory(out, marker="m") as stage:
        (stage / "m").write_text("v1")
    with pytest.raises(RuntimeError), staged_directory(out, marker="m") as stage:
        (stage / "m").write_text("v2")
        raise RuntimeError("boom")
    assert (out / "m").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_kill_between_the_two_renames_is_recovered(tmp_path):
    out = tmp_path / "out"
    old = tmp_path / ".out.staging-old-999"  # what a kill right after the first rename leaves
    old.mkdir()
    (old / "m").write_text("previous")
    with pytest.raises(RuntimeError), staged_directory(out, marker="m"):
        raise RuntimeError("this run fails too")
    assert (out / "m").read_text() == "previous"


def test_refuses_a_file_or_foreign_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with (
        pytest.raises(OutputError, match="is not a directory"),
        staged_directory(tmp_path / "file", marker="m"),
    ):
        pass


def test_outputs_get_ordinary_permissions(tmp_path):
    import stat

    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.json", "{}")
        with staged_directory(tmp_path / "out", marker="M") as stage:
            (stage / "M").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
