"""Before/after: the same measurements on two versions of the code, interleaved in one run.

    python benchmarks/scripts/ab_compare.py --before HEAD~1            # a git revision
    python benchmarks/scripts/ab_compare.py --before /path/to/old/tree

Each round measures the "before" tree, then the working tree, each in a fresh
process (so each imports its own code, with its own empty numba cache), and the
report gives the median of each figure over the rounds and the after/before
ratio. Interleaving rounds spreads machine noise over both sides equally.

Figures: Leashed-SGD's read + publish step against ``np.copyto`` of the same
vector (one thread, no contention; the steps called from a compiled loop, as a run calls
them), and updates/s of a fixed-budget run on
mlp-digits of every strategy (seq at 1 thread; lock, hogwild, sync at 2; leashed at 1 and 2).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = r'''
import inspect, json, time
import numpy as np
from asgdbench.primitives.protocol import CONTROL_CELLS, MAX_UPDATES
from asgdbench.plugins.strategies import get_strategy
from asgdbench.engine.runner import run

def median_time(fn, repeats=200, inner=20):
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - begin) / inner)
    return float(np.median(times))

leashed = get_strategy("leashed")
n = 134_794
state = leashed.make_state(np.zeros(n, np.float32), 1)
control = np.zeros(CONTROL_CELLS, np.int64); control[MAX_UPDATES] = 1 << 40
grad = np.full(n, 0.5, np.float32); lr = np.float32(1e-3)
takes_control = len(inspect.signature(leashed.read.py_func).parameters) == 3
rule = ()  # before step rules: update takes no rule
if len(inspect.signature(leashed.update.py_func).parameters) == 8:
    from asgdbench.plugins.step_rules import parse_step_spec
    constant = parse_step_spec(None)
    rule = (constant.rule.step, constant.make_state(1))
# the steps are timed from compiled code, as a run makes them: called from Python, each
# kernel call pays the boxing of its arguments (about 1.5 us per read + update for a
# NamedTuple state), which no run pays
from numba import njit

@njit
def steps_with_rule(read, update, state, control, grad, lr, rule, rule_state, count):
    for _ in range(count):
        _, token = read(state, 0, control)
        update(state, 0, token, grad, lr, control, rule, rule_state)

@njit
def steps_with_control(read, update, state, control, grad, lr, count):
    for _ in range(count):
        _, token = read(state, 0, control)
        update(state, 0, token, grad, lr, control)

@njit
def steps_plain(read, update, state, control, grad, lr, count):
    for _ in range(count):
        _, token = read(state, 0)
        update(state, 0, token, grad, lr, control)

INNER = 20
if rule:
    step = lambda: steps_with_rule(leashed.read, leashed.update, state, control, grad, lr,
                                   *rule, INNER)
elif takes_control:
    step = lambda: steps_with_control(leashed.read, leashed.update, state, control, grad, lr,
                                      INNER)
else:
    step = lambda: steps_plain(leashed.read, leashed.update, state, control, grad, lr, INNER)
source, destination = np.ones(n, np.float32), np.empty(n, np.float32)
step()
figures = {"publish_us": median_time(step, inner=1) / INNER * 1e6,
           "copyto_us": median_time(lambda: np.copyto(destination, source)) * 1e6}
for spec, threads in (("seq", 1), ("lock", 2), ("hogwild", 2), ("leashed", 1), ("leashed", 2),
                     ("sync", 2)):
    run("mlp-digits", spec, threads, max_updates=2000, target_loss=None, max_time=None)
    r = run("mlp-digits", spec, threads, max_updates=40_000, target_loss=None, max_time=None)
    figures[f"{spec}x{threads}_updates_per_s"] = r.updates_per_s
print(json.dumps(figures))
'''


def tree_from(before: str, workdir: Path) -> Path:
    """The package tree of ``before``: a folder, or a git revision exported into ``workdir``."""
    if Path(before).is_dir():
        return Path(before)
    target = workdir / "before"
    target.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", before], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def importable(tree: Path, workdir: Path, label: str) -> Path:
    """Lay ``tree`` out as it installs: algorithms/ and workloads/ inside the package."""
    root = workdir / f"import-{label}"
    shutil.copytree(tree / "asgdbench", root / "asgdbench",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for sub in ("algorithms", "workloads"):
        shutil.copytree(tree / sub, root / "asgdbench" / sub,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return root


def measure(root: Path, cache: Path) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(root), NUMBA_CACHE_DIR=str(cache),
               ASGDBENCH_CACHE_DIR=str(cache / "asgdbench"))
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                         check=True, cwd=root)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="HEAD", help="git revision or folder (default: HEAD)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="asgdbench-ab-") as tmp:
        workdir = Path(tmp)
        sides = {"before": importable(tree_from(args.before, workdir), workdir, "before"),
                 "after": importable(REPO, workdir, "after")}
        figures: dict[str, dict[str, list[float]]] = {side: {} for side in sides}
        for round_ in range(args.rounds):
            for side, root in sides.items():
                for name, value in measure(root, workdir / f"cache-{side}").items():
                    figures[side].setdefault(name, []).append(value)
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print(f"{'figure':32} {'before':>12} {'after':>12} {'after/before':>13}")
    for name in figures["before"]:
        before = statistics.median(figures["before"][name])
        after = statistics.median(figures["after"][name])
        print(f"{name:32} {before:12.4g} {after:12.4g} {after / before:13.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
