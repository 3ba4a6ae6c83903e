"""asgdbench.registry: spec strings, their errors, and strategies from plugin files."""

from __future__ import annotations

import math
import sys
import textwrap

import pytest

from asgdbench import registry
from asgdbench.errors import ConfigError
from asgdbench.registry import available_strategies, get_strategy, load_plugin_file, parse_spec
from asgdbench.runner import run

BUILTINS = ("hogwild", "leashed", "lock", "seq", "sync")
PLUGIN_NAME = "plugin-hogwild"


def test_builtins_are_registered():
    assert set(BUILTINS) <= set(available_strategies())


@pytest.mark.parametrize("spec, name, kwargs, label", [
    ("leashed", "leashed", {"tp": math.inf}, "leashed:tp=inf"),
    ("leashed:tp=inf", "leashed", {"tp": math.inf}, "leashed:tp=inf"),
    ("leashed:tp=INF", "leashed", {"tp": math.inf}, "leashed:tp=inf"),
    ("leashed:tp=1", "leashed", {"tp": 1}, "leashed:tp=1"),
    (" leashed : tp = 0 ", "leashed", {"tp": 0}, "leashed:tp=0"),
    ("lock", "lock", {}, "lock"),
    ("seq", "seq", {}, "seq"),
])
def test_parse_spec(spec, name, kwargs, label):
    parsed = parse_spec(spec)
    assert parsed.name == name
    assert parsed.kwargs == kwargs
    assert parsed.label == label == str(parsed)
    assert parse_spec(parsed.label) == parsed  # the label is itself a spec
    assert parse_spec(parsed) is parsed


def assert_one_line(error: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_unknown_strategy_lists_the_strategies():
    with pytest.raises(ConfigError) as error:
        parse_spec("leashd:tp=1")
    assert_one_line(error, "leashd", *BUILTINS)


def test_unknown_parameter_lists_the_parameters():
    with pytest.raises(ConfigError) as error:
        parse_spec("leashed:persistence=3")
    assert_one_line(error, "persistence", "tp")


def test_a_strategy_without_parameters_says_so():
    with pytest.raises(ConfigError) as error:
        parse_spec("lock:tp=1")
    assert_one_line(error, "tp", "none")


@pytest.mark.parametrize("spec, fragments", [
    ("leashed:tp=many", ("many", "an integer or inf")),
    ("leashed:tp=1.5", ("1.5", "an integer or inf")),
    ("leashed:tp=-1", ("tp=-1", ">= 0")),
    ("leashed:tp", ("tp", "name=value")),
    ("leashed:=3", ("=3", "name=value")),
])
def test_bad_values_are_config_errors(spec, fragments):
    with pytest.raises(ConfigError) as error:
        parse_spec(spec)
    assert_one_line(error, *fragments)


def test_seq_refuses_more_than_one_thread():
    with pytest.raises(ConfigError) as error:
        run("probe", "seq", 2, max_updates=10, max_time=None)
    assert_one_line(error, "seq", "at most 1")


# -- plugins ---------------------------------------------------------------------------

PLUGIN_SOURCE = f'''
"""A drop-in strategy for the tests: HOGWILD!'s kernels under another name."""
from asgdbench.algorithms import hogwild
from asgdbench.registry import Strategy, register_strategy
from asgdbench.steps import retire_nothing

register_strategy(Strategy(
    name={PLUGIN_NAME!r},
    summary="HOGWILD!, loaded from a plugin file.",
    make_state=hogwild.make_state,
    read=hogwild.read,
    update=hogwild.update,
    retire=retire_nothing,
    final_params=lambda state: state[0],
    peak_param_vectors=lambda state, n_threads: 1,
))
'''


@pytest.fixture
def plugin_file(tmp_path):
    """A plugin file on disk; whatever it registers is unregistered afterwards."""
    path = tmp_path / "my_strategy.py"
    path.write_text(textwrap.dedent(PLUGIN_SOURCE))
    yield path
    registry._STRATEGIES.pop(PLUGIN_NAME, None)
    sys.modules.pop(f"asgdbench_plugin_{path.stem}", None)


def test_a_plugin_file_registers_a_strategy_that_runs(plugin_file):
    with pytest.raises(ConfigError):
        get_strategy(PLUGIN_NAME)
    load_plugin_file(plugin_file)
    assert PLUGIN_NAME in available_strategies()
    assert parse_spec(PLUGIN_NAME).label == PLUGIN_NAME
    result = run("probe", PLUGIN_NAME, 2, max_updates=1000, max_time=None, dtype="float64")
    assert result.config.algorithm == PLUGIN_NAME
    assert result.status == "budget"
    assert result.updates_applied == 1000


def test_a_missing_plugin_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_plugin_file(tmp_path / "nowhere.py")
    assert_one_line(error, "nowhere.py", "does not exist")
