"""asgdbench.plugins.strategies: spec strings, their errors, and strategies from plugin files."""

from __future__ import annotations

import hashlib
import math
import sys
import textwrap

import pytest

from asgdbench.engine.runner import run
from asgdbench.errors import ConfigError
from asgdbench.plugins import strategies as registry
from asgdbench.plugins.files import load_plugin_file
from asgdbench.plugins.strategies import available_strategies, get_strategy, parse_spec

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
from asgdbench.plugins.strategies import Strategy, register_strategy
from asgdbench.primitives.steps import retire_nothing

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
    registry.STRATEGIES.forget(PLUGIN_NAME)
    sys.modules.pop(f"asgdbench_plugin_{path.stem}", None)


def test_a_plugin_file_registers_a_strategy_that_runs(plugin_file):
    with pytest.raises(ConfigError):
        get_strategy(PLUGIN_NAME)
    load_plugin_file(plugin_file)
    assert PLUGIN_NAME in available_strategies()
    assert parse_spec(PLUGIN_NAME).label == PLUGIN_NAME
    result = run("probe", PLUGIN_NAME, 2, max_updates=1000, max_time=None, dtype="float64")
    assert result.config.strategy.label == PLUGIN_NAME
    assert result.status == "budget"
    assert result.updates_applied == 1000
    source = result.strategy_source
    assert source["kind"] == "file" and source["path"] == str(plugin_file.resolve())
    assert source["sha256"] == hashlib.sha256(plugin_file.read_bytes()).hexdigest()
    assert load_plugin_file(plugin_file) is None  # the same file again: not a clash
    assert run("probe", "lock", 1, max_updates=10, max_time=None).strategy_source["kind"] == \
        "built-in"


def test_a_missing_plugin_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_plugin_file(tmp_path / "nowhere.py")
    assert_one_line(error, "nowhere.py", "does not exist")


# -- plugins that are broken: one line naming the file, exit 2 ------------------------------

BAD_PLUGINS = {
    "syntax": ("def broken(:\n", "syntax error at line 1"),
    "raises": ("raise RuntimeError('no GPU here')\n", "RuntimeError: no GPU here"),
    "bad_name": (PLUGIN_SOURCE.replace(repr(PLUGIN_NAME), "'bad name!'"), "name must be"),
    "clash": (PLUGIN_SOURCE.replace(repr(PLUGIN_NAME), "'lock'"), "clashes with the one from"),
    "arity": (PLUGIN_SOURCE.replace("read=hogwild.read", "read=hogwild.update"),
              "read has the wrong signature: expected read(state, tid, control), given "
              "update(state, tid, token, grad, lr, control, rule, rule_state)"),
    "not_a_kernel": (PLUGIN_SOURCE.replace("update=hogwild.update", "update=print"),
                     "update must be an @njit"),
}


@pytest.mark.parametrize("kind", sorted(BAD_PLUGINS))
def test_a_broken_plugin_is_one_line_naming_the_file_and_exit_2(kind, tmp_path, capsys):
    from asgdbench.study.cli import main

    source, fragment = BAD_PLUGINS[kind]
    path = tmp_path / f"bad_{kind}.py"
    path.write_text(source)
    try:
        code = main(["--plugin", str(path), "list"])
    finally:
        registry.STRATEGIES.forget(PLUGIN_NAME)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("asgdbench: error: ")
    assert fragment in err and str(path) in err
    assert get_strategy("lock").name == "lock"  # the built-in was not replaced


def test_kernels_are_checked_by_parameter_names_and_the_error_shows_both_signatures():
    """Right count, wrong order: ``update`` would read the gradient as its token."""
    import dataclasses

    from numba import njit

    from asgdbench.errors import PluginError

    @njit(nogil=True)
    def swapped(state, tid, grad, token, lr, control, rule, rule_state):
        return 0, 0, 0, lr

    hogwild = get_strategy("hogwild")
    with pytest.raises(PluginError) as error:
        registry.register_strategy(dataclasses.replace(hogwild, name="swapped", update=swapped))
    assert_one_line(error, "strategy 'swapped'", "update has the wrong signature: expected "
                    "update(state, tid, token, grad, lr, control, rule, rule_state), given "
                    "swapped(state, tid, grad, token, lr, control, rule, rule_state)")
    assert "swapped" not in available_strategies()


def test_kernels_that_do_not_compile_are_one_line_naming_the_plugin(tmp_path, capsys):
    from asgdbench.study.cli import main

    path = tmp_path / "mistyped.py"
    path.write_text(PLUGIN_SOURCE.replace("make_state=hogwild.make_state",
                                          "make_state=lambda p, n: [p.copy(), 0]"))
    try:
        code = main(["--plugin", str(path), "run", "--algorithm", PLUGIN_NAME, "--threads", "1",
                     "--workload", "probe", "--max-updates", "10"])
    finally:
        registry.STRATEGIES.forget(PLUGIN_NAME)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "kernels do not compile" in err and str(path.resolve()) in err


def test_a_broken_entry_point_is_reported_once_and_the_rest_works(monkeypatch, capsys):
    class BrokenEntryPoint:
        name, dist = "oops", type("Dist", (), {"name": "oops-plugin", "version": "0.1"})()

        def load(self):
            raise ImportError("No module named 'oops'")

    from asgdbench.plugins import registry as plugin_registry

    monkeypatch.setattr(plugin_registry, "entry_points", lambda group: [BrokenEntryPoint()])
    monkeypatch.setattr(registry.STRATEGIES, "_discovered", False)
    monkeypatch.setattr(registry.STRATEGIES, "_broken", [])
    assert "lock" in available_strategies() and "lock" in available_strategies()
    err = capsys.readouterr().err
    assert err.count("oops-plugin") == 1 and "skipped" in err
    assert registry.broken_plugins() == [err.strip().removeprefix("asgdbench: warning: ")]
    assert run("probe", "lock", 2, max_updates=100, max_time=None).status == "budget"


# -- workloads follow the same rules ------------------------------------------------------

WORKLOAD_PLUGIN = '''
"""A workload from a plugin file: the consistency probe under another name."""
from asgdbench.plugins.workloads import Defaults, WorkloadSpec, register_workload
from asgdbench.workloads.probe import build_probe

register_workload(WorkloadSpec(
    name=NAME, summary="the probe again", build=build_probe,
    defaults=Defaults(lr=LR, batch_size=1, target_loss=None, max_time=5.0),
))
'''


def workload_plugin(tmp_path, name: str, lr: float = 0.0078125):
    path = tmp_path / f"workload_{name.replace('-', '_')}.py"
    path.write_text(WORKLOAD_PLUGIN.replace("NAME", repr(name)).replace("LR", repr(lr)))
    return path


FAMILY_PLUGIN = '''
"""A workload family from a plugin file: the consistency probe as probe-like:ANYTHING."""
from asgdbench.plugins.workloads import (Defaults, WorkloadFamily, WorkloadSpec,
                                         register_workload_family)
from asgdbench.workloads.probe import build_probe

register_workload_family(WorkloadFamily("probe-like", "anything", lambda name, argument: WorkloadSpec(
    name=name, summary="the probe again", build=build_probe,
    defaults=Defaults(lr=0.0078125, batch_size=1, target_loss=None, max_time=5.0))))
'''


def test_a_run_on_a_family_member_records_the_family_and_where_it_came_from(tmp_path):
    from asgdbench.plugins import workloads

    path = tmp_path / "probe_family.py"
    path.write_text(FAMILY_PLUGIN)
    try:
        load_plugin_file(path)
        result = run("probe-like:x", "lock", 2, max_updates=100, max_time=None,
                     dtype="float64")
        assert result.status == "budget" and result.updates_applied == 100
        assert result.workload_source["kind"] == "file"
        assert result.workload_source["path"] == str(path.resolve())
        assert result.workload_source["family"] == "probe-like"
    finally:
        workloads.WORKLOAD_FAMILIES.pop("probe-like", None)
        workloads._FAMILY_SOURCES.pop("probe-like", None)
    assert workloads.workload_source("probe-like:x") == {}  # gone with its family


def test_a_plugin_file_registers_a_workload_that_runs(tmp_path):
    from asgdbench.plugins.workloads import WORKLOADS

    path = workload_plugin(tmp_path, "my-probe")
    try:
        load_plugin_file(path)
        result = run("my-probe", "lock", 2, max_updates=100, max_time=None, dtype="float64")
        assert result.status == "budget" and result.updates_applied == 100
        assert result.workload_source["kind"] == "file"
        assert result.workload_source["path"] == str(path.resolve())
    finally:
        WORKLOADS.forget("my-probe")


def test_a_workload_registered_before_any_lookup_still_clashes_with_the_built_in():
    """Built-in workloads register on first use, not at import: registering one's name
    first must be refused, not break the built-in later."""
    import subprocess
    import sys

    code = ("from asgdbench import Defaults, WorkloadSpec, register_workload\n"
            "def build(**options):\n"
            "    raise NotImplementedError\n"
            "register_workload(WorkloadSpec(name='probe', summary='again', build=build, "
            "defaults=Defaults(lr=0.5, batch_size=1, target_loss=None, max_time=5.0)))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "clashes with the one from built-in asgdbench.workloads.probe" in done.stderr


@pytest.mark.parametrize("name, lr, fragment", [
    ("probe", 0.0078125, "clashes with the one from built-in asgdbench.workloads.probe"),
    ("bad-lr", -1.0, "default lr must be > 0"),
    ("bad name", 0.0078125, "name must be"),
])
def test_a_bad_workload_plugin_is_one_line_and_exit_2(tmp_path, capsys, name, lr, fragment):
    from asgdbench.plugins.workloads import WORKLOADS
    from asgdbench.study.cli import main

    try:
        code = main(["--plugin", str(workload_plugin(tmp_path, name, lr)), "list"])
    finally:
        WORKLOADS.forget(name) if name != "probe" else None
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and fragment in err


def test_the_public_face_is_one_small_import():
    """``import asgdbench`` is the whole face: 30 names at most, each one resolving, with the
    building blocks a plugin file needs reachable through its three namespaces."""
    import asgdbench

    assert len(asgdbench.__all__) <= 30
    assert all(getattr(asgdbench, name) is not None for name in asgdbench.__all__)
    assert {"Strategy", "register_strategy", "check_strategy", "WorkloadSpec", "StepRule",
            "run", "primitives", "leashed", "network", "build_network", "check_step_rule",
            "check_workload"} <= set(asgdbench.__all__)
    from asgdbench.primitives import NOT_READ, cas, spin_wait_hint  # noqa: F401
    assert callable(asgdbench.leashed.pin_latest) and callable(asgdbench.leashed.take_spare)
    assert asgdbench.network.Network is not None
    assert not hasattr(asgdbench, "api") or "api" not in asgdbench.__all__
    assert asgdbench.__version__ != "0+unknown"


def test_debug_shows_the_plugins_own_traceback_and_version_is_printed(tmp_path, capsys):
    from asgdbench.study.cli import main

    path = tmp_path / "bad_raises.py"
    path.write_text("raise RuntimeError('no GPU here')\n")
    assert main(["--debug", "--plugin", str(path), "list"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: no GPU here" in err
    assert err.strip().splitlines()[-1].startswith("asgdbench: error: plugin file")
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.startswith("asgdbench ")


def test_a_leashed_variant_with_a_hook_of_the_wrong_signature_is_one_line():
    """Hooks are checked by parameter name when the variant is made, like the kernels."""
    from numba import njit

    import asgdbench
    from asgdbench.errors import PluginError

    @njit(nogil=True)
    def gives_up(state):
        return False

    with pytest.raises(PluginError, match=r"strategy 'lx': gives_up has the wrong signature: "
                                          r"expected gives_up\(state, attempts\), given "
                                          r"gives_up\(state\)"):
        asgdbench.leashed.variant("lx", "a wrong hook", gives_up=gives_up)
