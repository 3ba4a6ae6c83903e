"""The result folder of a grid: every finished run, and the summary table.

``runs.jsonl`` holds one JSON object per finished run (``RunResult.to_dict()``).
Each run is appended and synced to disk the moment it ends, so Ctrl-C or a
crash loses at most the run in progress; a last line cut short by such an
interruption is the only damage tolerated when reading the file back, and
``partial_line`` says when there was one, so that the caller can warn.
``summary.csv`` and ``summary.md`` are derived from it and rewritten at will.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

from asgdbench.engine.run_result import RunResult
from asgdbench.errors import UserError
from asgdbench.study.report import Row

RUNS_FILE = "runs.jsonl"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"


class ResultStore:
    """A folder of results: ``runs.jsonl`` plus the summary files."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.runs_path = self.folder / RUNS_FILE
        self.partial_line: int | None = None
        """Number of a last line cut short (a run being written when the process died), once
        :meth:`load` skipped it or :meth:`open_for_writing` cut it off; None if there was none."""

    @classmethod
    def open_for_writing(cls, folder: str | os.PathLike, *, append: bool) -> "ResultStore":
        """Create ``folder`` if needed and prove it writable, before any run starts.

        A folder that already holds runs is only added to with ``append`` (a
        resumed grid), so that two unrelated grids never mix in one table.
        """
        store = cls(folder)
        store._check_writable()
        if store.runs_path.exists():
            if not append and store.runs_path.stat().st_size > 0:
                raise UserError(f"{store.runs_path} already holds runs: pass --resume to finish "
                                f"that grid, or choose another --out")
            store.partial_line = store._drop_partial_last_line()
        return store

    def append(self, result: RunResult) -> None:
        """Add one finished run to ``runs.jsonl`` and sync it to disk."""
        line = (json.dumps(result.to_dict(), allow_nan=False) + "\n").encode()
        descriptor = os.open(self.runs_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = 0
            while written < len(line):
                written += os.write(descriptor, line[written:])
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def load(self) -> list[RunResult]:
        """Every finished run, in the order they finished."""
        if not self.runs_path.is_file():
            raise UserError(f"no results in {self.folder}: {RUNS_FILE} is missing")
        lines = self.runs_path.read_text(errors="replace").splitlines(keepends=True)
        results = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                results.append(RunResult.from_dict(json.loads(line)))
            except json.JSONDecodeError:
                if number == len(lines) and not line.endswith("\n"):
                    self.partial_line = number  # the run in progress when the process died
                    break
                raise UserError(f"{self.runs_path} line {number} is not valid JSON") from None
            except (TypeError, KeyError):
                raise UserError(f"{self.runs_path} line {number} is not an asgdbench run") from None
        return results

    def finished_keys(self) -> set[tuple]:
        """``RunConfig.key()`` of every finished run, to skip them on resume."""
        if not self.runs_path.exists():
            return set()
        return {result.config.key() for result in self.load()}

    def write_summary(self, rows: Sequence[Row], table: str) -> None:
        """Write the table as ``summary.md`` and its raw figures as ``summary.csv``."""
        fields = [field.name for field in dataclasses.fields(Row)]
        try:
            with (self.folder / SUMMARY_CSV).open("w", newline="") as stream:
                writer = csv.DictWriter(stream, fieldnames=fields)
                writer.writeheader()
                writer.writerows(dataclasses.asdict(row) for row in rows)
            (self.folder / SUMMARY_MD).write_text(table + "\n")
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise UserError(f"cannot write the summary in {self.folder} ({reason})") from None

    def _check_writable(self) -> None:
        probe = self.folder / f".asgdbench-write-test-{os.getpid()}"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise UserError(f"cannot write results to {self.folder} ({reason})") from None

    def _drop_partial_last_line(self) -> int | None:
        """Cut off a run that was being written when the process died, so appends start clean.

        Returns the number of the line cut off, or None.
        """
        data = self.runs_path.read_bytes()
        if not data or data.endswith(b"\n"):
            return None
        with self.runs_path.open("r+b") as stream:
            stream.truncate(data.rfind(b"\n") + 1)
        return data.count(b"\n") + 1
