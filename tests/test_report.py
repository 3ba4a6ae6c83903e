"""Tests for asgdbench.report (runs into table rows, and rendering) and reading runs back.

Runs are synthetic RunResult dicts, so every expected figure is computed here
from the inputs, independently of any timing.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from asgdbench.errors import UserError
from asgdbench.report import NOT_CONVERGED, describe_run, render, summarize
from asgdbench.result import RunResult
from asgdbench.results import ResultStore
from asgdbench.telemetry import histogram_summary


def fake_run(algorithm: str = "hogwild", threads: int = 2, *, lr: float = 0.01, seed: int = 0,
             status: str = "converged", time: float | None = 1.0, workload: str = "w",
             staleness: dict[int, int] | None = None, cas: tuple[int, int] | None = None,
             accuracy: float = 0.9, updates_per_s: float = 1000.0) -> RunResult:
    """A complete RunResult as ``runs.jsonl`` stores it; ``cas`` is (failures, attempts)."""
    histogram = np.zeros(64, dtype=np.int64)
    for value, count in (staleness or {0: 10}).items():
        histogram[value] = count
    converged = status == "converged"
    data = {
        "workload": workload, "algorithm": algorithm, "threads": threads, "lr": lr,
        "batch_size": 16, "seed": seed, "target_loss": 0.1, "max_time": 10.0,
        "max_updates": None, "dtype": "float32",
        "status": status, "wall_s": time if converged else 10.0,
        "time_to_target_s": time if converged else None,
        "steps_to_target": 100 if converged else None,
        "updates_applied": 100, "gradients_computed": 100, "gradients_dropped": 0,
        "updates_per_s": updates_per_s, "per_thread_updates": [100 // threads] * threads,
        "per_thread_gradients": [100 // threads] * threads, "loss_trace": [[0.5, 50, 0.2]],
        "staleness": histogram_summary(histogram),
        "cas": None if cas is None else {"attempts": histogram_summary(np.array([0, 10])),
                                         "total_attempts": cas[1], "failures": cas[0],
                                         "failure_rate": cas[0] / cas[1]},
        "peak_param_vectors": 1, "peak_param_bytes": 4096, "initial_loss": 2.3,
        "final_loss": 0.1, "test_loss": 0.2, "test_accuracy": accuracy, "compile_s": 0.0,
        "evaluation": {}, "environment": {},
    }
    return RunResult.from_dict(data)


def only_row(runs: list[RunResult]):
    [row] = summarize(runs)
    return row


def table_line(table: str, *cells: str) -> str:
    """The one table line that starts with these cells."""
    prefix = "| " + " | ".join(cells)
    [line] = [line for line in table.splitlines()
              if line.replace(" ", "").startswith(prefix.replace(" ", ""))]
    return line


def test_time_to_target_and_accuracy_use_converged_runs_only():
    runs = [fake_run(seed=0, time=1.0, accuracy=0.9),
            fake_run(seed=1, time=3.0, accuracy=0.8),
            fake_run(seed=2, status="timeout", accuracy=0.1)]
    row = only_row(runs)
    assert (row.runs, row.converged, row.diverged) == (3, 2, 0)
    assert row.time_to_target_median == pytest.approx(2.0)
    assert (row.time_to_target_min, row.time_to_target_max) == (1.0, 3.0)
    assert row.test_accuracy == pytest.approx(0.85)
    line = table_line(render([row]), "hogwild", "2")
    assert "2/3" in line and "2.00 (1.00-3.00)" in line


def test_cell_with_no_converged_run_shows_not_converged_instead_of_a_time():
    row = only_row([fake_run(seed=s, status="timeout") for s in range(2)])
    assert row.time_to_target_median is None and row.test_accuracy is None
    line = table_line(render([row]), "hogwild", "2")
    assert NOT_CONVERGED in line and "0/2" in line


def test_diverged_runs_are_flagged_and_kept_out_of_the_times():
    runs = [fake_run(seed=0, time=2.0),
            fake_run(seed=1, status="diverged"),
            fake_run(seed=2, status="diverged")]
    row = only_row(runs)
    assert (row.converged, row.diverged, row.time_to_target_median) == (1, 2, 2.0)
    assert "1/3, 2 diverged" in table_line(render([row]), "hogwild", "2")


def test_speedups_compare_median_times_with_seq_and_lock_at_the_same_lr():
    runs = [
        fake_run("seq", 1, time=4.0),
        fake_run("lock", 2, time=2.0),
        fake_run("hogwild", 2, seed=0, time=1.0), fake_run("hogwild", 2, seed=1, time=1.5),
        fake_run("hogwild", 2, seed=2, time=0.5),
        fake_run("hogwild", 4, time=0.8),  # no lock row at 4 threads
        fake_run("hogwild", 2, lr=0.1, time=1.0),  # no seq or lock row at lr=0.1
    ]
    rows = {(row.algorithm, row.threads, row.lr): row for row in summarize(runs)}
    hogwild = rows["hogwild", 2, 0.01]
    assert hogwild.speedup_vs_seq == pytest.approx(4.0 / 1.0)
    assert hogwild.speedup_vs_lock == pytest.approx(2.0 / 1.0)
    assert rows["hogwild", 4, 0.01].speedup_vs_seq == pytest.approx(4.0 / 0.8)
    assert rows["hogwild", 4, 0.01].speedup_vs_lock is None
    assert rows["hogwild", 2, 0.1].speedup_vs_seq is None
    assert rows["lock", 2, 0.01].speedup_vs_seq == pytest.approx(2.0)
    line = table_line(render(list(rows.values())), "hogwild", "2", "0.01")
    assert "4.00x" in line and "2.00x" in line


def test_no_speedup_against_a_baseline_that_never_converged():
    rows = summarize([fake_run("seq", 1, status="timeout"), fake_run("hogwild", 2, time=1.0)])
    assert all(row.speedup_vs_seq is None for row in rows)


def test_staleness_and_cas_pool_every_run_of_a_cell():
    runs = [fake_run("leashed:tp=1", seed=0, staleness={0: 100}, cas=(10, 100)),
            fake_run("leashed:tp=1", seed=1, staleness={10: 100}, cas=(0, 300),
                     status="diverged")]
    row = only_row(runs)
    # the pooled histogram has half its mass at 10, so p99 is 10 (the mean of p99s would be 5)
    assert row.staleness_mean == pytest.approx(5.0) and row.staleness_p99 == 10
    assert row.cas_failure_rate == pytest.approx(10 / 400)
    assert "2.5%" in table_line(render([row]), "leashed:tp=1")


def test_strategies_without_cas_show_no_cas_figure():
    row = only_row([fake_run("lock")])
    assert row.cas_failure_rate is None
    assert "—" in table_line(render([row]), "lock")


def test_rows_follow_first_seen_strategy_order_then_threads():
    runs = [fake_run("lock", 4), fake_run("hogwild", 2), fake_run("lock", 2), fake_run("seq", 1)]
    order = [(row.algorithm, row.threads) for row in summarize(runs)]
    assert order == [("lock", 2), ("lock", 4), ("hogwild", 2), ("seq", 1)]


def test_shared_settings_go_to_the_caption_and_varying_ones_to_columns():
    single = render(summarize([fake_run(workload="a")]))
    assert single.splitlines()[0].startswith("workload a")
    assert "| workload" not in single
    both = render(summarize([fake_run(workload="a"), fake_run(workload="b")]))
    assert "| workload" in both
    assert table_line(both, "a", "hogwild") and table_line(both, "b", "hogwild")


def test_runs_of_different_workloads_are_never_pooled():
    rows = summarize([fake_run(workload="a", time=1.0), fake_run(workload="b", time=3.0)])
    assert sorted(row.time_to_target_median for row in rows) == [1.0, 3.0]


def test_describe_run_reports_status_and_telemetry():
    converged = describe_run(fake_run("leashed:tp=1", cas=(5, 100), time=1.5))
    assert "converged" in converged and "1.50 s" in converged and "5.0% of 100" in converged
    timeout = describe_run(fake_run(status="timeout"))
    assert NOT_CONVERGED in timeout and "timeout" in timeout


def test_result_dict_round_trip_keeps_what_the_table_needs():
    run = fake_run("leashed:tp=1", cas=(5, 100))
    assert summarize([RunResult.from_dict(run.to_dict())]) == summarize([run])


# -- reading runs back (asgdbench.results) ------------------------------------------

def test_store_drops_a_run_cut_off_mid_line(tmp_path):
    runs_file = tmp_path / "runs.jsonl"
    whole = json.dumps(fake_run(seed=0).to_dict()) + "\n"
    runs_file.write_text(whole + whole[: len(whole) // 2])
    assert [run.config.seed for run in ResultStore(tmp_path).load()] == [0]

    store = ResultStore.open_for_writing(tmp_path, append=True)
    store.append(fake_run(seed=1))
    assert [run.config.seed for run in store.load()] == [0, 1]
    assert runs_file.read_text().count("\n") == 2


def test_store_rejects_a_corrupt_line_that_is_not_the_last(tmp_path):
    (tmp_path / "runs.jsonl").write_text("not json\n{}\n")
    with pytest.raises(UserError, match="line 1"):
        ResultStore(tmp_path).load()
