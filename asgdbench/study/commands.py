"""The ``asgdbench`` commands, one function each (``list``, ``run``, ``compare``, ``report``,
``reproduce``, ``download``, ``cache``): the specs they are given are parsed here, once,
and passed on typed (:mod:`asgdbench.engine.choice`). ``check`` lives in :mod:`.cli`."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import Any

from asgdbench.engine.choice import Choice, run_label
from asgdbench.errors import UserError
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
from asgdbench.study import grid, plots, report, reproduce
from asgdbench.study.cli_folders import (
    EXIT_INTERRUPTED,
    EXIT_NOT_SAVED,
    load_runs,
    new_results_folder,
    note,
    open_for_writing,
    remove_if_empty,
    stopped_unsaved,
    summarize_folder,
    write_summary,
)
from asgdbench.study.cli_options import data_dir_of, run_settings, table_columns
from asgdbench.study.result_folder import ResultNotSaved, ResultStore
from asgdbench.workloads.datasets import resolve_data_dir
from asgdbench.workloads.download import download


def list_command(args: argparse.Namespace) -> int:
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



def run_command(args: argparse.Namespace) -> int:
    spec = get_workload(args.workload)
    strategies, steps = grid.parse_specs([args.strategy], [args.step])
    [config] = grid.expand(spec, strategies, [args.threads],
                           None if args.lr is None else [args.lr], first_seed=args.seed,
                           steps=steps, **run_settings(args))
    workload = load_workload(spec.name, data_dir=data_dir_of(args), dtype=args.dtype)
    grid.check_can_run(workload, [config])
    store = None if args.out is None else open_for_writing(args, args.out, append=True)
    result = grid.run_cell(workload, config)
    print(report.describe_run(result))
    if store is not None:
        try:
            store.append(result)
        except ResultNotSaved as error:
            print(f"asgdbench: error: {error}; the run above is not in the folder",
                  file=sys.stderr)
            return EXIT_NOT_SAVED
        results = load_runs(store)
        rows = report.summarize(results)
        write_summary(store, rows, report.render(rows))
        print(f"\nsaved to {store.runs_path} ({len(results)} run(s) in the folder)")
    return 0



def compare_command(args: argparse.Namespace) -> int:
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
    listed = grid.expand(spec, strategies, args.threads, args.lr, args.repeats,
                         first_seed=args.seed, steps=steps, **run_settings(args))
    cells = grid.order_cells(listed, args.order, args.order_seed)
    repeated = grid.repeated_entries(strategies, args.threads, args.lr, steps)
    if repeated:
        note(f"note: listed twice, run once: {', '.join(repeated)} (a repeat would only "
              f"rerun the same seeds)")
    workload = (None if args.cluster else
                load_workload(spec.name, data_dir=data_dir_of(args), dtype=args.dtype))
    grid.check_can_run(workload, cells, cluster=args.cluster)
    store = open_for_writing(args, args.out or new_results_folder(), append=args.resume)
    if store.partial_line is not None:
        note(f"dropped line {store.partial_line} of {store.runs_path}, a run cut off while "
              f"it was being written; that run will be done again")
    finished = store.finished()
    grid.check_resume(cells, finished)
    todo = grid.pending(cells, {result.config.key() for result in finished})
    print(f"asgdbench: {len(todo)} of {len(cells)} runs to do on {spec.name}; "
          f"results go to {store.folder}", file=sys.stderr)
    try:
        grid.run_grid(workload, todo, store.append, cluster=args.cluster,
                      order=grid.positions(cells, args.order, args.order_seed, listed))
    except ResultNotSaved as error:
        return stopped_unsaved(store, error)
    except KeyboardInterrupt:
        kept = len(store.finished())
        if kept == 0:
            store.close()  # its lock file goes with it
            remove_if_empty(store.folder)
            print("asgdbench: interrupted before any run finished; nothing was saved",
                  file=sys.stderr)
        else:
            print(f"asgdbench: interrupted; {kept} finished run(s) are kept in "
                  f"{store.runs_path}; to finish, repeat the command with --resume --out "
                  f"{store.folder}", file=sys.stderr)
        return EXIT_INTERRUPTED
    summarize_folder(store, plot=args.plot, columns=table_columns(args))
    return 0



def report_command(args: argparse.Namespace) -> int:
    if len(args.folders) > 2:
        raise UserError(f"report takes one folder, or two to compare, not {len(args.folders)}")
    if len(args.folders) == 2:
        if args.plot or args.columns or args.wide:
            raise UserError("--plot, --columns and --wide apply to one folder, not a comparison")
        before, after = (load_runs(ResultStore(folder)) for folder in args.folders)
        differences = grid.stop_rule_differences(before, after)
        if differences:
            note(f"warning: the two folders' runs stopped under different rules "
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
    summarize_folder(ResultStore(args.folders[0]), plot=args.plot, columns=table_columns(args))
    return 0



def reproduce_command(args: argparse.Namespace) -> int:
    """Run the experiment of every claim asked for (or finish it), then write the report."""
    if args.resume and args.out is None:
        raise UserError("--resume needs --out DIR, the folder of the reproduce run to finish")
    scale = reproduce.get_scale(args.scale)
    if args.seeds is not None:
        scale = scale.with_seeds(args.seeds)
        if args.seeds < claims_module.MIN_SEEDS:
            note(f"note: --seeds {args.seeds} is fewer than the {claims_module.MIN_SEEDS} seed "
                  f"pairs the paired tests need, so their verdicts will be 'not testable "
                  f"here': fine for trying the pipeline, not for judging a claim")
    claims = reproduce.parse_claims(args.claims) if args.claims else claims_module.CLAIM_NUMBERS
    for name in args.workloads or []:
        get_workload(name)  # an unknown name fails here, before anything runs
    plots.require_matplotlib()
    dense, sparse = reproduce.split_by_regime(args.workloads or (), scale)
    wants_dense = any(claims_module.get_claim(n).regime == "dense" for n in claims)
    workloads = dense or (reproduce.default_workloads(scale, data_dir_of(args))
                          if wants_dense else ())
    if wants_dense and not workloads:
        raise UserError(f"none of the {scale.name} scale's workloads "
                        f"({', '.join(scale.workloads)}) can load here; name some with --workloads")
    cores = reproduce.physical_cores()
    plan = reproduce.make_plan(scale, claims, workloads, cores, sparse_workloads=sparse)
    store = open_for_writing(args, args.out or new_results_folder(), append=args.resume)
    if store.partial_line is not None:
        note(f"dropped line {store.partial_line} of {store.runs_path}, a run cut off while "
              f"it was being written; that run will be done again")
    finished = store.finished()
    loaded = reproduce.check_plan(plan, finished, data_dir_of(args), cluster=args.cluster)
    reproduce.write_manifest(store, plan)
    keys = {result.config.key() for result in finished}
    todo, total = reproduce.count_pending(plan, keys)
    print(f"asgdbench: {todo} of {total} runs to do for claims {','.join(map(str, claims))} "
          f"({scale.name} scale) on {', '.join((*workloads, *plan.sparse_workloads))}; "
          f"{cores} physical cores, so thread "
          f"counts {', '.join(map(str, claims_module.parallel_threads(cores, scale)))} get a "
          f"core each; results go to {store.folder}", file=sys.stderr)
    try:
        reproduce.run_plan(plan, loaded, keys, store.append, cluster=args.cluster)
        if scale.planned_seeds:
            plan = _plan_more_seeds(store, plan, loaded, args)
    except ResultNotSaved as error:
        return stopped_unsaved(store, error)
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
    found = reproduce.plan_seeds(load_runs(store), plan.workloads, plan.context, scale)
    seeds = min(found.seeds or scale.planned_seeds, scale.planned_seeds)
    planning = (f"seed planning: {found.reason}; running {max(seeds, scale.seeds)} seeds "
                f"(at most {scale.planned_seeds} at {scale.name} scale)")
    note(planning)
    bigger = reproduce.make_plan(scale.with_seeds(max(seeds, scale.seeds)), plan.claims,
                                 plan.workloads, plan.cores, plan.base_lr,
                                 plan.sparse_workloads)
    bigger = dataclasses.replace(bigger, notes=bigger.notes + (planning,))
    reproduce.write_manifest(store, bigger)
    keys = store.finished_keys()  # load_runs above already warned about this folder
    reproduce.run_plan(bigger, loaded, keys, store.append, cluster=args.cluster)
    return bigger



def _render_reproduce(store: ResultStore, plan: reproduce.Plan) -> int:
    """Judge the runs of a reproduce folder, write its report and print the verdicts."""
    from asgdbench.study import claim_report

    plots.require_matplotlib()
    results = load_runs(store)
    verdicts = claim_report.write_report(store.folder, plan, results)
    pending, planned = reproduce.count_pending(plan, {result.config.key() for result in results})
    if pending:
        note(f"warning: incomplete: {pending} of {planned} planned runs are missing, so these "
              f"verdicts judge part of the experiment; finish with `asgdbench reproduce "
              f"--resume --out {store.folder}` and the same options")
    print(claim_report.verdict_table(verdicts))
    print(f"\nreport in {store.folder / claim_report.REPORT_HTML} and "
          f"{store.folder / claim_report.REPORT_MD}")
    return 0



def download_command(args: argparse.Namespace) -> int:
    data_dir = data_dir_of(args)
    print(f"asgdbench: fetching {args.dataset} into {resolve_data_dir(data_dir) / args.dataset}",
          file=sys.stderr)
    folder = download(args.dataset, data_dir, progress=sys.stderr.isatty())
    print(f"{args.dataset} is ready in {folder}")
    return 0



def cache_command(args: argparse.Namespace) -> int:
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
        load_workload(name, data_dir=data_dir_of(args), dtype=args.dtypes[0])
    for name in args.workloads:
        for dtype in args.dtypes:
            workload = load_workload(name, data_dir=data_dir_of(args), dtype=dtype)
            for spec in strategies:
                for step in steps:
                    begin = time.perf_counter()
                    worker_loop_for(workload, spec, step=step, dtype=dtype)
                    print(f"{name} {dtype} {run_label(Choice.of(spec), Choice.of(step))}: "
                          f"{time.perf_counter() - begin:.1f} s", flush=True)
    return 0

