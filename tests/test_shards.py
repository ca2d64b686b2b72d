"""build --shard K/N + merge: the same bytes as a one-process build; bad shard sets refused."""

from __future__ import annotations

import os
import shutil

import cv2
import pytest
from click.testing import CliRunner

from mvtec_ref.cli import main

BROKEN_IMAGE = "bottle/test/broken_large/000.png"
BROKEN_MASK = "grid/ground_truth/bent/000_mask.png"


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def broken_tree(tree_copy):
    """Two categories with problems of each action: a truncated image (skipped), a non-binary
    mask (accepted) and a stray file (ignored)."""
    data = (tree_copy / BROKEN_IMAGE).read_bytes()
    (tree_copy / BROKEN_IMAGE).write_bytes(data[: len(data) // 3])
    mask = cv2.imread(str(tree_copy / BROKEN_MASK), cv2.IMREAD_UNCHANGED)
    mask[mask == 255] = 200
    mask[0, 0] = 90
    cv2.imwrite(str(tree_copy / BROKEN_MASK), mask)
    (tree_copy / "grid/test/good/.DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return tree_copy


@pytest.mark.parametrize("protocol", ["standard", "open-set"])
def test_merged_shards_equal_one_process_build(broken_tree, tmp_path, protocol):
    options = ["--quiet", "--seed", "3", "--protocol", protocol]
    whole = _run("build", "--root", broken_tree, "--out", tmp_path / "whole", *options)
    assert whole.exit_code == 0, whole.output
    shards = [tmp_path / "shards" / f"{k}.jsonl" for k in (1, 2, 3)]
    for k, shard in enumerate(shards, start=1):
        done = _run("build", "--root", broken_tree, "--out", shard, "--shard", f"{k}/3", *options)
        assert done.exit_code == 0, done.output
        assert f"wrote shard {k}/3" in done.output
    merged = _run("merge", shards[2], shards[0], shards[1], "--out", tmp_path / "merged", "--quiet")
    assert merged.exit_code == 0, merged.output
    files = _files(tmp_path / "whole")
    assert _files(tmp_path / "merged") == files
    manifest = files["manifest.json"].decode()
    for problem in ("skipped", "accepted", "ignored"):  # the problems of every shard made it in
        assert f'"action": "{problem}"' in manifest


def test_more_shards_than_images_and_workers_inside_a_shard(tree_copy, tmp_path):
    from mvtec_ref.build import BuildConfig
    from mvtec_ref.shards import build_shard

    n = 20  # > the 14 images of two small categories: some shards are empty
    whole = _run("build", "--root", tree_copy, "--out", tmp_path / "whole", "--quiet")
    assert whole.exit_code == 0, whole.output
    shards = [tmp_path / "shards" / f"{k}.jsonl" for k in range(1, n + 1)]
    first = _run("build", "--root", tree_copy, "--out", shards[0], "--shard", f"1/{n}", "--workers", "2")
    assert first.exit_code == 0, first.output
    for k, shard in enumerate(shards[1:], start=2):
        build_shard(tree_copy, shard, BuildConfig(), k, n, progress=False)
    merged = _run("merge", *shards, "--out", tmp_path / "merged")
    assert merged.exit_code == 0, merged.output
    assert _files(tmp_path / "merged") == _files(tmp_path / "whole")


@pytest.fixture
def two_shards(tree_copy, tmp_path):
    shards = []
    for k in (1, 2):
        shard = tmp_path / f"s{k}.jsonl"
        done = _run("build", "--root", tree_copy, "--out", shard, "--shard", f"{k}/2", "--quiet")
        assert done.exit_code == 0, done.output
        shards.append(shard)
    return shards


def _refused(result, *words):
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for word in words:
        assert str(word) in lines[0], lines[0]


def test_missing_duplicated_and_foreign_shards_are_refused(two_shards, tree_copy, tmp_path):
    out = tmp_path / "merged"
    _refused(_run("merge", two_shards[0], "--out", out), "shard 2/2 missing")
    twice = _run("merge", *two_shards, two_shards[0], "--out", out)
    _refused(twice, "shard 1/2 is given twice", two_shards[0])
    copy = tmp_path / "copy.jsonl"
    shutil.copy(two_shards[1], copy)
    twice = _run("merge", two_shards[0], two_shards[1], copy, "--out", out)
    _refused(twice, copy, "shard 2/2 is given twice")
    other = tmp_path / "seed1.jsonl"
    assert _run("build", "--root", tree_copy, "--out", other, "--shard", "2/2", "--seed", "1").exit_code == 0
    _refused(_run("merge", two_shards[0], other, "--out", out), other, "config differs")
    three = tmp_path / "of3.jsonl"
    assert _run("build", "--root", tree_copy, "--out", three, "--shard", "2/3").exit_code == 0
    _refused(_run("merge", two_shards[0], three, "--out", out), three, "shard count differs")
    assert not out.exists()


def test_damaged_shards_are_refused(two_shards, tmp_path):
    out = tmp_path / "merged"
    lines = two_shards[1].read_text().splitlines(keepends=True)
    two_shards[1].write_text("".join(lines[:-1]))
    _refused(_run("merge", *two_shards, "--out", out), two_shards[1], "truncated")
    two_shards[1].write_text("not json\n")
    _refused(_run("merge", *two_shards, "--out", out), two_shards[1], "not a shard file")
    _refused(_run("merge", tmp_path / "nope.jsonl", two_shards[0], "--out", out), "nope.jsonl", "not found")
    assert not out.exists()


@pytest.mark.parametrize("bad", ["3", "0/2", "3/2", "a/b", "1/99999999999", "1/100001", "-1/2"])
def test_bad_shard_option_is_refused_before_any_work(tree_copy, tmp_path, bad):
    result = _run("build", "--root", tree_copy, "--out", tmp_path / "s.jsonl", "--shard", bad)
    assert result.exit_code == 2 and "Invalid value for '--shard'" in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "s.jsonl").exists()


def test_dask_local_cluster_two_workers_matches_one_process_build(broken_tree, tmp_path):
    """The README's Dask recipe, on a LocalCluster of 2 worker processes."""
    distributed = pytest.importorskip("dask.distributed")
    from mvtec_ref.build import BuildConfig, build_dataset
    from mvtec_ref.shards import build_shard, merge_shards

    config = BuildConfig(seed=5)
    build_dataset(broken_tree, tmp_path / "whole", config, progress=False)
    n = 4
    paths = [tmp_path / "shards" / f"{k:03d}-of-{n:03d}.jsonl" for k in range(1, n + 1)]
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with cluster, distributed.Client(cluster) as client:
        futures = [
            client.submit(build_shard, broken_tree, path, config, k, n, progress=False, pure=False)
            for k, path in enumerate(paths, start=1)
        ]
        headers = client.gather(futures)
        pids = client.run(os.getpid)  # worker address -> pid: two processes, neither this one
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
    assert [h["shard"] for h in headers] == [[k, n] for k in range(1, n + 1)]
    merge_shards(paths, tmp_path / "merged")
    assert _files(tmp_path / "merged") == _files(tmp_path / "whole")


def test_a_shard_never_replaces_a_users_file(tmp_path):
    from click.testing import CliRunner

    from mvtec_ref.cli import main

    mine = tmp_path / "notes.txt"
    mine.write_text("my notes\n")
    root = tmp_path / "root"
    root.mkdir()
    result = CliRunner().invoke(main, ["build", "--root", str(root), "--out", str(mine), "--shard", "1/2"])
    assert result.exit_code == 1 and "not a shard file" in result.output, result.output
    assert mine.read_text() == "my notes\n"
    as_dataset = CliRunner().invoke(main, ["build", "--root", str(root), "--out", str(mine)])
    assert as_dataset.exit_code == 1 and "is not a directory" in as_dataset.output, as_dataset.output
    assert mine.read_text() == "my notes\n"
