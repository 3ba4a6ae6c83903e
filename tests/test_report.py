"""Tests for asgdbench.study.report (runs into table rows, and rendering) and reading runs back.

Runs are synthetic RunResult dicts, so every expected figure is computed here
from the inputs, independently of any timing.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest

from asgdbench.engine.run_result import RunResult
from asgdbench.engine.statistics import histogram_summary
from asgdbench.errors import UserError
from asgdbench.study.report import (
    NOT_CONVERGED,
    column_names,
    default_columns,
    describe_run,
    render,
    render_comparison,
    summarize,
)
from asgdbench.study.result_folder import ResultStore


def fake_run(strategy: str = "hogwild", threads: int = 2, *, lr: float = 0.01, seed: int = 0,
             status: str = "converged", time: float | None = 1.0, workload: str = "w",
             staleness: dict[int, int] | None = None, cas: tuple[int, int] | None = None,
             accuracy: float = 0.9, updates_per_s: float = 1000.0,
             target_loss: float | None = 0.1, final_loss: float = 0.1, test_loss: float = 0.2,
             environment: dict | None = None) -> RunResult:
    """A complete RunResult as ``runs.jsonl`` stores it; ``cas`` is (failures, attempts)."""
    histogram = np.zeros(max(staleness or {0: 10}) + 1, dtype=np.int64)
    for value, count in (staleness or {0: 10}).items():
        histogram[value] = count
    converged = status == "converged"
    data = {
        "workload": workload, "strategy": strategy, "threads": threads, "lr": lr,
        "batch_size": 16, "seed": seed, "target_loss": target_loss, "max_time": 10.0,
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
        "final_loss": final_loss, "test_loss": test_loss, "test_accuracy": accuracy,
        "compile_s": 0.0, "evaluation": {}, "environment": environment or {},
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
    rows = {(row.strategy, row.threads, row.lr): row for row in summarize(runs)}
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
    order = [(row.strategy, row.threads) for row in summarize(runs)]
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


def test_summary_csv_keeps_its_columns(tmp_path):
    """The columns of files people already parse, in their order (newer figures may follow)."""
    store = ResultStore(tmp_path)
    store.write_summary(summarize([fake_run()]), "table")
    header = (tmp_path / "summary.csv").read_text().splitlines()[0].split(",")
    assert header[:35] == [
        "workload", "batch_size", "target_loss", "strategy", "threads", "lr", "runs",
        "converged", "diverged", "time_to_target_median", "time_to_target_min",
        "time_to_target_max", "speedup_vs_seq", "speedup_vs_lock", "updates_per_s",
        "staleness_mean", "staleness_p99", "cas_failure_rate", "dropped_fraction",
        "peak_param_bytes", "test_accuracy", "stopped", "final_loss", "final_loss_min",
        "final_loss_max", "final_test_loss", "final_test_accuracy", "seq_overlaps",
        "lock_overlaps", "staleness_p999", "cores", "blas", "machine", "step_rule",
        "step_factor_mean"]


def test_every_column_keeps_its_name_and_order():
    assert column_names() == [
        "time", "vs-seq", "vs-lock", "converged", "runs", "final-loss", "final-test-loss",
        "final-test-acc", "updates", "staleness", "step-factor", "staleness-p99",
        "staleness-p999", "cas", "dropped", "peak-params", "written", "test-acc"]


# -- what the table shows, and its footer ---------------------------------------------

def table_width(table: str) -> int:
    return max(len(line) for line in table.splitlines() if line.startswith("|"))


def test_fixed_budget_cells_report_loss_and_accuracy_at_the_budget():
    runs = [fake_run(seed=s, status="budget", target_loss=None, final_loss=loss, test_loss=2 * loss,
                     accuracy=accuracy)
            for s, (loss, accuracy) in enumerate([(0.3, 0.8), (0.1, 0.9), (0.2, 0.7)])]
    row = only_row(runs + [fake_run(seed=3, status="diverged", target_loss=None,
                                    final_loss=1e30, accuracy=0.1)])
    assert (row.stopped, row.final_loss, row.final_test_loss) == (3, 0.2, 0.4)
    assert row.final_test_accuracy == pytest.approx(0.8)  # the diverged run is left out
    table = render([row])
    assert "time to target" not in table and NOT_CONVERGED not in table
    line = table_line(table, "hogwild", "2")
    assert "0.2" in line and "0.4" in line and "0.800" in line and "4, 1 diverged" in line


def test_cells_that_did_not_converge_show_the_budget_metrics_next_to_the_times():
    rows = summarize([fake_run("lock", time=1.0),
                      fake_run("hogwild", status="timeout", final_loss=0.5, accuracy=0.6)])
    table = render(rows)
    assert "time to target [s]" in table and "final loss" in table
    line = table_line(table, "hogwild")
    assert NOT_CONVERGED in line and "0.5" in line and "0.600" in line


def default_grid_runs() -> list:
    """The default compare's shape: 3 repeats with spread, the widest labels, some divergence."""
    runs = [fake_run("seq", 1, seed=s, time=1.0 + 0.05 * s) for s in range(3)]
    for strategy in ("lock", "hogwild", "leashed:tp=0", "leashed:tp=1", "leashed:tp=inf"):
        for threads in (1, 2, 4, 8):
            runs += [fake_run(strategy, threads, seed=s, time=0.587 + 0.0123 * s,
                              staleness={0: 50, 12: 30, 433: 1}, cas=(4321, 9876),
                              updates_per_s=139_223.0) for s in range(3)]
    runs[-1] = fake_run("leashed:tp=inf", 8, seed=2, status="diverged")
    return runs


def test_the_default_table_fits_120_columns_and_wide_shows_every_column():
    rows = summarize(default_grid_runs())
    assert table_width(render(rows)) <= 120
    budget = [replace(run, status="timeout") if run.config.threads == 8 else run
              for run in default_grid_runs()]  # targets missed: the budget metrics join
    assert "final loss" in render(summarize(budget))
    assert table_width(render(summarize(budget))) <= 120
    fixed = [replace(run, status="budget", config=replace(run.config, target_loss=None))
             for run in budget]
    assert "final test loss" in render(summarize(fixed))
    assert table_width(render(summarize(fixed))) <= 120
    wide = render(rows, column_names())
    for column in ("stale p99.9", "dropped", "peak params", "CAS fail", "vs lock"):
        assert f" {column} |" in wide.splitlines()[2]


@pytest.mark.parametrize("columns", [None, column_names()])
def test_the_footer_explains_every_column_shown(columns):
    rows = summarize(default_grid_runs() + [fake_run("lock", 16, status="timeout")])
    table = render(rows, columns)
    header = [line for line in table.splitlines() if line.startswith("| strategy")][0]
    shown = [cell.strip() for cell in header.strip("|").split("|")][2:]
    assert len(shown) == len(columns or default_columns(rows))
    footer = table.split("\n\n")[-1].splitlines()
    for title in shown:
        assert any(line.startswith(f"{title}: ") for line in footer), title


def test_a_ratio_within_the_noise_is_marked():
    seq = [fake_run("seq", 1, seed=s, time=t) for s, t in enumerate([1.0, 1.3, 1.2])]
    same_work = [fake_run("lock", 1, seed=s, time=t) for s, t in enumerate([0.9, 1.05, 0.95])]
    faster = [fake_run("hogwild", 1, seed=s, time=t) for s, t in enumerate([0.5, 0.55, 0.6])]
    rows = {row.strategy: row for row in summarize(seq + same_work + faster)}
    assert rows["lock"].speedup_vs_seq == pytest.approx(1.2 / 0.95)  # looks like 1.26x ...
    assert rows["lock"].seq_overlaps and not rows["hogwild"].seq_overlaps
    table = render(list(rows.values()))
    assert "1.26x~" in table_line(table, "lock")
    assert "2.18x |" in table_line(table, "hogwild")  # 1.2 / 0.55, no mark
    assert "1.00x |" in table_line(table, "seq")  # the baseline itself carries no mark


def test_threads_beyond_the_cores_are_pointed_out():
    machine = {"cpu_cores": 2, "cpu_affinity": 2}
    table = render(summarize([fake_run("lock", threads, environment=machine)
                              for threads in (1, 2, 4, 8)]))
    [note] = [line for line in table.splitlines() if line.startswith("Note:")]
    assert note.startswith("Note: 4 and 8 threads exceed the 2 cores")
    assert "Note:" not in render(summarize([fake_run("lock", 2, environment=machine)]))


def blas_environment(architecture: str) -> dict:
    return {"blas": [{"internal_api": "openblas", "version": "0.3.30",
                      "architecture": architecture, "num_threads": 1}]}


def test_a_cell_mixing_blas_kernels_is_warned_about():
    same = render(summarize([fake_run(seed=s, environment=blas_environment("Haswell"))
                             for s in range(2)]))
    assert "BLAS: openblas 0.3.30 Haswell." in same and "Warning" not in same
    mixed = render(summarize([fake_run(seed=0, environment=blas_environment("Haswell")),
                              fake_run(seed=1, environment=blas_environment("SkylakeX"))]))
    [warning] = [line for line in mixed.splitlines() if line.startswith("Warning")]
    assert "hogwild at 2 threads" in warning
    assert "openblas 0.3.30 Haswell; openblas 0.3.30 SkylakeX" in warning


def test_describe_run_shows_the_shape_of_staleness():
    text = describe_run(fake_run(staleness={0: 970, 1: 29, 433: 1}))
    line = [line for line in text.splitlines() if line.startswith("staleness")][0]
    assert "97.0% at 0" in line and "p99 1" in line and "p99.9 1" in line and "max 433" in line


def test_describe_run_names_the_blas_kernel():
    text = describe_run(fake_run(environment=blas_environment("SkylakeX")))
    assert re.search(r"^BLAS +openblas 0.3.30 SkylakeX$", text, re.MULTILINE)


def test_describe_run_calls_the_accuracy_of_a_diverged_run_meaningless():
    text = describe_run(fake_run(status="diverged", accuracy=0.1))
    line = [line for line in text.splitlines() if line.startswith("test accuracy")][0]
    assert "meaningless" in line and "0.100" not in line


def test_describe_run_says_the_target_is_on_the_smoothed_loss():
    text = describe_run(fake_run(final_loss=0.05154, time=1.5))
    assert "smoothed" in [line for line in text.splitlines() if "final loss" in line][0]
    assert "smoothed loss first reached 0.1" in text


# -- comparing two folders -----------------------------------------------------------

def test_comparison_gives_ratios_of_medians_marked_by_their_intervals():
    def runs(strategy, times, **options):
        return [fake_run(strategy, seed=seed, time=time, **options)
                for seed, time in enumerate(times)]

    before = summarize(runs("lock", [1.0, 1.1, 1.2]) + runs("hogwild", [1.0, 1.5, 2.0])
                       + runs("sync", [1.0, 1.1, 1.2]) + runs("seq", [3.0]))
    after = summarize(runs("lock", [2.0, 2.1, 2.2]) + runs("hogwild", [1.2, 1.4, 1.6])
                      + runs("sync", [0.5, 0.55, 0.6]) + runs("leashed:tp=1", [1.0]))
    table = render_comparison(before, after)
    assert "+ 1.91x" in table_line(table, "lock")  # 2.1 / 1.1, intervals apart
    assert "~ 0.93x" in table_line(table, "hogwild")  # 1.4 / 1.5, intervals overlap
    assert "- 0.50x" in table_line(table, "sync")
    seq = table_line(table, "seq")
    assert "3.00" in seq and "3/3" not in seq and "1/1 -> —" in seq
    assert "— -> 1/1" in table_line(table, "leashed:tp=1")


def test_comparison_of_fixed_budget_cells_uses_the_final_loss():
    def runs(losses):
        return summarize([fake_run(seed=seed, status="budget", target_loss=None, final_loss=loss)
                          for seed, loss in enumerate(losses)])

    line = table_line(render_comparison(runs([0.4, 0.5, 0.6]), runs([0.2, 0.25, 0.3])),
                      "hogwild")
    assert "loss" in line and "- 0.50x" in line and "0.500 (0.400-0.600)" in line
    only_before = table_line(render_comparison(runs([0.4, 0.5, 0.6]), []), "hogwild")
    assert "| loss " in only_before and "0.500 (0.400-0.600)" in only_before, only_before


# -- reading runs back (asgdbench.study.result_folder) ------------------------------------------

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


# -- figures (asgdbench.study.plots) --------------------------------------------------------

def test_histogram_figures_draw_no_flat_panels():
    pytest.importorskip("matplotlib")
    from asgdbench.study import plots

    plt = plots.require_matplotlib()
    runs = [fake_run("seq", 1, staleness={0: 100}), fake_run("hogwild", 2, staleness={0: 90, 5: 10}),
            fake_run("hogwild", 4, staleness={0: 80, 300: 20})]
    figure = plots._histograms(plt, runs, lambda run: run.staleness, "staleness")
    titles = [ax.get_title() for ax in figure.axes if ax.get_visible()]
    assert titles == ["hogwild"]
    assert "seq: always 0" in figure._suptitle.get_text()
    [ax] = [ax for ax in figure.axes if ax.get_visible()]
    assert len(ax.patches) == 2 * len(ax.get_xticks())  # a bar per thread count and bin
    plt.close(figure)


def test_a_diverged_run_does_not_stretch_the_loss_axis():
    pytest.importorskip("matplotlib")
    from asgdbench.study import plots

    plt = plots.require_matplotlib()
    fine = fake_run(seed=0)
    fine.loss_trace = [[0.1, 10, 2.3], [0.2, 20, 0.5], [0.3, 30, 0.1]]
    exploded = fake_run(seed=1, status="diverged")
    exploded.loss_trace = [[0.1, 10, 2.3], [0.2, 20, 1e8], [0.3, 30, 1e15], [0.4, 40, None]]
    figure = plots._loss_vs_time(plt, [fine, exploded])
    [ax] = [ax for ax in figure.axes if ax.get_visible()]
    assert ax.get_ylim()[1] == pytest.approx(2.3 * 1.5)
    plt.close(figure)
