"""Data sets the benchmark trains on, loaded into memory as dense float64 matrices.

digits and synthetic need no files. MNIST is read from a data folder (see
`resolve_data_dir`) that `download_mnist` fills from public mirrors. Every
problem with the data surfaces as a one-line `DataError` that says how to fix it.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import pathlib
import urllib.request
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import platformdirs

from asgdbench.errors import ConfigError, DataError

DATA_ENV_VAR = "ASGDBENCH_DATA"

MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

# SHA-256 of the decompressed IDX files: unlike the .gz bytes, these are the
# same for every copy of MNIST.
MNIST_SHA256: Mapping[str, str] = {
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
}
MNIST_FILES: tuple[str, ...] = tuple(f"{name}.gz" for name in MNIST_SHA256)

_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
_MNIST_IMAGE_SHAPE = (28, 28)
_GET_MNIST = (
    f"run `asgdbench download mnist` or set {DATA_ENV_VAR} to a folder containing mnist/"
)


# eq=False: dataclass equality would compare arrays elementwise, which has no single truth value.
@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split ready for training: float64 C-contiguous features, int64 labels 0..n_classes-1."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def n_features(self) -> int:
        """Width of a sample, which sizes the model's parameters."""
        return int(self.X_train.shape[1])


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


# --- In-memory data sets -----------------------------------------------------


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 digits: a small real data set that needs no download."""
    from sklearn.datasets import load_digits as sklearn_digits  # slow import: only when used

    bunch = sklearn_digits()
    X = bunch.data / 16.0  # pixel intensities are 0..16
    return _split("digits", X, bunch.target, 10, test_fraction, seed, stratify=True)


def load_synthetic(
    n_samples: int = 10000,
    n_features: int = 100,
    n_classes: int = 10,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """A classification problem of any size, for scaling experiments; standardized with train statistics."""
    if n_samples < 2:
        raise ConfigError(f"synthetic data needs n_samples >= 2, got {n_samples}")
    if n_features < 1:
        raise ConfigError(f"synthetic data needs n_features >= 1, got {n_features}")
    if n_classes < 2:
        raise ConfigError(f"synthetic data needs n_classes >= 2, got {n_classes}")
    # Half the features carry signal and the rest are noise, but there are always
    # enough informative dimensions, if the width allows, for each class to be two
    # Gaussian clusters on its own vertices of the informative hypercube.
    n_informative = min(n_features, max(2, n_features // 2, math.ceil(math.log2(2 * n_classes))))
    if 2**n_informative < n_classes:
        raise ConfigError(
            f"synthetic data with {n_classes} classes needs "
            f"n_features >= {math.ceil(math.log2(n_classes))}, got {n_features}"
        )
    clusters_per_class = 2 if 2**n_informative >= 2 * n_classes else 1
    from sklearn.datasets import make_classification  # slow import: only when used

    X, y = make_classification(
        n_samples=n_samples,
        n_features=n_features,
        n_informative=n_informative,
        n_redundant=0,
        n_classes=n_classes,
        n_clusters_per_class=clusters_per_class,
        random_state=seed,
    )
    data = _split("synthetic", X, y, n_classes, test_fraction, seed, stratify=False)
    return _standardized(data)


def _split(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    test_fraction: float,
    seed: int,
    stratify: bool,
) -> Dataset:
    """Reproducible train/test split; a split the data cannot support is the user's configuration error."""
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    try:
        from sklearn.model_selection import train_test_split  # slow import: only when used

        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=test_fraction, random_state=seed, stratify=y if stratify else None
        )
    except ValueError as err:
        raise ConfigError(
            f"cannot split {name} with test_fraction={test_fraction}: {_one_line(err)}"
        ) from err
    return Dataset(
        name=name,
        X_train=np.ascontiguousarray(X_train, dtype=np.float64),
        y_train=np.ascontiguousarray(y_train, dtype=np.int64),
        X_test=np.ascontiguousarray(X_test, dtype=np.float64),
        y_test=np.ascontiguousarray(y_test, dtype=np.int64),
        n_classes=n_classes,
    )


def _standardized(data: Dataset) -> Dataset:
    """Zero mean, unit variance per feature using train statistics only, so the test set stays unseen."""
    mean = data.X_train.mean(axis=0)
    std = data.X_train.std(axis=0)
    std[std == 0.0] = 1.0  # a constant feature stays constant instead of becoming NaN
    return Dataset(
        name=data.name,
        X_train=(data.X_train - mean) / std,
        y_train=data.y_train,
        X_test=(data.X_test - mean) / std,
        y_test=data.y_test,
        n_classes=data.n_classes,
    )


# --- MNIST: reading ------------------------------------------------------------


def load_mnist(data_dir: str | os.PathLike | None = None) -> Dataset:
    """The 60,000/10,000 MNIST split from <data_dir>/mnist/, pixels scaled to [0, 1]."""
    folder = resolve_data_dir(data_dir) / "mnist"
    try:
        X_train, y_train = _load_mnist_split(folder, "train")
        X_test, y_test = _load_mnist_split(folder, "t10k")
    except DataError as err:
        raise DataError(f"{err}; {_GET_MNIST}") from err
    return Dataset("mnist", X_train, y_train, X_test, y_test, n_classes=10)


def _load_mnist_split(
    folder: pathlib.Path, prefix: str, checksums: Mapping[str, str] = MNIST_SHA256
) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 784) in [0, 1] and labels (n,) of one split, checked to belong together."""
    images_path = folder / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = folder / f"{prefix}-labels-idx1-ubyte.gz"
    images = _parse_idx(_read_verified(images_path, checksums), _IMAGES_MAGIC, str(images_path))
    labels = _parse_idx(_read_verified(labels_path, checksums), _LABELS_MAGIC, str(labels_path))
    if images.shape[1:] != _MNIST_IMAGE_SHAPE:
        raise DataError(
            f"MNIST file {images_path} has a bad header: images are "
            f"{images.shape[1]}x{images.shape[2]}, expected 28x28"
        )
    if len(images) != len(labels):
        raise DataError(
            f"MNIST files {images_path} and {labels_path} do not match: "
            f"{len(images)} images but {len(labels)} labels"
        )
    X = images.reshape(len(images), -1) / 255.0  # uint8 / float -> one new float64 C-contiguous array
    return X, labels.astype(np.int64)


def _read_verified(path: pathlib.Path, checksums: Mapping[str, str]) -> bytes:
    """The decompressed content of an MNIST .gz file, after checking it is the published file."""
    raw = _gunzip(_read_bytes(path), str(path))
    _check_sha256(raw, path.name.removesuffix(".gz"), str(path), checksums)
    return raw


def _read_bytes(path: pathlib.Path) -> bytes:
    """File content, with a missing or unreadable file reported as a DataError."""
    try:
        return path.read_bytes()
    except FileNotFoundError as err:
        raise DataError(f"MNIST file {path} is missing") from err
    except OSError as err:
        raise DataError(f"MNIST file {path} cannot be read ({_one_line(err)})") from err


def _gunzip(data: bytes, source: str) -> bytes:
    """Decompressed gzip bytes; a cut-off or damaged stream becomes a DataError naming the source."""
    try:
        return gzip.decompress(data)
    except EOFError as err:
        raise DataError(f"MNIST file {source} is truncated (the gzip stream ends early)") from err
    except (gzip.BadGzipFile, zlib.error) as err:
        raise DataError(f"MNIST file {source} is not a valid gzip file ({_one_line(err)})") from err


def _check_sha256(raw: bytes, name: str, source: str, checksums: Mapping[str, str]) -> None:
    """Reject content that is not the published file `name`, whatever its gzip wrapping."""
    expected = checksums[name]
    actual = hashlib.sha256(raw).hexdigest()
    if actual != expected:
        raise DataError(
            f"MNIST file {source} fails its checksum "
            f"(SHA-256 of the content is {actual}, expected {expected})"
        )


def _parse_idx(raw: bytes, magic: int, source: str) -> np.ndarray:
    """An unsigned-byte IDX array, after checking its magic number, dimensions and length.

    Layout: 4-byte big-endian magic (0x0000_08_<ndim>), ndim big-endian uint32
    sizes, then the values, row-major.
    """
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    found = int.from_bytes(raw[:4], "big")
    if len(raw) >= 4 and found != magic:
        raise DataError(
            f"MNIST file {source} has a bad header (magic number 0x{found:08x}, expected 0x{magic:08x})"
        )
    if len(raw) < header_size:
        raise DataError(
            f"MNIST file {source} is truncated "
            f"({len(raw)} bytes, shorter than its {header_size}-byte IDX header)"
        )
    shape = tuple(int(size) for size in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if 0 in shape:
        raise DataError(
            f"MNIST file {source} has a bad header (dimensions {shape} include a zero)"
        )
    expected_size = header_size + math.prod(shape)
    if len(raw) < expected_size:
        raise DataError(
            f"MNIST file {source} is truncated ({len(raw)} bytes, its IDX header for shape {shape} "
            f"needs {expected_size})"
        )
    if len(raw) > expected_size:
        raise DataError(
            f"MNIST file {source} is corrupt ({len(raw) - expected_size} unexpected bytes after the "
            f"data for shape {shape})"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


# --- MNIST: downloading ------------------------------------------------------------


def download_mnist(
    data_dir: str | os.PathLike | None = None,
    mirrors: Sequence[str] = MNIST_MIRRORS,
    timeout: float = 30.0,
) -> pathlib.Path:
    """Fetch the four MNIST files into <data_dir>/mnist/ and return that folder.

    Files already there and intact are kept. Each file comes from the first
    mirror that serves a copy with the right content; only verified content is
    ever written under a final name, so an interrupted download leaves nothing
    half-written for `load_mnist` to trip over.
    """
    if not mirrors:
        raise ConfigError("no MNIST mirrors given; pass at least one base URL")
    folder = resolve_data_dir(data_dir) / "mnist"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(
            f"cannot create the MNIST folder {folder} ({_one_line(err)}); "
            f"pass another folder or set {DATA_ENV_VAR}"
        ) from err
    for file_name in MNIST_FILES:
        target = folder / file_name
        if _is_intact(target):
            continue
        try:
            data = _fetch_verified(file_name, mirrors, timeout)
        except DataError as err:
            raise DataError(
                f"{err}; check the network connection, or copy the MNIST .gz files into {folder}"
            ) from err
        _write_atomically(target, data)
    return folder


def _is_intact(path: pathlib.Path) -> bool:
    """Whether a file is already there with the published content, so need not be downloaded."""
    try:
        _read_verified(path, MNIST_SHA256)
    except DataError:
        return False
    return True


def _fetch_verified(file_name: str, mirrors: Sequence[str], timeout: float) -> bytes:
    """The gzip bytes of `file_name` from the first mirror whose copy passes the checksum."""
    problems: list[str] = []
    for mirror in mirrors:
        url = mirror if mirror.endswith("/") else f"{mirror}/"
        url += file_name
        try:
            data = _http_get(url, timeout)
            _check_sha256(_gunzip(data, url), file_name.removesuffix(".gz"), url, MNIST_SHA256)
        except DataError as err:
            problems.append(str(err))
            continue
        return data
    raise DataError(f"could not download {file_name} from any mirror ({'; '.join(problems)})")


def _http_get(url: str, timeout: float) -> bytes:
    """Body of a URL; any network or protocol failure becomes a DataError naming the URL."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except (OSError, http.client.HTTPException, ValueError) as err:
        # urllib's URLError/HTTPError and timeouts are OSErrors; a dropped
        # connection is an HTTPException; a malformed URL is a ValueError.
        raise DataError(f"{url}: {_one_line(err)}") from err


def _write_atomically(path: pathlib.Path, data: bytes) -> None:
    """Write via a temporary file and rename, so `path` holds either nothing or all of `data`."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    except OSError as err:
        raise DataError(
            f"cannot write {path} ({_one_line(err)}); check the folder's permissions and free space"
        ) from err
    finally:
        partial.unlink(missing_ok=True)


def _one_line(err: BaseException) -> str:
    """An exception's text collapsed onto one line, because user-facing errors are one line."""
    return " ".join(str(err).split()) or type(err).__name__


DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "synthetic": load_synthetic,
    "mnist": load_mnist,
}
