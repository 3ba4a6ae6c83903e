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
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numba import njit

from asgdbench.errors import ConfigError, DataError, one_line
from asgdbench.primitives.rng import next_u64, thread_states

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
    decides it (the parameters, this file's source, NumPy's version).

    Generation is deterministic, so kept arrays are the very arrays ``prepare`` returns; a
    torn file is prepared again, and a folder that cannot be written only costs preparing
    again next time.
    """
    from asgdbench.caching import cache_folder, write_atomically

    key = hashlib.sha256(repr((name, sorted(parameters.items()), np.__version__,
                               pathlib.Path(__file__).read_bytes())).encode()).hexdigest()[:32]
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


# --- RCV1-like synthetic classification ----------------------------------------------------


def zipf_classification(seed: int = 0, *, n_train: int = 50_000, n_test: int = 10_000,
                        n_features: int = RCV1_N_FEATURES, nnz_per_example: float = 75.0,
                        zipf_exponent: float = 1.0, separator_density: float = 0.1,
                        label_noise: float = 0.05) -> SparseDataset:
    """Sparse rows with RCV1's statistics and labels from a sparse planted separator.

    Feature ``j``'s rank in popularity is a random permutation of the features; each draw of
    a row picks rank ``k`` with probability proportional to ``(k + 1) ** -zipf_exponent``,
    until the row holds its number of distinct features (log-normal around
    ``nnz_per_example``). Values are positive, rarer features weigh more (as tf-idf), and each
    row has unit L2 norm, as RCV1's cosine-normalized rows. A ``separator_density`` fraction
    of the features (the more popular, the likelier) carry the weights of ``w*``: Gaussian,
    shifted along the mean row so that the classes are balanced with no intercept. The label
    is ``sign(x . w*)``, then flipped with probability ``label_noise``. Deterministic from
    ``seed``; kept in the cache folder.
    """
    _check_zipf(n_train, n_test, n_features, nnz_per_example, zipf_exponent, separator_density,
                label_noise)
    parameters = dict(seed=seed, n_train=n_train, n_test=n_test, n_features=n_features,
                      nnz_per_example=float(nnz_per_example), zipf_exponent=float(zipf_exponent),
                      separator_density=float(separator_density), label_noise=float(label_noise))
    arrays = kept_arrays("zipf", lambda: _generate_zipf(**parameters), **parameters)
    rows = CsrRows(arrays["indptr"], arrays["indices"], arrays["values"], n_features)
    split = int(rows.indptr[n_train])
    train = CsrRows(rows.indptr[: n_train + 1], rows.indices[:split], rows.values[:split],
                    n_features)
    test = CsrRows(rows.indptr[n_train:] - split, rows.indices[split:], rows.values[split:],
                   n_features)
    return sparse_dataset("zipf", train, arrays["labels"][:n_train], test,
                          arrays["labels"][n_train:])


def _check_zipf(n_train, n_test, n_features, nnz_per_example, zipf_exponent, separator_density,
                label_noise) -> None:
    if n_train < 1 or n_test < 1:
        raise ConfigError(f"zipf data needs n_train, n_test >= 1, got {n_train}, {n_test}")
    if not 2 <= n_features <= MAX_FEATURES:
        raise ConfigError(f"zipf data needs 2 <= n_features <= {MAX_FEATURES}, got {n_features}")
    if not 1.0 <= nnz_per_example <= n_features / 4:
        raise ConfigError(f"zipf data needs 1 <= nnz_per_example <= n_features / 4 "
                          f"({n_features / 4:g}), got {nnz_per_example}")
    if (n_train + n_test) * nnz_per_example > MAX_GENERATED_NONZEROS:
        raise ConfigError(f"zipf data with {n_train + n_test} rows of {nnz_per_example:g} "
                          f"non-zeros is more than the {MAX_GENERATED_NONZEROS} non-zeros allowed")
    if not zipf_exponent >= 0.0:
        raise ConfigError(f"zipf_exponent must be >= 0, got {zipf_exponent}")
    if not 0.0 < separator_density <= 1.0:
        raise ConfigError(f"separator_density must be in (0, 1], got {separator_density}")
    if not 0.0 <= label_noise < 0.5:
        raise ConfigError(f"label_noise must be in [0, 0.5), got {label_noise}")


ROW_NNZ_SIGMA = 0.5
"""Spread of the log of a row's number of non-zeros (RCV1's rows range from a few to hundreds)."""
SEPARATOR_POPULARITY_POWER = 1.0
"""A feature joins the separator's support with odds growing as its popularity to this power."""
DRAWS_PER_FEATURE = 64
"""Draws a row may spend per feature it needs before it takes the most popular ones it lacks."""


def _generate_zipf(seed: int, n_train: int, n_test: int, n_features: int,
                   nnz_per_example: float, zipf_exponent: float, separator_density: float,
                   label_noise: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_rows = n_train + n_test
    weights = (np.arange(1, n_features + 1, dtype=np.float64)) ** -zipf_exponent
    cdf = np.cumsum(weights / weights.sum())
    cdf[-1] = 1.0
    feature_of_rank = rng.permutation(n_features).astype(np.int32)
    idf = np.empty(n_features)
    idf[feature_of_rank] = 1.0 + np.log(1.0 / (weights / weights.sum()))
    # log-normal counts with mean nnz_per_example, at least 1, at most a quarter of the features
    lengths = np.rint(rng.lognormal(np.log(nnz_per_example) - ROW_NNZ_SIGMA**2 / 2,
                                    ROW_NNZ_SIGMA, n_rows))
    lengths = np.clip(lengths, 1, n_features // 4).astype(np.int64)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = np.empty(indptr[-1], dtype=np.int32)
    state = thread_states(seed, 1)[0]
    exhausted = _draw_distinct_features(state, cdf, feature_of_rank, indptr, indices,
                                        np.full(n_features, -1, dtype=np.int64))
    values = rng.lognormal(0.0, 0.5, indices.shape[0]) * idf[indices]
    norms = np.sqrt(np.add.reduceat(values**2, indptr[:-1]))
    values /= np.repeat(norms, lengths)
    separator = np.zeros(n_features)
    # The separator's features are drawn without replacement, each with probability
    # proportional to its popularity (Gumbel top-k): common features carry signal, as common
    # words do in RCV1's topics, so few rows miss the separator altogether.
    popularity = np.empty(n_features)
    popularity[feature_of_rank] = weights
    keys = SEPARATOR_POPULARITY_POWER * np.log(popularity) + rng.gumbel(size=n_features)
    support = np.argsort(keys)[::-1][: max(1, round(separator_density * n_features))]
    separator[support] = rng.standard_normal(support.shape[0])
    # Balance the classes without an intercept: take away from w* a multiple of the mean row
    # on its support (m, positive where a row meets the support, as values are positive),
    # the median of the rows' x.w* / x.m, so that half the scores fall on each side.
    row_sums = np.add.reduceat
    mean_row = np.zeros(n_features)
    mean_row[support] = np.bincount(indices, weights=values, minlength=n_features)[support] / n_rows
    along_mean = row_sums(values * mean_row[indices], indptr[:-1])
    scores = row_sums(values * separator[indices], indptr[:-1])
    meets = along_mean > 0
    if np.any(meets):
        separator -= np.median(scores[meets] / along_mean[meets]) * mean_row
        scores = row_sums(values * separator[indices], indptr[:-1])
    labels = np.where(scores > 0, 1.0, -1.0)
    ties = scores == 0.0  # a row that misses the separator's support gets a fair coin
    labels[ties] = rng.choice([-1.0, 1.0], int(ties.sum()))
    labels[rng.random(n_rows) < label_noise] *= -1.0
    return {"indptr": indptr, "indices": indices, "values": values, "labels": labels,
            "separator": separator, "rows_out_of_draws": np.array(exhausted)}


@njit(nogil=True, cache=True)
def _draw_distinct_features(state, cdf, feature_of_rank, indptr, indices, last_row):
    """Fill each row with distinct features, sorted, drawn by rank from ``cdf``; the number of
    rows that ran out of draws.

    ``last_row[j]`` is the last row that drew feature ``j``: a repeat within a row is drawn
    again. A row that still lacks features after ``DRAWS_PER_FEATURE`` draws per feature
    (only under a steep exponent, whose rare ranks would take ages to come up) takes the most
    popular ones it lacks, so that generation always ends.
    """
    exhausted = 0
    for row in range(indptr.shape[0] - 1):
        start, stop = indptr[row], indptr[row + 1]
        filled = start
        budget = DRAWS_PER_FEATURE * (stop - start)
        while filled < stop and budget > 0:
            budget -= 1
            u = np.float64(next_u64(state) >> np.uint64(11)) * (1.0 / 9007199254740992.0)
            rank = min(np.searchsorted(cdf, u, side="right"), cdf.shape[0] - 1)
            feature = feature_of_rank[rank]
            if last_row[feature] != row:
                last_row[feature] = row
                indices[filled] = feature
                filled += 1
        if filled < stop:
            exhausted += 1
        rank = 0
        while filled < stop:
            feature = feature_of_rank[rank]
            rank += 1
            if last_row[feature] != row:
                last_row[feature] = row
                indices[filled] = feature
                filled += 1
        indices[start:stop].sort()
    return exhausted


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
MOVIELENS_MIN_RATINGS_PER_USER = 20  # GroupLens kept only users with at least 20 ratings


def planted_low_rank(seed: int = 0, *, n_users: int = 943, n_items: int = 1682,
                     n_ratings: int = 100_000, rank: int = 10, noise: float = 0.5,
                     test_fraction: float = 0.1) -> RatingDataset:
    """Ratings from a planted rank-``rank`` matrix, observed where MovieLens would be.

    The matrix is ``L* R*^T`` with a constant first factor (so ratings centre on 3.5 and a
    rank-``rank`` factorization without biases can fit it exactly) plus Gaussian noise of
    standard deviation ``noise``. The observed cells are distinct, every user has at least
    20 (MovieLens's rule) and beyond that users and items are picked with Zipf-like
    activity and popularity, as MovieLens's skewed degrees. Deterministic; kept in the cache.
    """
    if n_users < 1 or n_items < 2:
        raise ConfigError(f"planted ratings need n_users >= 1 and n_items >= 2, "
                          f"got {n_users}, {n_items}")
    if n_users * n_items > MAX_RATING_CELLS:
        raise ConfigError(f"planted ratings over {n_users} users x {n_items} items exceed the "
                          f"{MAX_RATING_CELLS} cells allowed")
    per_user = min(MOVIELENS_MIN_RATINGS_PER_USER, n_items // 2)
    if not n_users * per_user <= n_ratings <= n_users * n_items // 2:
        raise ConfigError(f"planted ratings need {n_users * per_user} <= n_ratings <= "
                          f"{n_users * n_items // 2} for {n_users} users and {n_items} items, "
                          f"got {n_ratings}")
    if rank < 1:
        raise ConfigError(f"rank must be >= 1, got {rank}")
    if not noise >= 0.0:
        raise ConfigError(f"noise must be >= 0, got {noise}")
    check_test_fraction(test_fraction)
    parameters = dict(seed=seed, n_users=n_users, n_items=n_items, n_ratings=n_ratings,
                      rank=rank, noise=float(noise))
    arrays = kept_arrays("planted-low-rank",
                         lambda: _generate_planted(per_user=per_user, **parameters),
                         **parameters)
    ratings = Ratings(arrays["users"], arrays["items"], arrays["values"])
    return split_ratings("planted-low-rank", ratings, n_users, n_items, test_fraction, seed)


def planted_factors(seed: int, n_users: int, n_items: int, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """The planted ``(L*, R*)`` of :func:`planted_low_rank` with these arguments."""
    rng = np.random.default_rng([seed, 1])
    scale = 1.0 / np.sqrt(max(rank - 1, 1))  # the varying part's standard deviation is ~1
    left = np.empty((n_users, rank))
    right = np.empty((n_items, rank))
    left[:, 0] = right[:, 0] = np.sqrt(3.5)
    left[:, 1:] = rng.standard_normal((n_users, rank - 1)) * np.sqrt(scale)
    right[:, 1:] = rng.standard_normal((n_items, rank - 1)) * np.sqrt(scale)
    return left, right


def _generate_planted(seed: int, n_users: int, n_items: int, n_ratings: int, rank: int,
                      noise: float, per_user: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, 0])
    activity = rng.permutation(np.arange(1, n_users + 1, dtype=np.float64) ** -0.8)
    popularity = rng.permutation(np.arange(1, n_items + 1, dtype=np.float64) ** -0.8)
    popularity /= popularity.sum()
    taken = np.zeros(n_users * n_items, dtype=bool)
    cells: list[np.ndarray] = []
    for user in range(n_users):  # the first per_user ratings of each user
        items = rng.choice(n_items, per_user, replace=False, p=popularity)
        cells.append(user * n_items + items)
    first = np.concatenate(cells)
    taken[first] = True
    chosen = [first]
    missing = n_ratings - first.shape[0]
    user_p = activity / activity.sum()
    while missing > 0:
        draws = (rng.choice(n_users, 2 * missing, p=user_p) * n_items
                 + rng.choice(n_items, 2 * missing, p=popularity))
        draws = draws[~taken[draws]]
        _, first_seen = np.unique(draws, return_index=True)
        fresh = draws[np.sort(first_seen)][:missing]
        taken[fresh] = True
        chosen.append(fresh)
        missing -= fresh.shape[0]
    cell = np.concatenate(chosen)
    cell = cell[rng.permutation(cell.shape[0])]
    users, items = np.divmod(cell, n_items)
    left, right = planted_factors(seed, n_users, n_items, rank)
    values = np.einsum("kr,kr->k", left[users], right[items]) + noise * rng.standard_normal(
        cell.shape[0])
    return {"users": users.astype(np.int32), "items": items.astype(np.int32), "values": values}


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
