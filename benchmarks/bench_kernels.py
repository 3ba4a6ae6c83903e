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

from asgdbench.engine.runner import UNLIMITED_UPDATES, single_threaded_blas
from asgdbench.plugins.step_rules import parse_step_spec
from asgdbench.plugins.strategies import parse_spec
from asgdbench.plugins.workloads import Workload, load_workload
from asgdbench.primitives.protocol import APPLIED, CONTROL_CELLS, MAX_UPDATES
from asgdbench.primitives.rng import sample_batch, thread_states
from asgdbench.primitives.steps import sgd_step_inplace, sgd_step_into
from asgdbench.workloads.network import Network, mlp_layers
from asgdbench.workloads.network import gradient as network_gradient
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
def read_update_steps(read, update, rule, rule_state, state, grad, lr, control, steps):
    """``steps`` read + update pairs as thread 0 of the worker loop makes them; returns updates applied."""
    applied = 0
    for _ in range(steps):
        _, token = read(state, 0, control)
        outcome = update(state, 0, token, grad, lr, control, rule, rule_state)[0]
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
    """A workload's forward + backward pass on one minibatch (``workloads.network.gradient``)."""

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
        constant = parse_step_spec(None)  # the default rule: the step is lr
        self.kernels = (spec.strategy.read, spec.strategy.update, constant.rule.step,
                        constant.make_state(1))
        self.state = spec.strategy.make_state(batch.params, 1, **spec.kwargs)
        self.grad = batch.grad
        self.lr = batch.workload.dtype.type(batch.workload.defaults.lr)
        self.control = np.zeros(CONTROL_CELLS, np.int64)
        self.control[MAX_UPDATES] = UNLIMITED_UPDATES
        self.steps(1)  # compiles

    def steps(self, count: int) -> int:
        read, update, rule, rule_state = self.kernels
        return read_update_steps(read, update, rule, rule_state, self.state, self.grad, self.lr,
                                 self.control, count)

    def time_read_update(self, workload: str, strategy: str) -> None:
        """1,000 read + update pairs: asv's milliseconds are microseconds per pair."""
        self.steps(STEPS_PER_CALL)


# -- Leashed-SGD's publish against the memory limit (issue 13) -----------------------------

PUBLISH_SIZES = (134_794, 1 << 20)
"""mlp-mnist's parameter count (the paper's network) and a round million."""
PUBLISHES_PER_CALL = 100


@njit(nogil=True)
def step_into_passes(destination, source, grad, lr, passes):
    """``passes`` calls of the publish step's vector loop alone (no atomics, no pool)."""
    for _ in range(passes):
        sgd_step_into(destination, source, grad, lr)


@njit(nogil=True)
def add_passes(destination, source, other, passes):
    """``passes`` of ``destination = source + other``: the plainest loop with the publish step's
    three memory streams, so the step can be read against the memory system, not against code."""
    for _ in range(passes):
        for i in range(destination.shape[0]):
            destination[i] = source[i] + other[i]


class PublishVectors:
    """One vector size's contenders: Leashed-SGD's read + publish, its step loop alone, a plain
    three-stream add, and np.copyto.

    The publish runs with one thread (nothing contends, every CAS succeeds), and
    each publish builds the next version from the last: base and gradient read,
    new vector written, three memory streams against copy's two.
    """

    def __init__(self, n_params: int, dtype: str, lr: float = 2.0 ** -10) -> None:
        dtype_ = np.dtype(dtype)
        spec, constant = parse_spec("leashed:tp=inf"), parse_step_spec(None)
        self.kernels = (spec.strategy.read, spec.strategy.update, constant.rule.step,
                        constant.make_state(1))
        self.state = spec.strategy.make_state(np.zeros(n_params, dtype_), 1, **spec.kwargs)
        self.final_params = spec.strategy.final_params
        self.grad = np.full(n_params, 0.5, dtype_)
        self.lr = dtype_.type(lr)
        self.control = np.zeros(CONTROL_CELLS, np.int64)
        self.control[MAX_UPDATES] = UNLIMITED_UPDATES
        self.source, self.destination = np.ones(n_params, dtype_), np.empty(n_params, dtype_)
        self.step_kernel(1)  # compiles; publish compiles on its first call (a publish is counted)
        self.add_kernel(1)

    def publish(self, count: int) -> int:
        """``count`` read + publish pairs; returns how many were applied."""
        read, update, rule, rule_state = self.kernels
        return read_update_steps(read, update, rule, rule_state, self.state, self.grad, self.lr,
                                 self.control, count)

    def step_kernel(self, count: int) -> None:
        step_into_passes(self.destination, self.source, self.grad, self.lr, count)

    def add_kernel(self, count: int) -> None:
        add_passes(self.destination, self.source, self.grad, count)

    def copyto(self, count: int) -> None:
        for _ in range(count):
            np.copyto(self.destination, self.source)


class PublishStep:
    """Leashed-SGD's publish vs np.copyto of the same vector, one thread; 100 per call.

    asv's milliseconds are tens of microseconds per publish (or per copy). The
    issue's target is publish <= 1.5x copyto at both sizes; the ratio is printed
    by ``benchmarks/scripts/perf_targets.py``.
    """

    params = [list(PUBLISH_SIZES), ["float32", "float64"]]
    param_names = ["n_params", "dtype"]
    timeout = 120.0

    def setup(self, n_params: int, dtype: str) -> None:
        self.vectors = PublishVectors(n_params, dtype)
        self.vectors.publish(1)  # compiles

    def time_publish(self, n_params: int, dtype: str) -> None:
        self.vectors.publish(PUBLISHES_PER_CALL)

    def time_step_kernel(self, n_params: int, dtype: str) -> None:
        self.vectors.step_kernel(PUBLISHES_PER_CALL)

    def time_copyto(self, n_params: int, dtype: str) -> None:
        self.vectors.copyto(PUBLISHES_PER_CALL)


# -- one SEQ update of the paper's MLP at batch 16 (issue 13 item 3) -------------------------

SMALL_BATCH_LAYERS = (784, 128, 128, 128, 10)
"""mlp-mnist's network; the data is random with MNIST's shape, so no download is needed."""
UPDATES_PER_CALL = 1000


@njit(nogil=True)
def seq_updates(gradient, params, data, n_samples, rows, rng, work, grad, lr, updates):
    """``updates`` SEQ steps as the worker loop makes them: draw rows, gradient, step in place."""
    total = 0.0
    for _ in range(updates):
        sample_batch(rng, n_samples, rows)
        total += gradient(params, data, rows, work, grad)
        sgd_step_inplace(params, grad, lr)
    return total


class PerUpdateSmallBatch:
    """Per-update time of SEQ on the 784-128-128-128-10 MLP at batch 16 (1,000 per call).

    asv's milliseconds are microseconds per update. The issue's target is <= 0.10 ms per
    update in float32 on the reference machine; ``benchmarks/scripts/perf_targets.py``
    prints it against the arithmetic at the core's GEMM rate.
    """

    params = [["float32", "float64"]]
    param_names = ["dtype"]
    timeout = 120.0

    def setup(self, dtype: str) -> None:
        dtype_ = np.dtype(dtype)
        sizes = SMALL_BATCH_LAYERS
        model = Network((sizes[0], 1, 1), mlp_layers(sizes[1:-1], sizes[-1]), dtype_)
        data_rng = np.random.default_rng(SEED)
        X = data_rng.random((10_000, sizes[0])).astype(dtype_)
        self.data = (X, data_rng.integers(0, sizes[-1], X.shape[0]), model.table)
        self.params = model.init_params(SEED)
        self.rows = np.zeros(16, np.int64)
        self.rng = thread_states(SEED, 1)[0].copy()
        self.work, self.grad = model.make_workspace(16), np.empty_like(self.params)
        self.lr = dtype_.type(0.01)
        self.blas = single_threaded_blas()
        self.updates(1)  # compiles

    def teardown(self, dtype: str) -> None:
        self.blas.restore_original_limits()

    def updates(self, count: int) -> float:
        return seq_updates(network_gradient, self.params, self.data, self.data[0].shape[0],
                           self.rows, self.rng, self.work, self.grad, self.lr, count)

    def time_seq_update(self, dtype: str) -> None:
        self.updates(UPDATES_PER_CALL)
