"""Mutation check of the synchronization code: every listed bug must fail the tests that target it.

Each mutation is a small source patch that reintroduces a bug someone could
plausibly write (or once wrote) in a file with synchronization code: Leashed-SGD,
the lock, SYNC, HOGWILD!, the atomics, the barrier, the worker loop and its
loss log, the monitor, the test gates, and the step rule with shared state
(TAIL; the others keep none). Each names the tests that must kill it. For each
one this script patches a private copy of the package, runs those tests on it
with empty numba and asgdbench caches, and expects a failure (a failing test, or
a hang caught by a timeout). A mutation they pass is a missing test, unless it
is marked equivalent: then it must survive, and its one-line argument is printed.

Before the mutants, the same tests run on the unpatched copy, cold, and are
timed (the baseline): a test that fails there would kill every mutant for
nothing, and each mutant's timeouts derive from its tests' baseline time, so
nothing needs tuning to the machine.

    python benchmarks/scripts/mutation_check.py                # every mutation
    python benchmarks/scripts/mutation_check.py --subset ci    # a rotating subset, ~5 minutes
    python benchmarks/scripts/mutation_check.py --only pin-no-version-check
    python benchmarks/scripts/mutation_check.py --list         # mutations and their killers
    python benchmarks/scripts/mutation_check.py --check-patches  # every patch applies (seconds)

Exit status 0 when every non-equivalent mutation is killed, every equivalent one
survives and the unpatched copy passes. The working tree is never modified.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASELINE_TIMEOUT_S = 1800  # the unpatched run has nothing to derive from: a generous cap
TIMEOUT_FACTOR = 3  # a mutant's run may take this many times its baseline...
TIMEOUT_MARGIN_S = 30  # ...plus this (a cold start's noise on a loaded machine)
CI_BUDGET_S = 300  # --subset ci: baselines and mutants together
CI_STEP = 12  # --subset ci: how far the rotation moves each day


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # inside the package copy
    edits: tuple[tuple[str, str], ...]  # (old, new), each old text found once
    why: str
    killers: tuple[str, ...]  # pytest node ids that must fail on it
    equivalent: str = ""  # if set: why no test can fail on it (it must survive)


def one(name, path, old, new, why, *killers, equivalent=""):
    return Mutation(name, path, ((old, new),), why, tuple(killers), equivalent)


LEASHED = "asgdbench/algorithms/leashed.py"
LEASHED_POOL = "asgdbench/algorithms/leashed_pool.py"
TAIL = "asgdbench/algorithms/step_rules/tail.py"
LOCK = "asgdbench/algorithms/lock.py"
SYNC = "asgdbench/algorithms/sync.py"
HOGWILD = "asgdbench/algorithms/hogwild.py"
ATOMICS = "asgdbench/primitives/atomics.py"
BARRIER = "asgdbench/primitives/barrier.py"
WORKER = "asgdbench/engine/worker.py"
MONITOR = "asgdbench/engine/monitor.py"
GATES = "asgdbench/primitives/gates.py"
STEPS = "asgdbench/primitives/steps.py"
INTERRUPTS = "asgdbench/engine/interrupts.py"

T_LEASHED = "tests/test_leashed.py::"
T_RULES = "tests/test_step_rules.py::"
T_STRATEGIES = "tests/test_strategies.py::"
T_ATOMICS = "tests/test_atomics.py::"
T_BARRIER = "tests/test_barrier.py::"
T_WORKER = "tests/test_worker.py::"
T_COPIES = "tests/test_step_copies.py::"
T_SPARSE = "tests/test_sparse_strategies.py::"
SPARSE_STRESS = T_SPARSE + "test_the_sparse_path_is_consistent_and_loses_no_update_with_more_threads_than_cores"
SPARSE_READ_WAITS = T_SPARSE + "test_a_sparse_read_waits_for_the_lock_and_copies_the_support_its_holder_wrote"
SPARSE_UPDATE_WAITS = T_SPARSE + "test_a_sparse_update_waits_for_the_lock_and_counts_tau_exactly"
SYNC_SPARSE_ROUND = T_SPARSE + "test_a_sync_round_applies_the_mean_of_the_sparse_gradients"
COPIES_STRESS = T_COPIES + "test_the_lock_variant_reads_whole_versions_and_loses_no_update[3]"
READ_WAITS = T_COPIES + "test_a_read_waits_for_the_lock_and_copies_what_its_holder_wrote"
ORDERINGS = T_LEASHED + "test_leashed_uses_the_memory_orderings_its_argument_needs"

PIN_CHECK = "if ref >> COUNT_BITS == word >> SLOT_BITS and ref & COUNT_MASK != 0:"
TAKE_SPARE = ("        spare = take_spare(state, tid, control)  # before the pin: invariant (I)\n"
              "        if spare == NO_SLOT:\n            return STOP, 0, 0, lr\n")
BASE_PINNED = ("            base = pin_latest(state, tid, control)\n"
               "            if base == NOT_PINNED:\n                return STOP, 0, attempts, lr\n")
READ_PIN_DROP = "        drop_read_pin(state, tid)\n"
TAKE_SPARE_AFTER_PIN = (
    "            base_version = base >> SLOT_BITS\n",
    "            base_version = base >> SLOT_BITS\n"
    "            spare = take_spare(state, tid, control)\n"
    "            if spare == NO_SLOT:\n                unpin(state, base & SLOT_MASK, 1)\n"
    "                return STOP, 0, attempts, lr\n")
RECHECK = "                if load(state.latest, 0, \"acquire\") == word:"
RETRY_STOP = ("            if load(control, STOP_FLAG, \"monotonic\") != 0:  # no retry publishes "
              "after the stop\n                return STOP, 0, attempts, lr\n")
HOOK_THEN_STOP = "            after_failed_attempt(state, tid, attempts, control)\n" + RETRY_STOP
POP_TAG = "desired = (((top >> SLOT_BITS) + 1) << SLOT_BITS) | (after + 1)"
PUSH_TAG = "desired = (((top >> SLOT_BITS) + 1) << SLOT_BITS) | (slot + 1)"
SAMPLE = ("        fetch_add(rule_state.histogram, tau, 1)  # add, then count: the count says it is in\n"
          "        gate(gates, SAMPLE_ADDED, tid)\n"
          "        if fetch_add(shared, SAMPLED, 1) == rule_state.last_call - rule_state.first_call:\n")
LOCK_IN_READ = ("    if mutex_lock(state.mutex) != 0:\n        store(control, ERROR, 1, \"seq_cst\")\n"
                "        return NOT_READ\n")
UNLOCK_IN_READ = ("    if mutex_unlock(state.mutex) != 0:\n        store(control, ERROR, 1, \"seq_cst\")\n"
                  "    return version\n")
COPY_IN_READ = "    copy_read(local, state.params, support, n_support)\n"

MUTATIONS = [
    # -- Leashed-SGD: pinning ---------------------------------------------------------
    one("pin-no-version-check", LEASHED, PIN_CHECK, "if ref & COUNT_MASK != 0:",
        "a pin accepts any live slot that latest once named",
        T_LEASHED + "test_a_pin_checks_the_version_not_just_a_live_count"),
    one("pin-no-count-check", LEASHED, PIN_CHECK, "if ref >> COUNT_BITS == word >> SLOT_BITS:",
        "a pin revives a slot whose count reached 0 (already free)",
        T_LEASHED + "test_a_reader_never_pins_a_recycled_vector",
        T_LEASHED + "test_a_pin_checks_the_version_not_just_a_live_count",
        T_LEASHED + "test_a_stale_reader_leaves_a_free_slot_alone"),
    one("pin-blind-fetch-add", LEASHED,
        "            if cas(state.refs, slot * LINE, ref, ref + 1) == ref:",
        "            if fetch_add(state.refs, slot * LINE, 1) >= 0:",
        "a pin increments the count without checking what it increments",
        T_LEASHED + "test_a_stale_reader_leaves_a_free_slot_alone"),
    one("pin-no-recheck", LEASHED, RECHECK, "                if True:",
        "a pin keeps a vector latest no longer names",
        T_LEASHED + "test_a_pin_is_only_kept_if_latest_still_names_it"),
    one("pin-ignores-stop", LEASHED,
        "        if load(control, STOP_FLAG, \"monotonic\") != 0:\n            return NOT_PINNED",
        "        if False:\n            return NOT_PINNED",
        "a pin that cannot succeed spins forever",
        T_LEASHED + "test_a_pin_that_cannot_succeed_gives_up_when_the_run_stops"),
    one("pin-stop-plain-load", LEASHED,
        "        if load(control, STOP_FLAG, \"monotonic\") != 0:\n            return NOT_PINNED",
        "        if control[STOP_FLAG] != 0:\n            return NOT_PINNED",
        "a pin polls the stop flag with a plain load (a data race; same x86 code)", ORDERINGS),
    one("pin-latest-relaxed", LEASHED, "        word = load(state.latest, 0, \"acquire\")",
        "        word = load(state.latest, 0, \"monotonic\")",
        "a pin loads latest without acquire (same x86 code)", ORDERINGS),
    one("pin-reference-relaxed", LEASHED,
        "        ref = load(state.refs, slot * LINE, \"acquire\")",
        "        ref = load(state.refs, slot * LINE, \"monotonic\")",
        "a pin loads the slot's reference word without acquire (same x86 code)", ORDERINGS),
    one("pin-recheck-relaxed", LEASHED, RECHECK,
        "                if load(state.latest, 0, \"monotonic\") == word:",
        "a pin re-checks latest without acquire (same x86 code)", ORDERINGS),
    # -- Leashed-SGD: publishing ------------------------------------------------------
    one("retry-keeps-first-staleness", LEASHED,
        "            staleness = base_version - token  # against this attempt's base\n",
        "            if attempts == 0:\n                first_staleness = base_version - token\n"
        "            staleness = first_staleness\n",
        "a CAS retry reuses the first attempt's staleness (and so its step)",
        T_LEASHED + "test_a_retry_recomputes_staleness_and_step_against_its_new_base"),
    Mutation("take-spare-after-pin", LEASHED,
             ((TAKE_SPARE, ""), TAKE_SPARE_AFTER_PIN),
             "the spare is taken after the base is pinned (breaks invariant I)",
             (T_LEASHED + "test_the_spare_is_taken_before_the_base_is_pinned",)),
    Mutation("original-pin-then-take", LEASHED,
             ((RECHECK, "                if True:"), (TAKE_SPARE, ""), TAKE_SPARE_AFTER_PIN),
             "the code before issue 7: no re-check, and the spare taken after the pin",
             (T_LEASHED + "test_a_reader_never_pins_a_recycled_vector",)),
    one("publish-without-cas", LEASHED,
        "    if cas(state.latest, 0, base, pack((base >> SLOT_BITS) + 1, spare)) == base:",
        "    store(state.latest, 0, pack((base >> SLOT_BITS) + 1, spare), \"seq_cst\")\n"
        "    if True:",
        "publish overwrites latest without checking it is still the base",
        T_LEASHED + "test_a_lost_race_drops_or_retries_as_the_bound_says"),
    one("stamp-relaxed", LEASHED,
        "grad, step)\n    store(state.refs, spare * LINE, pack((base >> SLOT_BITS) + 1, 1), \"release\")",
        "grad, step)\n    store(state.refs, spare * LINE, pack((base >> SLOT_BITS) + 1, 1), \"monotonic\")",
        "the new vector's stamp is stored without release (same x86 code)", ORDERINGS),
    # -- Leashed-SGD: the sparse path (the same loop and gates; its own read and build) --------
    one("sparse-stamp-relaxed", LEASHED,
        "n_support, step)\n    store(state.refs, spare * LINE, pack((base >> SLOT_BITS) + 1, 1), "
        "\"release\")",
        "n_support, step)\n    store(state.refs, spare * LINE, pack((base >> SLOT_BITS) + 1, 1), "
        "\"monotonic\")",
        "the sparse build's stamp is stored without release (same x86 code)",
        T_SPARSE + "test_the_sparse_build_releases_its_stamp_after_the_vector"),
    one("leashed-sparse-read-unpinned", LEASHED, "    return read(state, tid, control)\n",
        "    word = load(state.latest, 0, \"acquire\")\n"
        "    return state.pool[word & SLOT_MASK], word >> SLOT_BITS\n",
        "the sparse read takes latest's vector without pinning it: it can be recycled under it",
        T_SPARSE + "test_a_sparse_read_pins_the_vector_so_no_publish_recycles_it",
        SPARSE_STRESS + "[leashed]"),
    one("sparse-publish-skips-the-base-copy", STEPS,
        "    for i in range(out.shape[0]):\n        out[i] = base[i]\n", "",
        "the sparse publish writes only the support into the spare: the rest is a recycled slot's",
        T_SPARSE + "test_the_sparse_steps_touch_only_the_support_and_the_publish_copies_its_base",
        T_SPARSE + "test_a_sparse_publish_that_loses_its_cas_retries_on_the_new_base",
        SPARSE_STRESS + "[leashed]"),
    one("unpin-skipped-on-lost-race", LEASHED,
        "        return True\n    unpin(state, base_slot, 1)\n    return False\n",
        "        return True\n    return False\n",
        "a failed attempt keeps its pin on the base: vectors leak",
        T_LEASHED + "test_a_lost_race_drops_or_retries_as_the_bound_says"),
    one("unpin-once-on-publish", LEASHED, "unpin(state, base_slot, 2)", "unpin(state, base_slot, 1)",
        "publish forgets to drop latest's reference to the old vector",
        T_LEASHED + "test_a_lost_race_drops_or_retries_as_the_bound_says"),
    one("no-budget-check", LEASHED, "        if base_version >= limit:", "        if False:",
        "leashed publishes past the update budget",
        T_LEASHED + "test_versions_stop_at_the_limit_instead_of_wrapping"),
    one("budget-off-by-one", LEASHED, "        if base_version >= limit:",
        "        if base_version > limit:",
        "leashed publishes one version past its limit (MAX_VERSION overflows the word)",
        T_LEASHED + "test_versions_stop_at_the_limit_instead_of_wrapping"),
    one("persistence-off-by-one", LEASHED, "attempts > persistence\n",
        "attempts > persistence + 1\n",
        "one more retry than tp allows",
        T_LEASHED + "test_a_lost_race_drops_or_retries_as_the_bound_says"),
    one("update-ignores-stop-in-pin", LEASHED, BASE_PINNED,
        BASE_PINNED.replace("return STOP, 0, attempts, lr", "continue"),
        "update ignores NOT_PINNED after the stop flag and spins on",
        T_LEASHED + "test_an_update_whose_pin_cannot_succeed_ends_when_the_run_stops"),
    one("retry-ignores-stop", LEASHED,
        "            if load(control, STOP_FLAG, \"monotonic\") != 0:  # no retry publishes after "
        "the stop\n                return STOP, 0, attempts, lr\n", "",
        "a publisher that lost its race retries (and publishes) after the stop",
        T_LEASHED + "test_a_publisher_that_lost_its_race_does_not_retry_after_the_stop"),
    one("stop-checked-before-the-hook", LEASHED, HOOK_THEN_STOP,
        RETRY_STOP + "            after_failed_attempt(state, tid, attempts, control)\n",
        "the stop flag is checked before the after_failed_attempt hook: a stop during a "
        "backoff is missed and the retry publishes after it",
        T_LEASHED + "test_a_stop_during_the_backoff_ends_the_update_without_a_retry"),
    one("hook-never-called", LEASHED,
        "            after_failed_attempt(state, tid, attempts, control)\n", "",
        "a variant's after_failed_attempt hook is never called",
        T_LEASHED + "test_the_backoff_variant_runs_its_hook_after_each_lost_cas_and_keeps_the_gates"),
    one("gives-up-hook-ignored", LEASHED, "            if gives_up(state, attempts):",
        "            if False:", "the gives_up hook is never asked: tp is ignored",
        T_LEASHED + "test_a_lost_race_drops_or_retries_as_the_bound_says",
        T_LEASHED + "test_a_variant_that_gives_up_at_once_drops_after_one_lost_cas_whatever_tp"),
    Mutation("read-pin-dropped-after-base-pin", LEASHED,
             ((READ_PIN_DROP, ""),
              (BASE_PINNED, BASE_PINNED + "            drop_read_pin(state, tid)\n")),
             "the read pin is dropped only once the base is pinned: three slots per thread",
             (T_LEASHED + "test_every_thread_at_its_worst_moment_at_once_stays_within_the_pool",)),
    one("read-pin-never-dropped", LEASHED,
        "    if held != NO_SLOT:  # done computing on the read vector", "    if False:",
        "the read vector is never unpinned: the pool runs out (the ERROR cell)",
        T_LEASHED + "test_a_pin_is_only_kept_if_latest_still_names_it"),
    # -- Leashed-SGD: the pool and the free list ---------------------------------------
    one("take-spare-no-guard", LEASHED, "        if slot >= state.pool.shape[0]:", "        if False:",
        "a spare past the 2m + 1 slots is handed out (written past the pool)",
        T_LEASHED + "test_a_spare_beyond_the_pool_is_refused_and_fails_the_run"),
    one("take-spare-guard-off-by-one", LEASHED, "        if slot >= state.pool.shape[0]:",
        "        if slot > state.pool.shape[0]:", "the guard lets slot 2m + 1 (one past the pool) through",
        T_LEASHED + "test_a_spare_beyond_the_pool_is_refused_and_fails_the_run"),
    one("retire-relaxed", LEASHED,
        "store(state.refs, slot * LINE, stamp & ~COUNT_MASK, \"release\")",
        "store(state.refs, slot * LINE, stamp & ~COUNT_MASK, \"monotonic\")",
        "a retired spare's count is reset without release (same x86 code)", ORDERINGS),
    Mutation("free-list-no-aba-tag", LEASHED_POOL,
             ((POP_TAG, "desired = after + 1"), (PUSH_TAG, "desired = slot + 1")),
             "the free-list head carries no tag: ABA on pop",
             (T_LEASHED + "test_free_list_pop_survives_aba",)),
    one("free-list-tag-on-push-only", LEASHED_POOL, POP_TAG,
        "desired = (top & ~SLOT_MASK) | (after + 1)", "a pop does not bump the head's tag",
        T_LEASHED + "test_free_list_pop_survives_aba",
        equivalent="a head can come back only by a push, which bumps the tag, so a stale pop's "
                   "CAS still fails"),
    one("push-next-relaxed", LEASHED_POOL,
        "store(state.next_free, slot, (top & SLOT_MASK) - 1, \"seq_cst\")",
        "store(state.next_free, slot, (top & SLOT_MASK) - 1, \"monotonic\")",
        "push stores the new head's successor relaxed",
        T_LEASHED + "test_free_list_pop_survives_aba", ORDERINGS,
        equivalent="the push's seq_cst CAS on the head releases that store, and a pop reads "
                   "the successor only after an acquiring (seq_cst) load of that head"),
    # -- TAIL --------------------------------------------------------------------------
    one("tail-ready-before-cdf", TAIL,
        "            build_cdf(rule_state.histogram, rule_state.cdf)  # every sample is in: adds came "
        "first\n            store(shared, READY, 1, \"release\")\n",
        "            store(shared, READY, 1, \"release\")\n"
        "            build_cdf(rule_state.histogram, rule_state.cdf)\n",
        "TAIL publishes READY before F is built: a reader may use a half-built CDF",
        T_RULES + "test_tail_publishes_ready_only_after_the_cdf_is_built"),
    one("tail-builder-is-last-number", TAIL,
        "        if fetch_add(shared, SAMPLED, 1) == rule_state.last_call - rule_state.first_call:\n",
        "        fetch_add(shared, SAMPLED, 1)\n        if call == rule_state.last_call:\n",
        "TAIL builds F on the window's last call number, while an earlier claimed sample "
        "may still be on its way (the authors' order)",
        T_RULES + "test_tail_does_not_build_f_while_a_claimed_sample_is_still_being_added",
        T_RULES + "test_tail_does_not_build_f_while_a_claimed_call_has_not_added_its_sample"),
    one("tail-count-before-add", TAIL, SAMPLE,
        "        counted = fetch_add(shared, SAMPLED, 1)\n        gate(gates, SAMPLE_ADDED, tid)\n"
        "        fetch_add(rule_state.histogram, tau, 1)\n"
        "        if counted == rule_state.last_call - rule_state.first_call:\n",
        "TAIL counts a sample before adding it: F may be built without it",
        T_RULES + "test_tail_builds_f_only_once_every_claimed_sample_is_in"),
    one("tail-histogram-add-not-atomic", TAIL,
        "        fetch_add(rule_state.histogram, tau, 1)  # add",
        "        rule_state.histogram[tau] += 1  # add",
        "TAIL adds to its histogram with a plain += (lost samples under contention)",
        T_RULES + "test_tail_loses_no_sample_when_every_thread_hits_one_bin_at_once",
        T_RULES + "test_tail_claims_adds_and_counts_each_sample_with_an_atomic_add"),
    one("tail-call-counter-not-atomic", TAIL, "    call = fetch_add(shared, CALLS, 1) + 1\n",
        "    call = shared[CALLS] + 1\n    shared[CALLS] = call\n",
        "TAIL numbers calls with a plain read and write: calls share a number",
        T_RULES + "test_tail_loses_no_sample_when_every_thread_hits_one_bin_at_once",
        T_RULES + "test_tail_claims_adds_and_counts_each_sample_with_an_atomic_add"),
    one("tail-ready-relaxed", TAIL, "            store(shared, READY, 1, \"release\")",
        "            store(shared, READY, 1, \"monotonic\")",
        "TAIL publishes READY without release (same x86 code)",
        T_RULES + "test_tail_publishes_ready_only_after_the_cdf_is_built"),
    one("tail-ready-read-relaxed", TAIL, "    if load(shared, READY, \"acquire\") != 0:",
        "    if load(shared, READY, \"monotonic\") != 0:",
        "TAIL reads READY without acquire (same x86 code)",
        T_RULES + "test_tail_publishes_ready_only_after_the_cdf_is_built"),
    one("tail-one-sided-clamp", TAIL,
        "    tau = min(max(staleness, 0), rule_state.max_staleness)",
        "    tau = min(staleness, rule_state.max_staleness)",
        "a negative τ indexes before TAIL's histogram",
        T_RULES + "test_tail_clamps_a_negative_staleness_to_zero_instead_of_writing_before_its_"
                  "histogram"),
    one("tail-no-window-precheck", TAIL,
        "    if load(shared, CALLS, \"monotonic\") >= rule_state.last_call:\n"
        "        return lr  # the window is claimed: its last samples are being added\n", "",
        "TAIL claims a call number even after the window",
        T_RULES + "test_tail_samples_each_call_of_the_window_once_under_contention",
        T_RULES + "test_tail_loses_no_sample_when_every_thread_hits_one_bin_at_once",
        equivalent="a call number past the window is never sampled; the check only spares a "
                   "contended add (the 64-bit counter cannot wrap in any run)"),
    # -- lock-based AsyncSGD -----------------------------------------------------------
    one("lock-update-unlocked", LOCK,
        "    if mutex_lock(mutex) != 0:\n        store(control, ERROR, 1, \"seq_cst\")\n"
        "        return STOP, 0, 0, lr\n", "",
        "the lock-based update takes no lock (and its unlock frees another thread's)",
        T_STRATEGIES + "test_reads_are_whole_versions_that_nobody_rewrites[lock-16]",
        T_STRATEGIES + "test_no_update_is_lost_in_a_run[lock-16]",
        SPARSE_UPDATE_WAITS + "[lock]", SPARSE_UPDATE_WAITS + "[lock-per-step-copy]",
        SPARSE_STRESS + "[lock]"),
    Mutation("lock-read-unlocked", LOCK,
             ((LOCK_IN_READ, ""), (UNLOCK_IN_READ, "    return version\n")),
             "the lock-based read (both variants) copies the vector without the lock: torn reads",
             (T_STRATEGIES + "test_reads_are_whole_versions_that_nobody_rewrites[lock-16]",
              READ_WAITS + "[lock]", SPARSE_READ_WAITS + "[lock]", SPARSE_STRESS + "[lock]",
              COPIES_STRESS, READ_WAITS + "[lock-per-step-copy]",
              SPARSE_READ_WAITS + "[lock-per-step-copy]")),
    Mutation("lock-version-after-unlock", LOCK,
             ((COPY_IN_READ + "    version = state.updates[0]\n", COPY_IN_READ),
              (UNLOCK_IN_READ, UNLOCK_IN_READ.replace("    return", "    version = state.updates[0]\n"
                                                                    "    return"))),
             "the read's version is read after the unlock: its token may name a later version",
             (T_STRATEGIES + "test_reads_are_whole_versions_that_nobody_rewrites[lock-16]",)),
    # -- the authors' variants: a copy per step (lock-per-step-copy, hogwild-per-step-copy) --
    Mutation("lock-copy-before-lock", LOCK,
             ((LOCK_IN_READ + COPY_IN_READ, COPY_IN_READ + LOCK_IN_READ),),
             "the lock-based read (both variants) copies before it takes the lock",
             (COPIES_STRESS, READ_WAITS + "[lock-per-step-copy]",
              SPARSE_READ_WAITS + "[lock-per-step-copy]")),
    one("lock-sparse-read-copies-nothing", LOCK,
        "        sparse_copy_into(local, params, support, n_support)\n", "        pass\n",
        "the sparse read copies nothing: the gradient reads a stale local copy",
        SPARSE_READ_WAITS + "[lock]", SPARSE_STRESS + "[lock]"),
    one("lock-per-step-copy-never-dropped", LOCK,
        "    drop_step_copy(state.copies)  # the gradient is computed: the copy is freed before "
        "the lock\n",
        "", "the per-step copy is never counted as freed: memory accounting overstates",
        T_COPIES + "test_every_step_allocates_its_copy_and_frees_it[lock-per-step-copy]"),
    one("hogwild-per-step-copy-never-dropped", HOGWILD,
        "    drop_step_copy(state.copies)  # the gradient is computed: the copy is freed\n", "",
        "HOGWILD!'s per-step copy is never counted as freed",
        T_COPIES + "test_every_step_allocates_its_copy_and_frees_it[hogwild-per-step-copy]"),
    one("hogwild-per-step-copy-unfilled", HOGWILD,
        "    copy_into(local, state.params)  # racy: others write params meanwhile, so the copy may be "
        "torn\n", "", "HOGWILD!'s per-step copy is never filled: gradients of garbage",
        T_COPIES + "test_a_read_returns_a_fresh_copy_of_the_shared_vector[hogwild-per-step-copy]"),
    one("step-copy-peak-never-raised", STEPS, "    while seen < live:\n", "    while seen > live:\n",
        "the peak of live per-step copies is never raised: memory understated",
        T_COPIES + "test_every_step_allocates_its_copy_and_frees_it[lock-per-step-copy]"),
    one("step-copy-is-the-shared-vector", STEPS, "    local = np.empty_like(params)\n",
        "    local = params\n", "a per-step copy aliases the shared vector: reads are not copies",
        COPIES_STRESS),
    one("step-copy-not-counted-live", STEPS,
        "    live = fetch_add(counter, STEP_COPIES_LIVE, 1) + 1\n",
        "    live = load(counter, STEP_COPIES_LIVE, \"monotonic\") + 1\n",
        "a per-step copy is taken without counting it live (a racy read instead of an add)",
        T_COPIES + "test_every_step_allocates_its_copy_and_frees_it[lock-per-step-copy]"),
    Mutation("step-copy-allocated-before-counted", STEPS,
             (("    gate(gates, STEP_COPY_COUNTED, tid)\n    local = np.empty_like(params)\n"
               "    return local\n", "    return local\n"),
              ("    live = fetch_add(counter, STEP_COPIES_LIVE, 1) + 1\n",
               "    local = np.empty_like(params)\n    gate(gates, STEP_COPY_COUNTED, tid)\n"
               "    live = fetch_add(counter, STEP_COPIES_LIVE, 1) + 1\n")),
             "a per-step copy is allocated before it is counted live: the peak can be understated",
             (T_COPIES + "test_a_step_copy_is_counted_live_before_it_is_allocated",)),
    one("step-copy-peak-one-try", STEPS,
        "    while seen < live:\n        gate(gates, STEP_COPY_PEAK_SEEN, tid)\n"
        "        before = cas(counter, STEP_COPIES_PEAK, seen, live)\n        if before == seen:\n"
        "            break\n        seen = before\n",
        "    if seen < live:\n        gate(gates, STEP_COPY_PEAK_SEEN, tid)\n"
        "        cas(counter, STEP_COPIES_PEAK, seen, live)\n",
        "a lost CAS raising the peak is not retried: the peak is understated",
        T_COPIES + "test_a_lost_peak_raise_is_retried_with_the_peak_another_thread_set"),
    one("step-copy-peak-retry-stale", STEPS, "            break\n        seen = before\n",
        "            break\n", "a lost peak raise retries with the stale peak: it spins",
        T_COPIES + "test_a_lost_peak_raise_is_retried_with_the_peak_another_thread_set"),
    one("lock-per-step-failed-read-keeps-copy", LOCK,
        "        drop_step_copy(state.copies)  # no update follows a read that failed\n",
        "        pass\n",
        "a per-step read whose lock fails keeps its copy counted live",
        T_COPIES + "test_a_per_step_read_whose_lock_fails_frees_its_copy_and_fails_the_run"),
    # -- SYNC ----------------------------------------------------------------------------
    one("sync-no-second-barrier", SYNC,
        "    barrier_wait(barriers, UPDATED, n_threads, control, NEVER, state.gates, tid)\n", "",
        "SYNC lets a thread into the next round while others still apply this one",
        T_STRATEGIES + "test_sync_rounds_are_whole_versions",
        T_STRATEGIES + "test_no_sync_round_is_lost_in_a_run", SPARSE_STRESS + "[sync]"),
    one("sync-first-barrier-deaf-to-stop", SYNC,
        "barrier_wait(barriers, GRADIENTS_IN, n_threads, control, STOP_FLAG, state.gates, tid)",
        "barrier_wait(barriers, GRADIENTS_IN, n_threads, control, NEVER, state.gates, tid)",
        "a SYNC thread waits for gradients that threads which stopped will never send",
        T_BARRIER + "test_sync_stops_mid_round_without_deadlock",
        T_SPARSE + "test_a_sparse_sync_round_stops_without_deadlock_when_a_thread_never_comes"),
    one("sync-every-thread-counts-the-round", SYNC, "    if tid == 0:\n        rounds[0] += 1\n",
        "    rounds[0] += 1\n", "every SYNC thread counts the round (racing plain adds)",
        T_STRATEGIES + "test_sync_rounds_are_whole_versions",
        T_STRATEGIES + "test_no_sync_round_is_lost_in_a_run", SYNC_SPARSE_ROUND),
    one("sync-sparse-no-slice-check", SYNC, "            if lo <= i < hi:\n",
        "            if True:\n",
        "every SYNC thread applies every sparse entry, not only its slice's: m-fold, racing",
        SYNC_SPARSE_ROUND),
    one("sync-sparse-slice-edge-twice", SYNC, "            if lo <= i < hi:\n",
        "            if lo <= i <= hi:\n",
        "a sparse entry on a slice's upper edge is applied by two threads", SYNC_SPARSE_ROUND),
    one("sync-sparse-own-gradient-only", SYNC,
        "    for t in range(n_threads):  # every thread's entries that fall in this thread's slice\n",
        "    for t in range(tid, tid + 1):\n",
        "a SYNC thread applies only its own sparse gradient: the round is not the mean",
        SYNC_SPARSE_ROUND),
    one("sync-sparse-size-unpublished", SYNC, "    state.support_sizes[tid * LINE] = n_support\n",
        "", "a SYNC thread publishes its support but not its size: its gradient is never applied",
        SYNC_SPARSE_ROUND),
    # -- HOGWILD! ------------------------------------------------------------------------
    one("hogwild-budget-off-by-one", HOGWILD, "    if ticket >= control[MAX_UPDATES]:",
        "    if ticket > control[MAX_UPDATES]:", "HOGWILD! applies one update past its budget",
        T_STRATEGIES + "test_hogwild_races_on_the_vector_but_not_on_its_budget"),
    one("hogwild-ticket-not-atomic", HOGWILD, "    ticket = fetch_add(tickets, 0, 1)\n",
        "    ticket = tickets[0]\n    tickets[0] = ticket + 1\n",
        "HOGWILD! takes its ticket with a plain read and write: tickets repeat, budget overrun",
        T_STRATEGIES + "test_hogwild_races_on_the_vector_but_not_on_its_budget",
        T_STRATEGIES + "test_hogwild_takes_its_ticket_with_one_atomic_add"),
    # -- atomics -------------------------------------------------------------------------
    one("cas-relaxed", ATOMICS, "builder.cmpxchg(ptr, args[2], args[3], \"seq_cst\", \"seq_cst\")",
        "builder.cmpxchg(ptr, args[2], args[3], \"monotonic\", \"monotonic\")",
        "CAS without ordering (same x86 code)",
        T_ATOMICS + "test_cas_and_fetch_add_are_single_atomic_instructions"),
    one("fetch-add-relaxed", ATOMICS, "builder.atomic_rmw(\"add\", ptr, args[2], \"seq_cst\")",
        "builder.atomic_rmw(\"add\", ptr, args[2], \"monotonic\")",
        "fetch-add without ordering (same x86 code)",
        T_ATOMICS + "test_cas_and_fetch_add_are_single_atomic_instructions"),
    one("fetch-add-not-atomic", ATOMICS,
        "        return builder.atomic_rmw(\"add\", ptr, args[2], \"seq_cst\")",
        "        old = builder.load(ptr)\n        builder.store(builder.add(old, args[2]), ptr)\n"
        "        return old",
        "fetch-add as a load and a store", T_ATOMICS + "test_fetch_add_counts_exactly_under_contention"),
    one("load-not-atomic", ATOMICS, "        return builder.load_atomic(ptr, order, 8)",
        "        return builder.load(ptr)", "an ordered load that is a plain load",
        T_ATOMICS + "test_load_and_store_with_every_valid_ordering"),
    one("load-ignores-ordering", ATOMICS, "        return builder.load_atomic(ptr, order, 8)",
        "        return builder.load_atomic(ptr, \"monotonic\", 8)",
        "every load relaxed, whatever it asks for (same x86 code)",
        T_ATOMICS + "test_load_and_store_with_every_valid_ordering"),
    one("store-not-atomic", ATOMICS, "        builder.store_atomic(args[2], ptr, order, 8)",
        "        builder.store(args[2], ptr)", "an ordered store that is a plain store",
        T_ATOMICS + "test_load_and_store_with_every_valid_ordering"),
    one("fence-emits-nothing", ATOMICS, "        builder.fence(order)\n", "",
        "fence() emits no fence (the monitor's seqlock loses its ordering)",
        T_ATOMICS + "test_fence_emits_a_fence_of_its_ordering"),
    one("mutex-lock-does-nothing", ATOMICS,
        "    return _pthread_mutex_lock(mutex.ctypes.data)", "    return 0",
        "the mutex does not lock", T_ATOMICS + "test_mutex_excludes_under_contention"),
    one("cpu-pause-emits-nothing", ATOMICS,
        "        _emit_pause(builder)\n        return context.get_dummy_value()",
        "        return context.get_dummy_value()", "spin loops without the pause hint",
        T_ATOMICS + "test_spin_hints_are_callable",
        T_ATOMICS + "test_release_store_publishes_to_acquire_load",
        equivalent="pause is a hint to the core: it changes how fast a spin burns power, "
                   "never what it reads"),
    # -- the barrier ---------------------------------------------------------------------
    one("barrier-blind-withdrawal", BARRIER,
        "            if cas(barrier, index, word, word - 1) == word:\n                return False",
        "            cas(barrier, index, load(barrier, index, \"seq_cst\"),"
        " load(barrier, index, \"seq_cst\") - 1)\n            return False",
        "a stopping waiter withdraws even from a barrier that opened",
        T_BARRIER + "test_a_waiter_that_sees_stop_as_the_barrier_opens_goes_through"),
    one("barrier-deaf-to-stop", BARRIER,
        "        if load(stop, stop_index, \"seq_cst\") != 0:", "        if False:",
        "a barrier waiter never withdraws when the run stops",
        T_BARRIER + "test_a_waiter_withdraws_cleanly_when_the_barrier_never_opens"),
    one("barrier-last-does-not-open", BARRIER,
        "            desired = (generation + 1) << 32", "            desired = word + 1",
        "the last arrival counts itself but does not open the barrier",
        T_BARRIER + "test_a_waiter_that_sees_stop_as_the_barrier_opens_goes_through",
        T_BARRIER + "test_a_waiter_withdraws_cleanly_when_the_barrier_never_opens"),
    # -- the worker loop, the loss log and the monitor -----------------------------------
    one("worker-stop-flag-plain-load", WORKER,
        "    while load(control, STOP_FLAG, \"monotonic\") == 0:\n        sample_batch(rng, n_samples, rows)\n        params, token = read(",
        "    while control[STOP_FLAG] == 0:\n        sample_batch(rng, n_samples, rows)\n        params, token = read(",
        "the worker loop polls the stop flag with a plain load (a data race; same x86 code)",
        T_WORKER + "test_the_worker_loop_polls_the_stop_flag_with_an_atomic_load"),
    one("worker-ignores-not-read", WORKER,
        "        if token == NOT_READ:\n            break\n        loss = gradient(params, data, rows, work, grad)",
        "        loss = gradient(params, data, rows, work, grad)",
        "the worker computes and updates after read said the run stopped",
        T_WORKER + "test_a_read_that_returns_not_read_ends_the_loop_without_an_update"),
    one("worker-never-retires", WORKER,
        "                log, control, timespec)\n    retire(state, tid)\n",
        "                log, control, timespec)\n",
        "a worker leaves without giving back what it holds (Leashed's spare)",
        T_WORKER + "test_a_read_that_returns_not_read_ends_the_loop_without_an_update"),
    one("sparse-worker-stop-flag-plain-load", WORKER,
        "    while load(control, STOP_FLAG, \"monotonic\") == 0:\n        sample_batch(rng, n_samples, rows)\n        n_support",
        "    while control[STOP_FLAG] == 0:\n        sample_batch(rng, n_samples, rows)\n        n_support",
        "the sparse worker loop polls the stop flag with a plain load",
        T_WORKER + "test_the_sparse_worker_loop_polls_the_stop_flag_with_an_atomic_load"),
    one("sparse-worker-ignores-not-read", WORKER,
        "        if token == NOT_READ:\n            break\n        loss = gradient(params, data, rows, work, sup,",
        "        loss = gradient(params, data, rows, work, sup,",
        "the sparse worker computes and updates after read_sparse said the run stopped",
        T_WORKER + "test_a_sparse_read_that_returns_not_read_ends_the_loop_without_an_update"),
    one("sparse-worker-never-retires", WORKER,
        "        _record(tid, loss, outcome, staleness, attempts, step, lr, n_support, telemetry, log,\n                control, timespec)\n    retire(state, tid)\n",
        "        _record(tid, loss, outcome, staleness, attempts, step, lr, n_support, telemetry, log,\n                control, timespec)\n",
        "a sparse worker leaves without giving back what it holds",
        T_WORKER + "test_a_sparse_read_that_returns_not_read_ends_the_loop_without_an_update"),
    one("start-wait-ignores-stop", WORKER,
        "    while load(control, GO, \"acquire\") == 0 and load(control, STOP_FLAG, \"acquire\") == 0:",
        "    while load(control, GO, \"acquire\") == 0:",
        "a worker waiting at the start barrier never sees a run stopped before it opened",
        T_WORKER + "test_ctrl_c_before_the_start_barrier_opens_leaves_no_worker_behind"),
    one("log-commit-without-claim", WORKER,
        "    while True:  # claim the slot: from an older, finished entry to \"entry is being written\"",
        "    while False:",
        "a log writer writes its slot without claiming it: lapped writers overwrite newer entries",
        T_WORKER + "test_a_writer_lapped_by_a_whole_ring_keeps_the_newer_entry_and_the_monitor_"
                   "goes_on"),
    one("monitor-no-recheck", MONITOR,
        "        if load(sequence, slot, \"monotonic\") != entry + 1:  # rewritten while read: torn",
        "        if False:", "the monitor uses an entry rewritten while it read it (torn)",
        T_WORKER + "test_an_entry_rewritten_while_the_monitor_reads_it_is_dropped"),
    # -- the test gates ------------------------------------------------------------------
    one("gate-never-parks", GATES,
        "    while load(gates, row + PARKED_AT, \"acquire\") == point:",
        "    while False:", "an armed gate lets its thread through: no replay replays",
        T_ATOMICS + "test_a_parked_thread_leaves_its_gate_when_the_board_aborts"),
    one("gate-deaf-to-abort", GATES,
        "        if load(gates, ABORT, \"acquire\") != 0:\n            return",
        "        if False:\n            return",
        "a parked thread ignores the board's abort: a failed replay hangs",
        T_ATOMICS + "test_a_parked_thread_leaves_its_gate_when_the_board_aborts"),
    one("gate-costs-in-normal-runs", GATES, "        return lambda gates, point, tid: None",
        "        return lambda gates, point, tid: os_yield()",
        "a gate without a board still does something (a yield on every pass)",
        T_ATOMICS + "test_test_gates_compile_away_in_normal_runs"),
]

# -- Leashed-SGD: lines the review found no mutation touched (a block of its own) ---------
KEEPS_SPARE = T_LEASHED + "test_a_dropped_attempt_keeps_its_spare_and_the_next_update_builds_in_it"
LOST_RACE = T_LEASHED + "test_a_lost_race_drops_or_retries_as_the_bound_says"
PIN_KEPT = T_LEASHED + "test_a_pin_is_only_kept_if_latest_still_names_it"
MUTATIONS += [
    one("budget-plain-load", LEASHED,
        "limit = min(load(control, MAX_UPDATES, \"monotonic\"), MAX_VERSION)",
        "limit = min(control[MAX_UPDATES], MAX_VERSION)",
        "update reads the budget with a plain load (a data race; same x86 code)", ORDERINGS),
    one("retry-stop-plain-load", LEASHED,
        "            if load(control, STOP_FLAG, \"monotonic\") != 0:  # no retry",
        "            if control[STOP_FLAG] != 0:  # no retry",
        "the retry polls the stop flag with a plain load (a data race; same x86 code)",
        ORDERINGS),
    one("spare-kept-after-win", LEASHED,
        "        state.mine[tid * LINE + SPARE] = NO_SLOT\n        unpin(state, base_slot, 2)",
        "        unpin(state, base_slot, 2)",
        "a publisher keeps the vector it published as its spare: it writes a published vector",
        LOST_RACE),
    one("take-spare-not-recorded", LEASHED, "    state.mine[tid * LINE + SPARE] = slot\n", "",
        "take_spare does not record the slot it takes: a dropped attempt leaks it", KEEPS_SPARE),
    one("take-spare-ignores-kept", LEASHED,
        "    if slot != NO_SLOT:\n        return slot\n    slot = pop_free(state, tid)",
        "    slot = pop_free(state, tid)",
        "take_spare does not reuse a kept spare: each dropped attempt leaks a slot",
        KEEPS_SPARE),
    one("pin-keeps-a-stale-pin", LEASHED,
        "                unpin(state, slot, 1)  # latest moved on meanwhile: pin the new one\n",
        "", "a pin whose re-check failed is not dropped: the vector leaks", PIN_KEPT),
    one("recycle-at-count-one", LEASHED_POOL, "    if before & COUNT_MASK == count:",
        "    if before & COUNT_MASK == 1:",
        "unpin recycles when one reference was left, not the ones it drops: a publish's "
        "double unpin never recycles the old vector", LOST_RACE),
    one("budget-keeps-base-pin", LEASHED,
        "            if base_version >= limit:\n                unpin(state, base & SLOT_MASK, 1)\n",
        "            if base_version >= limit:\n",
        "an update stopped by the budget keeps its pin on the base",
        T_LEASHED + "test_versions_stop_at_the_limit_instead_of_wrapping"),
    one("read-no-held-store", LEASHED, "    state.mine[tid * LINE + HELD] = word & SLOT_MASK\n",
        "", "read does not record the slot it pinned: the read pin is never dropped", PIN_KEPT),
    one("pop-head-relaxed", LEASHED_POOL,
        "        top = load(state.meta, FREE_TOP, \"seq_cst\")\n        head = top & SLOT_MASK",
        "        top = load(state.meta, FREE_TOP, \"monotonic\")\n        head = top & SLOT_MASK",
        "a pop loads the free list's head relaxed (same x86 code)", ORDERINGS),
    one("read-pin-held-not-cleared", LEASHED, "        state.mine[tid * LINE + HELD] = NO_SLOT\n",
        "", "drop_read_pin leaves HELD naming the slot it unpinned", PIN_KEPT, KEEPS_SPARE,
        equivalent="read always rewrites HELD before the next update, a NOT_READ read ends the "
                   "loop, and retire ignores HELD: the stale HELD is never read"),
    one("append-not-deferring-ctrl-c", INTERRUPTS,
        "    if threading.current_thread() is not threading.main_thread():\n        yield  # signals",
        "    if True:\n        yield  # signals",
        "a Ctrl-C during an append cuts the finished run's line off",
        "tests/test_result_folder.py::test_a_ctrl_c_inside_an_append_is_raised_once_the_line_is_whole",
        "tests/test_result_folder.py::test_ctrl_c_halfway_through_a_line_keeps_that_run_and_exits_130"),
    one("deferred-ctrl-c-hides-the-disk-error", INTERRUPTS,
        "        signal.signal(signal.SIGINT, previous)\n    if held:\n        previous(*held[0])",
        "        signal.signal(signal.SIGINT, previous)\n        if held:\n            previous(*held[0])",
        "a Ctrl-C held while the disk refuses the line replaces the error that says so",
        "tests/test_result_folder.py::test_a_full_disk_with_a_ctrl_c_held_says_what_was_not_saved"),
    one("deferred-ctrl-c-dropped", INTERRUPTS, "    if held:\n        previous(*held[0])",
        "    pass",
        "a Ctrl-C held during an append is never raised: the grid goes on",
        "tests/test_result_folder.py::test_a_ctrl_c_inside_an_append_is_raised_once_the_line_is_whole",
        "tests/test_result_folder.py::test_ctrl_c_halfway_through_a_line_keeps_that_run_and_exits_130"),
]


def apply(root: Path, mutation: Mutation) -> None:
    path = root / mutation.path
    text = path.read_text()
    for old, new in mutation.edits:
        if text.count(old) != 1:
            raise SystemExit(f"mutation {mutation.name}: its source text is in {mutation.path} "
                             f"{text.count(old)} times, not once; update the list to the code:\n"
                             f"{old}")
        text = text.replace(old, new)
    path.write_text(text)


def make_copy(workdir: Path) -> Path:
    """The package laid out as it installs (asgdbench.algorithms, asgdbench.workloads), plus tests."""
    root = workdir / "tree"
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "asgdbench", root / "asgdbench", ignore=skip)
    shutil.copytree(REPO / "algorithms", root / "asgdbench" / "algorithms", ignore=skip)
    shutil.copytree(REPO / "workloads", root / "asgdbench" / "workloads", ignore=skip)
    shutil.copytree(REPO / "tests", root / "tests", ignore=skip)
    # pytest's settings; tests run the README's plugin and CONTRIBUTING's example rule
    for name in ("pyproject.toml", "README.md", "CONTRIBUTING.md"):
        shutil.copy(REPO / name, root / name)
    return root


def run_tests(root: Path, caches: Path, tests: tuple[str, ...],
              timeout_s: float) -> tuple[bool, str, float]:
    """(passed, pytest's first failure or last line, seconds) for ``tests`` on ``root``, cold."""
    shutil.rmtree(caches, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=str(root), NUMBA_CACHE_DIR=str(caches / "numba"),
               ASGDBENCH_CACHE_DIR=str(caches / "asgdbench"))
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
               "--timeout", str(int(timeout_s)), *tests]
    begin = time.monotonic()
    try:
        out = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True,
                             timeout=timeout_s + 15, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False, f"hung (killed after {timeout_s + 15:.0f} s)", time.monotonic() - begin
    seconds = time.monotonic() - begin
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    if out.returncode == 5:
        raise SystemExit(f"no test selected by {tests}: a killer's node id is stale")
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))
              or "Timeout" in line or "Fatal Python error" in line]
    summary = (failed[0] if failed else lines[-1] if lines else "(no output)")[:150]
    if out.returncode < 0:
        summary = f"crashed (signal {-out.returncode}) {summary}"[:150]
    return out.returncode == 0, summary, seconds


def rotated(mutations: list[Mutation], day: int) -> list[Mutation]:
    """The list started ``CI_STEP`` further on each day, so that CI's subsets cover all of it."""
    start = (day * CI_STEP) % len(mutations)
    return mutations[start:] + mutations[:start]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--check-patches", action="store_true",
                        help="only check that every mutation applies to the code")
    parser.add_argument("--only", action="append", default=[], help="run only this mutation")
    parser.add_argument("--subset", choices=["all", "ci"], default="all",
                        help="ci: today's rotation of the list, as much as fits "
                             f"--budget-s (default {CI_BUDGET_S} s)")
    parser.add_argument("--budget-s", type=float, default=CI_BUDGET_S)
    parser.add_argument("--day", type=int, default=datetime.date.today().toordinal(),
                        help="the rotation's day (default: today)")
    args = parser.parse_args()
    # a SIGTERM ends the run like Ctrl-C: the running pytest is killed, the copies removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    by_name = {m.name: m for m in MUTATIONS}
    unknown = [name for name in args.only if name not in by_name]
    if unknown:
        parser.error(f"unknown mutation {', '.join(unknown)} (see --list)")
    if args.list:
        for m in MUTATIONS:
            tag = "  [equivalent]" if m.equivalent else ""
            print(f"{m.name:36} {m.path.split('/')[-1]:10} {m.why}{tag}")
            for killer in m.killers:
                print(f"{'':36} {'':10}   {killer}")
        return 0
    chosen = [by_name[name] for name in args.only] if args.only else list(MUTATIONS)
    if args.subset == "ci" and not args.only:
        chosen = rotated(chosen, args.day)
    begin = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="asgdbench-mutants-") as tmp:
        workdir = Path(tmp)
        pristine = make_copy(workdir)  # one snapshot: edits made meanwhile do not leak in
        for mutation in MUTATIONS:  # every patch applies: a stale list fails at once
            scratch = workdir / "scratch"
            shutil.rmtree(scratch, ignore_errors=True)
            shutil.copytree(pristine / "asgdbench", scratch / "asgdbench")
            apply(scratch, mutation)
        if args.check_patches:
            print(f"all {len(MUTATIONS)} mutations apply")
            return 0
        baselines: dict[tuple[str, ...], float] = {}
        results = []  # (mutation, killed, summary)
        for mutation in chosen:
            spent = time.monotonic() - begin
            known = baselines.get(mutation.killers)
            estimate = (known or 30.0) * (1 if known else 2)
            if args.subset == "ci" and results and spent + estimate > args.budget_s:
                break
            if known is None:  # the baseline: unpatched, cold, timed
                passed, summary, seconds = run_tests(pristine, workdir / "caches", mutation.killers,
                                                     BASELINE_TIMEOUT_S)
                print(f"{'(unpatched)':36} {'passes' if passed else 'FAILS':8} {seconds:5.0f} s  "
                      f"{' '.join(k.split('::')[-1] for k in mutation.killers)[:90]}", flush=True)
                if not passed:
                    print(f"the unpatched code fails {mutation.killers}: {summary}")
                    return 1
                baselines[mutation.killers] = seconds
            root = workdir / "mutant"
            shutil.rmtree(root, ignore_errors=True)
            shutil.copytree(pristine, root)
            apply(root, mutation)
            timeout = TIMEOUT_FACTOR * baselines[mutation.killers] + TIMEOUT_MARGIN_S
            passed, summary, seconds = run_tests(root, workdir / "caches", mutation.killers, timeout)
            verdict = "SURVIVED" if passed else "killed"
            if mutation.equivalent:
                verdict = "survived (equivalent)" if passed else "KILLED (equivalent?)"
            print(f"{mutation.name:36} {verdict:8} {seconds:5.0f} s  {summary}", flush=True)
            results.append((mutation, not passed, summary))
        real = [(m, killed) for m, killed, _ in results if not m.equivalent]
        killed = sum(k for _, k in real)
        survivors = [m for m, k in real if not k]
        equivalents = [(m, k) for m, k, _ in results if m.equivalent]
        print(f"\n{killed}/{len(real)} non-equivalent mutations killed"
              f" ({len(results)} of {len(MUTATIONS)} run, {time.monotonic() - begin:.0f} s)")
        for m in survivors:
            print(f"  SURVIVED {m.name}: {m.why}: a missing test")
        for m, k in equivalents:
            state = "killed: not equivalent after all?" if k else "survived, equivalent"
            print(f"  {m.name} {state}: {m.equivalent}")
        return 1 if survivors or any(k for _, k in equivalents) else 0


if __name__ == "__main__":
    sys.exit(main())
