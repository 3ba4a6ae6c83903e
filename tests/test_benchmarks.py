"""The asv suite: its grid and scale switch, and each benchmark on a tiny real call.

asv imports the suite as the top-level package ``benchmarks`` from the repo
root; so does this test, however pytest was started.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from asv_runner.discovery import disc_benchmarks

from asgdbench.plugins.workloads import get_workload

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import benchmarks  # noqa: E402
from benchmarks import bench_kernels, bench_training  # noqa: E402

BENCHMARK_CLASSES = (bench_training.Convergence, bench_training.Execution,
                     bench_training.Contention, bench_kernels.GradientStep,
                     bench_kernels.StrategyStep, bench_kernels.PublishStep)


def test_discovery_imports_bench_modules_only():
    """asv collects from ``bench_*`` modules and never imports ``benchmarks/scripts``."""
    before = set(sys.modules)
    names = {bench.name for bench in disc_benchmarks(str(REPO / "benchmarks"))}
    imported = {name for name in set(sys.modules) - before if name.startswith("benchmarks.")}
    assert {name.split(".")[0] for name in names} == {"bench_kernels", "bench_training",
                                                       "bench_sparse"}
    assert not any("scripts" in name for name in imported)
    # 8 for the scale grid, 1 for the cnn-fashion grid, 3 publish, 1 per-update, 2 logreg-zipf
    assert len(names) == 15


@pytest.mark.parametrize("cls", BENCHMARK_CLASSES, ids=lambda cls: cls.__name__)
def test_every_parameter_has_a_name(cls):
    assert len(cls.params) == len(cls.param_names)
    assert all(values for values in cls.params)


def test_default_grid_is_the_issues_grid():
    scale = benchmarks.SCALES["default"]
    assert scale.workloads == ("mlp-digits",)
    assert scale.strategies == ("seq", "lock", "hogwild", "leashed:tp=0", "leashed:tp=1",
                                "leashed:tp=inf", "sync")
    assert scale.threads == (1, 2, 4, 8)


def test_grid_runs_seq_with_one_thread_only():
    cells = bench_training.grid_cells(benchmarks.SCALES["default"])
    assert [threads for _, strategy, threads in cells if strategy == "seq"] == [1]
    parallel = {strategy for _, strategy, threads in cells if threads > 1}
    assert parallel == set(benchmarks.STRATEGY_SPECS) - {"seq"}


def test_scale_switch(monkeypatch):
    monkeypatch.delenv(benchmarks.SCALE_VARIABLE, raising=False)
    assert benchmarks.current_scale() == benchmarks.SCALES["default"]
    monkeypatch.setenv(benchmarks.SCALE_VARIABLE, "paper")
    paper = benchmarks.current_scale()
    assert paper.workloads == ("mlp-mnist",) and max(paper.threads) == 32
    monkeypatch.setenv(benchmarks.SCALE_VARIABLE, "huge")
    with pytest.raises(ValueError, match="valid: default, paper"):
        benchmarks.current_scale()


def test_grid_timeout_covers_every_run_at_its_time_limit():
    cells = bench_training.grid_cells(benchmarks.SCALES["default"])
    max_time = get_workload("mlp-digits").defaults.max_time
    assert bench_training.grid_timeout(cells) > len(cells) * max_time


@pytest.fixture(scope="module")
def budget_runs():
    """Short runs that never aim at a target, plus a cell whose run refuses to start."""
    cells = [("mlp-digits", "lock", 2), ("mlp-digits", "leashed:tp=0", 2),
             ("mlp-digits", "lock", 0)]
    return bench_training.train_cells(cells, target_loss=None, max_updates=300, max_time=30.0)


def _setup(cls, results, *cell):
    bench = cls()
    bench.setup(results, *cell)
    return bench


def test_unreached_target_is_nan_and_run_figures_are_read_through(budget_runs):
    cell = ("mlp-digits", "lock", 2)
    result = budget_runs[cell]
    assert result["status"] == "budget"
    convergence = _setup(bench_training.Convergence, budget_runs, *cell)
    assert math.isnan(convergence.track_time_to_target(budget_runs, *cell))
    assert math.isnan(convergence.track_updates_to_target(budget_runs, *cell))
    execution = _setup(bench_training.Execution, budget_runs, *cell)
    assert execution.track_updates_per_second(budget_runs, *cell) == result["updates_per_s"] > 0
    assert execution.track_staleness_mean(budget_runs, *cell) == result["staleness"]["mean"]
    assert execution.track_peak_param_bytes(budget_runs, *cell) == result["peak_param_bytes"]


def test_cas_failure_rate_only_for_cas_strategies(budget_runs):
    with pytest.raises(NotImplementedError):
        _setup(bench_training.Contention, budget_runs, "mlp-digits", "lock", 2)
    cell = ("mlp-digits", "leashed:tp=0", 2)
    contention = _setup(bench_training.Contention, budget_runs, *cell)
    rate = contention.track_cas_failure_rate(budget_runs, *cell)
    assert rate == budget_runs[cell]["cas"]["failure_rate"]
    assert 0.0 <= rate <= 1.0


def test_a_failed_run_fails_its_own_cell_only(budget_runs):
    with pytest.raises(RuntimeError, match="ConfigError"):
        _setup(bench_training.Convergence, budget_runs, "mlp-digits", "lock", 0)


def test_invalid_thread_count_is_skipped(budget_runs):
    with pytest.raises(NotImplementedError):
        _setup(bench_training.Convergence, budget_runs, "mlp-digits", "seq", 2)


def test_reached_target_reports_time_and_updates():
    cell = ("mlp-digits", "lock", 2)
    results = bench_training.train_cells([cell], target_loss=1e9)  # reached at the first check
    convergence = _setup(bench_training.Convergence, results, *cell)
    seconds = convergence.track_time_to_target(results, *cell)
    updates = convergence.track_updates_to_target(results, *cell)
    assert seconds == results[cell]["time_to_target_s"] > 0
    assert updates == results[cell]["steps_to_target"] > 0


def test_gradient_driver_repeats_the_same_gradient():
    bench = bench_kernels.GradientStep()
    bench.setup("mlp-digits")
    try:
        assert bench.steps(3) == pytest.approx(3 * bench.steps(1))
    finally:
        bench.teardown("mlp-digits")


@pytest.mark.parametrize("strategy", bench_kernels.StrategyStep.params[1])
def test_strategy_driver_applies_one_update_per_pair(strategy):
    bench = bench_kernels.StrategyStep()
    bench.setup("mlp-digits", strategy)
    assert bench.steps(50) == 50


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_publish_driver_builds_each_version_from_the_last(dtype):
    """k publishes of gradient 0.5 at lr 2^-10 leave -k * 2^-11 everywhere (exact in binary)."""
    vectors = bench_kernels.PublishVectors(64, dtype)
    assert vectors.publish(7) == 7
    np.testing.assert_array_equal(vectors.final_params(vectors.state), np.full(64, -7 * 2.0 ** -11))
    vectors.step_kernel(2)  # rebuilds the same vector from an unchanged source
    np.testing.assert_array_equal(vectors.destination, np.full(64, 1 - 2.0 ** -11))
    vectors.copyto(1)
    np.testing.assert_array_equal(vectors.destination, vectors.source)


def test_cpp_reference_refuses_a_folder_without_the_framework_in_one_line(tmp_path):
    """``cpp_reference.py`` (the authors' C++ framework, timed on this machine) on a folder that
    is not a checkout of it: one line naming what is missing, exit 2, nothing built."""
    script = REPO / "benchmarks" / "scripts" / "cpp_reference.py"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"cpp_reference: no MiniDNN headers at {tmp_path.resolve() / 'include' / 'minidnn'} "
        "(expected a checkout of dcs-chalmers/shared-memory-sgd)"]
    assert not (tmp_path / "cache").exists()


def test_three_stream_add_baseline_adds():
    """The publish benchmark's memory-limit baseline computes what it claims: d = s + g."""
    source, other = np.arange(5.0), np.full(5, 0.5)
    destination = np.zeros(5)
    bench_kernels.add_passes(destination, source, other, 2)
    np.testing.assert_array_equal(destination, source + other)


def _scripts():
    """``benchmarks/scripts`` importable as its scripts import one another."""
    scripts = str(REPO / "benchmarks" / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)


def test_the_spread_target_is_judged_only_where_seq_alone_meets_it():
    _scripts()
    from perf_targets import issue13_rows

    def figures(seq_spread: float) -> dict:
        def row(spec: str, threads: int, spread: float) -> dict:
            return {"spec": spec, "threads": threads, "runs": [{}] * 5, "spread": spread,
                    "failure_rates": [0.05] * 5, "cpu_per_wall": [2.0] * 5,
                    "updates_per_s": [1000.0] * 5}
        return {"time_to_target": {"leashed": "leashed:tp=inf", "workload": "mlp-digits",
                                   "threads": 2, "vs_seq": 0.7, "lock_vs_seq": 0.7,
                                   "median_s": {"leashed:tp=inf": 1.4, "seq": 2.0, "lock": 1.4}},
                "cas_stability": [row("seq", 1, seq_spread), row("leashed:tp=inf", 2, 0.1)]}

    quiet, noisy = issue13_rows(figures(0.05)), issue13_rows(figures(0.4))
    assert quiet[2][0].startswith("SEQ") and quiet[2][3] == ""
    assert quiet[-1][3] == "<= 15%"
    assert "cannot be judged" in noisy[2][3] and noisy[-1][3] == "<= SEQ's (not judged)"
    assert "(2.0x SEQ's)" in quiet[-1][2] and "(0.2x SEQ's)" in noisy[-1][2]
    assert "(" not in issue13_rows(figures(0.0))[-1][2]  # no ratio to a zero spread


FAKE_DRIVER = '''
import json, sys
for line in sys.stdin:
    n = int(line)
    if n < 0:
        sys.exit(3)
    print(json.dumps({"grad_ms": [1.5] * n, "step_ms": [2.0] * n, "grad_cpu_ms": [1.4] * n}),
          flush=True)
'''


def test_cpp_stepper_collects_the_drivers_times_and_reports_a_dead_driver(tmp_path):
    """The C++ contender's protocol, with a stand-in driver: times come from the driver's
    own clock; a driver that dies is a CppReferenceError, and close() always ends it."""
    _scripts()
    from cpp_reference import CppReferenceError, CppStepper

    driver = tmp_path / "driver"
    driver.write_text(f"#!{sys.executable}\n{FAKE_DRIVER}")
    driver.chmod(0o755)
    with CppStepper(driver, "cnn", 16) as stepper:
        stepper.run(2, record=False)
        stepper.run(3)
        assert stepper.median_ms() == 1.5 and stepper.samples["step_ms"] == [2.0] * 3
        with pytest.raises(CppReferenceError, match="exited with 3"):
            stepper.run(-1)
    assert stepper.process.poll() is not None
    with CppStepper(driver, "cnn", 16) as idle, pytest.raises(CppReferenceError,
                                                               match="no C\\+\\+ step"):
        idle.median_ms()
