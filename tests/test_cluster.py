"""Grids on a dask.distributed cluster (``--cluster``): a LocalCluster on 127.0.0.1 only.

Two worker processes with ``machine=1`` each, started once for the module; the
command line reaches them by their scheduler address, as it would a remote
cluster. Runs are tiny (a few hundred updates of mlp-digits). What is checked:
the same runs as without a cluster (one thread's final loss replays exactly), a worker
killed mid-run loses nothing and its run is redone on another worker, resume
after Ctrl-C finishes exactly the missing runs, a plugin file reaches the
workers, a failing run is retried elsewhere then recorded as an error, and an
unreachable scheduler is one line with exit 2. The kill test comes last: it
restarts one of the shared workers. Only the first grid runs in the default
suite; the rest, whose worker processes compile more kernels, run in the slow
stage.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

distributed = pytest.importorskip("distributed")

from cli_helpers import in_process, key_of, read_runs  # noqa: E402

from asgdbench.engine.run_result import RunResult  # noqa: E402
from asgdbench.plugins.workloads import get_workload, load_workload  # noqa: E402
from asgdbench.study import cluster, cluster_worker, grid  # noqa: E402
from asgdbench.study.report import render, summarize  # noqa: E402
from asgdbench.study.result_folder import ResultStore  # noqa: E402

SHORT = ["--target-loss", "none", "--max-updates", "300", "--lr", "0.05"]


@pytest.fixture(scope="module")
def scheduler():
    """A two-worker LocalCluster on 127.0.0.1, as ``local:2`` starts it; yields its address."""
    local = cluster.start_local(2)
    try:
        dashboard = local.scheduler.services.get("dashboard")
        if dashboard is not None:  # never reachable from outside this machine
            assert all(sock.getsockname()[0] == "127.0.0.1"
                       for sock in dashboard._sockets.values())
        yield local.scheduler_address
    finally:
        local.close()


@pytest.fixture
def client(scheduler):
    with distributed.Client(scheduler, set_as_default=False) as connected:
        yield connected


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("asgdbench: error")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_a_grid_on_the_cluster_has_the_runs_of_the_grid_without_it(scheduler, client, capsys,
                                                                     tmp_path):
    grid_args = ["--strategies", "hogwild", "--threads", "1,2", "--repeats", "2", *SHORT]
    spread = in_process(capsys, "compare", *grid_args, "--out", tmp_path, "--cluster", scheduler)
    assert spread.returncode == 0, spread.stderr
    assert "2 worker(s) with machine=1" in spread.stderr
    assert "warning: 2 workers on host" in spread.stderr  # both workers share this machine

    # Without --cluster the grid runs exactly grid.expand's cells, one after another.
    cells = grid.expand(get_workload("mlp-digits"), grid.parse_specs(["hogwild"])[0], [1, 2], [0.05], 2,
                        target_loss=None, max_updates=300)
    runs = read_runs(tmp_path)
    assert sorted(map(key_of, runs)) == sorted(config.key() for config in cells)
    assert len(runs) == 4
    workers = set(client.scheduler_info()["workers"])
    for run in runs:
        assert (run["status"], run["updates_applied"]) == ("budget", 300)
        assert run["environment"]["dask_worker"] in workers
        assert run["environment"]["host"] == socket.gethostname()
    # One thread is deterministic: a seed gives the same final loss here as on a worker.
    here = {config.seed: grid.run_cell(load_workload("mlp-digits"), config).final_loss
            for config in cells if config.threads == 1}
    assert here == {run["seed"]: run["final_loss"] for run in runs if run["threads"] == 1}
    assert "Machine: " in (tmp_path / "summary.md").read_text()


def test_a_cluster_grid_is_written_by_the_client_under_the_folder_lock(scheduler, capsys,
                                                                       tmp_path):
    """Workers only return results; the client appends them, holding the folder's lock."""
    command = ["compare", "--strategies", "hogwild", "--threads", "1", "--repeats", "1",
               *SHORT, "--out", tmp_path, "--resume", "--cluster", scheduler]
    with ResultStore.open_for_writing(tmp_path, append=True):
        refused = in_process(capsys, *command)
    assert_one_line_error(refused, f"{tmp_path} is in use by pid {os.getpid()}")
    assert not (tmp_path / "runs.jsonl").exists()


@pytest.mark.slow  # workers compile each strategy anew: the slow stage
def test_resume_after_ctrl_c_finishes_exactly_the_missing_runs(scheduler, capsys, tmp_path,
                                                              monkeypatch):
    out = tmp_path / "results"
    command = ["compare", "--strategies", "hogwild", "--threads", "1,2", "--repeats", "3",
               *SHORT, "--out", out, "--cluster", scheduler]
    append = ResultStore.append

    def interrupted_after_two(store, result):
        if store.runs_path.exists() and len(store.runs_path.read_text().splitlines()) >= 2:
            raise KeyboardInterrupt  # Ctrl-C as the third result arrives
        append(store, result)

    monkeypatch.setattr(ResultStore, "append", interrupted_after_two)
    stopped = in_process(capsys, *command)
    assert stopped.returncode == 130, stopped.stderr
    assert f"--resume --out {out}" in stopped.stderr
    kept = (out / "runs.jsonl").read_text()
    assert len(kept.splitlines()) == 2

    monkeypatch.setattr(ResultStore, "append", append)
    resumed = in_process(capsys, *command, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "4 of 6 runs to do" in resumed.stderr
    assert (out / "runs.jsonl").read_text().startswith(kept)
    keys = [key_of(run) for run in read_runs(out)]
    assert len(keys) == 6 and len(set(keys)) == 6


PLUGIN = """\"\"\"HOGWILD! under another name: a plugin whose kernels each worker has compiled.\"\"\"
import dataclasses

from asgdbench.plugins.strategies import available_strategies, register_strategy

register_strategy(dataclasses.replace(available_strategies()["hogwild"], name="clusterhog"))
"""


@pytest.mark.slow  # workers compile each strategy anew: the slow stage
def test_a_plugin_file_reaches_the_workers(scheduler, client, capsys, tmp_path):
    plugin = tmp_path / "clusterhog.py"
    plugin.write_text(PLUGIN)
    out = tmp_path / "results"
    ran = in_process(capsys, "compare", "--plugin", plugin, "--strategies", "clusterhog",
                     "--threads", "2", "--repeats", "2", *SHORT, "--out", out,
                     "--cluster", scheduler)
    assert ran.returncode == 0, ran.stderr
    runs = read_runs(out)
    assert [(run["strategy"], run["status"]) for run in runs] == [("clusterhog", "budget")] * 2
    workers = set(client.scheduler_info()["workers"])
    for run in runs:
        assert run["environment"]["dask_worker"] in workers
        source = run["strategy_source"]
        assert source["kind"] == "file" and source["path"] == str(plugin.resolve())
        assert source["sha256"] == cluster_worker.PluginFile.read(plugin).sha256
    # the workers registered it from their own copy of the file's bytes
    loaded = client.run(lambda: sys.modules["asgdbench.study.cluster_worker"]._LOADED)
    assert all(names == {"clusterhog.py": source["sha256"]} for names in loaded.values())


@pytest.mark.slow  # workers compile each strategy anew: the slow stage
def test_a_failing_run_is_retried_on_the_other_worker_then_recorded(client, tmp_path):
    address = cluster.ClusterAddress("local:2", 2)  # so that --data-dir travels with the tasks
    connected = cluster.Cluster(client, address, data_dir=str(tmp_path))
    cells = grid.expand(get_workload("mlp-mnist"), grid.parse_specs(["hogwild"])[0], [1], max_updates=10)
    with pytest.raises(cluster.ConfigError, match="asgdbench download mnist"):
        connected.check_can_run(cells, grid.check_can_run)  # refused on the workers before any run

    results: list[RunResult] = []
    connected.run_cells(cells, grid.run_cell, results.append)
    [result] = results
    assert result.status == "error" and result.config == cells[0]
    assert result.error.count("asgdbench download mnist") == 2  # the usual message, twice
    tried = {key.split("worker ")[-1].split(")")[0] for key in result.error.split("; then ")}
    assert tried == set(client.scheduler_info()["workers"])  # once on each worker


def test_an_unreachable_scheduler_is_one_line_and_exit_2(capsys, monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1.0)
    with socket.socket() as probe:  # a port on 127.0.0.1 nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    refused = in_process(capsys, "compare", *SHORT, "--cluster", f"tcp://127.0.0.1:{port}")
    assert_one_line_error(refused, "cannot reach the dask scheduler", f"127.0.0.1:{port}")
    for bad in ("local:0", "local:x", "two words"):
        assert_one_line_error(in_process(capsys, "compare", "--cluster", bad), "--cluster")


@pytest.mark.slow  # workers compile each strategy anew: the slow stage
def test_reproduce_runs_its_plan_on_the_cluster(scheduler, client, capsys, tmp_path,
                                                monkeypatch):
    """``reproduce --cluster`` sends every planned run to the workers and judges them here."""
    from asgdbench.study import claims

    tiny = claims.Scale("tiny", 1, (1.0,), 1, 0.01, ("mlp-digits",), "seconds (tests only)")
    monkeypatch.setitem(claims.SCALES, "tiny", tiny)
    out = tmp_path / "claims"
    done = in_process(capsys, "reproduce", "--scale", "tiny", "--claims", "3", "--out", out,
                      "--cluster", scheduler)
    assert done.returncode == 0, done.stderr
    runs = read_runs(out)
    plan = json.loads((out / "reproduce.json").read_text())
    assert plan["claims"] == [3] and runs
    workers = set(client.scheduler_info()["workers"])
    assert all(run["environment"]["dask_worker"] in workers for run in runs)
    assert "Claim 3" in (out / "report.md").read_text()


def node(host: str, cpu: str = "Xeon 8380") -> dict:
    return {"host": host, "cpu_model": cpu, "cpu_cores": 80}


def test_the_table_names_the_machine_and_warns_when_a_cell_mixes_machines():
    from test_report import fake_run  # a complete run record, as runs.jsonl stores it

    identical = render(summarize([fake_run(seed=0, environment=node("n1")),
                                  fake_run(seed=1, environment=node("n2"))]))
    assert "Machine: Xeon 8380, 80 cores." in identical and "Warning" not in identical
    mixed = render(summarize([fake_run(seed=0, environment=node("n1")),
                              fake_run(seed=1, environment=node("n2", "EPYC 9654"))]))
    [warning] = [line for line in mixed.splitlines() if line.startswith("Warning")]
    assert "hogwild at 2 threads mixes runs on different machines" in warning
    assert "EPYC 9654, 80 cores; Xeon 8380, 80 cores" in warning
    apart = render(summarize([fake_run("seq", 1, environment=node("n1")),
                              fake_run("lock", 2, environment=node("n2", "EPYC 9654"))]))
    assert "Warning: rows ran on different machines" in apart


def test_a_scheduler_without_a_machine_worker_is_refused_with_the_worker_command(capsys,
                                                                                 monkeypatch):
    monkeypatch.setattr(cluster, "WORKER_WAIT_S", 0.5)
    with distributed.LocalCluster(n_workers=1, processes=False, protocol="tcp", host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0") as plain:  # no machine=1
        refused = in_process(capsys, "compare", *SHORT, "--cluster", plain.scheduler_address)
    assert_one_line_error(refused, "offers the resource machine=1",
                          f"dask worker {plain.scheduler_address} --nworkers 1 --nthreads 1")


def test_an_edited_plugin_file_asks_for_a_worker_restart(tmp_path):
    first = cluster_worker.PluginFile("edited.py", PLUGIN.replace("clusterhog", "edited").encode(),
                               "0" * 64, str(tmp_path / "edited.py"))
    cluster_worker.load_plugins([first])
    cluster_worker.load_plugins([first])  # the same file again: already loaded, nothing to do
    edited = cluster_worker.PluginFile("edited.py", first.data + b"# edited\n", "1" * 64, first.client_path)
    with pytest.raises(cluster.ConfigError, match="restart the workers"):
        cluster_worker.load_plugins([edited])


@pytest.mark.slow  # workers compile each strategy anew: the slow stage
def test_a_killed_worker_loses_no_finished_run_and_its_run_is_redone(scheduler, client,
                                                                    tmp_path):
    connected = cluster.Cluster(client, cluster.ClusterAddress(scheduler))
    cells = grid.expand(get_workload("mlp-digits"), grid.parse_specs(["hogwild"])[0], [1], repeats=4,
                        target_loss=None, max_time=2.0)
    store = ResultStore.open_for_writing(tmp_path, append=False)
    killed: dict = {}

    def kill_a_worker_mid_run() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for worker, keys in client.processing().items():
                ours = [key for key in keys if key in connected.task_configs]
                if ours and store.runs_path.exists():  # a run has finished, another is running
                    time.sleep(0.5)  # well inside its 2 s
                    pid = client.run(os.getpid, workers=[worker])[worker]
                    killed.update(pid=pid, config=connected.task_configs[ours[0]],
                                  finished_before=store.runs_path.read_text())
                    os.kill(pid, signal.SIGKILL)
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_worker_mid_run, daemon=True)
    killer.start()
    connected.run_cells(cells, grid.run_cell, store.append)
    killer.join(10)
    assert killed, "no run was caught running"
    runs = read_runs(tmp_path)
    assert (tmp_path / "runs.jsonl").read_text().startswith(killed["finished_before"])
    assert sorted(map(key_of, runs)) == sorted(config.key() for config in cells)
    [redone] = [run for run in runs if key_of(run) == killed["config"].key()]
    assert redone["status"] == "timeout"
    assert redone["environment"]["worker_pid"] != killed["pid"]  # another worker process
