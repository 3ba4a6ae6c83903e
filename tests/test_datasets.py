"""Tests for asgdbench.workloads.datasets and its sources: in-memory data sets, MNIST, Fashion-MNIST and
CIFAR-10 reading, and downloading.

The real-data tests read the files under $ASGDBENCH_DATA/{mnist,fashion-mnist,cifar10}
and skip when they are not there. The download tests talk only to an HTTP server on 127.0.0.1
started by the test itself.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.server
import io
import os
import pathlib
import shutil
import socket
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import platformdirs
import pytest

from asgdbench.errors import ConfigError, DataError, UserError
from asgdbench.workloads import cifar10, datasets, download, fetching, idx_files
from asgdbench.workloads.cifar10 import CIFAR10_MD5
from asgdbench.workloads.datasets import (
    DATASETS,
    Dataset,
    load_cifar10,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    load_synthetic,
    resolve_data_dir,
)
from asgdbench.workloads.download import download_mnist
from asgdbench.workloads.idx_files import MNIST_FILES

REMEDY = "asgdbench download mnist"


def assert_well_formed(data: Dataset, n_classes: int) -> None:
    """Properties every loader promises, whatever the data set."""
    for X, y in ((data.X_train, data.y_train), (data.X_test, data.y_test)):
        assert X.dtype == np.float64 and X.flags.c_contiguous and X.ndim == 2
        assert y.dtype == np.int64 and y.shape == (X.shape[0],)
        assert X.shape[1] == data.n_features
        assert y.min() >= 0 and y.max() < n_classes
    assert data.n_classes == n_classes


def assert_one_line_data_error(excinfo: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


# --- errors ------------------------------------------------------------------------


def test_error_hierarchy() -> None:
    assert issubclass(ConfigError, UserError) and issubclass(ConfigError, ValueError)
    assert issubclass(DataError, UserError) and not issubclass(DataError, ValueError)


# --- digits and synthetic ------------------------------------------------------------


def test_digits_shapes_and_scaling() -> None:
    data = load_digits()
    assert_well_formed(data, 10)
    assert data.name == "digits"
    assert data.X_train.shape == (1437, 64) and data.X_test.shape == (360, 64)
    assert data.X_train.min() == 0.0 and data.X_train.max() == 1.0
    assert set(np.unique(data.y_test)) == set(range(10))  # stratified: every class is tested


def test_digits_is_deterministic_by_seed() -> None:
    a, b, c = load_digits(seed=1), load_digits(seed=1), load_digits(seed=2)
    assert np.array_equal(a.X_train, b.X_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.X_train, c.X_train)


def test_digits_test_fraction() -> None:
    data = load_digits(test_fraction=0.5)
    assert len(data.y_test) in (898, 899)
    assert len(data.y_train) + len(data.y_test) == 1797


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, 0.001])
def test_digits_rejects_bad_test_fraction(fraction: float) -> None:
    with pytest.raises(ConfigError, match="test_fraction"):
        load_digits(test_fraction=fraction)


def test_synthetic_defaults() -> None:
    data = load_synthetic()
    assert_well_formed(data, 10)
    assert data.X_train.shape == (8000, 100) and data.X_test.shape == (2000, 100)
    assert set(np.unique(data.y_train)) == set(range(10))


def test_synthetic_is_standardized_with_train_statistics() -> None:
    data = load_synthetic(n_samples=2000, n_features=30, n_classes=4, seed=3)
    np.testing.assert_allclose(data.X_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(data.X_train.std(axis=0), 1.0, atol=1e-12)
    # The test set is transformed with the train statistics, so it is only roughly standardized.
    assert np.all(np.abs(data.X_test.mean(axis=0)) < 0.3)
    assert not np.allclose(data.X_test.mean(axis=0), 0.0, atol=1e-12)


@pytest.mark.parametrize(
    ("n_samples", "n_features", "n_classes"),
    [(2, 1, 2), (3, 10, 10), (50, 3, 8), (300, 1000, 3), (1000, 5, 20)],
)
def test_synthetic_any_size(n_samples: int, n_features: int, n_classes: int) -> None:
    data = load_synthetic(n_samples, n_features, n_classes, test_fraction=0.25)
    assert_well_formed(data, n_classes)
    assert data.n_features == n_features
    assert len(data.y_train) + len(data.y_test) == n_samples
    assert len(data.y_train) >= 1 and len(data.y_test) >= 1
    assert np.all(np.isfinite(data.X_train)) and np.all(np.isfinite(data.X_test))


def test_synthetic_is_deterministic_by_seed() -> None:
    a, b, c = (load_synthetic(500, 20, 3, seed=s) for s in (7, 7, 8))
    assert np.array_equal(a.X_train, b.X_train) and np.array_equal(a.y_train, b.y_train)
    assert np.array_equal(a.X_test, b.X_test)
    assert not np.array_equal(a.X_train, c.X_train)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_samples": 1},
        {"n_features": 0},
        {"n_classes": 1},
        {"n_features": 1, "n_classes": 3},
        {"test_fraction": 1.0},
        {"n_samples": 2, "test_fraction": 0.9},
    ],
)
def test_synthetic_rejects_bad_configuration(kwargs: dict) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_synthetic(**kwargs)
    assert "\n" not in str(excinfo.value)


def test_registry() -> None:
    assert DATASETS == {"digits": load_digits, "synthetic": load_synthetic, "mnist": load_mnist,
                        "fashion-mnist": load_fashion_mnist, "cifar10": load_cifar10}


# --- resolve_data_dir ----------------------------------------------------------------


def test_resolve_data_dir_order(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.setenv("ASGDBENCH_DATA", str(tmp_path / "from-env"))
    assert resolve_data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_data_dir(str(tmp_path / "explicit")) == tmp_path / "explicit"
    assert resolve_data_dir() == tmp_path / "from-env"
    monkeypatch.setenv("ASGDBENCH_DATA", "")
    assert resolve_data_dir() == pathlib.Path(platformdirs.user_cache_dir("asgdbench"))
    monkeypatch.delenv("ASGDBENCH_DATA")
    assert resolve_data_dir() == pathlib.Path(platformdirs.user_cache_dir("asgdbench"))
    assert not (tmp_path / "from-env").exists()  # resolving never creates folders


# --- MNIST from the real files --------------------------------------------------------


@pytest.fixture(scope="module")
def real_mnist_dir() -> pathlib.Path:
    """$ASGDBENCH_DATA/mnist holding the four real files, or skip."""
    root = os.environ.get("ASGDBENCH_DATA")
    if not root:
        pytest.skip("ASGDBENCH_DATA is not set")
    folder = pathlib.Path(root) / "mnist"
    if not all((folder / name).is_file() for name in MNIST_FILES):
        pytest.skip(f"{folder} lacks the MNIST files")
    return folder


def test_load_real_mnist(real_mnist_dir: pathlib.Path) -> None:
    data = load_mnist(real_mnist_dir.parent)
    assert_well_formed(data, 10)
    assert data.name == "mnist"
    assert data.X_train.shape == (60000, 784) and data.X_test.shape == (10000, 784)
    assert data.X_train.min() == 0.0 and data.X_train.max() == 1.0
    assert data.X_test.min() >= 0.0 and data.X_test.max() <= 1.0
    assert set(np.unique(data.y_train)) == set(range(10))
    assert np.bincount(data.y_test).sum() == 10000


def test_load_mnist_uses_env_var(real_mnist_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASGDBENCH_DATA", str(real_mnist_dir.parent))
    assert load_mnist().X_test.shape == (10000, 784)


# --- MNIST: corrupt and missing files ---------------------------------------------------


def idx_bytes(values: np.ndarray) -> bytes:
    """An unsigned-byte IDX file holding `values`."""
    magic = 0x0800 | values.ndim
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in values.shape)
    return header + values.astype(np.uint8).tobytes()


def write_gz(path: pathlib.Path, raw: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw))


def tiny_split(folder: pathlib.Path, n_images: int, n_labels: int, prefix: str = "train") -> dict:
    """Write a small, well-formed split and return a checksum table that accepts it."""
    rng = np.random.default_rng(0)
    raws = {
        f"{prefix}-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (n_images, 28, 28))),
        f"{prefix}-labels-idx1-ubyte": idx_bytes(rng.integers(0, 10, n_labels)),
    }
    for name, raw in raws.items():
        write_gz(folder / f"{name}.gz", raw)
    return {name: hashlib.sha256(raw).hexdigest() for name, raw in raws.items()}


def test_missing_mnist(tmp_path: pathlib.Path) -> None:
    with pytest.raises(DataError) as excinfo:
        load_mnist(tmp_path)
    assert_one_line_data_error(excinfo, "train-images-idx3-ubyte.gz", "missing", REMEDY, "ASGDBENCH_DATA")


def test_missing_mnist_via_env(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASGDBENCH_DATA", str(tmp_path))
    with pytest.raises(DataError) as excinfo:
        load_mnist()
    assert_one_line_data_error(excinfo, str(tmp_path / "mnist"), "missing")


def test_truncated_gzip(tmp_path: pathlib.Path) -> None:
    compressed = gzip.compress(idx_bytes(np.zeros((10, 28, 28))))
    target = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    target.parent.mkdir()
    target.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DataError) as excinfo:
        load_mnist(tmp_path)
    assert_one_line_data_error(excinfo, str(target), "truncated", REMEDY)


@pytest.mark.parametrize(
    "content",
    [
        b"this is not gzip at all" * 10,
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff" * 64,  # gzip header, garbage deflate data
    ],
    ids=["not-gzip", "bad-deflate"],
)
def test_corrupt_gzip(tmp_path: pathlib.Path, content: bytes) -> None:
    target = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    target.parent.mkdir()
    target.write_bytes(content)
    with pytest.raises(DataError) as excinfo:
        load_mnist(tmp_path)
    assert_one_line_data_error(excinfo, str(target), "not a valid gzip file", REMEDY)


def test_wrong_checksum(tmp_path: pathlib.Path) -> None:
    tiny_split(tmp_path / "mnist", 5, 5)  # well-formed, but not the published content
    with pytest.raises(DataError) as excinfo:
        load_mnist(tmp_path)
    assert_one_line_data_error(excinfo, "train-images-idx3-ubyte.gz", "checksum", REMEDY)


def test_tiny_split_loads_with_matching_checksums(tmp_path: pathlib.Path) -> None:
    checksums = tiny_split(tmp_path, 5, 5)
    X, y = idx_files._load_idx_split(tmp_path, "train", checksums)
    assert X.shape == (5, 784) and X.dtype == np.float64 and 0.0 <= X.min() and X.max() <= 1.0
    assert y.shape == (5,) and y.dtype == np.int64


def test_image_and_label_counts_must_agree(tmp_path: pathlib.Path) -> None:
    checksums = tiny_split(tmp_path, 5, 4)
    with pytest.raises(DataError) as excinfo:
        idx_files._load_idx_split(tmp_path, "train", checksums)
    assert_one_line_data_error(excinfo, "5 images but 4 labels")


def test_images_must_be_28x28(tmp_path: pathlib.Path) -> None:
    raw = idx_bytes(np.zeros((3, 8, 8)))
    checksums = tiny_split(tmp_path, 3, 3)
    write_gz(tmp_path / "train-images-idx3-ubyte.gz", raw)
    checksums["train-images-idx3-ubyte"] = hashlib.sha256(raw).hexdigest()
    with pytest.raises(DataError) as excinfo:
        idx_files._load_idx_split(tmp_path, "train", checksums)
    assert_one_line_data_error(excinfo, "bad header", "8x8")


def test_truncated_idx_payload_behind_a_valid_checksum(tmp_path: pathlib.Path) -> None:
    # The header promises 10 images but only 3 are there; the checksum table
    # accepts the file, so only the header/size check can catch it.
    raw = idx_bytes(np.zeros((10, 28, 28)))[: 16 + 3 * 784]
    checksums = tiny_split(tmp_path, 10, 10)
    write_gz(tmp_path / "train-images-idx3-ubyte.gz", raw)
    checksums["train-images-idx3-ubyte"] = hashlib.sha256(raw).hexdigest()
    with pytest.raises(DataError) as excinfo:
        idx_files._load_idx_split(tmp_path, "train", checksums)
    assert_one_line_data_error(excinfo, "train-images-idx3-ubyte.gz", "truncated")


IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


def test_parse_idx_reads_shape_and_values() -> None:
    values = np.arange(24).reshape(2, 3, 4)
    parsed = idx_files._parse_idx(idx_bytes(values), IMAGES_MAGIC, "x")
    assert parsed.shape == (2, 3, 4) and parsed.dtype == np.uint8
    assert np.array_equal(parsed, values)


@pytest.mark.parametrize(
    ("raw", "magic", "fragment"),
    [
        (idx_bytes(np.zeros((4, 28, 28)))[:-1], IMAGES_MAGIC, "truncated"),
        (idx_bytes(np.zeros((4, 28, 28)))[:10], IMAGES_MAGIC, "truncated"),
        (b"", LABELS_MAGIC, "truncated"),
        (idx_bytes(np.zeros(5)) + b"\x00", LABELS_MAGIC, "unexpected bytes"),
        (idx_bytes(np.zeros(5)), IMAGES_MAGIC, "bad header"),  # labels where images belong
        (idx_bytes(np.zeros((4, 28, 28))), LABELS_MAGIC, "bad header"),
        (b"\x00\x00\x08\x01" + (0).to_bytes(4, "big"), LABELS_MAGIC, "bad header"),
    ],
    ids=["payload-short", "header-short", "empty", "trailing", "labels-as-images", "images-as-labels", "zero"],
)
def test_parse_idx_rejects_malformed(raw: bytes, magic: int, fragment: str) -> None:
    with pytest.raises(DataError) as excinfo:
        idx_files._parse_idx(raw, magic, "some-file")
    assert_one_line_data_error(excinfo, "some-file", fragment)


# --- MNIST: downloading from a local server ------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make urllib connect to 127.0.0.1 directly, never through a proxy from the environment."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture
def local_server(tmp_path: pathlib.Path, no_proxies: None) -> Iterator[tuple[str, pathlib.Path]]:
    """(base URL, served folder) of an HTTP server on 127.0.0.1, shut down after the test."""
    served = tmp_path / "www"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def final_and_partial_files(folder: pathlib.Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def test_download_falls_back_to_a_working_mirror(
    local_server: tuple[str, pathlib.Path], real_mnist_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    base, served = local_server
    shutil.copytree(real_mnist_dir, served / "good", ignore=shutil.ignore_patterns("*.md", "SHA256SUMS*"))
    dest = tmp_path / "dest"
    mirrors = [f"{base}/missing/", f"{base}/good"]  # 404 first; second base URL lacks its slash

    folder = download_mnist(dest, mirrors=mirrors, timeout=5)

    assert folder == dest / "mnist"
    assert final_and_partial_files(folder) == set(MNIST_FILES)
    for name in MNIST_FILES:
        assert (folder / name).read_bytes() == (real_mnist_dir / name).read_bytes()
    assert load_mnist(dest).y_test.shape == (10000,)

    # Intact files are kept: with only the dead mirror left, nothing needs fetching.
    assert download_mnist(dest, mirrors=[f"{base}/missing/"], timeout=5) == folder


def test_download_replaces_a_damaged_file(
    local_server: tuple[str, pathlib.Path], real_mnist_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    base, served = local_server
    shutil.copytree(real_mnist_dir, served / "good", ignore=shutil.ignore_patterns("*.md", "SHA256SUMS*"))
    folder = tmp_path / "dest" / "mnist"
    shutil.copytree(served / "good", folder)
    damaged = folder / "t10k-labels-idx1-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:100])

    download_mnist(tmp_path / "dest", mirrors=[f"{base}/good/"], timeout=5)

    assert damaged.read_bytes() == (real_mnist_dir / damaged.name).read_bytes()


@pytest.mark.parametrize(
    "served_content",
    [gzip.compress(b"not the real MNIST"), b"not even gzip"],
    ids=["wrong-checksum", "not-gzip"],
)
def test_download_of_corrupt_file_leaves_nothing(
    local_server: tuple[str, pathlib.Path], tmp_path: pathlib.Path, served_content: bytes
) -> None:
    base, served = local_server
    (served / "bad").mkdir()
    for name in MNIST_FILES:
        (served / "bad" / name).write_bytes(served_content)
    dest = tmp_path / "dest"

    with pytest.raises(DataError) as excinfo:
        download_mnist(dest, mirrors=[f"{base}/bad/", f"{base}/missing/"], timeout=5)

    assert_one_line_data_error(excinfo, MNIST_FILES[0], f"{base}/bad/{MNIST_FILES[0]}", "404", str(dest / "mnist"))
    assert final_and_partial_files(dest / "mnist") == set()
    assert not dest.exists(), "a failed download left the folders it created"


def test_download_with_unreachable_mirror(no_proxies: None, tmp_path: pathlib.Path) -> None:
    with socket.socket() as probe:  # a free port; nothing listens there once the probe closes
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    with pytest.raises(DataError) as excinfo:
        download_mnist(tmp_path, mirrors=[f"http://127.0.0.1:{dead_port}/"], timeout=2)
    assert_one_line_data_error(excinfo, "could not download", f"127.0.0.1:{dead_port}")
    assert list(tmp_path.iterdir()) == [], "a failed download left an empty mnist/ behind"


def test_download_needs_a_mirror(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError):
        download_mnist(tmp_path, mirrors=[])


@pytest.fixture(autouse=True)
def no_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Downloads try each URL once: pooch's waits between retries would only slow the tests."""
    monkeypatch.setattr(fetching, "DOWNLOAD_RETRIES", 0)


def test_download_retries_a_transient_failure(
    no_proxies: None, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = cifar_tarball(tmp_path / "archive.tar.gz")
    requests_seen: list[str] = []

    class FlakyHandler(_QuietHandler):
        def do_GET(self) -> None:  # the first request fails with 503, the next ones succeed
            requests_seen.append(self.path)
            if len(requests_seen) == 1:
                self.send_error(503)
            else:
                super().do_GET()

    (tmp_path / "www").mkdir()
    shutil.copy(payload.path, tmp_path / "www" / CIFAR_ARCHIVE)
    monkeypatch.setattr(fetching, "DOWNLOAD_RETRIES", 1)
    with serve(tmp_path / "www", FlakyHandler) as base:
        folder = download.download_cifar10(tmp_path / "dest", url=f"{base}/{CIFAR_ARCHIVE}",
                                           md5=payload.md5, timeout=5)
    assert len(requests_seen) == 2
    assert load_cifar10(tmp_path / "dest").y_test.tolist() == payload.test_labels.tolist()
    assert folder == tmp_path / "dest" / "cifar10" / cifar10.CIFAR10_FOLDER


# --- Fashion-MNIST ----------------------------------------------------------------------


def test_load_real_fashion_mnist() -> None:
    root = os.environ.get("ASGDBENCH_DATA")
    if not root or not all((pathlib.Path(root) / "fashion-mnist" / name).is_file()
                           for name in idx_files.FASHION_MNIST.files):
        pytest.skip("ASGDBENCH_DATA lacks fashion-mnist/")
    data = load_fashion_mnist(root, dtype=np.float32)
    assert data.X_train.dtype == np.float32 and data.X_train.flags.c_contiguous
    assert data.X_train.shape == (60000, 784) and data.X_test.shape == (10000, 784)
    assert data.image_shape == (1, 28, 28)
    assert np.bincount(data.y_train).tolist() == [6000] * 10  # Fashion-MNIST is balanced
    assert data.X_train.min() == 0.0 and data.X_train.max() == 1.0


def test_missing_fashion_mnist_names_its_own_download(tmp_path: pathlib.Path) -> None:
    with pytest.raises(DataError) as excinfo:
        load_fashion_mnist(tmp_path)
    assert_one_line_data_error(excinfo, "Fashion-MNIST file", str(tmp_path / "fashion-mnist"),
                               "missing", "asgdbench download fashion-mnist")


def test_fashion_mnist_download_checks_its_own_checksums(
    local_server: tuple[str, pathlib.Path], real_mnist_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """MNIST's files served as Fashion-MNIST are refused: each set has its own checksums."""
    base, served = local_server
    shutil.copytree(real_mnist_dir, served / "mnist", ignore=shutil.ignore_patterns("*.md", "SHA256SUMS*"))
    with pytest.raises(DataError) as excinfo:
        download.download_fashion_mnist(tmp_path, mirrors=[f"{base}/mnist/"], timeout=5)
    assert_one_line_data_error(excinfo, "fails its checksum", "Fashion-MNIST")
    assert final_and_partial_files(tmp_path / "fashion-mnist") == set()


# --- CIFAR-10 ---------------------------------------------------------------------------

CIFAR_ARCHIVE = "cifar-10-binary.tar.gz"
RECORD = 1 + 3 * 32 * 32


@dataclass
class CifarPayload:
    path: pathlib.Path
    md5: str
    train_records: np.ndarray
    test_labels: np.ndarray


def cifar_tarball(path: pathlib.Path, records: int = 3) -> CifarPayload:
    """A small archive in the CIFAR-10 binary layout: 5 training batches and a test batch."""
    rng = np.random.default_rng(1)
    batches = {}
    for name in (*cifar10.CIFAR10_TRAIN, cifar10.CIFAR10_TEST):
        batch = rng.integers(0, 256, (records, RECORD), dtype=np.uint8)
        batch[:, 0] = rng.integers(0, 10, records)
        batches[name] = batch
    with tarfile.open(path, "w:gz") as tar:
        for name, batch in [*batches.items(), ("batches.meta.txt", None)]:
            content = b"airplane\n" if batch is None else batch.tobytes()
            info = tarfile.TarInfo(f"{cifar10.CIFAR10_FOLDER}/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    train = np.concatenate([batches[name] for name in cifar10.CIFAR10_TRAIN])
    return CifarPayload(path, hashlib.md5(path.read_bytes()).hexdigest(), train,
                        batches[cifar10.CIFAR10_TEST][:, 0].astype(np.int64))


@contextlib.contextmanager
def serve(folder: pathlib.Path, handler_class: type = None) -> Iterator[str]:
    """Base URL of an HTTP server on 127.0.0.1 serving ``folder`` while the block runs."""
    handler = functools.partial(handler_class or _QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def dead_url() -> str:
    with socket.socket() as probe:  # a free port; nothing listens there once the probe closes
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/{CIFAR_ARCHIVE}"


def test_cifar10_download_unpacks_the_batches_and_keeps_nothing_else(
    local_server: tuple[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    base, served = local_server
    payload = cifar_tarball(served / CIFAR_ARCHIVE)
    dest = tmp_path / "dest"

    folder = download.download_cifar10(dest, url=f"{base}/{CIFAR_ARCHIVE}", md5=payload.md5, timeout=5)

    assert final_and_partial_files(dest / "cifar10") == {cifar10.CIFAR10_FOLDER}  # no archive, no staging
    assert final_and_partial_files(folder) == {*cifar10.CIFAR10_TRAIN, cifar10.CIFAR10_TEST}
    data = load_cifar10(dest)
    assert_well_formed(data, 10)
    assert data.image_shape == (3, 32, 32)
    assert data.X_train.shape == (15, 3072) and data.X_test.shape == (3, 3072)
    np.testing.assert_array_equal(np.rint(data.X_train * 255), payload.train_records[:, 1:])
    np.testing.assert_array_equal(data.y_train, payload.train_records[:, 0])
    np.testing.assert_array_equal(data.y_test, payload.test_labels)
    # intact batches are kept: the dead URL is never asked
    assert download.download_cifar10(dest, url=dead_url(), md5=payload.md5, timeout=2) == folder


@pytest.mark.parametrize("damage", ["wrong-checksum", "truncated", "truncated-with-its-checksum"])
def test_cifar10_download_of_a_bad_archive_leaves_nothing(
    local_server: tuple[str, pathlib.Path], tmp_path: pathlib.Path, damage: str
) -> None:
    base, served = local_server
    payload = cifar_tarball(tmp_path / "good.tar.gz")
    content = payload.path.read_bytes()
    md5 = payload.md5
    if damage == "wrong-checksum":
        md5 = hashlib.md5(b"another file").hexdigest()
    else:
        content = content[: len(content) // 2]
        if damage == "truncated-with-its-checksum":  # passes the hash, fails to unpack
            md5 = hashlib.md5(content).hexdigest()
    (served / CIFAR_ARCHIVE).write_bytes(content)
    dest = tmp_path / "dest"

    with pytest.raises(DataError) as excinfo:
        download.download_cifar10(dest, url=f"{base}/{CIFAR_ARCHIVE}", md5=md5, timeout=5)

    expected = "damaged" if damage == "truncated-with-its-checksum" else "hash"
    assert_one_line_data_error(excinfo, "CIFAR-10", expected)
    assert not dest.exists(), "a failed download left the folders it created"


def test_cifar10_download_with_the_server_down(no_proxies: None, tmp_path: pathlib.Path) -> None:
    url = dead_url()
    with pytest.raises(DataError) as excinfo:
        download.download_cifar10(tmp_path, url=url, md5=CIFAR10_MD5, timeout=2)
    assert_one_line_data_error(excinfo, "could not download CIFAR-10", url.rsplit("/", 1)[0])
    assert list(tmp_path.iterdir()) == [], "a failed download left an empty cifar10/ behind"


def test_cifar10_download_replaces_a_damaged_batch(
    local_server: tuple[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    base, served = local_server
    payload = cifar_tarball(served / CIFAR_ARCHIVE)
    folder = download.download_cifar10(tmp_path, url=f"{base}/{CIFAR_ARCHIVE}", md5=payload.md5, timeout=5)
    damaged = folder / cifar10.CIFAR10_TEST
    damaged.write_bytes(damaged.read_bytes()[:-1])
    with pytest.raises(DataError) as excinfo:
        load_cifar10(tmp_path)
    assert_one_line_data_error(excinfo, str(damaged), "truncated", "asgdbench download cifar10")

    download.download_cifar10(tmp_path, url=f"{base}/{CIFAR_ARCHIVE}", md5=payload.md5, timeout=5)

    assert load_cifar10(tmp_path).y_test.tolist() == payload.test_labels.tolist()


def test_missing_cifar10(tmp_path: pathlib.Path) -> None:
    with pytest.raises(DataError) as excinfo:
        load_cifar10(tmp_path)
    assert_one_line_data_error(excinfo, "data_batch_1.bin", "missing", "asgdbench download cifar10")


def test_cifar10_rejects_a_bad_label(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "cifar10" / cifar10.CIFAR10_FOLDER
    folder.mkdir(parents=True)
    for name in (*cifar10.CIFAR10_TRAIN, cifar10.CIFAR10_TEST):
        (folder / name).write_bytes(bytes([10]) + bytes(RECORD - 1))
    with pytest.raises(DataError) as excinfo:
        load_cifar10(tmp_path)
    assert_one_line_data_error(excinfo, "label 10")


def test_load_real_cifar10() -> None:
    root = os.environ.get("ASGDBENCH_DATA")
    if not root or not (pathlib.Path(root) / "cifar10" / cifar10.CIFAR10_FOLDER).is_dir():
        pytest.skip("ASGDBENCH_DATA lacks cifar10/")
    data = load_cifar10(root, dtype=np.float32)
    assert data.X_train.shape == (50000, 3072) and data.X_test.shape == (10000, 3072)
    assert np.bincount(data.y_test).tolist() == [1000] * 10


def test_download_rejects_an_unknown_data_set(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError):
        download.download("imagenet", tmp_path)


@pytest.mark.parametrize("server_up", [True, False], ids=["served", "server-down"])
def test_download_command(
    local_server: tuple[str, pathlib.Path], tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture, server_up: bool
) -> None:
    """`asgdbench download cifar10`: the folder on stdout, or one error line and exit code 2."""
    from asgdbench.study.cli import main

    base, served = local_server
    payload = cifar_tarball(served / CIFAR_ARCHIVE)
    url = f"{base}/{CIFAR_ARCHIVE}" if server_up else dead_url()
    monkeypatch.setitem(download.DOWNLOADS, "cifar10",
                        functools.partial(download.download_cifar10, url=url, md5=payload.md5, timeout=5))

    code = main(["download", "cifar10", "--data-dir", str(tmp_path / "data")])

    out, err = capsys.readouterr()
    if server_up:
        assert code == 0
        assert str(tmp_path / "data" / "cifar10" / cifar10.CIFAR10_FOLDER) in out
        assert load_cifar10(tmp_path / "data").X_test.shape == (3, 3072)
    else:
        assert code == 2
        errors = [line for line in err.splitlines() if line.startswith("asgdbench: error:")]
        assert len(errors) == 1 and "could not download CIFAR-10" in errors[0]
        assert final_and_partial_files(tmp_path / "data" / "cifar10") == set()


def test_the_kept_digits_split_is_the_split_scikit_learn_makes(tmp_path, monkeypatch):
    """The first call prepares and keeps the split; the next loads exactly those arrays, and
    a torn file is prepared again rather than read."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    monkeypatch.setenv("ASGDBENCH_CACHE_DIR", str(tmp_path))
    bunch = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(
        bunch.data / 16.0, bunch.target, test_size=0.25, random_state=3, stratify=bunch.target)
    for attempt in ("prepared", "kept", "torn"):
        if attempt == "torn":
            [kept] = (tmp_path / "datasets").glob("digits-*.npz")
            kept.write_bytes(kept.read_bytes()[:1000])
        data = datasets.load_digits(test_fraction=0.25, seed=3)
        for got, want in ((data.X_train, X_train), (data.X_test, X_test),
                          (data.y_train, y_train), (data.y_test, y_test)):
            np.testing.assert_array_equal(got, want, err_msg=attempt)
        assert data.n_classes == 10 and data.image_shape is None
    assert len(list((tmp_path / "datasets").glob("digits-*.npz"))) == 1
    assert datasets.load_digits(test_fraction=0.2, seed=3).X_test.shape[0] != X_test.shape[0]
