"""asgdbench.engine.runner: stop rules, configuration errors, telemetry and convergence."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numba
import numpy as np
import pytest
from conftest import run_watched

from asgdbench.engine import blas, preflight
from asgdbench.engine.plan import configure
from asgdbench.engine.run_result import RunResult
from asgdbench.engine.runner import run
from asgdbench.engine.worker import LossLog, ThreadTelemetry
from asgdbench.errors import ConfigError
from asgdbench.plugins.strategies import available_strategies, parse_spec
from asgdbench.plugins.workloads import get_workload, load_workload

DIGITS = get_workload("mlp-digits").defaults

REPORTED_FIELDS = (
    "workload", "strategy", "threads", "lr", "batch_size", "seed", "target_loss", "max_time",
    "max_updates", "dtype", "status", "wall_s", "time_to_target_s", "steps_to_target",
    "updates_applied", "gradients_computed", "gradients_dropped", "updates_per_s",
    "per_thread_updates", "per_thread_gradients", "loss_trace", "staleness", "cas",
    "peak_param_vectors", "peak_param_bytes", "initial_loss", "final_loss", "test_loss",
    "test_accuracy", "environment",
)


@pytest.fixture(scope="module")
def converged():
    """A leashed run on mlp-digits that reaches the workload's target."""
    return run_watched("mlp-digits", "leashed", 2, seed=0)


@pytest.fixture(scope="module")
def budgeted():
    """A lock run on mlp-digits stopped by an update budget."""
    return run_watched("mlp-digits", "lock", 4, seed=0, target_loss=None, max_time=None,
                       max_updates=3000)


# -- stop rules ----------------------------------------------------------------------

def test_converged_run_reports_when_it_reached_the_target(converged):
    assert converged.status == "converged" and converged.converged
    assert 0 < converged.time_to_target_s <= converged.wall_s
    assert 0 < converged.steps_to_target <= converged.updates_applied


def test_budget_stops_at_exactly_the_budget(budgeted):
    assert budgeted.status == "budget"
    assert budgeted.updates_applied == budgeted.gradients_computed == 3000
    assert budgeted.time_to_target_s is None and budgeted.steps_to_target is None


def test_unreachable_target_times_out():
    max_time = 0.3
    result = run_watched("mlp-digits", "hogwild", 2, target_loss=0.0, max_time=max_time)
    assert result.status == "timeout"
    assert result.time_to_target_s is None and result.steps_to_target is None
    assert max_time <= result.wall_s < max_time + 10  # stopped soon after the limit
    assert result.final_loss > 0
    # the overrun is reported, and it is what the wall time says: last thread out minus the limit
    assert result.overrun_s == pytest.approx(result.wall_s - max_time)
    assert 0 <= result.overrun_s < 2.0  # a gradient step plus the poll, not seconds (issue 12)


def test_huge_step_diverges_and_is_reported():
    result = run_watched("mlp-digits", "seq", 1, lr=1e4)
    assert result.status == "diverged"
    assert result.time_to_target_s is None
    json.dumps(result.to_dict(), allow_nan=False)  # non-finite losses serialise as null


@pytest.mark.parametrize("threads, options, fragment", [
    (0, {}, "threads"),
    (-1, {}, "threads"),
    (2.5, {}, "threads"),
    (2, {"lr": 0.0}, "lr"),
    (2, {"lr": -0.1}, "lr"),
    (2, {"lr": math.nan}, "lr"),
    (2, {"batch_size": 0}, "batch size"),
    (2, {"max_time": 0.0}, "max time"),
    (2, {"max_updates": 0}, "max updates"),
    (2, {"target_loss": None, "max_time": None}, "stop rule"),
    (2, {"dtype": "float16"}, "float16"),
])
def test_bad_configuration_is_a_config_error(threads, options, fragment):
    with pytest.raises(ConfigError, match=fragment) as error:
        run("probe", "lock", threads, **options)
    assert "\n" not in str(error.value)


def test_unknown_workload_is_a_config_error():
    with pytest.raises(ConfigError, match="mlp-digits"):  # the message lists the valid names
        run("mlp-digitz", "lock", 1)


# -- telemetry -----------------------------------------------------------------------

def test_counts_match_the_budget_and_the_threads(budgeted):
    """The update budget is an input: the counts must meet it, and every thread must have worked."""
    assert budgeted.updates_applied == sum(budgeted.per_thread_updates) == 3000
    assert budgeted.gradients_dropped == 0 and budgeted.gradients_computed == 3000
    assert len(budgeted.per_thread_updates) == budgeted.config.threads
    assert all(n > 0 for n in budgeted.per_thread_updates)


def test_one_thread_has_no_staleness_and_no_cas_failure():
    """Closed forms: alone, every update builds on the vector it read, and every CAS succeeds."""
    result = run_watched("mlp-digits", "leashed", 1, max_updates=2000, target_loss=None,
                         max_time=None)
    assert result.staleness["max"] == 0 and result.staleness["mean"] == 0.0
    assert result.cas["failures"] == 0 and result.cas["failure_rate"] == 0.0
    assert result.cas["attempts"]["max"] == 1


def test_staleness_mean_is_exact_beyond_the_histogram():
    """The histogram clips at its last bin; the mean and max come from exact sums."""
    from asgdbench.engine.statistics import histogram_summary

    histogram = np.zeros(8, np.int64)
    histogram[[0, 1, 7]] = [2, 1, 1]  # values 0, 0, 1 and one value of 50,004 clipped into bin 7
    summary = histogram_summary(histogram, exact_max=50_004, exact_sum=50_005)
    assert summary["mean"] == 50_005 / 4 and summary["max"] == 50_004
    assert summary["p50"] == 0


def test_staleness_is_bounded_by_what_other_threads_can_apply(budgeted):
    """Lock-based: a gradient is at most as stale as the updates applied while it was computed."""
    staleness = budgeted.staleness
    assert staleness["count"] == budgeted.updates_applied
    assert 0 <= staleness["p50"] <= staleness["p99"] <= staleness["max"] < budgeted.updates_applied
    assert budgeted.cas is None  # lock uses no CAS


@pytest.mark.parametrize("fixture", ["converged", "budgeted"])
def test_loss_trace_ends_at_the_final_state(request, fixture):
    result = request.getfixturevalue(fixture)
    times, updates, losses = zip(*result.loss_trace)
    assert list(times) == sorted(times) and list(updates) == sorted(updates)
    assert updates[-1] == result.updates_applied
    assert losses[-1] == result.final_loss


def test_memory_and_evaluation_are_reported(converged):
    workload = load_workload("mlp-digits")
    vector_bytes = workload.n_params * workload.dtype.itemsize
    assert converged.peak_param_vectors >= 1
    assert converged.peak_param_bytes == converged.peak_param_vectors * vector_bytes
    assert DIGITS.target_loss < converged.initial_loss
    assert 0.5 < converged.test_accuracy <= 1.0
    assert converged.test_loss == converged.evaluation["test_loss"]


def test_environment_describes_the_machine(converged):
    environment = converged.environment
    assert environment["cpu_cores"] == os.cpu_count()
    assert isinstance(environment["cpu_model"], str) and environment["cpu_model"]
    assert environment["packages"]["numba"] == numba.__version__
    commit = environment["git_commit"]
    assert len(commit) == 40 and int(commit, 16) >= 0


# -- serialisation -------------------------------------------------------------------

@pytest.mark.parametrize("fixture", ["converged", "budgeted"])
def test_to_dict_is_strict_json_with_the_reported_fields(request, fixture):
    data = request.getfixturevalue(fixture).to_dict()
    assert set(REPORTED_FIELDS) <= set(data)
    assert set(data["staleness"]) >= {"histogram", "mean", "p50", "p99", "max"}
    assert set(data["environment"]) >= {"cpu_model", "cpu_cores", "packages", "git_commit"}
    assert json.loads(json.dumps(data, allow_nan=False)) == data


@pytest.mark.parametrize("fixture", ["converged", "budgeted"])
def test_from_dict_inverts_to_dict(request, fixture):
    result = request.getfixturevalue(fixture)
    data = json.loads(json.dumps(result.to_dict()))
    again = RunResult.from_dict(data)
    assert again.config == result.config
    assert again.to_dict() == data


# -- convergence -----------------------------------------------------------------------

def convergence_cases() -> list:
    """Every registered strategy at 1, 2 and 4 threads, as far as it allows."""
    return [pytest.param(name, threads, id=f"{name}-{threads}")
            for name, strategy in available_strategies().items()
            for threads in (1, 2, 4)
            if strategy.max_threads is None or threads <= strategy.max_threads]


@pytest.mark.parametrize("strategy, threads", convergence_cases())
def test_every_strategy_reaches_the_default_target(strategy, threads):
    # far above the default time limit: a loaded CI runner slows SYNC's barriers a lot
    result = run_watched("mlp-digits", strategy, threads, seed=0, max_time=60.0)
    assert result.status == "converged", (
        f"{strategy} with {threads} threads: {result.status} after {result.wall_s:.1f} s, "
        f"smoothed loss {result.final_loss:.4g} > target {DIGITS.target_loss}")


# -- pre-flight limits: threads, batch size, memory ------------------------------------------

BLAS_LIMIT = blas.thread_limit()


def asgdbench_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m asgdbench ARGS`` in its own process: a native crash there fails one test."""
    return subprocess.run([sys.executable, "-m", "asgdbench", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_openblas_slots_follow_its_buffer_table():
    # NUM_BUFFERS = MAX(50, MAX_CPU_NUMBER * 2) in OpenBLAS's driver/others/memory.c
    assert blas.openblas_slots("OpenBLAS 0.3.30 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64") == 128
    assert blas.openblas_slots("OpenBLAS 0.3.21 Zen MAX_THREADS=8") == 50
    assert blas.openblas_slots("OpenBLAS 0.3.21 Zen") is None


@pytest.mark.skipif(BLAS_LIMIT is None, reason="the loaded BLAS has no per-thread table")
def test_threads_at_the_blas_limit_run_and_one_above_is_refused(tmp_path):
    common = ["run", "--strategy", "hogwild", "--target-loss", "none", "--max-time", "60",
              "--max-updates", "3000"]
    at_limit = asgdbench_cli(*common, "--threads", str(BLAS_LIMIT.threads))
    assert at_limit.returncode == 0, at_limit.stderr[-2000:]
    assert "NUM_THREADS exceeded" not in at_limit.stderr
    assert re.search(r"status\s+budget", at_limit.stdout)
    above = asgdbench_cli(*common, "--threads", str(BLAS_LIMIT.threads + 1))
    assert above.returncode == 2 and "Traceback" not in above.stderr, above.stderr
    [line] = above.stderr.splitlines()
    assert line.startswith(f"asgdbench: error: {BLAS_LIMIT.threads + 1} threads")
    assert f"at most {BLAS_LIMIT.threads}" in line and "buffers" in line


@pytest.mark.slow
@pytest.mark.skipif(BLAS_LIMIT is None, reason="the loaded BLAS has no per-thread table")
def test_without_the_limit_twice_as_many_threads_overflow_openblas():
    """Why the limit exists: past it OpenBLAS's table overflows (and the process usually dies).

    mlp-digits' GEMMs are small, and on an AVX-512 core OpenBLAS's SkylakeX kernel runs
    small GEMMs without a buffer; a Haswell kernel (the one these machines are set to, and
    every kernel for larger GEMMs) takes one per call. The child runs with Haswell unless
    the environment names a kernel already.
    """
    threads = 2 * (BLAS_LIMIT.threads + 1)
    script = ("from asgdbench.engine import preflight, runner\n"
              "preflight.check_blas_threads = lambda threads: None\n"
              f"runner.run('mlp-digits', 'hogwild', {threads}, target_loss=None, max_time=5)\n")
    env = {"OPENBLAS_CORETYPE": "Haswell", **os.environ}
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, env=env)
    assert "precompiled NUM_THREADS exceeded" in ran.stderr, (ran.returncode, ran.stderr[-500:])


def test_a_huge_thread_count_is_refused_at_once():
    begin = time.monotonic()
    with pytest.raises(ConfigError, match="100000 threads"):
        run("mlp-digits", "hogwild", 100_000, max_updates=10)
    assert time.monotonic() - begin < 30  # no state was built for 100,000 threads


def test_threads_the_process_cannot_start_are_refused():
    # Cap the address space just above what the process uses: thread stacks (8 MiB each)
    # can then not be mapped, and starting threads fails as it does at the system's limit.
    script = (
        "import resource, sys\n"
        "from asgdbench.engine import preflight\n"
        "from asgdbench.errors import ConfigError\n"
        "size = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (size + 64 * 2**20, resource.RLIM_INFINITY))\n"
        "try:\n"
        "    preflight.check_threads_start(100)\n"
        "except ConfigError as error:\n"
        "    print(error); sys.exit(3)\n"
    )
    if not os.path.exists("/proc/self/statm"):
        pytest.skip("needs /proc")
    checked = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=120)
    assert checked.returncode == 3, checked.stderr
    assert "cannot start 100 threads" in checked.stdout


def test_batch_size_is_bounded_by_the_training_set():
    workload = load_workload("mlp-digits")
    with pytest.raises(ConfigError, match=f"training set of mlp-digits .{workload.n_samples:,}"):
        run(workload, "lock", 1, batch_size=workload.n_samples + 1, max_updates=10)
    result = run_watched(workload, "lock", 1, batch_size=workload.n_samples, max_updates=5,
                         target_loss=None, max_time=None)
    assert result.updates_applied == 5


@pytest.mark.parametrize("strategy, threads", [("leashed", 3), ("lock", 4), ("sync", 2)])
def test_memory_estimate_covers_what_a_run_allocates(strategy, threads):
    """The estimate is an upper bound of the arrays a run actually builds."""
    workload = load_workload("mlp-digits")
    spec = parse_spec(strategy)
    config = configure(workload.name, workload.defaults, spec, threads, batch_size=64)
    state = spec.strategy.make_state(workload.init_params(0), threads, **spec.kwargs)
    state_bytes = sum(part.nbytes for part in state if isinstance(part, np.ndarray))
    workspaces = sum(part.nbytes for part in workload.make_workspace(64)) * threads
    vectors = workload.n_params * workload.dtype.itemsize * threads  # per-thread gradients
    telemetry = ThreadTelemetry.allocate(threads)
    bookkeeping = sum(part.nbytes for part in (*LossLog.allocate().arrays(), telemetry.counters,
                                               telemetry.staleness, telemetry.attempts))
    allocated = state_bytes + workspaces + vectors + bookkeeping
    estimate = preflight.estimate_bytes(workload, spec, config)
    assert allocated <= estimate < 2 * allocated  # an upper bound, not absurdly above


def test_a_run_larger_than_the_memory_left_is_refused(monkeypatch):
    monkeypatch.setattr(preflight, "available_memory", lambda: 2**20)  # 1 MiB left
    with pytest.raises(ConfigError, match="only 1.0 MiB of memory is available") as error:
        run("mlp-digits", "leashed", 2, max_updates=10)
    assert "\n" not in str(error.value)


# -- the Python API the README documents ----------------------------------------------------

def test_the_package_re_exports_the_api():
    import asgdbench
    from asgdbench.engine import run_result as result
    from asgdbench.engine import runner
    from asgdbench.plugins import strategies as registry
    from asgdbench.study import report

    assert asgdbench.run is runner.run
    assert asgdbench.RunResult is result.RunResult
    assert asgdbench.summarize is report.summarize
    assert asgdbench.register_strategy is registry.register_strategy
    assert set(asgdbench.__all__) <= set(dir(asgdbench))
    with pytest.raises(AttributeError):
        asgdbench.no_such_name  # noqa: B018


def test_the_readme_python_example_runs(capsys):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(example, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert printed.split()[0] in ("converged", "timeout", "diverged", "budget")
    assert re.search(r"^\| lock +\| +2 \|", printed, re.MULTILINE)
    assert re.search(r"^\| hogwild +\| +2 \|", printed, re.MULTILINE)
