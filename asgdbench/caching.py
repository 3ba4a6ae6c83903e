"""Where asgdbench keeps what it computes once per machine, and how it writes there.

The compile cache (:mod:`asgdbench.engine.loop_cache`: worker loops) and prepared data sets
(:func:`asgdbench.workloads.datasets.load_digits`'s split) live in one folder:
``$ASGDBENCH_CACHE_DIR``, else ``compiled/`` in the user cache folder. Every file is written
to a temporary name and moved into place with ``os.replace``, so that a process reading it
while another writes sees the whole file or none.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

ENV_VAR = "ASGDBENCH_CACHE_DIR"


def cache_folder() -> Path:
    """``$ASGDBENCH_CACHE_DIR``, else ``compiled/`` in the user cache folder."""
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        return Path(explicit).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("asgdbench")) / "compiled"


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that no reader ever sees part of it (creates the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:16]}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
