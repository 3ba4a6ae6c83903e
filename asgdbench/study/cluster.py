"""A grid's runs as tasks on a dask.distributed cluster (``--cluster ADDRESS``).

Why: a full study is hundreds of runs, days on one box; a researcher with a
few identical nodes spreads them with an existing engine instead of shell
loops, and keeps the same result folder, table and resume. Only where runs
execute changes: the client expands the grid, skips finished runs and appends
each result to ``runs.jsonl`` as it arrives (in any order); workers run cells.

Rules that keep the timings honest:

- Every task needs the worker resource ``machine=1`` (:data:`~asgdbench.study.cluster_worker.RESOURCE`), and a
  worker started as :data:`WORKER_COMMAND` has exactly one, so it runs one
  timed run at a time and owns its node's cores while it does.
- A worker process keeps its loaded workloads and plugin files between tasks,
  so numba compiles each kernel once per process (the runner compiles before
  its clock starts anyway); workers on one node share numba's disk cache.
- A run that raises (missing data, a plugin that fails, a refused preflight)
  is submitted once more, to another worker if there is one, then recorded
  as ``status: error`` with both reasons; the grid goes on. A run whose worker
  dies is rescheduled by the scheduler (``distributed.scheduler.allowed-failures``:
  ``local:N`` sets it to 1, one retry) and recorded as an error when it gives up.
- Plugin files travel with each task as bytes and are loaded on the worker
  through :func:`~asgdbench.plugins.files.load_plugin_file`, once per file and
  process; each worker resolves its own data folder (``ASGDBENCH_DATA`` or its
  cache; with ``local:N`` the client's ``--data-dir`` too, it is the same machine).

This module is the client's side; what a worker runs is in :mod:`.cluster_worker`. A task
carries the cell's :class:`~asgdbench.engine.run_result.RunConfig` with its typed choices,
which the worker binds to its own registered plugins: no spec is parsed there.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asgdbench.engine.run_result import RunConfig, RunResult
from asgdbench.errors import ConfigError, one_line
from asgdbench.study.cluster_worker import (
    RESOURCE,
    PluginFile,
    check_on_worker,
    error_result,
    run_on_worker,
    worker_facts,
)

WORKER_COMMAND = 'dask worker {address} --nworkers 1 --nthreads 1 --resources "machine=1"'
INSTALL_HINT = "pip install 'asgdbench[cluster]'"
CONNECT_TIMEOUT_S = 20.0
"""How long to try reaching a scheduler before ``--cluster`` counts as unreachable."""
WORKER_WAIT_S = 60.0
"""How long a grid waits for a worker with ``machine=1``: at the start, and whenever none is left."""
_POLL_S = 0.1
_LOCAL = re.compile(r"local:(\d+)")
_REMOTE = re.compile(r"(?:[a-z][a-z0-9+]*://)?[^\s:/]+(?::\d+)?")


@dataclass(frozen=True)
class ClusterAddress:
    """Where runs go: a scheduler's address, or ``local:N`` (``local_workers`` = N)."""

    text: str
    local_workers: int = 0

    @property
    def is_local(self) -> bool:
        return self.local_workers > 0


def parse_address(text: str) -> ClusterAddress:
    """``tcp://host:8786`` (any dask address) or ``local:N``; anything else is a ConfigError."""
    text = text.strip()
    local = _LOCAL.fullmatch(text)
    if local:
        if int(local.group(1)) < 1:
            raise ConfigError(f"--cluster {text}: local:N needs N >= 1 workers")
        return ClusterAddress(text, int(local.group(1)))
    if text.startswith("local") or not _REMOTE.fullmatch(text):
        raise ConfigError(f"--cluster expects a scheduler address such as tcp://host:8786, or "
                          f"local:N, not {text!r}")
    return ClusterAddress(text)


class Cluster:
    """A connection to a dask cluster that runs grid cells (see the module docstring).

    Use :func:`connect`, which closes it (and a ``local:N`` cluster's processes) at the end.
    """

    def __init__(self, client: Any, address: ClusterAddress, *,
                 plugins: Sequence[PluginFile] = (), data_dir: str | None = None) -> None:
        self.client = client
        self.address = address
        self.plugins = tuple(plugins)
        self._plugin_paths = {plugin.sha256: plugin.client_path for plugin in self.plugins}
        self.data_dir = data_dir if address.is_local else None  # a remote node has its own
        self.task_configs: dict[str, RunConfig] = {}
        """Task key -> the run it computes, for every task submitted (tests read it)."""

    # -- workers -------------------------------------------------------------------

    def workers(self) -> dict[str, str]:
        """Address -> host of every worker offering the ``machine`` resource now."""
        facts = self.client.run(worker_facts, on_error="ignore")
        return {address: host for address, (host, slots) in facts.items() if slots >= 1}

    def wait_for_workers(self, timeout_s: float | None = None) -> dict[str, str]:
        """The workers offering ``machine=1``, waiting up to ``timeout_s`` for one (default:
        :data:`WORKER_WAIT_S`)."""
        timeout_s = WORKER_WAIT_S if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        while True:
            workers = self.workers()
            if workers:
                return workers
            if time.monotonic() > deadline:
                command = WORKER_COMMAND.format(address=self.address.text)
                raise ConfigError(f"no worker of the scheduler at {self.address.text} offers the "
                                  f"resource {RESOURCE}=1 after {timeout_s:g} s; start one per "
                                  f"node with: {command}")
            time.sleep(_POLL_S)

    def warnings(self, workers: dict[str, str]) -> list[str]:
        """What makes this cluster's timings doubtful: several timed runs sharing one machine."""
        if self.address.is_local and self.address.local_workers > 1:
            return [f"warning: {self.address.text} runs {self.address.local_workers} timed runs "
                    f"at once on this machine's cores, so they slow each other down: its times "
                    f"and speedups mean little; use it to check the set-up, not to measure"]
        by_host: dict[str, list[str]] = {}
        for address, host in workers.items():
            by_host.setdefault(host, []).append(address)
        command = WORKER_COMMAND.format(address="ADDRESS")
        return [f"warning: {len(addresses)} workers on host {host} run timed runs at once "
                f"on its cores; start one worker per node ({command})"
                for host, addresses in by_host.items() if len(addresses) > 1]

    def check_can_run(self, cells: Sequence[RunConfig],
                      check: Callable[[Any, Sequence[RunConfig]], None]) -> None:
        """Refuse the grid before its first run if a worker cannot run a cell (data, preflight).

        Every worker connected now loads the plugins and workloads and runs
        ``check`` (:func:`~asgdbench.study.grid.check_can_run`) on its own machine; the
        first refusal is one line naming the worker's host.
        """
        self.wait_for_workers()
        answers = self.client.run(check_on_worker, check, list(cells), self.plugins, self.data_dir,
                                  on_error="return")
        for address, answer in sorted(answers.items()):
            if isinstance(answer, BaseException):
                raise ConfigError(f"worker {address}: {type(answer).__name__}: {answer}")
            if answer is not None:
                raise ConfigError(f"worker {address}: {answer}")

    # -- runs --------------------------------------------------------------------------

    def run_cells(self, cells: Sequence[RunConfig], run: Callable[[Any, RunConfig], RunResult],
                  on_result: Callable[[RunResult], None], *, progress: Any = None) -> None:
        """Run the cells as tasks, each by ``run(workload, config)`` (picklable: a module's
        function, :func:`~asgdbench.study.grid.run_cell`); hand over each result (or error
        record) as it arrives.

        ``progress`` (a tqdm bar, optional) advances once per cell. Ctrl-C
        cancels the tasks not finished and propagates; results handed over
        before it are the caller's. If no worker offers ``machine=1`` for
        :data:`WORKER_WAIT_S`, the unfinished tasks are cancelled and a
        ConfigError says how many runs are left for ``--resume``.
        """
        attempts: dict[Any, tuple[RunConfig, list[dict]]] = {}  # future -> run, failures so far
        for config in cells:
            attempts[self._submit(run, config, avoid=())] = (config, [])
        idle_since = time.monotonic()
        try:
            while attempts:
                done = [future for future in attempts if future.done()]
                if not done:
                    time.sleep(_POLL_S)
                    idle_since = self._check_alive(idle_since, len(attempts))
                    continue
                idle_since = time.monotonic()
                for future in done:
                    config, failures = attempts.pop(future)
                    result = self._settle(future, config, failures)
                    if result is None:  # failed once: one more try, elsewhere
                        attempts[self._submit(run, config, avoid=[f["worker"] for f in failures])] = \
                            (config, failures)
                        continue
                    on_result(result)
                    if progress is not None:
                        progress.update()
        except BaseException:
            self.client.cancel(list(attempts), force=True)
            raise

    def _submit(self, run: Callable[[Any, RunConfig], RunResult], config: RunConfig, *,
                avoid: Sequence[str]) -> Any:
        """One task for ``config``; after a failure, on a worker other than ``avoid`` if any."""
        others = [address for address in self.workers() if address not in avoid] if avoid else []
        key = f"asgdbench-run-{uuid.uuid4().hex}"
        self.task_configs[key] = config
        # A preference, not a pin: if those workers leave, any worker may take it.
        placement = {"workers": others, "allow_other_workers": True} if others else {}
        return self.client.submit(run_on_worker, run, config, self.plugins, self.data_dir, key=key,
                                  pure=False, resources={RESOURCE: 1}, retries=0, **placement)

    def _settle(self, future: Any, config: RunConfig, failures: list[dict]) -> RunResult | None:
        """The run's result, its error record after a second failure, or None: try again."""
        from distributed import KilledWorker

        if future.status == "finished":
            answer = future.result()
            if "result" in answer:
                return self._from_worker(answer["result"])
            failures.append(answer)
        else:
            error = future.exception() if future.status == "error" else None
            if isinstance(error, KilledWorker):  # the scheduler has retried it already
                return error_result(config, f"the worker running it died ({error})")
            reason = f"{type(error).__name__}: {error}" if error else f"task {future.status}"
            failures.append({"failed": reason, "worker": "", "host": ""})
        if len(failures) < 2:
            return None
        reasons = "; then ".join(f["failed"] + (f" (on {f['host']}, worker {f['worker']})"
                                                if f["worker"] else "") for f in failures)
        return error_result(config, f"failed twice: {reasons}", host=failures[-1]["host"])

    def _from_worker(self, data: dict) -> RunResult:
        """A worker's result, with a shipped plugin's source named by its path on the client."""
        result = RunResult.from_dict(data)
        for source in (result.strategy_source, result.workload_source):
            if source.get("kind") == "file" and source.get("sha256") in self._plugin_paths:
                source["path"] = self._plugin_paths[source["sha256"]]
        return result

    def _check_alive(self, idle_since: float, left: int) -> float:
        """Give up when no worker has offered ``machine=1`` for :data:`WORKER_WAIT_S`."""
        if time.monotonic() - idle_since < WORKER_WAIT_S:
            return idle_since
        if self.workers():
            return time.monotonic()
        raise ConfigError(f"the cluster at {self.address.text} has had no worker with "
                          f"{RESOURCE}=1 for {WORKER_WAIT_S:g} s; {left} run(s) are not done; "
                          f"start workers and repeat the command with --resume")


@contextmanager
def connect(address: ClusterAddress | str, *, plugin_files: Sequence[str | Path] = (),
            data_dir: str | None = None) -> Iterator[Cluster]:
    """Connect to the scheduler, or start ``local:N`` on 127.0.0.1; close everything at the end.

    An unreachable scheduler, a missing ``distributed`` package or a cluster
    without a ``machine=1`` worker is a ConfigError (one line, exit 2).
    """
    if isinstance(address, str):
        address = parse_address(address)
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError(f"--cluster needs dask.distributed: {INSTALL_HINT}") from None
    plugins = [PluginFile.read(path) for path in plugin_files]
    local = None
    try:
        if address.is_local:
            local = start_local(address.local_workers)
            client = Client(local, set_as_default=False)
        else:
            client = Client(address.text, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as error:
        if local is not None:
            local.close()
        raise ConfigError(f"cannot reach the dask scheduler at {address.text} "
                          f"({one_line(error)})") from None
    cluster = Cluster(client, address, plugins=plugins, data_dir=data_dir)
    try:
        yield cluster
    finally:
        client.close()
        if local is not None:
            local.close()


def start_local(workers: int) -> Any:
    """The ``LocalCluster`` of ``local:N``: N processes on 127.0.0.1 with ``machine=1`` each.

    A run whose worker dies is retried once (``allowed-failures`` 1); the
    dashboard listens on 127.0.0.1 only; no memory limit (the preflight checks
    memory, and a paused worker would stall a timed run).
    """
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            host="127.0.0.1", dashboard_address="127.0.0.1:0",
                            resources={RESOURCE: 1}, memory_limit=0,
                            silence_logs=logging.ERROR, preload=["asgdbench.study.cluster_worker"])


