"""Mutation check of the synchronization code: every listed bug must fail the concurrency tests.

Each mutation is a small source patch that reintroduces a bug someone could
plausibly write (or once wrote) in the lock-free code, the lock, the barrier
or the loss log. For each one this script patches a private copy of the
package, runs the concurrency tests against it with an empty numba cache, and
expects them to fail (a failing test, or a hang caught by the timeout). A
mutation they pass is a missing test.

    python benchmarks/scripts/mutation_check.py            # all mutations
    python benchmarks/scripts/mutation_check.py --list
    python benchmarks/scripts/mutation_check.py --only pin-no-version-check

Exit status 0 when every mutation is killed (and the unpatched copy passes).
The working tree is never modified: the copy lives in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = ["tests/test_leashed.py", "tests/test_barrier.py", "tests/test_worker.py",
         "tests/test_strategies.py", "tests/test_atomics.py", "tests/test_step_rules.py"]
TEST_TIMEOUT_S = 90  # per test: a hang counts as killed
TIMEOUT_S = 900  # the whole run of one mutant


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # inside the package copy
    old: str
    new: str
    why: str


LEASHED = "asgdbench/algorithms/leashed.py"
TAIL = "asgdbench/algorithms/step_rules/tail.py"
MUTATIONS = [
    Mutation("retry-keeps-first-staleness", LEASHED,
             "    attempts = 0\n    while True:\n        base = pin_latest(state, tid, control)\n        if base == NOT_PINNED:\n            return STOP, 0, attempts, lr\n        base_slot = base & SLOT_MASK\n        base_version = base >> SLOT_BITS\n        if base_version >= limit:\n            unpin(state, base_slot, 1)\n            return STOP, 0, attempts, lr\n        staleness = base_version - token  # against this attempt's base\n        step = rule_step(rule, rule_state, lr, staleness, tid)\n",
             '    attempts = 0\n    first_staleness = -1\n    while True:\n        base = pin_latest(state, tid, control)\n        if base == NOT_PINNED:\n            return STOP, 0, attempts, lr\n        base_slot = base & SLOT_MASK\n        base_version = base >> SLOT_BITS\n        if base_version >= limit:\n            unpin(state, base_slot, 1)\n            return STOP, 0, attempts, lr\n        if first_staleness < 0:\n            first_staleness = base_version - token\n        staleness = first_staleness\n        step = rule_step(rule, rule_state, lr, staleness, tid)\n',
             "a CAS retry reuses the first attempt's staleness (and so its step)"),
    Mutation("tail-ready-before-cdf", TAIL,
             "            build_cdf(histogram, cdf)  # every sample is in: the others' adds came first\n"
             "            store(shared, READY, 1, \"release\")\n",
             "            store(shared, READY, 1, \"release\")\n"
             "            build_cdf(histogram, cdf)\n",
             "TAIL publishes READY before F is built: a reader may use a half-built CDF"),
    Mutation("tail-builder-is-last-number", TAIL,
             "        if fetch_add(shared, SAMPLED, 1) == limits[LAST_CALL] - limits[FIRST_CALL]:\n",
             "        fetch_add(shared, SAMPLED, 1)\n        if call == limits[LAST_CALL]:\n",
             "TAIL builds F on the window's last call number, while an earlier claimed sample "
             "may still be on its way (the authors' order)"),
    Mutation("tail-one-sided-clamp", TAIL,
             "    tau = min(max(staleness, 0), limits[MAX_STALENESS])",
             "    tau = min(staleness, limits[MAX_STALENESS])",
             "a negative τ indexes before TAIL's histogram"),
    Mutation("pin-no-version-check", LEASHED,
             "if ref >> COUNT_BITS == word >> SLOT_BITS and ref & COUNT_MASK != 0:",
             "if ref & COUNT_MASK != 0:",
             "a pin accepts any live slot that latest once named"),
    Mutation("pin-no-count-check", LEASHED,
             "if ref >> COUNT_BITS == word >> SLOT_BITS and ref & COUNT_MASK != 0:",
             "if ref >> COUNT_BITS == word >> SLOT_BITS:",
             "a pin revives a slot whose count reached 0 (already free)"),
    Mutation("pin-blind-fetch-add", LEASHED,
             "            if cas(refs, slot * LINE, ref, ref + 1) == ref:",
             "            if fetch_add(refs, slot * LINE, 1) >= 0:",
             "a pin increments the count without checking what it increments"),
    Mutation("pin-no-recheck", LEASHED,
             "                if load(latest, 0, \"acquire\") == word:",
             "                if True:",
             "a pin keeps a vector latest no longer names"),
    Mutation("take-spare-after-pin", LEASHED,
             "    spare = take_spare(state, tid, control)  # before the pin: invariant (I)\n"
             "    if spare == NO_SLOT:\n        return STOP, 0, 0, lr\n",
             "",
             "the spare is taken after the base is pinned (breaks invariant I)"),
    Mutation("original-pin-then-take", LEASHED,
             "                if load(latest, 0, \"acquire\") == word:",
             "                if True:",
             "the code before issue 7: no re-check and (with take-spare-after-pin) late take"),
    Mutation("free-list-no-aba-tag", LEASHED,
             "desired = (((top >> SLOT_BITS) + 1) << SLOT_BITS) | (after + 1)",
             "desired = after + 1",
             "the free-list head carries no tag: ABA on pop (push's tag removed too)"),
    Mutation("publish-without-cas", LEASHED,
             "        if cas(latest, 0, base, pack(base_version + 1, spare)) == base:",
             "        store(latest, 0, pack(base_version + 1, spare), \"seq_cst\")\n        if True:",
             "publish overwrites latest without checking it is still the base"),
    Mutation("unpin-skipped-on-lost-race", LEASHED,
             "        unpin(state, base_slot, 1)\n        if persistence != NEVER_GIVE_UP",
             "        if persistence != NEVER_GIVE_UP",
             "a failed attempt keeps its pin on the base: vectors leak"),
    Mutation("unpin-once-on-publish", LEASHED,
             "unpin(state, base_slot, 2)",
             "unpin(state, base_slot, 1)",
             "publish forgets to drop latest's reference to the old vector"),
    Mutation("no-budget-check", LEASHED,
             "        if base_version >= limit:",
             "        if False:",
             "leashed publishes past the update budget"),
    Mutation("persistence-off-by-one", LEASHED,
             "attempts > persistence:",
             "attempts > persistence + 1:",
             "one more retry than tp allows"),
    Mutation("pin-ignores-stop", LEASHED,
             "        if load(control, STOP_FLAG, \"monotonic\") != 0:\n            return NOT_PINNED",
             "        if False:\n            return NOT_PINNED",
             "a pin that cannot succeed spins forever"),
    Mutation("barrier-blind-withdrawal", "asgdbench/engine/barrier.py",
             "            if cas(barrier, index, word, word - 1) == word:\n                return False",
             "            cas(barrier, index, load(barrier, index, \"seq_cst\"),"
             " load(barrier, index, \"seq_cst\") - 1)\n            return False",
             "a stopping waiter withdraws even from a barrier that opened"),
    Mutation("lock-update-unlocked", "asgdbench/algorithms/lock.py",
             "    if mutex_lock(mutex) != 0:\n        store(control, ERROR, 1, \"seq_cst\")\n"
             "        return STOP, 0, 0, lr\n",
             "",
             "the lock-based update takes no lock (and its unlock frees another thread's)"),
    Mutation("log-commit-without-claim", "asgdbench/engine/worker.py",
             "    while True:  # claim the slot: from an older, finished entry to \"entry is being written\"",
             "    while False:",
             "a log writer writes its slot without claiming it: lapped writers overwrite newer entries"),
    Mutation("monitor-no-recheck", "asgdbench/engine/monitor.py",
             "        if load(sequence, slot, \"monotonic\") != entry + 1:  # rewritten while read: torn",
             "        if False:",
             "the monitor uses an entry rewritten while it read it (torn)"),
    Mutation("start-wait-ignores-stop", "asgdbench/engine/worker.py",
             "    while load(control, GO, \"acquire\") == 0 and load(control, STOP_FLAG, \"acquire\") == 0:",
             "    while load(control, GO, \"acquire\") == 0:",
             "a worker waiting at the start barrier never sees a run stopped before it opened"),
    Mutation("read-pin-never-dropped", LEASHED,
             "    if held != NO_SLOT:  # done computing on the read vector",
             "    if False:",
             "the read vector is never unpinned: the pool runs out (the ERROR cell)"),
]
# Mutations applied together with others (the second half of one bug), not run alone.
PARTS = [
    Mutation("push-no-aba-tag", LEASHED,
             "desired = (((top >> SLOT_BITS) + 1) << SLOT_BITS) | (slot + 1)",
             "desired = slot + 1", "push without the tag"),
]
COMBINED = {"original-pin-then-take": ["take-spare-after-pin"],
            "free-list-no-aba-tag": ["push-no-aba-tag"]}


def apply(root: Path, mutation: Mutation) -> None:
    path = root / mutation.path
    text = path.read_text()
    if text.count(mutation.old) < 1:
        raise SystemExit(f"mutation {mutation.name}: its source text is not in {mutation.path}; "
                         "update the mutation list to the code")
    text = text.replace(mutation.old, mutation.new, 1)
    path.write_text(text)
    if mutation.name == "take-spare-after-pin":  # and take it right after the pin instead
        text = path.read_text().replace(
            "        base_slot = base & SLOT_MASK\n",
            "        base_slot = base & SLOT_MASK\n"
            "        spare = take_spare(state, tid, control)\n"
            "        if spare == NO_SLOT:\n            unpin(state, base_slot, 1)\n"
            "            return STOP, 0, attempts\n", 1)
        path.write_text(text)


def make_copy(workdir: Path) -> Path:
    """The package laid out as it installs (asgdbench.algorithms, asgdbench.workloads), plus tests."""
    root = workdir / "tree"
    shutil.copytree(REPO / "asgdbench", root / "asgdbench",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "algorithms", root / "asgdbench" / "algorithms",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "workloads", root / "asgdbench" / "workloads",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "tests", root / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    # pytest's settings; tests run the README's plugin and CONTRIBUTING's example rule
    for name in ("pyproject.toml", "README.md", "CONTRIBUTING.md"):
        shutil.copy(REPO / name, root / name)
    return root


def run_tests(root: Path, workdir: Path, label: str) -> tuple[bool, str, float]:
    """(passed, last line of pytest's output, seconds) for the concurrency tests on ``root``."""
    cache = workdir / f"numba-cache-{label}"
    env = dict(os.environ, PYTHONPATH=str(root), NUMBA_CACHE_DIR=str(cache))
    begin = time.monotonic()
    try:
        out = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                              "-m", "not slow", "--timeout", str(TEST_TIMEOUT_S), *TESTS],
                             cwd=root, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return False, f"hung (killed after {TIMEOUT_S} s)", time.monotonic() - begin
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))
              or "Timeout" in line or " failed" in line]
    summary = (failed[0] if failed else lines[-1])[:160] if lines else "(no output)"
    return out.returncode == 0, summary, time.monotonic() - begin


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--only", action="append", default=[], help="run only this mutation")
    args = parser.parse_args()
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:30} {m.why}")
        return 0
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    by_name = {m.name: m for m in MUTATIONS + PARTS}
    with tempfile.TemporaryDirectory(prefix="asgdbench-mutants-") as tmp:
        workdir = Path(tmp)
        pristine = make_copy(workdir)  # one snapshot: edits made meanwhile do not leak in
        root = workdir / "mutant"
        shutil.copytree(pristine, root)
        passed, summary, seconds = run_tests(root, workdir, "baseline")
        print(f"{'(unpatched)':30} {'passes' if passed else 'FAILS'}  {seconds:5.0f} s  {summary}",
              flush=True)
        if not passed:
            print("the unpatched code fails the tests: fix that first")
            return 1
        survivors = []
        for mutation in chosen:
            shutil.rmtree(root)
            shutil.copytree(pristine, root)
            for extra in COMBINED.get(mutation.name, []):
                apply(root, by_name[extra])
            apply(root, mutation)
            passed, summary, seconds = run_tests(root, workdir, mutation.name)
            verdict = "SURVIVED" if passed else "killed"
            print(f"{mutation.name:30} {verdict:8} {seconds:5.0f} s  {summary}", flush=True)
            if passed:
                survivors.append(mutation.name)
        killed = len(chosen) - len(survivors)
        print(f"\n{killed}/{len(chosen)} mutations killed"
              + (f"; survivors: {', '.join(survivors)}" if survivors else ""))
        return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
