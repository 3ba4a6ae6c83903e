"""What a dask worker runs for ``--cluster`` (:mod:`.cluster` is the client's side): its
preload hook, a run as a task, the preflight of its cells, the ``--plugin`` files shipped
to it, loaded once per version. Every failure is answered as a one-line reason, not raised,
so that the client learns which worker failed."""

from __future__ import annotations

import hashlib
import math
import os
import signal
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from asgdbench.engine.run_result import RunConfig, RunResult
from asgdbench.engine.statistics import histogram_summary
from asgdbench.errors import ConfigError, UserError, one_line

RESOURCE = "machine"
"""The worker resource each run needs one of: a worker with one runs one timed run at a time."""


@dataclass(frozen=True)
class PluginFile:
    """A ``--plugin`` file as it travels to the workers: its bytes, hash and client path."""

    name: str
    data: bytes
    sha256: str
    client_path: str

    @classmethod
    def read(cls, path: str | Path) -> "PluginFile":
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise ConfigError(f"plugin file {str(path)!r} cannot be read "
                              f"({error.strerror or type(error).__name__})") from None
        return cls(path.name, data, hashlib.sha256(data).hexdigest(), str(path.resolve()))


def dask_setup(worker: Any) -> None:
    """Preload hook of ``local:N``'s workers: a terminal's Ctrl-C reaches them too, but it is
    the client's to handle (it cancels the tasks and closes them), not theirs to print."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def error_result(config: RunConfig, reason: str, *, host: str = "") -> RunResult:
    """The record of a run that never produced a result: ``status: error`` and why."""
    return RunResult(
        config=config, status="error", wall_s=0.0, time_to_target_s=None, steps_to_target=None,
        updates_applied=0, gradients_computed=0, gradients_dropped=0, updates_per_s=0.0,
        per_thread_updates=[], per_thread_gradients=[], loss_trace=[],
        staleness=histogram_summary(np.zeros(1, dtype=np.int64), None), cas=None,
        peak_param_vectors=0, peak_param_bytes=0, initial_loss=math.nan, final_loss=None,
        test_loss=None, test_accuracy=None, compile_s=0.0,
        environment={"host": host} if host else {}, error=reason)


def run_on_worker(run: Callable[[Any, RunConfig], RunResult], config: RunConfig,
                  plugins: Sequence[PluginFile], data_dir: str | None) -> dict[str, Any]:
    """A task: run one cell here; ``{"result": run}`` or ``{"failed": one line, ...}``.

    Failures are answered, not raised, so that the client learns which worker
    failed and can retry elsewhere; the run's environment names the worker.
    """
    worker, host = _this_worker(), socket.gethostname()
    try:
        load_plugins(plugins)
        result = run(_workload(config.workload, config.dtype, data_dir), config)
    except UserError as error:
        return {"failed": one_line(error), "worker": worker, "host": host}
    except Exception as error:  # anything else a run can raise: the client records it
        return {"failed": f"{type(error).__name__}: {error}", "worker": worker, "host": host}
    result.environment.update(dask_worker=worker, worker_pid=os.getpid())
    return {"result": result.to_dict()}


def check_on_worker(check: Callable[[Any, Sequence[RunConfig]], None],
                     cells: Sequence[RunConfig], plugins: Sequence[PluginFile],
                     data_dir: str | None) -> str | None:
    """Preflight on one worker (``Client.run``): None, or the one-line reason it refuses."""
    try:
        load_plugins(plugins)
        for name, dtype in dict.fromkeys((c.workload, c.dtype) for c in cells):
            check(_workload(name, dtype, data_dir),
                               [c for c in cells if (c.workload, c.dtype) == (name, dtype)])
    except UserError as error:
        return f"{socket.gethostname()}: {one_line(error)}"
    return None


def worker_facts(dask_worker: Any) -> tuple[str, float]:
    """This worker's host and how many ``machine`` slots it offers (``Client.run``)."""
    return socket.gethostname(), float(dask_worker.state.total_resources.get(RESOURCE, 0))


def _this_worker() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):  # called outside a worker (a test, a debugger)
        return ""


@lru_cache(maxsize=8)
def _workload(name: str, dtype: str, data_dir: str | None) -> Any:
    """A workload loaded once per worker process, so its kernels compile once."""
    from asgdbench.plugins.workloads import load_workload

    return load_workload(name, data_dir=data_dir, dtype=dtype)


_LOADED: dict[str, str] = {}
"""Plugin file name -> SHA-256 of the version this process loaded."""


def load_plugins(plugins: Sequence[PluginFile]) -> None:
    """Load shipped plugin files not yet loaded in this process (see :func:`load_plugin_file`)."""
    from asgdbench.plugins.files import load_plugin_file

    for plugin in plugins:
        loaded = _LOADED.get(plugin.name)
        if loaded == plugin.sha256:
            continue
        if loaded is not None:
            raise ConfigError(f"this worker already loaded another version of plugin "
                              f"{plugin.name}; restart the workers to load the edited file")
        folder = Path(tempfile.gettempdir()) / "asgdbench-plugins" / plugin.sha256
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / plugin.name
        if not path.exists():
            scratch = folder / f".{plugin.name}.{uuid.uuid4().hex}"
            scratch.write_bytes(plugin.data)
            scratch.replace(path)  # atomic: workers on one node may write it at once
        load_plugin_file(path)
        _LOADED[plugin.name] = plugin.sha256
