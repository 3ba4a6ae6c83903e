"""How long a new process takes: the compile cache's targets (issue 21), each a whole process.

    python benchmarks/scripts/startup_time.py                 # warm figures (5 repeats)
    python benchmarks/scripts/startup_time.py --cold          # + cold first runs
    python benchmarks/scripts/startup_time.py --cold --fresh-venv   # cold in a new virtualenv
    python benchmarks/scripts/startup_time.py --suite         # + the default test suite, warm and cold
    python benchmarks/scripts/startup_time.py --before REV    # + the same warm figures of REV

Every figure is the wall time of a whole process (``subprocess.run``), measured several
times; the script prints the median, min and max, and the target where there is one:

- ``import asgdbench.study.cli`` and ``asgdbench --version``, against ``python -c pass``;
- warm: ``asgdbench run --workload mlp-digits --strategy lock --threads 2 --max-updates 2000
  --target-loss none`` after one priming run with the same caches (target <= 1.5 s);
- cold (``--cold``): the first ``asgdbench run`` of mlp-digits (<= 30 s) and of cnn-mnist
  (<= 45 s, needs MNIST in $ASGDBENCH_DATA) with every cache empty: a temporary
  ASGDBENCH_CACHE_DIR and NUMBA_CACHE_DIR, so neither the worker loop nor any kernel numba
  caches is found (what a fresh install sees). ``--fresh-venv`` instead installs the package
  (not editable) into a new virtualenv first, outside the clock, and times its first runs;
- ``--suite``: ``pytest -q`` (the default suite, ``-m 'not slow'``) with the caches as they
  are (warm: <= 4 min on 2 cores), then with empty ones (cold: <= 7 min).

With ``--before REV`` (a git revision or a folder, laid out as ``ab_compare.py`` does) the
warm figures are also taken for that version of the code, interleaved with this one's, and
printed with their ratio: on a loaded machine only such same-run ratios mean anything.
Timings on a loaded machine are not comparable with the targets; run it on a quiet one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUN = ["run", "--workload", "mlp-digits", "--strategy", "lock", "--threads", "2",
       "--max-updates", "2000", "--target-loss", "none"]
CNN_RUN = ["run", "--workload", "cnn-mnist", "--strategy", "lock", "--threads", "2",
           "--max-updates", "200", "--target-loss", "none"]


def wall(command: list[str], env: dict[str, str] | None = None, timeout: float = 1800,
         cwd: Path | None = None) -> float:
    """Seconds one process takes from start to exit; fails loudly if it fails.

    It runs outside the repository (unless ``cwd``), so that ``python -m`` imports the
    installed code, or the ``--before`` tree on ``PYTHONPATH``, not the folder it sits in.
    """
    begin = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=cwd or tempfile.gettempdir())
    seconds = time.perf_counter() - begin
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return seconds


def show(name: str, times: list[float], target: float | None = None) -> None:
    verdict = "" if target is None else (
        f"  target <= {target:g} s: {'met' if statistics.median(times) <= target else 'MISSED'}")
    print(f"{name:44} median {statistics.median(times):7.2f} s  min {min(times):7.2f}  "
          f"max {max(times):7.2f}  (n={len(times)}){verdict}", flush=True)


def warm(python: str, repeats: int, env: dict[str, str], before: dict[str, str] | None) -> None:
    """The warm figures; with ``before`` (its environment), that code's too, interleaved."""
    cli = [python, "-m", "asgdbench"]
    figures = (("python -c pass", [python, "-c", "pass"], None),
               ("import asgdbench.study.cli", [python, "-c", "import asgdbench.study.cli"], 0.3),
               ("asgdbench --version", [*cli, "--version"], None),
               ("asgdbench list", [*cli, "list"], None),
               ("warm: asgdbench run mlp-digits lock x2", [*cli, *RUN], 1.5))
    sides = {"": env} if before is None else {"before: ": before, "": env}
    for side_env in sides.values():
        wall([*cli, *RUN], side_env)  # primes the caches, if this is the first run here
    for name, command, target in figures:
        times: dict[str, list[float]] = {side: [] for side in sides}
        for _ in range(repeats):
            for side, side_env in sides.items():
                times[side].append(wall(command, side_env))
        for side in sides:
            show(f"{side}{name}", times[side], target if not side else None)
        if before is not None:
            print(f"{'':44} after/before: "
                  f"{statistics.median(times['']) / statistics.median(times['before: ']):.2f}")


def cold(python: str, repeats: int, env: dict[str, str]) -> None:
    cli = [python, "-m", "asgdbench"]
    for name, command, target in (("mlp-digits", RUN, 30.0), ("cnn-mnist", CNN_RUN, 45.0)):
        times = []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory(prefix="asgdbench-cold-") as empty:
                cold_env = dict(env, ASGDBENCH_CACHE_DIR=f"{empty}/loops",
                                NUMBA_CACHE_DIR=f"{empty}/numba")
                try:
                    times.append(wall([*cli, *command], cold_env))
                except SystemExit as error:
                    print(f"cold: {name}: skipped ({str(error).splitlines()[-1]})")
                    break
        if times:
            show(f"cold: first asgdbench run {name}", times, target)


def fresh_venv(workdir: Path) -> str:
    """A new virtualenv with the package installed from this tree (not editable)."""
    venv = workdir / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", str(REPO)], check=True)
    return python


def suite(python: str, env: dict[str, str]) -> None:
    command = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    show("test suite, caches as they are (warm)", [wall(command, env, 3600, REPO)], 240)
    with tempfile.TemporaryDirectory(prefix="asgdbench-cold-") as empty:
        cold_env = dict(env, ASGDBENCH_CACHE_DIR=f"{empty}/loops", NUMBA_CACHE_DIR=f"{empty}/numba")
        show("test suite, empty caches (cold)", [wall(command, cold_env, 3600, REPO)], 420)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="also time cold first runs")
    parser.add_argument("--cold-repeats", type=int, default=2)
    parser.add_argument("--fresh-venv", action="store_true",
                        help="cold runs in a new virtualenv (pip installs the tree first)")
    parser.add_argument("--suite", action="store_true", help="also time the default test suite")
    parser.add_argument("--before", metavar="REV",
                        help="also time the warm figures of this git revision or folder")
    args = parser.parse_args()
    env = dict(os.environ)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start")
    with tempfile.TemporaryDirectory(prefix="asgdbench-before-") as workdir:
        before = None
        if args.before:
            sys.path.insert(0, str(Path(__file__).parent))
            from ab_compare import importable, tree_from

            root = importable(tree_from(args.before, Path(workdir)), Path(workdir), "before")
            before = dict(env, PYTHONPATH=str(root))
        warm(sys.executable, args.repeats, env, before)
    if args.cold:
        if args.fresh_venv:
            with tempfile.TemporaryDirectory(prefix="asgdbench-venv-") as workdir:
                cold(fresh_venv(Path(workdir)), args.cold_repeats, env)
        else:
            cold(sys.executable, args.cold_repeats, env)
    if args.suite:
        suite(sys.executable, env)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
