"""The sparse data sets that are files: RCV1 (binary CCAT task) and MovieLens-100K.

Both are fetched into the data folder by the project's download machinery
(:mod:`asgdbench.workloads.fetching`: pooch, staging, checksums, nothing half-written;
``asgdbench download rcv1``, ``asgdbench download movielens-100k``) and
read from there; every problem is a one-line :class:`DataError` that says how to fix it.

RCV1 comes as scikit-learn's ``fetch_rcv1`` gets it: five svmlight vector files and the
topic assignments, at the URLs and SHA-256 sums of ``sklearn/datasets/_rcv1.py``. The
parsed split is kept in the cache folder, as parsing 800,000 documents takes a while.
MovieLens-100K comes as GroupLens's ``ml-100k.zip``, whose own checksum is not published:
the extracted ``u.data`` is checked instead.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import zipfile
from dataclasses import dataclass

import numpy as np

from asgdbench.errors import ConfigError, DataError, one_line
from asgdbench.workloads.data_folder import DATA_ENV_VAR, check_sha256, read_bytes, resolve_data_dir
from asgdbench.workloads.fetching import StagingFolder, fetch, move_into_place, new_folder
from asgdbench.workloads.sparse_data import (
    RCV1_N_FEATURES,
    CsrRows,
    RatingDataset,
    SparseDataset,
    kept_arrays,
    parse_movielens,
    sparse_dataset,
    split_ratings,
)


@dataclass(frozen=True)
class RemoteFile:
    """A file to fetch: its name in the data folder, where it is, the SHA-256 of its bytes."""

    name: str
    url: str
    sha256: str


# From scikit-learn's sklearn/datasets/_rcv1.py (XY_METADATA, TOPICS_METADATA).
RCV1_TEST_PARTS = (
    RemoteFile("lyrl2004_vectors_test_pt0.dat.gz", "https://ndownloader.figshare.com/files/5976069",
               "ed40f7e418d10484091b059703eeb95ae3199fe042891dcec4be6696b9968374"),
    RemoteFile("lyrl2004_vectors_test_pt1.dat.gz", "https://ndownloader.figshare.com/files/5976066",
               "87700668ae45d45d5ca1ef6ae9bd81ab0f5ec88cc95dcef9ae7838f727a13aa6"),
    RemoteFile("lyrl2004_vectors_test_pt2.dat.gz", "https://ndownloader.figshare.com/files/5976063",
               "48143ac703cbe33299f7ae9f4995db49a258690f60e5debbff8995c34841c7f5"),
    RemoteFile("lyrl2004_vectors_test_pt3.dat.gz", "https://ndownloader.figshare.com/files/5976060",
               "dfcb0d658311481523c6e6ca0c3f5a3e1d3d12cde5d7a8ce629a9006ec7dbb39"),
)
RCV1_TRAIN = RemoteFile("lyrl2004_vectors_train.dat.gz",
                        "https://ndownloader.figshare.com/files/5976057",
                        "5468f656d0ba7a83afc7ad44841cf9a53048a5c083eedc005dcdb5cc768924ae")
RCV1_TOPICS = RemoteFile("rcv1v2.topics.qrels.gz", "https://ndownloader.figshare.com/files/5976048",
                         "2a98e5e5d8b770bded93afc8930d88299474317fe14181aee1466cc754d0d1c1")


@dataclass(frozen=True)
class Rcv1Source:
    """Where RCV1's files are: the official LYRL2004 training part, the four test parts, and
    the topic assignments (tests substitute small files served from 127.0.0.1)."""

    train: RemoteFile = RCV1_TRAIN
    test_parts: tuple[RemoteFile, ...] = RCV1_TEST_PARTS
    topics: RemoteFile = RCV1_TOPICS

    @property
    def files(self) -> tuple[RemoteFile, ...]:
        return (self.train, *self.test_parts, self.topics)


RCV1 = Rcv1Source()
RCV1_FOLDER = "rcv1"
RCV1_CATEGORY = "CCAT"  # the binary task: is the document about corporate/industrial news
RCV1_SPLITS = ("hogwild", "lyrl")
_GET_RCV1 = (f"run `asgdbench download rcv1` or set {DATA_ENV_VAR} to a folder containing "
             f"{RCV1_FOLDER}/ with scikit-learn's RCV1 files")

MOVIELENS_100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
MOVIELENS_MEMBER = "ml-100k/u.data"
MOVIELENS_U_DATA_SHA256 = "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"
MOVIELENS_FOLDER = "movielens-100k"
MOVIELENS_MAX_BYTES = 64 << 20  # u.data is 1.9 MB: a bigger member is not it (nor a zip bomb)
_GET_MOVIELENS = (f"run `asgdbench download movielens-100k` or set {DATA_ENV_VAR} to a folder "
                  f"containing {MOVIELENS_FOLDER}/u.data")


def file_sha256(path: pathlib.Path) -> str | None:
    """The SHA-256 of a file's bytes, or None if it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


# --- RCV1 ----------------------------------------------------------------------------------


def download_rcv1(data_dir: str | os.PathLike | None = None, source: Rcv1Source = RCV1,
                  timeout: float = 60.0, *, retries: int | None = None,
                  progress: bool = False) -> pathlib.Path:
    """Fetch RCV1's six files into <data_dir>/rcv1/ (intact ones are kept); that folder."""
    with new_folder(resolve_data_dir(data_dir) / RCV1_FOLDER, "RCV1") as folder:
        for remote in source.files:
            target = folder / remote.name
            if file_sha256(target) == remote.sha256:
                continue
            with StagingFolder(folder) as staging:
                try:
                    fetched = fetch(remote.url, staging, f"sha256:{remote.sha256}", timeout,
                                     retries, progress)
                except DataError as err:
                    raise DataError(f"could not download RCV1's {remote.name} ({err}); check the "
                                    f"network connection, or copy scikit-learn's RCV1 files "
                                    f"into {folder}") from err
                move_into_place(fetched, target)
    return folder


def load_rcv1(data_dir: str | os.PathLike | None = None, *, split: str = "hogwild",
              source: Rcv1Source = RCV1) -> SparseDataset:
    """RCV1's binary CCAT task (+1: the document is in CCAT) on 47,236 tf-idf features.

    ``split="hogwild"`` trains on the 781,265 documents of LYRL2004's test parts and tests on
    its 23,149 training documents, as Niu et al. did; ``"lyrl"`` is the official way round.
    The files are checked against their SHA-256 on every load; the parsed split is kept.
    """
    if split not in RCV1_SPLITS:
        raise ConfigError(f"unknown RCV1 split {split!r} (valid: {', '.join(RCV1_SPLITS)})")
    folder = resolve_data_dir(data_dir) / RCV1_FOLDER
    for remote in source.files:
        path = folder / remote.name
        actual = file_sha256(path)
        if actual is None:
            raise DataError(f"RCV1 file {path} is missing or unreadable; {_GET_RCV1}")
        if actual != remote.sha256:
            raise DataError(f"RCV1 file {path} fails its checksum (SHA-256 {actual}, expected "
                            f"{remote.sha256}); {_GET_RCV1}")
    arrays = kept_arrays("rcv1", lambda: _parse_rcv1(folder, source),
                         files=tuple(remote.sha256 for remote in source.files),
                         parser=file_sha256(pathlib.Path(__file__)))
    parts = {}
    for part in ("lyrl_train", "lyrl_test"):
        parts[part] = (CsrRows(arrays[f"{part}_indptr"], arrays[f"{part}_indices"],
                               arrays[f"{part}_values"], RCV1_N_FEATURES),
                       arrays[f"{part}_labels"])
    train, test = ("lyrl_test", "lyrl_train") if split == "hogwild" else ("lyrl_train", "lyrl_test")
    return sparse_dataset(f"rcv1-{split}", *parts[train], *parts[test])


def _parse_rcv1(folder: pathlib.Path, source: Rcv1Source) -> dict[str, np.ndarray]:
    """The two LYRL2004 parts as CSR arrays with ±1 CCAT labels, parsed as ``fetch_rcv1``
    parses them (its ``load_svmlight_files`` call: the target column is the document id)."""
    import scipy.sparse as sp
    from sklearn.datasets import load_svmlight_files

    vectors = [source.train, *source.test_parts]
    paths = [str(folder / remote.name) for remote in vectors]
    try:
        parsed = load_svmlight_files(paths, n_features=RCV1_N_FEATURES)
    except (ValueError, OverflowError, RuntimeError, OSError, EOFError) as err:
        raise DataError(f"RCV1's vector files in {folder} cannot be parsed ({one_line(err)}); "
                        f"{_GET_RCV1}") from err
    in_category = _documents_in(folder / source.topics.name, RCV1_CATEGORY)
    arrays: dict[str, np.ndarray] = {}
    for part, matrices, ids in (("lyrl_train", [parsed[0]], [parsed[1]]),
                                ("lyrl_test", parsed[2::2], parsed[3::2])):
        rows = CsrRows.from_scipy(sp.vstack(matrices).tocsr(), RCV1_N_FEATURES)
        documents = np.concatenate(ids).astype(np.int64)
        arrays |= {f"{part}_indptr": rows.indptr, f"{part}_indices": rows.indices,
                   f"{part}_values": rows.values,
                   f"{part}_labels": np.where(np.isin(documents, in_category), 1.0, -1.0)}
    return arrays


def _documents_in(path: pathlib.Path, category: str) -> np.ndarray:
    """The ids of the documents the topics file (``CATEGORY DOC_ID 1`` lines, gzip) puts in
    ``category``."""
    import gzip

    documents = []
    prefix = f"{category} ".encode()
    try:
        with gzip.open(path, "rb") as lines:
            for line in lines:
                if line.startswith(prefix):
                    documents.append(int(line.split()[1]))
    except (OSError, EOFError, ValueError, IndexError) as err:
        raise DataError(f"RCV1 topics file {path} is damaged ({one_line(err)}); "
                        f"{_GET_RCV1}") from err
    return np.array(documents, dtype=np.int64)


# --- MovieLens-100K --------------------------------------------------------------------------


def download_movielens(data_dir: str | os.PathLike | None = None, url: str = MOVIELENS_100K_URL,
                       sha256: str = MOVIELENS_U_DATA_SHA256, timeout: float = 60.0, *,
                       retries: int | None = None, progress: bool = False) -> pathlib.Path:
    """Fetch GroupLens's ``ml-100k.zip``, check its ``u.data`` and keep only that file in
    <data_dir>/movielens-100k/; that folder. Nothing is fetched if ``u.data`` is intact."""
    with new_folder(resolve_data_dir(data_dir) / MOVIELENS_FOLDER, "MovieLens-100K") as folder:
        target = folder / "u.data"
        if file_sha256(target) == sha256:
            return folder
        with StagingFolder(folder) as staging:
            try:
                archive = fetch(url, staging, None, timeout, retries, progress)
            except DataError as err:
                raise DataError(f"could not download MovieLens-100K ({err}); check the network "
                                f"connection, or copy ml-100k/u.data into {folder}") from err
            raw = _read_member(archive, MOVIELENS_MEMBER)
            check_sha256(raw, "u.data", f"{url} ({MOVIELENS_MEMBER})", {"u.data": sha256})
            unpacked = staging / "u.data"
            unpacked.write_bytes(raw)
            move_into_place(unpacked, target)
    return folder


def _read_member(archive: pathlib.Path, member: str) -> bytes:
    try:
        with zipfile.ZipFile(archive) as zipped:
            info = zipped.getinfo(member)
            if info.file_size > MOVIELENS_MAX_BYTES:
                raise DataError(f"the MovieLens archive's {member} is {info.file_size} bytes, "
                                f"not MovieLens-100K's")
            return zipped.read(info)
    except KeyError as err:
        raise DataError(f"the MovieLens archive {archive.name} lacks {member}") from err
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise DataError(f"the MovieLens archive {archive.name} is damaged ({one_line(err)})") from err


def load_movielens(data_dir: str | os.PathLike | None = None, *, test_fraction: float = 0.1,
                   seed: int = 0, sha256: str = MOVIELENS_U_DATA_SHA256) -> RatingDataset:
    """MovieLens-100K's 100,000 ratings (1..5) of 1,682 movies by 943 users, from
    <data_dir>/movielens-100k/u.data after checking its SHA-256; a random split by ``seed``."""
    path = resolve_data_dir(data_dir) / MOVIELENS_FOLDER / "u.data"
    try:
        raw = read_bytes(path, "MovieLens-100K")
        check_sha256(raw, "u.data", f"MovieLens-100K file {path}", {"u.data": sha256})
        ratings, n_users, n_items = parse_movielens(raw, f"MovieLens-100K file {path}")
    except DataError as err:
        raise DataError(f"{err}; {_GET_MOVIELENS}") from err
    return split_ratings("movielens-100k", ratings, n_users, n_items, test_fraction, seed)
