"""The README as a user follows it: its commands, then its Python example, in order, in a fresh folder.

Every `.venv/bin/tamenet ...` line of its bash blocks runs in-process (`tamenet.cli.main`), shortened as the
README itself says for training commands (`--set train.epochs=1`; `--set model.widths=[16]` for the default
job, `--set data.n_samples=400` for mnist1d; for cv and search also `--folds 2`, `--trials 4`, `--nested 2`);
`tamenet serve` and `tamenet study-server`, which run until stopped, are left to tests/test_serve.py and
tests/test_study_storage.py; `../shared/data/` is the project's shared data folder or, where it is absent, a
small stand-in of the same format (with a warning).
Then the Python block runs as written. The default job's parameter count printed in the README is checked
against the model the default recipe builds (its other figures come from bench/readme_figures.py)."""

import re
import shlex
import shutil
import warnings
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


TRAINING = ("train", "cv", "search")
LONG_RUNNING = ("serve", "study-server")
SHARED = ROOT.parent / "shared" / "data"


def shortened(argv: list[str]) -> list[str]:
    """The command with the README's stated shortening appended (a later option wins in argparse)."""
    if argv[0] not in TRAINING:
        return list(argv)
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


def _shared_data(root: Path) -> None:
    """`root/shared/data`, seen as `../shared/data` from `root/work`: the project's folder, or a stand-in."""
    (root / "shared").mkdir()
    if SHARED.is_dir():
        (root / "shared" / "data").symlink_to(SHARED, target_is_directory=True)
        return
    warnings.warn(f"{SHARED} is absent: the README's commands read a small stand-in of its sentiment folder")
    folder = root / "shared" / "data" / "sentiment"
    folder.mkdir(parents=True)
    words = ["good", "great", "fine", "bad", "awful", "poor"]
    for source in ("amazon_cells", "imdb", "yelp"):
        lines = [f"{words[i % 6]} {words[(i * 7) % 6]} product number {i}\t{int(i % 6 < 3)}" for i in range(60)]
        (folder / f"{source}_labelled.txt").write_text("\n".join(lines) + "\n")


def test_readme_commands_then_python_example_run_in_order(tmp_path, monkeypatch, capsys):
    _shared_data(tmp_path)
    work = tmp_path / "work"
    shutil.copytree(ROOT / "recipes", work / "recipes")
    monkeypatch.chdir(work)
    ran = set()
    for argv in readme_commands():
        if argv[0] in LONG_RUNNING:
            continue
        code = main(shortened(argv))
        out, err = capsys.readouterr()
        assert code == 0, (argv, err[-1000:])
        if argv[0] in TRAINING:
            assert "run directory" in out, argv
        ran.add(argv[0])
    assert {"train", "cv", "search", "export", "preview"} <= ran
    assert (work / "runs" / "sgd" / "model.pt").is_file()

    blocks = re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)
    assert len(blocks) == 1, "the README should hold exactly one Python example"
    exec(compile(blocks[0], "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    accuracy = float(printed[0].split()[0])
    assert 0.9 < accuracy <= 1.0
    assert (work / "runs" / "sgd-api" / "model.pt").is_file()
    assert printed[-1].endswith("True")  # the gradient check passed


def test_the_default_jobs_parameter_count_is_what_it_builds():
    from tamenet.models import build_model, count_parameters
    from tamenet.recipes import load_recipe

    block = re.search(r"<!-- figure: default-job -->\n```\n(.*?)```", TEXT, flags=re.S).group(1)
    shown = int(re.search(r"([\d,]+) parameters", block).group(1).replace(",", ""))
    model = build_model(load_recipe(None).model, n_in=64, n_out=10, seeds=[0])
    assert count_parameters(model) == shown
