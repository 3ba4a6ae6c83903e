"""A/B of the compile cache's worker loop against the generic one, in one process.

    python benchmarks/scripts/compiled_loop_ab.py [--updates 20000] [--rounds 7]

The generic loop (``worker.worker_loop``, the kernels passed as first-class arguments, as
before the compile cache) and the specialised loop a run calls now
(``worker.compiled_worker_loop``: the kernels bound as globals of generated source) run the
same strategy, alternating, in the same process, so machine noise falls on both alike:

- one thread, the loop called directly for an exact update budget: microseconds per update;
- whole runs (``runner.run``) with 2 threads (seq: 1) for the same budget, the generic loop
  put in place of the specialised one: updates/s.

Each figure is the median over the rounds, with the specialised/generic ratio (1.0: the same
speed). Compilation happens before the rounds and stays outside every clock.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from asgdbench.engine import runner, threaded_run
from asgdbench.engine.worker import APPLIED_COUNT, worker_loop
from asgdbench.primitives.protocol import GO, STOP_FLAG

STRATEGIES = ("seq", "lock", "hogwild", "leashed:tp=inf", "sync")


def generic_loop(kernels: dict[str, Any], args: tuple, *, cache: bool = True) -> Any:
    """The generic loop, called as the specialised one is (the kernels bound here)."""
    worker_loop(kernels["read"], kernels["update"], kernels["retire"], kernels["gradient"],
                *args[:9], kernels["rule"], *args[9:])  # compiles, for these argument types

    def call(*loop_args: Any) -> None:
        worker_loop(kernels["read"], kernels["update"], kernels["retire"], kernels["gradient"],
                    *loop_args[:9], kernels["rule"], *loop_args[9:])
    return call


def prepared(strategy: str, updates: int) -> Any:
    """A one-thread run's state, its start barrier open: the loop runs as soon as it is called."""
    run = runner._prepare("mlp-digits", strategy, 1, step=None, lr=None, batch_size=None,
                          seed=0, target_loss=None, max_time=None, max_updates=updates,
                          dtype="float32", data_dir=None, window=None, diverge_factor=10.0,
                          poll_interval=0.005, stop_grace_s=30.0)
    run.control[GO] = 1
    return run


def per_update_us(strategy: str, updates: int, rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {"generic": [], "specialised": []}
    for _ in range(rounds):
        for name, make in (("generic", generic_loop),
                           ("specialised", threaded_run.compiled_worker_loop)):
            run = prepared(strategy, updates)
            stopped = run.control.copy()
            stopped[STOP_FLAG] = 1  # the generic loop runs while it compiles: let it end at once
            loop = make(run.kernels, run._loop_args(0, stopped))
            begin = time.perf_counter()
            loop(*run._loop_args(0, run.control))
            seconds = time.perf_counter() - begin
            assert run.telemetry.counters[0, APPLIED_COUNT] == updates
            times[name].append(seconds / updates * 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


def updates_per_s(strategy: str, updates: int, rounds: int) -> dict[str, float]:
    threads = 1 if strategy == "seq" else 2
    rates: dict[str, list[float]] = {"generic": [], "specialised": []}
    specialised = threaded_run.compiled_worker_loop
    try:
        for _ in range(rounds):
            for name, make in (("generic", generic_loop), ("specialised", specialised)):
                threaded_run.compiled_worker_loop = make  # what a run's threads call
                result = runner.run("mlp-digits", strategy, threads, max_updates=updates,
                                    target_loss=None, max_time=None)
                rates[name].append(result.updates_per_s)
    finally:
        threaded_run.compiled_worker_loop = specialised
    return {name: statistics.median(values) for name, values in rates.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    args = parser.parse_args()
    print(f"{'strategy':16} {'figure':22} {'generic':>10} {'specialised':>12} {'ratio':>7}")
    with runner.single_threaded_blas():
        for strategy in args.strategies.split(","):
            if strategy != "sync":  # SYNC's rounds need all its threads: whole runs only
                one = per_update_us(strategy, args.updates, args.rounds)
                print(f"{strategy:16} {'us/update, 1 thread':22} {one['generic']:10.2f} "
                      f"{one['specialised']:12.2f} {one['specialised'] / one['generic']:7.3f}",
                      flush=True)
            whole = updates_per_s(strategy, args.updates, args.rounds)
            label = "updates/s, run x" + ("1" if strategy == "seq" else "2")
            print(f"{strategy:16} {label:22} {whole['generic']:10.0f} "
                  f"{whole['specialised']:12.0f} {whole['specialised'] / whole['generic']:7.3f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
