"""The conformance checks hold every built-in strategy, step rule and workload, and catch
plugins broken on purpose on the property each breaks."""

from __future__ import annotations

from pathlib import Path

import pytest

from asgdbench.engine.checks import check_strategy
from asgdbench.engine.step_rule_checks import check_step_rule
from asgdbench.engine.workload_checks import check_workload
from asgdbench.plugins.files import load_plugin_file
from asgdbench.plugins.strategies import available_strategies

PLUGINS = Path(__file__).parent / "plugins"


@pytest.fixture(autouse=True)
def _forget_test_plugins():
    """The broken strategies leave the registry as they found it."""
    from asgdbench.plugins import strategies as registry

    before = set(registry.available_strategies())  # the built-ins load lazily: not in the test
    yield
    for name in set(registry.available_strategies()) - before:
        registry.STRATEGIES.forget(name)


@pytest.mark.parametrize("spec", [
    "lock", "leashed:tp=0",
    *(pytest.param(spec, marks=pytest.mark.slow)  # the slow stage checks the rest
      for spec in ("seq", "hogwild", "sync", "leashed:tp=inf")),
])
def test_every_built_in_passes(spec):
    checks = check_strategy(spec, threads=16, updates=5_000, stops=4)
    failed = [c.line() for c in checks if c.passed is False]
    assert not failed
    names = {c.name for c in checks}
    assert "exact update budget" in names and "clean stop from any state" in names
    if available_strategies()[spec.split(":")[0]].consistent:
        assert "no lost update (final vector is the closed form)" in names


CONSISTENCY = {"no torn read, no vector rewritten while held",
               "every read is the version its token names",
               "no lost update (final vector is the closed form)"}


@pytest.mark.parametrize("plugin, name, broken", [
    ("no_budget.py", "no-budget", {"exact update budget"}),
    ("unlocked.py", "unlocked", CONSISTENCY),  # which one shows first depends on the schedule
    ("leaky.py", "leaky", {"run completes"}),
])
def test_a_broken_strategy_fails_on_the_property_it_breaks(plugin, name, broken):
    load_plugin_file(PLUGINS / plugin)
    checks = check_strategy(name, threads=16, updates=5_000, stops=2, watchdog_s=4.0)
    failed = {c.name for c in checks if c.passed is False}
    assert failed & broken, [c.line() for c in checks]


def test_the_check_command_names_the_failing_property_and_exits_1(capsys):
    from asgdbench.study.cli import main

    code = main(["check", "--plugin", str(PLUGINS / "no_budget.py"), "no-budget",
                 "--threads", "4", "--updates", "500", "--timeout", "4"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  exact update budget" in out and "FAILED" in out.splitlines()[-1]


def test_check_sync_passes_at_a_thread_count_that_is_not_a_power_of_two(capsys):
    """Its merged means round there (1/3 is inexact): the check allows that rounding, dense
    and sparse, instead of reporting a lost update or a wrong version."""
    from asgdbench.study.cli import main

    assert main(["check", "sync", "--threads", "3", "--updates", "500"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and "by rounding only" in out


def test_the_check_command_passes_a_built_in(capsys):
    from asgdbench.study.cli import main

    assert main(["check", "lock", "--threads", "4", "--updates", "500"]) == 0
    assert "FAIL" not in capsys.readouterr().out
    assert main(["check", "strategy:lock", "--threads", "4", "--updates", "500"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and out.splitlines()[-1].startswith("lock: ")


# -- step rules, alone ----------------------------------------------------------------------

BROKEN_RULES = {
    # read, wait, write: two threads that overlap lose one of their increments
    "racy": ("(np.zeros(8, np.int64),)", """
    count = rule_state[0]
    seen = count[0]
    for _ in range(50):
        cpu_pause()
    count[0] = seen + 1
    return lr"""),
    # a stale gradient pushed the other way: factor 1 - τ / 8, negative from τ = 9 on
    "uphill": ("()", """
    return lr * (1.0 - staleness / 8.0)"""),
    # a step that depends on something other than its inputs and state
    "jittery": ("()", """
    return lr * (1.0 + 0.01 * np.random.random())"""),
    # larger steps for staler gradients, without bound
    "unbounded": ("()", """
    return lr * (staleness + 1.0)"""),
    # raises inside the kernel (numba keeps Python's ZeroDivisionError)
    "divides": ("()", """
    return lr / (staleness - staleness)"""),
}
STEP_CHECKS = {"bounded factors", "deterministic given τ", "state race-free under threads",
               "inspect() is JSON-ready"}


def rule_plugin(tmp_path: Path, name: str) -> Path:
    state, body = BROKEN_RULES[name]
    path = tmp_path / f"rule_{name}.py"
    path.write_text(f'''
import numpy as np
from numba import njit

from asgdbench import StepRule, register_step_rule
from asgdbench.primitives import cpu_pause


def make_state(n_threads):
    return {state}


@njit(nogil=True)
def step(lr, staleness, tid, rule_state):{body}


register_step_rule(StepRule(name={name!r}, summary="broken on purpose", make_state=make_state,
                            step=step))
''')
    return path


@pytest.fixture
def forget_rules():
    from asgdbench.plugins import step_rules

    before = set(step_rules.available_step_rules())
    yield
    for name in set(step_rules.available_step_rules()) - before:
        step_rules.STEP_RULES.forget(name)


@pytest.mark.parametrize("spec", ["constant", "inverse", "fleet", "tail",
                                  "tail:amplitude=0.5:warmup_from=2:warmup_to=3"])
def test_every_built_in_step_rule_passes(spec):
    checks = check_step_rule(spec, threads=16, calls_per_thread=5_000)
    assert {c.name for c in checks} == STEP_CHECKS
    assert all(c.passed for c in checks), [c.line() for c in checks]


def test_the_factor_sweep_sees_the_rule_after_its_warm_up():
    """tail's factors leave 1 only once its warm-up is complete: the bounds line shows both
    ends of 1 ± A, so the sweep ran past the warm-up."""
    bounds = check_step_rule("tail:amplitude=0.5", threads=4, calls_per_thread=2_000)[0]
    low, high = map(float, bounds.detail.split("[")[1].split("]")[0].split(", "))
    assert 0.5 <= low < 1 < high <= 1.5


@pytest.mark.parametrize("name, broken", [
    ("racy", "state race-free under threads"),
    ("uphill", "bounded factors"),
    ("unbounded", "bounded factors"),
    ("jittery", "deterministic given τ"),
    ("divides", "rule runs"),
])
def test_a_broken_step_rule_fails_on_the_property_it_breaks(tmp_path, forget_rules, name,
                                                           broken):
    load_plugin_file(rule_plugin(tmp_path, name))
    checks = check_step_rule(name, threads=16, calls_per_thread=20_000)
    failed = {c.name for c in checks if c.passed is False}
    assert failed == {broken}, [c.line() for c in checks]


def test_a_racy_rule_is_not_excused_by_a_replay_in_another_order(tmp_path, forget_rules):
    """The racy counter's replays agree (the count does not depend on the order), so the
    threads' count is compared exactly: fewer increments than calls."""
    load_plugin_file(rule_plugin(tmp_path, "racy"))
    race = [c for c in check_step_rule("racy", threads=8, calls_per_thread=20_000)
            if c.name == "state race-free under threads"][0]
    assert race.passed is False and "DIFFERS" in race.detail and "agree" in race.detail


def test_the_check_command_checks_a_step_rule(tmp_path, forget_rules, capsys):
    from asgdbench.study.cli import main

    assert main(["check", "step:tail", "--threads", "4", "--calls", "2000"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out[:-1]] == [f"PASS  {name}" for name in (
        "bounded factors", "deterministic given τ", "state race-free under threads",
        "inspect() is JSON-ready")]
    assert out[-1] == ("step rule tail:amplitude=1:warmup_from=10:warmup_to=15:max_staleness=199: "
                       "4 of 4 checks hold")
    code = main(["check", "--plugin", str(rule_plugin(tmp_path, "uphill")), "step:uphill",
                 "--threads", "4", "--calls", "2000"])
    out = capsys.readouterr().out
    assert code == 1 and "FAIL  bounded factors" in out and "1 FAILED" in out


@pytest.mark.parametrize("argv, fragment", [
    (["check", "step:nope"], "unknown step rule 'nope'"),
    (["check", "workload:nope"], "unknown workload 'nope'"),
    (["check", "step:tail", "--step", "inverse"], "asgdbench check step:inverse"),
    (["check", "step:tail:amplitude=2"], "amplitude"),
    (["check", "step:inverse", "--threads", "2000"], "1 to 1024 threads"),
    (["check", "step:inverse", "--calls", "10000000"], "at most 10000000 calls"),
])
def test_a_bad_check_spec_is_one_line_and_exit_2(capsys, argv, fragment):
    from asgdbench.study.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err


# -- workloads ------------------------------------------------------------------------------

LINEAR_PLUGIN = '''
"""Least squares on digits: loss 0.5 mean (x . w - y)^2, its gradient FACTOR times the true one."""
import numpy as np
from numba import njit

from asgdbench import Defaults, WorkloadSpec, register_workload
from asgdbench.plugins.workloads import Workload


@njit(nogil=True)
def gradient(params, data, rows, work, grad):
    X, y = data
    grad[:] = 0.0
    loss = 0.0
    for r in rows:
        residual = X[r] @ params - y[r]
        loss += 0.5 * residual * residual
        grad += FACTOR * residual * X[r]
    grad /= rows.shape[0]
    return loss / rows.shape[0]


def build(spec, *, data_dir, dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5)).astype(dtype)
    y = (X @ np.arange(1.0, 6.0)).astype(dtype)
    loss = lambda w: float(np.mean(0.5 * (X @ w - y) ** 2))
    return Workload(name=spec.name, gradient=gradient, train_data=(X, y), n_samples=200,
                    n_params=5, dtype=dtype, init_params=lambda seed: np.zeros(5, dtype),
                    make_workspace=lambda batch: (), evaluate=lambda w: {"test_loss": loss(w)},
                    training_loss=loss, defaults=spec.defaults)


register_workload(WorkloadSpec(name=NAME, summary="least squares", build=build,
                               defaults=Defaults(lr=LR, batch_size=8, target_loss=0.01,
                                                 max_time=MAX_TIME)))
'''


@pytest.fixture
def linear_workload(tmp_path):
    from asgdbench.plugins.workloads import WORKLOADS

    made = []

    def make(name: str, factor: float = 1.0, lr: float = 0.05, max_time: float = 20.0) -> str:
        path = tmp_path / f"linear_{len(made)}.py"
        path.write_text(LINEAR_PLUGIN.replace("NAME", repr(name)).replace("FACTOR", repr(factor))
                        .replace("LR", repr(lr)).replace("MAX_TIME", repr(max_time)))
        load_plugin_file(path)
        made.append(name)
        return name

    yield make
    for name in made:
        WORKLOADS.forget(name)


WORKLOAD_CHECKS = ["data present", "shapes", "gradient matches central differences",
                   "defaults converge under seq"]


def test_a_correct_workload_passes_and_says_how_long_it_took(linear_workload):
    checks = check_workload(linear_workload("least-squares"))
    assert [c.name for c in checks] == WORKLOAD_CHECKS
    assert all(c.passed for c in checks), [c.line() for c in checks]
    assert "reached in" in checks[-1].detail and "the run took" in checks[-1].detail
    assert "float64[200, 5], float64[200]" in checks[1].detail


def test_a_wrong_gradient_fails_the_finite_difference_check(linear_workload):
    """1.01 times the true gradient: a one-percent error is far above the bound."""
    checks = check_workload(linear_workload("off-by-a-percent", factor=1.01), converge=False)
    failed = {c.name for c in checks if c.passed is False}
    assert failed == {"gradient matches central differences"}, [c.line() for c in checks]
    error = float(checks[2].detail.split("error ")[1].split(" ")[0])
    assert error == pytest.approx(0.01 / 1.01, rel=1e-3)  # |1.01 g - g| / |1.01 g|


def test_defaults_that_do_not_converge_in_time_fail(linear_workload):
    checks = check_workload(linear_workload("too-slow", lr=1e-9, max_time=0.5))
    last = checks[-1]
    assert last.name == "defaults converge under seq" and last.passed is False
    assert "timeout" in last.detail, last.line()


def test_a_gradient_that_raises_is_a_failing_line_not_a_crash(tmp_path):
    from asgdbench.plugins.workloads import WORKLOADS

    path = tmp_path / "linear_raises.py"
    path.write_text(LINEAR_PLUGIN.replace("NAME", repr("raises")).replace("FACTOR", "1.0")
                    .replace("LR", "0.05").replace("MAX_TIME", "5.0")
                    .replace("return loss / rows.shape[0]",
                             "return loss / (rows.shape[0] - rows.shape[0])"))
    load_plugin_file(path)
    try:
        checks = check_workload("raises")
    finally:
        WORKLOADS.forget("raises")
    assert [(c.name, c.passed) for c in checks] == [("data present", True), ("shapes", False)]
    assert "ZeroDivisionError" in checks[1].detail


def test_missing_data_is_one_failing_line_that_names_the_download(tmp_path):
    checks = check_workload("mlp-mnist", data_dir=str(tmp_path))
    assert [(c.name, c.passed) for c in checks] == [("data present", False)]
    assert "asgdbench download mnist" in checks[0].detail
    assert len(checks[0].line().splitlines()) == 1


def test_the_probe_is_reported_not_judged():
    """No target loss: its constant gradient is no loss's, and there is nothing to reach."""
    checks = check_workload("probe")
    assert [c.passed for c in checks] == [True, True, None, None], [c.line() for c in checks]


def test_the_check_command_checks_a_built_in_workload(capsys):
    from asgdbench.study.cli import main

    assert main(["check", "workload:mlp-digits"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out[:-1]] == [f"PASS  {name}"
                                                         for name in WORKLOAD_CHECKS]
    assert out[-1] == "workload mlp-digits: 4 of 4 checks hold"


def test_the_check_command_passes_the_backoff_variant_plugin(capsys):
    """tests/plugins/leashed_backoff.py, a Leashed-SGD variant in 15 lines, holds every property
    Leashed-SGD does (16 threads: more than the cores)."""
    from asgdbench.study.cli import main

    plugin = PLUGINS / "leashed_backoff.py"
    assert len(plugin.read_text().splitlines()) <= 15
    assert main(["check", "leashed-backoff", "--plugin", str(plugin), "--threads", "16",
                 "--updates", "2000"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and "no lost update" in out
