"""The result folder of a grid: every finished run, and the summary table.

``runs.jsonl`` holds one JSON object per finished run (``RunResult.to_dict()``).
Each run is appended and synced to disk the moment it ends, so Ctrl-C, a
crash or SIGKILL loses at most the run in progress. An append is all or
nothing: if writing or syncing the line fails (a full disk), the file is cut
back to what it held before and :class:`ResultNotSaved` says so. A last line
cut short all the same (the process killed inside the write) is the only
damage tolerated when reading the file back; ``partial_line`` says when there
was one, so that the caller can warn. ``summary.csv`` and ``summary.md`` are
derived from it and replaced whole at will.

A folder has one writer at a time: :meth:`ResultStore.open_for_writing` takes
an exclusive ``flock`` on the folder's lock file, which the kernel releases
when the holder ends however it ends, so a crashed sweep never leaves the
folder locked; a second writer is refused with :class:`FolderInUse`, naming
the holder. Readers (``asgdbench report``) take no lock. A run found twice
in ``runs.jsonl`` (same cell, same seed: two writers of an older version, or
a copied file) counts once, as its first line, and ``duplicates`` names them.
"""

from __future__ import annotations

import csv
import dataclasses
import fcntl
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from asgdbench.engine.interrupts import interrupts_deferred
from asgdbench.engine.run_result import RunConfig, RunResult
from asgdbench.errors import UserError
from asgdbench.study.report import Row

RUNS_FILE = "runs.jsonl"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
LOCK_FILE = ".asgdbench-writer.lock"
"""Held (``flock``) by the one process writing the folder; it names that process."""

_APPEND_PAUSE_S = float(os.environ.get("ASGDBENCH_TEST_APPEND_PAUSE_S", "0") or 0)
"""Test-only gate: seconds to sleep halfway through writing a line, so that a test's SIGKILL
can land inside an append. Read once at import: nothing is paid in normal runs."""


class FolderInUse(UserError):
    """Another process is writing the result folder: one writer per folder."""


class ResultNotSaved(Exception):
    """A finished run could not be written (a full disk, an I/O error); the file is as before."""


class ResultStore:
    """A folder of results: ``runs.jsonl`` plus the summary files.

    A store from :meth:`open_for_writing` holds the folder's writer lock until
    :meth:`close` (or the end of a ``with`` block, or of the process).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.runs_path = self.folder / RUNS_FILE
        self.partial_line: int | None = None
        """Number of a last line cut short (a run being written when the process died) that the
        latest :meth:`load` skipped or :meth:`open_for_writing` cut off; None if there was none."""
        self.duplicates: dict[tuple, list[int]] = {}
        """``RunConfig.key()`` -> line numbers of a run found more than once, after
        :meth:`load`; the first line is the one counted."""
        self._duplicate_configs: dict[tuple, RunConfig] = {}
        self._lock: WriterLock | None = None

    @classmethod
    def open_for_writing(cls, folder: str | os.PathLike, *, append: bool) -> "ResultStore":
        """Create ``folder`` if needed, prove it writable and take its writer lock.

        Raises :class:`FolderInUse` if another process holds it. A folder that
        already holds runs is only added to with ``append`` (a resumed grid),
        so that two unrelated grids never mix in one table.
        """
        store = cls(folder)
        store._check_writable()
        store._lock = WriterLock.acquire(store.folder)
        try:
            if store.runs_path.exists():
                if not append and store.runs_path.stat().st_size > 0:
                    raise UserError(f"{store.runs_path} already holds runs: pass --resume to "
                                    f"finish that grid, or choose another --out")
                store.partial_line = store._drop_partial_last_line()
        except OSError as error:  # a full disk refusing even the newline of a whole last run
            store.close()
            reason = error.strerror or type(error).__name__
            raise UserError(f"cannot write results to {store.folder} ({reason})") from None
        except BaseException:
            store.close()
            raise
        return store

    @property
    def lock_warning(self) -> str | None:
        """Why this writer holds no lock although it asked for one (its file system takes
        none), in words for a warning; None when it holds the lock or never asked."""
        if self._lock is None or self._lock.unsupported is None:
            return None
        return (f"cannot lock {self.folder} ({self._lock.unsupported}): its file system takes "
                f"no locks, so nothing stops a second process from writing it too; run one "
                f"grid at a time in it")

    def close(self) -> None:
        """Release the writer lock, if this store holds it (idempotent)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def append(self, result: RunResult) -> None:
        """Add one finished run to ``runs.jsonl`` and sync it to disk, or leave the file as it was.

        A Ctrl-C during the append waits until the line is written and synced.

        Raises :class:`ResultNotSaved` when the system refuses the write or the
        sync (no space left, an I/O error), after cutting off what part of the
        line got written.
        """
        line = (json.dumps(result.to_dict(), allow_nan=False) + "\n").encode()
        created = not self.runs_path.exists()
        try:
            descriptor = os.open(self.runs_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as error:
            raise ResultNotSaved(self._not_saved(result, error)) from error
        try:
            size_before = os.fstat(descriptor).st_size
            with interrupts_deferred():  # a Ctrl-C now is raised once the line is safe
                try:
                    _write_line(descriptor, line)
                    os.fsync(descriptor)
                    if created:  # the new file's name, too, must survive a power cut
                        _sync_folder(self.folder)
                except OSError as error:
                    try:
                        os.ftruncate(descriptor, size_before)  # frees space: works on a full disk
                    except OSError:
                        pass  # left as a cut-short last line, which reading tolerates
                    raise ResultNotSaved(self._not_saved(result, error)) from error
        finally:
            os.close(descriptor)

    def _not_saved(self, result: RunResult, error: OSError) -> str:
        reason = error.strerror or type(error).__name__
        return f"cannot save the run {describe_cell(result.config)} to {self.runs_path} ({reason})"

    def load(self) -> list[RunResult]:
        """Every finished run, in the order they finished, each cell and seed once."""
        if not self.runs_path.is_file():
            raise UserError(f"no results in {self.folder}: {RUNS_FILE} is missing")
        lines = self.runs_path.read_text(errors="replace").splitlines(keepends=True)
        results, first_line = [], {}
        self.partial_line, self.duplicates, self._duplicate_configs = None, {}, {}
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                result = RunResult.from_dict(json.loads(line))
            except json.JSONDecodeError:
                if number == len(lines) and not line.endswith("\n"):
                    self.partial_line = number  # the run in progress when the process died
                    break
                raise UserError(f"{self.runs_path} line {number} is not valid JSON") from None
            except (TypeError, KeyError):
                raise UserError(f"{self.runs_path} line {number} is not an asgdbench run") from None
            key = result.config.key()
            if key in first_line:  # not a repeat: the same seed of the same cell again
                self.duplicates.setdefault(key, [first_line[key]]).append(number)
                self._duplicate_configs[key] = result.config
                continue
            first_line[key] = number
            results.append(result)
        return results

    def duplicates_note(self, shown: int = 5) -> str | None:
        """One line naming the runs :meth:`load` found more than once, or None if none."""
        if not self.duplicates:
            return None
        items = [f"{describe_cell(self._duplicate_configs[key])} (lines "
                 f"{', '.join(map(str, numbers))})" for key, numbers in self.duplicates.items()]
        more = f" and {len(items) - shown} more" if len(items) > shown else ""
        return (f"{self.runs_path} holds {len(items)} run(s) more than once (same cell, same "
                f"seed): {'; '.join(items[:shown])}{more}; each counts once, from its first "
                f"line, never as an extra seed")

    def finished(self) -> list[RunResult]:
        """:meth:`load`, or no runs if the folder has none yet (a grid that saved nothing)."""
        return self.load() if self.runs_path.exists() else []

    def finished_keys(self) -> set[tuple]:
        """``RunConfig.key()`` of every finished run, to skip them on resume."""
        return {result.config.key() for result in self.finished()}

    def write_summary(self, rows: Sequence[Row], table: str) -> None:
        """Write the table as ``summary.md`` and its raw figures as ``summary.csv``.

        Each file is written aside and renamed over the old one, so a reader
        (or a ``report`` running next to the grid) never sees half a table.
        """
        fields = [field.name for field in dataclasses.fields(Row)]
        csv_path, md_path = self.folder / SUMMARY_CSV, self.folder / SUMMARY_MD
        csv_scratch, md_scratch = (path.with_name(f".{path.name}.{os.getpid()}")
                                   for path in (csv_path, md_path))
        try:
            with csv_scratch.open("w", newline="") as stream:
                writer = csv.DictWriter(stream, fieldnames=fields)
                writer.writeheader()
                writer.writerows(dataclasses.asdict(row) for row in rows)
            md_scratch.write_text(table + "\n")
            os.replace(csv_scratch, csv_path)
            os.replace(md_scratch, md_path)
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise UserError(f"cannot write the summary in {self.folder} ({reason})") from None
        finally:
            for scratch in (csv_scratch, md_scratch):
                scratch.unlink(missing_ok=True)

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

        A last line that is a whole run but lacks its newline gets one
        instead. Returns the number of the line cut off, or None.
        """
        data = self.runs_path.read_bytes()
        if not data or data.endswith(b"\n"):
            return None
        start = data.rfind(b"\n") + 1
        try:
            RunResult.from_dict(json.loads(data[start:]))
        except (ValueError, TypeError, KeyError):
            with self.runs_path.open("r+b") as stream:
                stream.truncate(start)
            return data.count(b"\n") + 1
        with self.runs_path.open("ab") as stream:
            stream.write(b"\n")
        return None


def describe_cell(config: RunConfig) -> str:
    """A run's identity (``RunConfig.key()``) in words, for notes and errors."""
    return (f"{config.label} threads={config.threads} lr={config.lr:g} "
            f"batch={config.batch_size} seed={config.seed} ({config.workload}, {config.dtype})")


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_line(descriptor: int, line: bytes) -> None:
    """Write all of ``line``; a short write (a nearly full disk) continues where it stopped."""
    written = 0
    if _APPEND_PAUSE_S:
        written = os.write(descriptor, line[:len(line) // 2])
        time.sleep(_APPEND_PAUSE_S)
    while written < len(line):
        written += os.write(descriptor, line[written:])


class WriterLock:
    """The exclusive lock of a result folder's one writer: ``flock`` on :data:`LOCK_FILE`.

    The kernel drops a ``flock`` when its holder exits, crashes or is killed,
    so the lock is never left stuck. The file names the holder (pid, host,
    command, start time) for the refusal a second writer gets; it is removed
    on release, and a writer that locked a file removed meanwhile tries again.
    """

    def __init__(self, path: Path, descriptor: int | None, *,
                 unsupported: str | None = None) -> None:
        self.path = path
        self._descriptor = descriptor
        self.unsupported = unsupported
        """Why the file system refused any lock (some network or FUSE file systems): then
        nothing is held. None when the lock is held."""

    @classmethod
    def acquire(cls, folder: Path) -> "WriterLock":
        """Take the folder's lock, or raise :class:`FolderInUse` naming who holds it."""
        path = folder / LOCK_FILE
        for _ in range(100):  # each turn: the holder released and removed the file meanwhile
            try:
                descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as error:
                reason = error.strerror or type(error).__name__
                raise UserError(f"cannot write results to {folder} ({reason})") from None
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                raise FolderInUse(f"{folder} is in use by {_holder(path)}; a result folder "
                                  f"takes one writer at a time: wait for it to end, or choose "
                                  f"another --out") from None
            except OSError as error:  # ENOLCK, EOPNOTSUPP: a file system that takes no locks
                os.close(descriptor)
                path.unlink(missing_ok=True)
                return cls(path, None, unsupported=error.strerror or type(error).__name__)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            if current is not None and os.path.samestat(os.fstat(descriptor), current):
                _name_holder(descriptor)
                return cls(path, descriptor)
            os.close(descriptor)
        raise FolderInUse(f"{folder} is in use: its lock file keeps changing hands")

    def __del__(self) -> None:  # a store never closed: unlock when it is collected
        try:
            self.release()
        except Exception:
            pass

    def release(self) -> None:
        """Remove the lock file, then unlock it (in that order: see :meth:`acquire`)."""
        if self._descriptor is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass  # a stale file is harmless: the lock is the flock, not the file
        os.close(self._descriptor)
        self._descriptor = None


def _name_holder(descriptor: int) -> None:
    """Write who holds the lock into the lock file (best effort: the flock is the lock)."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if program in ("__main__.py", "-m", "cli.py"):
        program = "asgdbench"
    command = shlex.join([program, *sys.argv[1:]])
    holder = {"pid": os.getpid(), "host": socket.gethostname(),
              "command": command if len(command) <= 200 else command[:197] + "...",
              "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(holder).encode() + b"\n", 0)
    except OSError:
        pass


def _holder(path: Path) -> str:
    """Who holds the lock, as its file says: ``pid 1234 on HOST (COMMAND, started ...)``."""
    deadline = time.monotonic() + 1.0
    while True:  # the holder writes its name just after locking: give it a moment
        try:
            holder = json.loads(path.read_text())
            return (f"pid {holder['pid']} on {holder['host']} ({holder['command']}, started "
                    f"{holder['started']})")
        except (OSError, ValueError, KeyError, TypeError):
            if time.monotonic() > deadline:
                return "another process"
            time.sleep(0.05)
