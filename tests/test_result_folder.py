"""A result folder under faults: a second writer, duplicated runs, SIGKILL, Ctrl-C, a full disk.

What a user who leaves sweeps running overnight relies on: one process writes a
folder at a time (the second is refused, naming the first; a killed writer's
lock is not left behind), a run found twice counts once, a process killed at any
moment loses no run it had finished and leaves a folder that reads and resumes, a
Ctrl-C while a run is being saved waits until its line is whole,
and a disk that fills up stops the grid with one line, keeping every run saved.
Grids are tiny: a few hundred updates of mlp-digits per run.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import in_process, key_of, read_runs

from asgdbench.study.result_folder import (
    LOCK_FILE,
    FolderInUse,
    ResultNotSaved,
    ResultStore,
    WriterLock,
)

QUICK = ["--target-loss", "none", "--max-updates", "200", "--max-time", "30"]
GRID = ["compare", "--strategies", "seq,lock", "--threads", "1", "--repeats", "2", *QUICK]
"""Four runs: seq and lock at 1 thread, seeds 0 and 1."""


def start(*args: str | Path, cwd: Path, env: dict | None = None,
          stderr: Path | None = None) -> subprocess.Popen:
    """``python -m asgdbench ARGS`` in the background; stderr to a file if given."""
    return subprocess.Popen([sys.executable, "-m", "asgdbench", *map(str, args)], cwd=cwd,
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL if stderr is None else stderr.open("w"))


def assert_one_error_line(stderr: str, code: int, expected: int, *fragments: str) -> str:
    """Exit ``expected``; the last line of stderr is the one error line and names the fragments."""
    assert code == expected, stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if "asgdbench: error:" in line]
    assert len(errors) == 1, stderr
    assert stderr.splitlines()[-1].startswith("asgdbench: error: ")
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def wait_for(condition, what: str, process: subprocess.Popen | None = None,
             timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process is None or process.poll() is None, f"process ended before {what}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def four_runs(tmp_path_factory) -> Path:
    """A finished folder of GRID, made in this process (the tests copy it)."""
    out = tmp_path_factory.mktemp("grid") / "results"
    from asgdbench.study.cli import main
    assert main([*GRID, "--out", str(out)]) == 0
    return out


def copy_of(folder: Path, tmp_path: Path) -> Path:
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    return copy


# -- one writer per folder -----------------------------------------------------------------

def test_every_writing_command_is_refused_while_another_writes_and_report_still_reads(
        four_runs, tmp_path, capsys):
    out = copy_of(four_runs, tmp_path)
    before = (out / "runs.jsonl").read_bytes()
    with ResultStore.open_for_writing(out, append=True):  # this process is the writer
        for command in ([*GRID, "--out", out, "--resume"],
                        ["run", "--strategy", "seq", "--threads", "1", *QUICK, "--out", out],
                        ["reproduce", "--claims", "1", "--workloads", "mlp-digits", "--out", out,
                         "--resume"]):
            refused = in_process(capsys, *command)
            line = assert_one_error_line(refused.stderr, refused.returncode, 2,
                                         f"{out} is in use by pid {os.getpid()}", "one writer")
            assert re.search(r"started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", line)
        reported = in_process(capsys, "report", out, "--columns", "runs")
        assert reported.returncode == 0, reported.stderr
        assert "asgdbench: " not in reported.stderr  # no warning: the folder is whole
    assert (out / "runs.jsonl").read_bytes() == before
    assert not (out / LOCK_FILE).exists()  # released and removed with the writer
    resumed = in_process(capsys, *GRID, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "0 of 4 runs to do" in resumed.stderr


def test_a_killed_writer_leaves_no_lock_behind(tmp_path):
    out = tmp_path / "results"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from asgdbench.study.result_folder import ResultStore\n"
         "store = ResultStore.open_for_writing(sys.argv[1], append=True)\n"
         "print('locked', flush=True)\n"
         "time.sleep(300)\n", str(out)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(FolderInUse, match=f"in use by pid {holder.pid} on "):
            ResultStore.open_for_writing(out, append=True)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert (out / LOCK_FILE).exists()  # SIGKILL left the file, but the kernel dropped the lock
    with ResultStore.open_for_writing(out, append=True) as store:
        assert json.loads((out / LOCK_FILE).read_text())["pid"] == os.getpid()
        with pytest.raises(FolderInUse):
            ResultStore.open_for_writing(out, append=True)
    assert not store.folder.joinpath(LOCK_FILE).exists()


def test_a_writer_that_locked_a_lock_file_removed_meanwhile_tries_again(tmp_path,
                                                                        monkeypatch):
    """Replay: the holder releases (and removes the file) between our open and our flock."""
    holder, real_flock = WriterLock.acquire(tmp_path), fcntl.flock

    def flock_once_the_holder_left(descriptor: int, operation: int) -> None:
        monkeypatch.setattr(fcntl, "flock", real_flock)
        holder.release()
        real_flock(descriptor, operation)

    monkeypatch.setattr(fcntl, "flock", flock_once_the_holder_left)
    second = WriterLock.acquire(tmp_path)
    assert fcntl.flock is real_flock  # the replay happened
    try:  # it holds the file at the path, not the removed one
        assert os.path.samestat(os.fstat(second._descriptor), os.stat(tmp_path / LOCK_FILE))
        with pytest.raises(FolderInUse):
            WriterLock.acquire(tmp_path)
    finally:
        second.release()


def test_a_writer_arriving_while_the_holder_releases_never_makes_two_holders(tmp_path,
                                                                             monkeypatch):
    """Replay: a second writer comes at the moment the holder removes its lock file."""
    holder, real_unlink, arrivals = WriterLock.acquire(tmp_path), Path.unlink, []

    def unlink(path: Path, missing_ok: bool = False) -> None:
        if path.name == LOCK_FILE and not arrivals:
            try:
                arrivals.append(WriterLock.acquire(tmp_path))
            except FolderInUse:
                arrivals.append(None)
        real_unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    holder.release()
    monkeypatch.undo()
    [arrived] = arrivals
    try:
        third = WriterLock.acquire(tmp_path)
    except FolderInUse:
        third = None
    assert (arrived is None) != (third is None), "two writers, or none, hold the folder"
    for lock in (arrived, third):
        if lock is not None:
            lock.release()


def test_a_file_system_without_locks_gets_a_warning_not_a_crash(tmp_path, capsys,
                                                                monkeypatch):
    def no_locks_here(descriptor: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks_here)
    ran = in_process(capsys, "run", "--strategy", "seq", "--threads", "1", *QUICK,
                     "--out", tmp_path)
    assert ran.returncode == 0, ran.stderr
    [warning] = ran.stderr.splitlines()
    assert warning.startswith(f"asgdbench: warning: cannot lock {tmp_path} (No locks")
    assert "takes no locks" in warning
    assert len(read_runs(tmp_path)) == 1 and not (tmp_path / LOCK_FILE).exists()


def test_two_compares_on_one_folder_run_each_cell_once(tmp_path):
    """The issue's case: the second process is refused, not run alongside the first."""
    out = tmp_path / "results"
    # each append of the first grid pauses 4 s (the test-only gate), so that it still holds
    # the folder when the second arrives, however fast its warm-cache runs are
    env = {**os.environ, "ASGDBENCH_TEST_APPEND_PAUSE_S": "4"}
    first = start(*GRID, "--out", out, cwd=tmp_path, env=env)
    try:
        wait_for((out / LOCK_FILE).exists, "lock file", first)
        second = subprocess.run([sys.executable, "-m", "asgdbench", *GRID, "--out", str(out),
                                 "--resume"], cwd=tmp_path, capture_output=True, text=True,
                                timeout=120, stdin=subprocess.DEVNULL)
        assert first.poll() is None, "the first grid ended before the second was refused"
        assert_one_error_line(second.stderr, second.returncode, 2,
                              f"in use by pid {first.pid}", "asgdbench compare")
        assert first.wait(timeout=300) == 0
    finally:
        first.kill()
    keys = [key_of(run) for run in read_runs(out)]
    assert len(keys) == 4 and len(set(keys)) == 4


# -- duplicated runs ---------------------------------------------------------------------

def test_a_run_found_twice_counts_once_and_report_names_it(four_runs, tmp_path, capsys):
    clean = in_process(capsys, "report", four_runs, "--wide")
    out = copy_of(four_runs, tmp_path)
    lines = (out / "runs.jsonl").read_text().splitlines(keepends=True)
    copy = json.loads(lines[0])
    copy["updates_per_s"], copy["final_loss"] = 1.0, 9.0  # a copy measured elsewhere
    (out / "runs.jsonl").write_text("".join(lines) + json.dumps(copy) + "\n" + lines[2])

    reported = in_process(capsys, "report", out, "--wide")
    assert reported.returncode == 0, reported.stderr
    [warning] = reported.stderr.splitlines()
    assert "2 run(s) more than once" in warning and "never as an extra seed" in warning
    first, third = (json.loads(lines[index]) for index in (0, 2))
    assert f"{first['strategy']} threads=1 lr=0.01 batch=16 seed={first['seed']}" in warning
    assert "(lines 1, 5)" in warning and "(lines 3, 6)" in warning
    # the same table as without the copies
    assert reported.stdout.replace(str(out), "DIR") == clean.stdout.replace(str(four_runs), "DIR")

    store = ResultStore(out)
    loaded = store.load()
    assert [result.config.key() for result in loaded] == [key_of(json.loads(line))
                                                          for line in lines]
    assert loaded[0].final_loss == first["final_loss"] != 9.0  # the first line is the one kept
    resumed = in_process(capsys, *GRID, "--out", out, "--resume")
    assert resumed.returncode == 0 and "0 of 4 runs to do" in resumed.stderr


def test_a_whole_last_run_without_its_newline_is_kept(four_runs, tmp_path):
    out = copy_of(four_runs, tmp_path)
    whole = (out / "runs.jsonl").read_bytes()
    (out / "runs.jsonl").write_bytes(whole[:-1])  # the newline never made it to disk
    assert len(ResultStore(out).load()) == 4
    with ResultStore.open_for_writing(out, append=True) as store:
        assert store.partial_line is None
        assert (out / "runs.jsonl").read_bytes() == whole
        assert len(store.load()) == 4


# -- Ctrl-C inside an append --------------------------------------------------------------

@pytest.mark.parametrize("moment", ["write", "fsync"])
def test_a_ctrl_c_inside_an_append_is_raised_once_the_line_is_whole(
        four_runs, tmp_path, monkeypatch, moment, sigint_raises):
    """The CI failure this mends: a Ctrl-C during the sync took back a line already written."""
    [first, *_] = ResultStore(four_runs).load()
    real = getattr(os, moment)

    def interrupted(*args):
        os.kill(os.getpid(), signal.SIGINT)  # its handler runs at the next bytecode
        time.sleep(0.01)
        return real(*args)

    out = tmp_path / "results"
    with ResultStore.open_for_writing(out, append=False) as store:
        monkeypatch.setattr(os, moment, interrupted)
        with pytest.raises(KeyboardInterrupt):
            store.append(first)
        monkeypatch.undo()
        assert [result.config.key() for result in store.load()] == [first.config.key()]
        assert store.partial_line is None
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_a_full_disk_with_a_ctrl_c_held_says_what_was_not_saved(
        four_runs, tmp_path, monkeypatch, sigint_raises):
    """The disk's error stops the grid and names the run that was not saved; the held
    Ctrl-C does not hide it."""
    [first, *_] = ResultStore(four_runs).load()
    out = tmp_path / "results"
    out.mkdir()
    runs_file = (out / "runs.jsonl").resolve()
    with ResultStore.open_for_writing(out, append=False) as store:
        fill_disk_at_append(monkeypatch, runs_file, saved=0)
        full_disk_write = os.write

        def write(descriptor, data):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
            return full_disk_write(descriptor, data)

        monkeypatch.setattr(os, "write", write)  # a Ctrl-C, then the full disk's write
        with pytest.raises(ResultNotSaved, match="No space left on device"):
            store.append(first)
        monkeypatch.undo()
        assert runs_file.read_bytes() == b""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_halfway_through_a_line_keeps_that_run_and_exits_130(tmp_path):
    out = tmp_path / "results"
    env = {**os.environ, "ASGDBENCH_TEST_APPEND_PAUSE_S": "1"}  # appends pause halfway
    log = tmp_path / "stderr.txt"
    process = subprocess.Popen([sys.executable, "-m", "asgdbench", *GRID, "--out", str(out)],
                               cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=log.open("w"),
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        runs_file = out / "runs.jsonl"
        wait_for(lambda: runs_file.exists() and runs_file.stat().st_size > 0
                 and b"\n" not in runs_file.read_bytes(), "the first run's half line", process)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130, log.read_text()
    finally:
        process.kill()
    stderr = log.read_text()
    assert "Traceback" not in stderr
    assert "1 finished run(s) are kept" in stderr.splitlines()[-1], stderr
    data = runs_file.read_bytes()
    assert data.endswith(b"\n") and data.count(b"\n") == 1  # the interrupted run, whole
    assert len(ResultStore(out).load()) == 1


# -- a full disk ---------------------------------------------------------------------------

def fill_disk_at_append(monkeypatch, runs_file: Path, saved: int) -> None:
    """After ``saved`` appends to ``runs_file``, the disk is full: the next append's first
    write gets half its line onto disk, every write after that fails with ENOSPC."""
    real_write, calls = os.write, []

    def write(descriptor: int, data: bytes) -> int:
        try:
            target = os.readlink(f"/proc/self/fd/{descriptor}")
        except OSError:
            target = None
        if target != str(runs_file):
            return real_write(descriptor, data)
        calls.append(len(data))
        if len(calls) <= saved:
            return real_write(descriptor, data)
        if len(calls) == saved + 1:
            return real_write(descriptor, data[:len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", write)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_a_full_disk_stops_the_grid_with_one_line_and_keeps_what_was_saved(
        tmp_path, capsys, monkeypatch):
    out = tmp_path / "results"
    out.mkdir()
    fill_disk_at_append(monkeypatch, (out / "runs.jsonl").resolve(), saved=2)
    stopped = in_process(capsys, *GRID, "--out", out, "--resume")
    monkeypatch.undo()
    assert_one_error_line(stopped.stderr, stopped.returncode, 1, "cannot save the run",
                          "No space left on device", "2 finished run(s) are kept",
                          f"--resume --out {out}")
    data = (out / "runs.jsonl").read_bytes()
    assert data.endswith(b"\n") and data.count(b"\n") == 2  # no half line left behind
    saved = read_runs(out)
    assert not (out / LOCK_FILE).exists()

    resumed = in_process(capsys, *GRID, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "2 of 4 runs to do" in resumed.stderr
    assert read_runs(out)[:2] == saved
    keys = [key_of(run) for run in read_runs(out)]
    assert len(keys) == 4 and len(set(keys)) == 4


def test_a_run_that_cannot_be_saved_is_one_line_for_run_too(tmp_path, capsys, monkeypatch):
    out = tmp_path / "results"
    out.mkdir()
    fill_disk_at_append(monkeypatch, (out / "runs.jsonl").resolve(), saved=0)
    ran = in_process(capsys, "run", "--strategy", "seq", "--threads", "1", *QUICK, "--out", out)
    monkeypatch.undo()
    assert_one_error_line(ran.stderr, ran.returncode, 1, "No space left on device",
                          "not in the folder")
    assert (out / "runs.jsonl").read_bytes() == b""


def mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(folder)], capture_output=True)
    return mounted.returncode == 0


@pytest.mark.skipif(not shutil.which("mount"), reason="needs mount")
def test_a_real_full_disk_keeps_every_saved_run_and_resume_finishes_after_making_room(tmp_path):
    disk = tmp_path / "disk"
    if not mount_tmpfs(disk, "16k"):  # 4 pages: the lock file's and about 4 runs'
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        out = disk / "results"
        grid = ["compare", "--strategies", "seq,lock", "--threads", "1,2", "--repeats", "3",
                *QUICK, "--out", out]
        full = subprocess.run([sys.executable, "-m", "asgdbench", *grid], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        line = assert_one_error_line(full.stderr, full.returncode, 1, "No space left on device",
                                     f"--resume --out {out}")
        kept = read_runs(out)
        assert 1 <= len(kept) < 9 and f"{len(kept)} finished run(s) are kept" in line
        subprocess.run(["mount", "-o", "remount,size=1m", str(disk)], check=True)
        resumed = subprocess.run([sys.executable, "-m", "asgdbench", *grid, "--resume"],
                                 cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        assert f"{9 - len(kept)} of 9 runs to do" in resumed.stderr
        assert read_runs(out)[:len(kept)] == kept
        assert len({key_of(run) for run in read_runs(out)}) == len(read_runs(out)) == 9
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


# -- SIGKILL at random moments ---------------------------------------------------------------

KILL_GRID = ["compare", "--strategies", "seq,lock", "--threads", "1,2", "--repeats", "4",
             *QUICK]
"""Twelve runs: each trial's process does a few before it is killed."""
KILL_GRID_RUNS = 12


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def complete_lines(runs_file: Path) -> bytes:
    data = read_bytes(runs_file)
    return data[:data.rfind(b"\n") + 1]


def reported_finished(log: Path) -> int:
    """The last count of finished runs the progress bar printed (0 if none)."""
    counts = re.findall(r"(\d+)/\d+ \[", log.read_text(errors="replace"))
    return int(counts[-1]) if counts else 0


def kill_at_random_moments(tmp_path: Path, trials: int, seed: int) -> None:
    """Kill ``compare --resume`` with SIGKILL ``trials`` times at seeded random moments, in turn
    during start-up, between runs and inside an append, each trial resuming the last one's
    folder; after every kill no finished run is lost and the folder loads; at the end a resume
    completes each grid with every run once."""
    rng = random.Random(seed)
    folders, out, saved = [], None, b""
    for trial in range(trials):
        if out is None:
            out = tmp_path / f"results-{len(folders)}"
            folders.append(out)
            saved = b""
        runs_file, log = out / "runs.jsonl", tmp_path / f"stderr-{trial}.txt"
        moment = ("inside an append", "between runs", "during start-up")[trial % 3]
        env = dict(os.environ)
        if moment == "inside an append" or rng.random() < 0.5:
            env["ASGDBENCH_TEST_APPEND_PAUSE_S"] = "0.3"  # appends pause halfway through a line
        start_lines = complete_lines(runs_file).count(b"\n")
        process = start(*KILL_GRID, "--out", out, "--resume", cwd=tmp_path, env=env,
                        stderr=log)
        if moment == "during start-up":  # importing, compiling, locking, the first run
            time.sleep(rng.uniform(0.0, 4.0))
        else:
            more = rng.randint(0, 1) if moment == "inside an append" else rng.randint(1, 2)
            wait_for(lambda: complete_lines(runs_file).count(b"\n") >= start_lines + more
                     or process.poll() is not None, f"{more} more runs", timeout=120)
            if moment == "inside an append":
                wait_for(lambda: len(read_bytes(runs_file)) > len(complete_lines(runs_file))
                         or process.poll() is not None, "an append", timeout=120)
            else:
                time.sleep(rng.uniform(0.0, 0.6))
        process.send_signal(signal.SIGKILL)
        code = process.wait(timeout=60)
        assert code in (0, -signal.SIGKILL), log.read_text()  # never refused: no stuck lock
        assert read_bytes(runs_file).startswith(saved), f"trial {trial}: a finished run was lost or changed"
        store = ResultStore(out)
        finished = store.load() if runs_file.exists() else []  # readable, at most a torn tail
        assert len(finished) >= start_lines + reported_finished(log), log.read_text()
        assert not store.duplicates
        if moment == "inside an append" and code != 0:
            assert store.partial_line == len(finished) + 1  # the torn line, skipped
        saved = complete_lines(runs_file)
        if code == 0:  # the grid finished before the kill
            assert len(finished) == KILL_GRID_RUNS
            out = None
    for out in folders:
        before = complete_lines(out / "runs.jsonl")
        done = subprocess.run([sys.executable, "-m", "asgdbench", *KILL_GRID, "--out", str(out),
                               "--resume"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        assert "warning" not in done.stderr
        assert (out / "runs.jsonl").read_bytes().startswith(before)
        keys = [key_of(run) for run in read_runs(out)]
        assert len(keys) == len(set(keys)) == KILL_GRID_RUNS


def test_sigkill_at_random_moments_loses_no_finished_run(tmp_path):
    kill_at_random_moments(tmp_path, trials=3, seed=1)


@pytest.mark.slow  # 20 processes, each paying the interpreter's and numba's start-up
def test_sigkill_at_twenty_random_moments_loses_no_finished_run(tmp_path):
    kill_at_random_moments(tmp_path, trials=20, seed=2026)
