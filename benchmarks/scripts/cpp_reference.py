"""Time the authors' C++ framework's gradient step on this machine, in the same run.

    python benchmarks/scripts/cpp_reference.py PATH_TO_CHECKOUT [--network cnn] [--batch 128]
                                               [--repeats 50] [--cxxflags "-march=native"]

The paper's figures (C++ cnn step 5.8 ms at batch 128, MLP update 0.52 ms at batch 16) were
measured on another machine, so a ratio against them says more about the two machines than
about asgdbench. This module builds our driver ``benchmarks/cpp/minidnn_step.cpp`` against a
checkout of ``dcs-chalmers/shared-memory-sgd`` (its header-only MiniDNN + Eigen) that the user
supplies outside this repository, with the framework's own compiler flags, and runs it.
The driver times steps internally, so no process start-up is in any figure.

``step_ms`` is the one-shot measurement; ``CppStepper`` keeps one driver process open and runs
a step per call, for interleaving with Python contenders (``cnn_speed.py --cpp-framework``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

DRIVER = Path(__file__).resolve().parents[1] / "cpp" / "minidnn_step.cpp"
NETWORKS = ("mlp", "cnn", "lenet")
# The framework's CMakeLists.txt: CMAKE_CXX_STANDARD 14 (gnu++14 with CMake's default
# extensions), CMAKE_CXX_FLAGS "-g -O3 -fopenmp", and build.sh configures CMAKE_BUILD_TYPE=Debug,
# which adds "-g" and no -DNDEBUG (Eigen's assertions stay on); no -march. Link: pthread.
FRAMEWORK_FLAGS = ("-std=gnu++14", "-g", "-O3", "-fopenmp")
EIGEN_DIRS = ("/usr/include/eigen3", "/usr/local/include/eigen3", "/usr/local/include")


class CppReferenceError(RuntimeError):
    """The C++ reference cannot be built or run here (missing compiler, Eigen or headers)."""


def cache_dir() -> Path:
    """Where built drivers go: outside the repository, reused while nothing changed."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "asgdbench" / "cpp"


def _eigen_include() -> str:
    """Eigen's include dir: pkg-config if it knows, else the usual places."""
    try:
        flags = subprocess.run(["pkg-config", "--cflags-only-I", "eigen3"], capture_output=True,
                               text=True, check=True).stdout.split()
        for flag in flags:
            if Path(flag[2:], "Eigen", "Core").is_file():
                return flag[2:]
    except (OSError, subprocess.CalledProcessError):
        pass
    for candidate in EIGEN_DIRS:
        if Path(candidate, "Eigen", "Core").is_file():
            return candidate
    raise CppReferenceError("Eigen 3 not found (apt-get install libeigen3-dev, "
                            "or set CPATH to a directory holding Eigen/Core)")


def build(framework_dir: str | os.PathLike[str], extra_flags: Sequence[str] = (),
          cxx: str | None = None) -> Path:
    """Compile the driver against ``framework_dir/include`` with the framework's flags (plus
    ``extra_flags``) and return the binary; cached by the hash of sources and flags, so a
    benchmark pays the ~30 s compile once."""
    include = Path(framework_dir).expanduser().resolve() / "include"
    headers = include / "minidnn"
    if not (headers / "NetworkTopology.h").is_file():
        raise CppReferenceError(f"no MiniDNN headers at {headers} (expected a checkout of "
                                "dcs-chalmers/shared-memory-sgd)")
    compiler = cxx or os.environ.get("CXX") or "g++"
    if shutil.which(compiler) is None:
        raise CppReferenceError(f"C++ compiler {compiler!r} not found (apt-get install g++)")
    flags = [*FRAMEWORK_FLAGS, *extra_flags]
    includes = [f"-I{_eigen_include()}", f"-I{include}", f"-I{headers}"]
    digest = hashlib.sha256()
    for part in (compiler, *flags, *includes):
        digest.update(part.encode() + b"\0")
    for source in [DRIVER, *sorted(headers.rglob("*.h"))]:
        digest.update(source.read_bytes())
    binary = cache_dir() / f"minidnn_step-{digest.hexdigest()[:16]}"
    if binary.is_file():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_suffix(f".{os.getpid()}.tmp")
    command = [compiler, *flags, *includes, str(DRIVER), "-o", str(partial), "-lpthread"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        first = next((line for line in done.stderr.splitlines() if "error" in line),
                     done.stderr.strip()[:300])
        raise CppReferenceError(f"compiling the driver failed: {first}\n  {shlex.join(command)}")
    partial.replace(binary)
    return binary


def step_ms(binary: str | os.PathLike[str], network: str, batch: int,
            repeats: int = 50) -> dict[str, Any]:
    """Run ``repeats`` steps (after a warm-up) in one driver process; return its JSON line.

    ``median_ms``/``min_ms``: forward + backprop (the gradient); ``step_median_ms``/
    ``step_min_ms``: + loss + the framework's component-wise SGDM update, i.e. one whole
    ``run_training`` iteration (what an MLP "update" costs)."""
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {NETWORKS}, not {network!r}")
    try:
        done = subprocess.run([str(binary), network, str(batch), str(repeats)],
                              capture_output=True, text=True)
    except OSError as error:
        raise CppReferenceError(f"cannot run the driver {binary}: {error}") from None
    if done.returncode != 0:
        raise CppReferenceError(f"the driver ({network}, batch {batch}) exited with "
                                f"{done.returncode}: {_last_line(done.stderr)}")
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise CppReferenceError(f"the driver ({network}, batch {batch}) printed no result: "
                                f"{_last_line(done.stderr)}") from None


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(nothing on stderr)"


class CppStepper:
    """One driver process kept open: each ``run(n)`` runs n steps and returns their times as
    the driver measured them, so Python can interleave C++ steps with its own contenders
    without the pipe or the process start in any figure."""

    def __init__(self, binary: str | os.PathLike[str], network: str, batch: int) -> None:
        if network not in NETWORKS:
            raise ValueError(f"network must be one of {NETWORKS}, not {network!r}")
        self.process = subprocess.Popen([str(binary), network, str(batch), "--serve"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.samples: dict[str, list[float]] = {"grad_ms": [], "step_ms": [], "grad_cpu_ms": []}

    def run(self, n: int = 1, record: bool = True) -> dict[str, list[float]]:
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(f"{n}\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except OSError:  # a broken pipe: the driver is gone
            line = ""
        if not line:
            raise CppReferenceError(f"the driver exited with {self.process.wait(timeout=30)}")
        try:
            times: dict[str, list[float]] = json.loads(line)
        except ValueError:
            raise CppReferenceError(f"the driver printed {line.strip()[:200]!r}") from None
        if record:
            for key, values in times.items():
                self.samples[key].extend(values)
        return times

    def median_ms(self, key: str = "grad_ms") -> float:
        if not self.samples[key]:
            raise CppReferenceError("no C++ step was timed")
        return statistics.median(self.samples[key])

    def close(self) -> None:
        """End the driver: it exits when its input closes; one that does not is killed."""
        if self.process.poll() is not None:
            return
        assert self.process.stdin is not None
        try:
            self.process.stdin.close()
            self.process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> CppStepper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def add_cli_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--cpp-framework PATH`` and ``--cpp-cxxflags``, for a benchmark that can add the C++
    framework as a contender (``what`` says what it times)."""
    parser.add_argument("--cpp-framework", metavar="PATH",
                        help="a checkout of the authors' C++ framework (dcs-chalmers/"
                             f"shared-memory-sgd): also time {what} on this machine")
    parser.add_argument("--cpp-cxxflags", default="", metavar="FLAGS",
                        help="added to the framework's own flags, e.g. '-march=native -DNDEBUG'")


def framework_flags(extra: Sequence[str] = ()) -> str:
    """The full compiler flags a build uses: the framework's own, then ``extra``."""
    return " ".join([*FRAMEWORK_FLAGS, *extra])


def build_from_cli(parser: argparse.ArgumentParser,
                   args: argparse.Namespace) -> tuple[str | None, str]:
    """The driver the options of :func:`add_cli_options` ask for (None without
    ``--cpp-framework``) and its full flags; a build that cannot be made exits 2 with one line."""
    extra = shlex.split(args.cpp_cxxflags)
    flags = framework_flags(extra)
    if not args.cpp_framework:
        return None, flags
    try:
        return str(build(args.cpp_framework, extra)), flags
    except CppReferenceError as error:
        parser.exit(2, f"{parser.prog}: --cpp-framework: {error}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("framework", help="a checkout of dcs-chalmers/shared-memory-sgd")
    parser.add_argument("--network", choices=NETWORKS, default="cnn")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--cxxflags", default="",
                        help="added after the framework's flags, e.g. '-march=native -DNDEBUG'")
    args = parser.parse_args(argv)
    try:
        binary = build(args.framework, shlex.split(args.cxxflags))
        result = step_ms(binary, args.network, args.batch, args.repeats)
    except CppReferenceError as error:
        print(f"cpp_reference: {error}", file=sys.stderr)
        return 2
    result["flags"] = framework_flags(shlex.split(args.cxxflags))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
