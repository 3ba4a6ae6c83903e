"""Fetching one file into the data folder, shared by every download (dense and sparse sets).

pooch does the transfer, the checksum, the retries and the progress bar; a download is staged
next to its target (:class:`StagingFolder`) and moved into place only once verified
(:func:`move_into_place`), so nothing half-written is ever left; a data set's folder that a
failed download created goes again (:func:`new_folder`). Every failure is a one-line
``DataError``.
"""

from __future__ import annotations

import os
import pathlib
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from asgdbench.errors import DataError, one_line
from asgdbench.workloads.data_folder import DATA_ENV_VAR

DOWNLOAD_RETRIES = 2
"""Further attempts per URL after a failed or corrupt transfer (pooch waits 1 s, 2 s, ... between);
read when a download starts, so tests can set it to 0."""


def fetch(url: str, staging: pathlib.Path, known_hash: str | None, timeout: float,
          retries: int | None, progress: bool) -> pathlib.Path:
    """Download ``url`` into ``staging`` with pooch (hash check, retries); network errors as DataError."""
    import pooch  # only when downloading
    import requests

    if retries is None:
        retries = DOWNLOAD_RETRIES
    pooch.get_logger().setLevel("WARNING")
    file_name = url.rsplit("/", 1)[-1]
    fetcher = pooch.create(path=staging, base_url="", registry={file_name: known_hash},
                           urls={file_name: url}, retry_if_failed=retries)
    try:
        return pathlib.Path(fetcher.fetch(
            file_name, downloader=pooch.HTTPDownloader(progressbar=progress, timeout=timeout)))
    except (ValueError, OSError, requests.RequestException) as err:
        # pooch reports a checksum mismatch as ValueError; requests its HTTP and connection errors
        raise DataError(f"{url}: {one_line(err)}") from err


class StagingFolder:
    """A fresh hidden folder inside ``folder`` for one download, removed whatever happens.

    Downloads land there first, on the same file system as their target, so
    the final move is a rename; an error or Ctrl-C leaves nothing behind.
    """

    def __init__(self, folder: pathlib.Path) -> None:
        self.path = folder / f".download-{os.getpid()}"

    def __enter__(self) -> pathlib.Path:
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir()
        return self.path

    def __exit__(self, *exc_info: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


@contextmanager
def new_folder(folder: pathlib.Path, title: str) -> Iterator[pathlib.Path]:
    """``folder``, created if need be; if the block fails, the folders it created go again.

    A failed download (no network, a bad checksum, Ctrl-C) leaves the data
    folder as it found it, not with an empty ``mnist/`` in it.
    """
    created = [parent for parent in [folder, *folder.parents] if not parent.exists()]
    make_folder(folder, title)
    try:
        yield folder
    except BaseException:
        for path in created:  # deepest first
            try:
                path.rmdir()  # only if empty: never removes anything the user had
            except OSError:
                break
        raise


def make_folder(folder: pathlib.Path, title: str) -> pathlib.Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(
            f"cannot create the {title} folder {folder} ({one_line(err)}); "
            f"pass another folder or set {DATA_ENV_VAR}"
        ) from err
    return folder


def move_into_place(source: pathlib.Path, target: pathlib.Path) -> None:
    """Rename a verified download to its final name (same file system: atomic)."""
    try:
        os.replace(source, target)
    except OSError as err:
        raise DataError(
            f"cannot write {target} ({one_line(err)}); check the folder's permissions and free space"
        ) from err
