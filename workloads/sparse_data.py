"""Sparse data sets, held as CSR arrays a numba kernel reads directly (issue 22's data side).

Two kinds: classification rows (:class:`SparseDataset`: RCV1-like synthetic data, any
svmlight/LIBSVM file, RCV1 itself through :mod:`asgdbench.workloads.sparse_files`) and
ratings (:class:`RatingDataset`: a planted low-rank matrix, MovieLens-100K). Each carries
the per-feature (per-user, per-item) counts that the HOGWILD! paper's sparse regularizer
divides by, so that a kernel can keep every update on the coordinates an example touches.

Generated data are deterministic from the seed and kept in the cache folder (see
:func:`kept_arrays`); every problem with a file is a one-line :class:`DataError`.
"""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from asgdbench.errors import ConfigError, DataError, one_line

MAX_FEATURES = 100_000_000
"""The widest model a file may ask for: its weight vector alone is 800 MB in float64."""

MAX_GENERATED_NONZEROS = 100_000_000
"""The most non-zeros a generated data set may hold (1.2 GB of CSR arrays; all of RCV1 has 61M)."""
MAX_RATING_CELLS = 200_000_000
"""The largest users x items matrix the planted generator samples cells of (a byte per cell)."""

RCV1_N_FEATURES = 47_236


# --- types -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CsrRows:
    """Rows of a sparse matrix in CSR form: row ``i``'s columns are
    ``indices[indptr[i]:indptr[i+1]]`` (sorted, no repeats), its values alongside."""

    indptr: np.ndarray  # int64, n_rows + 1
    indices: np.ndarray  # int32, nnz
    values: np.ndarray  # float64, nnz
    n_features: int

    @property
    def n_rows(self) -> int:
        return int(self.indptr.shape[0] - 1)

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    @classmethod
    def from_scipy(cls, matrix, n_features: int | None = None) -> CsrRows:
        """A scipy sparse matrix in canonical CSR form (duplicates summed, columns sorted)."""
        import scipy.sparse as sp

        csr = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
        csr.sum_duplicates()  # also sorts each row's columns
        return cls(csr.indptr.astype(np.int64), csr.indices.astype(np.int32),
                   np.ascontiguousarray(csr.data, dtype=np.float64),
                   int(n_features if n_features is not None else csr.shape[1]))

    def to_scipy(self):
        import scipy.sparse as sp

        return sp.csr_matrix((self.values, self.indices, self.indptr),
                             shape=(self.n_rows, self.n_features))


@dataclass(frozen=True, eq=False)
class SparseDataset:
    """A binary classification split on sparse rows: labels are -1.0 or +1.0.

    ``feature_counts[j]`` is the number of training rows in which feature ``j`` is non-zero
    (the HOGWILD! paper's d_j).
    """

    name: str
    train: CsrRows
    y_train: np.ndarray  # float64, ±1
    test: CsrRows
    y_test: np.ndarray
    n_features: int
    feature_counts: np.ndarray  # int64, n_features

    @property
    def feature_frequency(self) -> np.ndarray:
        """The fraction of training rows in which each feature is non-zero."""
        return self.feature_counts / max(self.train.n_rows, 1)

    @property
    def inverse_frequency(self) -> np.ndarray:
        """``n_train / d_j``, the sparse regularizer's weight of feature ``j`` (0 where unseen,
        where no training example ever applies it), so that averaged over the training rows
        the per-example penalties add up to the plain ``||w||^2`` on the seen features."""
        return inverse_counts(self.feature_counts, self.train.n_rows)


@dataclass(frozen=True, eq=False)
class Ratings:
    """Observed entries of a rating matrix, one per index: ``(users[k], items[k]) -> values[k]``,
    zero-based ids."""

    users: np.ndarray  # int32
    items: np.ndarray  # int32
    values: np.ndarray  # float64

    @property
    def n_ratings(self) -> int:
        return int(self.values.shape[0])


@dataclass(frozen=True, eq=False)
class RatingDataset:
    """A rating matrix split into train and test entries; counts are of training ratings
    (the |Omega_u| and |Omega_i| the matrix completion penalties are scaled by)."""

    name: str
    train: Ratings
    test: Ratings
    n_users: int
    n_items: int
    user_counts: np.ndarray  # int64, n_users
    item_counts: np.ndarray  # int64, n_items


def inverse_counts(counts: np.ndarray, scale: int) -> np.ndarray:
    """``scale / counts``, 0 where a count is 0."""
    out = np.zeros(counts.shape, dtype=np.float64)
    seen = counts > 0
    out[seen] = scale / counts[seen]
    return out


def check_test_fraction(test_fraction: float) -> None:
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")


def sparse_dataset(name: str, train: CsrRows, y_train: np.ndarray, test: CsrRows,
                   y_test: np.ndarray) -> SparseDataset:
    """A :class:`SparseDataset`, its feature counts taken from the training rows."""
    counts = np.bincount(train.indices, minlength=train.n_features).astype(np.int64)
    return SparseDataset(name, train, np.ascontiguousarray(y_train, dtype=np.float64), test,
                         np.ascontiguousarray(y_test, dtype=np.float64), train.n_features, counts)


def rating_dataset(name: str, train: Ratings, test: Ratings, n_users: int,
                   n_items: int) -> RatingDataset:
    """A :class:`RatingDataset`, its user and item counts taken from the training ratings."""
    return RatingDataset(name, train, test, n_users, n_items,
                         np.bincount(train.users, minlength=n_users).astype(np.int64),
                         np.bincount(train.items, minlength=n_items).astype(np.int64))


# --- kept in the cache folder ------------------------------------------------------------


def kept_arrays(name: str, prepare: Callable[[], dict[str, np.ndarray]],
                **parameters: object) -> dict[str, np.ndarray]:
    """``prepare()``, kept as ``.npz`` in the cache folder under a key of everything that
    decides it (the parameters, this file's and ``prepare``'s module's source, NumPy's
    version).

    Generation is deterministic, so kept arrays are the very arrays ``prepare`` returns; a
    torn file is prepared again, and a folder that cannot be written only costs preparing
    again next time.
    """
    from asgdbench.caching import cache_folder, write_atomically

    function = getattr(prepare, "func", prepare)  # through functools.partial
    module = sys.modules.get(getattr(function, "__module__", None) or "")
    sources = sorted({__file__, getattr(module, "__file__", None) or __file__})
    key = hashlib.sha256(repr((name, sorted(parameters.items()), np.__version__,
                               [pathlib.Path(source).read_bytes() for source in sources])
                              ).encode()).hexdigest()[:32]
    path = cache_folder() / "datasets" / f"{name}-{key}.npz"
    try:
        with np.load(path) as kept:
            return {field: kept[field] for field in kept.files}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):  # not there, or torn
        pass
    arrays = prepare()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    try:
        write_atomically(path, buffer.getvalue())
    except OSError:
        pass
    return arrays


# --- any svmlight / LIBSVM file -----------------------------------------------------------


def load_svmlight(path: str | os.PathLike, *, test_fraction: float = 0.2, seed: int = 0,
                  n_features: int | None = None) -> SparseDataset:
    """A binary task from a LIBSVM/svmlight file, split at random into train and test.

    The larger of the two label values becomes +1, the smaller -1 (``{0, 1}``, ``{-1, 1}``
    and ``{1, 2}`` all work); a file with one label or more than two is refused, as is one
    that is missing, malformed, empty, or asks for more than :data:`MAX_FEATURES` features.
    """
    check_test_fraction(test_fraction)
    X, y = read_svmlight(path, n_features)
    labels = binary_labels(y, f"svmlight file {path}")
    if X.shape[0] < 2:
        raise DataError(f"svmlight file {path} has {X.shape[0]} example(s); "
                        f"a train/test split needs at least 2")
    order = np.random.default_rng(seed).permutation(X.shape[0])
    n_test = min(max(1, round(test_fraction * X.shape[0])), X.shape[0] - 1)
    test_rows, train_rows = order[:n_test], order[n_test:]
    return sparse_dataset(pathlib.Path(path).name, CsrRows.from_scipy(X[train_rows]),
                          labels[train_rows], CsrRows.from_scipy(X[test_rows]),
                          labels[test_rows])


def read_svmlight(path: str | os.PathLike, n_features: int | None = None):
    """``(X, y)`` of an svmlight file through scikit-learn, X as canonical CSR; problems as
    one-line DataErrors naming the file."""
    from sklearn.datasets import load_svmlight_file  # slow import: only here

    path = pathlib.Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "is missing"
        raise DataError(f"svmlight file {path} {what}")
    try:
        X, y = load_svmlight_file(str(path), n_features=n_features, dtype=np.float64)
    except (ValueError, OverflowError, RuntimeError, OSError, UnicodeDecodeError,
            EOFError) as err:
        raise DataError(f"svmlight file {path} is not a valid LIBSVM/svmlight file "
                        f"({one_line(err)})") from err
    if X.shape[0] == 0:
        raise DataError(f"svmlight file {path} holds no examples")
    if X.shape[1] > MAX_FEATURES:
        raise DataError(f"svmlight file {path} asks for {X.shape[1]} features, more than the "
                        f"{MAX_FEATURES} a weight vector may have")
    if not (np.all(np.isfinite(X.data)) and np.all(np.isfinite(y))):
        raise DataError(f"svmlight file {path} holds a value that is not finite (nan or inf)")
    X = X.tocsr()
    X.sum_duplicates()
    return X, y


def binary_labels(y: np.ndarray, source: str) -> np.ndarray:
    """Two label values mapped to -1.0 (the smaller) and +1.0 (the larger)."""
    values = np.unique(y)
    if values.shape[0] != 2:
        shown = ", ".join(f"{v:g}" for v in values[:5]) + (", ..." if values.shape[0] > 5 else "")
        raise DataError(f"{source} has {values.shape[0]} distinct label(s) ({shown}); "
                        f"only binary tasks (two label values) are supported")
    return np.where(y == values[1], 1.0, -1.0)


# --- ratings -----------------------------------------------------------------------------

MOVIELENS_100K_SHAPE = (943, 1682, 100_000)  # users, items, ratings
def split_ratings(name: str, ratings: Ratings, n_users: int, n_items: int,
                  test_fraction: float, seed: int) -> RatingDataset:
    """A random train/test split of the ratings, reproducible from ``seed``."""
    check_test_fraction(test_fraction)
    order = np.random.default_rng([seed, 2]).permutation(ratings.n_ratings)
    n_test = min(max(1, round(test_fraction * ratings.n_ratings)), ratings.n_ratings - 1)

    def part(rows: np.ndarray) -> Ratings:
        return Ratings(ratings.users[rows], ratings.items[rows], ratings.values[rows])

    return rating_dataset(name, part(order[n_test:]), part(order[:n_test]), n_users, n_items)


def parse_movielens(raw: bytes, source: str) -> tuple[Ratings, int, int]:
    """MovieLens's ``u.data`` (``user<TAB>item<TAB>rating<TAB>timestamp``, one-based ids) as
    zero-based ratings and the numbers of users and items."""
    try:
        table = np.loadtxt(io.BytesIO(raw), dtype=np.int64, delimiter="\t", ndmin=2)
    except ValueError as err:
        raise DataError(f"{source} is not a MovieLens ratings file ({one_line(err)})") from err
    if table.shape[0] == 0 or table.shape[1] != 4:
        raise DataError(f"{source} is not a MovieLens ratings file (expected rows of 4 "
                        f"tab-separated integers: user, item, rating, timestamp)")
    users, items, values = table[:, 0], table[:, 1], table[:, 2]
    if users.min() < 1 or items.min() < 1:
        raise DataError(f"{source} is corrupt (a user or item id below 1)")
    if values.min() < 1 or values.max() > 5:
        raise DataError(f"{source} is corrupt (a rating outside 1..5)")
    n_users, n_items = int(users.max()), int(items.max())
    if n_users + n_items > MAX_FEATURES:
        raise DataError(f"{source} is corrupt (ids up to {n_users} users and {n_items} items)")
    return (Ratings((users - 1).astype(np.int32), (items - 1).astype(np.int32),
                    values.astype(np.float64)), n_users, n_items)
