"""benchmarks/peer_commands.py reads its commands from docs/exports.md: every block it needs is
there and splits into the commands a person would type (running them needs the peers' code)."""

from benchmarks.peer_commands import Runner, commands, readme_block


def test_every_peer_block_is_on_the_page(tmp_path):
    blocks = {name: commands(readme_block(name)) for name in ("lavt", "cris", "rela", "rela-evaluate")}
    assert [c.split()[0] for c in blocks["lavt"]] == ["mvtec-ref", "cd", "torchrun", "python"]
    assert "--local_rank" in blocks["lavt"][2] and "\\" not in blocks["lavt"][2]
    loop = [c for c in blocks["cris"] if c.startswith("for ")]
    assert len(loop) == 1 and loop[0].rstrip().endswith("done") and "PYTHONPATH=" in loop[0]
    assert blocks["cris"][0].startswith("mkdir -p ~/data/pickle5")
    assert sum(c.startswith("DETECTRON2_DATASETS=") for c in blocks["rela"]) == 2
    assert "ref_seg_predictions.pth" in readme_block("rela-predictions")
    run = Runner(tmp_path, tmp_path / "ds", {"cris": tmp_path / "peers" / "CRIS"}, timeout=1)
    line = run.substitute("python ~/CRIS.pytorch/tools/folder2lmdb.py -i ~/data/mvtec_ref_refer/x")
    assert line == f"python {tmp_path}/peers/CRIS/tools/folder2lmdb.py -i {tmp_path}/mvtec_ref_refer/x"
    assert run.substitute("mvtec-ref export ~/data/mvtec_ref --format hf") == (
        f"mvtec-ref export {tmp_path}/ds --format hf"
    )
