"""The conformance check holds every built-in and catches strategies broken on purpose."""

from __future__ import annotations

from pathlib import Path

import pytest

from asgdbench.engine.checks import check_strategy
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


def test_the_check_command_passes_a_built_in(capsys):
    from asgdbench.study.cli import main

    assert main(["check", "lock", "--threads", "4", "--updates", "500"]) == 0
    assert "FAIL" not in capsys.readouterr().out


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
