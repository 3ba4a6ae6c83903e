"""A command's result folder: opened for writing under its lock, loaded with warnings,
summarised, and how a command that writes one ends (not saved, interrupted)."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from asgdbench.engine.run_result import RunResult
from asgdbench.errors import UserError
from asgdbench.study import plots, report
from asgdbench.study.result_folder import (
    RUNS_FILE,
    SUMMARY_CSV,
    SUMMARY_MD,
    ResultNotSaved,
    ResultStore,
)

EXIT_NOT_SAVED = 1  # a finished run could not be written (full disk): not the input's fault
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
RESULTS_ROOT = Path("asgdbench-results")


def note(message: str) -> None:
    print(f"asgdbench: {message}", file=sys.stderr)



def open_for_writing(args: argparse.Namespace, folder: str | Path, *,
                      append: bool) -> ResultStore:
    """The result folder, its writer lock held until the command ends (see :func:`main`)."""
    store = args.held.enter_context(ResultStore.open_for_writing(folder, append=append))
    if store.lock_warning is not None:
        note(f"warning: {store.lock_warning}")
    return store



def stopped_unsaved(store: ResultStore, error: ResultNotSaved) -> int:
    """A run could not be saved (a full disk): stop the grid, say what is kept and how to go on."""
    kept = len(store.finished())
    print(f"asgdbench: error: {error}; the grid stopped; {kept} finished run(s) are kept in "
          f"{store.runs_path}; make room, then repeat the command with --resume --out "
          f"{store.folder}", file=sys.stderr)
    return EXIT_NOT_SAVED



def load_runs(store: ResultStore) -> list[RunResult]:
    """Every finished run in the store, with a warning if a last line was cut short or a
    run is there twice."""
    results = store.load()
    if store.partial_line is not None:
        note(f"warning: line {store.partial_line} of {store.runs_path} was cut short (a run "
              f"still being written, or cut off when its process stopped) and is skipped; "
              f"--resume redoes it")
    duplicates = store.duplicates_note()
    if duplicates is not None:
        note(f"warning: {duplicates}")
    return results



def write_summary(store: ResultStore, rows: list[report.Row], table: str) -> None:
    """Rewrite the summary files; a folder that refuses them costs a warning, not the table."""
    try:
        store.write_summary(rows, table)
    except UserError as error:
        note(f"warning: {error}; the table is printed but not saved")



def summarize_folder(store: ResultStore, *, plot: bool, columns: list[str] | None) -> None:
    """Print the table of every run in the store, rewrite its summary files, plot if asked."""
    results = load_runs(store)
    rows = report.summarize(results)
    table = report.render(rows, columns)
    print(table)
    write_summary(store, rows, table)
    if plot:
        for path in plots.write_plots(store.folder, results, rows):
            print(f"plot: {path}")
    print(f"\nresults in {store.folder} ({RUNS_FILE}, {SUMMARY_CSV}, {SUMMARY_MD})")



def remove_if_empty(folder: Path) -> None:
    """Take back a result folder this command created if nothing was written to it."""
    try:
        folder.rmdir()  # only ever removes an empty folder
    except OSError:
        pass



def new_results_folder() -> Path:
    """A fresh timestamped folder under ./asgdbench-results/."""
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    folder, suffix = RESULTS_ROOT / stamp, 1
    while folder.exists():
        suffix += 1
        folder = RESULTS_ROOT / f"{stamp}-{suffix}"
    return folder

