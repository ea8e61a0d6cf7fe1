"""The README's Python example runs as written (CI proves the README)."""

import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, "the README should hold exactly one Python example"
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    accuracy = float(printed[0].split()[0])
    assert 0.9 < accuracy <= 1.0
    assert (tmp_path / "runs" / "sgd" / "model.pt").is_file()
    assert printed[-1].endswith("True")  # the gradient check passed
