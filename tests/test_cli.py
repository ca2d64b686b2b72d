import subprocess
import sys

import pytest
from click.testing import CliRunner

from mvtec_ref.cli import main

COMMANDS = ["synth", "download", "build", "merge", "paraphrase", "validate", "export", "stats", "report",
            "show", "evaluate", "train-baseline", "predict", "probes", "review"]  # fmt: skip


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_help_for_every_subcommand(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0 and "Usage: " in result.output


def test_every_subcommand_is_listed():
    assert sorted(main.commands) == sorted(COMMANDS)


@pytest.mark.parametrize("command", [[], ["train-baseline"], ["predict"], ["review"]])
def test_help_does_not_import_heavy_packages(command):
    code = (
        "import sys\nfrom mvtec_ref.cli import main\n"
        f"try:\n    main({[*command, '--help']!r})\nexcept SystemExit:\n    pass\n"
        "print([m for m in ('torch', 'transformers', 'openai', 'cv2', 'pycocotools', 'starlette', 'uvicorn')"
        " if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("[]")


def test_synth_build_validate_stats_end_to_end(tmp_path):
    runner = CliRunner()
    tree, out = tmp_path / "tree", tmp_path / "ds"
    assert runner.invoke(main, ["synth", "--out", str(tree), "--quiet"]).exit_code == 0
    result = runner.invoke(main, ["build", "--root", str(tree), "--out", str(out), "--category", "pill"])
    assert result.exit_code == 0 and "built" in result.output
    assert runner.invoke(main, ["validate", str(out), "--deep"]).exit_code == 0
    result = runner.invoke(main, ["stats", str(out)])
    assert result.exit_code == 0
    assert any(line.startswith("pill ") for line in result.output.splitlines()) and "ALL" in result.output
