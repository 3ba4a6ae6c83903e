"""Helpers shared by the command-line tests: run ``asgdbench`` in-process, read a result folder."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from asgdbench.engine.run_result import RunResult
from asgdbench.study.cli import main


def in_process(capsys, *args: str | Path) -> subprocess.CompletedProcess:
    """``asgdbench ARGS`` through :func:`main` in this process: no interpreter start-up to pay."""
    capsys.readouterr()
    code = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def read_runs(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "runs.jsonl").read_text().splitlines()]


def key_of(run: dict) -> tuple:
    return RunResult.from_dict(run).config.key()
