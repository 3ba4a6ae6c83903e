#!/usr/bin/env bash
# benchmarks/scripts/scaling.py on a lent 16-core machine with no network, from the repo root.
#
# Needs, carried next to the working tree (scaling_prepare.sh fills both, git ignores both):
#   .whl/          wheels of what that machine lacks (asgdbench itself, pooch, platformdirs)
#   .device-data/  mnist/ (ASGDBENCH_DATA points here)
# With RESUME=1 only the runs an earlier call left pending are done (scaling.py --resume): on
# a machine still warm from that call its result folder is still in $RESULTS; on a fresh one,
# carry that call's archive unpacked as .device-resume/ (the folder holding runs.jsonl).
# Writes to $OUT: scaling.log (everything printed), scaling.md and report.md (the verdicts and
# targets), scaling-results.tar.gz (the whole result folder: runs.jsonl, throughput/runs.jsonl,
# reproduce.json, report.md, report.html, figures/) - four files, as the device tool returns at
# most eight. The run is stopped (Ctrl-C, finished runs kept) BUDGET_S + 60 s after it starts,
# so the archive is always written.
#
#   OUT=/tmp/out BUDGET_S=480 bash benchmarks/scripts/scaling_device.sh [scaling.py options]
#   PYTHON=python3 (default) names the interpreter.
set -uo pipefail
: "${OUT:?OUT must name the folder for the results}"
BUDGET_S=${BUDGET_S:-480}
PYTHON=${PYTHON:-python3}
SITE=${SITE:-/tmp/asgdbench-site}
RESULTS=${RESULTS:-/tmp/scaling-results}
mkdir -p "$OUT"
exec > >(tee "$OUT/scaling.log") 2>&1

echo "== $(date -u +%FT%TZ) $(nproc) CPUs; $("$PYTHON" --version 2>&1); tree: \
$(cat .device-data/commit 2>/dev/null || echo 'commit unknown')"
rm -rf "$SITE"
resume=()
if [ "${RESUME:-0}" = 1 ]; then
    resume=(--resume)
    if [ ! -f "$RESULTS/runs.jsonl" ]; then
        [ -f .device-resume/runs.jsonl ] || { echo "scaling_device: RESUME=1 but neither \
$RESULTS nor .device-resume/ holds runs.jsonl"; exit 2; }
        rm -rf "$RESULTS" && cp -r .device-resume "$RESULTS"
    fi
else
    rm -rf "$RESULTS"
fi
if ! compgen -G ".whl/*.whl" >/dev/null; then
    echo "scaling_device: no wheels in .whl/ (run benchmarks/scripts/scaling_prepare.sh here first)"
    exit 2
fi
if [ ! -d .device-data/mnist ]; then
    echo "scaling_device: no .device-data/mnist (run benchmarks/scripts/scaling_prepare.sh first)"
    exit 2
fi
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl || exit 3
# asgdbench itself: the prepared wheel, else built from this tree (no network, no isolation)
if ! compgen -G ".whl/asgdbench-*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir \
        --target "$SITE" . || exit 3
fi
export PYTHONPATH="$SITE" ASGDBENCH_DATA="$PWD/.device-data" PYTHONUNBUFFERED=1
(cd / && "$PYTHON" -c "import asgdbench, numba, numpy; print('asgdbench', asgdbench.__version__, \
'from', asgdbench.__file__, '| numba', numba.__version__, '| numpy', numpy.__version__)") || exit 3

start=$(date +%s)
timeout --signal=INT --kill-after=30 $((${BUDGET_S%.*} + 60)) \
    "$PYTHON" benchmarks/scripts/scaling.py --out "$RESULTS" --budget-s "$BUDGET_S" \
    "${resume[@]}" "$@"
rc=$?
echo "== scaling.py exit $rc after $(( $(date +%s) - start )) s"
if [ -d "$RESULTS" ]; then
    cp .device-data/commit "$RESULTS/commit.txt" 2>/dev/null
    tar -czf "$OUT/scaling-results.tar.gz" -C "$(dirname "$RESULTS")" "$(basename "$RESULTS")"
    for name in scaling.md report.md; do
        [ -f "$RESULTS/$name" ] && cp "$RESULTS/$name" "$OUT/$name"
    done
fi
exit $rc
