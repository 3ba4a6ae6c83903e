"""The compile cache: a loop compiled in one process is loaded by the next, never stale, never
half-read, and a folder that refuses writes costs one warning line.

Every check runs in fresh processes (the cache's whole point is the next process) with
``ASGDBENCH_CACHE_DIR`` in a temporary folder, and reads numba's own statistics of the
dispatcher (``stats.cache_hits`` / ``cache_misses``) and the run's result against the
probe's closed form: a hit that ran stale code would show as a wrong number.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from asgdbench.engine import compile_key, loop_cache

REPO = Path(__file__).resolve().parent.parent

# A step rule plugin whose step is FACTOR * lr, FACTOR a scalar field of its named state (the
# state's class, defined in the plugin file, is in the cached loop's signature); editing FACTOR
# must change what runs.
RULE_PLUGIN = '''
from typing import NamedTuple
from numba import njit
from asgdbench import StepRule, register_step_rule

class Scale(NamedTuple):
    factor: float

@njit(nogil=True)
def step(lr, staleness, tid, rule_state):
    return lr * rule_state.factor

register_step_rule(StepRule(name="scaled", summary="test", step=step,
                            make_state=lambda n_threads: Scale({factor})))
'''

# Load the plugin, get the compiled loop as a run does, report numba's cache statistics,
# then run the probe with one thread for an exact budget and report its final component.
RUN_PROBE = '''
import json, sys
from asgdbench.plugins.files import load_plugin_file
from asgdbench.engine.runner import run, worker_loop_for
load_plugin_file(sys.argv[1])
loop = worker_loop_for("probe", "hogwild", step="scaled", dtype="float64")
result = run("probe", "hogwild", 1, step="scaled", max_updates=10, max_time=None,
             target_loss=None, dtype="float64")
print(json.dumps({"hits": sum(loop.stats.cache_hits.values()),
                  "misses": sum(loop.stats.cache_misses.values()),
                  "final": float(result.final_params[0]), "lr": result.config.lr}))
'''


def _python(code: str, *args: str | Path, cache: Path, timeout: float = 300,
            **environ: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, **{loop_cache.ENV_VAR: str(cache)}, **environ)
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=REPO)


def _report(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _probe_final(lr: float, factor: float, updates: int = 10) -> float:
    from asgdbench.workloads import probe

    value = probe.START_VALUE
    for _ in range(updates):  # the probe's arithmetic, update by update
        value -= lr * factor * probe.GRADIENT_VALUE
    return value


def test_the_next_process_loads_the_loop_and_an_edited_plugin_recompiles(tmp_path):
    cache, plugin = tmp_path / "cache", tmp_path / "scaled.py"
    plugin.write_text(RULE_PLUGIN.format(factor=0.5))
    first = _report(_python(RUN_PROBE, plugin, cache=cache))
    assert first["misses"] == 1 and first["hits"] == 0
    assert first["final"] == _probe_final(first["lr"], 0.5)

    again = _report(_python(RUN_PROBE, plugin, cache=cache))
    assert again["hits"] == 1 and again["misses"] == 0, "the second process compiled again"
    assert again["final"] == first["final"]
    assert loop_cache.describe_cache(cache).entries == 1

    plugin.write_text(RULE_PLUGIN.format(factor=0.25))  # same name, size and place: new code
    edited = _report(_python(RUN_PROBE, plugin, cache=cache))
    assert edited["misses"] == 1 and edited["hits"] == 0, "stale code loaded after an edit"
    assert edited["final"] == _probe_final(edited["lr"], 0.25)
    assert loop_cache.describe_cache(cache).entries == 2


# The same rule, its factor a module constant computed at import from the environment: the
# file never changes, so only the constant's value in the key can tell the runs apart.
ENV_RULE_PLUGIN = '''
import os
from numba import njit
from asgdbench import StepRule, register_step_rule

FACTOR = float(os.environ["ASGDBENCH_TEST_FACTOR"])

@njit(nogil=True)
def step(lr, staleness, tid, rule_state):
    return lr * FACTOR

register_step_rule(StepRule(name="scaled", summary="test", step=step,
                            make_state=lambda n_threads: ()))
'''


def test_a_kernel_reading_a_constant_computed_at_import_recompiles_when_it_changes(tmp_path):
    cache, plugin = tmp_path / "cache", tmp_path / "scaled_by_env.py"
    plugin.write_text(ENV_RULE_PLUGIN)
    first = _report(_python(RUN_PROBE, plugin, cache=cache, ASGDBENCH_TEST_FACTOR="0.5"))
    assert first["misses"] == 1 and first["final"] == _probe_final(first["lr"], 0.5)
    again = _report(_python(RUN_PROBE, plugin, cache=cache, ASGDBENCH_TEST_FACTOR="0.5"))
    assert again["hits"] == 1 and again["misses"] == 0, "a plain constant stopped the caching"
    changed = _report(_python(RUN_PROBE, plugin, cache=cache, ASGDBENCH_TEST_FACTOR="0.25"))
    assert changed["misses"] == 1 and changed["hits"] == 0, "stale constant loaded"
    assert changed["final"] == _probe_final(changed["lr"], 0.25)
    assert loop_cache.describe_cache(cache).entries == 2


def test_a_kernel_is_named_by_its_code_line_and_the_globals_it_reads(tmp_path):
    """Two lambdas of one file, or a name defined twice, share module, name and file: their
    code and first line tell them apart. A global the key cannot see (an array, an object)
    leaves the kernel unnamed (compiled in memory), a kernel global is named by identity."""
    import importlib.util

    (tmp_path / "sibling_kernels.py").write_text(
        "from numba import njit\n\n@njit\ndef helper(x):\n    return x + 1\n")
    (tmp_path / "twice.py").write_text(
        "import numpy as np\nfrom numba import njit\nimport sibling_kernels\n"
        "from sibling_kernels import helper\n\n"
        "first = njit(lambda x: x >= 1)\nsecond = njit(lambda x: False)\n\n"
        "@njit\ndef same(x):\n    return 1\nkept = same\n\n"
        "@njit\ndef same(x):\n    return 1\n\n"
        "TABLE = np.ones(3)\nclass Box:\n    pass\nBOX = Box()\n\n"
        "@njit\ndef reads_table(x):\n    return TABLE[0]\n\n"
        "@njit\ndef reads_box(x):\n    return BOX\n\n"
        "@njit\ndef calls_helper(x):\n    return helper(x)\n\n"
        "@njit\ndef calls_module(x):\n    return sibling_kernels.helper(x)\n\n"
        "@njit\ndef recursive(x):\n    return 0 if x <= 0 else recursive(x - 1)\n")
    sys.path.insert(0, str(tmp_path))
    try:
        spec = importlib.util.spec_from_file_location("twice", tmp_path / "twice.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("sibling_kernels", None)
    identity = compile_key.kernel_identity
    assert None not in (identity(module.first), identity(module.second))
    assert identity(module.first) != identity(module.second)
    assert identity(module.kept) != identity(module.same)  # same code, another line
    assert identity(module.reads_table) is None and identity(module.reads_box) is None
    helped = identity(module.calls_helper)
    assert helped is not None and "helper=(#" in helped
    before = identity(module.calls_module)
    assert before is not None and "sibling_kernels=module sibling_kernels:" in before
    (tmp_path / "sibling_kernels.py").write_text(
        "from numba import njit\n\n@njit\ndef helper(x):\n    return x + 2\n")
    assert identity(module.calls_module) != before  # the sibling's file changed
    assert identity(module.calls_helper) != helped  # its kernel's too
    assert "recursive=(ancestor 0)" in identity(module.recursive)


# A small template and kernel in a module of their own: the same machinery as the worker
# loop (generated module, numba's cache) at a fraction of its compile time.
TINY_MODULE = '''
from numba import njit

@njit(nogil=True)
def template(kernel, values):
    total = 0.0
    for i in range(values.shape[0]):
        total += kernel(values[i])
    return total

@njit(nogil=True)
def cube(x):
    return x * x * x
'''

FILL = '''
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import tiny
from asgdbench.engine.loop_cache import specialize
values = np.arange(1000.0)
loop = specialize(tiny.template, {"kernel": tiny.cube}, (values,))
print(json.dumps({"hits": sum(loop.stats.cache_hits.values()),
                  "misses": sum(loop.stats.cache_misses.values()),
                  "total": loop(values)}))
'''


def test_processes_filling_an_empty_cache_at_once_all_get_whole_entries(tmp_path):
    """Six processes race to compile and store the same entry; each gets a correct loop, the
    entry is left whole (a seventh process loads it), and no temporary file is left behind."""
    (tmp_path / "tiny.py").write_text(TINY_MODULE)
    cache = tmp_path / "cache"
    env = dict(os.environ, **{loop_cache.ENV_VAR: str(cache)})
    racers = [subprocess.Popen([sys.executable, "-c", FILL, str(tmp_path)], env=env, cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(6)]
    expected = float(sum(x ** 3 for x in range(1000)))
    for racer in racers:
        stdout, stderr = racer.communicate(timeout=300)
        assert racer.returncode == 0, stderr
        assert "Traceback" not in stderr and "warning" not in stderr, stderr
        assert json.loads(stdout.splitlines()[-1])["total"] == expected
    last = _report(_python(FILL, tmp_path, cache=cache))
    assert last["hits"] == 1 and last["misses"] == 0 and last["total"] == expected
    assert not [p.name for p in cache.rglob("*") if ".tmp" in p.name]
    info = loop_cache.describe_cache(cache)
    assert (info.entries, info.compiled) == (1, 1)


def test_an_unwritable_cache_folder_costs_one_warning_line_and_compiles_in_memory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    (tmp_path / "tiny.py").write_text(TINY_MODULE)
    twice = FILL.replace("loop = specialize(", "specialize(tiny.template, {'kernel': tiny.cube}, "
                                               "(values,))\nloop = specialize(")
    done = _python(twice, tmp_path, cache=blocker / "cache")
    report = _report(done)
    assert report["total"] == float(sum(x ** 3 for x in range(1000)))
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("asgdbench: warning: cannot write the "
                                                   "compile cache"), done.stderr
    assert not (blocker / "cache").exists()


def test_clear_removes_only_the_cache_own_files(tmp_path):
    cache = tmp_path / "cache"
    (tmp_path / "tiny.py").write_text(TINY_MODULE)
    _report(_python(FILL, tmp_path, cache=cache))
    (cache / "someone-else.txt").write_text("kept")
    assert loop_cache.describe_cache(cache).size_bytes > 0
    assert loop_cache.clear_cache(cache) >= 3  # the module, numba's index and data
    assert [p.name for p in cache.iterdir() if p.is_file()] == ["someone-else.txt"]
    assert loop_cache.describe_cache(cache).entries == 0
    assert _report(_python(FILL, tmp_path, cache=cache))["misses"] == 1


def test_the_key_covers_the_argument_types_and_the_kernels():
    import numpy as np

    from asgdbench.engine.worker import worker_loop
    from asgdbench.primitives.steps import retire_nothing
    from asgdbench.workloads import probe

    values = np.arange(4.0)

    def key(kernel, args):
        return compile_key.cache_key(worker_loop, {"retire": kernel}, args)

    assert key(retire_nothing, (values,)) == key(retire_nothing, (values,))
    assert key(retire_nothing, (values,)) != key(retire_nothing, (values.astype(np.float32),))
    assert key(retire_nothing, (values,)) != key(probe.gradient, (values,))


def test_a_closure_kernel_is_named_by_its_source_and_its_cells():
    """Two closures from one factory share their source but not their values: a closure over
    constants and kernels is named by both, one over anything else (an array) not at all."""
    import numpy as np
    from numba import njit

    from asgdbench.primitives.steps import retire_nothing

    def make(k, kernel=retire_nothing):
        @njit
        def add(x):
            kernel(x, 0)
            return x + k
        return add

    one, two = compile_key.kernel_identity(make(1)), compile_key.kernel_identity(make(2))
    assert one is not None and two is not None and one != two
    assert one == compile_key.kernel_identity(make(1))  # the same values: the same identity
    assert compile_key.kernel_identity(make(1.0)) != one  # 1.0 is not 1: another type
    assert compile_key.kernel_identity(make(1, kernel=probe_gradient())) != one
    assert compile_key.kernel_identity(make(np.ones(1))) is None
    assert compile_key.kernel_identity(make(1, kernel=make(np.ones(1)))) is None

    def make_recursive():
        @njit
        def countdown(x):
            return 0 if x <= 0 else countdown(x - 1)
        return countdown

    assert "countdown=(ancestor 0)" in compile_key.kernel_identity(make_recursive())


def probe_gradient():
    from asgdbench.workloads import probe

    return probe.gradient


# A Leashed-SGD variant's update is a closure over its hooks (asgdbench.leashed.variant):
# it must cache on disk like any strategy, and run what its hooks say.
RUN_VARIANT = '''
import json, sys
from asgdbench.plugins.files import load_plugin_file
from asgdbench.engine.runner import run, worker_loop_for
load_plugin_file(sys.argv[1])
loop = worker_loop_for("probe", "leashed-backoff", dtype="float64")
result = run("probe", "leashed-backoff", 1, max_updates=10, max_time=None, target_loss=None,
             dtype="float64")
print(json.dumps({"hits": sum(loop.stats.cache_hits.values()),
                  "misses": sum(loop.stats.cache_misses.values()),
                  "final": float(result.final_params[0]), "lr": result.config.lr}))
'''


def test_the_next_process_loads_a_leashed_variant_from_the_cache(tmp_path):
    cache, plugin = tmp_path / "cache", REPO / "tests" / "plugins" / "leashed_backoff.py"
    first = _report(_python(RUN_VARIANT, plugin, cache=cache))
    assert first["misses"] == 1 and first["hits"] == 0
    assert first["final"] == _probe_final(first["lr"], 1.0)
    again = _report(_python(RUN_VARIANT, plugin, cache=cache))
    assert again["hits"] == 1 and again["misses"] == 0, "the second process compiled again"
    assert again["final"] == first["final"]
    assert loop_cache.describe_cache(cache).entries == 1


# -- what the CLI does not compile ---------------------------------------------------------

# Run the CLI in this process, then list every numba dispatcher that holds compiled (or
# cache-loaded) code.
CLI_THEN_DISPATCHERS = '''
import gc, json, sys
from asgdbench.study.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
compiled = []
if "numba" in sys.modules:
    from numba.core.dispatcher import Dispatcher
    compiled = [d.py_func.__qualname__ for d in gc.get_objects()
                if isinstance(d, Dispatcher) and d.overloads]
print(json.dumps({"numba": "numba" in sys.modules, "compiled": compiled}))
'''


def test_list_report_help_and_version_compile_nothing(tmp_path):
    out = tmp_path / "results"
    ran = subprocess.run([sys.executable, "-m", "asgdbench", "run", "--strategy", "hogwild",
                          "--threads", "1", "--max-updates", "20", "--target-loss", "none",
                          "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    for args, imports_numba in ((["--help"], False), (["--version"], False),
                                (["list"], True), (["report", str(out)], None)):
        done = subprocess.run([sys.executable, "-c", CLI_THEN_DISPATCHERS, *args],
                              capture_output=True, text=True, timeout=120)
        report = _report(done)
        assert report["compiled"] == [], (args, report)
        if imports_numba is not None:
            assert report["numba"] == imports_numba, args


def test_the_cli_module_imports_neither_numba_nor_scikit_learn():
    done = subprocess.run([sys.executable, "-c", "import sys, asgdbench.study.cli; "
                           "print(sorted({'numba', 'sklearn', 'scipy'} & set(sys.modules)))"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- the compiled loop's IR, for tests that read it ------------------------------------------

def test_the_loop_compiled_in_memory_shows_its_ir_and_loads_the_stop_flag_atomically():
    from asgdbench.engine.runner import worker_loop_for

    loop = worker_loop_for("probe", "hogwild", dtype="float64", cache=False)
    ir = loop.inspect_llvm(loop.signatures[0])
    assert "worker_loop" in ir
    assert "load atomic" in ir and "monotonic" in ir


def _apply_kernel(kernel, state):
    kernel(state, 0)


def test_a_loop_of_closure_kernels_compiles_in_memory_once_per_process():
    """The key cannot name a closure over an array, so it is not cached on disk; but a second
    run in the same process must not compile it again (a notebook's strategies are such
    kernels)."""
    import numpy as np
    from numba import njit

    def make(k):
        amount = np.array([k])

        @njit
        def add(state, tid):
            state[0] += amount[0]
        return add

    template, add_one = njit(_apply_kernel), make(1.0)
    assert compile_key.kernel_identity(add_one) is None
    first = loop_cache.specialize(template, {"kernel": add_one}, (np.zeros(1),))
    assert loop_cache.specialize(template, {"kernel": add_one}, (np.zeros(1),)) is first
    other = loop_cache.specialize(template, {"kernel": make(2.0)}, (np.zeros(1),))
    state = np.zeros(1)
    first(state)
    other(state)
    assert state[0] == 3.0


def test_cache_warm_fills_what_a_run_then_loads_and_info_and_clear_report_it(tmp_path):
    cache = tmp_path / "cache"
    env = dict(os.environ, **{loop_cache.ENV_VAR: str(cache)})

    def cli(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "asgdbench", *args], capture_output=True,
                              text=True, timeout=300, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return done

    assert "0 compiled worker loop(s)" in cli("cache", "info").stdout
    cli("cache", "warm", "--strategies", "hogwild", "--workloads", "probe", "--dtypes", "float64")
    assert str(cache) in cli("cache", "info").stdout
    assert (loop_cache.describe_cache(cache).entries, loop_cache.describe_cache(cache).compiled) \
        == (1, 1)
    ran = _python("from asgdbench.engine.runner import worker_loop_for\n"
                  "loop = worker_loop_for('probe', 'hogwild', threads=3, dtype='float64')\n"
                  "print('{\"hits\": %d}' % sum(loop.stats.cache_hits.values()))", cache=cache)
    assert _report(ran)["hits"] == 1, "a run did not find what warm compiled"
    assert loop_cache.describe_cache(cache).entries == 1
    assert "removed" in cli("cache", "clear").stdout
    assert loop_cache.describe_cache(cache).entries == 0


def test_cache_warm_refuses_missing_data_before_compiling_anything(tmp_path):
    # Every workload's data is checked first: a missing data set must not cost the
    # minutes of compiling the workloads listed before it, only to fail afterwards.
    cache = tmp_path / "cache"
    env = dict(os.environ, **{loop_cache.ENV_VAR: str(cache)})
    env.pop("ASGDBENCH_DATA", None)
    (tmp_path / "no-data").mkdir()
    done = subprocess.run([sys.executable, "-m", "asgdbench", "cache", "warm", "--strategies",
                           "hogwild", "--workloads", "probe,mlp-mnist", "--data-dir",
                           str(tmp_path / "no-data")],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "mnist" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert loop_cache.describe_cache(cache).entries == 0, "compiled before refusing"


def test_cache_info_says_when_the_folder_cannot_be_written(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a file where a parent folder should be: unwritable even for root
    for folder, unwritable in ((blocker / "cache", True), (tmp_path / "new" / "cache", False)):
        env = dict(os.environ, **{loop_cache.ENV_VAR: str(folder)})
        done = subprocess.run([sys.executable, "-m", "asgdbench", "cache", "info"],
                              capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert (f"{blocker} is not a folder" in done.stdout) is unwritable, done.stdout
        assert ("compiles in memory" in done.stdout) is unwritable, done.stdout
    env = dict(os.environ, **{loop_cache.ENV_VAR: str(blocker / "cache")})
    warmed = subprocess.run([sys.executable, "-m", "asgdbench", "cache", "warm", "--workloads",
                             "probe"], capture_output=True, text=True, timeout=60, env=env,
                            cwd=tmp_path)
    assert warmed.returncode == 2 and warmed.stdout == "", warmed.stdout  # nothing compiled
    assert warmed.stderr.startswith("asgdbench: error: cannot warm the compile cache") \
        and f"{blocker} is not a folder" in warmed.stderr, warmed.stderr
