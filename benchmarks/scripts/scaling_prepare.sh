#!/usr/bin/env bash
# Fill what scaling_device.sh needs on a machine with no network; run here, from the repo root.
#   .whl/          a wheel of this tree, and pooch and platformdirs (asgdbench's dependencies
#                  that machine lacks; the rest
#                  - numba, numpy, scipy, scikit-learn, tabulate, threadpoolctl, tqdm,
#                  matplotlib, requests, packaging - are there, see .library/device/KINDS.md)
#   .device-data/  a copy of $ASGDBENCH_DATA/mnist (default /work/shared/data/mnist)
# Both are git-ignored (.gitignore) and travel only when the device call names them in carry.
set -euo pipefail
DATA=${ASGDBENCH_DATA:-/work/shared/data}
PYTHON=${PYTHON:-python3}
rm -rf .whl && mkdir -p .whl .device-data
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_17_x86_64 --platform any -d .whl \
    'pooch>=1.8' 'platformdirs>=3'
# asgdbench itself, as a wheel of this tree: nothing is built there (its setuptools may be
# older than pyproject.toml needs: `license = "MIT"` takes setuptools >= 77)
"$PYTHON" -m pip wheel -q --no-deps -w .whl .  # isolated: a recent setuptools
rm -rf .device-data/mnist
cp -r "$DATA/mnist" .device-data/mnist
# the tree has no .git there: say which commit it is (and whether it had local changes)
echo "$(git rev-parse HEAD)$(git diff --quiet HEAD || echo ' + uncommitted changes')" \
    > .device-data/commit
ls -l .whl
du -sh .whl .device-data
