"""The layers of pyproject.toml's import-linter contracts hold: imports only point down.

algorithms/ and workloads/ install as ``asgdbench.algorithms`` and ``asgdbench.workloads``
(setuptools' package-dir), which import-linter, reading the source tree, cannot see: the test
lays the package out as it is installed (symbolic links in a temporary folder) and runs
``lint-imports`` on that.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def installed_layout(folder: Path) -> Path:
    """``folder/asgdbench`` laid out as installed: the package with its two remapped children."""
    package = folder / "asgdbench"
    package.mkdir()
    for entry in (REPO / "asgdbench").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for child in ("algorithms", "workloads"):
        (package / child).symlink_to(REPO / child)
    return folder


def lint_imports(folder: Path, config: Path) -> subprocess.CompletedProcess:
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.fail("import-linter is not installed: pip install -e '.[dev]'")
    env = {**os.environ, "PYTHONPATH": str(folder)}
    return subprocess.run([str(lint), "--no-cache", str(config)], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)


def test_imports_keep_the_layers(tmp_path: Path) -> None:
    done = lint_imports(installed_layout(tmp_path), REPO / "pyproject.toml")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "BROKEN" not in done.stdout and "KEPT" in done.stdout


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The check is not vacuous: a primitive importing the engine breaks it, through the
    remapped layout too (a strategy importing the runner)."""
    layout = installed_layout(tmp_path)
    strategy = layout / "asgdbench" / "algorithms"
    strategy.unlink()
    strategy.mkdir()
    for entry in (REPO / "algorithms").iterdir():
        if entry.name != "__pycache__":
            (strategy / entry.name).symlink_to(entry)
    (strategy / "upward.py").write_text("from asgdbench.engine import runner  # noqa\n")
    done = lint_imports(layout, REPO / "pyproject.toml")
    assert done.returncode != 0
    assert "asgdbench.algorithms.upward -> asgdbench.engine.runner" in done.stdout
