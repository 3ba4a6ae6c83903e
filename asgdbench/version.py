"""The installed version of asgdbench (from the package metadata, so it is defined once: pyproject.toml)."""

from importlib import metadata

try:
    __version__ = metadata.version("asgdbench")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
