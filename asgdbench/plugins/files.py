"""Drop-in plugin files (``--plugin FILE``): executed once, their registrations attributed to them."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

from asgdbench.errors import ConfigError, PluginError
from asgdbench.plugins.registry import registering_from


def load_plugin_file(path: str | Path) -> None:
    """Execute a drop-in plugin file, which registers its strategies or workloads on import.

    Every failure (no such file, a syntax error, an exception while importing,
    a bad registration) is a :class:`PluginError` naming the file; the original
    exception is its ``__cause__`` (``--debug`` shows it).
    """
    from asgdbench.plugins.strategies import available_strategies
    from asgdbench.plugins.workloads import available_workloads

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"plugin file {str(path)!r} is a folder: name the .py file in it")
    if not path.is_file():
        raise ConfigError(f"plugin file {str(path)!r} does not exist")
    available_strategies()  # discover the built-ins first, so that a clash is seen
    available_workloads()
    module_name = f"asgdbench_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"plugin file {str(path)!r} is not a Python module")
    source = {"kind": "file", "path": str(path.resolve()),
              "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        with registering_from(source):
            spec.loader.exec_module(module)
    except PluginError:
        raise
    except SyntaxError as error:
        raise PluginError(f"plugin file {path}: syntax error at line {error.lineno}: "
                          f"{error.msg}") from error
    except Exception as error:
        raise PluginError(f"plugin file {path} failed while importing: "
                          f"{type(error).__name__}: {error}") from error
