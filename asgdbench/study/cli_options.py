"""The command line's vocabulary: argument types (one-line errors), shared options, and
what they mean for a command (run settings, table columns, the data folder)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from asgdbench.engine.run_result import WORKLOAD_DEFAULT
from asgdbench.errors import UserError
from asgdbench.study import cluster, report
from asgdbench.workloads.datasets import DATA_ENV_VAR


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (a UserError), not usage plus message."""


    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see {self.prog} --help)")



def checked(convert: Callable[[str], Any], ok: Callable[[Any], bool], expected: str):
    """An argparse type: ``convert`` the text, then require ``ok`` of the value."""
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, not {text!r}")
        return value
    return parse



positive_int = checked(int, lambda v: v >= 1, "an integer >= 1")
seed_number = checked(int, lambda v: v >= 0, "an integer >= 0")
positive_float = checked(float, lambda v: math.isfinite(v) and v > 0, "a number > 0")
column_name = checked(str, lambda v: v in report.column_names(),
                   f"a column name ({', '.join(report.column_names())})")
folder_path = checked(lambda text: Path(text) if text.strip() else None, lambda v: True,
                   "a folder path")


def or_none(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """Accept ``none`` (a stop rule switched off) besides what ``parse`` accepts."""
    def parse_or_none(text: str) -> Any:
        return None if text.strip().lower() == "none" else parse(text)
    return parse_or_none



def list_of(parse: Callable[[str], Any]) -> Callable[[str], list]:
    """A comma-separated list of values that ``parse`` accepts."""
    def parse_list(text: str) -> list:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, not {text!r}")
        return [parse(item) for item in items]
    return parse_list



def dtype_name(text: str) -> str:
    if text not in ("float32", "float64"):
        raise argparse.ArgumentTypeError(f"dtype must be float32 or float64, not {text!r}")
    return text



def joined(values: Sequence) -> str:
    return ",".join(map(str, values))



def add_common(parser: argparse.ArgumentParser, *, prefix: str) -> None:
    """Options every command takes, also accepted before the command (``prefix``: their dest)."""
    parser.add_argument("--plugin", dest=f"{prefix}plugins", action="append", default=[],
                        metavar="FILE.py",
                        help="load a drop-in strategy, step rule or workload file (repeatable)")
    parser.add_argument("--debug", dest=f"{prefix}debug", action="store_true",
                        help="on an error, print the full traceback before the one-line message")
    parser.add_argument("--data-dir", dest=f"{prefix}data_dir", metavar="DIR",
                        help=f"folder holding downloaded data sets, e.g. DIR/mnist/ "
                             f"(default: ${DATA_ENV_VAR}, else the user cache)")



def add_run_settings(parser: argparse.ArgumentParser) -> None:
    """Options that run and compare share: minibatch size and stop rules."""
    parser.add_argument("--batch-size", type=positive_int, metavar="B",
                        help="minibatch size (default: the workload's)")
    parser.add_argument("--target-loss", type=or_none(positive_float),
                        default=WORKLOAD_DEFAULT, metavar="LOSS",
                        help="smoothed training loss that counts as converged; none: run to "
                             "the budget (default: the workload's)")
    parser.add_argument("--max-time", type=or_none(positive_float),
                        default=WORKLOAD_DEFAULT, metavar="S",
                        help="seconds before a run stops as timed out; none: no limit "
                             "(default: the workload's)")
    parser.add_argument("--max-updates", type=positive_int, metavar="U",
                        help="stop after exactly U updates (default: no limit)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="floating-point type of the model (default: float32)")



def add_table_options(parser: argparse.ArgumentParser) -> None:
    """Which columns the table shows."""
    columns = parser.add_mutually_exclusive_group()
    columns.add_argument("--columns", type=list_of(column_name), metavar="NAME,NAME,...",
                         help=f"table columns after strategy and threads (default: those that "
                              f"fit 120 characters; any of: {joined(report.column_names())})")
    columns.add_argument("--wide", action="store_true", help="every column")



def add_cluster_option(parser: argparse.ArgumentParser) -> None:
    """``--cluster ADDRESS``: the grid's runs go to a dask cluster (see :func:`on_cluster`)."""
    parser.add_argument("--cluster", dest="cluster_address", type=cluster_address,
                        metavar="ADDRESS",
                        help="run the grid on a dask.distributed cluster: a scheduler address "
                             "(tcp://host:8786) whose workers were started with "
                             f"`{cluster.WORKER_COMMAND.format(address='ADDRESS')}`, or local:N "
                             "for N worker processes here (to check the set-up: their timings "
                             f"overlap); needs {cluster.INSTALL_HINT}")



def cluster_address(text: str) -> cluster.ClusterAddress:
    try:
        return cluster.parse_address(text)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None



def run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The options of :func:`add_run_settings`, as keyword arguments of :func:`grid.expand`."""
    return {"batch_size": args.batch_size, "target_loss": args.target_loss,
            "max_time": args.max_time, "max_updates": args.max_updates, "dtype": args.dtype}



def table_columns(args: argparse.Namespace) -> list[str] | None:
    """The table's columns: every one with --wide, else --columns, else the default."""
    return report.column_names() if args.wide else args.columns



def data_dir_of(args: argparse.Namespace) -> str | None:
    return args.data_dir or args.global_data_dir

