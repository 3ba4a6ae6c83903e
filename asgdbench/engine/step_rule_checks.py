"""Checks a step rule is held to alone, without a strategy: ``asgdbench check step:RULE``.

A rule's ``step(lr, staleness, tid, rule_state)`` is called by many threads at once, on state
they share, at any staleness. :func:`check_step_rule` calls it the way strategies do and holds
it to four properties, each judged against independent evidence:

- *bounded factors*: every step, over a sweep of staleness values (0 to 2^40) and thread
  ids, is finite and ``0 <= step / lr <= max_factor`` (default 2: TAIL-τ's ``1 + A`` with
  ``A <= 1``). A negative factor would step uphill; the sweep runs long enough for a
  warm-up (TAIL-τ's) to complete, so the factors after it are seen too;
- *deterministic given τ*: the same calls on two fresh states return the same steps and
  leave the same state, bit for bit;
- *race-free state*: ``threads`` threads (more than the cores) call the rule at once on one
  shared state, behind a start gate so that they overlap. The calls are then replayed
  sequentially on fresh states, in two orders (round-robin and thread by thread). If the two
  replays leave the same state, the rule's state does not depend on the order of the calls,
  so the threads must have left exactly that state: a lost update shows as a difference.
  Otherwise (a warm-up that samples the first calls, say) ``inspect()`` of the threads' state
  must equal the replays' (it reports what must not depend on the interleaving);
- *inspect() is JSON-ready*: what the result records of the rule's state.
"""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any

import numpy as np
from numba import njit

from asgdbench.engine.checks import Check
from asgdbench.engine.loop_cache import specialize
from asgdbench.errors import ConfigError, PluginError, UserError, one_line
from asgdbench.plugins.step_rules import StepSpec, check_rule_state, parse_step_spec
from asgdbench.primitives.atomics import cpu_pause, load

BASE_STEP = 0.05  # lr
MAX_FACTOR = 2.0
STALENESS_SWEEP = (0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 31, 32, 63, 100, 199, 200, 1_000, 65_536,
                   2 ** 40)
"""Staleness values every check visits: small ones (fresh applies), powers of two and their
neighbours, and values far beyond any histogram a rule keeps."""

MAX_THREADS = 1024
MAX_CALLS = 10_000_000  # all threads together: the calls' arrays stay under a gigabyte

GO, STOP = 0, 8  # cells of the control array, a cache line apart
CONTROL_CELLS = 16
CHECK_EVERY = 256  # calls between two looks at the stop flag


@njit(nogil=True)  # the template: specialised for each rule's kernel, cached on disk
def _call_rule(rule, lr, staleness, tids, rule_state, steps, control):
    """``steps[i] = rule(lr, staleness[i], tids[i], rule_state)`` for every i, in order, once
    ``control[GO]`` is set; returns the calls made (fewer if ``control[STOP]`` was set)."""
    while load(control, GO, "acquire") == 0:
        if load(control, STOP, "monotonic") != 0:
            return 0
        cpu_pause()
    for i in range(staleness.shape[0]):
        if i % CHECK_EVERY == 0 and load(control, STOP, "monotonic") != 0:
            return i
        steps[i] = rule(lr, staleness[i], tids[i], rule_state)
    return staleness.shape[0]


def _calls(threads: int, calls_per_thread: int) -> tuple[np.ndarray, np.ndarray]:
    """Each thread's staleness values and thread ids, ``(threads, calls_per_thread)``: the
    sweep in a different rotation per thread, so that every thread sees every value."""
    sweep = np.array(STALENESS_SWEEP, dtype=np.int64)
    j = np.arange(calls_per_thread)
    staleness = np.stack([sweep[(7 * j + 3 * t) % sweep.size] for t in range(threads)])
    tids = np.repeat(np.arange(threads, dtype=np.int64)[:, None], calls_per_thread, axis=1)
    return staleness, tids


def _same_state(a: tuple, b: tuple) -> bool:
    """Equal field by field: arrays element-wise (NaN equal to NaN), scalar fields by value."""
    def same(x: Any, y: Any) -> bool:
        x, y = np.asarray(x), np.asarray(y)
        return np.array_equal(x, y, equal_nan=x.dtype.kind == "f" and y.dtype.kind == "f")

    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))


def _json_ready(value: Any) -> str | None:
    """Why ``value`` is not JSON-ready, or None."""
    if not isinstance(value, dict):
        return f"inspect() returned {type(value).__name__}, not a dict"
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        return f"inspect() returned {value!r}: {error}"
    return None


class _Rule:
    """One rule's kernel, compiled into :func:`_call_rule`, and ways to call it."""

    def __init__(self, spec: StepSpec, threads: int) -> None:
        self.spec, self.threads = spec, threads
        state = self.fresh_state()
        sample = np.zeros(1, np.int64)
        control = np.zeros(CONTROL_CELLS, np.int64)
        control[STOP] = 1  # compiles (or loads) the loop without calling the rule
        self.loop = specialize(_call_rule, {"rule": spec.rule.step},
                               (BASE_STEP, sample, sample, state, np.zeros(1), control))

    def fresh_state(self) -> tuple:
        return check_rule_state(self.spec.make_state(self.threads), self.spec.rule.name)

    def sequential(self, staleness: np.ndarray, tids: np.ndarray) -> tuple[np.ndarray, tuple]:
        """The calls in the order given (flattened), on a fresh state: (steps, final state)."""
        state = self.fresh_state()
        steps = np.full(staleness.size, np.nan)
        control = np.zeros(CONTROL_CELLS, np.int64)
        control[GO] = 1
        self.loop(BASE_STEP, staleness.ravel().copy(), tids.ravel().copy(), state, steps,
                  control)
        return steps, state

    def concurrent(self, staleness: np.ndarray, tids: np.ndarray,
                   timeout_s: float) -> tuple[np.ndarray, tuple] | None:
        """Row t's calls by thread t, all threads on one fresh state, released together;
        None if they did not finish within ``timeout_s`` (they are told to stop)."""
        state = self.fresh_state()
        steps = np.full(staleness.shape, np.nan)
        control = np.zeros(CONTROL_CELLS, np.int64)
        failures: list[BaseException] = []

        def calls(t: int) -> None:
            try:
                self.loop(BASE_STEP, staleness[t], tids[t], state, steps[t], control)
            except BaseException as error:  # reported by the caller, not by threading
                failures.append(error)
                control[STOP] = 1

        workers = [threading.Thread(target=calls, args=(t,), daemon=True, name=f"rule-{t}")
                   for t in range(staleness.shape[0])]
        for worker in workers:
            worker.start()
        control[GO] = 1
        deadline = time.monotonic() + timeout_s
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        if any(worker.is_alive() for worker in workers):
            control[STOP] = 1
            for worker in workers:
                worker.join(1.0)
            return None
        if failures:
            raise failures[0]
        return steps, state


def check_step_rule(spec: str | StepSpec, threads: int = 16, calls_per_thread: int = 20_000,
                    max_factor: float = MAX_FACTOR, watchdog_s: float = 60.0) -> list[Check]:
    """Hold a step rule to the properties of the module docstring: one :class:`Check` each.

    ``threads`` threads (whatever the cores) make ``calls_per_thread`` calls each, at the
    staleness values of :data:`STALENESS_SWEEP`, with ``lr`` = :data:`BASE_STEP` in float64.
    """
    spec = parse_step_spec(spec)
    if not 1 <= threads <= MAX_THREADS:
        raise ConfigError(f"a step rule is checked with 1 to {MAX_THREADS} threads, not {threads}")
    if not 1 <= calls_per_thread <= MAX_CALLS // threads:
        raise ConfigError(f"a step rule is checked with at most {MAX_CALLS} calls in all: 1 to "
                          f"{MAX_CALLS // threads} per thread with {threads} threads, not "
                          f"{calls_per_thread}")
    try:
        rule = _Rule(spec, threads)
    except PluginError as error:
        return [Check("state is a tuple of arrays", False, str(error))]
    except UserError:
        raise  # a parameter out of range (tail:amplitude=2): one line and exit 2, as for a run
    except Exception as error:  # a kernel that does not compile: the rule's own fault
        return [Check("kernel compiles", False, f"{type(error).__name__}: {one_line(error)}")]
    try:
        return _checks(rule, spec, threads, calls_per_thread, max_factor, watchdog_s)
    except Exception as error:  # raised by the rule's kernel, make_state or inspect
        return [Check("rule runs", False, f"{type(error).__name__}: {one_line(error)}")]


def _checks(rule: _Rule, spec: StepSpec, threads: int, calls_per_thread: int,
            max_factor: float, watchdog_s: float) -> list[Check]:
    checks: list[Check] = []
    staleness, tids = _calls(threads, calls_per_thread)
    in_turn = (staleness.T, tids.T)  # round-robin: call j of every thread, then call j + 1
    by_thread = (staleness, tids)  # thread 0's calls, then thread 1's, ...
    n_calls = staleness.size

    steps, state = rule.sequential(*in_turn)
    factors = steps / BASE_STEP
    finite = np.isfinite(factors)
    low, high = (float(factors[finite].min()), float(factors[finite].max())) if finite.any() \
        else (math.nan, math.nan)
    in_range = finite.all() and 0 <= low and high <= max_factor
    checks.append(Check(
        "bounded factors", bool(in_range),
        f"step / lr in [{low:.4g}, {high:.4g}] over {n_calls} calls (τ from 0 to "
        f"{STALENESS_SWEEP[-1]}, threads 0 to {threads - 1}), allowed [0, {max_factor:g}]"
        + ("" if finite.all() else f"; {int((~finite).sum())} steps not finite")))

    again, state_again = rule.sequential(*in_turn)
    same_steps = np.array_equal(steps, again, equal_nan=True)
    differ = int(np.sum(~((steps == again) | (np.isnan(steps) & np.isnan(again)))))
    checks.append(Check(
        "deterministic given τ", same_steps and _same_state(state, state_again),
        f"the same {n_calls} calls on two fresh states: "
        + ("identical steps" if same_steps else f"{differ} steps differ")
        + (", identical states" if _same_state(state, state_again) else ", the states differ")))

    checks.append(_race_check(rule, spec, in_turn, by_thread, watchdog_s, threads))

    problem = _json_ready(spec.rule.inspect(state))
    checks.append(Check("inspect() is JSON-ready", problem is None,
                        problem or f"inspect() = {spec.rule.inspect(state)}"))
    return checks


def _race_check(rule: _Rule, spec: StepSpec, in_turn: tuple, by_thread: tuple,
                watchdog_s: float, threads: int) -> Check:
    name = "state race-free under threads"
    replay_steps, replay = rule.sequential(*in_turn)
    other_steps, other = rule.sequential(*by_thread)
    hammered = rule.concurrent(*by_thread, timeout_s=watchdog_s)
    if hammered is None:
        return Check(name, False, f"{threads} threads did not finish their calls within "
                                  f"{watchdog_s:g} s")
    steps, state = hammered
    calls = f"{threads} threads x {by_thread[0].shape[1]} calls on one state"
    if _same_state(replay, other):  # the state does not depend on the order of the calls
        same = _same_state(state, replay)
        detail = (f"{calls}: final state {'equals' if same else 'DIFFERS from'} the sequential "
                  "replays' (which agree in two orders)")
        # steps that do not depend on the order either must come out the same per call
        replay_by_thread = replay_steps.reshape(in_turn[0].shape).T
        if np.array_equal(replay_by_thread.ravel(), other_steps, equal_nan=True):
            wrong = int(np.sum(steps != replay_by_thread))
            same = same and wrong == 0
            detail += f"; {wrong} calls returned another step than in the replays"
        return Check(name, same, detail)
    seen, expected, other_seen = (spec.rule.inspect(s) for s in (state, replay, other))
    if expected != other_seen:
        return Check(name, None, f"{calls}: the state depends on the order of the calls and so "
                                 f"does inspect() ({expected} vs {other_seen}): not judged")
    return Check(name, seen == expected,
                 f"{calls}: the state depends on the order of the calls; inspect() gives "
                 f"{seen}, the sequential replays {expected}")
