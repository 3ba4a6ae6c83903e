"""``python -m asgdbench``: the same command line as ``asgdbench``."""

from asgdbench.study.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
