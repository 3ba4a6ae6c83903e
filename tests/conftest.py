"""Shared helpers for the engine's tests: watched runs that keep their state, the
consistency probe's exact arithmetic, and a plain NumPy MLP to check kernels against."""

from __future__ import annotations

import re
import threading
from collections import Counter
from typing import Any

import numpy as np
import pytest

from asgdbench.engine import runner
from asgdbench.engine.run_result import RunResult
from asgdbench.plugins.workloads import get_workload
from asgdbench.workloads import probe

WATCHDOG_S = 120.0
"""A run that has not returned by then is taken to be deadlocked."""


def run_watched(*args: Any, watchdog_s: float = WATCHDOG_S, **kwargs: Any) -> RunResult:
    """:func:`asgdbench.engine.runner.run` in a thread of its own; fails the test if it hangs."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = runner.run(*args, **kwargs)
        except BaseException as error:  # re-raised in the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=target, name="watched-run", daemon=True)
    thread.start()
    thread.join(watchdog_s)
    if thread.is_alive():
        pytest.fail(f"run{args} {kwargs} did not return within {watchdog_s:g} s: deadlock?")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


# -- the consistency probe -----------------------------------------------------------

PROBE_LR = get_workload("probe").defaults.lr


def probe_vector_after(updates: int, n_params: int) -> np.ndarray:
    """The probe's exact parameter vector after ``updates`` updates (float64)."""
    return np.full(n_params, probe.START_VALUE - PROBE_LR * probe.GRADIENT_VALUE * updates)


def assert_probe_exact(result: RunResult, updates: int) -> None:
    """The final vector is the probe's consistent vector after exactly ``updates`` updates."""
    np.testing.assert_array_equal(result.final_params,
                                  probe_vector_after(updates, result.final_params.size))
    assert result.evaluation["components_disagree"] is False


def probe_run(strategy: str, threads: int, updates: int, **kwargs: Any) -> RunResult:
    """A float64 probe run on an exact update budget (a fresh run every call: no caching)."""
    return run_watched("probe", strategy, threads, max_updates=updates, max_time=None,
                       dtype="float64", **kwargs)


# -- a plain NumPy MLP ---------------------------------------------------------------

class NumpyMLP:
    """The MLP workloads' network written the obvious way, for reference.

    The workloads build it as a Dense/ReLU layer list
    (:func:`asgdbench.workloads.network.mlp_layers`).

    Same flat layout (per layer: W as fan_in x fan_out, then b), ReLU hidden
    layers, softmax cross-entropy averaged over the batch.
    """

    def __init__(self, layer_sizes: tuple[int, ...] | np.ndarray) -> None:
        self.sizes = tuple(int(s) for s in layer_sizes)

    def layers(self, params: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        out, offset = [], 0
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:]):
            W = params[offset:offset + fan_in * fan_out].reshape(fan_in, fan_out)
            offset += fan_in * fan_out
            out.append((W, params[offset:offset + fan_out]))
            offset += fan_out
        return out

    def activations(self, params: np.ndarray, X: np.ndarray) -> list[np.ndarray]:
        """The input, every hidden activation and the logits."""
        layers = self.layers(params)
        hs = [X]
        for i, (W, b) in enumerate(layers):
            z = hs[-1] @ W + b
            hs.append(np.maximum(z, 0) if i < len(layers) - 1 else z)
        return hs

    @staticmethod
    def log_softmax(logits: np.ndarray) -> np.ndarray:
        shifted = logits - logits.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    def loss_and_gradient(self, params: np.ndarray, X: np.ndarray,
                          y: np.ndarray) -> tuple[float, np.ndarray]:
        hs = self.activations(params, X)
        log_p = self.log_softmax(hs[-1])
        batch = X.shape[0]
        loss = -log_p[np.arange(batch), y].mean()
        delta = np.exp(log_p)
        delta[np.arange(batch), y] -= 1.0
        delta /= batch
        grads = []
        for i, (W, _) in reversed(list(enumerate(self.layers(params)))):
            grads += [delta.sum(axis=0), (hs[i].T @ delta).ravel()]
            delta = (delta @ W.T) * (hs[i] > 0)
        return float(loss), np.concatenate(grads[::-1])

    def loss_and_accuracy(self, params: np.ndarray, X: np.ndarray,
                          y: np.ndarray) -> tuple[float, float]:
        logits = self.activations(params, X)[-1]
        loss = -self.log_softmax(logits)[np.arange(X.shape[0]), y].mean()
        return float(loss), float(np.mean(logits.argmax(axis=1) == y))


@pytest.fixture(scope="session")
def numpy_mlp() -> type[NumpyMLP]:
    return NumpyMLP


# -- generated code ---------------------------------------------------------------------

def atomic_orderings(kernel: Any, name: str) -> Counter[tuple[str, str]]:
    """(operation, ordering) -> count over the atomic instructions in ``kernel``'s own function.

    ``kernel`` is a dispatcher with one compiled signature; ``name`` its Python name. The
    count covers the function's optimised LLVM IR, callees inlined into it included;
    operations are ``load``, ``store``, ``cmpxchg`` and ``atomicrmw``.
    """
    [ir] = kernel.inspect_llvm().values()
    own = [m for m in re.finditer(r"^define [^\n]*?@(\S+?)\(", ir, flags=re.M)
           if f"{len(name)}{name}B" in m.group(1)
           and not m.group(1).startswith(("_ZN7cpython", "cfunc."))]
    assert len(own) == 1, f"{name}: {len(own)} functions of that name in the IR, not one"
    body = ir[own[0].start():ir.index("\n}", own[0].start())]
    seen: Counter[tuple[str, str]] = Counter()
    for match in re.finditer(r"\b(load atomic|store atomic|cmpxchg|atomicrmw \w+)\b[^\n]*?"
                             r"\b(monotonic|acquire|release|acq_rel|seq_cst)\b", body):
        seen[match.group(1).split()[0], match.group(2)] += 1
    return seen


@pytest.fixture
def sigint_raises():
    """SIGINT raises KeyboardInterrupt in this process, as in a terminal's CLI, even when the
    test runner was started with it ignored (``nohup``, a background job)."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
