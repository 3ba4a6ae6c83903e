"""Data sets the benchmark trains on, loaded into memory as dense matrices (one sample per row).

digits and synthetic need no files. MNIST, Fashion-MNIST and CIFAR-10 are read
from a data folder (see `resolve_data_dir`) that `download` fills through pooch
(checksums, retries, progress bar); a download is staged next to its target and
moved into place only once verified, so nothing half-written is ever left. Every
problem with the data surfaces as a one-line `DataError` that says how to fix it.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import pathlib
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import platformdirs

from asgdbench.errors import ConfigError, DataError, one_line

DATA_ENV_VAR = "ASGDBENCH_DATA"

"""Further attempts per URL after a failed or corrupt transfer (pooch waits 1 s, 2 s, ... between);
read when a download starts, so tests can set it to 0."""


@dataclass(frozen=True)
class IdxSource:
    """A data set in MNIST's format: four gzip IDX files, 28x28 images, 10 classes.

    The checksums are SHA-256 of the *decompressed* files: unlike the .gz
    bytes, they are the same for every copy, whichever mirror recompressed it.
    """

    name: str  # its folder under the data folder, and its `asgdbench download` name
    title: str  # how messages call it
    mirrors: tuple[str, ...]
    sha256: Mapping[str, str]

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(f"{name}.gz" for name in self.sha256)

    @property
    def remedy(self) -> str:
        return (f"run `asgdbench download {self.name}` or set {DATA_ENV_VAR} to a folder "
                f"containing {self.name}/")


MNIST = IdxSource(
    name="mnist",
    title="MNIST",
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
             "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    sha256={
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    },
)
FASHION_MNIST = IdxSource(
    name="fashion-mnist",
    title="Fashion-MNIST",
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
             "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/"),
    sha256={
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    },
)
MNIST_MIRRORS = MNIST.mirrors
MNIST_SHA256 = MNIST.sha256
MNIST_FILES = MNIST.files

_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
_IDX_IMAGE_SHAPE = (28, 28)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"  # published with the archive
CIFAR10_FOLDER = "cifar-10-batches-bin"  # what the archive unpacks to
CIFAR10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST = "test_batch.bin"
CIFAR10_IMAGE_SHAPE = (3, 32, 32)
_CIFAR10_RECORD = 1 + 3 * 32 * 32  # a label byte, then 1024 red, 1024 green, 1024 blue bytes
_GET_CIFAR10 = (f"run `asgdbench download cifar10` or set {DATA_ENV_VAR} to a folder "
                f"containing cifar10/{CIFAR10_FOLDER}/")


# eq=False: dataclass equality would compare arrays elementwise, which has no single truth value.
@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split ready for training: C-contiguous float features (float64 unless the
    loader was asked for float32), int64 labels 0..n_classes-1.

    Image data sets also say their ``image_shape`` (channels, height, width): a
    row of ``X`` is one image flattened in that order, as convolutions read it.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    image_shape: tuple[int, int, int] | None = None

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
    """scikit-learn's bundled 8x8 digits: a small real data set that needs no download.

    The split is made once per machine and kept in the cache folder (see :func:`_kept`):
    importing scikit-learn alone takes about a second, longer than a short run.
    """
    def split() -> Dataset:
        from sklearn.datasets import load_digits as sklearn_digits  # slow import: only here

        bunch = sklearn_digits()
        X = bunch.data / 16.0  # pixel intensities are 0..16
        return _split("digits", X, bunch.target, 10, test_fraction, seed, stratify=True)

    return _kept("digits", split, test_fraction=test_fraction, seed=seed)


def _kept(name: str, prepare: Callable[[], Dataset], **parameters: object) -> Dataset:
    """``prepare()``, kept as ``.npz`` in the cache folder under a key of everything that
    decides it (the parameters, this file's source, scikit-learn's and NumPy's versions).

    The split is deterministic, so a kept one is the very same arrays; a folder that
    cannot be written only costs preparing it again next time.
    """
    import io
    from importlib.metadata import version

    from asgdbench.caching import cache_folder, write_atomically

    key = hashlib.sha256(repr((name, sorted(parameters.items()), version("scikit-learn"),
                               np.__version__, pathlib.Path(__file__).read_bytes()))
                         .encode()).hexdigest()[:32]
    path = cache_folder() / "datasets" / f"{name}-{key}.npz"
    try:
        with np.load(path) as kept:
            return Dataset(name, kept["X_train"], kept["y_train"], kept["X_test"],
                           kept["y_test"], int(kept["n_classes"]))
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):  # not there, or torn
        pass
    data = prepare()
    buffer = io.BytesIO()
    np.savez(buffer, X_train=data.X_train, y_train=data.y_train, X_test=data.X_test,
             y_test=data.y_test, n_classes=data.n_classes)
    try:
        write_atomically(path, buffer.getvalue())
    except OSError:
        pass
    return data


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
            f"cannot split {name} with test_fraction={test_fraction}: {one_line(err)}"
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


# --- MNIST and Fashion-MNIST: reading ------------------------------------------------


def load_mnist(data_dir: str | os.PathLike | None = None, dtype: np.dtype | type = np.float64) -> Dataset:
    """The 60,000/10,000 MNIST split from <data_dir>/mnist/, pixels scaled to [0, 1]."""
    return _load_idx_set(MNIST, data_dir, dtype)


def load_fashion_mnist(data_dir: str | os.PathLike | None = None,
                       dtype: np.dtype | type = np.float64) -> Dataset:
    """The 60,000/10,000 Fashion-MNIST split from <data_dir>/fashion-mnist/, pixels in [0, 1]."""
    return _load_idx_set(FASHION_MNIST, data_dir, dtype)


def _load_idx_set(source: IdxSource, data_dir: str | os.PathLike | None, dtype) -> Dataset:
    folder = resolve_data_dir(data_dir) / source.name
    try:
        X_train, y_train = _load_idx_split(folder, "train", source.sha256, source.title, dtype)
        X_test, y_test = _load_idx_split(folder, "t10k", source.sha256, source.title, dtype)
    except DataError as err:
        raise DataError(f"{err}; {source.remedy}") from err
    return Dataset(source.name, X_train, y_train, X_test, y_test, n_classes=10,
                   image_shape=(1, *_IDX_IMAGE_SHAPE))


def _load_idx_split(folder: pathlib.Path, prefix: str, checksums: Mapping[str, str] = MNIST_SHA256,
                    title: str = "MNIST", dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 784) in [0, 1] and labels (n,) of one split, checked to belong together."""
    images_path = folder / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = folder / f"{prefix}-labels-idx1-ubyte.gz"
    images = _parse_idx(read_verified(images_path, checksums, title), _IMAGES_MAGIC,
                        f"{title} file {images_path}")
    labels = _parse_idx(read_verified(labels_path, checksums, title), _LABELS_MAGIC,
                        f"{title} file {labels_path}")
    if images.shape[1:] != _IDX_IMAGE_SHAPE:
        raise DataError(
            f"{title} file {images_path} has a bad header: images are "
            f"{images.shape[1]}x{images.shape[2]}, expected 28x28"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{title} files {images_path} and {labels_path} do not match: "
            f"{len(images)} images but {len(labels)} labels"
        )
    return _scaled_pixels(images.reshape(len(images), -1), dtype), labels.astype(np.int64)


def _scaled_pixels(pixels: np.ndarray, dtype) -> np.ndarray:
    """uint8 pixels as C-contiguous floats in [0, 1], converted once (no float64 detour for float32)."""
    X = np.empty(pixels.shape, dtype=dtype)
    np.multiply(pixels, 1.0 / 255.0, out=X, casting="unsafe")
    return X


def read_verified(path: pathlib.Path, checksums: Mapping[str, str], title: str = "MNIST") -> bytes:
    """The decompressed content of an IDX .gz file, after checking it is the published file."""
    raw = gunzip(read_bytes(path, title), f"{title} file {path}")
    check_sha256(raw, path.name.removesuffix(".gz"), f"{title} file {path}", checksums)
    return raw


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
            f"{source} has a bad header (magic number 0x{found:08x}, expected 0x{magic:08x})"
        )
    if len(raw) < header_size:
        raise DataError(
            f"{source} is truncated "
            f"({len(raw)} bytes, shorter than its {header_size}-byte IDX header)"
        )
    shape = tuple(int(size) for size in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if 0 in shape:
        raise DataError(f"{source} has a bad header (dimensions {shape} include a zero)")
    expected_size = header_size + math.prod(shape)
    if len(raw) < expected_size:
        raise DataError(
            f"{source} is truncated ({len(raw)} bytes, its IDX header for shape {shape} "
            f"needs {expected_size})"
        )
    if len(raw) > expected_size:
        raise DataError(
            f"{source} is corrupt ({len(raw) - expected_size} unexpected bytes after the "
            f"data for shape {shape})"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


# --- CIFAR-10: reading -------------------------------------------------------------------


def load_cifar10(data_dir: str | os.PathLike | None = None,
                 dtype: np.dtype | type = np.float64) -> Dataset:
    """The 50,000/10,000 CIFAR-10 split from <data_dir>/cifar10/cifar-10-batches-bin/.

    Each row is one 32x32 RGB image as (channel, row, column), pixels scaled to
    [0, 1]. The archive's MD5 is checked when it is downloaded; here each batch
    file is checked for whole records and valid labels.
    """
    folder = resolve_data_dir(data_dir) / "cifar10" / CIFAR10_FOLDER
    try:
        train = [read_cifar10_batch(folder / name) for name in CIFAR10_TRAIN]
        X_test, y_test = read_cifar10_batch(folder / CIFAR10_TEST)
    except DataError as err:
        raise DataError(f"{err}; {_GET_CIFAR10}") from err
    X_train = np.concatenate([images for images, _ in train])
    y_train = np.concatenate([labels for _, labels in train])
    return Dataset("cifar10", _scaled_pixels(X_train, dtype), y_train,
                   _scaled_pixels(X_test, dtype), y_test, n_classes=10,
                   image_shape=CIFAR10_IMAGE_SHAPE)


def read_cifar10_batch(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (n, 3072) as uint8 and labels (n,) of one binary batch file."""
    raw = read_bytes(path, "CIFAR-10")
    if not raw or len(raw) % _CIFAR10_RECORD:
        raise DataError(f"CIFAR-10 file {path} is truncated or corrupt ({len(raw)} bytes is not a "
                        f"whole number of {_CIFAR10_RECORD}-byte records)")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _CIFAR10_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"CIFAR-10 file {path} is corrupt (label {labels.max()} is not 0..9)")
    return records[:, 1:], labels


DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "synthetic": load_synthetic,
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
}
IMAGE_SHAPES: dict[str, tuple[int, int, int] | None] = {
    "digits": None,
    "synthetic": None,
    "mnist": (1, *_IDX_IMAGE_SHAPE),
    "fashion-mnist": (1, *_IDX_IMAGE_SHAPE),
    "cifar10": CIFAR10_IMAGE_SHAPE,
}
"""Each data set's ``Dataset.image_shape``, known without loading it: None for a set of plain
feature vectors, on which a convolution or a pool cannot run."""
FILE_DATASETS = frozenset({"mnist", "fashion-mnist", "cifar10"})
"""The data sets read from the data folder: their loaders take ``(data_dir, dtype=...)``."""
