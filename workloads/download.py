"""Fetching the data sets that are files into the data folder: MNIST, Fashion-MNIST, CIFAR-10
here, RCV1 and MovieLens-100K in :mod:`.sparse_files`; ``asgdbench download NAME``.

Every download goes through :mod:`.fetching` (pooch, a staging folder, checksums): nothing
half-written is ever left. Every failure is a one-line ``DataError``.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tarfile
import zlib
from collections.abc import Callable, Sequence

from asgdbench.errors import ConfigError, DataError, one_line
from asgdbench.workloads.cifar10 import (
    CIFAR10_FOLDER,
    CIFAR10_MD5,
    CIFAR10_TEST,
    CIFAR10_TRAIN,
    CIFAR10_URL,
    read_cifar10_batch,
)
from asgdbench.workloads.data_folder import check_sha256, gunzip, read_bytes, resolve_data_dir
from asgdbench.workloads.fetching import StagingFolder, fetch, move_into_place, new_folder
from asgdbench.workloads.idx_files import (
    FASHION_MNIST,
    MNIST,
    MNIST_MIRRORS,
    IdxSource,
    read_verified,
)


def download(name: str, data_dir: str | os.PathLike | None = None, *, progress: bool = False
             ) -> pathlib.Path:
    """Fetch the data set ``name`` (see :data:`DOWNLOADS`) into the data folder; its folder."""
    if name not in DOWNLOADS:
        raise ConfigError(f"unknown data set {name!r} (valid: {', '.join(DOWNLOADS)})")
    return DOWNLOADS[name](data_dir, progress=progress)


def download_mnist(data_dir: str | os.PathLike | None = None, mirrors: Sequence[str] = MNIST_MIRRORS,
                   timeout: float = 30.0, *, retries: int | None = None,
                   progress: bool = False) -> pathlib.Path:
    """Fetch the four MNIST files into <data_dir>/mnist/ and return that folder."""
    return download_idx_set(MNIST, data_dir, mirrors, timeout, retries=retries, progress=progress)


def download_fashion_mnist(data_dir: str | os.PathLike | None = None,
                           mirrors: Sequence[str] = FASHION_MNIST.mirrors, timeout: float = 30.0, *,
                           retries: int | None = None, progress: bool = False) -> pathlib.Path:
    """Fetch the four Fashion-MNIST files into <data_dir>/fashion-mnist/ and return that folder."""
    return download_idx_set(FASHION_MNIST, data_dir, mirrors, timeout, retries=retries,
                            progress=progress)


def download_idx_set(source: IdxSource, data_dir: str | os.PathLike | None,
                     mirrors: Sequence[str], timeout: float, *, retries: int | None = None,
                     progress: bool = False) -> pathlib.Path:
    """Fetch an IDX data set's four files into <data_dir>/<name>/ and return that folder.

    Files already there and intact are kept. Each file comes from the first
    mirror that serves a copy with the right content; it is moved under its
    final name only once verified.
    """
    if not mirrors:
        raise ConfigError(f"no {source.title} mirrors given; pass at least one base URL")
    with new_folder(resolve_data_dir(data_dir) / source.name, source.title) as folder:
        _download_idx_files(source, folder, mirrors, timeout, retries, progress)
    return folder


def _download_idx_files(source: IdxSource, folder: pathlib.Path, mirrors: Sequence[str],
                        timeout: float, retries: int | None, progress: bool) -> None:
    for file_name in source.files:
        target = folder / file_name
        if _is_intact(target, source):
            continue
        with StagingFolder(folder) as staging:
            problems: list[str] = []
            for mirror in mirrors:
                url = (mirror if mirror.endswith("/") else f"{mirror}/") + file_name
                try:
                    fetched = fetch(url, staging, None, timeout, retries, progress)
                    raw = gunzip(read_bytes(fetched, source.title), url)
                    check_sha256(raw, file_name.removesuffix(".gz"), url, source.sha256)
                except DataError as err:
                    problems.append(str(err))
                    shutil.rmtree(staging, ignore_errors=True)  # the next mirror starts afresh
                    staging.mkdir()
                    continue
                move_into_place(fetched, target)
                break
            else:
                raise DataError(
                    f"could not download {file_name} from any mirror ({'; '.join(problems)}); "
                    f"check the network connection, or copy the {source.title} .gz files into {folder}"
                )


def download_cifar10(data_dir: str | os.PathLike | None = None, url: str = CIFAR10_URL,
                     md5: str = CIFAR10_MD5, timeout: float = 60.0, *,
                     retries: int | None = None, progress: bool = False) -> pathlib.Path:
    """Fetch the CIFAR-10 binary archive, check its MD5 and unpack it into <data_dir>/cifar10/.

    Returns the folder holding the batch files. Nothing is fetched if they are
    already there and readable; the 170 MB archive is not kept once unpacked.
    """
    with new_folder(resolve_data_dir(data_dir) / "cifar10", "CIFAR-10") as root:
        return _download_cifar10_into(root, url, md5, timeout, retries, progress)


def _download_cifar10_into(root: pathlib.Path, url: str, md5: str, timeout: float,
                           retries: int | None, progress: bool) -> pathlib.Path:
    target = root / CIFAR10_FOLDER
    if _cifar10_is_intact(target):
        return target
    with StagingFolder(root) as staging:
        try:
            archive = fetch(url, staging, f"md5:{md5}", timeout, retries, progress)
        except DataError as err:
            raise DataError(f"could not download CIFAR-10 ({err}); check the network connection, "
                            f"or unpack cifar-10-binary.tar.gz into {root}") from err
        unpacked = _unpack_cifar10(archive, staging / "unpacked")
        if target.exists():
            shutil.rmtree(target)
        move_into_place(unpacked, target)
    return target


def _unpack_cifar10(archive: pathlib.Path, into: pathlib.Path) -> pathlib.Path:
    """Extract the batch files of the archive (nothing else, nothing outside ``into``); check them."""
    wanted = {f"{CIFAR10_FOLDER}/{name}" for name in (*CIFAR10_TRAIN, CIFAR10_TEST)}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name in wanted and m.isfile()]
            missing = wanted - {m.name for m in members}
            if missing:
                raise DataError(f"the CIFAR-10 archive {archive.name} lacks {', '.join(sorted(missing))}")
            for member in members:
                source = tar.extractfile(member)
                destination = into / member.name
                destination.parent.mkdir(parents=True, exist_ok=True)
                with source, open(destination, "wb") as out:
                    shutil.copyfileobj(source, out)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise DataError(f"the CIFAR-10 archive {archive.name} is damaged ({one_line(err)})") from err
    for name in (*CIFAR10_TRAIN, CIFAR10_TEST):  # raises on a damaged batch, saying which
        read_cifar10_batch(into / CIFAR10_FOLDER / name)
    return into / CIFAR10_FOLDER


def _cifar10_is_intact(folder: pathlib.Path) -> bool:
    """Whether every batch file is there with whole records and valid labels."""
    try:
        for name in (*CIFAR10_TRAIN, CIFAR10_TEST):
            read_cifar10_batch(folder / name)
    except DataError:
        return False
    return True


def _is_intact(path: pathlib.Path, source: IdxSource) -> bool:
    """Whether a file is already there with the published content, so need not be downloaded."""
    try:
        read_verified(path, source.sha256, source.title)
    except DataError:
        return False
    return True


DOWNLOADS: dict[str, Callable[..., pathlib.Path]] = {
    "cifar10": download_cifar10,
    "fashion-mnist": download_fashion_mnist,
    "mnist": download_mnist,
    "movielens-100k": lambda *args, **kwargs: _sparse_files().download_movielens(*args, **kwargs),
    "rcv1": lambda *args, **kwargs: _sparse_files().download_rcv1(*args, **kwargs),
}


def _sparse_files():
    """The sparse data sets' module, imported when one is fetched: it loads numba and SciPy,
    which `asgdbench --help`, `list` and `report` must not (tests/test_loop_cache.py)."""
    from asgdbench.workloads import sparse_files

    return sparse_files
