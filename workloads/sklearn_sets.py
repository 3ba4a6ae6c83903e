"""The data sets scikit-learn provides, needing no files: its bundled 8x8 digits and
``make_classification``'s synthetic problems of any size."""

from __future__ import annotations

import hashlib
import math
import pathlib
import zipfile
from collections.abc import Callable

import numpy as np

from asgdbench.errors import ConfigError
from asgdbench.workloads import train_test
from asgdbench.workloads.train_test import Dataset, split, standardized


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 digits: a small real data set that needs no download.

    The split is made once per machine and kept in the cache folder (see :func:`_kept`):
    importing scikit-learn alone takes about a second, longer than a short run.
    """
    def prepare() -> Dataset:
        from sklearn.datasets import load_digits as sklearn_digits  # slow import: only here

        bunch = sklearn_digits()
        X = bunch.data / 16.0  # pixel intensities are 0..16
        return split("digits", X, bunch.target, 10, test_fraction, seed, stratify=True)

    return _kept("digits", prepare, test_fraction=test_fraction, seed=seed)


def _kept(name: str, prepare: Callable[[], Dataset], **parameters: object) -> Dataset:
    """``prepare()``, kept as ``.npz`` in the cache folder under a key of everything that
    decides it (the parameters, the source of this file and of :mod:`.train_test`,
    scikit-learn's and NumPy's versions).

    The split is deterministic, so a kept one is the very same arrays; a folder that
    cannot be written only costs preparing it again next time.
    """
    import io
    from importlib.metadata import version

    from asgdbench.caching import cache_folder, write_atomically

    key = hashlib.sha256(repr((name, sorted(parameters.items()), version("scikit-learn"),
                               np.__version__, pathlib.Path(__file__).read_bytes(),
                               pathlib.Path(train_test.__file__).read_bytes()))
                         .encode()).hexdigest()[:32]
    path = cache_folder() / "datasets" / f"{name}-{key}.npz"
    try:
        with open(path, "rb") as file, np.load(file) as kept:  # a torn file is closed too
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
    data = split("synthetic", X, y, n_classes, test_fraction, seed, stratify=False)
    return standardized(data)
