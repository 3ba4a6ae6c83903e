"""The ``asgdbench`` command line: list, run, compare, report and download.

Thin on purpose: it parses arguments, calls :mod:`~asgdbench.grid`,
:mod:`~asgdbench.results`, :mod:`~asgdbench.report` and :mod:`~asgdbench.plots`,
and prints. Every mistake a user can make (a bad name or value, missing data,
an unwritable folder, a malformed command line) ends as one line on stderr and
exit code 2, found before the first run starts.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from asgdbench import grid, plots, report
from asgdbench.errors import UserError
from asgdbench.registry import available_strategies, load_plugin_file
from asgdbench.result import RunResult
from asgdbench.results import RUNS_FILE, SUMMARY_CSV, SUMMARY_MD, ResultStore
from asgdbench.runner import WORKLOAD_DEFAULT
from asgdbench.workloads import available_workloads, get_workload, load_workload
from asgdbench.workloads.datasets import DATA_ENV_VAR, download_mnist, resolve_data_dir

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
RESULTS_ROOT = Path("asgdbench-results")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``asgdbench`` and ``python -m asgdbench``; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
        for plugin in [*args.global_plugins, *args.plugins]:
            load_plugin_file(plugin)
        return args.handler(args)
    except UserError as error:
        print(f"asgdbench: error: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("asgdbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (`asgdbench list | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


# -- commands -------------------------------------------------------------------

def _list(args: argparse.Namespace) -> int:
    strategies = available_strategies()
    workloads = available_workloads()
    width = max(map(len, [*strategies, *workloads])) + 2
    print("Strategies (--algorithm NAME[:PARAM=VALUE...]):")
    for name, strategy in strategies.items():
        limit = "" if strategy.max_threads is None else f" (threads <= {strategy.max_threads})"
        print(f"  {name:<{width}}{strategy.summary}{limit}")
        for param in strategy.params:
            print(f"  {'':<{width}}  {param.name}={param.format(param.default)} "
                  f"({param.kind.replace('_', ' ')}): {param.doc}")
    print("\nWorkloads (--workload NAME):")
    for name, spec in workloads.items():
        mark = " [default]" if name == grid.DEFAULT_WORKLOAD else ""
        defaults = spec.defaults
        target = "none" if defaults.target_loss is None else f"{defaults.target_loss:g}"
        print(f"  {name:<{width}}{spec.summary}{mark}")
        print(f"  {'':<{width}}  defaults: lr {defaults.lr:g}, batch size {defaults.batch_size}, "
              f"target loss {target}, max time {defaults.max_time:g} s")
    return 0


def _run(args: argparse.Namespace) -> int:
    spec = get_workload(args.workload)
    [config] = grid.expand(spec, [args.algorithm], [args.threads],
                           None if args.lr is None else [args.lr], first_seed=args.seed,
                           **_settings(args))
    workload = load_workload(spec.name, data_dir=_data_dir(args), dtype=args.dtype)
    store = None if args.out is None else ResultStore.open_for_writing(args.out, append=True)
    result = grid.run_cell(workload, config)
    print(report.describe_run(result))
    if store is not None:
        store.append(result)
        results, _, _ = _refresh_summary(store)
        print(f"\nsaved to {store.runs_path} ({len(results)} run(s) in the folder)")
    return 0


def _compare(args: argparse.Namespace) -> int:
    if args.resume and args.out is None:
        raise UserError("--resume needs --out DIR, the folder of the grid to finish")
    if args.plot:
        plots.require_matplotlib()
    spec = get_workload(args.workload)
    cells = grid.expand(spec, args.algorithms, args.threads, args.lr, args.repeats,
                        first_seed=args.seed, **_settings(args))
    workload = load_workload(spec.name, data_dir=_data_dir(args), dtype=args.dtype)
    store = ResultStore.open_for_writing(args.out or _new_results_folder(), append=args.resume)
    todo = grid.pending(cells, store.finished_keys())
    print(f"asgdbench: {len(todo)} of {len(cells)} runs to do on {spec.name}; "
          f"results go to {store.folder}", file=sys.stderr)
    try:
        grid.run_grid(workload, todo, store.append)
    except KeyboardInterrupt:
        kept = len(store.load())
        print(f"asgdbench: interrupted; {kept} finished run(s) are kept in {store.runs_path}; "
              f"to finish, repeat the command with --resume --out {store.folder}", file=sys.stderr)
        return EXIT_INTERRUPTED
    _summarize(store, plot=args.plot)
    return 0


def _report(args: argparse.Namespace) -> int:
    if args.plot:
        plots.require_matplotlib()
    _summarize(ResultStore(args.folder), plot=args.plot)
    return 0


def _download(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args)
    print(f"asgdbench: fetching MNIST into {resolve_data_dir(data_dir) / 'mnist'}", file=sys.stderr)
    folder = download_mnist(data_dir)
    print(f"MNIST is ready in {folder}")
    return 0


def _refresh_summary(store: ResultStore) -> tuple[list[RunResult], list[report.Row], str]:
    """Tabulate every run in the store and rewrite its summary files."""
    results = store.load()
    rows = report.summarize(results)
    table = report.render(rows)
    store.write_summary(rows, table)
    return results, rows, table


def _summarize(store: ResultStore, *, plot: bool) -> None:
    """Print the table of every run in the store, rewrite its summary files, plot if asked."""
    results, rows, table = _refresh_summary(store)
    print(table)
    if plot:
        for path in plots.write_plots(store.folder, results, rows):
            print(f"plot: {path}")
    print(f"\nresults in {store.folder} ({RUNS_FILE}, {SUMMARY_CSV}, {SUMMARY_MD})")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The options of :func:`_add_run_settings`, as keyword arguments of :func:`grid.expand`."""
    return {"batch_size": args.batch_size, "target_loss": args.target_loss,
            "max_time": args.max_time, "max_updates": args.max_updates, "dtype": args.dtype}


def _data_dir(args: argparse.Namespace) -> str | None:
    return args.data_dir or args.global_data_dir


def _new_results_folder() -> Path:
    """A fresh timestamped folder under ./asgdbench-results/."""
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    folder, suffix = RESULTS_ROOT / stamp, 1
    while folder.exists():
        suffix += 1
        folder = RESULTS_ROOT / f"{stamp}-{suffix}"
    return folder


# -- argument parsing -------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (a UserError), not usage plus message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see {self.prog} --help)")


def _checked(convert: Callable[[str], Any], ok: Callable[[Any], bool], expected: str):
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


_positive_int = _checked(int, lambda v: v >= 1, "an integer >= 1")
_seed = _checked(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _checked(float, lambda v: math.isfinite(v) and v > 0, "a number > 0")


def _or_none(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """Accept ``none`` (a stop rule switched off) besides what ``parse`` accepts."""
    def parse_or_none(text: str) -> Any:
        return None if text.strip().lower() == "none" else parse(text)
    return parse_or_none


def _list_of(parse: Callable[[str], Any]) -> Callable[[str], list]:
    """A comma-separated list of values that ``parse`` accepts."""
    def parse_list(text: str) -> list:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, not {text!r}")
        return [parse(item) for item in items]
    return parse_list


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: global options and one subcommand each."""
    parser = _Parser(
        prog="asgdbench",
        description="Benchmark shared-memory synchronization strategies for asynchronous "
                    "parallel SGD (Leashed-SGD, HOGWILD!, lock-based, ...).",
    )
    _add_common(parser, prefix="global_")
    commands = parser.add_subparsers(title="commands", dest="command", required=True,
                                     metavar="COMMAND", parser_class=_Parser)
    common = _Parser(add_help=False)
    _add_common(common, prefix="")

    listing = commands.add_parser("list", parents=[common],
                                  help="registered strategies and workloads",
                                  description="List the registered strategies (built-in, entry "
                                              "points, plugins) and workloads.")
    listing.set_defaults(handler=_list)

    one = commands.add_parser("run", parents=[common], help="one run, printed as a short report",
                              description="Train one workload under one strategy and report.")
    one.add_argument("--workload", default=grid.DEFAULT_WORKLOAD,
                     help=f"workload name (default: {grid.DEFAULT_WORKLOAD}; see `asgdbench list`)")
    one.add_argument("--algorithm", required=True, metavar="SPEC",
                     help="strategy spec, e.g. lock or leashed:tp=inf")
    one.add_argument("--threads", type=_positive_int, required=True, metavar="N")
    one.add_argument("--lr", type=_positive_float, help="step size (default: the workload's)")
    one.add_argument("--seed", type=_seed, default=0, help="random seed (default: 0)")
    _add_run_settings(one)
    one.add_argument("--out", type=Path, metavar="DIR",
                     help=f"also append the run to DIR/{RUNS_FILE} and refresh the summary")
    one.set_defaults(handler=_run)

    compare = commands.add_parser(
        "compare", parents=[common], help="the grid strategies x threads x lr x repeats",
        description="Run every strategy at every thread count, step size and seed, one run at "
                    "a time, and tabulate time to target, speedups and telemetry. With no "
                    "options: the default job on mlp-digits.")
    compare.add_argument("--workload", default=grid.DEFAULT_WORKLOAD,
                         help=f"workload name (default: {grid.DEFAULT_WORKLOAD})")
    compare.add_argument("--algorithms", type=_list_of(str), default=list(grid.DEFAULT_ALGORITHMS),
                         metavar="SPEC,SPEC,...",
                         help=f"strategy specs (default: {_joined(grid.DEFAULT_ALGORITHMS)})")
    compare.add_argument("--threads", type=_list_of(_positive_int), metavar="N,N,...",
                         default=list(grid.DEFAULT_THREADS),
                         help=f"thread counts (default: {_joined(grid.DEFAULT_THREADS)}; "
                              "seq runs at 1 only)")
    compare.add_argument("--lr", type=_list_of(_positive_float), metavar="LR,LR,...",
                         help="step sizes (default: the workload's)")
    compare.add_argument("--repeats", type=_positive_int, default=grid.DEFAULT_REPEATS,
                         help="seeds per cell (default: %(default)s)")
    compare.add_argument("--seed", type=_seed, default=0,
                         help="first seed; repeats use seed, seed+1, ... (default: 0)")
    _add_run_settings(compare)
    compare.add_argument("--out", type=Path, metavar="DIR",
                         help=f"result folder (default: a new timestamped folder under "
                              f"./{RESULTS_ROOT}/)")
    compare.add_argument("--resume", action="store_true",
                         help=f"skip the runs already in --out DIR/{RUNS_FILE}")
    compare.add_argument("--plot", action="store_true",
                         help=f"also draw PNG figures (needs {plots.INSTALL_HINT})")
    compare.set_defaults(handler=_compare)

    again = commands.add_parser("report", parents=[common], help="re-render a result folder",
                                description=f"Re-render the table (and with --plot the figures) "
                                            f"from DIR/{RUNS_FILE}, without running anything.")
    again.add_argument("folder", type=Path, metavar="DIR")
    again.add_argument("--plot", action="store_true",
                       help=f"also draw PNG figures (needs {plots.INSTALL_HINT})")
    again.set_defaults(handler=_report)

    fetch = commands.add_parser("download", parents=[common], help="download a data set",
                                description="Download a data set into the data folder "
                                            f"(--data-dir, else ${DATA_ENV_VAR}, else the "
                                            "user cache).")
    fetch.add_argument("dataset", choices=["mnist"])
    fetch.set_defaults(handler=_download)
    return parser


def _joined(values: Sequence) -> str:
    return ",".join(map(str, values))


def _add_common(parser: argparse.ArgumentParser, *, prefix: str) -> None:
    """Options every command takes, also accepted before the command (``prefix``: their dest)."""
    parser.add_argument("--plugin", dest=f"{prefix}plugins", action="append", default=[],
                        metavar="FILE.py", help="load a drop-in strategy file (repeatable)")
    parser.add_argument("--data-dir", dest=f"{prefix}data_dir", metavar="DIR",
                        help=f"folder holding downloaded data sets, e.g. DIR/mnist/ "
                             f"(default: ${DATA_ENV_VAR}, else the user cache)")


def _add_run_settings(parser: argparse.ArgumentParser) -> None:
    """Options that run and compare share: minibatch size and stop rules."""
    parser.add_argument("--batch-size", type=_positive_int, metavar="B",
                        help="minibatch size (default: the workload's)")
    parser.add_argument("--target-loss", type=_or_none(_positive_float),
                        default=WORKLOAD_DEFAULT, metavar="LOSS",
                        help="smoothed training loss that counts as converged; none: run to "
                             "the budget (default: the workload's)")
    parser.add_argument("--max-time", type=_or_none(_positive_float),
                        default=WORKLOAD_DEFAULT, metavar="S",
                        help="seconds before a run stops as timed out; none: no limit "
                             "(default: the workload's)")
    parser.add_argument("--max-updates", type=_positive_int, metavar="U",
                        help="stop after exactly U updates (default: no limit)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="floating-point type of the model (default: float32)")
