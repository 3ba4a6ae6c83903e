"""How the report's tables write numbers: Markdown that lines up, three significant digits."""

from __future__ import annotations

import math
from collections.abc import Sequence

from asgdbench.engine.telemetry import MISSING, fixed
from asgdbench.study.rows import Row

__all__ = ["MISSING", "NOT_CONVERGED", "markdown_table"]

NOT_CONVERGED = "not converged"


def markdown_table(headers: Sequence[str], body: Sequence[Sequence[str]],
                   align: Sequence[str]) -> str:
    """A GitHub Markdown table padded to line up in a terminal, no wider than its widest cells."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *body)]

    def line(cells: Sequence[str]) -> str:
        padded = [cell.ljust(width) if side == "left" else cell.rjust(width)
                  for cell, width, side in zip(cells, widths, align)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (width + 1) + ":") if side == "right" else "-" * (width + 2)
                          for width, side in zip(widths, align)) + "|"
    return "\n".join([line(headers), rule, *(line(row) for row in body)])


def _number(value: float) -> str:
    """Three significant digits, trailing zeros kept so that a column lines up."""
    if value <= 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, 2 - math.floor(math.log10(value)))
    return f"{value:.{decimals}f}"


def _optional_number(value: float | None) -> str:
    return MISSING if value is None else _number(value)


def _interval(median: float, low: float, high: float) -> str:
    if low == high:
        return _number(median)
    return f"{_number(median)} ({_number(low)}-{_number(high)})"


def _ratio_cell(value: float | None, noisy: bool) -> str:
    return fixed("{:.2f}x")(value) + ("~" if noisy else "")


def _converged_cell(row: Row) -> str:
    return f"{row.converged}/{row.runs}" + (f", {row.diverged} diverged" if row.diverged else "")


def _time_to_target(row: Row) -> str:
    if row.time_to_target_median is None:
        return NOT_CONVERGED
    if row.converged == 1:
        return _number(row.time_to_target_median)
    return _interval(row.time_to_target_median, row.time_to_target_min, row.time_to_target_max)


def _context_value(value: float | str | None) -> str:
    if value is None:
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)
