"""``asgdbench reproduce``: the runs each claim needs, through the compare grid's machinery.

A plan is every claim's cells (:mod:`~asgdbench.study.claims`) on every
workload, expanded by :func:`asgdbench.study.grid.expand` and merged by
``RunConfig.key()``, so a run two claims need is done once. Runs go in rounds
of one seed each, the cells of a round in a seeded shuffled order
(:func:`asgdbench.study.grid.order_cells`), so that the strategies a verdict
compares as pairs of seeds ran side by side, under the same drift in the
machine's load. All runs of a
workload share its stop rules (the target loss, and the scale's share of its
time limit), which is what lets claims share runs and ``--resume`` hold. The
plan's choices (scale, claims, workloads, the cores thread counts were chosen
for, each workload's default step size) go to ``reproduce.json`` in the result
folder, next to ``runs.jsonl``; ``asgdbench report DIR`` reads both and renders
the report again without running anything.

At a scale with ``planned_seeds`` (standard), the scale's seeds are a pilot:
:func:`plan_seeds` reads its spread and says how many seeds claim 1 needs for
all its direction parts (faster at all, one per thread count and baseline) to
be supported together with 80 % power when the true speed-up is 20 %; the
command line then
runs up to that many (at most ``planned_seeds``) and records the count in the
plan file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asgdbench.engine import blas
from asgdbench.engine.run_result import WORKLOAD_DEFAULT, RunConfig, RunResult
from asgdbench.errors import UserError
from asgdbench.plugins.workloads import get_workload, load_workload
from asgdbench.study import grid
from asgdbench.study.claim_runs import (
    BASELINES,
    LEASHED,
    by_seed,
    censored,
    runs_of,
    time_to_epsilon,
)
from asgdbench.study.claim_statistics import (
    CONFIDENCE,
    POWER,
    log_ratio,
    paired_effect,
    seeds_needed,
)
from asgdbench.study.claims import (
    CLAIM_NUMBERS,
    SCALES,
    Context,
    Scale,
    Verdict,
    get_claim,
    parallel_threads,
)
from asgdbench.study.result_folder import ResultStore

if TYPE_CHECKING:  # dask is an optional extra
    from asgdbench.study.cluster import Cluster

MANIFEST = "reproduce.json"


@dataclass(frozen=True)
class Plan:
    """What a reproduce folder holds or will hold: the choices, and every run they imply."""

    scale: Scale
    claims: tuple[int, ...]
    workloads: tuple[str, ...]
    cores: int
    base_lr: dict[str, float]
    cells: dict[str, list[RunConfig]]
    """Per workload, every run to do, claims' shared runs once."""
    notes: tuple[str, ...] = ()
    sparse_workloads: tuple[str, ...] = ()
    """The workloads of the sparse-regime claims (6), registered here or not."""
    missing: dict[str, str] = field(default_factory=dict)
    """Sparse workloads that cannot run here (not registered), with the reason: no runs,
    their verdicts read "not testable here"."""

    @property
    def context(self) -> Context:
        return Context(self.cores, self.base_lr, missing=self.missing)

    def workloads_of(self, number: int) -> tuple[str, ...]:
        """The workloads claim ``number`` runs on: its regime's (quick: claims 2 and 6 on the
        first only)."""
        workloads = (self.sparse_workloads if get_claim(number).regime == "sparse"
                     else self.workloads)
        if number in self.scale.first_workload_only:
            return workloads[:1]
        return workloads

    def manifest(self) -> dict[str, Any]:
        data = {"scale": self.scale.name, "seeds": self.scale.seeds, "claims": list(self.claims),
                "workloads": list(self.workloads),
                "sparse_workloads": list(self.sparse_workloads), "cores": self.cores,
                "base_lr": self.base_lr, "notes": list(self.notes),
                "order": grid.INTERLEAVED, "order_seed": grid.DEFAULT_ORDER_SEED}
        if self.scale.name not in SCALES:  # a scale of a script's own: written out in full
            data["scale_definition"] = asdict(self.scale)
        return data


def physical_cores() -> int:
    """Cores this process may run on, counting a core's hyper-threads once."""
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    logical = len(allowed) if allowed else (os.cpu_count() or 1)
    try:
        cores, processor, physical = set(), None, "0"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "processor":
                processor = int(value)
            elif key == "physical id":
                physical = value
            elif key == "core id" and (allowed is None or processor in allowed):
                cores.add((physical, value))
        return min(logical, len(cores)) if cores else logical
    except (OSError, ValueError):
        return logical


def scale_from_definition(definition: dict[str, Any]) -> Scale:
    """A scale written into a manifest by :meth:`Plan.manifest` (lists back to tuples)."""
    return Scale(**{name: tuple(value) if isinstance(value, list) else value
                    for name, value in definition.items()})


def parse_claims(text: str) -> tuple[int, ...]:
    """``1,3,5`` -> (1, 3, 5); a UserError naming the valid numbers otherwise."""
    numbers = []
    for item in (part.strip() for part in text.split(",")):
        if not item.isdigit() or int(item) not in CLAIM_NUMBERS:
            raise UserError(f"--claims takes claim numbers among "
                            f"{','.join(map(str, CLAIM_NUMBERS))}, not {item!r}")
        numbers.append(int(item))
    return tuple(sorted(set(numbers)))


def get_scale(name: str) -> Scale:
    if name not in SCALES:
        raise UserError(f"--scale must be one of {', '.join(SCALES)}, not {name!r}")
    return SCALES[name]


def is_sparse_workload(name: str) -> bool:
    """Whether a registered workload belongs to the sparse regime (its group is ``sparse``)."""
    return get_workload(name).group == "sparse"


def split_by_regime(names: Sequence[str], scale: Scale) -> tuple[tuple[str, ...],
                                                                 tuple[str, ...]]:
    """``--workloads`` as (dense, sparse): each replaces its regime's defaults where it names
    any (the dense ones' defaults are then whichever load, see :func:`default_workloads`),
    so ``--claims 6 --workloads logreg-zipf`` runs claim 6 on logreg-zipf alone."""
    sparse = tuple(name for name in names if is_sparse_workload(name))
    dense = tuple(name for name in names if name not in sparse)
    return dense, sparse or scale.sparse_workloads


def default_workloads(scale: Scale, data_dir: str | None) -> tuple[str, ...]:
    """The scale's workloads whose data is here (a download-free one always is)."""
    present = []
    for name in scale.workloads:
        try:
            load_workload(name, data_dir=data_dir)
        except UserError:
            continue
        present.append(name)
    return tuple(present)


def make_plan(scale: Scale, claims: Sequence[int], workloads: Sequence[str], cores: int,
              base_lr: dict[str, float] | None = None,
              sparse_workloads: Sequence[str] | None = None) -> Plan:
    """Every run the claims need on every workload of their regime, each once; ``base_lr``
    defaults to the workloads'; ``sparse_workloads`` to the scale's.

    A sparse workload that is not registered here is kept, with no runs, as missing (its
    claims read "not testable here" there): the sparse regime must not stop the dense claims.
    """
    base_lr = dict(base_lr or {})
    sparse = tuple(scale.sparse_workloads if sparse_workloads is None else sparse_workloads)
    limit = blas.thread_limit()
    cells, notes, missing = {}, [], {}
    wanted = [number for number in claims if get_claim(number).regime == "sparse"]
    regimes = [(name, "dense") for name in workloads]
    regimes += [(name, "sparse") for name in sparse if wanted and name not in workloads]
    for name, regime in regimes:
        if regime == "sparse":
            try:
                spec = get_workload(name)
            except UserError as error:  # the registry's line lists every workload: too long
                missing[name] = ("not registered in this asgdbench" if "unknown" in str(error)
                                 else str(error))
                notes.append(f"claim {','.join(map(str, wanted))}: workload {name!r} is "
                             f"{missing[name]}, so not testable on it")
                continue
        else:
            spec = get_workload(name)
        base_lr.setdefault(name, spec.defaults.lr)
        max_time = (scale.max_time_s if scale.max_time_s is not None
                    else spec.defaults.max_time * scale.max_time_factor)
        target_loss = WORKLOAD_DEFAULT if scale.target_loss is None else scale.target_loss
        configs: dict[tuple, RunConfig] = {}
        for number in claims:
            own = sparse if get_claim(number).regime == "sparse" else tuple(workloads)
            if name not in own:
                continue
            if number in scale.first_workload_only and name != own[0]:
                notes.append(f"claim {number} runs on {own[0]} only at {scale.name} scale "
                             f"(to fit its budget)")
                continue
            for part in get_claim(number).plan(scale, cores):
                threads = [t for t in part.threads if limit is None or t <= limit.threads]
                if len(threads) < len(part.threads):
                    notes.append(f"claim {number}: thread counts above {limit.threads} left out "
                                 f"({limit.reason})")
                strategies, _ = grid.parse_specs(part.strategies)
                for config in grid.expand(spec, strategies, threads,
                                          [base_lr[name] * factor for factor in part.lr_factors],
                                          scale.seeds, target_loss=target_loss,
                                          max_time=max_time):
                    configs.setdefault(config.key(), config)
        # rounds of one seed, shuffled within: a load that drifts while the plan runs
        # (other jobs) falls on every strategy alike, and seeds pair runs of one round
        cells[name] = grid.order_cells(list(configs.values()))
    return Plan(scale, tuple(claims), tuple(workloads), cores, base_lr, cells,
                tuple(dict.fromkeys(notes)), sparse if wanted else (), missing)


def write_manifest(store: ResultStore, plan: Plan) -> None:
    try:
        (store.folder / MANIFEST).write_text(json.dumps(plan.manifest(), indent=1) + "\n")
    except OSError as error:
        raise UserError(f"cannot write {store.folder / MANIFEST} ({error.strerror})") from None


def is_reproduce_folder(folder: str | os.PathLike) -> bool:
    return (Path(folder) / MANIFEST).is_file()


def read_plan(folder: str | os.PathLike, scale: Scale | None = None) -> Plan:
    """The plan a reproduce folder was made with (``scale``: a test's own, instead of a named one)."""
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text())
        if scale is None and "scale_definition" in data:
            scale = scale_from_definition(data["scale_definition"])
        scale = scale or get_scale(data["scale"])
        if "seeds" in data:
            scale = scale.with_seeds(int(data["seeds"]))
        plan = make_plan(scale, data["claims"], data["workloads"], int(data["cores"]),
                         data["base_lr"], data.get("sparse_workloads"))
        extra = tuple(note for note in data.get("notes", []) if note not in plan.notes)
        return replace(plan, notes=plan.notes + extra)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"{path} is not a reproduce plan ({error})") from None


def check_plan(plan: Plan, finished: Sequence[RunResult], data_dir: str | None,
               cluster: Cluster | None = None) -> dict:
    """Load each workload and refuse the plan before its first run if any cell cannot run here.

    With a ``cluster`` the workers load the workloads and check the cells on
    their own machines; nothing is loaded here.
    """
    loaded = {}
    for name, cells in plan.cells.items():
        workload = None if cluster is not None else load_workload(name, data_dir=data_dir)
        grid.check_can_run(workload, cells, cluster=cluster)
        grid.check_resume(cells, finished)
        loaded[name] = workload
    return loaded


def run_plan(plan: Plan, loaded: dict, finished_keys: set[tuple],
             on_result: Callable[[RunResult], None], cluster: Cluster | None = None) -> int:
    """Run every planned run not yet finished, workload by workload; how many ran.

    On a ``cluster`` every workload's runs go out as one grid, so that no node
    idles while another finishes a workload.
    """
    todo = {name: grid.pending(cells, finished_keys) for name, cells in plan.cells.items()}
    order = {key: value for cells in plan.cells.values()
             for key, value in grid.positions(cells).items()}
    if cluster is not None:
        every = [config for cells in todo.values() for config in cells]
        grid.run_grid(None, every, on_result, cluster=cluster, order=order)
        return len(every)
    for name, cells in todo.items():
        grid.run_grid(loaded[name], cells, on_result, order=order)
    return sum(len(cells) for cells in todo.values())


def count_pending(plan: Plan, finished_keys: set[tuple]) -> tuple[int, int]:
    """(runs still to do, runs in the plan)."""
    every = [config for cells in plan.cells.values() for config in cells]
    return len(grid.pending(every, finished_keys)), len(every)


def judge(plan: Plan, results: Sequence[RunResult]) -> list[Verdict]:
    """One verdict per claim and workload, from the runs in the folder."""
    return [get_claim(number).judge(results, workload, plan.context)
            for number in plan.claims for workload in plan.workloads_of(number)]


@dataclass(frozen=True)
class SeedPlan:
    """How many seeds claim 1 needs for all its direction parts at a true 20 % speed-up, from a
    pilot (see :func:`plan_seeds`)."""

    seeds: int | None
    """None: more than the planning limit, or no spread to plan from."""
    spread: float
    """Largest standard deviation of the per-seed log time ratios, over the pilot's comparisons."""
    pilot_seeds: int
    reason: str
    comparisons: int = 1
    """Comparisons (thread counts x baselines) of claim 1 on one workload, planned jointly."""


def plan_seeds(results: Sequence[RunResult], workloads: Sequence[str], context: Context,
               scale: Scale, effect: float = 1.2) -> SeedPlan:
    """From a pilot's runs: the seeds with which, if every baseline is ``effect`` times slower
    than Leashed, *every* direction part of claim 1 on a workload (interval above 1, one per
    thread count and baseline) is supported with probability >= 80 %.

    Planned on the noisiest comparison of the pilot (the standard deviation of its
    per-seed log time ratios, censored pairs as in the verdicts), each of the K
    comparisons at power ``0.8 ** (1 / K)``: the parts' low ends rise with the
    differences, which share each seed's Leashed run with one sign, so their
    successes are positively associated and the joint power is at least the
    product, 80 %. The count is the smallest n whose minimum detectable effect
    (the exact test's, under normal errors) is at most ``log(effect)``. It is not
    a plan for the magnitude parts (interval above ``effect``): at a true ratio
    of exactly ``effect`` those are supported at most 5 % of the time; with n
    seeds each has the stated power at a true ratio of ``effect ** 2`` (1.44).
    """
    spreads = []
    counts = parallel_threads(context.cores, scale)
    for workload in workloads:
        lr = context.base_lr[workload]
        for threads in counts:
            leashed = by_seed(runs_of(results, workload, LEASHED, threads, lr),
                              time_to_epsilon, censored)
            for baseline in BASELINES:
                runs = runs_of(results, workload, baseline, threads, lr)
                found = paired_effect(by_seed(runs, time_to_epsilon, censored), leashed,
                                      log_ratio)
                if found.differences.size >= 2:
                    spreads.append(found.spread)
    pilot = scale.seeds
    comparisons = len(counts) * len(BASELINES)
    if not spreads:
        return SeedPlan(None, float("nan"), pilot, "the pilot has no comparison with two "
                                                   "informative seed pairs", comparisons)
    spread = max(spreads)
    per_comparison = POWER ** (1 / comparisons)
    needed = seeds_needed(spread, math.log(effect), power=per_comparison)
    text = (f"pilot of {pilot} seeds: sd of per-seed log time ratios up to {spread:.3f}; for "
            f"all {comparisons} direction parts of claim 1 (interval above 1) to be supported "
            f"together with {POWER:.0%} power at a true {effect - 1:.0%} speed-up (each at "
            f"{per_comparison:.1%}, {CONFIDENCE:.0%} intervals) needs ")
    return SeedPlan(needed, spread, pilot,
                    text + (f"{needed} seeds; the magnitude parts (above {effect:g}) reach "
                            f"that power only at a true {effect ** 2:.2f}x"
                            if needed else "more seeds than planning allows"), comparisons)
