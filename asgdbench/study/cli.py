"""The ``asgdbench`` command line: list, run, compare, reproduce, report, check and download.

Thin on purpose: this module builds the parser and dispatches; the commands are in
:mod:`~asgdbench.study.commands`, the argument types and shared options in
:mod:`~asgdbench.study.cli_options`, a command's result folder in
:mod:`~asgdbench.study.cli_folders` (``check`` stays here). Every mistake a user can make (a bad name or value, missing data,
an unwritable folder or one another process is writing, a malformed command
line) ends as one line on stderr and exit code 2, found before the first run
starts. A run that cannot be saved (a full disk) stops the command with one
line and exit code 1; the runs saved before it stay, and ``--resume`` goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from asgdbench.engine.choice import Choice, parse_step, parse_strategy, run_label
from asgdbench.errors import UserError
from asgdbench.plugins.files import load_plugin_file
from asgdbench.plugins.step_rules import DEFAULT_STEP
from asgdbench.plugins.workloads import get_workload
from asgdbench.study import claims as claims_module
from asgdbench.study import cluster, grid, plots
from asgdbench.study.cli_folders import EXIT_INTERRUPTED, EXIT_NOT_SAVED, RESULTS_ROOT, note
from asgdbench.study.cli_options import (
    Parser,
    add_cluster_option,
    add_common,
    add_run_settings,
    add_table_options,
    data_dir_of,
    dtype_name,
    folder_path,
    joined,
    list_of,
    positive_float,
    positive_int,
    seed_number,
)
from asgdbench.study.commands import (
    cache_command,
    compare_command,
    download_command,
    list_command,
    report_command,
    reproduce_command,
    run_command,
)
from asgdbench.study.result_folder import RUNS_FILE
from asgdbench.version import __version__
from asgdbench.workloads.datasets import DATA_ENV_VAR
from asgdbench.workloads.download import DOWNLOADS

EXIT_USER_ERROR = 2
__all__ = ["EXIT_INTERRUPTED", "EXIT_NOT_SAVED", "EXIT_USER_ERROR", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``asgdbench`` and ``python -m asgdbench``; returns the exit code."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        for plugin in [*args.global_plugins, *args.plugins]:
            load_plugin_file(plugin)
        with contextlib.ExitStack() as args.held:  # a result folder's writer lock, say
            return args.handler(args)
    except UserError as error:
        if debug:  # the whole story: the chained exception of a plugin, say
            traceback.print_exception(error, file=sys.stderr)
        print(f"asgdbench: error: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("asgdbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (`asgdbench list | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0



def build_parser() -> argparse.ArgumentParser:
    """The whole command line: global options and one subcommand each."""
    parser = Parser(
        prog="asgdbench",
        description="Benchmark shared-memory synchronization strategies for asynchronous "
                    "parallel SGD (Leashed-SGD, HOGWILD!, lock-based, ...).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_common(parser, prefix="global_")
    commands = parser.add_subparsers(title="commands", dest="command", required=True,
                                     metavar="COMMAND", parser_class=Parser)
    common = Parser(add_help=False)
    add_common(common, prefix="")

    listing = commands.add_parser("list", parents=[common],
                                  help="registered strategies and workloads",
                                  description="List the registered strategies (built-in, entry "
                                              "points, plugins) and workloads.")
    listing.set_defaults(handler=list_command)

    one = commands.add_parser("run", parents=[common], help="one run, printed as a short report",
                              description="Train one workload under one strategy and report.")
    one.add_argument("--workload", default=grid.DEFAULT_WORKLOAD,
                     help=f"workload name (default: {grid.DEFAULT_WORKLOAD}; see `asgdbench list`)")
    one.add_argument("--strategy", "--algorithm", dest="strategy", required=True, metavar="SPEC",
                     help="strategy spec, e.g. lock or leashed:tp=inf (--algorithm: the same)")
    one.add_argument("--threads", type=positive_int, required=True, metavar="N")
    one.add_argument("--lr", type=positive_float, help="step size (default: the workload's)")
    one.add_argument("--step", default=DEFAULT_STEP, metavar="RULE",
                     help="step-size rule, e.g. inverse or tail:amplitude=0.5: the step of each "
                          f"apply from its staleness (default: {DEFAULT_STEP}; see `asgdbench "
                          "list`)")
    one.add_argument("--seed", type=seed_number, default=0, help="random seed (default: 0)")
    add_run_settings(one)
    one.add_argument("--out", type=folder_path, metavar="DIR",
                     help=f"also append the run to DIR/{RUNS_FILE} and refresh the summary")
    one.set_defaults(handler=run_command)

    compare = commands.add_parser(
        "compare", parents=[common], help="the grid strategies x threads x lr x repeats",
        description="Run every strategy at every thread count, step size and seed, one run at "
                    "a time, and tabulate time to target, speedups and telemetry. With no "
                    "options: the default job on mlp-digits.")
    compare.add_argument("--workload", default=grid.DEFAULT_WORKLOAD,
                         help=f"workload name (default: {grid.DEFAULT_WORKLOAD})")
    compare.add_argument("--strategies", "--algorithms", dest="strategies", type=list_of(str),
                         default=list(grid.DEFAULT_STRATEGIES), metavar="SPEC,SPEC,...",
                         help=f"strategy specs (default: {joined(grid.DEFAULT_STRATEGIES)}; "
                              "--algorithms: the same)")
    compare.add_argument("--threads", type=list_of(positive_int), metavar="N,N,...",
                         default=list(grid.DEFAULT_THREADS),
                         help=f"thread counts (default: {joined(grid.DEFAULT_THREADS)}; "
                              "seq runs at 1 only)")
    compare.add_argument("--step", "--steps", dest="steps", type=list_of(str),
                         default=[DEFAULT_STEP], metavar="RULE,RULE,...",
                         help=f"step-size rules, a grid axis (default: {DEFAULT_STEP}; see "
                              "`asgdbench list`)")
    compare.add_argument("--lr", type=list_of(positive_float), metavar="LR,LR,...",
                         help="step sizes (default: the workload's)")
    compare.add_argument("--repeats", type=positive_int, default=grid.DEFAULT_REPEATS,
                         help="seeds per cell (default: %(default)s)")
    compare.add_argument("--seed", type=seed_number, default=0,
                         help="first seed; repeats use seed, seed+1, ... (default: 0)")
    compare.add_argument("--order", choices=grid.ORDERS, default=grid.INTERLEAVED,
                         help="interleaved: rounds of one seed each, the cells of a round in a "
                              "seeded shuffled order, so load drift falls on every strategy "
                              "alike; strategy: each strategy's runs together, seeds innermost "
                              "(default: %(default)s)")
    compare.add_argument("--order-seed", type=seed_number, metavar="N",
                         help=f"seed of the interleaved order, recorded in runs.jsonl "
                              f"(default: {grid.DEFAULT_ORDER_SEED})")
    add_run_settings(compare)
    compare.add_argument("--out", type=folder_path, metavar="DIR",
                         help=f"result folder (default: a new timestamped folder under "
                              f"./{RESULTS_ROOT}/)")
    compare.add_argument("--resume", action="store_true",
                         help=f"skip the runs already in --out DIR/{RUNS_FILE}")
    compare.add_argument("--plot", action="store_true",
                         help=f"also draw PNG figures (needs {plots.INSTALL_HINT})")
    add_table_options(compare)
    add_cluster_option(compare)
    compare.set_defaults(handler=on_cluster(compare_command))

    again = commands.add_parser(
        "report", parents=[common], help="re-render a result folder, or compare two",
        description=f"Re-render the table (and with --plot the figures) from DIR/{RUNS_FILE}, "
                    f"without running anything. With two folders, compare them cell by cell "
                    f"(before, after): the ratio of median times with their min-max "
                    f"intervals, as asv compare does. A folder made by `asgdbench reproduce` "
                    f"gets its claims report (report.md, report.html) rendered again.")
    again.add_argument("folders", type=folder_path, nargs="+", metavar="DIR",
                       help="a result folder; two: BEFORE AFTER")
    again.add_argument("--plot", action="store_true",
                       help=f"also draw PNG figures (needs {plots.INSTALL_HINT})")
    add_table_options(again)
    again.set_defaults(handler=report_command)

    _add_reproduce_command(commands, common)
    _add_cache_command(commands, common)

    fetch = commands.add_parser("download", parents=[common], help="download a data set",
                                description="Download a data set into the data folder "
                                            f"(--data-dir, else ${DATA_ENV_VAR}, else the "
                                            "user cache).")
    fetch.add_argument("dataset", choices=list(DOWNLOADS))
    fetch.set_defaults(handler=download_command)

    conformance = commands.add_parser(
        "check", parents=[common], help="hold a strategy, step rule or workload to its contract",
        description="Run the conformance checks on a plugin, one PASS/FAIL line per property "
                    "(INFO: reported, not judged); exit status 1 if any fails. A strategy "
                    "(SPEC or strategy:SPEC): exact update budget, applied + dropped == "
                    "computed, consistency where it claims it, bounded memory, clean stops, a "
                    "readable final vector. A step rule (step:RULE): bounded factors over a "
                    "sweep of staleness values and thread ids, deterministic given the "
                    "staleness, state race-free under more threads than cores, a JSON-ready "
                    "inspect(). A workload (workload:NAME): data present, shapes, gradient "
                    "against central differences, its defaults converging under seq within "
                    "its time limit (a real run).")
    conformance.add_argument("spec", metavar="SPEC",
                             help="what to check: a strategy spec (leashed:tp=1, or "
                                  "strategy:leashed:tp=1), step:RULE (step:tail:amplitude=0.5) "
                                  "or workload:NAME (workload:mlp-digits)")
    conformance.add_argument("--step", metavar="RULE",
                             help=f"strategies only: the step-size rule every check runs with "
                                  f"(default: {DEFAULT_STEP})")
    conformance.add_argument("--threads", type=positive_int, default=16,
                             help="strategies and step rules: threads, whatever the cores "
                                  "(default: 16)")
    conformance.add_argument("--updates", type=positive_int, default=5_000,
                             help="strategies: update budget of the exact runs (default: 5000; "
                                  "less for strategies slower than that here)")
    conformance.add_argument("--calls", type=positive_int, default=20_000,
                             help="step rules: calls per thread (default: 20000)")
    conformance.add_argument("--max-factor", type=positive_float, default=2.0, metavar="F",
                             help="step rules: the largest step / lr allowed (default: 2)")
    conformance.add_argument("--no-converge", dest="converge", action="store_false",
                             help="workloads: leave out the seq run to the target loss")
    conformance.add_argument("--timeout", type=positive_float, default=60.0, metavar="S",
                             help="strategies and step rules: longest a single check may run "
                                  "before it counts as failed (default: 60; a workload's run "
                                  "has its own time limit)")
    conformance.set_defaults(handler=_check)
    return parser


CHECK_KINDS = ("strategy", "step", "workload")
"""The prefixes of ``asgdbench check``'s SPEC: ``step:RULE``, ``workload:NAME``; a SPEC
without one is a strategy's."""


def _check(args: argparse.Namespace) -> int:
    kind, _, rest = args.spec.partition(":")
    if kind not in CHECK_KINDS or not rest.strip():
        kind, rest = "strategy", args.spec
    if kind != "strategy" and args.step is not None:
        raise UserError(f"--step is the step rule a strategy is checked with; to check a step "
                        f"rule, name it: asgdbench check step:{args.step}")
    if kind == "step":
        from asgdbench.engine.step_rule_checks import check_step_rule

        step = parse_step(rest)
        checks = check_step_rule(step, threads=args.threads, calls_per_thread=args.calls,
                                 max_factor=args.max_factor, watchdog_s=args.timeout)
        label = f"step rule {step.label}"
    elif kind == "workload":
        from asgdbench.engine.workload_checks import check_workload

        spec = get_workload(rest.strip())
        checks = check_workload(spec, data_dir=data_dir_of(args), converge=args.converge)
        label = f"workload {spec.name}"
    else:
        from asgdbench.engine.checks import check_strategy

        strategy, step = parse_strategy(rest), parse_step(args.step)
        checks = check_strategy(strategy, threads=args.threads, updates=args.updates,
                                watchdog_s=args.timeout, step=step)
        label = run_label(Choice.of(strategy), Choice.of(step))
    for check in checks:
        print(check.line(), flush=True)
    failed = sum(check.passed is False for check in checks)
    print(f"{label}: {len(checks) - failed} of {len(checks)} checks hold"
          + (f", {failed} FAILED" if failed else ""))
    return 1 if failed else 0



def _add_reproduce_command(commands: Any, common: argparse.ArgumentParser) -> None:
    """``asgdbench reproduce``: the paper's claims, run and judged here."""
    numbers = joined(claims_module.CLAIM_NUMBERS)
    titles = "; ".join(f"{claim.number} {claim.title.lower()}" for claim in claims_module.CLAIMS)
    again = commands.add_parser(
        "reproduce", parents=[common], help="run and judge the paper's claims on this machine",
        description=f"Run the experiment of each claim of the Leashed-SGD paper ({titles}), "
                    f"judge each with its stated rule (supported, contradicted, inconclusive, "
                    f"not testable here) and write report.md and a self-contained report.html. Thread counts "
                    f"follow this machine's physical cores.")
    again.add_argument("--claims", metavar="N,N,...",
                       help=f"claims to test (default: all, {numbers})")
    again.add_argument("--scale", default="quick",
                       help="quick (at most 15 min on 2 cores), standard (a pilot, then the "
                            "seeds claim 1 needs; about an hour per 5 seeds) or paper (the "
                            "paper's grid) (default: %(default)s)")
    again.add_argument("--workloads", type=list_of(str), metavar="W,W,...",
                       help="workloads (default: the scale's whose data is here; quick: "
                            "mlp-digits, and mlp-mnist when MNIST is there)")
    again.add_argument("--seeds", type=positive_int, metavar="N",
                       help="seeds per cell, instead of the scale's (standard: a 5-seed pilot, "
                            "then the seeds claim 1 needs to detect a 20 %% speed-up at 80 %% "
                            "power, at most 20)")
    again.add_argument("--out", type=folder_path, metavar="DIR",
                       help=f"result folder (default: a new timestamped folder under "
                            f"./{RESULTS_ROOT}/)")
    again.add_argument("--resume", action="store_true",
                       help=f"skip the runs already in --out DIR/{RUNS_FILE}")
    add_cluster_option(again)
    again.set_defaults(handler=on_cluster(reproduce_command))



def _add_cache_command(commands: Any, common: argparse.ArgumentParser) -> None:
    """``asgdbench cache``: where the compiled worker loops are, clear them, or fill them."""
    cache = commands.add_parser(
        "cache", parents=[common], help="the compile cache: info, clear, or warm it",
        description="Each combination of strategy, step rule, workload kernel and dtype that "
                    "runs is compiled once per machine and kept in the compile cache "
                    "($ASGDBENCH_CACHE_DIR, else the user cache folder); later processes load "
                    "it in well under a second. info: where it is and how big; clear: remove "
                    "it; warm: compile the combinations asked for now (say, on each node of a "
                    "cluster before a grid).")
    cache.add_argument("action", choices=("info", "clear", "warm"), metavar="ACTION",
                       help="info, clear or warm (see above)")
    cache.add_argument("--strategies", dest="strategies", type=list_of(str),
                       metavar="SPEC,SPEC,...",
                       help=f"warm: strategy specs (default: {joined(grid.DEFAULT_STRATEGIES)})")
    cache.add_argument("--steps", type=list_of(str),
                       metavar="RULE,RULE,...",
                       help=f"warm: step rules (default: {DEFAULT_STEP})")
    cache.add_argument("--workloads", type=list_of(str),
                       metavar="W,W,...", help=f"warm: workloads (default: {grid.DEFAULT_WORKLOAD})")
    cache.add_argument("--dtypes", type=list_of(dtype_name),
                       metavar="float32,float64", help="warm: model dtypes (default: float32)")
    cache.set_defaults(handler=cache_command)



def on_cluster(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run ``handler`` with ``args.cluster`` connected to ``--cluster`` (None without it).

    Connecting, and the warnings about timed runs that share a machine, come
    before the handler; the cluster (and a ``local:N`` one's processes) is
    closed after it, however it ends. Grid commands pass ``args.cluster`` on
    to :func:`grid.check_can_run` and :func:`grid.run_grid`.
    """
    def run_on_cluster(args: argparse.Namespace) -> int:
        if args.cluster_address is None:
            args.cluster = None
            return handler(args)
        with cluster.connect(args.cluster_address, data_dir=data_dir_of(args),
                             plugin_files=[*args.global_plugins, *args.plugins]) as connected:
            workers = connected.wait_for_workers()
            hosts = sorted(set(workers.values()))
            note(f"cluster {args.cluster_address.text}: {len(workers)} worker(s) with "
                  f"{cluster.RESOURCE}=1 on {len(hosts)} host(s) ({', '.join(hosts)})")
            for warning in connected.warnings(workers):
                note(warning)
            args.cluster = connected
            return handler(args)
    return run_on_cluster

