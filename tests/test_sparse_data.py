"""Tests for the sparse data sets: asgdbench.workloads.sparse_data (zipf, svmlight, planted
ratings, MovieLens parsing) and asgdbench.workloads.sparse_files (RCV1 and MovieLens-100K
downloads and loading).

Downloads talk only to an HTTP server on 127.0.0.1 started by the test, serving small files
the test builds. The real MovieLens test reads $ASGDBENCH_DATA/movielens-100k/u.data and
skips when it is not there.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pathlib
import socket
import zipfile

import numpy as np
import pytest
from test_datasets import no_proxies, serve  # noqa: F401  (a fixture, and the local server)

from asgdbench.errors import ConfigError, DataError
from asgdbench.workloads import sparse_files, synthetic_sparse
from asgdbench.workloads.sparse_data import MAX_FEATURES, CsrRows, SparseDataset, load_svmlight
from asgdbench.workloads.sparse_files import (
    MOVIELENS_MEMBER,
    Rcv1Source,
    RemoteFile,
    download_movielens,
    download_rcv1,
    load_movielens,
    load_rcv1,
)
from asgdbench.workloads.sparse_objectives import mf_squared_error
from asgdbench.workloads.synthetic_sparse import (
    planted_factors,
    planted_low_rank,
    zipf_classification,
)

SMALL_ZIPF = dict(n_train=400, n_test=100, n_features=300, nnz_per_example=12.0)


@pytest.fixture(autouse=True)
def own_cache(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """Each test keeps generated data in a cache folder of its own."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("ASGDBENCH_CACHE_DIR", str(folder))
    return folder


def one_line_error(excinfo: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


def assert_well_formed(data: SparseDataset) -> None:
    """Canonical CSR (sorted distinct columns in range), ±1 labels, counts from the train rows."""
    for rows, labels in ((data.train, data.y_train), (data.test, data.y_test)):
        assert rows.indptr.dtype == np.int64 and rows.indices.dtype == np.int32
        assert rows.values.dtype == np.float64 and labels.dtype == np.float64
        assert rows.indptr[0] == 0 and np.all(np.diff(rows.indptr) >= 0)
        assert rows.indptr[-1] == rows.indices.shape[0] == rows.values.shape[0]
        assert labels.shape == (rows.n_rows,) and set(np.unique(labels)) <= {-1.0, 1.0}
        assert rows.n_features == data.n_features
        if rows.nnz:
            assert rows.indices.min() >= 0 and rows.indices.max() < data.n_features
        for r in range(rows.n_rows):
            columns = rows.indices[rows.indptr[r]:rows.indptr[r + 1]]
            assert np.all(np.diff(columns) > 0), f"row {r} is not sorted and distinct"
    counted = np.asarray((data.train.to_scipy() != 0).sum(axis=0)).ravel()
    assert np.array_equal(data.feature_counts, counted)
    np.testing.assert_allclose(data.feature_frequency, counted / data.train.n_rows)
    seen = counted > 0
    np.testing.assert_allclose(data.inverse_frequency[seen], data.train.n_rows / counted[seen])
    assert np.all(data.inverse_frequency[~seen] == 0.0)


# --- zipf ----------------------------------------------------------------------------------


def test_zipf_small_is_well_formed_and_deterministic() -> None:
    a, b, c = (zipf_classification(seed, **SMALL_ZIPF) for seed in (3, 3, 4))
    assert_well_formed(a)
    assert a.train.n_rows == 400 and a.test.n_rows == 100 and a.n_features == 300
    for rows_a, rows_b in ((a.train, b.train), (a.test, b.test)):
        for field in ("indptr", "indices", "values"):
            assert np.array_equal(getattr(rows_a, field), getattr(rows_b, field))
    assert np.array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.train.indices, c.train.indices)
    norms = np.sqrt(np.add.reduceat(a.train.values ** 2, a.train.indptr[:-1]))
    np.testing.assert_allclose(norms, 1.0, rtol=1e-12)  # cosine-normalized, as RCV1
    assert np.all(a.train.values > 0)


def test_zipf_is_kept_in_the_cache_folder(own_cache: pathlib.Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Prepared once, then read back as the very same arrays; a torn file is prepared again."""
    first = zipf_classification(1, **SMALL_ZIPF)
    [kept] = (own_cache / "datasets").glob("zipf-*.npz")

    def refuse(**_: object) -> None:
        raise AssertionError("generated again instead of read from the cache")

    monkeypatch.setattr(synthetic_sparse, "_generate_zipf", refuse)
    again = zipf_classification(1, **SMALL_ZIPF)
    assert np.array_equal(first.train.values, again.train.values)
    assert np.array_equal(first.y_test, again.y_test)
    monkeypatch.undo()
    monkeypatch.setenv("ASGDBENCH_CACHE_DIR", str(own_cache))
    kept.write_bytes(kept.read_bytes()[:500])
    torn = zipf_classification(1, **SMALL_ZIPF)
    assert np.array_equal(first.train.indices, torn.train.indices)
    assert len(list((own_cache / "datasets").glob("zipf-*.npz"))) == 1


def test_zipf_planted_separator_is_learnable_up_to_the_label_noise() -> None:
    """The classes are balanced, and a linear model fitted by scikit-learn beats chance by
    far, yet not the noise: a sparse separator is there, and so is the label noise."""
    from sklearn.linear_model import LogisticRegression

    noisy = zipf_classification(0, n_train=6000, n_test=3000, n_features=2000,
                                nnz_per_example=30.0, label_noise=0.1)
    assert 0.45 < np.mean(noisy.y_train > 0) < 0.55
    model = LogisticRegression(C=1.0, max_iter=500).fit(noisy.train.to_scipy(), noisy.y_train)
    accuracy = model.score(noisy.test.to_scipy(), noisy.y_test)
    assert 0.72 < accuracy < 0.92, accuracy  # at most ~0.9 expected, given 10% flipped labels
    flipped_more = zipf_classification(0, n_train=6000, n_test=3000, n_features=2000,
                                       nnz_per_example=30.0, label_noise=0.3)
    worse = LogisticRegression(C=1.0, max_iter=500).fit(flipped_more.train.to_scipy(),
                                                        flipped_more.y_train)
    assert worse.score(flipped_more.test.to_scipy(), flipped_more.y_test) < accuracy - 0.1


def test_zipf_default_statistics_are_rcv1_like() -> None:
    """The defaults: 50,000/10,000 rows, 47,236 features, ~75 non-zeros per row, document
    frequencies falling as a power law of the feature's popularity rank (exponent ~1)."""
    data = zipf_classification(0)
    assert (data.train.n_rows, data.test.n_rows, data.n_features) == (50_000, 10_000, 47_236)
    mean_nnz = data.train.nnz / data.train.n_rows
    assert 72.0 < mean_nnz < 78.0
    row_nnz = np.diff(data.train.indptr)
    assert row_nnz.min() >= 1 and np.percentile(row_nnz, 95) > 1.5 * mean_nnz  # a spread
    by_rank = np.sort(data.feature_counts)[::-1].astype(float)
    ranks = np.arange(1, by_rank.shape[0] + 1)
    middle = slice(100, 5000)  # past the top ranks, which nearly every row holds
    slope = np.polyfit(np.log(ranks[middle]), np.log(by_rank[middle]), 1)[0]
    assert -1.15 < slope < -0.85, slope
    assert 0.45 < np.mean(data.y_train > 0) < 0.55


def test_zipf_steep_exponent_ends() -> None:
    """Under a steep exponent the rare ranks almost never come up: rows that run out of draws
    take the popular features they lack, and generation ends, well-formed. Under the default
    exponent no row runs out."""
    steep = dict(SMALL_ZIPF, n_features=2000, nnz_per_example=200.0, zipf_exponent=4.0)
    data = zipf_classification(0, **steep)
    assert_well_formed(data)
    assert data.train.nnz + data.test.nnz == synthetic_sparse._generate_zipf(
        0, **{**steep, "separator_density": 0.1, "label_noise": 0.05})["indices"].shape[0]
    assert synthetic_sparse._generate_zipf(0, **{**steep, "separator_density": 0.1,
                                            "label_noise": 0.05})["rows_out_of_draws"] > 0
    assert synthetic_sparse._generate_zipf(0, **{**SMALL_ZIPF, "zipf_exponent": 1.0,
                                            "separator_density": 0.1,
                                            "label_noise": 0.05})["rows_out_of_draws"] == 0


@pytest.mark.parametrize("kwargs", [
    {"n_train": 0}, {"n_features": 1}, {"n_features": MAX_FEATURES + 1},
    {"nnz_per_example": 0.5}, {"n_features": 100, "nnz_per_example": 30.0},
    {"zipf_exponent": -1.0}, {"separator_density": 0.0}, {"label_noise": 0.5},
    {"n_train": 10**7, "n_features": 10**6, "nnz_per_example": 20.0},  # 2e8 non-zeros
])
def test_zipf_rejects_bad_configuration(kwargs: dict) -> None:
    with pytest.raises(ConfigError) as excinfo:
        zipf_classification(0, **{**SMALL_ZIPF, **kwargs})
    one_line_error(excinfo)


# --- svmlight --------------------------------------------------------------------------------


def write_svmlight(path: pathlib.Path, lines: list[str]) -> pathlib.Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


@pytest.mark.parametrize("labels", [(0, 1), (-1, 1), (1, 2)])
def test_svmlight_binary_labels_and_rows(tmp_path: pathlib.Path, labels: tuple[int, int]) -> None:
    low, high = labels
    rows = {i: {1 + i % 7: 0.5 + i, 9 + i % 3: -1.0} for i in range(20)}
    lines = [f"{high if i % 3 else low} " + " ".join(f"{j}:{v}" for j, v in sorted(row.items()))
             for i, row in rows.items()]
    lines.insert(5, "# a comment line")
    data = load_svmlight(write_svmlight(tmp_path / "data.svm", lines), test_fraction=0.25, seed=1)
    assert_well_formed(data)
    assert data.train.n_rows == 15 and data.test.n_rows == 5
    assert data.n_features == 11  # one-based indices up to 11, detected as one-based
    # every example is in exactly one part, with its row and its label
    seen = []
    for part, y in ((data.train, data.y_train), (data.test, data.y_test)):
        dense = part.to_scipy().toarray()
        for r in range(part.n_rows):
            [i] = [i for i, row in rows.items()
                   if all(dense[r, j - 1] == v for j, v in row.items())]
            assert y[r] == (1.0 if i % 3 else -1.0)
            seen.append(i)
    assert sorted(seen) == list(range(20))


@pytest.mark.parametrize(("lines", "fragment"), [
    (["1 1:1", "1 2:1"], "1 distinct label"),
    (["1 1:1", "2 2:1", "3 1:1"], "3 distinct label(s) (1, 2, 3)"),
    (["1 a:b"], "not a valid LIBSVM/svmlight file"),
    (["1 3:1 2:1", "0 1:1"], "not a valid LIBSVM/svmlight file"),  # columns not increasing
    (["1 1000000000000:1", "0 1:1"], "not a valid LIBSVM/svmlight file"),
    ([f"1 {MAX_FEATURES + 5}:1", "0 1:1"], "more than the"),
    (["1 1:nan", "0 1:1"], "not finite"),
    ([], "holds no examples"),
    (["1 1:1"], "1 distinct label"),
])
def test_svmlight_refuses_a_bad_file(tmp_path: pathlib.Path, lines: list[str],
                                     fragment: str) -> None:
    path = write_svmlight(tmp_path / "bad.svm", lines)
    with pytest.raises(DataError) as excinfo:
        load_svmlight(path)
    one_line_error(excinfo, str(path), fragment)


def test_svmlight_missing_file_or_folder(tmp_path: pathlib.Path) -> None:
    for path, fragment in ((tmp_path / "nothing.svm", "is missing"), (tmp_path, "is a folder")):
        with pytest.raises(DataError) as excinfo:
            load_svmlight(path)
        one_line_error(excinfo, str(path), fragment)
    with pytest.raises(ConfigError):
        load_svmlight(tmp_path / "x.svm", test_fraction=1.0)


def test_svmlight_reads_gzip_and_a_fixed_width(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "data.svm.gz"
    path.write_bytes(gzip.compress(b"1 1:1 4:2\n-1 2:1\n1 3:0.5\n"))
    data = load_svmlight(path, n_features=10, test_fraction=0.4)
    assert data.n_features == 10 and data.train.n_rows + data.test.n_rows == 3


# --- planted low rank ----------------------------------------------------------------------


def test_planted_low_rank_small_exact_without_noise() -> None:
    data = planted_low_rank(2, n_users=30, n_items=50, n_ratings=700, rank=4, noise=0.0)
    assert data.n_users == 30 and data.n_items == 50
    users = np.concatenate([data.train.users, data.test.users])
    items = np.concatenate([data.train.items, data.test.items])
    values = np.concatenate([data.train.values, data.test.values])
    assert users.shape == (700,) and np.unique(users * 50 + items).shape == (700,)  # distinct
    assert np.bincount(users, minlength=30).min() >= 20  # MovieLens's rule
    left, right = planted_factors(2, 30, 50, 4)
    np.testing.assert_allclose(values, np.sum(left[users] * right[items], axis=1), rtol=1e-12)
    assert np.linalg.matrix_rank(left @ right.T) == 4
    assert data.test.n_ratings == 70
    assert np.array_equal(data.user_counts, np.bincount(data.train.users, minlength=30))
    assert np.array_equal(data.item_counts, np.bincount(data.train.items, minlength=50))
    again = planted_low_rank(2, n_users=30, n_items=50, n_ratings=700, rank=4, noise=0.0)
    assert np.array_equal(again.train.values, data.train.values)


def test_planted_low_rank_defaults_have_movielens_shape_and_noise() -> None:
    """MovieLens's shape and sampling; the planted factors score the noise's variance under
    the MF objective's squared error."""
    data = planted_low_rank(0)
    assert (data.n_users, data.n_items) == (943, 1682)
    assert data.train.n_ratings + data.test.n_ratings == 100_000
    users = np.concatenate([data.train.users, data.test.users])
    items = np.concatenate([data.train.items, data.test.items])
    assert np.bincount(users, minlength=943).min() >= 20
    assert np.unique(users.astype(np.int64) * 1682 + items).shape == (100_000,)
    item_degrees = np.bincount(items, minlength=1682)
    assert item_degrees.max() > 10 * np.median(item_degrees)  # popular items, as in MovieLens
    values = data.train.values
    assert 3.3 < values.mean() < 3.7 and 0.9 < values.std() < 1.4
    left, right = planted_factors(0, 943, 1682, 10)
    params = np.concatenate([left, right]).ravel()
    error = mf_squared_error(params, data.test.users, data.test.items, data.test.values, 943, 10)
    assert error == pytest.approx(0.25, rel=0.05)  # noise 0.5


@pytest.mark.parametrize("kwargs", [
    {"n_ratings": 100}, {"n_ratings": 10**7}, {"rank": 0}, {"noise": -1.0},
    {"test_fraction": 0.0}, {"n_items": 1}, {"n_users": 10**6, "n_items": 10**3},
])
def test_planted_low_rank_rejects_bad_configuration(kwargs: dict) -> None:
    with pytest.raises(ConfigError) as excinfo:
        planted_low_rank(0, **{"n_users": 30, "n_items": 50, "n_ratings": 700, **kwargs})
    one_line_error(excinfo)


# --- MovieLens-100K ------------------------------------------------------------------------


def real_movielens_root() -> pathlib.Path:
    root = os.environ.get("ASGDBENCH_DATA")
    if not root or not (pathlib.Path(root) / "movielens-100k" / "u.data").is_file():
        pytest.skip("ASGDBENCH_DATA lacks movielens-100k/u.data")
    return pathlib.Path(root)


def test_load_real_movielens() -> None:
    root = real_movielens_root()
    data = load_movielens(root, test_fraction=0.1, seed=0)
    assert (data.n_users, data.n_items) == (943, 1682)
    assert (data.train.n_ratings, data.test.n_ratings) == (90_000, 10_000)
    users = np.concatenate([data.train.users, data.test.users])
    assert np.bincount(users, minlength=943).min() >= 20
    values = np.concatenate([data.train.values, data.test.values])
    assert set(np.unique(values)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    first = (root / "movielens-100k" / "u.data").read_text().split("\n", 1)[0].split("\t")
    user, item, rating = (int(v) for v in first[:3])
    everything = zip(users, np.concatenate([data.train.items, data.test.items]), values)
    assert (user - 1, item - 1, float(rating)) in {(int(u), int(i), v) for u, i, v in everything}


def ratings_file(n_users: int = 4, n_items: int = 5) -> bytes:
    lines = [f"{u}\t{i}\t{1 + (u + i) % 5}\t88125{u}{i}" for u in range(1, n_users + 1)
             for i in range(1, n_items + 1) if (u + i) % 2]
    return ("\n".join(lines) + "\n").encode()


def test_movielens_checks_its_file(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "movielens-100k"
    with pytest.raises(DataError) as excinfo:
        load_movielens(tmp_path)
    one_line_error(excinfo, str(folder / "u.data"), "missing", "asgdbench download movielens-100k")
    folder.mkdir()
    raw = ratings_file()
    (folder / "u.data").write_bytes(raw)
    with pytest.raises(DataError) as excinfo:  # not the published file
        load_movielens(tmp_path)
    one_line_error(excinfo, "fails its checksum")
    data = load_movielens(tmp_path, sha256=hashlib.sha256(raw).hexdigest(), test_fraction=0.2)
    assert (data.n_users, data.n_items) == (4, 5)
    assert data.train.n_ratings + data.test.n_ratings == 10


@pytest.mark.parametrize(("raw", "fragment"), [
    (b"1\t2\t3\n", "not a MovieLens ratings file"),
    (b"1\t2\tx\t4\n", "not a MovieLens ratings file"),
    (b"0\t2\t3\t4\n", "id below 1"),
    (b"1\t2\t6\t4\n", "rating outside 1..5"),
    (b"1\t200000000\t3\t4\n", "corrupt"),
])
def test_movielens_refuses_a_malformed_file(tmp_path: pathlib.Path, raw: bytes,
                                            fragment: str) -> None:
    folder = tmp_path / "movielens-100k"
    folder.mkdir()
    (folder / "u.data").write_bytes(raw)
    with pytest.raises(DataError) as excinfo:
        load_movielens(tmp_path, sha256=hashlib.sha256(raw).hexdigest())
    one_line_error(excinfo, fragment)


def movielens_zip(path: pathlib.Path, raw: bytes, member: str = MOVIELENS_MEMBER) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, raw)
        archive.writestr("ml-100k/README", "MovieLens")
        archive.writestr("ml-100k/u.item", "1|Toy Story (1995)")


def dead_url(name: str) -> str:
    with socket.socket() as probe:  # a free port; nothing listens there once the probe closes
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/{name}"


def test_movielens_download_keeps_only_u_data(no_proxies: None,  # noqa: F811
                                              tmp_path: pathlib.Path) -> None:
    raw = ratings_file()
    served = tmp_path / "www"
    served.mkdir()
    movielens_zip(served / "ml-100k.zip", raw)
    sha256 = hashlib.sha256(raw).hexdigest()
    with serve(served) as base:
        folder = download_movielens(tmp_path / "dest", url=f"{base}/ml-100k.zip", sha256=sha256,
                                    timeout=5, retries=0)
    assert folder == tmp_path / "dest" / "movielens-100k"
    assert [p.name for p in folder.iterdir()] == ["u.data"]
    assert (folder / "u.data").read_bytes() == raw
    assert load_movielens(tmp_path / "dest", sha256=sha256).n_items == 5
    # intact: the dead URL is never asked
    assert download_movielens(tmp_path / "dest", url=dead_url("ml-100k.zip"), sha256=sha256,
                              timeout=2, retries=0) == folder


@pytest.mark.parametrize("damage", ["wrong-content", "no-member", "not-a-zip", "server-down"])
def test_movielens_download_of_a_bad_archive_leaves_nothing(
        no_proxies: None, tmp_path: pathlib.Path, damage: str) -> None:  # noqa: F811
    raw = ratings_file()
    served = tmp_path / "www"
    served.mkdir()
    archive = served / "ml-100k.zip"
    if damage == "wrong-content":
        movielens_zip(archive, raw + b"1\t1\t1\t1\n")
    elif damage == "no-member":
        movielens_zip(archive, raw, member="ml-100k/u1.base")
    else:
        archive.write_bytes(b"PK not really a zip")
    dest = tmp_path / "dest"
    with serve(served) as base:
        url = dead_url("ml-100k.zip") if damage == "server-down" else f"{base}/ml-100k.zip"
        with pytest.raises(DataError) as excinfo:
            download_movielens(dest, url=url, sha256=hashlib.sha256(raw).hexdigest(), timeout=2,
                               retries=0)
    expected = {"wrong-content": "fails its checksum", "no-member": f"lacks {MOVIELENS_MEMBER}",
                "not-a-zip": "damaged", "server-down": "could not download MovieLens-100K"}
    one_line_error(excinfo, expected[damage])
    assert not dest.exists(), "a failed download left the folders it created"


# --- RCV1 ----------------------------------------------------------------------------------


def rcv1_files(folder: pathlib.Path, base: str) -> tuple[Rcv1Source, dict]:
    """Small files in RCV1's formats: vectors ``DOC_ID j:v ...`` (one-based j up to 47,236)
    in a training part and four test parts, and ``CATEGORY DOC_ID 1`` topic lines."""
    rng = np.random.default_rng(0)
    documents = {}  # id -> (row as {zero-based column: value}, in CCAT)
    parts = {}
    next_id = 2286
    for name, n_docs in (("train", 5), ("pt0", 3), ("pt1", 2), ("pt2", 1), ("pt3", 4)):
        lines = []
        for _ in range(n_docs):
            columns = np.sort(rng.choice(47_236, 4, replace=False))
            if next_id == 2290:
                columns[-1] = 47_235  # the last feature, written as 47236
            row = {int(j): round(float(v), 6) for j, v in zip(columns, rng.uniform(0.1, 1, 4))}
            documents[next_id] = (row, bool(rng.random() < 0.5))
            lines.append(f"{next_id}  " + " ".join(f"{j + 1}:{v}" for j, v in row.items()))
            next_id += 1
        parts[name] = lines
    topics = []
    for doc, (_, in_ccat) in documents.items():
        topics += [f"C15 {doc} 1", "GCAT " + f"{doc} 1"] if not in_ccat else [
            f"C15 {doc} 1", f"CCAT {doc} 1"]
    remotes = {}
    for key, lines in [*parts.items(), ("topics", topics)]:
        raw = gzip.compress(("\n".join(lines) + "\n").encode())
        (folder / f"file-{key}").write_bytes(raw)
        remotes[key] = RemoteFile(f"{key}.gz", f"{base}/file-{key}",
                                  hashlib.sha256(raw).hexdigest())
    source = Rcv1Source(train=remotes["train"],
                        test_parts=tuple(remotes[f"pt{i}"] for i in range(4)),
                        topics=remotes["topics"])
    return source, {"documents": documents, "train_ids": list(range(2286, 2291)),
                    "test_ids": list(range(2291, 2301))}


def assert_rows_are(rows: CsrRows, labels: np.ndarray, ids: list[int], documents: dict) -> None:
    assert rows.n_rows == len(ids) and rows.n_features == 47_236
    for r, doc in enumerate(ids):
        row, in_ccat = documents[doc]
        columns = rows.indices[rows.indptr[r]:rows.indptr[r + 1]].tolist()
        assert columns == list(row)
        np.testing.assert_allclose(rows.values[rows.indptr[r]:rows.indptr[r + 1]],
                                   list(row.values()))
        assert labels[r] == (1.0 if in_ccat else -1.0)


def test_rcv1_download_and_load(no_proxies: None, tmp_path: pathlib.Path,  # noqa: F811
                                monkeypatch: pytest.MonkeyPatch) -> None:
    served = tmp_path / "www"
    served.mkdir()
    with serve(served) as base:
        source, truth = rcv1_files(served, base)
        folder = download_rcv1(tmp_path / "dest", source=source, timeout=5, retries=0)
    assert sorted(p.name for p in folder.iterdir()) == sorted(r.name for r in source.files)
    hogwild = load_rcv1(tmp_path / "dest", source=source)
    assert hogwild.name == "rcv1-hogwild"
    assert_well_formed(hogwild)
    assert_rows_are(hogwild.train, hogwild.y_train, truth["test_ids"], truth["documents"])
    assert_rows_are(hogwild.test, hogwild.y_test, truth["train_ids"], truth["documents"])
    assert hogwild.feature_counts[47_235] >= 0 and hogwild.n_features == 47_236

    def refuse(*_: object) -> None:
        raise AssertionError("parsed again instead of read from the cache")

    monkeypatch.setattr(sparse_files, "_parse_rcv1", refuse)
    lyrl = load_rcv1(tmp_path / "dest", source=source, split="lyrl")
    assert_rows_are(lyrl.train, lyrl.y_train, truth["train_ids"], truth["documents"])
    # intact files are kept: a dead server is never asked
    dead = Rcv1Source(*(RemoteFile(r.name, dead_url(r.name), r.sha256)
                        for r in (source.train,)), source.test_parts, source.topics)
    assert download_rcv1(tmp_path / "dest", source=dead, timeout=2, retries=0) == folder


def test_rcv1_checks_its_files(no_proxies: None, tmp_path: pathlib.Path) -> None:  # noqa: F811
    served = tmp_path / "www"
    served.mkdir()
    with serve(served) as base:
        source, truth = rcv1_files(served, base)
        with pytest.raises(DataError) as excinfo:
            load_rcv1(tmp_path / "dest", source=source)
        one_line_error(excinfo, "missing", "asgdbench download rcv1")
        download_rcv1(tmp_path / "dest", source=source, timeout=5, retries=0)
        damaged = tmp_path / "dest" / "rcv1" / source.topics.name
        damaged.write_bytes(damaged.read_bytes()[:-3])
        with pytest.raises(DataError) as excinfo:
            load_rcv1(tmp_path / "dest", source=source)
        one_line_error(excinfo, str(damaged), "fails its checksum")
        download_rcv1(tmp_path / "dest", source=source, timeout=5, retries=0)  # replaced
    assert_rows_are(load_rcv1(tmp_path / "dest", source=source).test,
                    load_rcv1(tmp_path / "dest", source=source).y_test, truth["train_ids"],
                    truth["documents"])
    with pytest.raises(ConfigError):
        load_rcv1(tmp_path / "dest", source=source, split="random")


def test_rcv1_download_of_a_wrong_file_leaves_nothing(no_proxies: None,  # noqa: F811
                                                      tmp_path: pathlib.Path) -> None:
    served = tmp_path / "www"
    served.mkdir()
    with serve(served) as base:
        source, _ = rcv1_files(served, base)
        wrong = Rcv1Source(source.train, source.test_parts,
                           RemoteFile(source.topics.name, source.topics.url, "0" * 64))
        with pytest.raises(DataError) as excinfo:
            download_rcv1(tmp_path / "dest", source=wrong, timeout=5, retries=0)
    one_line_error(excinfo, "could not download RCV1's", source.topics.name, "hash")
    # the files verified before the bad one stay (a rerun needs not fetch them); nothing else
    left = {p.name for p in (tmp_path / "dest" / "rcv1").iterdir()}
    assert left == {r.name for r in (source.train, *source.test_parts)}


def test_rcv1_sources_are_scikit_learns() -> None:
    """The URLs and checksums are those of the installed scikit-learn's fetch_rcv1."""
    from sklearn.datasets import _rcv1

    ours = [(r.name, r.url, r.sha256) for r in (*sparse_files.RCV1.test_parts,
                                                 sparse_files.RCV1.train, sparse_files.RCV1.topics)]
    theirs = [(m.filename, m.url, m.checksum) for m in (*_rcv1.XY_METADATA, _rcv1.TOPICS_METADATA)]
    assert ours == theirs


def test_movielens_bytes_limit() -> None:
    """A member bigger than any u.data is refused before it is read (a zip bomb, say)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MOVIELENS_MEMBER, b"\0" * (sparse_files.MOVIELENS_MAX_BYTES + 1))
    assert len(buffer.getvalue()) < 1 << 20
    path = pathlib.Path(os.environ["ASGDBENCH_CACHE_DIR"]).parent / "bomb.zip"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(DataError, match="not MovieLens-100K's"):
        sparse_files._read_member(path, MOVIELENS_MEMBER)


def test_svmlight_reads_what_scikit_learn_writes(tmp_path: pathlib.Path) -> None:
    """Zipf data dumped by scikit-learn comes back as the same rows with the same labels."""
    from sklearn.datasets import dump_svmlight_file

    data = zipf_classification(5, **SMALL_ZIPF)
    path = tmp_path / "zipf.svm"
    dump_svmlight_file(data.train.to_scipy(), data.y_train, str(path), zero_based=False)
    back = load_svmlight(path, n_features=data.n_features, test_fraction=0.3, seed=2)
    assert_well_formed(back)

    def rows_of(part: CsrRows, labels: np.ndarray) -> list:
        return sorted((labels[r], tuple(part.indices[part.indptr[r]:part.indptr[r + 1]]),
                       tuple(np.round(part.values[part.indptr[r]:part.indptr[r + 1]], 9)))
                      for r in range(part.n_rows))

    assert back.train.n_rows + back.test.n_rows == data.train.n_rows == 400
    assert sorted(rows_of(back.train, back.y_train) + rows_of(back.test, back.y_test)) == \
        rows_of(data.train, data.y_train)
