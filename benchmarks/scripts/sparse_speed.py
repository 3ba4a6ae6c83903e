"""The sparse path's speed (issue 22, item 4), each figure a ratio against a baseline measured
in the same run.

    python benchmarks/scripts/sparse_speed.py [--quick] [--json OUT.json] [--sizes 1e4,1e5,...]

1. ``seq`` on ``logreg-zipf``, batch 1: one epoch (as many updates as training rows) through
   :func:`asgdbench.run`, the harness's whole loop, against scikit-learn's
   ``SGDClassifier(loss="log_loss", learning_rate="constant", max_iter=1, tol=None,
   shuffle=False)`` fitting one epoch of the same CSR rows (float64, converted before the
   clock starts), same step size, its L2 penalty at the workload's regularization. Target:
   <= 1.0x. The two do not sample alike (asgdbench draws rows at random, scikit-learn walks
   them in order), so this compares the cost of an epoch, not the model it reaches.
2. Per-update cost against d, at a fixed support of ``--nnz`` coordinates (75: logreg-zipf's
   rows), for d from 1e4 to 1e7: a strategy's ``read_sparse`` + ``update_sparse``, one
   thread, in an njit driver that cycles through prepared supports (so that a call's
   microseconds of dispatch do not hide the update; as benchmarks/bench_kernels.py does
   for the dense kernels). Supports are drawn as logreg-zipf draws its rows' features
   (Zipf ranks over a random permutation of the d coordinates) and, for the worst case of
   the caches, uniformly. ``hogwild``: target, per-update time at 1e7 <= 1.5x that at 1e4.
   ``leashed`` (its publish copies the base version: O(d) by design): the slope of its
   per-update time against the vector's bytes, as bytes/s, against the slope of a plain
   ``np.copyto`` of vectors of the same sizes, timed in the same rounds.
3. Time to the target loss on ``logreg-zipf`` at 1, 2, 4 and 8 threads for ``hogwild``,
   ``lock`` and ``leashed:tp=inf``, in interleaved rounds (reported: more threads than
   cores time-share them, and the table says how many cores there were).

Timings interleave the contenders and take medians (benchmarks/scripts/perf_targets.py's
helpers), so machine noise hits all alike; the BLAS threadpoolctl sees is printed (nothing
here calls BLAS, but a BLAS pool spinning beside the run would steal a core).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit
from perf_targets import interleaved_medians, interleaved_samples
from tabulate import tabulate

from asgdbench.engine.machine import environment
from asgdbench.engine.runner import UNLIMITED_UPDATES, run
from asgdbench.plugins.step_rules import parse_step_spec
from asgdbench.plugins.strategies import parse_spec
from asgdbench.plugins.workloads import load_workload
from asgdbench.primitives.protocol import APPLIED, CONTROL_CELLS, MAX_UPDATES

REPO = Path(__file__).resolve().parents[2]
WORKLOAD = "logreg-zipf"
EPOCH_TARGET = 1.0
GROWTH_TARGET = 1.5
SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
THREADS = (1, 2, 4, 8)
TIME_TO_TARGET_STRATEGIES = ("hogwild", "lock", "leashed:tp=inf")
SUPPORTS_PER_SIZE = 256
"""Distinct supports a driver cycles through: more than one, so that an update does not find
the last one's coordinates in the cache by construction."""


# -- 1. one epoch of seq against scikit-learn's SGDClassifier ---------------------------------

def csr_of(workload: Any):
    """The workload's training rows as a float64 scipy CSR matrix and its labels."""
    from scipy import sparse

    indptr, indices, values, labels = workload.train_data[:4]
    matrix = sparse.csr_matrix((np.asarray(values, np.float64), indices, indptr),
                               shape=(workload.n_samples, workload.n_params))
    return matrix, np.asarray(labels, np.float64)


def seq_epoch(workload_name: str = WORKLOAD, rounds: int = 5,
              n_updates: int | None = None) -> dict[str, Any]:
    """Seconds per epoch: ``seq`` batch 1 through :func:`run` against SGDClassifier's epoch."""
    from sklearn.linear_model import SGDClassifier

    workload = load_workload(workload_name)
    updates = n_updates or workload.n_samples
    X, y = csr_of(workload)
    X, y = X[:updates], y[:updates]  # the same number of updates on both sides
    lr = workload.defaults.lr
    alpha = float(workload.description.get("reg", 1e-5))

    def ours() -> float:
        result = run(workload, "seq", 1, batch_size=1, lr=lr, max_updates=updates,
                     target_loss=None, max_time=None, poll_interval=0.001)
        assert result.updates_applied == updates, result.status
        return result.wall_s

    def theirs(shuffle: bool = False) -> SGDClassifier:
        return SGDClassifier(loss="log_loss", learning_rate="constant", eta0=lr, alpha=alpha,
                             max_iter=1, tol=None, shuffle=shuffle, random_state=0).fit(X, y)

    in_order, at_random = (KernelEpoch(workload, updates, order) for order in ("in order",
                                                                                "at random"))
    ours()  # compiles (and warms the on-disk cache)
    theirs()
    # run()'s own wall_s is the training phase (threads released to joined): setup, compile
    # and the final evaluation are outside it, as scikit-learn's input checks are inside its
    # fit: the clock below is taken around both calls, and run()'s wall_s reported beside it.
    # The kernels alone (support + gradient + sparse step in one njit loop, rows in order or
    # drawn as the worker draws them) say where the time goes: the harness or the row order
    walls: list[float] = []
    samples = interleaved_samples({"asgdbench seq": lambda: walls.append(ours()),
                                   "sklearn SGDClassifier": theirs,
                                   "sklearn SGDClassifier, shuffle=True": lambda: theirs(True),
                                   "kernels alone, rows in order": in_order.epoch,
                                   "kernels alone, rows at random": at_random.epoch}, rounds)
    medians = {name: float(np.median(values)) for name, values in samples.items()}
    training = float(np.median(walls))
    anchor = medians["sklearn SGDClassifier"]
    return {"workload": workload_name, "updates": updates, "lr": lr, "alpha": alpha,
            "median_s": medians, "training_phase_s": training,
            "ratio": training / anchor,
            "ratio_whole_call": medians["asgdbench seq"] / anchor,
            "ratios": {name: value / anchor for name, value in medians.items()},
            "target": f"<= {EPOCH_TARGET}x"}


@functools.cache
def kernel_epoch() -> Any:
    """seq's step without the harness, an njit loop: support, gradient and sparse step for each
    row of ``order``, batch 1; returns the summed loss, so nothing is optimised away. Made on
    first use: the shared sparse step exists only with the sparse path (issue 22)."""
    from asgdbench.primitives.steps import sparse_step_inplace

    @njit(nogil=True)
    def loop(support_kernel, gradient, params, data, order, work, support, values, lr):
        rows = np.empty(1, np.int64)
        total = 0.0
        for i in range(order.shape[0]):
            rows[0] = order[i]
            n_support = support_kernel(data, rows, work, support)
            total += gradient(params, data, rows, work, support, n_support, values)
            sparse_step_inplace(params, support, values, n_support, lr)
        return total
    return loop


class KernelEpoch:
    """One epoch of :func:`kernel_epoch` on a loaded sparse workload (compiled on creation)."""

    def __init__(self, workload: Any, updates: int, order: str) -> None:
        self.workload = workload
        self.order = (np.arange(updates, dtype=np.int64) if order == "in order" else
                      np.random.default_rng(0).integers(0, workload.n_samples, updates))
        size = workload.max_support(1)
        self.support = np.empty(size, np.int64)
        self.values = np.empty(size, workload.dtype)
        self.work = workload.make_workspace(1)
        self.lr = workload.dtype.type(workload.defaults.lr)
        self.epoch(self.order[:1])

    def epoch(self, order: np.ndarray | None = None) -> float:
        w = self.workload
        return kernel_epoch()(w.support, w.gradient, w.init_params(0), w.train_data,
                            self.order if order is None else order, self.work, self.support,
                            self.values, self.lr)


# -- 2. per-update cost against d --------------------------------------------------------------

@njit(nogil=True)
def sparse_read_update_steps(read_sparse, update_sparse, rule, rule_state, state, supports,
                             values, n_support, lr, control, steps):
    """``steps`` read_sparse + update_sparse pairs as thread 0 of the worker loop makes them,
    cycling through the rows of ``supports``; returns the updates applied."""
    applied = 0
    for k in range(steps):
        support = supports[k % supports.shape[0]]
        _, token = read_sparse(state, 0, control, support, n_support)
        outcome = update_sparse(state, 0, token, support, values, n_support, lr, control, rule,
                                rule_state)[0]
        applied += outcome == APPLIED
    return applied


@njit(nogil=True)
def plain_sparse_steps(params, supports, values, lr, steps):
    """The memory floor under a sparse update: ``x[S] -= lr * v`` alone, no strategy, cycling
    through the same supports as :func:`sparse_read_update_steps`."""
    for k in range(steps):
        support = supports[k % supports.shape[0]]
        for j in range(support.shape[0]):
            params[support[j]] -= lr * values[j]
    return params[supports[0, 0]]


def draw_supports(n_params: int, nnz: int, count: int, mode: str, seed: int = 0) -> np.ndarray:
    """``count`` supports of ``nnz`` distinct coordinates of ``n_params``, sorted: ``zipf`` as
    logreg-zipf's rows draw their features (rank k with weight 1 / (k + 1), ranks over a random
    permutation), ``uniform`` uniformly."""
    rng = np.random.default_rng(seed)
    permutation = rng.permutation(n_params) if mode == "zipf" else None
    cumulative = np.cumsum(1.0 / np.arange(1, n_params + 1)) if mode == "zipf" else None
    supports = np.empty((count, nnz), np.int64)
    for row in range(count):
        chosen: dict[int, None] = {}  # in the order drawn: the first nnz distinct draws
        while len(chosen) < nnz:
            if mode == "zipf":
                ranks = np.searchsorted(cumulative, rng.random(nnz) * cumulative[-1])
                drawn = permutation[np.minimum(ranks, n_params - 1)]
            else:
                drawn = rng.integers(0, n_params, nnz)
            for coordinate in drawn.tolist():
                if len(chosen) < nnz:
                    chosen.setdefault(coordinate)
        supports[row] = sorted(chosen)
    return supports


class SparseUpdates:
    """One strategy's sparse read + update at one d, ready to time (compiled on construction)."""

    def __init__(self, strategy: str, n_params: int, supports: np.ndarray,
                 dtype: str = "float32", lr: float = 2.0 ** -10) -> None:
        spec = parse_spec(strategy)
        if not spec.strategy.has_sparse_path:
            raise ValueError(f"strategy {strategy!r} has no sparse path")
        constant = parse_step_spec(None)
        self.kernels = (spec.strategy.read_sparse, spec.strategy.update_sparse,
                        constant.rule.step, constant.make_state(1))
        self.state = spec.strategy.make_state(np.zeros(n_params, dtype), 1, **spec.kwargs)
        self.supports = supports
        self.values = np.random.default_rng(1).standard_normal(supports.shape[1]).astype(dtype)
        self.lr = np.dtype(dtype).type(lr)
        self.control = np.zeros(CONTROL_CELLS, np.int64)
        self.control[MAX_UPDATES] = UNLIMITED_UPDATES
        self.steps(1)

    def steps(self, count: int) -> int:
        read, update, rule, rule_state = self.kernels
        return sparse_read_update_steps(read, update, rule, rule_state, self.state, self.supports,
                                        self.values, self.supports.shape[1], self.lr, self.control,
                                        count)


def bytes_per_second(vector_bytes, seconds) -> float:
    """The inverse of the least-squares slope of ``seconds`` against ``vector_bytes``: how
    many bytes of vector each extra second buys (inf if the time does not grow)."""
    slope = np.polyfit(np.asarray(vector_bytes, float), np.asarray(seconds, float), 1)[0]
    return float(1 / slope) if slope > 0 else math.inf


def per_update_against_d(sizes=SIZES, nnz: int = 75, repeats: int = 9, mode: str = "zipf",
                         steps_for=lambda d: max(200, min(20_000, 2 * 10 ** 9 // (40 * d))),
                         dtype: str = "float32") -> dict[str, Any]:
    """Seconds per update of hogwild and leashed at each d, and np.copyto of a d-vector."""
    rows = []
    itemsize = np.dtype(dtype).itemsize
    for d in sizes:
        supports = draw_supports(d, nnz, SUPPORTS_PER_SIZE, mode)
        hogwild = SparseUpdates("hogwild", d, supports, dtype)
        leashed = SparseUpdates("leashed:tp=inf", d, supports, dtype)
        source, target = np.ones(d, dtype), np.empty(d, dtype)
        plain, values = np.zeros(d, dtype), hogwild.values
        plain_sparse_steps(plain, supports, values, hogwild.lr, 1)  # compiles
        hogwild_steps, leashed_steps = 200_000, steps_for(d)
        medians = interleaved_medians({
            "hogwild": lambda: hogwild.steps(hogwild_steps),
            "plain": lambda: plain_sparse_steps(plain, supports, values, hogwild.lr,
                                                hogwild_steps),
            "leashed": lambda: leashed.steps(leashed_steps),
            "copyto": lambda: np.copyto(target, source),
        }, repeats)
        rows.append({"n_params": d, "bytes": d * itemsize,
                     "hogwild_us": 1e6 * medians["hogwild"] / hogwild_steps,
                     "plain_step_us": 1e6 * medians["plain"] / hogwild_steps,
                     "leashed_us": 1e6 * medians["leashed"] / leashed_steps,
                     "copyto_us": 1e6 * medians["copyto"]})
    first, last = rows[0], rows[-1]
    size_bytes = [r["bytes"] for r in rows]
    leashed_rate = bytes_per_second(size_bytes, [1e-6 * r["leashed_us"] for r in rows])
    copy_rate = bytes_per_second(size_bytes, [1e-6 * r["copyto_us"] for r in rows])
    return {"mode": mode, "nnz": nnz, "dtype": dtype, "rows": rows,
            "hogwild_growth": last["hogwild_us"] / first["hogwild_us"],
            "plain_step_growth": last["plain_step_us"] / first["plain_step_us"],
            "leashed_bytes_per_s": leashed_rate, "copyto_bytes_per_s": copy_rate,
            "leashed_vs_copyto": leashed_rate / copy_rate,
            "target": f"hogwild growth <= {GROWTH_TARGET}x; leashed linear (slope reported)"}


# -- 3. time to target across threads ----------------------------------------------------------

def time_to_target(workload_name: str = WORKLOAD, threads=THREADS,
                   strategies=TIME_TO_TARGET_STRATEGIES, rounds: int = 3,
                   max_time: float | None = None) -> dict[str, Any]:
    """Seconds to the workload's target, each (strategy, threads) once per round, interleaved."""
    workload = load_workload(workload_name)
    limit = max_time if max_time is not None else workload.defaults.max_time
    cells = {(spec, m): None for spec in strategies for m in threads}
    for spec, m in cells:  # compile outside the measured rounds
        run(workload, spec, m, max_updates=200, target_loss=None, max_time=None)
    seconds: dict[tuple[str, int], list[float]] = {cell: [] for cell in cells}
    for index in range(rounds):
        for spec, m in cells:
            result = run(workload, spec, m, seed=index, max_time=limit)
            seconds[spec, m].append(result.time_to_target_s if result.converged else math.nan)
    return {"workload": workload_name, "max_time": limit, "rounds": rounds,
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
            "cells": [{"strategy": spec, "threads": m, "seconds": values,
                       "median_s": float(np.median(values)) if not any(map(math.isnan, values))
                       else math.nan, "reached": sum(not math.isnan(v) for v in values)}
                      for (spec, m), values in seconds.items()]}


# -- the table ---------------------------------------------------------------------------------

def table_rows(figures: dict[str, Any]) -> list[list[str]]:
    rows = []
    epoch = figures.get("seq_epoch")
    if epoch:
        med = epoch["median_s"]
        rows.append([f"seq, {epoch['workload']}, batch 1, one epoch ({epoch['updates']} updates) "
                     f"vs SGDClassifier (s)",
                     f"{epoch['training_phase_s']:.4f} vs {med['sklearn SGDClassifier']:.4f}",
                     f"{epoch['ratio']:.2f}x", epoch["target"]])
        rows.append(["  the whole run() call (setup, checks, evaluation) vs fit()",
                     f"{med['asgdbench seq']:.4f} vs {med['sklearn SGDClassifier']:.4f}",
                     f"{epoch['ratio_whole_call']:.2f}x", "report"])
        for name in ("sklearn SGDClassifier, shuffle=True", "kernels alone, rows in order",
                     "kernels alone, rows at random"):
            if name in med:
                rows.append([f"  {name} vs SGDClassifier", f"{med[name]:.4f}",
                             f"{epoch['ratios'][name]:.2f}x", "report"])
    for scan in figures.get("per_update", []):
        first, last = scan["rows"][0], scan["rows"][-1]
        rows.append([f"hogwild per update, nnz {scan['nnz']} ({scan['mode']} supports), d "
                     f"{first['n_params']:.0e} -> {last['n_params']:.0e} (us)",
                     f"{first['hogwild_us']:.3f} -> {last['hogwild_us']:.3f}",
                     f"{scan['hogwild_growth']:.2f}x", f"<= {GROWTH_TARGET}x"])
        rows.append([f"  x[S] -= lr v alone, no strategy: the memory floor (us) ({scan['mode']})",
                     f"{first['plain_step_us']:.3f} -> {last['plain_step_us']:.3f}",
                     f"{scan['plain_step_growth']:.2f}x", "report"])
        rows.append([f"  leashed per update (us) at each d ({scan['mode']})",
                     " ".join(f"{r['leashed_us']:.3g}" for r in scan["rows"]), "", "linear"])
        rows.append([f"  np.copyto of a d-vector (us) ({scan['mode']})",
                     " ".join(f"{r['copyto_us']:.3g}" for r in scan["rows"]), "", "baseline"])
        rows.append(["  slope: leashed vs np.copyto (GB/s)",
                     f"{scan['leashed_bytes_per_s'] / 1e9:.2f} vs "
                     f"{scan['copyto_bytes_per_s'] / 1e9:.2f}",
                     f"{scan['leashed_vs_copyto']:.2f}x", "report"])
    tt = figures.get("time_to_target")
    if tt:
        for cell in tt["cells"]:
            rows.append([f"time to target, {tt['workload']}, {cell['strategy']}, "
                         f"{cell['threads']} threads (s, median of {tt['rounds']})",
                         " ".join("—" if math.isnan(s) else f"{s:.2f}" for s in cell["seconds"]),
                         "" if math.isnan(cell["median_s"]) else f"{cell['median_s']:.2f}",
                         f"reached {cell['reached']}/{tt['rounds']}"
                         + (" (time-shared)" if cell["threads"] > tt["cores"] else "")])
    return rows


def parse_sizes(text: str) -> tuple[int, ...]:
    return tuple(int(float(item)) for item in text.split(","))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and rounds")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--sizes", type=parse_sizes, default=SIZES,
                        help="d values of the per-update scan (default: 1e4,1e5,1e6,1e7)")
    parser.add_argument("--nnz", type=int, default=75, help="support size of the scan")
    parser.add_argument("--threads", type=parse_sizes, default=THREADS,
                        help="thread counts of the time-to-target rows (default: 1,2,4,8)")
    parser.add_argument("--workload", default=WORKLOAD)
    parser.add_argument("--epoch-updates", type=int, default=None,
                        help="updates of the epoch comparison (default: the training rows)")
    parser.add_argument("--max-time", type=float, default=None,
                        help="time limit of the time-to-target runs (default: the workload's)")
    parser.add_argument("--only", default="epoch,updates,target",
                        help="sections to run, of epoch,updates,target")
    args = parser.parse_args(argv)
    repeats, rounds = (5, 2) if args.quick else (11, 3)
    sections = set(args.only.split(","))
    figures: dict[str, Any] = {"environment": environment()}
    begin = time.perf_counter()
    if "epoch" in sections:
        figures["seq_epoch"] = seq_epoch(args.workload, repeats, args.epoch_updates)
    if "updates" in sections:
        figures["per_update"] = [per_update_against_d(args.sizes, args.nnz, repeats, mode)
                                 for mode in ("zipf", "uniform")]
    if "target" in sections:
        figures["time_to_target"] = time_to_target(args.workload, args.threads, rounds=rounds,
                                                   max_time=args.max_time)
    env = figures["environment"]
    print(f"{env['cpu_model']}, {env['cpu_cores']} cores; {time.perf_counter() - begin:.0f} s")
    print("BLAS: " + ("; ".join(f"{b['internal_api']} {b['version']} {b['architecture']} "
                                f"kernel, {b['num_threads']} threads" for b in env["blas"])
                      or "none loaded"))
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs (figures from a loaded machine are ratios only)")
    print(tabulate(table_rows(figures), headers=["figure", "measured", "ratio", "target"]))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2, default=float)
    return figures


if __name__ == "__main__":
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    main()
