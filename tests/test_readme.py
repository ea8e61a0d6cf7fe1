"""The README as a user follows it: its commands, then its Python example, in order, in a fresh folder.

Every `.venv/bin/tamenet ...` line of its bash blocks runs in-process (`tamenet.cli.main`), shortened as the
README itself says (`--set train.epochs=1`; `--set model.widths=[16]` for the default job, `--set
data.n_samples=400` for mnist1d; for cv and search also `--folds 2`, `--trials 4`, `--nested 2`);
then the Python block runs as written. The default job's parameter count printed in the README is checked
against the model the default recipe builds (its other figures come from bench/readme_figures.py)."""

import re
import shlex
import shutil
from pathlib import Path

from tamenet.cli import main

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "README.md").read_text()
SHORT = ["--set", "train.epochs=1"]
SMALL_DEFAULT = ["--set", "model.widths=[16]"]
SMALL_MNIST1D = ["--set", "data.n_samples=400"]


def readme_commands() -> list[list[str]]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", TEXT, flags=re.S):
        for line in block.splitlines():
            if line.startswith(".venv/bin/tamenet "):
                commands.append(shlex.split(line, comments=True)[1:])
    return commands


def shortened(argv: list[str]) -> list[str]:
    """The command with the README's stated shortening appended (a later option wins in argparse)."""
    out = [*argv, *SHORT]
    recipe_given = len(argv) > 1 and argv[1].endswith(".yaml")
    out += [] if recipe_given else SMALL_DEFAULT
    out += SMALL_MNIST1D if "mnist1d" in " ".join(argv) else []
    if argv[0] in ("cv", "search"):
        out += ["--folds", "2"]
        out += ["--trials", "4"] if "--trials" in argv else []
        out += ["--nested", "2"] if "--nested" in argv else []
    return out


def test_the_readme_says_how_its_commands_are_shortened_here():
    for words in ("`--set train.epochs=1`", "`--set model.widths=[16]`", "`--folds 2`", "`--trials 4`", "`--nested 2`",
                  "`--set data.n_samples=400`", "tests/test_readme.py"):
        assert words in TEXT, words
    assert len(readme_commands()) >= 10


def test_readme_commands_then_python_example_run_in_order(tmp_path, monkeypatch, capsys):
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    monkeypatch.chdir(tmp_path)
    for argv in readme_commands():
        code = main(shortened(argv))
        out, err = capsys.readouterr()
        assert code == 0, (argv, err[-1000:])
        assert "run directory" in out, argv
    assert (tmp_path / "runs" / "sgd" / "model.pt").is_file()

    blocks = re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)
    assert len(blocks) == 1, "the README should hold exactly one Python example"
    exec(compile(blocks[0], "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    accuracy = float(printed[0].split()[0])
    assert 0.9 < accuracy <= 1.0
    assert (tmp_path / "runs" / "sgd-api" / "model.pt").is_file()
    assert printed[-1].endswith("True")  # the gradient check passed


def test_the_default_jobs_parameter_count_is_what_it_builds():
    from tamenet.models import build_model, count_parameters
    from tamenet.recipes import load_recipe

    block = re.search(r"<!-- figure: default-job -->\n```\n(.*?)```", TEXT, flags=re.S).group(1)
    shown = int(re.search(r"([\d,]+) parameters", block).group(1).replace(",", ""))
    model = build_model(load_recipe(None).model, n_in=64, n_out=10, seeds=[0])
    assert count_parameters(model) == shown
