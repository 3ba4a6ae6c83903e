"""The data folder and reading files from it: where downloaded data sets live, and their bytes
read, decompressed and verified, every problem a one-line :class:`DataError`."""

from __future__ import annotations

import gzip
import hashlib
import os
import pathlib
import zlib
from collections.abc import Mapping

import numpy as np
import platformdirs

from asgdbench.errors import DataError, one_line

DATA_ENV_VAR = "ASGDBENCH_DATA"


def resolve_data_dir(explicit: str | os.PathLike | None = None) -> pathlib.Path:
    """Folder that holds downloaded data sets: the argument, else $ASGDBENCH_DATA, else the user cache.

    The folder is not created here, so that merely loading never writes anything.
    """
    if explicit is not None:
        return pathlib.Path(explicit).expanduser()
    from_env = os.environ.get(DATA_ENV_VAR)
    if from_env:
        return pathlib.Path(from_env).expanduser()
    return pathlib.Path(platformdirs.user_cache_dir("asgdbench"))


def read_bytes(path: pathlib.Path, title: str) -> bytes:
    """File content, with a missing or unreadable file reported as a DataError."""
    try:
        return path.read_bytes()
    except FileNotFoundError as err:
        raise DataError(f"{title} file {path} is missing") from err
    except OSError as err:
        raise DataError(f"{title} file {path} cannot be read ({one_line(err)})") from err


def gunzip(data: bytes, source: str) -> bytes:
    """Decompressed gzip bytes; a cut-off or damaged stream becomes a DataError naming the source."""
    try:
        return gzip.decompress(data)
    except EOFError as err:
        raise DataError(f"{source} is truncated (the gzip stream ends early)") from err
    except (gzip.BadGzipFile, zlib.error) as err:
        raise DataError(f"{source} is not a valid gzip file ({one_line(err)})") from err


def check_sha256(raw: bytes, name: str, source: str, checksums: Mapping[str, str]) -> None:
    """Reject content that is not the published file `name`, whatever its gzip wrapping."""
    expected = checksums[name]
    actual = hashlib.sha256(raw).hexdigest()
    if actual != expected:
        raise DataError(
            f"{source} fails its checksum "
            f"(SHA-256 of the content is {actual}, expected {expected})"
        )


def scaled_pixels(pixels: np.ndarray, dtype) -> np.ndarray:
    """uint8 pixels as C-contiguous floats in [0, 1], converted once (no float64 detour for float32)."""
    X = np.empty(pixels.shape, dtype=dtype)
    np.multiply(pixels, 1.0 / 255.0, out=X, casting="unsafe")
    return X
