"""The comparison table of a result folder: which columns, rendered how, and what they mean.

The rows come from :mod:`asgdbench.study.rows` (one per grid cell). The rendered table
shows a selection of :data:`COLUMNS` that fits 120 characters, and a footer that explains
each column shown and notes what the rows cannot say by themselves (threads beyond the
cores, mixed BLAS kernels). The telemetry columns are built from their declaration
(:data:`asgdbench.engine.telemetry.FIGURES`); this module declares the outcome columns.
:func:`~asgdbench.study.comparison.render_comparison` sets two result folders side by side
and :func:`~asgdbench.study.run_summary.describe_run` describes one run; both are
re-exported here, with the rows, as the report's face.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from asgdbench.engine.telemetry import FIGURES, Figure, fixed
from asgdbench.errors import UserError
from asgdbench.plugins.step_rules import DEFAULT_STEP
from asgdbench.study.comparison import render_comparison
from asgdbench.study.rows import _CONTEXT, Row, machine_label, pooled_histogram, summarize
from asgdbench.study.run_summary import describe_run
from asgdbench.study.table_format import (
    MISSING,
    NOT_CONVERGED,
    _context_value,
    _converged_cell,
    _optional_number,
    _ratio_cell,
    _time_to_target,
    markdown_table,
)

__all__ = ["COLUMNS", "MISSING", "NOT_CONVERGED", "Column", "Row", "column_names",
           "default_columns", "describe_run", "machine_label", "markdown_table",
           "pooled_histogram", "render", "render_comparison", "summarize"]


@dataclass(frozen=True)
class Column:
    """One selectable column of the table: its ``--columns`` name, header, cell and meaning."""

    name: str
    header: str
    cell: Callable[[Row], str]
    meaning: str

    @classmethod
    def of_figure(cls, figure: Figure) -> "Column":
        """The column of a declared telemetry figure."""
        return cls(figure.column, figure.header,
                   lambda row: figure.format(getattr(row, figure.name)), figure.meaning)


def column_names() -> list[str]:
    """Every column ``--columns`` accepts."""
    return [column.name for column in COLUMNS]


def default_columns(rows: Sequence[Row]) -> list[str]:
    """The columns that fit 120 characters and carry this table's metric.

    With a target: time to target and speedups. Without one, or where runs
    stopped at their budget: the training loss, test loss and test accuracy
    at the budget, so that a fixed-budget study has a metric.
    """
    targeted = any(row.target_loss is not None for row in rows)
    stopped = any(row.stopped for row in rows)
    # with step rules in the table, the mean step they took replaces the CAS column
    rules = any(row.step_rule != DEFAULT_STEP for row in rows)
    execution = ["step-factor"] if rules else ["cas"]
    if targeted and stopped:  # both metrics: the execution figures make way (see --wide)
        return ["time", "vs-seq", "vs-lock", "converged", "final-loss", "final-test-acc"]
    if targeted:
        return ["time", "vs-seq", "vs-lock", "converged", "updates", *execution, "test-acc"]
    return ["runs", "final-loss", "final-test-loss", "final-test-acc", "updates", *execution]


def render(rows: Sequence[Row], columns: Sequence[str] | None = None) -> str:
    """The table as GitHub Markdown (readable in a terminal), with its caption and footer.

    ``columns`` are names from :func:`column_names` (default: :func:`default_columns`).
    The footer explains every column shown and its unit, then notes what the
    reader must know: threads beyond the cores, cells that mixed BLAS kernels.
    """
    if not rows:
        return "No finished runs."
    chosen = [_column(name) for name in (columns or default_columns(rows))]
    context = list(_CONTEXT) + [("lr", "lr")]
    varying = [(name, title) for name, title in context
               if len({getattr(row, name) for row in rows}) > 1]
    constant = [(name, title) for name, title in context if (name, title) not in varying]
    caption = ", ".join(f"{title} {_context_value(getattr(rows[0], name))}"
                        for name, title in constant)
    leading = [(name, title) for name, title in varying if name != "lr"]
    shows_lr = ("lr", "lr") in varying
    headers = ([title for _, title in leading] + ["strategy", "threads"]
               + (["lr"] if shows_lr else []) + [column.header for column in chosen])
    body = [[_context_value(getattr(row, name)) for name, _ in leading]
            + [row.strategy, str(row.threads)] + ([f"{row.lr:g}"] if shows_lr else [])
            + [column.cell(row) for column in chosen]
            for row in rows]
    text_columns = len(leading) + 1  # the context columns and the strategy
    align = ["left"] * text_columns + ["right"] * (len(headers) - text_columns)
    table = markdown_table(headers, body, align)
    footer = "\n".join([*(f"{column.header}: {column.meaning}" for column in chosen),
                        *_notes(rows)])
    return f"{caption}\n\n{table}\n\n{footer}" if caption else f"{table}\n\n{footer}"


def _notes(rows: Sequence[Row]) -> list[str]:
    """Lines a reader needs besides the column meanings."""
    notes = []
    cores = min((row.cores for row in rows if row.cores), default=None)
    over = sorted({row.threads for row in rows if cores and row.threads > cores})
    if over:
        notes.append(f"Note: {_and(map(str, over))} threads exceed the {cores} cores the runs "
                     f"had; those rows time-share cores, so they show synchronization "
                     f"overhead, not scaling.")
    blas, blas_mixed = _provenance_notes(rows, "blas", "BLAS", "BLAS")
    machine, machine_mixed = _provenance_notes(rows, "machine", "Machine", "machines")
    return notes + blas_mixed + machine_mixed + machine + blas


def _provenance_notes(rows: Sequence[Row], field: str, title: str, plural: str
                      ) -> tuple[list[str], list[str]]:
    """(what the rows ran on, warnings) for one provenance ``field`` of the rows (BLAS, machine).

    A row whose runs differ in it (its value joins them with "; ") is warned
    about; otherwise one value is named, and several are warned about.
    """
    mixed = [row for row in rows if "; " in getattr(row, field)]
    warnings = [f"Warning: {row.strategy} at {row.threads} threads mixes runs on different "
                f"{plural} ({getattr(row, field)}); its times are not comparable."
                for row in mixed]
    values = sorted({getattr(row, field) for row in rows if getattr(row, field)})
    if mixed or not values:
        return [], warnings
    if len(values) == 1:
        return [f"{title}: {values[0]}."], warnings
    return [f"Warning: rows ran on different {plural} ({'; '.join(values)}); ratios between "
            f"them are not comparable."], warnings


def _and(items: Iterable[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"

def columns(figures: Iterable[Figure] = FIGURES) -> tuple[Column, ...]:
    """Every column, in ``--columns`` order: the outcome's, then one per telemetry figure,
    then the converged runs' accuracy."""
    return (*_OUTCOME_COLUMNS, *(Column.of_figure(figure) for figure in figures),
            *_TRAILING_COLUMNS)


_OUTCOME_COLUMNS = (
    Column("time", "time to target [s]", lambda row: _time_to_target(row),
           "seconds from the start until the smoothed training loss (mean of the last "
           "minibatch losses) first reached the target; median (min-max) over converged runs."),
    Column("vs-seq", "vs seq", lambda row: _ratio_cell(row.speedup_vs_seq, row.seq_overlaps),
           "speedup over seq at 1 thread, same lr: its median time to target / this row's; "
           "~ marks a ratio whose two min-max intervals overlap, i.e. within run-to-run noise."),
    Column("vs-lock", "vs lock", lambda row: _ratio_cell(row.speedup_vs_lock, row.lock_overlaps),
           "the same against lock at the same thread count."),
    Column("converged", "converged", _converged_cell,
           "runs that reached the target / runs (diverged: the loss exceeded 10x its start)."),
    Column("runs", "runs", lambda row: f"{row.runs}" + (f", {row.diverged} diverged"
                                                       if row.diverged else ""),
           "runs in the cell (diverged: the loss exceeded 10x its start)."),
    Column("final-loss", "final loss", lambda row: _optional_number(row.final_loss),
           "runs that stopped at their time or update budget: smoothed training loss there "
           "(median)."),
    Column("final-test-loss", "final test loss",
           lambda row: _optional_number(row.final_test_loss),
           "those runs' loss on the held-out test set (median)."),
    Column("final-test-acc", "final acc",
           lambda row: fixed("{:.3f}")(row.final_test_accuracy),
           "those runs' held-out accuracy, 0-1 (median)."),
)
_TRAILING_COLUMNS = (
    Column("test-acc", "acc", lambda row: fixed("{:.3f}")(row.test_accuracy),
           "held-out test accuracy, 0-1, at the end of the converged runs (median)."),
)

COLUMNS = columns()


def _column(name: str) -> Column:
    for column in COLUMNS:
        if column.name == name:
            return column
    raise UserError(f"unknown column {name!r} (valid: {', '.join(column_names())})")
