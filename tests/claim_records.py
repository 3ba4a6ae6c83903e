"""Synthetic run records for the verdict tests: known figures, plausible filler, no runs."""

from __future__ import annotations

import json

from asgdbench.engine.choice import Choice
from asgdbench.engine.run_result import RunResult

WORKLOAD, LR = "mlp-digits", 0.01
VECTOR_BYTES = 1000


def record(strategy: str | Choice, threads: int, seed: int, *, lr: float = LR, time: float = 1.0,
           converged: bool = True, staleness: float = 1.0, failures_per_update: float = 0.0,
           dropped_share: float = 0.0, live_vectors: float = 2.0, max_time: float = 10.0,
           workload: str = WORKLOAD, zero_share: float = 0.5, p50: int | None = None,
           p99: int | None = None, max_staleness: int | None = None,
           failures: int | None = None) -> RunResult:
    """A finished run with the figures a verdict reads, the rest plausible filler."""
    applied = 10_000
    computed = round(applied / (1 - dropped_share))
    failures = round(failures_per_update * applied) if failures is None else failures
    at_zero = round(zero_share * applied)
    data = {
        "workload": workload, "strategy": str(strategy), "threads": threads, "lr": lr,
        "batch_size": 16, "seed": seed, "target_loss": 0.001, "max_time": max_time,
        "max_updates": None, "status": "converged" if converged else "timeout",
        "wall_s": time if converged else max_time,
        "time_to_target_s": time if converged else None,
        "steps_to_target": applied if converged else None, "updates_applied": applied,
        "gradients_computed": computed, "gradients_dropped": computed - applied,
        "updates_per_s": applied / time, "per_thread_updates": [applied],
        "per_thread_gradients": [computed], "loss_trace": [[0.1, 10, 2.0], [time, applied, 0.5]],
        "staleness": {"count": applied, "mean": staleness,
                      "p50": int(staleness) if p50 is None else p50,
                      "p99": int(3 * staleness) + 1 if p99 is None else p99,
                      "max": int(10 * staleness) + 1 if max_staleness is None else max_staleness,
                      "histogram": {"0": at_zero, "3": applied - at_zero}},
        "cas": ({"failures": failures, "total_attempts": applied + failures,
                 "failure_rate": failures / (applied + failures)}
                if str(strategy).startswith("leashed") else None),
        "peak_param_vectors": int(live_vectors) + 1,
        "peak_param_bytes": (int(live_vectors) + 1) * VECTOR_BYTES,
        "live_param_vectors": {"mean": live_vectors, "max": int(live_vectors) + 1,
                               "samples": 3, "trace": [[0, 1], [0.5, 2], [time, 1]]},
        "mean_live_param_bytes": live_vectors * VECTOR_BYTES,
        "initial_loss": 2.3, "final_loss": 0.001, "test_loss": 0.1, "test_accuracy": 0.97,
        "compile_s": 0.0, "environment": {"cpu_affinity": 4},
    }
    return RunResult.from_dict(json.loads(json.dumps(data)))


def seeds(make, count: int = 5) -> list[RunResult]:
    """``make(seed, jitter)`` for each seed; jitter in [0, 0.04] varies the runs a little."""
    return [make(seed, 0.01 * seed) for seed in range(count)]


