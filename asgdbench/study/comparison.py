"""Two result folders side by side, cell by cell, like ``asv compare``."""

from __future__ import annotations

from collections.abc import Sequence

from asgdbench.study.rows import _CONTEXT, Row
from asgdbench.study.table_format import (
    MISSING,
    _context_value,
    _converged_cell,
    _interval,
    markdown_table,
)


def render_comparison(before: Sequence[Row], after: Sequence[Row]) -> str:
    """Two result folders cell by cell, like ``asv compare``: medians, intervals and their ratio.

    Cells match on workload, batch size, target, strategy, threads and step
    size. The metric is the time to target; cells that did not converge in
    both folders compare their final training loss at the budget instead.
    """
    if not before and not after:
        return "No finished runs."
    old, new = ({_comparison_key(row): row for row in rows} for rows in (before, after))
    cells = list(dict.fromkeys([*old, *new]))
    varying = [(index, title) for index, (_, title) in enumerate(_CONTEXT)
               if len({cell[0][index] for cell in cells}) > 1]
    several_lrs = len({cell[3] for cell in cells}) > 1
    headers = ([title for _, title in varying] + ["strategy", "threads"]
               + (["lr"] if several_lrs else []) + ["metric", "before", "after", "ratio",
                                                    "converged"])
    body = []
    for cell in cells:
        a, b = old.get(cell), new.get(cell)
        metric, first, second, ratio = _compared(a, b)
        body.append([_context_value(cell[0][index]) for index, _ in varying]
                    + [cell[1], str(cell[2])] + ([f"{cell[3]:g}"] if several_lrs else [])
                    + [metric, first, second, ratio,
                       f"{_converged_cell(a) if a else MISSING} -> "
                       f"{_converged_cell(b) if b else MISSING}"])
    align = (["left"] * (len(varying) + 1) + ["right"] * (2 if several_lrs else 1)
             + ["left"] + ["right"] * 4)
    footer = ("time: time to target [s], median (min-max) over converged runs; loss: smoothed "
              "training loss at the budget, median (min-max) over runs that stopped there.\n"
              "ratio: after / before; + larger (slower, or a higher loss), - smaller, ~ the "
              "min-max intervals overlap: no change beyond run-to-run noise; no mark: a single run "
              "on one side, so the noise is unknown.")
    return f"{markdown_table(headers, body, align)}\n\n{footer}"


def _comparison_key(row: Row) -> tuple:
    return (row.context, row.strategy, row.threads, row.lr)


def _compared(before: Row | None, after: Row | None) -> tuple[str, str, str, str]:
    """The metric both cells have, their values and the ratio (after / before) with its mark."""
    def time(row: Row) -> tuple[float, float, float, int] | None:
        if row is None or row.time_to_target_median is None:
            return None
        return (row.time_to_target_median, row.time_to_target_min, row.time_to_target_max,
                row.converged)

    def loss(row: Row) -> tuple[float, float, float, int] | None:
        if row is None or row.final_loss is None:
            return None
        return row.final_loss, row.final_loss_min, row.final_loss_max, row.stopped

    metric, values = "time", (time(before), time(after))
    losses = (loss(before), loss(after))
    # the final loss where both cells stopped at a budget, or where no side has a time at
    # all (a fixed-budget cell found in one folder only)
    if None in values and any(losses) and (all(losses) or not any(values)):
        metric, values = "loss", losses
    shown = [MISSING if value is None else _interval(*value[:3]) for value in values]
    if None in values:
        return metric, *shown, MISSING
    (old, old_min, old_max, old_runs), (new, new_min, new_max, new_runs) = values
    ratio = new / old
    if min(old_runs, new_runs) < 2:
        return metric, *shown, f"{ratio:.2f}x"  # one run: no interval to judge noise by
    mark = "~" if old_min <= new_max and new_min <= old_max else ("+" if ratio > 1 else "-")
    return metric, *shown, f"{mark} {ratio:.2f}x"