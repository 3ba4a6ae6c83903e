"""The ``asgdbench`` command line: list, run, compare, reproduce, report, check and download.

Thin on purpose: it parses arguments, calls :mod:`~asgdbench.study.grid`,
:mod:`~asgdbench.study.result_folder`, :mod:`~asgdbench.study.report` and :mod:`~asgdbench.study.plots`,
and prints. Every mistake a user can make (a bad name or value, missing data,
an unwritable folder or one another process is writing, a malformed command
line) ends as one line on stderr and exit code 2, found before the first run
starts. A run that cannot be saved (a full disk) stops the command with one
line and exit code 1; the runs saved before it stay, and ``--resume`` goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from asgdbench.engine.plan import Choice, parse_step, parse_strategy, run_label
from asgdbench.engine.run_result import WORKLOAD_DEFAULT, RunResult
from asgdbench.errors import UserError
from asgdbench.plugins.files import load_plugin_file
from asgdbench.plugins.params import Param
from asgdbench.plugins.step_rules import DEFAULT_STEP, available_step_rules
from asgdbench.plugins.workloads import (
    WORKLOAD_GROUPS,
    available_workloads,
    get_workload,
    load_workload,
    workloads_by_group,
)
from asgdbench.study import claims as claims_module
from asgdbench.study import cluster, grid, plots, report, reproduce
from asgdbench.study.result_folder import (
    RUNS_FILE,
    SUMMARY_CSV,
    SUMMARY_MD,
    ResultNotSaved,
    ResultStore,
)
from asgdbench.version import __version__
from asgdbench.workloads.datasets import DATA_ENV_VAR, resolve_data_dir
from asgdbench.workloads.download import DOWNLOADS, download

EXIT_USER_ERROR = 2
EXIT_NOT_SAVED = 1  # a finished run could not be written (full disk): not the input's fault
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
RESULTS_ROOT = Path("asgdbench-results")


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


# -- commands -------------------------------------------------------------------

def _list(args: argparse.Namespace) -> int:
    from asgdbench.plugins.strategies import available_strategies

    strategies = available_strategies()
    workloads = available_workloads()
    width = max(map(len, [*strategies, *workloads])) + 2
    print("Strategies (--strategy NAME[:PARAM=VALUE...]):")
    for name, strategy in strategies.items():
        limit = "" if strategy.max_threads is None else f" (threads <= {strategy.max_threads})"
        print(f"  {name:<{width}}{strategy.summary}{limit}")
        _print_params(strategy.params, width)
    print("\nStep rules (--step NAME[:PARAM=VALUE...]; τ: the apply's staleness):")
    for name, rule in available_step_rules().items():
        mark = " [default]" if name == DEFAULT_STEP else ""
        print(f"  {name:<{width}}{rule.summary}{mark}")
        _print_params(rule.params, width)
    print("\nWorkloads (--workload NAME), by model:")
    for group, specs in workloads_by_group().items():
        print(f"  {WORKLOAD_GROUPS.get(group, group)}:")
        for spec in specs:
            mark = " [default]" if spec.name == grid.DEFAULT_WORKLOAD else ""
            defaults = spec.defaults
            target = "none" if defaults.target_loss is None else f"{defaults.target_loss:g}"
            print(f"    {spec.name:<{width}}{spec.summary}{mark}")
            print(f"    {'':<{width}}  defaults: lr {defaults.lr:g}, batch size "
                  f"{defaults.batch_size}, target loss {target}, max time {defaults.max_time:g} s")
    return 0


def _print_params(params: Sequence[Param], width: int) -> None:
    """One line per parameter of a strategy or step rule, under its name in ``list``."""
    for param in params:
        print(f"  {'':<{width}}  {param.name}={param.format(param.default)} "
              f"({param.kind.replace('_', ' ')}): {param.doc}")


def _run(args: argparse.Namespace) -> int:
    spec = get_workload(args.workload)
    strategies, steps = grid.parse_specs([args.strategy], [args.step])
    [config] = grid.expand(spec, strategies, [args.threads],
                           None if args.lr is None else [args.lr], first_seed=args.seed,
                           steps=steps, **_settings(args))
    workload = load_workload(spec.name, data_dir=_data_dir(args), dtype=args.dtype)
    grid.check_can_run(workload, [config])
    store = None if args.out is None else _open_for_writing(args, args.out, append=True)
    result = grid.run_cell(workload, config)
    print(report.describe_run(result))
    if store is not None:
        try:
            store.append(result)
        except ResultNotSaved as error:
            print(f"asgdbench: error: {error}; the run above is not in the folder",
                  file=sys.stderr)
            return EXIT_NOT_SAVED
        results = _load(store)
        rows = report.summarize(results)
        _write_summary(store, rows, report.render(rows))
        print(f"\nsaved to {store.runs_path} ({len(results)} run(s) in the folder)")
    return 0


def _compare(args: argparse.Namespace) -> int:
    if args.resume and args.out is None:
        raise UserError("--resume needs --out DIR, the folder of the grid to finish")
    if args.plot:
        plots.require_matplotlib()
    if args.order_seed is None:
        args.order_seed = grid.DEFAULT_ORDER_SEED
    elif args.order != grid.INTERLEAVED:
        raise UserError(f"--order-seed shuffles the interleaved order; --order {args.order} "
                        f"has no shuffle (drop one of the two)")
    spec = get_workload(args.workload)
    strategies, steps = grid.parse_specs(args.strategies, args.steps)
    cells = grid.order_cells(
        grid.expand(spec, strategies, args.threads, args.lr, args.repeats,
                    first_seed=args.seed, steps=steps, **_settings(args)),
        args.order, args.order_seed)
    repeated = grid.repeated_entries(strategies, args.threads, args.lr, steps)
    if repeated:
        _note(f"note: listed twice, run once: {', '.join(repeated)} (a repeat would only "
              f"rerun the same seeds)")
    workload = (None if args.cluster else
                load_workload(spec.name, data_dir=_data_dir(args), dtype=args.dtype))
    grid.check_can_run(workload, cells, cluster=args.cluster)
    store = _open_for_writing(args, args.out or _new_results_folder(), append=args.resume)
    if store.partial_line is not None:
        _note(f"dropped line {store.partial_line} of {store.runs_path}, a run cut off while "
              f"it was being written; that run will be done again")
    finished = store.finished()
    grid.check_resume(cells, finished)
    todo = grid.pending(cells, {result.config.key() for result in finished})
    print(f"asgdbench: {len(todo)} of {len(cells)} runs to do on {spec.name}; "
          f"results go to {store.folder}", file=sys.stderr)
    try:
        grid.run_grid(workload, todo, store.append, cluster=args.cluster,
                      order=grid.positions(cells, args.order, args.order_seed))
    except ResultNotSaved as error:
        return _stopped_unsaved(store, error)
    except KeyboardInterrupt:
        kept = len(store.finished())
        if kept == 0:
            store.close()  # its lock file goes with it
            _remove_if_empty(store.folder)
            print("asgdbench: interrupted before any run finished; nothing was saved",
                  file=sys.stderr)
        else:
            print(f"asgdbench: interrupted; {kept} finished run(s) are kept in "
                  f"{store.runs_path}; to finish, repeat the command with --resume --out "
                  f"{store.folder}", file=sys.stderr)
        return EXIT_INTERRUPTED
    _summarize(store, plot=args.plot, columns=_columns(args))
    return 0


def _report(args: argparse.Namespace) -> int:
    if len(args.folders) > 2:
        raise UserError(f"report takes one folder, or two to compare, not {len(args.folders)}")
    if len(args.folders) == 2:
        if args.plot or args.columns or args.wide:
            raise UserError("--plot, --columns and --wide apply to one folder, not a comparison")
        before, after = (_load(ResultStore(folder)) for folder in args.folders)
        differences = grid.stop_rule_differences(before, after)
        if differences:
            _note(f"warning: the two folders' runs stopped under different rules "
                  f"({'; '.join(differences)}): their losses at the budget, and times cut off "
                  f"by a limit, are not like for like")
        print(f"before: {args.folders[0]}\nafter:  {args.folders[1]}\n")
        print(report.render_comparison(report.summarize(before), report.summarize(after)))
        return 0
    if reproduce.is_reproduce_folder(args.folders[0]):
        return _render_reproduce(ResultStore(args.folders[0]),
                                 reproduce.read_plan(args.folders[0]))
    if args.plot:
        plots.require_matplotlib()
    _summarize(ResultStore(args.folders[0]), plot=args.plot, columns=_columns(args))
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    """Run the experiment of every claim asked for (or finish it), then write the report."""
    if args.resume and args.out is None:
        raise UserError("--resume needs --out DIR, the folder of the reproduce run to finish")
    scale = reproduce.get_scale(args.scale)
    if args.seeds is not None:
        scale = scale.with_seeds(args.seeds)
        if args.seeds < claims_module.MIN_SEEDS:
            _note(f"note: --seeds {args.seeds} is fewer than the {claims_module.MIN_SEEDS} seed "
                  f"pairs the paired tests need, so their verdicts will be 'not testable "
                  f"here': fine for trying the pipeline, not for judging a claim")
    claims = reproduce.parse_claims(args.claims) if args.claims else claims_module.CLAIM_NUMBERS
    for name in args.workloads or []:
        get_workload(name)  # an unknown name fails here, before anything runs
    plots.require_matplotlib()
    workloads = tuple(args.workloads or reproduce.default_workloads(scale, _data_dir(args)))
    if not workloads:
        raise UserError(f"none of the {scale.name} scale's workloads "
                        f"({', '.join(scale.workloads)}) can load here; name some with --workloads")
    cores = reproduce.physical_cores()
    plan = reproduce.make_plan(scale, claims, workloads, cores)
    store = _open_for_writing(args, args.out or _new_results_folder(), append=args.resume)
    if store.partial_line is not None:
        _note(f"dropped line {store.partial_line} of {store.runs_path}, a run cut off while "
              f"it was being written; that run will be done again")
    finished = store.finished()
    loaded = reproduce.check_plan(plan, finished, _data_dir(args), cluster=args.cluster)
    reproduce.write_manifest(store, plan)
    keys = {result.config.key() for result in finished}
    todo, total = reproduce.count_pending(plan, keys)
    print(f"asgdbench: {todo} of {total} runs to do for claims {','.join(map(str, claims))} "
          f"({scale.name} scale) on {', '.join(workloads)}; {cores} physical cores, so thread "
          f"counts {', '.join(map(str, claims_module.parallel_threads(cores, scale)))} get a "
          f"core each; results go to {store.folder}", file=sys.stderr)
    try:
        reproduce.run_plan(plan, loaded, keys, store.append, cluster=args.cluster)
        if scale.planned_seeds:
            plan = _plan_more_seeds(store, plan, loaded, args)
    except ResultNotSaved as error:
        return _stopped_unsaved(store, error)
    except KeyboardInterrupt:
        kept = len(store.finished())
        print(f"asgdbench: interrupted; {kept} finished run(s) are kept in {store.runs_path}; "
              f"to finish, repeat the command with --resume --out {store.folder}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return _render_reproduce(store, plan)


def _plan_more_seeds(store: ResultStore, plan: reproduce.Plan, loaded: dict,
                     args: argparse.Namespace) -> reproduce.Plan:
    """After a pilot: run the seeds with which claim 1's direction parts are all supported with
    80 % power at a true 20 % speed-up (at most the scale's limit; see plan_seeds)."""
    scale = plan.scale
    found = reproduce.plan_seeds(_load(store), plan.workloads, plan.context, scale)
    seeds = min(found.seeds or scale.planned_seeds, scale.planned_seeds)
    note = (f"seed planning: {found.reason}; running {max(seeds, scale.seeds)} seeds "
            f"(at most {scale.planned_seeds} at {scale.name} scale)")
    _note(note)
    bigger = reproduce.make_plan(scale.with_seeds(max(seeds, scale.seeds)), plan.claims,
                                 plan.workloads, plan.cores, plan.base_lr)
    bigger = dataclasses.replace(bigger, notes=bigger.notes + (note,))
    reproduce.write_manifest(store, bigger)
    keys = store.finished_keys()  # _load above already warned about this folder
    reproduce.run_plan(bigger, loaded, keys, store.append, cluster=args.cluster)
    return bigger


def _render_reproduce(store: ResultStore, plan: reproduce.Plan) -> int:
    """Judge the runs of a reproduce folder, write its report and print the verdicts."""
    from asgdbench.study import claim_report

    plots.require_matplotlib()
    results = _load(store)
    verdicts = claim_report.write_report(store.folder, plan, results)
    pending, planned = reproduce.count_pending(plan, {result.config.key() for result in results})
    if pending:
        _note(f"warning: incomplete: {pending} of {planned} planned runs are missing, so these "
              f"verdicts judge part of the experiment; finish with `asgdbench reproduce "
              f"--resume --out {store.folder}` and the same options")
    print(claim_report.verdict_table(verdicts))
    print(f"\nreport in {store.folder / claim_report.REPORT_HTML} and "
          f"{store.folder / claim_report.REPORT_MD}")
    return 0


def _download(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args)
    print(f"asgdbench: fetching {args.dataset} into {resolve_data_dir(data_dir) / args.dataset}",
          file=sys.stderr)
    folder = download(args.dataset, data_dir, progress=sys.stderr.isatty())
    print(f"{args.dataset} is ready in {folder}")
    return 0


def _open_for_writing(args: argparse.Namespace, folder: str | Path, *,
                      append: bool) -> ResultStore:
    """The result folder, its writer lock held until the command ends (see :func:`main`)."""
    store = args.held.enter_context(ResultStore.open_for_writing(folder, append=append))
    if store.lock_warning is not None:
        _note(f"warning: {store.lock_warning}")
    return store


def _stopped_unsaved(store: ResultStore, error: ResultNotSaved) -> int:
    """A run could not be saved (a full disk): stop the grid, say what is kept and how to go on."""
    kept = len(store.finished())
    print(f"asgdbench: error: {error}; the grid stopped; {kept} finished run(s) are kept in "
          f"{store.runs_path}; make room, then repeat the command with --resume --out "
          f"{store.folder}", file=sys.stderr)
    return EXIT_NOT_SAVED


def _cache(args: argparse.Namespace) -> int:
    """``asgdbench cache info|clear|warm``: the folder of compiled worker loops."""
    from asgdbench.engine import loop_cache

    given = [option for option, value in _warm_options(args).items() if value is not None]
    if given and args.action != "warm":
        raise UserError(f"{', '.join(given)} choose what `cache warm` compiles; "
                        f"`cache {args.action}` takes none of them")
    if args.action == "clear":
        removed = loop_cache.clear_cache()
        print(f"removed {removed} file(s) from {loop_cache.cache_folder()}")
        return 0
    if args.action == "warm":
        return _warm(args)
    info = loop_cache.describe_cache()
    print(f"folder    {info.folder} (${loop_cache.ENV_VAR} overrides it)")
    print(f"entries   {info.entries} compiled worker loop(s), {info.compiled} with machine code; "
          f"{info.datasets} prepared data set(s)")
    print(f"size      {info.size_bytes / 2**20:.1f} MiB")
    unwritable = loop_cache.unwritable_reason(info.folder)
    if unwritable:
        print(f"note      {unwritable}: every run compiles in memory and keeps nothing; set "
              f"${loop_cache.ENV_VAR} to a writable folder")
    if os.environ.get("NUMBA_CACHE_DIR"):
        print(f"note      NUMBA_CACHE_DIR is set: numba keeps the machine code in "
              f"{os.environ['NUMBA_CACHE_DIR']}, not counted here")
    return 0


def _warm_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options only ``cache warm`` takes, by name; None where not given."""
    return {"--strategies": args.strategies, "--steps": args.steps,
            "--workloads": args.workloads, "--dtypes": args.dtypes}


def _warm(args: argparse.Namespace) -> int:
    """Compile (or find) the worker loop of every combination asked for, as a run would."""
    import time

    from asgdbench.engine import loop_cache
    from asgdbench.engine.runner import worker_loop_for

    unwritable = loop_cache.unwritable_reason()
    if unwritable:
        raise UserError(f"cannot warm the compile cache in {loop_cache.cache_folder()}: "
                        f"{unwritable}; set ${loop_cache.ENV_VAR} to a writable folder")
    args.workloads = args.workloads or [grid.DEFAULT_WORKLOAD]
    args.dtypes = args.dtypes or ["float32"]
    strategies, steps = grid.parse_specs(  # bad names fail before any work
        args.strategies or grid.DEFAULT_STRATEGIES, args.steps)
    for name in args.workloads:
        get_workload(name)
    for name in args.workloads[1:]:  # missing data fails now, not after minutes of compiling
        load_workload(name, data_dir=_data_dir(args), dtype=args.dtypes[0])
    for name in args.workloads:
        for dtype in args.dtypes:
            workload = load_workload(name, data_dir=_data_dir(args), dtype=dtype)
            for spec in strategies:
                for step in steps:
                    begin = time.perf_counter()
                    worker_loop_for(workload, spec, step=step, dtype=dtype)
                    print(f"{name} {dtype} {run_label(Choice.of(spec), Choice.of(step))}: "
                          f"{time.perf_counter() - begin:.1f} s", flush=True)
    return 0


def _load(store: ResultStore) -> list[RunResult]:
    """Every finished run in the store, with a warning if a last line was cut short or a
    run is there twice."""
    results = store.load()
    if store.partial_line is not None:
        _note(f"warning: line {store.partial_line} of {store.runs_path} was cut short (a run "
              f"still being written, or cut off when its process stopped) and is skipped; "
              f"--resume redoes it")
    duplicates = store.duplicates_note()
    if duplicates is not None:
        _note(f"warning: {duplicates}")
    return results


def _write_summary(store: ResultStore, rows: list[report.Row], table: str) -> None:
    """Rewrite the summary files; a folder that refuses them costs a warning, not the table."""
    try:
        store.write_summary(rows, table)
    except UserError as error:
        _note(f"warning: {error}; the table is printed but not saved")


def _summarize(store: ResultStore, *, plot: bool, columns: list[str] | None) -> None:
    """Print the table of every run in the store, rewrite its summary files, plot if asked."""
    results = _load(store)
    rows = report.summarize(results)
    table = report.render(rows, columns)
    print(table)
    _write_summary(store, rows, table)
    if plot:
        for path in plots.write_plots(store.folder, results, rows):
            print(f"plot: {path}")
    print(f"\nresults in {store.folder} ({RUNS_FILE}, {SUMMARY_CSV}, {SUMMARY_MD})")


def _columns(args: argparse.Namespace) -> list[str] | None:
    """The table's columns: every one with --wide, else --columns, else the default."""
    return report.column_names() if args.wide else args.columns


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The options of :func:`_add_run_settings`, as keyword arguments of :func:`grid.expand`."""
    return {"batch_size": args.batch_size, "target_loss": args.target_loss,
            "max_time": args.max_time, "max_updates": args.max_updates, "dtype": args.dtype}


def _note(message: str) -> None:
    print(f"asgdbench: {message}", file=sys.stderr)


def _remove_if_empty(folder: Path) -> None:
    """Take back a result folder this command created if nothing was written to it."""
    try:
        folder.rmdir()  # only ever removes an empty folder
    except OSError:
        pass


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
_column = _checked(str, lambda v: v in report.column_names(),
                   f"a column name ({', '.join(report.column_names())})")
_folder = _checked(lambda text: Path(text) if text.strip() else None, lambda v: True,
                   "a folder path")


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
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
    one.add_argument("--strategy", "--algorithm", dest="strategy", required=True, metavar="SPEC",
                     help="strategy spec, e.g. lock or leashed:tp=inf (--algorithm: the same)")
    one.add_argument("--threads", type=_positive_int, required=True, metavar="N")
    one.add_argument("--lr", type=_positive_float, help="step size (default: the workload's)")
    one.add_argument("--step", default=DEFAULT_STEP, metavar="RULE",
                     help="step-size rule, e.g. inverse or tail:amplitude=0.5: the step of each "
                          f"apply from its staleness (default: {DEFAULT_STEP}; see `asgdbench "
                          "list`)")
    one.add_argument("--seed", type=_seed, default=0, help="random seed (default: 0)")
    _add_run_settings(one)
    one.add_argument("--out", type=_folder, metavar="DIR",
                     help=f"also append the run to DIR/{RUNS_FILE} and refresh the summary")
    one.set_defaults(handler=_run)

    compare = commands.add_parser(
        "compare", parents=[common], help="the grid strategies x threads x lr x repeats",
        description="Run every strategy at every thread count, step size and seed, one run at "
                    "a time, and tabulate time to target, speedups and telemetry. With no "
                    "options: the default job on mlp-digits.")
    compare.add_argument("--workload", default=grid.DEFAULT_WORKLOAD,
                         help=f"workload name (default: {grid.DEFAULT_WORKLOAD})")
    compare.add_argument("--strategies", "--algorithms", dest="strategies", type=_list_of(str),
                         default=list(grid.DEFAULT_STRATEGIES), metavar="SPEC,SPEC,...",
                         help=f"strategy specs (default: {_joined(grid.DEFAULT_STRATEGIES)}; "
                              "--algorithms: the same)")
    compare.add_argument("--threads", type=_list_of(_positive_int), metavar="N,N,...",
                         default=list(grid.DEFAULT_THREADS),
                         help=f"thread counts (default: {_joined(grid.DEFAULT_THREADS)}; "
                              "seq runs at 1 only)")
    compare.add_argument("--step", "--steps", dest="steps", type=_list_of(str),
                         default=[DEFAULT_STEP], metavar="RULE,RULE,...",
                         help=f"step-size rules, a grid axis (default: {DEFAULT_STEP}; see "
                              "`asgdbench list`)")
    compare.add_argument("--lr", type=_list_of(_positive_float), metavar="LR,LR,...",
                         help="step sizes (default: the workload's)")
    compare.add_argument("--repeats", type=_positive_int, default=grid.DEFAULT_REPEATS,
                         help="seeds per cell (default: %(default)s)")
    compare.add_argument("--seed", type=_seed, default=0,
                         help="first seed; repeats use seed, seed+1, ... (default: 0)")
    compare.add_argument("--order", choices=grid.ORDERS, default=grid.INTERLEAVED,
                         help="interleaved: rounds of one seed each, the cells of a round in a "
                              "seeded shuffled order, so load drift falls on every strategy "
                              "alike; strategy: each strategy's runs together, seeds innermost "
                              "(default: %(default)s)")
    compare.add_argument("--order-seed", type=_seed, metavar="N",
                         help=f"seed of the interleaved order, recorded in runs.jsonl "
                              f"(default: {grid.DEFAULT_ORDER_SEED})")
    _add_run_settings(compare)
    compare.add_argument("--out", type=_folder, metavar="DIR",
                         help=f"result folder (default: a new timestamped folder under "
                              f"./{RESULTS_ROOT}/)")
    compare.add_argument("--resume", action="store_true",
                         help=f"skip the runs already in --out DIR/{RUNS_FILE}")
    compare.add_argument("--plot", action="store_true",
                         help=f"also draw PNG figures (needs {plots.INSTALL_HINT})")
    _add_table_options(compare)
    _add_cluster_option(compare)
    compare.set_defaults(handler=on_cluster(_compare))

    again = commands.add_parser(
        "report", parents=[common], help="re-render a result folder, or compare two",
        description=f"Re-render the table (and with --plot the figures) from DIR/{RUNS_FILE}, "
                    f"without running anything. With two folders, compare them cell by cell "
                    f"(before, after): the ratio of median times with their min-max "
                    f"intervals, as asv compare does. A folder made by `asgdbench reproduce` "
                    f"gets its claims report (report.md, report.html) rendered again.")
    again.add_argument("folders", type=_folder, nargs="+", metavar="DIR",
                       help="a result folder; two: BEFORE AFTER")
    again.add_argument("--plot", action="store_true",
                       help=f"also draw PNG figures (needs {plots.INSTALL_HINT})")
    _add_table_options(again)
    again.set_defaults(handler=_report)

    _add_reproduce_command(commands, common)
    _add_cache_command(commands, common)

    fetch = commands.add_parser("download", parents=[common], help="download a data set",
                                description="Download a data set into the data folder "
                                            f"(--data-dir, else ${DATA_ENV_VAR}, else the "
                                            "user cache).")
    fetch.add_argument("dataset", choices=list(DOWNLOADS))
    fetch.set_defaults(handler=_download)

    conformance = commands.add_parser(
        "check", parents=[common], help="hold a strategy to the harness's contract",
        description="Run the conformance checks on a strategy (exact update budget, applied + "
                    "dropped == computed, consistency where it claims it, bounded memory, clean "
                    "stops, a readable final vector): one PASS/FAIL line each; exit status 1 "
                    "if any fails.")
    conformance.add_argument("spec", metavar="SPEC", help="strategy spec, e.g. leashed:tp=1")
    conformance.add_argument("--step", default=DEFAULT_STEP, metavar="RULE",
                             help=f"step-size rule every check runs with (default: {DEFAULT_STEP})")
    conformance.add_argument("--threads", type=int, default=16,
                             help="threads, whatever the cores (default: 16)")
    conformance.add_argument("--updates", type=int, default=5_000,
                             help="update budget of the exact runs (default: 5000; less for "
                                  "strategies slower than that here)")
    conformance.add_argument("--timeout", type=float, default=60.0, metavar="S",
                             help="longest a single check may run before it counts as failed "
                                  "(default: 60)")
    conformance.set_defaults(handler=_check)
    return parser


def _check(args: argparse.Namespace) -> int:
    from asgdbench.engine.checks import check_strategy

    spec, step = parse_strategy(args.spec), parse_step(args.step)
    if args.threads < 1 or args.updates < 1 or not args.timeout > 0:
        raise UserError("--threads and --updates must be >= 1, --timeout > 0")
    checks = check_strategy(spec, threads=args.threads, updates=args.updates,
                            watchdog_s=args.timeout, step=step)
    for check in checks:
        print(check.line(), flush=True)
    failed = sum(check.passed is False for check in checks)
    label = run_label(Choice.of(spec), Choice.of(step))
    print(f"{label}: {len(checks) - failed} of {len(checks)} checks hold"
          + (f", {failed} FAILED" if failed else ""))
    return 1 if failed else 0


def _joined(values: Sequence) -> str:
    return ",".join(map(str, values))


def _add_common(parser: argparse.ArgumentParser, *, prefix: str) -> None:
    """Options every command takes, also accepted before the command (``prefix``: their dest)."""
    parser.add_argument("--plugin", dest=f"{prefix}plugins", action="append", default=[],
                        metavar="FILE.py",
                        help="load a drop-in strategy, step rule or workload file (repeatable)")
    parser.add_argument("--debug", dest=f"{prefix}debug", action="store_true",
                        help="on an error, print the full traceback before the one-line message")
    parser.add_argument("--data-dir", dest=f"{prefix}data_dir", metavar="DIR",
                        help=f"folder holding downloaded data sets, e.g. DIR/mnist/ "
                             f"(default: ${DATA_ENV_VAR}, else the user cache)")


def _add_reproduce_command(commands: Any, common: argparse.ArgumentParser) -> None:
    """``asgdbench reproduce``: the paper's claims, run and judged here."""
    numbers = _joined(claims_module.CLAIM_NUMBERS)
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
    again.add_argument("--workloads", type=_list_of(str), metavar="W,W,...",
                       help="workloads (default: the scale's whose data is here; quick: "
                            "mlp-digits, and mlp-mnist when MNIST is there)")
    again.add_argument("--seeds", type=_positive_int, metavar="N",
                       help="seeds per cell, instead of the scale's (standard: a 5-seed pilot, "
                            "then the seeds claim 1 needs to detect a 20 %% speed-up at 80 %% "
                            "power, at most 20)")
    again.add_argument("--out", type=_folder, metavar="DIR",
                       help=f"result folder (default: a new timestamped folder under "
                            f"./{RESULTS_ROOT}/)")
    again.add_argument("--resume", action="store_true",
                       help=f"skip the runs already in --out DIR/{RUNS_FILE}")
    _add_cluster_option(again)
    again.set_defaults(handler=on_cluster(_reproduce))


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
    cache.add_argument("--strategies", dest="strategies", type=_list_of(str),
                       metavar="SPEC,SPEC,...",
                       help=f"warm: strategy specs (default: {_joined(grid.DEFAULT_STRATEGIES)})")
    cache.add_argument("--steps", type=_list_of(str),
                       metavar="RULE,RULE,...",
                       help=f"warm: step rules (default: {DEFAULT_STEP})")
    cache.add_argument("--workloads", type=_list_of(str),
                       metavar="W,W,...", help=f"warm: workloads (default: {grid.DEFAULT_WORKLOAD})")
    cache.add_argument("--dtypes", type=_list_of(_dtype),
                       metavar="float32,float64", help="warm: model dtypes (default: float32)")
    cache.set_defaults(handler=_cache)


def _dtype(text: str) -> str:
    if text not in ("float32", "float64"):
        raise argparse.ArgumentTypeError(f"dtype must be float32 or float64, not {text!r}")
    return text


def _add_table_options(parser: argparse.ArgumentParser) -> None:
    """Which columns the table shows."""
    columns = parser.add_mutually_exclusive_group()
    columns.add_argument("--columns", type=_list_of(_column), metavar="NAME,NAME,...",
                         help=f"table columns after strategy and threads (default: those that "
                              f"fit 120 characters; any of: {_joined(report.column_names())})")
    columns.add_argument("--wide", action="store_true", help="every column")


def _add_cluster_option(parser: argparse.ArgumentParser) -> None:
    """``--cluster ADDRESS``: the grid's runs go to a dask cluster (see :func:`on_cluster`)."""
    parser.add_argument("--cluster", dest="cluster_address", type=_cluster_address,
                        metavar="ADDRESS",
                        help="run the grid on a dask.distributed cluster: a scheduler address "
                             "(tcp://host:8786) whose workers were started with "
                             f"`{cluster.WORKER_COMMAND.format(address='ADDRESS')}`, or local:N "
                             "for N worker processes here (to check the set-up: their timings "
                             f"overlap); needs {cluster.INSTALL_HINT}")


def _cluster_address(text: str) -> cluster.ClusterAddress:
    try:
        return cluster.parse_address(text)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


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
        with cluster.connect(args.cluster_address, data_dir=_data_dir(args),
                             plugin_files=[*args.global_plugins, *args.plugins]) as connected:
            workers = connected.wait_for_workers()
            hosts = sorted(set(workers.values()))
            _note(f"cluster {args.cluster_address.text}: {len(workers)} worker(s) with "
                  f"{cluster.RESOURCE}=1 on {len(hosts)} host(s) ({', '.join(hosts)})")
            for warning in connected.warnings(workers):
                _note(warning)
            args.cluster = connected
            return handler(args)
    return run_on_cluster


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
