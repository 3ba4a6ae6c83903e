"""Tests for the command line: end to end in subprocesses, plus the grid it runs.

Runs are tiny (a few updates or a fraction of a second each) on mlp-digits,
which needs no download; what is checked is the plumbing: what lands in the
result folder, that re-rendering reproduces it, that Ctrl-C keeps finished runs
and --resume completes the grid, and that user errors are one line with exit 2.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import in_process, key_of, read_runs

from asgdbench.errors import ConfigError
from asgdbench.plugins.workloads import get_workload
from asgdbench.study import grid
from asgdbench.study.cli import build_parser, main

REPO = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Runs that end within milliseconds: digits' loss starts near 2.3.
QUICK = ["--target-loss", "1.0", "--lr", "0.05", "--max-time", "5"]


def asgdbench(*args: str | Path, cwd: Path, env: dict | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m asgdbench ARGS`` in ``cwd``, where a default result folder would land."""
    return subprocess.run([sys.executable, "-m", "asgdbench", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=env, stdin=subprocess.DEVNULL)


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit code 2 and exactly one line on stderr that names the problem."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("asgdbench: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


# -- end to end -----------------------------------------------------------------

def test_compare_writes_the_result_folder_and_report_reproduces_the_table(tmp_path):
    out = tmp_path / "results"
    compared = asgdbench("compare", "--strategies", "seq,lock,leashed:tp=1", "--threads", "1,2",
                         "--repeats", "1", *QUICK, "--out", out, "--plot", cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr

    runs = read_runs(out)
    assert sorted((run["strategy"], run["threads"]) for run in runs) == [
        ("leashed:tp=1", 1), ("leashed:tp=1", 2), ("lock", 1), ("lock", 2), ("seq", 1)]
    for run in runs:
        assert run["workload"] == "mlp-digits" and run["lr"] == 0.05 and run["seed"] == 0
        assert run["status"] in ("converged", "diverged", "timeout", "budget")
        assert run["environment"]["cpu_cores"] >= 1

    table = (out / "summary.md").read_text()
    assert table.strip() in compared.stdout
    with (out / "summary.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == len(runs)
    times = {(run["strategy"], run["threads"]): run["time_to_target_s"] for run in runs}
    for row in rows:  # one run per cell: the csv's speedups follow from runs.jsonl
        own, seq = times[row["strategy"], int(row["threads"])], times["seq", 1]
        if own is None or seq is None:
            assert row["speedup_vs_seq"] == ""
        else:
            assert float(row["speedup_vs_seq"]) == pytest.approx(seq / own)
    for name in ("loss_vs_time", "time_to_target_vs_threads", "staleness_histograms",
                 "cas_attempts_histograms"):
        assert (out / f"{name}.png").read_bytes().startswith(PNG_MAGIC)

    (out / "summary.md").unlink()
    reported = asgdbench("report", out, cwd=tmp_path)
    assert reported.returncode == 0, reported.stderr
    assert (out / "summary.md").read_text() == table
    assert table.strip() in reported.stdout
    assert len(read_runs(out)) == len(runs)  # nothing was run again


def test_ctrl_c_keeps_finished_runs_and_resume_completes_the_grid(tmp_path):
    out = tmp_path / "results"
    command = ["compare", "--strategies", "hogwild", "--threads", "1,2", "--repeats", "3",
               "--target-loss", "none", "--max-time", "0.5", "--out", str(out)]
    # A terminal's Ctrl-C reaches a process whose SIGINT is not ignored; make sure of that
    # even when the test runner itself was started with SIGINT ignored (in the background).
    process = subprocess.Popen([sys.executable, "-m", "asgdbench", *command], cwd=tmp_path,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    runs_file = out / "runs.jsonl"
    deadline = time.monotonic() + 90
    while not (runs_file.exists() and runs_file.read_text().count("\n") >= 1):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"--resume --out {out}" in stderr.splitlines()[-1]

    kept = runs_file.read_text()
    finished = read_runs(out)  # every line is whole, valid JSON
    assert 1 <= len(finished) < 6

    resumed = asgdbench(*command, "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{6 - len(finished)} of 6 runs to do" in resumed.stderr
    assert runs_file.read_text().startswith(kept)  # the finished runs are untouched
    keys = [key_of(run) for run in read_runs(out)]
    assert len(keys) == 6 and len(set(keys)) == 6


def test_a_plugin_strategy_is_listed_and_runs(tmp_path):
    plugin = tmp_path / "spinlock.py"
    plugin.write_text(readme_plugin())
    listed = asgdbench("--plugin", plugin, "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^\s+spinlock\s+Like lock", listed.stdout, re.MULTILINE)

    out = tmp_path / "results"
    ran = asgdbench("run", "--plugin", plugin, "--strategy", "spinlock", "--threads", "2",
                    "--target-loss", "none", "--max-updates", "500", "--out", out, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    [run] = read_runs(out)
    assert (run["strategy"], run["status"], run["updates_applied"]) == ("spinlock", "budget", 500)
    assert "spinlock" in (out / "summary.md").read_text()


def readme_plugin() -> str:
    """The minimal plugin file the README shows, so that the README stays true."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Adding a strategy", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_list_shows_strategies_with_parameters_and_workloads_with_defaults(capsys):
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert re.search(r"^\s+leashed\s+\S", listed, re.MULTILINE)
    assert re.search(r"^\s+tp=inf ", listed, re.MULTILINE)
    for variant in ("lock-per-step-copy", "hogwild-per-step-copy"):  # the authors' baselines
        assert re.search(rf"^\s+{variant}\s+\S", listed, re.MULTILINE)
    assert re.search(r"^\s+mlp-digits\s+\S.*\n\s+defaults: lr ", listed, re.MULTILINE)


@pytest.mark.parametrize("command", ["list", "run", "compare", "report", "download"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert f"usage: asgdbench {command}" in capsys.readouterr().out


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "asgdbench"
    helped = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "compare" in helped.stdout


def test_download_keeps_intact_mnist_without_the_network(tmp_path):
    data = Path(os.environ.get("ASGDBENCH_DATA", "")).resolve()
    if "ASGDBENCH_DATA" not in os.environ or not (data / "mnist").is_dir():
        pytest.skip("ASGDBENCH_DATA does not point at a folder containing mnist/")
    dead_proxy = "http://127.0.0.1:9"  # any download attempt would fail
    fetched = asgdbench("download", "mnist", "--data-dir", data, cwd=tmp_path,
                        env={**os.environ, "http_proxy": dead_proxy, "https_proxy": dead_proxy})
    assert fetched.returncode == 0, fetched.stderr
    assert str(data / "mnist") in fetched.stdout


# -- user errors: one line on stderr, exit code 2, before anything runs ------------

@pytest.mark.parametrize("args, fragments", [
    (["compare", "--strategies", "seq,nope"], ["unknown strategy 'nope'", "leashed"]),
    (["run", "--workload", "nope", "--strategy", "seq", "--threads", "1"],
     ["unknown workload 'nope'", "mlp-digits"]),
    (["run", "--strategy", "leashed:tp=abc", "--threads", "1"], ["tp"]),
    (["compare", "--strategies", "leashed:depth=3"], ["no parameter 'depth'"]),
    (["compare", "--threads", "1,0"], ["--threads"]),
    (["run", "--strategy", "seq", "--threads", "2"], ["seq", "at most 1"]),
    (["run", "--strategy", "seq", "--threads", "1", "--lr", "0"], ["--lr"]),
    (["compare", "--lr", "-0.1"], ["--lr"]),
    (["run", "--strategy", "seq", "--threads", "1", "--target-loss", "none", "--max-time",
      "none"], ["stop rule"]),
    (["compare", "--resume"], ["--out"]),
    (["compare", "--order", "strategy", "--order-seed", "3"], ["--order-seed", "no shuffle"]),
    (["frobnicate"], ["invalid choice"]),
    (["cache", "bogus"], ["argument ACTION", "'bogus'", "'info', 'clear', 'warm'"]),
    (["cache", "info", "--strategies", "lock"], ["--strategies", "`cache info` takes none"]),
    ([], ["COMMAND"]),
    (["--plugin", "no-such-plugin.py", "list"], ["no-such-plugin.py"]),
    (["--plugin", ".", "list"], ["plugin file '.' is a folder"]),
    (["compare", "--out", ""], ["--out", "folder path"]),
    (["run", "--strategy", "seq", "--threads", "1", "--out", " "], ["--out", "folder path"]),
    (["report", ""], ["folder path"]),
    (["compare", "--columns", "time,nope"], ["--columns", "'nope'", "vs-seq"]),
    (["report", "a", "b", "c"], ["two to compare"]),
    (["run", "--strategy", "hogwild", "--threads", "100000"], ["100000 threads"]),
    (["run", "--strategy", "seq", "--threads", "1", "--batch-size", "10000000", "--out", "o"],
     ["batch size 10,000,000", "training set of mlp-digits"]),
])
def test_user_errors(args, fragments, tmp_path):
    assert_user_error(asgdbench(*args, cwd=tmp_path, timeout=60), *fragments)
    assert not (tmp_path / "asgdbench-results").exists()


def test_missing_mnist_says_how_to_get_it(tmp_path):
    assert_user_error(asgdbench("run", "--workload", "mlp-mnist", "--strategy", "seq",
                                "--threads", "1", "--data-dir", tmp_path, cwd=tmp_path),
                      "missing", "asgdbench download mnist")


def test_corrupt_mnist_says_how_to_get_it(tmp_path):
    (tmp_path / "mnist").mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (tmp_path / "mnist" / name).write_bytes(b"not gzip at all")
    assert_user_error(asgdbench("compare", "--workload", "mlp-mnist", "--data-dir", tmp_path,
                                cwd=tmp_path),
                      "not a valid gzip file", "asgdbench download mnist")


def test_unwritable_out_fails_before_any_run(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert_user_error(asgdbench("compare", "--out", blocker / "results", cwd=tmp_path),
                      "cannot write results", str(blocker / "results"))


def test_a_folder_with_runs_is_only_reused_with_resume(tmp_path):
    (tmp_path / "runs.jsonl").write_text("{}\n")
    assert_user_error(asgdbench("compare", "--out", tmp_path, cwd=tmp_path), "--resume")


def test_report_on_a_folder_without_runs(tmp_path):
    assert_user_error(asgdbench("report", tmp_path, cwd=tmp_path), "runs.jsonl is missing")


def test_plot_without_matplotlib_says_what_to_install(tmp_path):
    fake = tmp_path / "no-matplotlib" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('matplotlib is not installed')\n")
    env = {**os.environ, "PYTHONPATH": str(fake.parent)}
    assert_user_error(asgdbench("compare", "--plot", "--out", tmp_path / "out", cwd=tmp_path,
                                env=env),
                      "pip install 'asgdbench[plot]'")
    assert not (tmp_path / "out").exists()


# -- the grid, in process ------------------------------------------------------------

def test_default_grid_runs_seq_at_one_thread_only():
    cells = grid.expand(get_workload(grid.DEFAULT_WORKLOAD), grid.parse_specs(grid.DEFAULT_STRATEGIES)[0],
                        grid.DEFAULT_THREADS, repeats=grid.DEFAULT_REPEATS)
    per_strategy = {}
    for cell in cells:
        per_strategy.setdefault(cell.strategy.label, set()).add(cell.threads)
    assert per_strategy.pop("seq") == {1}
    assert set(per_strategy) == {"lock", "hogwild", "leashed:tp=0", "leashed:tp=1",
                                 "leashed:tp=inf"}
    assert all(threads == set(grid.DEFAULT_THREADS) for threads in per_strategy.values())
    assert len(cells) == (1 + 5 * len(grid.DEFAULT_THREADS)) * grid.DEFAULT_REPEATS
    assert len({cell.key() for cell in cells}) == len(cells)


def test_grid_cells_take_workload_defaults_and_explicit_overrides():
    spec = get_workload("mlp-digits")
    [default] = grid.expand(spec, grid.parse_specs(["lock"])[0], [2])
    assert (default.lr, default.batch_size, default.target_loss, default.max_time) == (
        spec.defaults.lr, spec.defaults.batch_size, spec.defaults.target_loss,
        spec.defaults.max_time)
    [custom] = grid.expand(spec, grid.parse_specs(["lock"])[0], [2], [0.5], first_seed=7, batch_size=4,
                           target_loss=None, max_updates=10)
    assert (custom.lr, custom.seed, custom.batch_size, custom.target_loss,
            custom.max_updates) == (0.5, 7, 4, None, 10)
    with pytest.raises(ConfigError, match="stop rule"):
        grid.expand(spec, grid.parse_specs(["lock"])[0], [2], target_loss=None, max_time=None)


def test_pending_skips_finished_keys():
    cells = grid.expand(get_workload("mlp-digits"), grid.parse_specs(["lock"])[0], [1, 2], repeats=2)
    assert grid.pending(cells, {cells[1].key(), cells[2].key()}) == [cells[0], cells[3]]


# -- interruptions, repeats, damaged folders, resumes ------------------------------------

def test_ctrl_c_before_any_run_finished_says_so_and_exits_130(tmp_path):
    out = tmp_path / "results"
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "asgdbench", "compare", "--strategies", "hogwild",
             "--threads", "2", "--repeats", "1", "--target-loss", "none", "--max-time", "60",
             "--out", str(out)],
            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 90
        while "runs to do" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        time.sleep(1.0)  # inside the first run (compiling or training)
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    lines = log.read_text().splitlines()
    assert process.returncode == 130, lines
    assert "Traceback" not in log.read_text()
    assert lines[-1] == "asgdbench: interrupted before any run finished; nothing was saved"
    assert not (out / "runs.jsonl").exists()


def test_repeated_list_entries_run_once_with_a_note(tmp_path, capsys):
    out = tmp_path / "results"
    compared = in_process(capsys, "compare", "--strategies", "lock,lock,leashed,leashed:tp=inf",
                          "--threads", "1,1", "--repeats", "1", *QUICK, "--out", out)
    assert compared.returncode == 0, compared.stderr
    assert sorted(run["strategy"] for run in read_runs(out)) == ["leashed:tp=inf", "lock"]
    [note] = [line for line in compared.stderr.splitlines() if "listed twice" in line]
    assert "--strategies lock" in note and "--strategies leashed:tp=inf" in note
    assert "--threads 1" in note and "--lr" not in note
    assert "1/1" in (out / "summary.md").read_text()


@pytest.fixture(scope="module")
def finished_grid(tmp_path_factory) -> Path:
    """A result folder of two quick runs, copied by the tests that damage it."""
    out = tmp_path_factory.mktemp("grid") / "results"
    compared = asgdbench("compare", "--strategies", "seq,lock", "--threads", "1",
                         "--repeats", "1", *QUICK, "--out", out, cwd=out.parent)
    assert compared.returncode == 0, compared.stderr
    return out


def copy_of(folder: Path, tmp_path: Path) -> Path:
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    return copy


def test_report_prints_the_table_when_the_summary_cannot_be_written(finished_grid, tmp_path,
                                                                    capsys):
    out = copy_of(finished_grid, tmp_path)
    (out / "summary.md").unlink()
    (out / "summary.md").mkdir()  # unwritable as a file, even for root
    reported = in_process(capsys, "report", out)
    assert reported.returncode == 0, reported.stderr
    assert table_line_of(reported.stdout, "lock")
    [warning] = reported.stderr.splitlines()
    assert warning.startswith("asgdbench: warning: cannot write the summary") and "not saved" in warning


def table_line_of(text: str, strategy: str) -> str:
    [line] = [line for line in text.splitlines() if line.startswith(f"| {strategy} ")]
    return line


def test_a_run_cut_off_mid_line_is_warned_about_and_redone_on_resume(finished_grid, tmp_path,
                                                                     capsys):
    out = copy_of(finished_grid, tmp_path)
    runs_file = out / "runs.jsonl"
    whole = runs_file.read_text()
    last = whole.splitlines(keepends=True)[-1]
    runs_file.write_text(whole[: len(whole) - len(last)] + last[: len(last) // 2])
    reported = in_process(capsys, "report", out)
    assert reported.returncode == 0, reported.stderr
    assert "line 2" in reported.stderr and "cut short" in reported.stderr
    resumed = in_process(capsys, "compare", "--strategies", "seq,lock", "--threads", "1",
                         "--repeats", "1", *QUICK, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "dropped line 2" in resumed.stderr and "1 of 2 runs to do" in resumed.stderr
    assert len(read_runs(out)) == 2


def test_report_compares_two_folders_cell_by_cell(finished_grid, tmp_path, capsys):
    after = copy_of(finished_grid, tmp_path)
    compared = in_process(capsys, "report", finished_grid, after)
    assert compared.returncode == 0, compared.stderr
    lines = compared.stdout.splitlines()
    assert lines[:2] == [f"before: {finished_grid}", f"after:  {after}"]
    for strategy in ("seq", "lock"):
        line = table_line_of(compared.stdout, strategy)
        assert "1.00x" in line and "1/1 -> 1/1" in line  # the same runs on both sides
    assert "different rules" not in compared.stderr
    assert_user_error(in_process(capsys, "report", finished_grid, after, "--plot"), "comparison")


def test_report_warns_when_the_two_folders_ran_under_other_stop_rules(finished_grid, tmp_path,
                                                                      capsys):
    after = copy_of(finished_grid, tmp_path)
    runs = [json.loads(line) for line in (after / "runs.jsonl").read_text().splitlines()]
    (after / "runs.jsonl").write_text("".join(json.dumps(dict(run, max_time=7.0)) + "\n"
                                              for run in runs))
    compared = in_process(capsys, "report", finished_grid, after)
    assert compared.returncode == 0, compared.stderr
    [warning] = compared.stderr.splitlines()
    assert warning.startswith("asgdbench: warning:") and "--max-time 5 before, 7 after" in warning
    assert table_line_of(compared.stdout, "lock")  # still compared, only flagged


@pytest.mark.parametrize("changed, fragments", [
    (["--max-time", "7"], ["--max-time 5", "asks for 7"]),
    (["--target-loss", "none"], ["--target-loss 1", "asks for none"]),
    (["--max-updates", "100"], ["--max-updates none", "asks for 100"]),
])
def test_resume_refuses_changed_stop_rules(finished_grid, tmp_path, changed, fragments, capsys):
    out = copy_of(finished_grid, tmp_path)
    before = (out / "runs.jsonl").read_text()
    options = dict(zip(QUICK[::2], QUICK[1::2]))
    options.update(dict(zip(changed[::2], changed[1::2])))
    resumed = in_process(capsys, "compare", "--strategies", "seq,lock", "--threads", "1",
                         "--repeats", "1", *[part for pair in options.items() for part in pair],
                         "--out", out, "--resume")
    assert_user_error(resumed, "cannot resume", *fragments)
    assert (out / "runs.jsonl").read_text() == before


def test_strategy_is_the_option_and_algorithm_its_old_alias(capsys):
    for option in ("--strategy", "--algorithm"):
        assert main(["run", option, "lock", "--threads", "1", "--workload", "probe",
                     "--max-updates", "50", "--dtype", "float64"]) == 0
        assert "lock" in capsys.readouterr().out
    for option in ("--strategies", "--algorithms"):  # compare's list takes the alias too
        assert build_parser().parse_args(["compare", option, "seq,lock"]).strategies == [
            "seq", "lock"]
