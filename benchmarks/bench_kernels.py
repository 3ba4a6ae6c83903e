"""The per-step kernels alone, one thread, no contention: a gradient, and a strategy's read + update.

A numba call from Python costs microseconds of argument unboxing, about what
one step costs on the small workloads, so each timed call runs a small njit
driver that loops :data:`STEPS_PER_CALL` times over the very kernels the worker
loop calls. With 1,000 steps per call, the milliseconds asv reports read as
microseconds per step. Inputs stay the same from step to step (one prepared
minibatch, one gradient), so these are warm-cache costs: the floor under what a
step costs inside a training run, not a replacement for it.

The drivers compile in ``setup``. They are not cached on disk: numba would key
the cache on the kernel arguments' types, which do not survive a new process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from asgdbench.engine.protocol import APPLIED, CONTROL_CELLS, MAX_UPDATES
from asgdbench.engine.rng import sample_batch, thread_states
from asgdbench.engine.runner import UNLIMITED_UPDATES, single_threaded_blas
from asgdbench.plugins.strategies import parse_spec
from asgdbench.workloads import Workload, load_workload
from benchmarks import current_scale

STEPS_PER_CALL = 1000
SEED = 0


@njit(nogil=True)
def gradient_steps(gradient, params, data, rows, work, grad, steps):
    """``steps`` gradients of one minibatch; returns the summed loss, so none is optimised away."""
    total = 0.0
    for _ in range(steps):
        total += gradient(params, data, rows, work, grad)
    return total


@njit(nogil=True)
def read_update_steps(read, update, state, grad, lr, control, steps):
    """``steps`` read + update pairs as thread 0 of the worker loop makes them; returns updates applied."""
    applied = 0
    for _ in range(steps):
        _, token = read(state, 0, control)
        outcome, _, _ = update(state, 0, token, grad, lr, control)
        applied += outcome == APPLIED
    return applied


@dataclass
class PreparedBatch:
    """One thread's inputs to a step: a workload, its initial parameters, a minibatch, its gradient."""

    workload: Workload
    params: np.ndarray
    rows: np.ndarray
    work: tuple
    grad: np.ndarray

    @classmethod
    def load(cls, workload_name: str) -> "PreparedBatch":
        """The workload's default-size minibatch, drawn as a run's thread 0 draws it."""
        workload = load_workload(workload_name)
        batch_size = workload.defaults.batch_size
        rows = np.zeros(batch_size, np.int64)
        sample_batch(thread_states(SEED, 1)[0], workload.n_samples, rows)
        params = workload.init_params(SEED)
        grad = np.zeros(workload.n_params, workload.dtype)
        work = workload.make_workspace(batch_size)
        workload.gradient(params, workload.train_data, rows, work, grad)
        return cls(workload, params, rows, work, grad)


SCALE = current_scale()


class GradientStep:
    """The MLP's forward + backward pass on one minibatch (``workloads.mlp.gradient``)."""

    params = [list(SCALE.workloads)]
    param_names = ["workload"]
    timeout = 120.0

    def setup(self, workload: str) -> None:
        self.blas = single_threaded_blas()  # as in a run: one BLAS thread per worker
        self.batch = PreparedBatch.load(workload)
        self.steps(1)  # compiles

    def teardown(self, workload: str) -> None:
        self.blas.restore_original_limits()

    def steps(self, count: int) -> float:
        batch = self.batch
        return gradient_steps(batch.workload.gradient, batch.params, batch.workload.train_data,
                              batch.rows, batch.work, batch.grad, count)

    def time_gradient_step(self, workload: str) -> None:
        """1,000 gradients: asv's milliseconds are microseconds per gradient."""
        self.steps(STEPS_PER_CALL)


class StrategyStep:
    """A strategy's ``read`` then ``update`` with one thread: its synchronization cost alone.

    With one thread nothing contends, so Leashed-SGD's CAS never fails and its
    persistence bound makes no difference: each strategy runs with its defaults.
    """

    params = [list(SCALE.workloads), list(dict.fromkeys(parse_spec(s).name
                                                      for s in SCALE.strategies))]
    param_names = ["workload", "strategy"]
    timeout = 120.0

    def setup(self, workload: str, strategy: str) -> None:
        batch = PreparedBatch.load(workload)
        spec = parse_spec(strategy)
        self.kernels = (spec.strategy.read, spec.strategy.update)
        self.state = spec.strategy.make_state(batch.params, 1, **spec.kwargs)
        self.grad = batch.grad
        self.lr = batch.workload.dtype.type(batch.workload.defaults.lr)
        self.control = np.zeros(CONTROL_CELLS, np.int64)
        self.control[MAX_UPDATES] = UNLIMITED_UPDATES
        self.steps(1)  # compiles

    def steps(self, count: int) -> int:
        read, update = self.kernels
        return read_update_steps(read, update, self.state, self.grad, self.lr, self.control, count)

    def time_read_update(self, workload: str, strategy: str) -> None:
        """1,000 read + update pairs: asv's milliseconds are microseconds per pair."""
        self.steps(STEPS_PER_CALL)
