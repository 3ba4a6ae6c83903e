"""Synthetic sparse problems, generated deterministically from a seed and kept in the cache.

:func:`zipf_classification`: RCV1-like rows (Zipf-distributed feature frequencies, about 75
non-zeros per example, a planted sparse separator with label noise), the sparse default;
:func:`planted_low_rank`: a planted low-rank rating matrix with MovieLens-100K's shape and
sampling. Types and the cache are :mod:`.sparse_data`'s.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from asgdbench.errors import ConfigError
from asgdbench.primitives.rng import next_u64, thread_states
from asgdbench.workloads.sparse_data import (
    MAX_FEATURES,
    MAX_GENERATED_NONZEROS,
    MAX_RATING_CELLS,
    RCV1_N_FEATURES,
    CsrRows,
    RatingDataset,
    Ratings,
    SparseDataset,
    check_test_fraction,
    kept_arrays,
    sparse_dataset,
    split_ratings,
)

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


