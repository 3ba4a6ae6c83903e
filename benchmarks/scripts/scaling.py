"""The paper's scaling claims (1 and 4) and the multi-core speed targets, in one bounded run.

    python benchmarks/scripts/scaling.py --out DIR [--budget-s 480] [--dry-run]
    python benchmarks/scripts/scaling.py --out DIR --reduced        # 2 cores, about 2 minutes
    python benchmarks/scripts/scaling.py --out DIR --resume         # finish a cut-short run

Made for a 16-core machine lent for a few minutes (``scaling_device.sh`` runs it
there). One experiment on ``mlp-mnist``, through ``asgdbench reproduce``'s own
machinery (its plans, claims' judges, result folder and report):

* claims 1 and 4: ``lock-per-step-copy``, ``hogwild-per-step-copy`` and
  ``leashed`` at tp = 0 / 1 / inf at 1, 2, 4, 8 and 16 threads, tp = 0 / 1 / inf
  also at 32 (oversubscribed; tp only where threads can contend, from 2), plus
  SEQ at 1 thread, every cell with the same seeds in interleaved rounds;
* time to target with 2 threads against SEQ (target: Leashed <= 0.6x SEQ's),
  paired by seed, from those runs;
* throughput at batch 16 at the largest thread count (target at 16 threads:
  Leashed >= 0.9x HOGWILD!'s and >= 1.3x lock's updates/s, as in
  ``perf_targets.py``), fixed-time runs without a target in ``DIR/throughput/``.

Every run stops at one time limit, derived from ``--budget-s`` (default 480 s,
compilation included): the budget, less an estimate of compilation, data
loading and rendering, shared among the runs, each also charged a fixed
overhead. The plan and this arithmetic are printed before anything runs, and a
plan that cannot fit (a time limit under half a second) is refused with one line
and exit 2. While running, a run that would end past the budget is not started:
the report then says which runs are pending, and ``--resume`` does them.

ε is 0.1 (the workload's default, 0.05, takes a SEQ run about 10,000 updates,
3-5 s, which ~150 runs in 8 minutes cannot afford).

Writes to DIR: ``runs.jsonl``, ``reproduce.json``, ``report.md``, ``report.html``,
``figures/`` (what ``asgdbench report DIR`` renders again), ``throughput/runs.jsonl``,
and ``scaling.md``: the plan, the machine, the claims' verdicts and the targets' table.
Exit codes: 0 done (also with runs pending past the budget, which it says),
2 bad input or a plan that cannot fit, 130 Ctrl-C (finished runs are kept).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from asgdbench.engine.choice import Choice
from asgdbench.engine.machine import environment
from asgdbench.engine.run_result import RunConfig, RunResult
from asgdbench.errors import UserError
from asgdbench.plugins.workloads import get_workload
from asgdbench.study import grid, reproduce
from asgdbench.study.claim_runs import LEASHED, LOCK, by_seed, censored, runs_of, time_to_epsilon
from asgdbench.study.claim_statistics import log_ratio, paired_effect
from asgdbench.study.claims import Scale
from asgdbench.study.report import markdown_table
from asgdbench.study.result_folder import ResultNotSaved, ResultStore
from asgdbench.study.verdicts import (
    NOT_TESTABLE,
    at_least,
    at_most,
    effect_counts,
    ratio_text,
    untestable_effect,
)

WORKLOAD = "mlp-mnist"
CLAIMS = (1, 4)
TARGET_LOSS = 0.1
SEQ = Choice("seq")
THROUGHPUT = (LEASHED, Choice("hogwild"), Choice("lock"))
"""The strategies of perf_targets.py's small-batch regime, whose targets these are."""
THROUGHPUT_BATCH = 16
THROUGHPUT_FOLDER = "throughput"
SUMMARY = "scaling.md"


@dataclass(frozen=True)
class Size:
    """The experiment's size: thread counts, seeds, budget and the estimates it is planned with."""

    threads: tuple[int, ...]
    oversubscribed: tuple[int, ...]
    seeds: int
    budget_s: float
    compile_s: float
    """Estimated numba compilation of every strategy, once each (cold cache)."""
    throughput_s: float
    """Time limit of each throughput run."""
    fixed_s: float = 20.0
    """Loading MNIST, checking the plan, rendering the report."""
    overhead_s: float = 0.5
    """Per run, beyond its time limit: thread start, final evaluation, record."""


FULL = Size((1, 2, 4, 8, 16), (32,), seeds=5, budget_s=480.0, compile_s=90.0, throughput_s=1.0)
REDUCED = Size((1, 2), (4,), seeds=2, budget_s=150.0, compile_s=60.0, throughput_s=0.5)
MIN_TIME_LIMIT_S = 0.5


@dataclass(frozen=True)
class Experiment:
    """The runs of one scaling experiment and the arithmetic that bounds it."""

    size: Size
    plan: reproduce.Plan
    """Claims 1 and 4, plus SEQ at 1 thread (in the plan's cells, the same rounds)."""
    throughput: list[RunConfig]
    time_limit_s: float

    @property
    def main_runs(self) -> int:
        return sum(len(cells) for cells in self.plan.cells.values())

    @property
    def worst_case_s(self) -> float:
        size = self.size
        return (size.compile_s + size.fixed_s
                + self.main_runs * (self.time_limit_s + size.overhead_s)
                + len(self.throughput) * (size.throughput_s + size.overhead_s))

    def text(self) -> str:
        size, top = self.size, max(self.size.threads)
        return (f"plan: {self.main_runs} runs of claims {','.join(map(str, CLAIMS))} on "
                f"{WORKLOAD} (threads {','.join(map(str, size.threads))}, oversubscribed "
                f"{','.join(map(str, size.oversubscribed))}, plus SEQ at 1; {size.seeds} seeds; "
                f"ε = {self.plan.scale.target_loss:g}) x time limit {self.time_limit_s:.2f} s "
                f"+ {len(self.throughput)} throughput runs ({', '.join(map(str, THROUGHPUT))} at {top} "
                f"threads, batch {THROUGHPUT_BATCH}) x {size.throughput_s:g} s, each run + "
                f"{size.overhead_s:g} s overhead, + compile estimate {size.compile_s:g} s + "
                f"{size.fixed_s:g} s loading and report = at most {self.worst_case_s:.0f} s of "
                f"the {size.budget_s:g} s budget; {self.plan.cores} physical cores here")


def scaling_scale(size: Size, time_limit_s: float, target_loss: float) -> Scale:
    return Scale("scaling", size.seeds, (1.0,), len(size.threads), 1.0, (WORKLOAD,),
                 f"benchmarks/scripts/scaling.py: at most {size.budget_s:g} s, compilation "
                 f"included", thread_counts=size.threads, oversubscribed=size.oversubscribed,
                 max_time_s=time_limit_s, target_loss=target_loss)


def plan_experiment(size: Size, cores: int, target_loss: float = TARGET_LOSS,
                    time_limit_s: float | None = None) -> Experiment:
    """The runs and their shared time limit; a UserError if the budget cannot hold them.

    ``time_limit_s``: the limit an unfinished folder's runs were made with (``--resume``);
    then the budget only bounds how many of the pending runs are done.
    """
    for count in (*size.threads, *size.oversubscribed):
        if count < 1:
            raise UserError(f"thread counts must be >= 1, not {count}")
    if size.seeds < 1:
        raise UserError(f"--seeds must be >= 1, not {size.seeds}")
    spec = get_workload(WORKLOAD)
    throughput = grid.order_cells(grid.expand(
        spec, grid.parse_specs(THROUGHPUT)[0], [max(size.threads)], None, size.seeds, batch_size=THROUGHPUT_BATCH,
        target_loss=None, max_time=size.throughput_s))

    def build(time_limit_s: float) -> reproduce.Plan:
        plan = reproduce.make_plan(scaling_scale(size, time_limit_s, target_loss), CLAIMS,
                                   (WORKLOAD,), cores)
        seq = grid.expand(spec, grid.parse_specs([SEQ])[0], [1], [plan.base_lr[WORKLOAD]], size.seeds,
                          target_loss=target_loss, max_time=time_limit_s)
        known = {config.key() for config in plan.cells[WORKLOAD]}
        cells = plan.cells[WORKLOAD] + [c for c in seq if c.key() not in known]
        return replace(plan, cells={WORKLOAD: grid.order_cells(cells)})

    if time_limit_s is not None:
        return Experiment(size, build(time_limit_s), throughput, time_limit_s)
    main_runs = sum(len(cells) for cells in build(1.0).cells.values())
    spare = (size.budget_s - size.compile_s - size.fixed_s
             - len(throughput) * (size.throughput_s + size.overhead_s))
    time_limit_s = math.floor(100 * (spare / main_runs - size.overhead_s)) / 100
    experiment = Experiment(size, build(max(time_limit_s, MIN_TIME_LIMIT_S)), throughput,
                            max(time_limit_s, MIN_TIME_LIMIT_S))
    if time_limit_s < MIN_TIME_LIMIT_S:
        raise UserError(f"a budget of {size.budget_s:g} s cannot hold {main_runs} runs of at "
                        f"least {MIN_TIME_LIMIT_S:g} s each plus {len(throughput)} throughput "
                        f"runs and {size.compile_s:g} s of compilation (needs "
                        f"{experiment.worst_case_s:.0f} s); raise --budget-s or lower --seeds")
    return experiment


# -- the performance targets ------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    pairs: str
    rule: str
    verdict: str
    reason: str


def _target(name: str, effect, rule: str, verdict_of: Callable, need: str | None) -> Target:
    if need is not None:
        return Target(name, ratio_text(effect.interval), effect_counts(effect), rule,
                      NOT_TESTABLE, need)
    if effect.interval is None:
        return Target(name, "—", effect_counts(effect), rule, NOT_TESTABLE,
                      untestable_effect(effect))
    return Target(name, ratio_text(effect.interval), effect_counts(effect), rule,
                  verdict_of(effect.interval), "")


def performance_targets(main: Sequence[RunResult], throughput: Sequence[RunResult], lr: float,
                        cores: int, top: int) -> list[Target]:
    """Time to ε with 2 threads against SEQ, and updates/s at ``top`` threads, per seed pair."""
    seq = by_seed(runs_of(main, WORKLOAD, SEQ, 1, lr), time_to_epsilon, censored)
    two = None if cores >= 2 else f"needs 2 cores; the runs had {cores}"
    targets = []
    for label, rule, verdict_of in (
            (LEASHED, "<= 0.6 (Leashed's time at most 0.6x SEQ's)",
             lambda i: at_most(i, math.log(0.6))),
            (LOCK, "report (for comparison)", lambda i: "report")):
        runs = by_seed(runs_of(main, WORKLOAD, label, 2, lr), time_to_epsilon, censored)
        targets.append(_target(f"time to ε, {label} at 2 threads / SEQ", paired_effect(
            runs, seq, log_ratio), rule, verdict_of, two))
    need = None
    if top != 16 or cores < top:
        need = (f"the target is at 16 threads, each on a core; measured at {top} threads on "
                f"{cores} cores")
    rates = {label: by_seed(runs_of(throughput, WORKLOAD, label, top, None),
                            lambda r: r.updates_per_s) for label in THROUGHPUT}
    for baseline, floor in ((THROUGHPUT[1], 0.9), (THROUGHPUT[2], 1.3)):
        targets.append(_target(
            f"updates/s at batch {THROUGHPUT_BATCH}, {top} threads: leashed:tp=inf / {baseline}",
            paired_effect(rates[LEASHED], rates[baseline], log_ratio),
            f">= {floor:g}", lambda i, floor=floor: at_least(i, math.log(floor)), need))
    return targets


def throughput_medians(throughput: Sequence[RunResult], top: int) -> str:
    parts = []
    for label in THROUGHPUT:
        rates = [r.updates_per_s for r in runs_of(throughput, WORKLOAD, label, top, None)]
        if rates:
            parts.append(f"{label} {np.median(rates):,.0f}")
    return "median updates/s: " + (", ".join(parts) if parts else "no runs")


def targets_table(targets: Sequence[Target]) -> str:
    headers = ("target", "ratio per seed pair (HL [90% CI])", "pairs", "rule", "verdict")
    rows = [(t.name, t.measured, t.pairs, t.rule,
             t.verdict + (f" ({t.reason})" if t.reason else "")) for t in targets]
    return markdown_table(headers, rows, ["left"] * len(headers))


# -- running --------------------------------------------------------------------------

def monotonic() -> float:
    """The budget's clock (a function of this module, so that a test can replace it)."""
    return time.monotonic()


class BudgetSpent(Exception):
    """The next run could end past the budget: stop, keep what is done."""


def guarded(store: ResultStore, deadline: float, next_run_s: float,
            clock: Callable[[], float] | None = None) -> Callable[[RunResult], None]:
    """Save each result, then stop the grid if one more run could end past ``deadline``."""
    def on_result(result: RunResult) -> None:
        store.append(result)
        if (clock or monotonic)() + next_run_s > deadline:
            raise BudgetSpent
    return on_result


def run_phase(store: ResultStore, workload, cells: list[RunConfig], deadline: float,
              next_run_s: float) -> bool:
    """Run the pending cells in order until done or the budget is spent; whether all ran."""
    todo = grid.pending(cells, store.finished_keys() if store.runs_path.exists() else set())
    if not todo:
        return True
    if monotonic() + next_run_s > deadline:
        return False
    try:
        grid.run_grid(workload, todo, guarded(store, deadline, next_run_s),
                      order=grid.positions(cells))
    except BudgetSpent:
        return False
    return True


def open_store(folder: Path, resume: bool) -> ResultStore:
    store = ResultStore.open_for_writing(folder, append=resume)
    if store.lock_warning is not None:
        print(f"scaling: warning: {store.lock_warning}", file=sys.stderr)
    return store


def execute(experiment: Experiment, out: Path, resume: bool, data_dir: str | None,
            started: float) -> tuple[list[RunResult], list[RunResult], str]:
    """Run what is pending within the budget; (main runs, throughput runs, what was left)."""
    deadline = started + experiment.size.budget_s - experiment.size.fixed_s / 2
    size = experiment.size
    with open_store(out, resume) as store, \
            open_store(out / THROUGHPUT_FOLDER, resume) as fast:
        finished = store.load() if store.runs_path.exists() else []
        loaded = reproduce.check_plan(experiment.plan, finished, data_dir)
        grid.check_can_run(loaded[WORKLOAD], experiment.throughput)
        grid.check_resume(experiment.throughput, fast.load() if fast.runs_path.exists() else [])
        reproduce.write_manifest(store, experiment.plan)
        reserve = len(grid.pending(experiment.throughput, fast.finished_keys()
                                   if fast.runs_path.exists() else set())) * (
            size.throughput_s + size.overhead_s)
        try:
            complete = run_phase(store, loaded[WORKLOAD], experiment.plan.cells[WORKLOAD],
                                 deadline - reserve, experiment.time_limit_s + size.overhead_s)
            complete &= run_phase(fast, loaded[WORKLOAD], experiment.throughput, deadline,
                                  size.throughput_s + size.overhead_s)
        except ResultNotSaved as error:
            raise UserError(f"{error}; finished runs are kept; free space, then --resume")
        main = store.load()
        throughput = fast.load() if fast.runs_path.exists() else []
    left = "" if complete else ("the budget ran out before every run was done (compilation "
                                "took longer than estimated?): --resume finishes them")
    return main, throughput, left


def write_summary(experiment: Experiment, out: Path, main: list[RunResult],
                  throughput: list[RunResult], left: str, wall_s: float) -> str:
    """Render the claims' report and write scaling.md; the verdicts and targets as text."""
    from asgdbench.study import claim_report

    plan = experiment.plan
    verdicts = claim_report.write_report(out, plan, main)
    top = max(experiment.size.threads)
    targets = performance_targets(main, throughput, plan.base_lr[WORKLOAD], plan.cores, top)
    env = (main or throughput)[0].environment if (main or throughput) else environment()
    compile_s = sum(r.compile_s for r in [*main, *throughput])
    lines = [
        "# Scaling on this machine: claims 1 and 4, and the multi-core targets", "",
        f"- {experiment.text()}",
        f"- the folder holds {len(main)} + {len(throughput)} runs (their numba compilation: "
        f"{compile_s:.0f} s); this invocation took {wall_s:.0f} s, compilation included"
        + (f"; **{left}**" if left else ""),
        "- machine: " + "; ".join(claim_report.machine_lines(plan, main or throughput)[:3]),
        f"- cores: {plan.cores} physical (the verdicts count only thread counts within them); "
        f"{env.get('cpu_affinity')} logical CPUs", "",
        "## Claims", "", claim_report.verdict_table(verdicts), "",
        "The parts, tables, figures and rules: `report.md` / `report.html` "
        "(`asgdbench report DIR` renders them again).", "",
        "## Performance targets", "",
        f"Time to ε from the runs above (ε = {plan.scale.target_loss:g}, each run at most "
        f"{experiment.time_limit_s:g} s; a run that did not reach ε is censored at that "
        f"limit); updates/s from the fixed-time runs in `{THROUGHPUT_FOLDER}/` "
        f"({experiment.size.throughput_s:g} s each, no target), "
        f"{throughput_medians(throughput, top)}.", "",
        targets_table(targets), ""]
    text = "\n".join(lines)
    (out / SUMMARY).write_text(text)
    return text


def parse_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"thread counts are numbers separated by commas, not {text!r}") from None
    if any(count < 1 or count > 1024 for count in counts):
        raise UserError(f"thread counts must be between 1 and 1024, not {text!r}")
    return counts


def size_from(args: argparse.Namespace) -> Size:
    size = REDUCED if args.reduced else FULL
    changes = {name: value for name, value in (
        ("threads", args.threads and parse_counts(args.threads)),
        ("oversubscribed", args.oversubscribe and parse_counts(args.oversubscribe)),
        ("seeds", args.seeds), ("budget_s", args.budget_s),
        ("compile_s", args.compile_estimate_s)) if value is not None}
    return replace(size, **changes)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="result folder")
    parser.add_argument("--reduced", action="store_true",
                        help="threads 1,2 (+4), 2 seeds, 150 s: the plumbing, on 2 cores")
    parser.add_argument("--budget-s", type=float, help="total seconds, compilation included "
                        "(default 480; --reduced 150)")
    parser.add_argument("--seeds", type=int, help="seeds per cell (default 5, the verdicts' "
                        "minimum of pairs; --reduced 2)")
    parser.add_argument("--threads", help="thread counts (default 1,2,4,8,16; --reduced 1,2)")
    parser.add_argument("--oversubscribe", help="counts beyond the cores (default 32; --reduced 4)")
    parser.add_argument("--compile-estimate-s", type=float,
                        help="compilation the budget sets aside (default 90; --reduced 60)")
    parser.add_argument("--target-loss", type=float, default=TARGET_LOSS,
                        help="ε (default %(default)s)")
    parser.add_argument("--data-dir", help="folder holding mnist/ (default: $ASGDBENCH_DATA)")
    parser.add_argument("--resume", action="store_true", help="keep the runs in --out, do the rest")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    started = monotonic()
    args = build_parser().parse_args(argv)
    try:
        if args.budget_s is not None and not args.budget_s > 0:
            raise UserError(f"--budget-s must be > 0, not {args.budget_s:g}")
        if not args.target_loss > 0:
            raise UserError(f"--target-loss must be > 0, not {args.target_loss:g}")
        recorded = None
        if args.resume and reproduce.is_reproduce_folder(args.out):
            recorded = reproduce.read_plan(args.out).scale.max_time_s
        experiment = plan_experiment(size_from(args), reproduce.physical_cores(),
                                     args.target_loss, recorded)
        print(f"scaling: {experiment.text()}", file=sys.stderr)
        if recorded is not None:
            print(f"scaling: resuming {args.out} with the time limit its runs had, "
                  f"{recorded:g} s; the budget bounds how many pending runs are done",
                  file=sys.stderr)
        if args.dry_run:
            return 0
        main_runs, throughput, left = execute(experiment, args.out, args.resume, args.data_dir,
                                              started)
        print(write_summary(experiment, args.out, main_runs, throughput, left,
                            monotonic() - started))
    except UserError as error:
        print(f"scaling: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"scaling: interrupted; finished runs are kept in {args.out}; to finish, repeat "
              f"the command with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
