"""Tune a sparse workload's defaults with a plain one-thread SGD loop over its own kernels.

    python benchmarks/scripts/tune_sparse.py logreg-zipf --lr 0.1 0.5 1 --batch 16 --seconds 20
    python benchmarks/scripts/tune_sparse.py logreg-zipf --lr 0.5 --lock-threads 2 --targets 0.42

No strategy and no harness: one numba loop samples a minibatch (the worker's sampler),
runs the workload's ``support`` and ``gradient`` kernels and applies
``x[support] -= lr * values``; every ``window`` minibatches (the runner's default smoothing
window for the batch size) it records the mean minibatch loss, which is what the runner
compares with the target. It prints, per lr, the smoothed loss after each second of
training and the time (wall clock, this process, one thread) and updates to reach each
``--targets`` value, then the workload's own ``evaluate`` of the final vector. Used to set
the defaults of :mod:`asgdbench.workloads.sparse_catalog`; a lock run with 2 threads does
at most twice as many updates per second and pays the lock, so a target this loop reaches
in a third of ``max_time`` is a safe default.

``--lock-threads N`` checks that directly, before the harness has a sparse path: N threads
run a lock-based AsyncSGD of their own (an OS mutex held to copy the support's coordinates
out, then to apply the sparse step: the design's ``lock`` on the sparse path), each thread
``window / N`` minibatches per chunk; the target is taken as reached when the mean of every
thread's latest chunk is at it. No telemetry, no loss log: a lower bound on the harness's
time to target, not a substitute for ``asgdbench run``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import threading
import time
from functools import partial

import numpy as np
from numba import njit

from asgdbench.plugins.workloads import get_workload
from asgdbench.primitives.atomics import mutex_lock, mutex_unlock, new_mutex
from asgdbench.primitives.rng import sample_batch, thread_states


@njit(nogil=True)
def sgd_chunk(support_kernel, gradient_kernel, params, data, n_samples, work, support, values,
              rows, state, lr, minibatches, losses):
    """``minibatches`` plain SGD steps; their losses into ``losses``."""
    for step in range(minibatches):
        sample_batch(state, n_samples, rows)
        n = support_kernel(data, rows, work, support)
        losses[step] = gradient_kernel(params, data, rows, work, support, n, values)
        for k in range(n):
            params[support[k]] -= lr * values[k]


@njit(nogil=True)
def locked_chunk(support_kernel, gradient_kernel, params, local, mutex, data, n_samples, work,
                 support, values, rows, state, lr, minibatches, losses):
    """``minibatches`` lock-based AsyncSGD steps on the sparse path: under the mutex, read
    the support's coordinates into this thread's vector; outside it, the gradient; under it
    again, the step."""
    for step in range(minibatches):
        sample_batch(state, n_samples, rows)
        n = support_kernel(data, rows, work, support)
        mutex_lock(mutex)
        for k in range(n):
            local[support[k]] = params[support[k]]
        mutex_unlock(mutex)
        losses[step] = gradient_kernel(local, data, rows, work, support, n, values)
        mutex_lock(mutex)
        for k in range(n):
            params[support[k]] -= lr * values[k]
        mutex_unlock(mutex)


def lock_run(workload, lr: float, batch: int, seconds: float, targets: list[float], seed: int,
             n_threads: int) -> None:
    params = workload.init_params(seed)
    mutex = new_mutex()
    window = max(16, math.ceil(2048 / batch))
    chunk = max(1, window // n_threads)
    room = workload.max_support(batch)
    states = thread_states(seed, n_threads)
    latest = [math.inf] * n_threads
    reached: dict[float, float] = {}
    done = [0] * n_threads
    stop = threading.Event()
    start = [0.0]
    start_line = threading.Barrier(n_threads + 1,  # the clock starts once all have compiled
                                   action=lambda: start.__setitem__(0, time.perf_counter()))
    guard = threading.Lock()

    def worker(tid: int) -> None:
        local = params.copy()
        support, values = np.empty(room, np.int64), np.empty(room, workload.dtype)
        rows, work, losses = np.empty(batch, np.int64), workload.make_workspace(batch), np.empty(chunk)
        locked_chunk(workload.support, workload.gradient, local.copy(), local, mutex,
                     workload.train_data, workload.n_samples, work, support, values, rows,
                     states[tid].copy(), lr, 1, losses)  # compile outside the clock
        start_line.wait()
        while not stop.is_set() and time.perf_counter() - start[0] < seconds:
            locked_chunk(workload.support, workload.gradient, params, local, mutex,
                         workload.train_data, workload.n_samples, work, support, values, rows,
                         states[tid], lr, chunk, losses)
            done[tid] += chunk
            with guard:
                latest[tid] = float(losses.mean())
                smoothed = sum(latest) / n_threads
                elapsed = time.perf_counter() - start[0]
                for target in targets:
                    if target not in reached and smoothed <= target:
                        reached[target] = elapsed
                if len(reached) == len(targets) and targets:
                    stop.set()

    threads = [threading.Thread(target=worker, args=(tid,)) for tid in range(n_threads)]
    for thread in threads:
        thread.start()
    start_line.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start[0]
    print(f"{workload.name} lock x{n_threads} lr {lr:g} batch {batch}: {sum(done)} updates in "
          f"{elapsed:.1f} s ({sum(done) / elapsed:,.0f}/s)")
    for target in targets:
        when = reached.get(target)
        print(f"  target {target:g}: " + ("not reached" if when is None else f"{when:.2f} s"))
    print(f"  evaluate: {workload.evaluate(params)}")


def tune(name: str, lr: float, batch: int, seconds: float, targets: list[float], dtype: str,
         seed: int, options: dict[str, float], lock_threads: int = 0) -> None:
    spec = get_workload(name)
    if options:  # the builder's options (reg, rank...) overridden for this tuning run
        spec = dataclasses.replace(spec, build=partial(spec.build, **options))
    workload = spec.load(dtype=dtype)
    if lock_threads:
        lock_run(workload, lr, batch, seconds, targets, seed, lock_threads)
        return
    params = workload.init_params(seed)
    room = workload.max_support(batch)
    support = np.empty(room, np.int64)
    values = np.empty(room, workload.dtype)
    rows = np.empty(batch, np.int64)
    work = workload.make_workspace(batch)
    state = thread_states(seed, 1)[0]
    window = max(16, math.ceil(2048 / batch))
    losses = np.empty(window)
    sgd_chunk(workload.support, workload.gradient, params.copy(), workload.train_data,
              workload.n_samples, work, support, values, rows, state.copy(), lr, 1, losses)
    reached: dict[float, tuple[float, int]] = {}
    trace = []
    updates = 0
    start = time.perf_counter()
    next_print = 1.0
    smoothed = float("nan")
    while (elapsed := time.perf_counter() - start) < seconds:
        sgd_chunk(workload.support, workload.gradient, params, workload.train_data,
                  workload.n_samples, work, support, values, rows, state, lr, window, losses)
        updates += window
        smoothed = float(losses.mean())
        elapsed = time.perf_counter() - start
        if not np.isfinite(smoothed):
            break
        for target in targets:
            if target not in reached and smoothed <= target:
                reached[target] = (elapsed, updates)
        if elapsed >= next_print:
            trace.append(f"{elapsed:.0f}s:{smoothed:.4f}")
            next_print += 1.0
    print(f"{name} {options or ''} lr {lr:g} batch {batch}: {updates} updates in {elapsed:.1f} s "
          f"({updates / elapsed:,.0f}/s), smoothed loss {smoothed:.4f}; "
          f"initial training loss {workload.training_loss(workload.init_params(seed)):.4f}")
    print("  trace " + " ".join(trace))
    for target in targets:
        when = reached.get(target)
        print(f"  target {target:g}: " + ("not reached" if when is None else
                                         f"{when[0]:.2f} s, {when[1]} updates"))
    print(f"  evaluate: {workload.evaluate(params)}; training loss "
          f"{workload.training_loss(params):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload")
    parser.add_argument("--lr", type=float, nargs="+", required=True)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--targets", type=float, nargs="*", default=[])
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--option", action="append", default=[], metavar="NAME=NUMBER",
                        help="a builder option to override (reg=1e-5, rank=20), repeatable")
    parser.add_argument("--lock-threads", type=int, default=0, metavar="N",
                        help="run a lock-based AsyncSGD with N threads instead (see above)")
    args = parser.parse_args()
    options = {}
    for option in args.option:
        key, _, value = option.partition("=")
        options[key] = int(value) if value.isdigit() else float(value)
    for lr in args.lr:
        tune(args.workload, lr, args.batch, args.seconds, args.targets, args.dtype, args.seed,
             options, args.lock_threads)


if __name__ == "__main__":
    main()
